"""
An API's C{protocol} settings through a real daemon (L{mcpgated.proxy.bridge}):
the versions accepted from clients, refused with the spec's errors, with
the official SDK client (which speaks 2026-07-28 and falls back) and raw
HTTP, in front of server-everything (2025-11-25) and a 2026-07-28 SDK server.
"""

from __future__ import annotations

import json
from http.client import HTTPConnection
from typing import Any, Dict, List, Tuple
from urllib.parse import urlsplit

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from mcpgated.proxy.bridge import admit_version
from tests.support import deploy, http, script_file, start_python_server
from tests.test_proxy_mcp import MODERN_SERVER

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
HANDSHAKE_ONLY = {"clientVersions": ["2025-06-18"]}
MODERN_ONLY = {"clientVersions": ["2026-07-28"], "backendVersion": "2026-07-28"}
META = "io.modelcontextprotocol/"


@pytest.fixture
def modern(tmp_path):
    proc, port = start_python_server(script_file(tmp_path, "modern_server.py", MODERN_SERVER))
    yield port
    proc.stop()


def _initialize(version: str, id: int = 1) -> Dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {},
        "clientInfo": {"name": "raw-test", "version": "1"}}}


def _modern(method: str, id: int = 7, version: str = "2026-07-28") -> Tuple[Dict[str, Any], Dict[str, str]]:
    body = {"jsonrpc": "2.0", "id": id, "method": method, "params": {"_meta": {
        META + "protocolVersion": version, META + "clientCapabilities": {},
        META + "clientInfo": {"name": "raw-test", "version": "1"}}}}
    return body, dict(ACCEPT, **{"MCP-Protocol-Version": version, "Mcp-Method": method})


def _result(body: bytes) -> Dict[str, Any]:
    """
    The JSON-RPC message of a JSON or SSE answer.
    """
    text = body.decode()
    if text.lstrip().startswith("{"):
        return json.loads(text)
    datas = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
    return json.loads([d for d in datas if d][-1])


class _Stream:
    """
    An SSE stream that stays open, read message by message.
    """

    def __init__(self, url: str, headers: Dict[str, str]) -> None:
        parts = urlsplit(url)
        self.connection = HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.connection.request("GET", parts.path, headers=headers)
        self.response = self.connection.getresponse()
        assert self.response.status == 200, self.response.read()
        assert self.response.getheader("Content-Type", "").startswith("text/event-stream")

    def next(self) -> Dict[str, Any]:
        while True:
            line = self.response.fp.readline().decode()
            assert line, "the stream ended"
            if line.startswith("data:") and line[5:].strip():
                return json.loads(line[5:])

    def close(self) -> None:
        self.connection.close()


def _first_event(url: str, headers: Dict[str, str]) -> Dict[str, Any]:
    stream = _Stream(url, headers)
    try:
        return stream.next()
    finally:
        stream.close()


GROWING_SERVER = MODERN_SERVER.replace("server.run(", """
from mcp.shared.subscriptions import ToolsListChanged

@server.tool()
async def grow() -> str:
    \"\"\"Say the tool list changed.\"\"\"
    await server._subscriptions.publish(ToolsListChanged())
    return "grown"

server.run(""")


@pytest.fixture
def growing(tmp_path):
    proc, port = start_python_server(script_file(tmp_path, "growing_server.py", GROWING_SERVER))
    yield port
    proc.stop()


# --- the admin API -------------------------------------------------------------------------


INVALID = [
    ({"clientVersions": []}, "protocol.clientVersions"),
    ({"clientVersions": "2025-06-18"}, "protocol.clientVersions"),
    ({"clientVersions": ["2025-06-18", "2025-13-01"]}, "protocol.clientVersions[1]"),
    ({"clientVersions": ["2025-06-18", "2025-06-18"]}, "protocol.clientVersions[1]"),
    ({"clientVersions": ["2025-06-18"], "backendVersion": "3"}, "protocol.backendVersion"),
    ({"clientVersions": ["2025-06-18"], "versions": []}, "protocol.versions"),
    (["2025-06-18"], "protocol"),
]


