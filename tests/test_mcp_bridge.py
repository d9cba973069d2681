"""
The versions an API accepts (L{mcpgated.mcp.bridge}): which version a
message speaks, and the spec's answer to one the API does not accept.
"""

from __future__ import annotations

from typing import Any, Optional

import pytest

from mcpgated.mcp.bridge import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    UNSUPPORTED_PROTOCOL_VERSION,
    ClientState,
    Renegotiated,
    VersionRefusal,
    check_version,
    header_value,
    initialize_result,
    is_modern,
    negotiated,
    spoken_version,
    to_modern,
)
from mcpgated.mcp.headers import decode_header_value

HANDSHAKE_ONLY = ("2025-06-18", "2025-11-25")
MODERN_ONLY = ("2026-07-28",)


def _initialize(version: Any) -> dict:
    return {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}}


def _modern(version: str, method: str = "tools/list") -> dict:
    return {"jsonrpc": "2.0", "id": 2, "method": method, "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientCapabilities": {}}}}


def test_eras():
    assert is_modern("2026-07-28")
    assert not is_modern("2025-11-25")
    assert not is_modern("2024-11-05")
    assert not is_modern("garbage")
    assert is_modern("2027-01-01")


@pytest.mark.parametrize("message, header, expected", [
    (_initialize("2025-06-18"), "2026-07-28", "2025-06-18"),  # the proposal, not the header
    (_modern("2026-07-28"), None, "2026-07-28"),
    (_modern("2026-07-28"), "2025-11-25", "2026-07-28"),  # _meta is the source of truth
    ({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, "2025-11-25", "2025-11-25"),
    ({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, None, "2025-03-26"),  # the spec's default
    (None, "2025-06-18", "2025-06-18"),  # GET / DELETE
    ([{"jsonrpc": "2.0", "id": 3, "method": "tools/list"}], None, "2025-03-26"),  # a batch
])
def test_spoken_version(message: Any, header: Optional[str], expected: str):
    assert spoken_version(message, header) == expected


def test_accepted_versions_pass():
    assert check_version(_initialize("2025-11-25"), None, HANDSHAKE_ONLY) is None
    assert check_version({"jsonrpc": "2.0", "method": "notifications/initialized"}, "2025-06-18",
                         HANDSHAKE_ONLY) is None
    assert check_version(None, "2025-11-25", HANDSHAKE_ONLY) is None
    assert check_version(_modern("2026-07-28"), "2026-07-28", MODERN_ONLY) is None


def test_modern_request_outside_the_list_gets_32022_with_the_list():
    verdict = check_version(_modern("2026-07-28", "server/discover"), "2026-07-28", HANDSHAKE_ONLY)
    assert verdict == VersionRefusal(400, UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version",
                                     {"supported": ["2025-06-18", "2025-11-25"],
                                      "requested": "2026-07-28"})


def test_unknown_future_version_in_meta_gets_32022():
    verdict = check_version(_modern("2027-01-01"), "2027-01-01", MODERN_ONLY)
    assert isinstance(verdict, VersionRefusal)
    assert verdict.code == UNSUPPORTED_PROTOCOL_VERSION
    assert verdict.data == {"supported": ["2026-07-28"], "requested": "2027-01-01"}


def test_initialize_outside_the_list_is_offered_the_newest_accepted_handshake_version():
    message = _initialize("2024-11-05")
    verdict = check_version(message, None, ("2025-03-26", "2025-06-18", "2026-07-28"))
    assert isinstance(verdict, Renegotiated)
    assert (verdict.requested, verdict.offered) == ("2024-11-05", "2025-06-18")
    assert verdict.message["params"]["protocolVersion"] == "2025-06-18"
    assert verdict.message["params"]["clientInfo"] == {"name": "t", "version": "1"}
    assert verdict.message["id"] == 1
    assert message["params"]["protocolVersion"] == "2024-11-05"  # the original is left alone


@pytest.mark.parametrize("version", ["2025-11-25", "1.0.0", None, 7])
def test_initialize_with_only_modern_versions_accepted_gets_the_initialize_error(version: Any):
    verdict = check_version(_initialize(version), None, MODERN_ONLY)
    assert isinstance(verdict, VersionRefusal)
    assert (verdict.status, verdict.code, verdict.message) == (
        400, INVALID_PARAMS, "Unsupported protocol version")
    assert verdict.data["supported"] == ["2026-07-28"]


def test_initialize_without_params_is_renegotiated_not_crashed():
    verdict = check_version({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": [1]}, None,
                            HANDSHAKE_ONLY)
    assert isinstance(verdict, Renegotiated)
    assert verdict.message["params"] == {"protocolVersion": "2025-11-25"}


@pytest.mark.parametrize("message, header", [
    ({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, "2025-03-26"),
    ({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, None),  # absent: 2025-03-26
    (None, "2024-11-05"),  # a GET stream of a refused version
    ({"jsonrpc": "2.0", "id": 3, "result": {}}, "garbage"),  # a client's response
])
def test_handshake_request_with_a_refused_header_gets_400(message: Any, header: Optional[str]):
    verdict = check_version(message, header, HANDSHAKE_ONLY)
    assert isinstance(verdict, VersionRefusal)
    assert (verdict.status, verdict.code) == (400, INVALID_REQUEST)
    assert "MCP-Protocol-Version" in verdict.message
    assert "2025-06-18, 2025-11-25" in verdict.message


def test_modern_header_without_meta_on_a_handshake_only_api_gets_32022():
    verdict = check_version({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, "2026-07-28",
                            HANDSHAKE_ONLY)
    assert isinstance(verdict, VersionRefusal)
    assert verdict.code == UNSUPPORTED_PROTOCOL_VERSION


def test_client_state_round_trips_through_its_text():
    init = _initialize("2025-11-25")
    init["params"]["capabilities"] = {"sampling": {}, "roots": {"listChanged": True}}
    state = ClientState.of(init, "2025-06-18")
    assert state == ClientState("2025-06-18", {"name": "t", "version": "1"},
                                {"sampling": {}, "roots": {"listChanged": True}})
    assert ClientState.loads(state.dumps()) == state
    assert state.dumps().isascii()
    for bad in ("", "[1, 2]", '["v", [], {}]', "{}", "not json"):
        assert ClientState.loads(bad) is None


def test_negotiated_version():
    accepted = ("2025-06-18", "2025-11-25", "2026-07-28")
    assert negotiated("2025-06-18", accepted) == "2025-06-18"
    assert negotiated("2024-11-05", accepted) == "2025-11-25"
    assert negotiated("2026-07-28", accepted) == "2025-11-25"  # initialize is of the handshake era
    assert negotiated("2025-06-18", ("2026-07-28",)) is None


def test_initialize_result_from_discover():
    discovered = {"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}},
                  "instructions": "be nice", "ttlMs": 1000, "cacheScope": "public",
                  "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "s", "version": "2"}}}
    assert initialize_result(discovered, "2025-06-18") == {
        "protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
        "serverInfo": {"name": "s", "version": "2"}, "instructions": "be nice"}
    bare = initialize_result({"capabilities": {}}, "2025-11-25")
    assert bare["serverInfo"]["name"] and "instructions" not in bare


def test_to_modern_adds_meta_and_routing_headers():
    state = ClientState("2025-11-25", {"name": "c", "version": "1"}, {"sampling": {}})
    call = {"jsonrpc": "2.0", "id": 9, "method": "tools/call",
            "params": {"name": "héllo", "arguments": {}, "_meta": {"progressToken": 4}}}
    modern, headers = to_modern(call, state, "2026-07-28")
    assert modern["params"]["_meta"] == {
        "progressToken": 4, "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "c", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {"sampling": {}}}
    assert modern["params"]["name"] == "héllo" and modern["id"] == 9
    assert "_meta" in modern["params"] and call["params"]["_meta"] == {"progressToken": 4}
    named = dict(headers)
    assert named[b"mcp-protocol-version"] == b"2026-07-28"
    assert named[b"mcp-method"] == b"tools/call"
    assert decode_header_value(named[b"mcp-name"].decode("ascii")) == "héllo"
    listed, headers = to_modern({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, state, "2026-07-28")
    assert b"mcp-name" not in dict(headers)
    assert listed["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] == "2026-07-28"
    assert header_value("doc://a b") == b"doc://a b"
    assert header_value(" x").startswith(b"=?base64?")
