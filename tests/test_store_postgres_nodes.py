"""
Two gateway daemons on one PostgreSQL database ([storage] url): what an
operator does through either node's admin API (deploys, stops, keys,
subscriptions, pin decisions) is live on the other within a second
(PostgreSQL's NOTIFY, heard by the other node's feed), a feed whose
connection is cut catches up, and PostgreSQL down leaves the gateway
serving while the admin API answers 503 (and the store alone: Unavailable,
then back to work).

The module has a PostgreSQL server of its own (it is stopped and started).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import anyio
import psycopg
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from mcpgated.definitions import parse_definition
from mcpgated.model import ApiDefinition
from mcpgated.store import PostgresApiStore, Unavailable

from tests.daemon_helpers import ACCEPT, INITIALIZE, set_options
from tests.engines import PostgresServer, free_port
from tests.support import Daemon, Proc, deploy, http, metric, subscribe_key
from tests.test_subscriptions import PumpedReactor

def _definition(context_path: str) -> ApiDefinition:
    return parse_definition({"name": "Docs", "version": "1", "contextPath": context_path,
                             "backend": "http://127.0.0.1:1/mcp",
                             "plans": [{"name": "Keyless", "security": "KEY_LESS"}]})


KEY_PLANS = [{"name": "Keys", "security": "API_KEY"}]
KEY_HEADER = "X-Gravitee-Api-Key"


def _status(daemon: Daemon, path: str, headers: Optional[Dict[str, str]] = None) -> int:
    status, _, _ = http("POST", daemon.gateway + path, INITIALIZE, dict(ACCEPT, **(headers or {})),
                        timeout=5)
    return status


def within(seconds: float, condition: Callable[[], bool]) -> float:
    """
    Poll C{condition} (the other node's answers: no event to wait on) until
    it holds; how long it took. Fails after C{seconds}.
    """
    started = time.monotonic()
    pause = threading.Event()
    while not condition():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not within {seconds} s")
        pause.wait(0.02)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    own = PostgresServer()
    yield own
    own.close()


@pytest.fixture(scope="module")
def nodes(server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Tuple[Daemon, Daemon]]:
    url = server.new_database()
    pair = []
    for name in ("a", "b"):
        daemon = Daemon(tmp_path_factory.mktemp(f"node-{name}"))
        set_options(daemon, "storage", url=url)
        set_options(daemon, "analytics", enabled="off")
        pair.append(daemon.start())
    yield pair[0], pair[1]
    for daemon in pair:
        daemon.stop_if_running()


def test_a_deploy_and_a_stop_on_one_node_are_live_on_the_other(
        nodes: Tuple[Daemon, Daemon], everything: int) -> None:
    a, b = nodes
    assert _status(b, "/live") == 404
    api = deploy(a, "/live", f"http://127.0.0.1:{everything}/mcp")
    assert within(1.0, lambda: _status(b, "/live") == 200) < 1.0
    assert b.admin("GET", f"/apis/{api['id']}")[1]["state"] == "STARTED"
    status, stopped = b.admin("POST", f"/apis/{api['id']}/_stop")
    assert status == 200, stopped
    within(1.0, lambda: _status(a, "/live") == 404)


def test_a_key_revoked_on_one_node_is_refused_on_the_other(
        nodes: Tuple[Daemon, Daemon], everything: int) -> None:
    a, b = nodes
    api = deploy(a, "/keyed", f"http://127.0.0.1:{everything}/mcp", plans=KEY_PLANS)
    subscription, key = subscribe_key(a, api["id"], "Keys", "agent")
    with_key = {KEY_HEADER: key["key"]}
    assert _status(a, "/keyed", with_key) == 200
    within(1.0, lambda: _status(b, "/keyed", with_key) == 200)  # issued on A, usable on B
    base = f"/apis/{api['id']}/subscriptions/{subscription['id']}"
    assert b.admin("DELETE", f"{base}/keys/{key['id']}")[0] == 204
    assert _status(b, "/keyed", with_key) == 401
    assert within(1.0, lambda: _status(a, "/keyed", with_key) == 401) < 1.0
    # a closed subscription too
    second_subscription, second = subscribe_key(b, api["id"], "Keys", "agent 2")
    other = {KEY_HEADER: second["key"]}
    within(1.0, lambda: _status(a, "/keyed", other) == 200)
    closing = f"/apis/{api['id']}/subscriptions/{second_subscription['id']}/_close"
    assert a.admin("POST", closing)[0] == 200
    within(1.0, lambda: _status(b, "/keyed", other) == 401)


def test_a_cut_feed_connection_catches_up(nodes: Tuple[Daemon, Daemon], server: PostgresServer,
                                          everything: int) -> None:
    a, b = nodes
    with psycopg.connect(server.url, autocommit=True) as connection:
        killed = connection.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'mcpgated-feed'").fetchone()
    assert killed == (2,)
    api = deploy(b, "/after-cut", f"http://127.0.0.1:{everything}/mcp")
    # heard again, or read again once A's feed is back (it reads everything then)
    within(5.0, lambda: _status(a, "/after-cut") == 200)
    assert a.admin("GET", f"/apis/{api['id']}")[0] == 200


def test_postgres_down_the_gateway_serves_and_the_admin_api_answers_503(
        nodes: Tuple[Daemon, Daemon], server: PostgresServer, everything: int) -> None:
    a, b = nodes
    deploy(a, "/steady", f"http://127.0.0.1:{everything}/mcp")
    within(1.0, lambda: _status(b, "/steady") == 200)
    assert metric(b, "mcpgated_change_feed_listening") == 1
    outages = metric(b, "mcpgated_change_feed_outages_total")
    server.stop()
    try:
        within(5.0, lambda: metric(b, "mcpgated_change_feed_listening") == 0)
        assert metric(b, "mcpgated_change_feed_outages_total") == outages + 1
        for daemon in (a, b):
            assert _status(daemon, "/steady") == 200  # served from what it loaded
            status, body = daemon.admin("POST", "/applications", {"name": "during"})
            assert status == 503, body
            assert body["error"].startswith("the store cannot be used"), body
            assert "nothing was changed" in body["error"]
            status, body = daemon.admin("GET", "/apis")
            assert status == 503, body
    finally:
        server.start()
    # back: writes go through and the other node hears them again
    deploy(a, "/back", f"http://127.0.0.1:{everything}/mcp")
    within(8.0, lambda: _status(b, "/back") == 200)
    assert metric(b, "mcpgated_change_feed_listening") == 1
    assert metric(b, "mcpgated_change_feed_outages_total") == outages + 1  # once per outage
    status, listed = b.admin("GET", "/applications")
    assert status == 200 and "during" not in json.dumps(listed)


def test_unreachable_at_start_one_line_without_the_password(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path)
    set_options(daemon, "storage", url=f"postgresql://gw:s3cret@127.0.0.1:{free_port()}/x")
    proc = Proc(daemon.command(), cwd=str(tmp_path))
    line = proc.wait_for(r"mcpgated cannot start: cannot open the store .*").group(0)
    assert proc.popen.wait(30) == 1
    assert "postgresql://gw:***@127.0.0.1" in line and "connection" in line.lower(), line
    assert not any("s3cret" in out for out in proc.output), proc.output


def test_server_down_calls_fail_unavailable_then_recover(server: PostgresServer) -> None:
    reactor = PumpedReactor()
    store = PostgresApiStore(reactor, server.new_database())
    reactor.wait(store.start())
    try:
        created = reactor.wait(store.create_api(_definition("/down"), 1.0))
        server.stop()
        try:
            for call in (lambda: store.list_apis(), lambda: store.get_api(created.id),
                         lambda: store.create_application("x", "", 2.0),
                         lambda: store.set_state(created.id, "STOPPED", 2.0)):
                with pytest.raises(Unavailable) as down:
                    reactor.wait(call())
                assert not down.value.full
        finally:
            server.start()
        # back: nothing was written while it was down, and it works again
        assert reactor.wait(store.list_applications()) == []
        assert [r.id for r in reactor.wait(store.list_apis())] == [created.id]
        assert reactor.wait(store.create_application("y", "", 3.0)).name == "y"
    finally:
        reactor.wait(store.stop())


async def _tool_names(url: str) -> List[str]:
    transport = streamable_http_client(url, http_client=create_mcp_http_client())
    async with Client(transport, mode="legacy") as client:
        return sorted(tool.name for tool in (await client.list_tools()).tools)


def test_a_pin_approved_on_one_node_is_served_by_the_other(
        nodes: Tuple[Daemon, Daemon], everything: int) -> None:
    a, b = nodes
    api = deploy(a, "/pinned", f"http://127.0.0.1:{everything}/mcp",
                 pinning={"mode": "block", "approval": "required"})
    within(1.0, lambda: _status(b, "/pinned") == 200)
    # A lists first: every tool awaits an operator, none is served
    assert anyio.run(_tool_names, a.gateway + "/pinned") == []
    def pins() -> List[Dict[str, Any]]:  # as A stored them (after its answer), read on B
        status, body = b.admin("GET", f"/apis/{api['id']}/pins")
        assert status == 200, body
        return list(body["data"])

    within(1.0, lambda: any(pin["name"] == "echo" for pin in pins()))
    echo = next(pin for pin in pins() if pin["name"] == "echo")
    assert echo["status"] == "pending"
    status, approved = b.admin("POST", f"/apis/{api['id']}/pins/{echo['id']}/_approve",
                               {"fingerprint": echo["pending"]["fingerprint"]})
    assert status == 200, approved
    assert within(1.0, lambda: anyio.run(_tool_names, a.gateway + "/pinned") == ["echo"]) < 1.0