def test_invalid_protocol_settings_are_refused_naming_the_field(daemon):
    for protocol, field in INVALID:
        status, body = daemon.admin("POST", "/apis", {
            "name": "p", "version": "1", "contextPath": "/p", "backend": "http://127.0.0.1:1/mcp",
            "plans": [{"name": "Keyless", "security": "KEY_LESS"}], "protocol": protocol})
        assert (status, body["field"]) == (400, field), body
        assert field in body["error"]


def test_protocol_settings_round_trip_and_absent_means_pass_through(daemon):
    with_settings = deploy(daemon, "/gated", "http://127.0.0.1:1/mcp", protocol=HANDSHAKE_ONLY)
    assert with_settings["protocol"] == {"clientVersions": ["2025-06-18"], "backendVersion": None}
    status, got = daemon.admin("GET", f"/apis/{with_settings['id']}")
    assert status == 200 and got["protocol"] == with_settings["protocol"]
    plain = deploy(daemon, "/plain", "http://127.0.0.1:1/mcp")
    assert "protocol" not in plain
    cleared = dict(got, protocol=None)
    status, put = daemon.admin("PUT", f"/apis/{got['id']}", cleared)
    assert status == 200 and "protocol" not in put, put


# --- a handshake-only API in front of server-everything ---------------------------------------


def test_raw_http_versions_outside_the_list(daemon, everything):
    deploy(daemon, "/old", f"http://127.0.0.1:{everything}/mcp", protocol=HANDSHAKE_ONLY)
    url = daemon.gateway + "/old"

    # a 2026-07-28 request: 400, -32022, the supported list, its own id
    body, headers = _modern("server/discover")
    status, _, answer = http("POST", url, body, headers)
    error = json.loads(answer)
    assert status == 400
    assert error["id"] == 7
    assert error["error"]["code"] == -32022
    assert error["error"]["data"]["supported"] == ["2025-06-18"]
    assert error["error"]["data"]["requested"] == "2026-07-28"

    # initialize proposing 2025-11-25 is offered 2025-06-18, which the backend answers with
    status, headers_out, answer = http("POST", url, _initialize("2025-11-25"), ACCEPT)
    assert status == 200
    assert _result(answer)["result"]["protocolVersion"] == "2025-06-18"
    session = headers_out["mcp-session-id"]

    common = dict(ACCEPT, **{"Mcp-Session-Id": session})
    list_tools = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    # a later request of a version not accepted (absent header: 2025-03-26): 400
    for version in ("2025-11-25", None):
        sent = dict(common, **({"MCP-Protocol-Version": version} if version else {}))
        status, _, answer = http("POST", url, list_tools, sent)
        error = json.loads(answer)
        assert status == 400, answer
        assert error["id"] == 2 and error["error"]["code"] == -32600
        assert "2025-06-18" in error["error"]["message"]
    status, _, answer = http("POST", url, list_tools, dict(common, **{"MCP-Protocol-Version": "2025-06-18"}))
    assert status == 200
    assert "echo" in [t["name"] for t in _result(answer)["result"]["tools"]]


async def _sdk(url: str, mode: str = "auto", tool: str = "echo",
               arguments: Any = None) -> Tuple[str, str]:
    async with Client(url, mode=mode) as client:  # type: ignore[arg-type]
        result = await client.call_tool(tool, arguments or {"message": "bridged"})
        return str(client.protocol_version), result.content[0].text


def test_sdk_client_falls_back_to_the_accepted_handshake_version(daemon, everything):
    deploy(daemon, "/old", f"http://127.0.0.1:{everything}/mcp", protocol=HANDSHAKE_ONLY)
    protocol, echo = anyio.run(_sdk, daemon.gateway + "/old")
    assert (protocol, echo) == ("2025-06-18", "Echo: bridged")
    # direct, the same client and server agree on a newer version
    direct, _ = anyio.run(_sdk, f"http://127.0.0.1:{everything}/mcp")
    assert direct == "2025-11-25"


