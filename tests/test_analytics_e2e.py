"""
Monitoring as an operator sees it: a real MCP session through the daemon,
then the exchange log, the analytics summary and the Prometheus metrics over
the admin API.
"""

from __future__ import annotations

import json

import anyio
from mcp import Client

from tests.support import Daemon, http


async def _traffic(url: str) -> None:
    async with Client(url, mode="legacy") as client:
        await client.list_tools()
        for i in range(3):
            await client.call_tool("echo", {"message": f"hello {i}"})
        for _ in range(2):
            await client.call_tool("get-sum", {"a": 2, "b": 3})
        failed = await client.call_tool("no-such-tool", {})
        assert failed.is_error
        resources = await client.list_resources()
        await client.read_resource(resources.resources[0].uri)
        seen = []

        async def progress(value, total, message):
            seen.append(value)

        await client.call_tool("trigger-long-running-operation", {"duration": 1, "steps": 3},
                               progress_callback=progress)
        assert seen == [1.0, 2.0, 3.0]


def test_session_counts_errors_and_tools(daemon, everything):
    api_id = daemon.deploy(f"http://127.0.0.1:{everything}/mcp")
    other = daemon.deploy(f"http://127.0.0.1:{everything}/mcp", context_path="/other", name="Other")
    anyio.run(_traffic, daemon.gateway + "/mcp-proxy")
    daemon.stop()  # flushes the batched writer; the records must survive a restart
    daemon.start()

    status, summary = daemon.admin("GET", f"/apis/{api_id}/analytics")
    assert status == 200, summary
    methods = {m["method"]: m for m in summary["byMethod"]}
    assert methods["initialize"]["count"] == 1
    assert methods["notifications/initialized"]["count"] == 1
    assert methods["tools/list"]["count"] == 1
    assert methods["tools/call"]["count"] == 3 + 2 + 1 + 1
    assert methods["tools/call"]["errors"] == 1
    assert methods["resources/list"]["count"] == 1
    assert methods["resources/read"]["count"] == 1
    tools = {(t["method"], t["name"]): t for t in summary["byTarget"]}
    assert tools[("tools/call", "echo")]["count"] == 3
    assert tools[("tools/call", "get-sum")]["count"] == 2
    assert tools[("tools/call", "no-such-tool")]["errors"] == 1
    assert tools[("tools/call", "no-such-tool")]["errorRate"] == 1.0
    assert tools[("tools/call", "echo")]["errorRate"] == 0.0
    assert tools[("tools/call", "trigger-long-running-operation")]["latencyMs"]["p50"] >= 900
    totals = summary["totals"]
    assert totals["toolErrors"] == 1
    assert totals["requests"] == sum(m["count"] for m in summary["byMethod"]) - totals["notifications"]
    assert summary["latencyMs"]["p99"] >= summary["latencyMs"]["p50"] > 0
    assert sum(p["requests"] + p["notifications"] for p in summary["timeSeries"]["points"]) == sum(
        m["count"] for m in summary["byMethod"])
    assert summary["topClients"][0]["clientName"] == "mcp"  # the SDK's clientInfo.name
    assert summary["droppedRecords"] == 0

    # the other API saw nothing; the all-APIs view sees the same as this one
    status, empty = daemon.admin("GET", f"/apis/{other}/analytics")
    assert empty["totals"]["requests"] == 0
    status, everything_view = daemon.admin("GET", "/analytics")
    assert everything_view["totals"] == totals

    # the log: newest first, filterable, paginated with a cursor
    status, page = daemon.admin("GET", f"/apis/{api_id}/logs?method=tools/call&tool=echo")
    assert status == 200
    assert [r["target"] for r in page["data"]] == ["echo"] * 3
    assert all(r["outcome"] == "result" and r["httpStatus"] == 200 for r in page["data"])
    assert all(r["clientName"] == "mcp" and r["protocolVersion"] for r in page["data"])
    assert len({r["session"] for r in page["data"]}) == 1
    status, failed = daemon.admin("GET", f"/apis/{api_id}/logs?outcome=errors")
    assert [(r["target"], r["outcome"]) for r in failed["data"]] == [("no-such-tool", "tool_error")]
    assert "no-such-tool" in failed["data"][0]["errorMessage"]
    status, long_run = daemon.admin("GET", f"/apis/{api_id}/logs?tool=trigger-long-running-operation")
    record = long_run["data"][0]
    assert record["notifications"] == 3 and record["transport"] == "sse"

    ids, cursor = [], None
    while True:
        status, page = daemon.admin("GET", f"/apis/{api_id}/logs?limit=4"
                                    + (f"&cursor={cursor}" if cursor else ""))
        ids.extend(r["id"] for r in page["data"])
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert len(ids) == len(set(ids)) == sum(m["count"] for m in summary["byMethod"])
    assert ids == sorted(ids, reverse=True)

    status, entry = daemon.admin("GET", f"/apis/{api_id}/logs/{ids[0]}")
    assert status == 200 and entry["id"] == ids[0]
    assert entry["requestPayload"] is None  # metadata only by default
    status, _ = daemon.admin("GET", f"/apis/{other}/logs/{ids[0]}")
    assert status == 404

    status, headers, text = http("GET", daemon.admin_url + "/metrics",
                                 headers={"Authorization": f"Bearer {daemon.token}"})
    assert status == 200
    assert "mcpgated_exchange_records_dropped 0.0" in text.decode()
    daemon.stop()


