"""
The gateway as the security boundary of an open MCP server: plans selected
by credentials, MCP access control seen by real SDK clients, bypass
attempts refused, rate limits.
"""

from __future__ import annotations

import json
from typing import Dict, List, Optional

import anyio
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from tests.support import Daemon, http, subscribe_key

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _api(backend: str) -> dict:
    return {
        "name": "Guarded", "version": "1", "contextPath": "/guarded", "backend": backend,
        "plans": [
            {"name": "Free", "security": "KEY_LESS",
             "acl": {"rules": [{"tools": ["echo"]}]}},
            {"name": "Gold", "security": "API_KEY",
             "rateLimit": {"toolCalls": 5, "periodSeconds": 3600},
             "acl": {"rules": [{"tools": ["echo", "get-*"],
                                "resources": ["demo://resource/static/document/*"],
                                "prompts": ["simple-prompt"]}]}},
        ],
        # API-wide: listing is allowed to everyone, filtered by the rules above
        "acl": {"rules": [{"methods": ["completion/complete"]}]},
    }


@pytest.fixture
def guarded(daemon, everything):
    status, api = daemon.admin("POST", "/apis", _api(f"http://127.0.0.1:{everything}/mcp"))
    assert status == 201, api
    assert daemon.admin("POST", f"/apis/{api['id']}/_deploy")[0] == 200
    sub, key = subscribe_key(daemon, api["id"], "Gold", "acme-agent")
    return daemon, api, sub, key["key"], key["id"]


async def _look(url: str, headers: Optional[Dict[str, str]]) -> dict:
    seen: dict = {}
    transport = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
    async with Client(transport, mode="legacy") as client:
        seen["tools"] = sorted(t.name for t in (await client.list_tools()).tools)
        seen["echo"] = (await client.call_tool("echo", {"message": "hi"})).content[0].text
        try:
            result = await client.call_tool("get-sum", {"a": 1, "b": 2})
            seen["sum"] = result.content[0].text
        except MCPError as e:
            seen["sum_error"] = (e.error.code, e.error.message)
        seen["resources"] = [str(r.uri) for r in (await client.list_resources()).resources]
        seen["prompts"] = sorted(p.name for p in (await client.list_prompts()).prompts)
        try:
            await client.get_prompt("complex-prompt", {"temperature": "1"})
            seen["complex"] = "allowed"
        except MCPError as e:
            seen["complex"] = e.error.message
    return seen


def test_plans_see_different_tools_and_calls(guarded):
    daemon, api, sub, key, key_id = guarded
    url = daemon.gateway + "/guarded"

    free = anyio.run(_look, url, None)
    assert free["tools"] == ["echo"]
    assert free["echo"] == "Echo: hi"
    assert free["sum_error"] == (-32602, "Unknown tool: get-sum")
    # Free's rules name only tools: resources and prompts stay as the backend lists them
    assert len(free["resources"]) > 1 and "args-prompt" in free["prompts"]

    gold = anyio.run(_look, url, {"X-Gravitee-Api-Key": key})
    assert "get-sum" in gold["tools"] and "echo" in gold["tools"]
    assert not any(t.startswith("trigger") for t in gold["tools"])
    assert gold["sum"] == "The sum of 1 and 2 is 3."
    assert gold["resources"] and all(r.startswith("demo://resource/static/document/")
                                     for r in gold["resources"])
    assert gold["prompts"] == ["simple-prompt"]
    assert gold["complex"] == "Unknown prompt: complex-prompt"

    # the key never reaches the backend or the log; the record names the consumer
    daemon.stop()
    daemon.start()
    status, page = daemon.admin("GET", f"/apis/{api['id']}/logs?tool=get-sum")
    rows = page["data"]
    assert {(r["plan"], r["outcome"]) for r in rows} == {("Free", "denied"), ("Gold", "result")}
    gold_row = next(r for r in rows if r["plan"] == "Gold")
    assert gold_row["consumer"] == "acme-agent" and gold_row["subscription"] == sub["id"]
    logs = "".join(p.read_text() for p in (daemon.folder / "log").iterdir())
    assert key not in logs


def _post(daemon: Daemon, body, headers: Optional[Dict[str, str]] = None, path: str = "/guarded"):
    status, h, raw = http("POST", daemon.gateway + path, raw=json.dumps(body).encode()
                          if not isinstance(body, bytes) else body,
                          headers=dict(ACCEPT, **(headers or {})))
    return status, h, raw


def _messages(raw: bytes) -> List[dict]:
    text = raw.decode()
    if text.lstrip().startswith(("{", "[")):
        decoded = json.loads(text)
        return decoded if isinstance(decoded, list) else [decoded]
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:") and line[5:].strip()]