def test_access_control_and_rate_limits_apply_to_a_versioned_api(daemon, everything):
    deploy(daemon, "/old", f"http://127.0.0.1:{everything}/mcp", protocol=HANDSHAKE_ONLY,
           plans=[{"name": "Free", "security": "KEY_LESS",
                   "rateLimit": {"toolCalls": 2, "periodSeconds": 3600},
                   "acl": {"rules": [{"tools": ["echo"]}]}}])
    url = daemon.gateway + "/old"
    status, headers_out, _ = http("POST", url, _initialize("2025-11-25"), ACCEPT)
    assert status == 200
    common = dict(ACCEPT, **{"Mcp-Session-Id": headers_out["mcp-session-id"],
                             "MCP-Protocol-Version": "2025-06-18"})

    def call(tool: str, id: int) -> Tuple[int, Dict[str, Any]]:
        status, _, answer = http("POST", url, {"jsonrpc": "2.0", "id": id, "method": "tools/call",
                                               "params": {"name": tool, "arguments": {"a": 1, "b": 2}}},
                                 common)
        return status, _result(answer)

    status, denied = call("get-sum", 1)
    assert "error" in denied and denied["id"] == 1, denied
    assert "get-sum" in denied["error"]["message"]
    # the denied call counted: the limit of 2 leaves one echo
    status, echoed = call("echo", 2)
    assert status == 200 and "result" in echoed, echoed
    status, limited = call("echo", 3)
    assert status == 429 and limited["error"]["data"]["httpStatus"] == 429, limited


def _errors(url: str) -> List[MCPError]:
    """
    The MCP errors a handshake-only SDK client fails with (in the task
    groups' exception groups).
    """
    try:
        anyio.run(_sdk, url, "legacy", "add", {"a": 2, "b": 3})
    except Exception as e:  # noqa: BLE001 -- flattened below
        found: List[MCPError] = []
        pending: List[BaseException] = [e]
        while pending:
            error = pending.pop()
            if isinstance(error, MCPError):
                found.append(error)
            pending.extend(getattr(error, "exceptions", ()))
        return found
    raise AssertionError("the client was served")


# --- a 2026-07-28-only API in front of a sessionless SDK server --------------------------------


def test_modern_only_api_serves_the_sdk_and_refuses_the_handshake(daemon, modern):
    deploy(daemon, "/new", f"http://127.0.0.1:{modern}/mcp", protocol=MODERN_ONLY)
    url = daemon.gateway + "/new"
    assert anyio.run(_sdk, url, "auto", "add", {"a": 2, "b": 3}) == ("2026-07-28", "5")
    status, _, answer = http("POST", url, _initialize("2025-11-25"), ACCEPT)
    error = json.loads(answer)
    assert status == 400
    assert (error["id"], error["error"]["code"]) == (1, -32602)
    assert error["error"]["message"] == "Unsupported protocol version"
    assert error["error"]["data"]["supported"] == ["2026-07-28"]
    assert error["error"]["data"]["requested"] == "2025-11-25"

    # a handshake-only SDK client gets that error, not a hang
    errors = _errors(url)
    assert [(e.error.code, e.error.message) for e in errors] == [(-32602, "Unsupported protocol version")]

    body, headers = _modern("tools/list")
    status, _, answer = http("POST", url, body, headers)
    assert status == 200 and [t["name"] for t in _result(answer)["result"]["tools"]] == ["add"]


def test_the_stage_is_imported_by_the_resource():
    from mcpgated.proxy import resource

    assert resource.admit_version is admit_version


# --- handshake-era clients bridged to a 2026-07-28 backend -------------------------------------

TO_MODERN = {"clientVersions": ["2025-06-18", "2025-11-25"], "backendVersion": "2026-07-28"}


