"""
What the exchange log reads in an answer (L{mcpgated.analytics.inspect}):
its outcome, and captured payloads with secrets redacted.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, strategies as st

from mcpgated.analytics.inspect import outcome, redact
from mcpgated.analytics.records import DEFAULT_REDACT

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["a", "Token", "password", "b", "API_KEY", "x"]) | st.text(),
                      inner, max_size=4),
    max_leaves=20)


def test_a_result_is_a_result() -> None:
    assert outcome({"tools": []}, None) == ("result", None, None)
    assert outcome(None, None) == ("result", None, None)
    # only isError: true marks a tool error
    assert outcome({"isError": "true", "content": []}, None) == ("result", None, None)
    assert outcome({"isError": False}, None) == ("result", None, None)


def test_a_json_rpc_error_gives_its_code_and_message() -> None:
    assert outcome(None, {"code": -32601, "message": "Method not found"}) == \
        ("error", -32601, "Method not found")
    # an error wins over a result sent beside it
    assert outcome({"tools": []}, {"code": 1, "message": "m"})[0] == "error"


@pytest.mark.parametrize("error", ["a string", [], {"code": "-1", "message": 5}, {}])
def test_a_malformed_error_is_still_an_error_without_code_or_message(error: Any) -> None:
    assert outcome(None, error) == ("error", None, None)


def test_error_messages_are_cut_at_500_characters() -> None:
    _, _, message = outcome(None, {"code": 1, "message": "x" * 10_000})
    assert message == "x" * 500
    _, _, text = outcome({"isError": True, "content": [{"type": "text", "text": "y" * 600}]}, None)
    assert text == "y" * 500


def test_a_tool_error_gives_the_first_text() -> None:
    result = {"isError": True, "content": [{"type": "text", "text": "disk full"},
                                           {"type": "text", "text": "second"}]}
    assert outcome(result, None) == ("tool_error", None, "disk full")
    for content in (None, [], ["not an object"], [{"type": "image", "data": "..."}]):
        assert outcome({"isError": True, "content": content}, None) == ("tool_error", None, None)


def test_named_keys_are_redacted_at_any_depth_whatever_their_case() -> None:
    value = {"params": {"arguments": {"Password": "hunter2", "user": "ann",
                                      "nested": [{"API_KEY": "k", "keep": 1}]}},
             "token": {"any": "value"}}
    assert redact(value, DEFAULT_REDACT) == {
        "params": {"arguments": {"Password": "[REDACTED]", "user": "ann",
                                 "nested": [{"API_KEY": "[REDACTED]", "keep": 1}]}},
        "token": "[REDACTED]"}
    # the message itself is left as it was
    assert value["params"]["arguments"]["Password"] == "hunter2"


def test_only_the_named_keys_are_redacted() -> None:
    value = {"ssn": "123", "name": "ann", "list": ["password"]}
    assert redact(value, frozenset({"ssn"})) == {"ssn": "[REDACTED]", "name": "ann",
                                                 "list": ["password"]}


@given(json_values)
def test_no_redaction_leaves_the_value_equal(value: Any) -> None:
    assert redact(value, frozenset()) == value


@given(json_values)
def test_no_named_key_keeps_its_value(value: Any) -> None:
    fields = frozenset({"token", "password", "api_key"})

    def leaks(found: Any) -> bool:
        if isinstance(found, dict):
            return any((k.lower() in fields and v != "[REDACTED]") or leaks(v)
                       for k, v in found.items())
        if isinstance(found, list):
            return any(leaks(v) for v in found)
        return False

    redacted = redact(value, fields)
    assert not leaks(redacted)
