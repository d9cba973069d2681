"""
Real daemons keeping their exchange log in one PostgreSQL database
(C{[analytics] url}): the admin API of any node shows the traffic of every
node, each record naming its node; PostgreSQL going away never stops the
traffic, and what was recorded meanwhile is written once it is back.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import psycopg
import pytest
from mcp import Client
from playwright.sync_api import expect

from tests.daemon_helpers import set_options
from tests.engines import PostgresServer, free_port
from tests.support import BIN, Daemon, Proc
from tests.test_console import Console, browser, run_mcp, table_rows  # noqa: F401 -- browser: the fixture


def _node(folder: Path, name: str, url: str) -> Daemon:
    daemon = Daemon(folder)
    set_options(daemon, "gateway", node=name)
    set_options(daemon, "analytics", url=url)
    return daemon


def _calls(url: str, count: int) -> None:
    """
    C{count} tool calls in one session (on a thread of its own: the console
    test's browser runs an event loop in this one).
    """

    async def calls(client: Client) -> None:
        for i in range(count):
            await client.call_tool("echo", {"message": f"hello {i}"})

    run_mcp(url, calls)


def _tools_calls(page: dict) -> List[Tuple[str, str]]:  # type: ignore[type-arg]
    return [(r["node"], r["apiId"]) for r in page["data"] if r["method"] == "tools/call"]


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: Any, postgres: PostgresServer) -> Iterator[Tuple[Daemon, Daemon]]:
    url = postgres.new_database()
    a = _node(tmp_path_factory.mktemp("node-a"), "node-a", url).start()
    b = _node(tmp_path_factory.mktemp("node-b"), "node-b", url).start()
    yield a, b
    for daemon in (a, b):
        daemon.stop_if_running()


def test_every_node_shows_the_traffic_of_all_nodes(two_nodes: Tuple[Daemon, Daemon],
                                                    everything: int) -> None:
    a, b = two_nodes
    api_a = a.deploy(f"http://127.0.0.1:{everything}/mcp")
    api_b = b.deploy(f"http://127.0.0.1:{everything}/mcp")
    _calls(a.gateway + "/mcp-proxy", 2)
    _calls(b.gateway + "/mcp-proxy", 3)
    b.stop()  # writes B's queued records
    # A shows B's records (ids in commit order: newest batch first)
    status, page = a.admin("GET", "/logs?node=node-b&method=tools/call")
    assert status == 200, page
    assert _tools_calls(page) == [("node-b", api_b)] * 3
    a.stop()
    a.start()
    b.start()
    for daemon in (a, b):
        status, page = daemon.admin("GET", "/logs?method=tools/call")
        assert status == 200, page
        assert sorted(_tools_calls(page)) == sorted([("node-b", api_b)] * 3 + [("node-a", api_a)] * 2)
        status, only_a = daemon.admin("GET", "/logs?node=node-a")
        assert {r["node"] for r in only_a["data"]} == {"node-a"}
        assert {r["method"] for r in only_a["data"]} >= {"initialize", "tools/call"}
        status, summary = daemon.admin("GET", "/analytics")
        assert status == 200, summary
        calls = {m["method"]: m["count"] for m in summary["byMethod"]}
        assert calls["tools/call"] == 5 and calls["initialize"] == 2
        assert summary["droppedRecords"] == 0
    status, entry = a.admin("GET", f"/apis/{api_a}/logs/{only_a['data'][0]['id']}")
    assert status == 200 and entry["node"] == "node-a"
    status, bad = a.admin("GET", "/logs?nodes=node-a")
    assert status == 400 and bad["field"] == "nodes"


def test_traffic_goes_on_while_postgres_is_down_and_is_logged_after(
        tmp_path: Path, postgres: PostgresServer, everything: int) -> None:
    url = postgres.new_database()
    # The test server commits asynchronously (synchronous_commit=off) and
    # its stop() is a crash: this database commits as PostgreSQL does by
    # default, so what the gateway saw committed survives the crash.
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{url.rsplit("/", 1)[1]}" SET synchronous_commit = on')
    daemon = _node(tmp_path, "solo", url).start()
    try:
        daemon.deploy(f"http://127.0.0.1:{everything}/mcp")
        _calls(daemon.gateway + "/mcp-proxy", 1)
        postgres.stop()
        try:
            _calls(daemon.gateway + "/mcp-proxy", 4)  # answered all the same
            status, answer = daemon.admin("GET", "/logs")
            assert status == 503, answer
            assert "analytics database cannot be reached" in answer["error"]
            status, answer = daemon.admin("GET", "/analytics")
            assert status == 503, answer
        finally:
            postgres.start()
        daemon.stop()  # the records kept while PostgreSQL was down are written now
        daemon.start()
        status, page = daemon.admin("GET", "/logs?method=tools/call")
        assert status == 200, page
        assert len(page["data"]) == 5 and {r["node"] for r in page["data"]} == {"solo"}
        log = (tmp_path / "log" / "mcpgated.log").read_text()
        assert log.count("analytics write to") <= 1  # one line per outage, not per batch
    finally:
        daemon.stop_if_running()


def test_an_unreachable_database_at_startup_is_one_line(tmp_path: Path) -> None:
    url = f"postgresql://gw:hunter2@127.0.0.1:{free_port()}/mcp"
    daemon = _node(tmp_path, "n", url)
    proc = Proc(daemon.command(), cwd=str(tmp_path))
    line = proc.wait_for(r"mcpgated cannot start: .*").group(0)
    assert proc.popen.wait(30) == 1
    assert "analytics store postgresql://gw:***@127.0.0.1" in line
    assert "hunter2" not in "\n".join(proc.output)


def test_check_config_takes_a_postgres_url_without_the_analytics_file(tmp_path: Path) -> None:
    daemon = _node(tmp_path, "n", "postgresql://gw@127.0.0.1:1/mcp")
    set_options(daemon, "analytics", path="/proc/analytics.db")  # unwritable, and unused
    proc = Proc([str(BIN / "twistd"), "-n", "mcpgated", "-c", str(daemon.ini), "--check-config"],
                cwd=str(tmp_path))
    assert proc.popen.wait(30) == 0, "\n".join(proc.output)


async def _one_call(client: Client) -> None:
    await client.call_tool("echo", {"message": "from b"})


def test_the_console_shows_and_filters_nodes(two_nodes: Tuple[Daemon, Daemon], browser: Any,  # noqa: F811
                                             everything: int) -> None:
    a, b = two_nodes
    for daemon in (a, b):
        if daemon.proc is None or daemon.proc.popen.poll() is not None:
            daemon.start()
    run_mcp(b.gateway + "/mcp-proxy", _one_call)  # (playwright runs an event loop here)
    b.stop()  # written: A's console shows it
    b.start()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        tab = Console(context.new_page(), a, "nodes")
        tab.sign_in()
        tab.go("Logs")
        page = tab.page
        rows = page.locator("table tbody tr")
        expect(rows.first).to_be_visible()
        nodes = {row[-1] for row in table_rows(page.locator("table"))}
        assert nodes == {"node-a", "node-b"}
        page.get_by_role("searchbox", name="Node").fill("node-b")
        tab.button("Apply filters").click()
        expect(rows.filter(has_text="node-a")).to_have_count(0)
        expect(rows.first).to_contain_text("node-b")
        shown = table_rows(page.locator("table"))
        assert shown and {row[-1] for row in shown} == {"node-b"}
        # an exchange in detail (one of A's: B's APIs are in B's own API store here)
        page.get_by_role("searchbox", name="Node").fill("node-a")
        tab.button("Apply filters").click()
        expect(rows.filter(has_text="node-b")).to_have_count(0)
        expect(rows.first).to_contain_text("node-a")
        rows.first.get_by_role("link", name=re.compile("details")).click()
        summary = page.locator("dl.summary")
        expect(summary.locator("dt", has_text="Gateway node")).to_have_count(1)
        expect(summary.get_by_role("link", name="node-a", exact=True)).to_be_visible()
        tab.shot("log-detail-node")
        assert tab.problems == []
    finally:
        context.close()


def test_one_database_for_the_api_store_and_the_exchange_log(tmp_path: Path,
                                                             postgres: PostgresServer,
                                                             everything: int) -> None:
    url = postgres.new_database()
    daemon = _node(tmp_path, "both", url)
    set_options(daemon, "storage", url=url)
    daemon.start()
    try:
        api_id = daemon.deploy(f"http://127.0.0.1:{everything}/mcp")
        _calls(daemon.gateway + "/mcp-proxy", 2)
        daemon.stop()
        daemon.start()
        status, page = daemon.admin("GET", f"/apis/{api_id}/logs?method=tools/call")
        assert status == 200, page
        assert [(r["node"], r["apiId"]) for r in page["data"]] == [("both", api_id)] * 2
    finally:
        daemon.stop_if_running()
