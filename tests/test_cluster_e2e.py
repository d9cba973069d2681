"""
Two gateway nodes, as an operator runs them behind a load balancer: separate
daemons sharing one PostgreSQL (API store and exchange log) and one Redis
(rate limits), in front of two server-everything endpoints, with one
session key file. Node B runs two worker processes, so every path also
crosses a worker's control channel.

Each test says what an operator relies on: a write through either node is
live on the other within a second, sessions continue on any node on the
endpoint that holds them, a limit of N is N in all, a killed node loses no
acknowledged write, a dead endpoint's sessions re-initialize elsewhere, and
either node's logs show the other's traffic.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import anyio
import attrs
import pytest
from mcp import Client

from mcpgated import config
from mcpgated.sealing import Sealer, endpoint_id, load_key_file, new_key_line
from tests.engines import PostgresServer, RedisServer
from tests.support import ADMIN_TOKEN, Daemon, Proc, http, start_everything, subscribe_key

MCP_ACCEPT = {"Accept": "application/json, text/event-stream"}
VERSION = "2025-06-18"
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": VERSION, "capabilities": {},
    "clientInfo": {"name": "cluster-test", "version": "1"}}}
LIVE_WITHIN = 1.0  # seconds: the bound for a write to reach the other node


class Node(Daemon):
    """
    One gateway node: its own folder, listeners and logs; the shared
    engines and session key named in its INI.
    """

    def __init__(self, folder: Path, name: str, store_url: str, analytics_url: str,
                 redis_url: str, key_file: Path, workers: int) -> None:
        super().__init__(folder)
        self.name = name
        self.ini.write_text(
            "[gateway]\nlisten = tcp:0:interface=127.0.0.1\n"
            f"node = {name}\nsession_key_file = {key_file}\nworkers = {workers}\n"
            f"[admin]\nlisten = tcp:0:interface=127.0.0.1\ntoken = {ADMIN_TOKEN}\n"
            f"[storage]\npath = data/mcpgated.db\nurl = {store_url}\n"
            f"[analytics]\nurl = {analytics_url}\n"
            f"[ratelimit]\nredis = {redis_url}\nredis_failure = closed\n"
            "[logging]\ndir = log\n"
            "[daemon]\nports_file = run/ports.json\n"
        )


@attrs.define
class Cluster:
    a: Node
    b: Node
    endpoints: List[str]
    backends: List[Proc]
    sealer: Sealer


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer,
            redis: RedisServer) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("cluster")
    key_file = folder / "session.key"
    key_file.write_text(new_key_line() + "\n")
    key_file.chmod(0o600)
    store_url, analytics_url = postgres.new_database(), postgres.new_database()
    started = [start_everything("streamableHttp") for _ in range(2)]
    for name in ("node-a", "node-b"):
        (folder / name).mkdir()
    nodes = [Node(folder / name, name, store_url, analytics_url, redis.url, key_file, workers)
             for name, workers in (("node-a", 1), ("node-b", 2))]
    for node in nodes:
        node.start()
    yield Cluster(nodes[0], nodes[1], [f"http://127.0.0.1:{port}/mcp" for _, port in started],
                  [proc for proc, _ in started], Sealer(load_key_file(key_file, generate=False)))
    for node in nodes:
        node.stop_if_running()
    for proc, _ in started:
        proc.stop()


def within(seconds: float, check: Callable[[], Any]) -> Tuple[Any, float]:
    """
    Poll C{check} (no event tells a test when another node has applied a
    change) until it returns something true or C{seconds} pass; its last
    answer and the time taken.
    """
    started = time.monotonic()
    while True:
        answer = check()
        elapsed = time.monotonic() - started
        if answer or elapsed > seconds:
            return answer, elapsed
        time.sleep(0.02)


def ok(node: Node, method: str, path: str, body: Any = None, expected: int = 200) -> Any:
    status, answer = node.admin(method, path, body)
    assert status == expected, (status, answer)
    return answer


def create_api(node: Node, context_path: str, endpoints: List[str],
               plans: Optional[List[Dict[str, Any]]] = None, deploy: bool = True) -> str:
    body = {"name": context_path.strip("/"), "version": "1", "contextPath": context_path,
            "endpoints": [{"url": url, "weight": 1} for url in endpoints],
            "plans": plans or [{"name": "Keyless", "security": "KEY_LESS"}]}
    api = ok(node, "POST", "/apis", body, 201)
    if deploy:
        ok(node, "POST", f"/apis/{api['id']}/_deploy")
    return str(api["id"])


def initialize(node: Node, path: str, headers: Optional[Dict[str, str]] = None) -> str:
    status, answer_headers, body = http("POST", node.gateway + path, INIT,
                                        dict(MCP_ACCEPT, **(headers or {})))
    assert status == 200, body
    session = answer_headers["mcp-session-id"]
    status, _, body = http("POST", node.gateway + path,
                           {"jsonrpc": "2.0", "method": "notifications/initialized"},
                           dict(MCP_ACCEPT, **{"Mcp-Session-Id": session,
                                               "MCP-Protocol-Version": VERSION}, **(headers or {})))
    assert status == 202, body
    return str(session)


def echo(node: Node, path: str, session: str, message: str) -> Tuple[int, bytes]:
    status, _, body = http("POST", node.gateway + path, {
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": message}}},
        dict(MCP_ACCEPT, **{"Mcp-Session-Id": session, "MCP-Protocol-Version": VERSION}))
    return status, body


def test_an_api_deployed_through_a_answers_on_b_within_a_second(cluster: Cluster) -> None:
    api_id = create_api(cluster.a, "/weather", cluster.endpoints, deploy=False)
    assert http("POST", cluster.b.gateway + "/weather", INIT, MCP_ACCEPT)[0] == 404
    ok(cluster.a, "POST", f"/apis/{api_id}/_deploy")
    status, elapsed = within(LIVE_WITHIN + 1, lambda: http(
        "POST", cluster.b.gateway + "/weather", INIT, MCP_ACCEPT)[0] == 200)
    assert status and elapsed < LIVE_WITHIN, elapsed
    # and a stop through B is live on A
    ok(cluster.b, "POST", f"/apis/{api_id}/_stop")
    stopped, elapsed = within(LIVE_WITHIN + 1, lambda: http(
        "POST", cluster.a.gateway + "/weather", INIT, MCP_ACCEPT)[0] == 404)
    assert stopped and elapsed < LIVE_WITHIN, elapsed


def test_a_key_revoked_on_b_is_refused_on_a_within_a_second(cluster: Cluster) -> None:
    api_id = create_api(cluster.a, "/files", cluster.endpoints,
                        plans=[{"name": "Keys", "security": "API_KEY"}])
    subscription, key = subscribe_key(cluster.a, api_id, "Keys", "Claude Desktop")
    headers = {"X-Gravitee-Api-Key": key["key"]}
    # issued on A: usable on B within a second too
    usable, elapsed = within(LIVE_WITHIN + 1, lambda: http(
        "POST", cluster.b.gateway + "/files", INIT, dict(MCP_ACCEPT, **headers))[0] == 200)
    assert usable and elapsed < LIVE_WITHIN, elapsed
    assert http("POST", cluster.a.gateway + "/files", INIT, dict(MCP_ACCEPT, **headers))[0] == 200
    ok(cluster.b, "DELETE", f"/apis/{api_id}/subscriptions/{subscription['id']}/keys/{key['id']}",
       expected=204)
    refused, elapsed = within(LIVE_WITHIN + 1, lambda: http(
        "POST", cluster.a.gateway + "/files", INIT, dict(MCP_ACCEPT, **headers))[0] == 401)
    assert refused and elapsed < LIVE_WITHIN, elapsed


def test_sessions_started_through_a_continue_through_b_on_their_endpoint(cluster: Cluster) -> None:
    api_id = create_api(cluster.a, "/sessions", cluster.endpoints)
    within(LIVE_WITHIN, lambda: http("POST", cluster.b.gateway + "/sessions", INIT,
                                     MCP_ACCEPT)[0] == 200)
    holders = []
    for number in range(4):
        session = initialize(cluster.a, "/sessions")
        opened = cluster.sealer.unseal(api_id, session)
        assert opened is not None
        holders.append(opened[0])
        # the backend holding the session answers through B (another
        # endpoint would answer 404: it never saw that session)
        status, body = echo(cluster.b, "/sessions", session, f"hop {number}")
        assert status == 200, body
        assert f"Echo: hop {number}".encode() in body
    assert set(holders) == {endpoint_id(url) for url in cluster.endpoints}

    async def sdk_session() -> List[str]:
        async with Client(cluster.b.gateway + "/sessions") as client:
            answer = await client.call_tool("echo", {"message": "via B"})
            return [content.text for content in answer.content]  # type: ignore[union-attr]

    assert anyio.run(sdk_session) == ["Echo: via B"]


def test_a_limit_of_n_is_n_across_both_nodes(cluster: Cluster) -> None:
    create_api(cluster.a, "/limited", cluster.endpoints[:1], plans=[{
        "name": "Keyless", "security": "KEY_LESS",
        "rateLimit": {"requests": 6, "periodSeconds": 3600, "scope": "plan"}}])
    within(LIVE_WITHIN, lambda: http("GET", cluster.b.gateway + "/limited/.well-known/x")[0] != 404)
    statuses = []
    for number in range(12):
        node = (cluster.a, cluster.b)[number % 2]
        status, _, _ = http("POST", node.gateway + "/limited",
                            {"jsonrpc": "2.0", "id": number, "method": "ping"}, MCP_ACCEPT)
        statuses.append(status)
    assert sum(status != 429 for status in statuses) == 6, statuses
    assert statuses[:6].count(429) == 0 and set(statuses[6:]) == {429}, statuses


def test_logs_on_a_show_the_traffic_of_b(cluster: Cluster) -> None:
    api_id = create_api(cluster.b, "/logged", cluster.endpoints)
    within(LIVE_WITHIN, lambda: http("POST", cluster.b.gateway + "/logged", INIT,
                                     MCP_ACCEPT)[0] == 200)
    session = initialize(cluster.b, "/logged")
    assert echo(cluster.b, "/logged", session, "seen from A")[0] == 200

    def on_a() -> List[Dict[str, Any]]:
        page = ok(cluster.a, "GET", f"/apis/{api_id}/logs?node=node-b&tool=echo")
        return list(page["data"])

    entries, _ = within(10, on_a)
    assert entries and {entry["node"] for entry in entries} == {"node-b"}
    assert ok(cluster.a, "GET", f"/apis/{api_id}/logs?node=node-a")["data"] == []
    # the dashboard's summary too: all nodes, or one
    totals = {node: ok(cluster.a, "GET", f"/apis/{api_id}/analytics?last=3600{node}")["totals"]
              for node in ("", "&node=node-b", "&node=node-a")}
    assert totals[""]["requests"] == totals["&node=node-b"]["requests"] > 0
    assert totals["&node=node-a"]["requests"] == 0


def test_a_dead_endpoints_sessions_get_404_and_new_ones_go_elsewhere(cluster: Cluster) -> None:
    proc, port = start_everything("streamableHttp")
    doomed, survivor = f"http://127.0.0.1:{port}/mcp", cluster.endpoints[0]
    api_id = create_api(cluster.a, "/doomed", [doomed, survivor])
    within(LIVE_WITHIN, lambda: http("POST", cluster.b.gateway + "/doomed", INIT,
                                     MCP_ACCEPT)[0] == 200)
    sessions = [initialize(cluster.a, "/doomed") for _ in range(4)]
    on_doomed = [s for s in sessions
                 if cluster.sealer.unseal(api_id, s)[0] == endpoint_id(doomed)]  # type: ignore[index]
    assert on_doomed and len(on_doomed) < len(sessions)
    proc.stop()
    for node in (cluster.a, cluster.b):
        for session in sessions:
            status, body = echo(node, "/doomed", session, "still there?")
            if session in on_doomed:
                assert status == 404, body  # the spec's "session not found": re-initialize
            else:
                assert status == 200, body
        # a client that re-initializes lands on the live endpoint, on either node
        for _ in range(3):
            fresh = initialize(node, "/doomed")
            assert cluster.sealer.unseal(api_id, fresh)[0] == endpoint_id(survivor)  # type: ignore[index]
            assert echo(node, "/doomed", fresh, "again")[0] == 200


def test_killing_a_loses_no_acknowledged_write_and_b_keeps_serving(cluster: Cluster) -> None:
    acknowledged: List[str] = []
    failures: List[str] = []
    enough = threading.Event()

    def writer(number: int) -> None:
        for index in range(200):
            path = f"/burst-{number}-{index}"
            try:
                status, answer = cluster.a.admin("POST", "/apis", {
                    "name": path.strip("/"), "version": "1", "contextPath": path,
                    "backend": cluster.endpoints[0], "plans": [{"name": "Keyless", "security": "KEY_LESS"}]})
            except OSError:
                return  # the node died under us: unacknowledged, nothing to check
            if status != 201:
                failures.append(f"{status} {answer}")
                enough.set()
                return
            acknowledged.append(answer["id"])
            if len(acknowledged) >= 20:
                enough.set()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    assert enough.wait(60), (failures, len(acknowledged))
    cluster.a.kill()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    on_b = {api["id"] for api in ok(cluster.b, "GET", "/apis")["data"]}
    assert set(acknowledged) <= on_b, set(acknowledged) - on_b
    # B keeps serving, and takes writes
    create_api(cluster.b, "/after-a", cluster.endpoints)
    session = initialize(cluster.b, "/after-a")
    assert echo(cluster.b, "/after-a", session, "A is gone")[0] == 200


def test_the_readmes_node_configuration_is_valid(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Running several nodes", 1)[1].split("\n## ", 1)[0]
    ini = section.split("```ini\n", 1)[1].split("```", 1)[0]
    (tmp_path / "node.ini").write_text(ini)
    cfg = config.load(str(tmp_path / "node.ini"))
    assert cfg.gateway.node == "gw-1" and cfg.gateway.workers == os.cpu_count()
    assert cfg.storage.url is not None and cfg.analytics.url is not None
    assert cfg.ratelimit.redis is not None
