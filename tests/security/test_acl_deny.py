"""
Issue #14 item 10: deny rules in access control, against a real daemon and
server-everything.

Hiding one tool used to mean allow-listing every other, and a tools-only
rule emptied C{resources/list} and C{prompts/list}. Now a rule with
C{"deny": true} takes what it names away (deny wins over allow), in lists and
calls, whatever the spelling of the name (case, full-width forms, JSON
escapes, a name that is not a string), alone or in a batch; a dry run lets it
through and marks the record; and kinds no allow rule names stay open.
"""

from __future__ import annotations

import json
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import anyio
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from tests.security.judge_support import start_daemon, stop_daemon
from tests.support import Daemon, deploy, http

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
HIDE = {"rules": [{"deny": True, "tools": ["get-env"]}]}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, everything) -> Iterator[Tuple[Daemon, Dict[str, str]]]:
    daemon = start_daemon(tmp_path_factory.mktemp("acl-deny"))
    backend = f"http://127.0.0.1:{everything}/mcp"
    ids = {
        "hide": deploy(daemon, "/hide", backend, acl=HIDE)["id"],
        "dry": deploy(daemon, "/dry", backend, acl=dict(HIDE, dryRun=True))["id"],
        "glob": deploy(daemon, "/glob", backend, acl={"rules": [
            {"tools": ["get-*", "echo"]}, {"deny": True, "tools": ["GET-E*"]}]})["id"],
        "tools-only": deploy(daemon, "/tools-only", backend, acl={"rules": [{"tools": ["echo"]}]})["id"],
    }
    yield daemon, ids
    stop_daemon(daemon)


async def _look(url: str) -> Dict[str, Any]:
    seen: Dict[str, Any] = {}
    transport = streamable_http_client(url, http_client=create_mcp_http_client())
    async with Client(transport, mode="legacy") as client:
        seen["tools"] = sorted(t.name for t in (await client.list_tools()).tools)
        seen["resources"] = len((await client.list_resources()).resources)
        seen["prompts"] = sorted(p.name for p in (await client.list_prompts()).prompts)
        seen["echo"] = (await client.call_tool("echo", {"message": "hi"})).content[0].text
        try:
            result = await client.call_tool("get-env", {})
            seen["env"] = "called" if result.content else "empty"
        except MCPError as e:
            seen["env"] = (e.error.code, e.error.message)
    return seen


def _post(daemon: Daemon, path: str, body: Any, headers: Optional[Dict[str, str]] = None
          ) -> Tuple[int, Dict[str, str], bytes]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http("POST", daemon.gateway + path, raw=raw, headers=dict(ACCEPT, **(headers or {})))


def _messages(raw: bytes) -> List[Dict[str, Any]]:
    text = raw.decode()
    if text.lstrip().startswith(("{", "[")):
        decoded = json.loads(text)
        return decoded if isinstance(decoded, list) else [decoded]
    return [json.loads(line[5:]) for line in text.splitlines()
            if line.startswith("data:") and line[5:].strip()]


