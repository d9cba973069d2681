"""
The admin API's consumer view (mcpgated/admin/preview.py), in memory: the
request body it takes and how it reads a backend's answers (JSON or an SSE
stream). tests/test_console_security.py runs it against server-everything.
"""

from __future__ import annotations

import pytest

from mcpgated.admin.preview import BackendError, _messages, parse_preview
from mcpgated.definitions import InvalidField


def test_answers_are_read_as_json_or_as_an_event_stream() -> None:
    assert _messages(b'{"jsonrpc": "2.0", "id": 1, "result": {}}', False) == [
        {"jsonrpc": "2.0", "id": 1, "result": {}}]
    stream = (b": comment\r\nevent: message\r\nid: 7\r\ndata: {\"jsonrpc\": \"2.0\",\r\n"
              b"data: \"method\": \"notifications/progress\"}\r\n\r\n"
              b"event: message\ndata: {\"jsonrpc\": \"2.0\", \"id\": 2, \"result\": {\"tools\": []}}")
    assert _messages(stream, True) == [
        {"jsonrpc": "2.0", "method": "notifications/progress"},
        {"jsonrpc": "2.0", "id": 2, "result": {"tools": []}}]  # the last event, unterminated
    assert _messages(b"data: not json\n\n", True) == []
    with pytest.raises(BackendError, match="not JSON"):
        _messages(b"<html>", False)


@pytest.mark.parametrize(("body", "field"), [
    ({}, "plan"), ({"plan": ""}, "plan"), ({"plan": 3}, "plan"),
    ({"plan": "Gold", "application": ""}, "application"),
    ({"plan": "Gold", "scopes": "mcp"}, "scopes"), ({"plan": "Gold", "scopes": [""]}, "scopes"),
    ({"plan": "Gold", "extra": 1}, "extra"), ([], None),
])
def test_a_bad_preview_body_names_its_field(body: object, field: object) -> None:
    with pytest.raises(InvalidField) as caught:
        parse_preview(body)
    assert caught.value.field == field


def test_a_preview_body() -> None:
    assert parse_preview({"plan": "Gold", "application": "a1", "scopes": ["mcp"]}) == (
        "Gold", "a1", ("mcp",))
    assert parse_preview({"plan": "Keyless"}) == ("Keyless", None, ())