async def _legacy_session(url: str, mode: str) -> Dict[str, Any]:
    seen: Dict[str, Any] = {}
    async with Client(url, mode=mode) as client:  # type: ignore[arg-type]
        seen["protocol"] = client.protocol_version
        seen["server"] = client.server_info.name if client.server_info else None
        seen["tools"] = [t.name for t in (await client.list_tools()).tools]
        seen["sum"] = (await client.call_tool("add", {"a": 2, "b": 40})).content[0].text
        if seen["protocol"] != "2026-07-28":  # ping was removed in 2026-07-28
            await client.send_ping()  # answered by the gateway for a bridged session
    return seen


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_sdk_handshake_client_bridged_to_a_sessionless_backend(daemon, modern, mode: str):
    deploy(daemon, "/bridged", f"http://127.0.0.1:{modern}/mcp", protocol=TO_MODERN)
    seen = anyio.run(_legacy_session, daemon.gateway + "/bridged", mode)
    assert seen == {"protocol": "2025-11-25", "server": "modern-test-server", "tools": ["add"],
                    "sum": "42"}


def test_raw_handshake_session_bridged(daemon, modern):
    deploy(daemon, "/bridged", f"http://127.0.0.1:{modern}/mcp", protocol=TO_MODERN)
    url = daemon.gateway + "/bridged"
    status, headers_out, answer = http("POST", url, _initialize("2025-06-18"), ACCEPT)
    assert status == 200, answer
    result = _result(answer)["result"]
    assert result["protocolVersion"] == "2025-06-18"
    assert result["serverInfo"]["name"] == "modern-test-server"
    assert "tools" in result["capabilities"]
    session = headers_out["mcp-session-id"]
    common = dict(ACCEPT, **{"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"})

    status, _, answer = http("POST", url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, common)
    assert (status, answer) == (202, b"")
    status, _, answer = http("POST", url, {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                           "params": {"name": "add", "arguments": {"a": 1, "b": 2}}}, common)
    assert status == 200 and _result(answer)["result"]["content"][0]["text"] == "3", answer
    status, _, answer = http("POST", url, {"jsonrpc": "2.0", "id": 3, "method": "ping"}, common)
    assert (status, json.loads(answer)) == (200, {"jsonrpc": "2.0", "id": 3, "result": {}})
    status, _, answer = http("POST", url, {"jsonrpc": "2.0", "id": 4, "method": "logging/setLevel",
                                           "params": {"level": "info"}}, common)
    error = json.loads(answer)["error"]
    assert status == 200 and error["code"] == -32601 and "cannot be bridged" in error["message"]

    # the session id is the gateway's: another is not found, none is a 400, GET has no stream
    status, _, answer = http("POST", url, {"jsonrpc": "2.0", "id": 5, "method": "tools/list"},
                             dict(common, **{"Mcp-Session-Id": session[:-2] + "AA"}))
    assert status == 404 and json.loads(answer)["error"]["code"] == -32001
    no_session = {k: v for k, v in common.items() if k != "Mcp-Session-Id"}
    status, _, _ = http("POST", url, {"jsonrpc": "2.0", "id": 6, "method": "tools/list"}, no_session)
    assert status == 400
    session_headers = {"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"}
    # the GET stream is the backend's subscriptions/listen stream
    first = _first_event(url, dict(session_headers, Accept="text/event-stream"))
    assert first["method"] == "notifications/subscriptions/acknowledged", first
    assert first["params"]["notifications"].get("toolsListChanged") is True, first
    # the 2026-07-28 backend's JSON-RPC errors (on its 404, 400) reach the client on a 200
    status, _, answer = http("POST", url, {"jsonrpc": "2.0", "id": 10, "method": "made/up"},
                             common)
    assert status == 200 and json.loads(answer)["error"]["code"] == -32601, answer
    status, _, _ = http("DELETE", url, headers=session_headers)
    assert status == 200
    status, _, _ = http("DELETE", url, headers=dict(session_headers, **{"Mcp-Session-Id": "x"}))
    assert status == 404
    # an ended session is not found any more
    status, _, answer = http("POST", url, {"jsonrpc": "2.0", "id": 11, "method": "tools/list"},
                             common)
    assert status == 404 and json.loads(answer)["error"]["code"] == -32001

    status, _, answer = http("POST", url, raw=b'{"jsonrpc": "2.0", "id": 9, "method": ',
                             headers=dict(common, **{"Content-Type": "application/json"}))
    assert status == 400 and json.loads(answer)["error"]["code"] == -32700

    # capabilities too large for a session id: refused at initialize, not lost later
    huge = _initialize("2025-11-25", id=8)
    huge["params"]["capabilities"] = {"experimental": {"x": "y" * 3000}}
    status, _, answer = http("POST", url, huge, ACCEPT)
    error = json.loads(answer)
    assert (status, error["id"], error["error"]["code"]) == (400, 8, -32602)
    assert "too large" in error["error"]["message"]


