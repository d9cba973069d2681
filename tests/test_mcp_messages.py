"""
The JSON-RPC message model (L{mcpgated.mcp.messages}): what kind each JSON
value is, its id key and target, and the client information a request
carries.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from mcpgated.mcp.messages import (
    INVALID,
    META_PREFIX,
    NOTIFICATION,
    REQUEST,
    RESPONSE,
    ClientInfo,
    Message,
    classify,
    client_info,
)

_SETTINGS = settings(deadline=None, derandomize=True, max_examples=300)

# Any JSON value, as json.loads gives it (floats without NaN/Infinity: JSON has none).
_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(max_size=10))
json_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
# Message-shaped objects: the keys that matter, with any JSON values.
_message_keys = st.sampled_from(["jsonrpc", "id", "method", "params", "result", "error"])
message_like = st.dictionaries(_message_keys, json_values, max_size=6)


# --- kinds --------------------------------------------------------------------------------


def test_a_request_has_its_id_method_and_params() -> None:
    value = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "echo", "arguments": {}}}
    message = classify(value)
    assert message.kind == REQUEST
    assert message.is_request
    assert message.id == 7
    assert message.id_key == ("n", 7)
    assert message.method == "tools/call"
    assert message.params == {"name": "echo", "arguments": {}}
    assert message.target == "echo"
    assert message.raw is value
    assert message.result is None and message.error is None


@pytest.mark.parametrize("value", [
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "method": "notifications/initialized", "id": None},
    {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}},
])
def test_no_id_or_a_null_id_is_a_notification(value: Any) -> None:
    message = classify(value)
    assert message.kind == NOTIFICATION
    assert not message.is_request
    assert message.id is None and message.id_key is None
    assert message.method == value["method"]


def test_a_result_is_a_response() -> None:
    message = classify({"jsonrpc": "2.0", "id": "a", "result": {"tools": []}})
    assert message.kind == RESPONSE
    assert message.id == "a" and message.id_key == ("s", "a")
    assert message.result == {"tools": []}
    assert message.error is None and message.method is None and message.target is None


def test_an_error_is_a_response() -> None:
    error = {"code": -32601, "message": "Method not found"}
    message = classify({"jsonrpc": "2.0", "id": 3, "error": error})
    assert message.kind == RESPONSE
    assert message.id_key == ("n", 3)
    assert message.error == error and message.result is None


def test_a_null_result_is_still_a_response() -> None:
    # "result": null is a result (a void answer), not an absent one
    message = classify({"jsonrpc": "2.0", "id": 1, "result": None})
    assert message.kind == RESPONSE
    assert message.id_key == ("n", 1)


def test_an_error_answer_with_a_null_id_has_no_key() -> None:
    message = classify({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}})
    assert message.kind == RESPONSE
    assert message.id is None and message.id_key is None


@pytest.mark.parametrize("value", [
    [], [{"jsonrpc": "2.0", "id": 1, "method": "ping"}], 1, 1.5, "ping", None, True,
    {}, {"jsonrpc": "2.0"}, {"jsonrpc": "2.0", "id": 1}, {"id": 1, "params": {}},
    {"jsonrpc": "2.0", "id": 1, "method": 5}, {"jsonrpc": "2.0", "id": 1, "method": None},
])
def test_values_that_are_no_message_are_invalid(value: Any) -> None:
    message = classify(value)
    assert message.kind == INVALID
    assert message.raw is value or message.raw == value
    assert message.method is None and message.id_key is None and message.target is None


def test_a_non_string_method_with_a_result_is_a_response() -> None:
    assert classify({"id": 1, "method": 5, "result": {}}).kind == RESPONSE


# --- ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize("ident", [1, 1.0, 1e0, 10e-1])
def test_numeric_ids_of_one_value_share_a_key(ident: Any) -> None:
    assert classify({"jsonrpc": "2.0", "id": ident, "method": "ping"}).id_key == ("n", 1)
    assert classify({"jsonrpc": "2.0", "id": ident, "result": {}}).id_key == ("n", 1)


def test_a_string_id_is_another_key_than_the_number() -> None:
    string = classify({"jsonrpc": "2.0", "id": "1", "method": "ping"})
    number = classify({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert string.id_key == ("s", "1")
    assert string.id_key != number.id_key
    assert string.id == "1"  # the id as sent


@pytest.mark.parametrize("ident", [1.5, True, 2 ** 53, float(2 ** 60), {"a": 1}, [1]])
def test_ids_that_cannot_be_keyed_have_no_key(ident: Any) -> None:
    message = classify({"jsonrpc": "2.0", "id": ident, "method": "ping"})
    assert message.kind == REQUEST  # classified leniently; the body reader refuses them
    assert message.id == ident
    assert message.id_key is None


# --- targets --------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "params", "target"), [
    ("tools/call", {"name": "echo"}, "echo"),
    ("prompts/get", {"name": "greet", "arguments": {}}, "greet"),
    ("resources/read", {"uri": "file:///a b"}, "file:///a b"),
    ("resources/subscribe", {"uri": "x://y"}, "x://y"),
    ("resources/unsubscribe", {"uri": "x://y"}, "x://y"),
    ("tools/call", {"uri": "echo"}, None),
    ("resources/read", {"name": "a"}, None),
    ("tools/call", {"name": 5}, None),
    ("tools/call", ["echo"], None),
    ("tools/call", None, None),
    ("tools/list", {"name": "echo"}, None),
    ("ping", {"name": "echo"}, None),
])
def test_targets_come_from_the_methods_parameter(method: str, params: Any, target: Any) -> None:
    value = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    assert classify(value).target == target
    notification = {"jsonrpc": "2.0", "method": method, "params": params}
    assert classify(notification).target == target


def test_a_long_target_is_kept_whole() -> None:
    name = "t" * 10000
    assert classify({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name}}).target == name


# --- never raises -------------------------------------------------------------------------


def _check(message: Message, value: Any) -> None:
    assert message.kind in (REQUEST, NOTIFICATION, RESPONSE, INVALID)
    assert message.raw is value
    assert isinstance(repr(message), str)
    if message.kind in (REQUEST, NOTIFICATION):
        assert isinstance(message.method, str)
    else:
        assert message.method is None and message.target is None
    if message.id_key is not None:
        assert message.kind in (REQUEST, RESPONSE)
        hash(message.id_key)


@_SETTINGS
@given(json_values)
def test_classify_never_raises_on_any_json_value(value: Any) -> None:
    _check(classify(value), value)


@_SETTINGS
@given(message_like)
def test_classify_never_raises_on_message_shaped_objects(value: Any) -> None:
    message = classify(value)
    _check(message, value)
    if isinstance(value.get("method"), str):
        assert message.kind == (NOTIFICATION if value.get("id") is None else REQUEST)
    elif "result" in value or "error" in value:
        assert message.kind == RESPONSE


# --- client information -------------------------------------------------------------------


def _request(method: str, params: Any) -> Message:
    return classify({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})


def test_client_info_from_initialize() -> None:
    message = _request("initialize", {"protocolVersion": "2025-06-18",
                                      "clientInfo": {"name": "claude", "version": "1.2"},
                                      "capabilities": {}})
    assert client_info(message) == ClientInfo("claude", "1.2", "2025-06-18")


def test_initialize_without_client_info_gives_the_protocol_version_alone() -> None:
    assert client_info(_request("initialize", {"protocolVersion": "2024-11-05"})) == \
        ClientInfo(None, None, "2024-11-05")
    assert client_info(_request("initialize", {"clientInfo": "claude"})) == ClientInfo()


def test_client_info_from_2026_meta() -> None:
    meta = {META_PREFIX + "protocolVersion": "2026-07-28",
            META_PREFIX + "clientInfo": {"name": "cli", "version": "9"}}
    message = _request("tools/call", {"name": "echo", "_meta": meta})
    assert client_info(message) == ClientInfo("cli", "9", "2026-07-28")


def test_meta_with_the_version_alone_or_the_client_alone() -> None:
    assert client_info(_request("ping", {"_meta": {META_PREFIX + "protocolVersion": "2026-07-28"}})) == \
        ClientInfo(None, None, "2026-07-28")
    assert client_info(_request("ping", {"_meta": {META_PREFIX + "clientInfo": {"name": "x"}}})) == \
        ClientInfo("x", None, None)


@pytest.mark.parametrize("params", [
    None, [], "x", {}, {"name": "echo"}, {"_meta": None}, {"_meta": []},
    {"_meta": {"protocolVersion": "2026-07-28", "clientInfo": {"name": "x"}}},  # not namespaced
    {"_meta": {META_PREFIX + "clientInfo": "x"}},
])
def test_no_client_info_where_none_is_carried(params: Any) -> None:
    assert client_info(_request("tools/call", params)) is None


def test_initialize_reads_clientinfo_not_meta() -> None:
    meta = {META_PREFIX + "clientInfo": {"name": "meta"}}
    message = _request("initialize", {"clientInfo": {"name": "params"}, "_meta": meta})
    assert client_info(message) == ClientInfo("params", None, None)


def test_responses_and_notifications_without_params_carry_no_client_info() -> None:
    assert client_info(classify({"jsonrpc": "2.0", "id": 1, "result": {}})) is None
    assert client_info(classify({"jsonrpc": "2.0", "method": "notifications/initialized"})) is None
    assert client_info(classify([1, 2])) is None


def test_client_info_is_cut_to_200_characters() -> None:
    long = "é" * 500
    message = _request("initialize", {"protocolVersion": long, "clientInfo": {"name": long, "version": long}})
    info = client_info(message)
    assert info == ClientInfo("é" * 200, "é" * 200, "é" * 200)
    meta = {META_PREFIX + "protocolVersion": long, META_PREFIX + "clientInfo": {"name": long, "version": "1"}}
    assert client_info(_request("ping", {"_meta": meta})) == ClientInfo("é" * 200, "1", "é" * 200)


@pytest.mark.parametrize("odd", [5, 1.5, True, None, ["a"], {"a": "b"}])
def test_non_string_client_values_are_ignored(odd: Any) -> None:
    message = _request("initialize", {"protocolVersion": odd, "clientInfo": {"name": odd, "version": "2"}})
    assert client_info(message) == ClientInfo(None, "2", None)
    meta = {META_PREFIX + "protocolVersion": "2026-07-28", META_PREFIX + "clientInfo": {"name": odd, "version": odd}}
    assert client_info(_request("ping", {"_meta": meta})) == ClientInfo(None, None, "2026-07-28")


@_SETTINGS
@given(st.sampled_from(["initialize", "tools/call", "ping"]), json_values, json_values, json_values)
def test_client_info_never_raises_and_holds_only_short_strings(method: str, name: Any, version: Any,
                                                              protocol: Any) -> None:
    for params in ({"protocolVersion": protocol, "clientInfo": {"name": name, "version": version}},
                   {"_meta": {META_PREFIX + "protocolVersion": protocol,
                              META_PREFIX + "clientInfo": {"name": name, "version": version}}},
                   {"clientInfo": name, "_meta": version}):
        info = client_info(_request(method, params))
        if info is not None:
            for field in (info.name, info.version, info.protocol_version):
                assert field is None or (isinstance(field, str) and len(field) <= 200)
