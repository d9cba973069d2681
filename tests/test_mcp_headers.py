"""
The 2026-07-28 routing headers (L{mcpgated.mcp.headers}): C{Mcp-Name}
values, plain or C{=?base64?...?=}, and C{Mcp-Method}/C{Mcp-Name} held to
the body they travel with.
"""

from __future__ import annotations

import base64
from typing import Any, List, Optional

import pytest
from hypothesis import given, settings, strategies as st

from mcpgated.mcp.headers import decode_header_value, routing_header_problem
from mcpgated.mcp.messages import Message, classify

_SETTINGS = settings(deadline=None, derandomize=True, max_examples=300)
# any text UTF-8 can carry (no lone surrogates)
_texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))


def _b64(text: str) -> str:
    return "=?base64?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


# --- decode_header_value ------------------------------------------------------------------


@pytest.mark.parametrize("value", ["echo", "", "file:///tmp/a b", "=?base64", "base64?x?=", "?=", "=?utf-8?Q?x?="])
def test_plain_values_are_themselves(value: str) -> None:
    assert decode_header_value(value) == value


@pytest.mark.parametrize("text", ["echo", "", "wörld/🙂", "file:///a?b=c", "a b\tc", "=?base64?eA==?="])
def test_base64_values_are_decoded(text: str) -> None:
    assert decode_header_value(_b64(text)) == text


def test_base64_of_known_bytes() -> None:
    assert decode_header_value("=?base64?ZWNobw==?=") == "echo"
    assert decode_header_value("=?base64?w6k=?=") == "é"


@pytest.mark.parametrize("prefix", ["=?BASE64?", "=?Base64?", "=?base64 ?", " =?base64?"])
def test_the_prefix_is_case_sensitive_and_exact(prefix: str) -> None:
    value = prefix + "ZWNobw==?="
    assert decode_header_value(value) == value


@pytest.mark.parametrize("value", ["=?base64?=", "=?base64?"])
def test_the_markers_may_not_overlap(value: str) -> None:
    # "=?base64?=" ends in "?=" only by reusing the prefix's "?": it is no encoded value
    assert decode_header_value(value) == value


def test_an_empty_encoded_value_is_the_empty_name() -> None:
    assert decode_header_value("=?base64??=") == ""


def test_a_value_without_the_closing_marker_is_plain() -> None:
    assert decode_header_value("=?base64?ZWNobw==") == "=?base64?ZWNobw=="
    assert decode_header_value("=?base64?ZWNobw==?") == "=?base64?ZWNobw==?"


@pytest.mark.parametrize("value", [
    "=?base64?not base64?=", "=?base64?ZWNobw?=",  # missing padding
    "=?base64?ZWNo!w==?=", "=?base64?ZW Nobw==?=", "=?base64?ZWNobw==\n?=", "=?base64?=?=",
])
def test_invalid_base64_is_malformed(value: str) -> None:
    with pytest.raises(ValueError, match="malformed"):
        decode_header_value(value)


@pytest.mark.parametrize("raw", [b"\xff", b"\xc3", b"\xed\xa0\x80", b"ok\x80", b"\xc0\xaf"])
def test_invalid_utf8_inside_base64_is_malformed(raw: bytes) -> None:
    with pytest.raises(ValueError, match="malformed"):
        decode_header_value("=?base64?" + base64.b64encode(raw).decode("ascii") + "?=")


@_SETTINGS
@given(_texts)
def test_any_text_round_trips_through_base64(text: str) -> None:
    assert decode_header_value(_b64(text)) == text


@_SETTINGS
@given(_texts)
def test_any_text_outside_the_encoded_form_is_itself(text: str) -> None:
    if not (len(text) >= 11 and text.startswith("=?base64?") and text.endswith("?=")):
        assert decode_header_value(text) == text


# --- routing_header_problem -------------------------------------------------------------


def _call(name: Any = "echo", method: str = "tools/call") -> Message:
    return classify({"jsonrpc": "2.0", "id": 1, "method": method, "params": {"name": name}})


def _problem(method: Optional[List[bytes]], name: Optional[List[bytes]], message: Message) -> Optional[str]:
    return routing_header_problem(method, name, message)