def _bridged_call(url: str, version: str = "2025-11-25") -> Tuple[int, Dict[str, Any]]:
    """
    A session bridged to the 2026-07-28 backend, and one call of its add tool.
    """
    status, headers_out, _ = http("POST", url, _initialize(version), ACCEPT)
    assert status == 200
    common = dict(ACCEPT, **{"Mcp-Session-Id": headers_out["mcp-session-id"],
                             "MCP-Protocol-Version": version})
    status, _, answer = http("POST", url, {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                           "params": {"name": "add", "arguments": {"a": 1, "b": 2}}}, common)
    return status, _result(answer)


def test_access_control_rate_limits_and_the_exchange_log_on_bridged_requests(daemon, modern):
    backend = f"http://127.0.0.1:{modern}/mcp"
    guarded = deploy(daemon, "/guarded", backend, protocol=TO_MODERN, plans=[
        {"name": "Free", "security": "KEY_LESS", "acl": {"rules": [{"tools": ["echo"]}]}}])
    limited = deploy(daemon, "/limited", backend, protocol=TO_MODERN, plans=[
        {"name": "Free", "security": "KEY_LESS", "rateLimit": {"toolCalls": 1, "periodSeconds": 3600}}])

    status, denied = _bridged_call(daemon.gateway + "/guarded")
    assert "error" in denied and "add" in denied["error"]["message"], denied
    status, first = _bridged_call(daemon.gateway + "/limited")
    assert status == 200 and first["result"]["content"][0]["text"] == "3", first
    status, second = _bridged_call(daemon.gateway + "/limited")
    assert status == 429 and second["error"]["data"]["httpStatus"] == 429, second

    daemon.stop()  # the records written
    daemon.start()
    outcomes = {}
    for api in (guarded, limited):
        status, page = daemon.admin("GET", f"/apis/{api['id']}/logs?tool=add")
        assert status == 200
        outcomes[api["contextPath"]] = sorted(
            (r["outcome"], r.get("protocolVersion"), r.get("backendVersion")) for r in page["data"])
    # the client's version (from the gateway's initialize answer), and the backend's where
    # the gateway spoke to it (not for the calls it refused itself)
    assert outcomes == {"/guarded": [("denied", "2025-11-25", None)],
                        "/limited": [("rate_limited", "2025-11-25", None),
                                     ("result", "2025-11-25", "2026-07-28")]}


def test_a_backend_without_server_discover_gets_a_clear_502(daemon, everything):
    deploy(daemon, "/wrong", f"http://127.0.0.1:{everything}/mcp", protocol=TO_MODERN)
    status, _, answer = http("POST", daemon.gateway + "/wrong", _initialize("2025-11-25"), ACCEPT)
    error = json.loads(answer)
    assert status == 502 and error["id"] == 1
    assert "server/discover" in error["error"]["message"]