def _session(daemon: Daemon, path: str) -> Dict[str, str]:
    status, headers, raw = _post(daemon, path, {
        "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-03-26", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}}})
    assert status == 200, raw
    session = {"Mcp-Session-Id": headers["mcp-session-id"], "MCP-Protocol-Version": "2025-03-26"}
    _post(daemon, path, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    return session


def _call(name: Any, id_: int = 1) -> Dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": {"name": name, "arguments": {}}}


def test_hiding_one_tool_leaves_every_other_feature_as_it_was(gateway):
    daemon, _ = gateway
    open_ = anyio.run(_look, daemon.gateway + "/dry")  # a dry run changes nothing a client sees
    hidden = anyio.run(_look, daemon.gateway + "/hide")
    assert "get-env" in open_["tools"] and open_["env"] == "called"
    assert hidden["tools"] == [t for t in open_["tools"] if t != "get-env"]
    assert hidden["env"] == (-32602, "Unknown tool: get-env")
    assert hidden["echo"] == "Echo: hi"
    assert hidden["resources"] == open_["resources"] > 0
    assert hidden["prompts"] == open_["prompts"] != []


def test_a_tools_only_allow_rule_leaves_resources_and_prompts_open(gateway):
    daemon, _ = gateway
    seen = anyio.run(_look, daemon.gateway + "/tools-only")
    assert seen["tools"] == ["echo"]
    assert seen["env"] == (-32602, "Unknown tool: get-env")
    assert seen["resources"] > 0 and seen["prompts"] != []


@pytest.mark.parametrize("path", ["/hide", "/glob"])
@pytest.mark.parametrize("spelling", [
    "get-env", "GET-ENV", "Get-Env", "ｇｅｔ－ｅｎｖ",  # full-width on purpose
    "get-\\u0065nv", ["get-env"], {"name": "get-env"}, None,
])
def test_every_spelling_of_a_denied_tool_is_refused_by_the_gateway(gateway, path, spelling):
    daemon, _ = gateway
    session = _session(daemon, path)
    if isinstance(spelling, str) and "\\u" in spelling:
        body = json.dumps(_call("PLACEHOLDER")).replace("PLACEHOLDER", spelling).encode()
    else:
        body = json.dumps(_call(spelling)).encode()
    status, _, raw = _post(daemon, path, body, session)
    assert status == 200, raw
    (answer,) = _messages(raw)
    assert answer["id"] == 1 and "result" not in answer, answer
    assert answer["error"]["code"] == -32602
    assert answer["error"]["message"].startswith("Unknown tool: "), answer  # the gateway's words


def test_the_glob_hides_what_it_matches_and_no_more(gateway):
    daemon, _ = gateway
    seen = anyio.run(_look, daemon.gateway + "/glob")
    assert "get-sum" in seen["tools"] and "echo" in seen["tools"]
    assert not any(t.lower().startswith("get-e") for t in seen["tools"])
    assert seen["env"] == (-32602, "Unknown tool: get-env")


def test_a_batch_loses_only_its_denied_call(gateway):
    daemon, _ = gateway
    session = _session(daemon, "/hide")
    status, _, raw = _post(daemon, "/hide", [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
         "params": {"name": "echo", "arguments": {"message": "ok"}}},
        _call("get-env", 2), _call("GET-ENV", 3),
        {"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": {}}], session)
    assert status == 200
    answers = {m["id"]: m for m in _messages(raw)}
    assert answers[1]["result"]["content"][0]["text"] == "Echo: ok"
    assert answers[2]["error"] == {"code": -32602, "message": "Unknown tool: get-env"}
    assert answers[3]["error"] == {"code": -32602, "message": "Unknown tool: GET-ENV"}
    names = [t["name"] for t in answers[4]["result"]["tools"]]
    assert "echo" in names and "get-env" not in names


def test_a_dry_run_lets_the_call_through_and_marks_the_record(gateway):
    daemon, ids = gateway
    session = _session(daemon, "/dry")
    status, _, raw = _post(daemon, "/dry", _call("get-env", 7), session)
    (answer,) = _messages(raw)
    assert status == 200 and "result" in answer, answer
    deadline = time.monotonic() + 10
    rows: List[Dict[str, Any]] = []
    while time.monotonic() < deadline and not rows:  # records are written in batches
        rows = daemon.admin("GET", f"/apis/{ids['dry']}/logs?tool=get-env&limit=50")[1]["data"]
    assert rows and all(r["policy"] == "would_deny" for r in rows), rows
    assert {r["outcome"] for r in rows} == {"result"}


def test_deny_rules_are_validated_and_returned_by_the_admin_api(gateway):
    daemon, ids = gateway
    status, api = daemon.admin("GET", f"/apis/{ids['hide']}")
    assert status == 200 and api["acl"]["rules"] == HIDE["rules"]
    status, error = daemon.admin("PUT", f"/apis/{ids['hide']}", dict(
        {k: api[k] for k in ("name", "version", "contextPath", "backend", "plans")},
        acl={"rules": [{"deny": "yes", "tools": ["x"]}]}))
    assert status == 400 and error["field"] == "acl.rules[0].deny", error
