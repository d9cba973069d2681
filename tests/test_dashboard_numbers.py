"""
Issue #14 item 11: the numbers the dashboard shows, from a real daemon.

The error rate counted notifications (4 errors in 20 requests and 4
notifications showed 16.7 %, not 20 %); per-method analytics had no latency;
"top clients" grouped by client name only, so every SDK client was one
C{mcp} row; Prometheus series named the API by id only.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Dict, Iterator, Optional, Tuple

import pytest

from tests.support import Daemon, deploy, http, subscribe_key

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, everything) -> Iterator[Tuple[Daemon, Dict[str, str], str]]:
    daemon = Daemon(tmp_path_factory.mktemp("numbers")).start()
    backend = f"http://127.0.0.1:{everything}/mcp"
    ids = {"numbers": deploy(daemon, "/numbers", backend, name="Numbers")["id"],
           "clients": deploy(daemon, "/clients", backend, name="Clients", plans=[
               {"name": "Keyless", "security": "KEY_LESS"},
               {"name": "Gold", "security": "API_KEY"}])["id"]}
    _, key = subscribe_key(daemon, ids["clients"], "Gold", "acme-agent")
    yield daemon, ids, key["key"]
    daemon.stop()


def _post(daemon: Daemon, path: str, body: Any, headers: Dict[str, str]) -> Tuple[int, Dict[str, str]]:
    status, answer_headers, _ = http("POST", daemon.gateway + path, raw=json.dumps(body).encode(),
                                     headers=dict(ACCEPT, **headers))
    return status, answer_headers


def _session(daemon: Daemon, path: str, headers: Optional[Dict[str, str]] = None,
             client: str = "mcp") -> Dict[str, str]:
    """
    initialize and notifications/initialized: one request, one notification.
    """
    status, answer = _post(daemon, path, {
        "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-03-26", "capabilities": {},
            "clientInfo": {"name": client, "version": "1"}}}, headers or {})
    assert status == 200
    session = dict(headers or {}, **{"Mcp-Session-Id": answer["mcp-session-id"],
                                     "MCP-Protocol-Version": "2025-03-26"})
    assert _post(daemon, path, {"jsonrpc": "2.0", "method": "notifications/initialized"},
                 session)[0] == 202
    return session


def _call(daemon: Daemon, path: str, session: Dict[str, str], tool: str, n: int) -> None:
    status, _ = _post(daemon, path, {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {
        "name": tool, "arguments": {"message": "hi"} if tool == "echo" else {}}}, session)
    assert status == 200


def _summary(daemon: Daemon, api_id: str, requests: int) -> Dict[str, Any]:
    """
    The API's analytics once its records (written in batches) are in.
    """
    deadline = time.monotonic() + 10
    while True:
        status, summary = daemon.admin("GET", f"/apis/{api_id}/analytics")
        assert status == 200, summary
        if summary["totals"]["requests"] >= requests or time.monotonic() > deadline:
            return summary


def test_error_rate_is_over_requests_and_methods_have_latency(gateway):
    daemon, ids, _ = gateway
    session = _session(daemon, "/numbers")
    for n in range(15):
        _call(daemon, "/numbers", session, "echo", n + 1)
    for n in range(4):
        _call(daemon, "/numbers", session, "no-such-tool", n + 100)  # tool_error
    for _ in range(3):
        assert _post(daemon, "/numbers", {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"},
                     session)[0] == 202
    summary = _summary(daemon, ids["numbers"], 20)
    totals = summary["totals"]
    assert (totals["requests"], totals["notifications"], totals["errors"]) == (20, 4, 4)
    assert totals["errorRate"] == 0.2  # was 4 / 24 = 16.7 %
    points = summary["timeSeries"]["points"]
    assert sum(p["requests"] for p in points) == 20
    assert sum(p["notifications"] for p in points) == 4
    assert sum(p["errors"] for p in points) == 4

    methods = {m["method"]: m for m in summary["byMethod"]}
    call = methods["tools/call"]
    assert (call["count"], call["errors"], call["errorRate"]) == (19, 4, round(4 / 19, 4))
    latency = call["latencyMs"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
    assert methods["initialize"]["latencyMs"]["p50"] > 0
    quiet = methods["notifications/roots/list_changed"]
    assert (quiet["count"], quiet["errors"], quiet["errorRate"]) == (3, 0, 0.0)
    assert quiet["latencyMs"] == {"p50": None, "p90": None, "p99": None}


def test_top_clients_are_told_apart_by_application_then_name_and_address(gateway):
    daemon, ids, key = gateway
    anonymous = _session(daemon, "/clients")
    acme = _session(daemon, "/clients", {"X-Gravitee-Api-Key": key})
    other = _session(daemon, "/clients", client="other-agent")
    for n in range(3):
        _call(daemon, "/clients", acme, "echo", n + 1)
    _call(daemon, "/clients", anonymous, "echo", 1)
    summary = _summary(daemon, ids["clients"], 7)
    assert summary["totals"]["requests"] == 7
    top = [{k: c[k] for k in ("application", "clientName", "address", "count")}
           for c in summary["topClients"]]
    assert top == [
        {"application": "acme-agent", "clientName": "mcp", "address": "127.0.0.1", "count": 4},
        {"application": None, "clientName": "mcp", "address": "127.0.0.1", "count": 2},
        {"application": None, "clientName": "other-agent", "address": "127.0.0.1", "count": 1},
    ]
    assert [c["client"] for c in summary["topClients"]] == [
        "acme-agent · mcp · 127.0.0.1", "mcp · 127.0.0.1", "other-agent · 127.0.0.1"]
    assert other  # its session counted once: its initialize


def test_prometheus_series_carry_the_api_name(gateway):
    daemon, ids, _ = gateway
    session = _session(daemon, "/numbers")
    _call(daemon, "/numbers", session, "echo", 1)
    status, _, text = http("GET", daemon.admin_url + "/metrics",
                           headers={"Authorization": f"Bearer {daemon.token}"})
    assert status == 200
    metrics = text.decode()
    api = ids["numbers"]
    for series in ("mcpgated_mcp_calls_total", "mcpgated_http_requests_total",
                   "mcpgated_mcp_call_latency_seconds_count"):
        assert re.search(rf'^{series}\{{api="{api}",api_name="Numbers",', metrics, re.M), series
    # one name per API: no series of this API without it, or under another
    names = set(re.findall(rf'^mcpgated_\w+\{{api="{api}",api_name="([^"]*)"', metrics, re.M))
    assert names == {"Numbers"}
    assert not re.search(rf'^mcpgated_\w+\{{api="{api}",(?!api_name=)', metrics, re.M)