def test_both_eras_on_one_api_in_front_of_a_sessionless_backend(daemon, modern):
    deploy(daemon, "/both", f"http://127.0.0.1:{modern}/mcp",
           protocol={"clientVersions": ["2025-11-25", "2026-07-28"], "backendVersion": "2026-07-28"})
    url = daemon.gateway + "/both"
    modern_client = anyio.run(_legacy_session, url, "auto")  # speaks 2026-07-28, passed through
    handshake_client = anyio.run(_legacy_session, url, "legacy")  # bridged
    assert modern_client["protocol"] == "2026-07-28"
    assert handshake_client["protocol"] == "2025-11-25"
    for seen in (modern_client, handshake_client):
        assert (seen["server"], seen["tools"], seen["sum"]) == ("modern-test-server", ["add"], "42")


def test_the_get_stream_carries_the_backends_list_changes(daemon, growing):
    deploy(daemon, "/bridged", f"http://127.0.0.1:{growing}/mcp", protocol=TO_MODERN)
    url = daemon.gateway + "/bridged"
    status, headers_out, _ = http("POST", url, _initialize("2025-11-25"), ACCEPT)
    assert status == 200
    common = {"Mcp-Session-Id": headers_out["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"}
    stream = _Stream(url, dict(common, Accept="text/event-stream"))
    try:
        assert stream.next()["method"] == "notifications/subscriptions/acknowledged"
        status, _, answer = http("POST", url, {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                               "params": {"name": "grow", "arguments": {}}},
                                 dict(ACCEPT, **common))
        assert status == 200 and _result(answer)["result"]["content"][0]["text"] == "grown"
        assert stream.next()["method"] == "notifications/tools/list_changed"
    finally:
        stream.close()


@pytest.fixture
def modern_pair(tmp_path):
    script = script_file(tmp_path, "modern_server.py", MODERN_SERVER)
    started = [start_python_server(script) for _ in range(2)]
    yield [port for _, port in started]
    for proc, _ in started:
        proc.stop()


async def _many_calls(url: str) -> List[str]:
    async with Client(url, mode="legacy") as client:  # type: ignore[arg-type]
        return [(await client.call_tool("add", {"a": n, "b": 1})).content[0].text
                for n in range(6)]


def test_a_bridged_session_spans_the_endpoints_of_a_sessionless_backend(daemon, modern_pair):
    deploy(daemon, "/bridged-lb", None, protocol=TO_MODERN,  # type: ignore[arg-type]
           endpoints=[{"url": f"http://127.0.0.1:{port}/mcp", "weight": 1} for port in modern_pair])
    # the gateway's own session id is no endpoint's: every call goes to any endpoint
    assert anyio.run(_many_calls, daemon.gateway + "/bridged-lb") == [str(n + 1) for n in range(6)]


def test_an_input_required_result_reaches_a_handshake_client_as_a_clear_error(daemon):
    from tests.test_conformance_bridge import start_server

    proc, port = start_server("modern")
    try:
        deploy(daemon, "/asks", f"http://127.0.0.1:{port}/mcp", protocol=TO_MODERN)
        url = daemon.gateway + "/asks"
        status, headers_out, answer = http("POST", url, _initialize("2025-11-25"), ACCEPT)
        assert status == 200, answer
        common = dict(ACCEPT, **{"Mcp-Session-Id": headers_out["mcp-session-id"],
                                 "MCP-Protocol-Version": "2025-11-25"})
        status, _, answer = http("POST", url, {
            "jsonrpc": "2.0", "id": 4, "method": "tools/call",
            "params": {"name": "test_input_required_result_elicitation", "arguments": {}}}, common)
        error = _result(answer)
        # not an empty result the client would take for an answer: an error saying why
        assert status == 200 and error["id"] == 4, answer
        assert error["error"]["code"] == -32000
        assert "elicitation/create" in error["error"]["message"]
    finally:
        proc.stop()
