"""
The messages of a 2026-07-28 client bridged to a handshake-era backend
(L{mcpgated.mcp.classic}), as pure functions.
"""

from __future__ import annotations

from typing import Dict, Optional

from twisted.web.http_headers import Headers

from mcpgated.mcp.classic import (
    SUBSCRIPTION_ID,
    Identity,
    acknowledged,
    check_request,
    discover_result,
    initialize_request,
    modern_error,
    modern_result,
    on_listen,
    to_classic,
)

META = "io.modelcontextprotocol/"
MODERN_META = {META + "protocolVersion": "2026-07-28", META + "clientCapabilities": {"roots": {}},
               META + "clientInfo": {"name": "c", "version": "1"}, META + "logLevel": "debug"}


def test_the_identity_is_what_initialize_would_have_said():
    message = {"method": "tools/list", "params": {"_meta": MODERN_META}}
    identity = Identity.of(message)
    assert identity == Identity({"name": "c", "version": "1"}, {"roots": {}}, "debug")
    assert initialize_request(identity, "2025-11-25")["params"] == {
        "protocolVersion": "2025-11-25", "capabilities": {"roots": {}},
        "clientInfo": {"name": "c", "version": "1"}}
    # the same identity however its members are ordered; another level is another
    reordered = Identity({"version": "1", "name": "c"}, {"roots": {}}, "debug")
    assert reordered.key() == identity.key()
    assert Identity({"name": "c", "version": "1"}, {"roots": {}}, None).key() != identity.key()


def test_the_session_s_meta_members_are_stripped_the_client_s_own_kept():
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": "t", "_meta": dict(MODERN_META, progressToken=5)}}
    assert to_classic(message)["params"] == {"name": "t", "_meta": {"progressToken": 5}}
    assert to_classic({"id": 1, "method": "tools/list", "params": {"_meta": MODERN_META}}) == {
        "id": 1, "method": "tools/list", "params": {}}
    assert message["params"]["_meta"][META + "logLevel"] == "debug"  # not changed in place


def test_results_in_2026_terms():
    info = {"name": "s", "version": "2"}
    listed = modern_result("tools/list", {"tools": []}, info)
    assert listed == {"tools": [], "resultType": "complete", "ttlMs": 0, "cacheScope": "private",
                      "_meta": {META + "serverInfo": info}}
    called = modern_result("tools/call", {"content": [], "_meta": {"x": 1}}, None)
    assert called == {"content": [], "_meta": {"x": 1}, "resultType": "complete"}
    assert modern_error({"code": -32002, "message": "gone"}, "resources/read")["code"] == -32602
    assert modern_error({"code": -32002, "message": "gone"}, "tools/call")["code"] == -32002
    discovered = discover_result({"capabilities": {"tools": {}}, "serverInfo": info,
                                  "instructions": "hi", "protocolVersion": "2025-11-25"},
                                 ["2026-07-28"])
    assert discovered == {"resultType": "complete", "supportedVersions": ["2026-07-28"],
                          "capabilities": {"tools": {}}, "ttlMs": 0, "cacheScope": "private",
                          "instructions": "hi", "_meta": {META + "serverInfo": info}}


def test_a_listen_stream_honours_what_the_backend_can_send_and_only_what_was_asked():
    wanted = {"toolsListChanged": True, "promptsListChanged": True, "resourcesListChanged": False,
              "resourceSubscriptions": ["a://1"]}
    capabilities = {"tools": {"listChanged": True}, "prompts": {},
                    "resources": {"subscribe": True, "listChanged": True}}
    honoured, ack = acknowledged(wanted, capabilities, 9)
    assert honoured == {"toolsListChanged": True, "resourceSubscriptions": ["a://1"]}
    assert ack["params"] == {"notifications": honoured, "_meta": {SUBSCRIPTION_ID: 9}}
    tools = on_listen({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}, honoured, 9)
    assert tools is not None and tools["params"] == {"_meta": {SUBSCRIPTION_ID: 9}}
    for unasked in ({"method": "notifications/prompts/list_changed"},
                    {"method": "notifications/resources/list_changed"},
                    {"method": "notifications/resources/updated", "params": {"uri": "a://2"}},
                    {"method": "notifications/message", "params": {"level": "info"}},
                    {"id": 1, "method": "sampling/createMessage"}, {"id": 1, "result": {}}):
        assert on_listen(unasked, honoured, 9) is None, unasked
    updated = on_listen({"method": "notifications/resources/updated", "params": {"uri": "a://1"}},
                        honoured, 9)
    assert updated is not None and updated["params"]["uri"] == "a://1"


def _headers(**values: Optional[str]) -> Headers:
    headers = Headers()
    for name, value in values.items():
        if value is not None:
            headers.setRawHeaders(name.replace("_", "-"), [value.encode("latin-1")])
    return headers


def _request(method: str, **params: object) -> Dict[str, object]:
    return {"jsonrpc": "2.0", "id": 1, "method": method,
            "params": dict(params, _meta=MODERN_META)}


def test_the_checks_a_2026_server_makes():
    good = _headers(MCP_Protocol_Version="2026-07-28", Mcp_Method="tools/call", Mcp_Name="t")
    assert check_request(_request("tools/call", name="t"), good) is None
    refused = check_request(_request("tools/call", name="u"), good)
    assert refused is not None and (refused.status, refused.code) == (400, -32020)
    listed = _headers(MCP_Protocol_Version="2026-07-28", Mcp_Method="tools/list")
    assert check_request(_request("tools/list"), listed) is None
    gone = check_request(_request("ping"), _headers(MCP_Protocol_Version="2026-07-28",
                                                    Mcp_Method="ping"))
    assert gone is not None and (gone.status, gone.code) == (404, -32601)
    tasks = _headers(MCP_Protocol_Version="2026-07-28", Mcp_Method="tasks/get")
    assert check_request(_request("tasks/get", taskId="x"), tasks) is None  # the extension's
    bare = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    missing = check_request(bare, listed)
    assert missing is not None and (missing.status, missing.code) == (400, -32602)