def _session(daemon: Daemon, headers: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    status, h, raw = _post(daemon, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}},
        headers)
    assert status == 200, raw
    session = dict(headers or {}, **{"Mcp-Session-Id": h["mcp-session-id"],
                                     "MCP-Protocol-Version": "2025-03-26"})
    _post(daemon, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    return session


def test_bypass_attempts_are_refused(guarded):
    daemon, api, sub, key, key_id = guarded
    session = _session(daemon)

    # a forbidden call inside a batch is answered alone; the allowed one runs
    status, _, raw = _post(daemon, [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "ok"}}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "get-env", "arguments": {}}},
    ], session)
    assert status == 200
    answers = {m["id"]: m for m in _messages(raw)}
    assert answers[1]["result"]["content"][0]["text"] == "Echo: ok"
    assert answers[2]["error"] == {"code": -32602, "message": "Unknown tool: get-env"}

    # name case and Unicode variants are not the allowed name
    for name in ("ECHO", "Echo", "ｅｃｈｏ", "echo\u200b"):
        status, _, raw = _post(daemon, {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                                        "params": {"name": name, "arguments": {"message": "x"}}}, session)
        assert status == 200 and _messages(raw)[0]["error"]["code"] == -32602, name

    # a 2026 routing header must say what the body says
    status, _, raw = _post(daemon, {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                                    "params": {"name": "get-env", "arguments": {}}},
                           dict(session, **{"Mcp-Method": "tools/call", "Mcp-Name": "echo"}))
    assert status == 400 and json.loads(raw)["error"]["code"] == -32020
    status, _, raw = _post(daemon, {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                                    "params": {"name": "get-env", "arguments": {}}},
                           dict(session, **{"Mcp-Name": "=?base64?ZWNobw==?="}))
    assert status == 400

    # duplicate keys: what we check must be what the backend reads
    status, _, raw = _post(daemon, b'{"jsonrpc":"2.0","id":6,"method":"tools/call",'
                                   b'"params":{"name":"echo","name":"get-env","arguments":{}}}', session)
    assert status == 400

    # reusing one id for an allowed and a forbidden call in a batch
    status, _, raw = _post(daemon, [
        {"jsonrpc": "2.0", "id": 7, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "get-env", "arguments": {}}},
    ], session)
    assert status == 400

    # two credentials for different plans
    status, _, raw = _post(daemon, {"jsonrpc": "2.0", "id": 8, "method": "tools/list"},
                           dict(session, **{"X-Gravitee-Api-Key": key, "Authorization": "Bearer x"}))
    assert status in (200, 400)  # no token plan here: Authorization is not a gateway credential

    # a list split over SSE events is still filtered: tools/list on the POST stream
    status, _, raw = _post(daemon, {"jsonrpc": "2.0", "id": 9, "method": "tools/list"}, session)
    tools = [t["name"] for m in _messages(raw) if m.get("id") == 9 for t in m["result"]["tools"]]
    assert tools == ["echo"]


def test_revoked_key_is_refused_and_rate_limit_answers_429(guarded):
    daemon, api, sub, key, key_id = guarded
    gold = _session(daemon, {"X-Gravitee-Api-Key": key})
    for i in range(5):
        status, _, raw = _post(daemon, {"jsonrpc": "2.0", "id": 10 + i, "method": "tools/call",
                                        "params": {"name": "echo", "arguments": {"message": "x"}}}, gold)
        assert status == 200, raw
    status, headers, raw = _post(daemon, {"jsonrpc": "2.0", "id": 99, "method": "tools/call",
                                          "params": {"name": "echo", "arguments": {"message": "x"}}}, gold)
    assert status == 429
    assert 0 < int(headers["Retry-After"]) <= 3600
    assert json.loads(raw)["id"] == 99

    status, _ = daemon.admin("DELETE", f"/apis/{api['id']}/subscriptions/{sub['id']}/keys/{key_id}")
    assert status in (200, 204)
    status, _, raw = _post(daemon, {"jsonrpc": "2.0", "id": 100, "method": "tools/list"},
                           {"X-Gravitee-Api-Key": key})
    assert status == 401
    assert "unknown, expired or revoked" in json.loads(raw)["error"]["message"]
    status, _, raw = _post(daemon, {"jsonrpc": "2.0", "id": 101, "method": "tools/list"},
                           {"X-Gravitee-Api-Key": "made-up"})
    assert status == 401


def test_dry_run_reports_what_it_would_deny(daemon, everything):
    api = _api(f"http://127.0.0.1:{everything}/mcp")
    api["contextPath"] = "/dry"
    api["acl"]["dryRun"] = True
    status, created = daemon.admin("POST", "/apis", api)
    assert status == 201, created
    daemon.admin("POST", f"/apis/{created['id']}/_deploy")
    status, h, raw = _post(daemon, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}},
        path="/dry")
    session = {"Mcp-Session-Id": h["mcp-session-id"], "MCP-Protocol-Version": "2025-03-26"}
    _post(daemon, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session, path="/dry")
    status, _, raw = _post(daemon, {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                    "params": {"name": "get-sum", "arguments": {"a": 1, "b": 1}}},
                           session, path="/dry")
    assert status == 200
    assert _messages(raw)[-1]["result"]["content"][0]["text"] == "The sum of 1 and 1 is 2."
    status, _, raw = _post(daemon, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, session, path="/dry")
    assert "get-sum" in [t["name"] for m in _messages(raw) if m.get("id") == 2 for t in m["result"]["tools"]]
    daemon.stop()
    daemon.start()
    status, page = daemon.admin("GET", f"/apis/{created['id']}/logs?tool=get-sum")
    assert [(r["outcome"], r["policy"]) for r in page["data"]] == [("result", "would_deny")]