def test_absent_headers_are_no_problem() -> None:
    assert _problem(None, None, _call()) is None
    assert _problem(None, None, classify({"jsonrpc": "2.0", "method": "notifications/initialized"})) is None


def test_matching_headers_are_no_problem() -> None:
    assert _problem([b"tools/call"], [b"echo"], _call()) is None
    assert _problem([b"tools/call"], None, _call()) is None
    assert _problem(None, [b"echo"], _call()) is None
    read = classify({"jsonrpc": "2.0", "id": 2, "method": "resources/read", "params": {"uri": "file:///x"}})
    assert _problem([b"resources/read"], [b"file:///x"], read) is None
    note = classify({"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert _problem([b"notifications/initialized"], None, note) is None


@pytest.mark.parametrize("header", [b"tools/list", b"Tools/Call", b"tools/call ", b"", b"tools/call\x00"])
def test_an_mcp_method_mismatch_is_a_problem(header: bytes) -> None:
    assert _problem([header], None, _call()) == "Mcp-Method header does not match the request body"
    assert _problem([header], [b"echo"], _call()) == "Mcp-Method header does not match the request body"


def test_an_mcp_method_on_a_response_is_a_problem() -> None:
    response = classify({"jsonrpc": "2.0", "id": 1, "result": {}})
    assert _problem([b"tools/call"], None, response) == "Mcp-Method header does not match the request body"


@pytest.mark.parametrize("header", [b"Echo", b"echo2", b"", b" echo", b"other"])
def test_an_mcp_name_mismatch_is_a_problem(header: bytes) -> None:
    assert _problem([b"tools/call"], [header], _call()) == "Mcp-Name header does not match the request body"


def test_an_mcp_name_for_a_request_without_a_target_is_a_problem() -> None:
    listing = classify({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert _problem([b"tools/list"], [b"echo"], listing) == "Mcp-Name header does not match the request body"
    # a non-string name in the body is no target either
    assert _problem(None, [b"5"], _call(5)) == "Mcp-Name header does not match the request body"


def test_a_base64_mcp_name_matches_the_decoded_name() -> None:
    name = "wörld 🙂 tool"
    header = _b64(name).encode("latin-1")
    assert _problem([b"tools/call"], [header], _call(name)) is None
    assert _problem([b"tools/call"], [header], _call("world")) == "Mcp-Name header does not match the request body"
    # a plain header that only looks like the name after decoding does not match it
    assert _problem(None, [b"=?base64?ZWNobw==?="], _call("=?base64?ZWNobw==?=")) == \
        "Mcp-Name header does not match the request body"
    assert _problem(None, [b"=?base64?ZWNobw==?="], _call("echo")) is None


def test_raw_utf8_in_mcp_name_does_not_match_a_unicode_name() -> None:
    # non-ASCII names must be base64-encoded; raw bytes are read as latin-1, never as the name
    assert _problem(None, ["wörld".encode()], _call("wörld")) == "Mcp-Name header does not match the request body"


@pytest.mark.parametrize("header", [b"=?base64?!!!?=", b"=?base64?/w==?=", b"=?base64?ZWNobw?="])
def test_a_malformed_mcp_name_is_a_problem(header: bytes) -> None:
    assert _problem([b"tools/call"], [header], _call()) == "Mcp-Name header is malformed"


def test_the_method_is_checked_before_the_name() -> None:
    assert _problem([b"tools/list"], [b"=?base64?!!!?="], _call()) == \
        "Mcp-Method header does not match the request body"


@pytest.mark.parametrize("value", [[{"jsonrpc": "2.0", "id": 1, "method": "ping"}], 5, "x", None])
def test_a_message_that_is_not_an_object_is_not_judged_here(value: Any) -> None:
    assert _problem([b"tools/call"], [b"echo"], classify(value)) is None


@_SETTINGS
@given(_texts, _texts)
def test_base64_name_matches_exactly_its_own_text(sent: str, body: str) -> None:
    header = _b64(sent).encode("ascii")
    problem = _problem([b"tools/call"], [header], _call(body))
    assert (problem is None) == (sent == body)