async def _captured(url: str) -> None:
    async with Client(url, mode="legacy") as client:
        await client.call_tool("echo", {"message": "secret-free", "password": "hunter2"})


def test_payload_capture_with_redaction_and_live_metrics(daemon, everything):
    status, api = daemon.admin("POST", "/apis", {
        "name": "Captured", "version": "1", "contextPath": "/cap",
        "backend": f"http://127.0.0.1:{everything}/mcp",
        "plans": [{"name": "Keyless", "security": "KEY_LESS"}],
        "analytics": {"capture": "bodies", "maxPayloadBytes": 4096, "redactFields": ["message"]}})
    assert status == 201, api
    daemon.admin("POST", f"/apis/{api['id']}/_deploy")
    anyio.run(_captured, daemon.gateway + "/cap")

    status, headers, text = http("GET", daemon.admin_url + "/metrics",
                                 headers={"Authorization": f"Bearer {daemon.token}"})
    metrics = text.decode()
    assert (f'mcpgated_mcp_calls_total{{api="{api["id"]}",api_name="{api["name"]}",method="tools/call",'
            f'outcome="result",target="echo"}} 1.0') in metrics
    assert "mcpgated_mcp_call_latency_seconds_bucket" in metrics
    status, _, _ = http("GET", daemon.admin_url + "/metrics")
    assert status == 401

    daemon.stop()
    daemon.start()
    status, page = daemon.admin("GET", f"/apis/{api['id']}/logs?tool=echo")
    entry_id = page["data"][0]["id"]
    status, entry = daemon.admin("GET", f"/apis/{api['id']}/logs/{entry_id}")
    request = entry["requestPayload"]
    assert request["params"]["name"] == "echo"
    assert request["params"]["arguments"] == {"message": "[REDACTED]", "password": "[REDACTED]"}
    assert entry["responsePayload"][-1]["result"]["content"][0]["text"].startswith("Echo:")
    assert entry["requestHeaders"]["Accept"]
    assert "hunter2" not in json.dumps(entry)
    daemon.stop()


def test_logging_off_keeps_metrics_and_access_log_but_no_records(daemon, everything):
    """
    C{analytics.logging: false}: the API's calls reach the Prometheus
    metrics and the access log, and leave no exchange log records.
    """
    status, api = daemon.admin("POST", "/apis", {
        "name": "Quiet", "version": "1", "contextPath": "/quiet",
        "backend": f"http://127.0.0.1:{everything}/mcp",
        "plans": [{"name": "Keyless", "security": "KEY_LESS"}],
        "analytics": {"logging": False}})
    assert status == 201, api
    assert api["analytics"]["logging"] is False
    status, bad = daemon.admin("PUT", f"/apis/{api['id']}", {
        "name": "Quiet", "version": "1", "contextPath": "/quiet",
        "backend": f"http://127.0.0.1:{everything}/mcp",
        "plans": [{"name": "Keyless", "security": "KEY_LESS"}],
        "analytics": {"logging": "no"}})
    assert status == 400 and bad["field"] == "analytics.logging", bad
    daemon.admin("POST", f"/apis/{api['id']}/_deploy")
    anyio.run(_captured, daemon.gateway + "/quiet")

    status, headers, text = http("GET", daemon.admin_url + "/metrics",
                                 headers={"Authorization": f"Bearer {daemon.token}"})
    assert (f'mcpgated_mcp_calls_total{{api="{api["id"]}",api_name="Quiet",method="tools/call",'
            f'outcome="result",target="echo"}} 1.0') in text.decode()
    daemon.stop()  # flushes the batched writers
    daemon.start()
    status, page = daemon.admin("GET", f"/apis/{api['id']}/logs")
    assert status == 200 and page["data"] == [], page
    status, summary = daemon.admin("GET", f"/apis/{api['id']}/analytics")
    assert status == 200 and summary["totals"]["requests"] == 0, summary
    access = (daemon.folder / "log" / "access.log").read_text().splitlines()
    assert sum(1 for line in access if json.loads(line).get("apiId") == api["id"]) >= 3
    daemon.stop()


def test_exchange_log_file_has_the_same_records(tmp_path, everything):
    daemon = Daemon(tmp_path, extra="[analytics]\nexchange_log = on\n").start()
    api_id = daemon.deploy(f"http://127.0.0.1:{everything}/mcp")
    anyio.run(_captured, daemon.gateway + "/mcp-proxy")
    daemon.stop()
    lines = [json.loads(line) for line in (tmp_path / "log" / "exchanges.log").read_text().splitlines()]
    daemon.start()
    status, page = daemon.admin("GET", f"/apis/{api_id}/logs?limit=100")
    assert sorted((r["method"], r.get("target"), r["outcome"]) for r in lines) == sorted(
        (r["method"], r["target"], r["outcome"]) for r in page["data"])
    assert ("tools/call", "echo", "result") in {(r["method"], r.get("target"), r["outcome"]) for r in lines}
    assert all(r["api_id"] == api_id for r in lines)
    assert "hunter2" not in (tmp_path / "log" / "exchanges.log").read_text()  # metadata only
    daemon.stop()
