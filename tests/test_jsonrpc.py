"""
The JSON-RPC answers the gateway writes itself (L{mcpgated.jsonrpc}): error
bodies a client parses, the id they echo, and a refusal's headers.
"""

from __future__ import annotations

import json
from typing import Any, Union

import pytest
from hypothesis import given, strategies as st

from mcpgated.jsonrpc import (
    GATEWAY_ERROR,
    INVALID_REQUEST,
    PARSE_ERROR,
    REQUEST_ID,
    Refusal,
    error_body,
    refused_body,
    request_id,
)
from mcpgated.mcp.body import BodyError
from mcpgated.mcp.ids import MAX_SAFE

ids = st.one_of(st.text(), st.integers(-MAX_SAFE, MAX_SAFE))


def test_an_error_body_is_a_json_rpc_error_a_client_parses() -> None:
    body = json.loads(error_body(GATEWAY_ERROR, "backend unreachable: ünïcode", 7))
    assert body == {"jsonrpc": "2.0", "id": 7,
                    "error": {"code": GATEWAY_ERROR, "message": "backend unreachable: ünïcode"}}


def test_an_error_body_without_an_id_answers_null_and_data_only_when_given() -> None:
    body = json.loads(error_body(PARSE_ERROR, "Parse error"))
    assert body["id"] is None and "data" not in body["error"]
    body = json.loads(error_body(INVALID_REQUEST, "bad", "a", data={"field": "id"}))
    assert body["id"] == "a"
    assert body["error"]["data"] == {"field": "id"}


@given(ident=ids, method=st.text(min_size=1), space=st.sampled_from(["", " ", "\r\n\t "]))
def test_the_id_of_a_request_is_echoed_as_sent(ident: Union[str, int], method: str,
                                              space: str) -> None:
    raw = space + json.dumps({"jsonrpc": "2.0", "id": ident, "method": method})
    assert request_id(raw.encode()) == ident


@given(number=st.integers(-MAX_SAFE, MAX_SAFE))
def test_a_whole_number_id_is_echoed_as_an_integer(number: int) -> None:
    raw = b'{"jsonrpc":"2.0","method":"ping","id":%s}' % repr(float(number)).encode()
    echoed = request_id(raw)
    assert echoed == number and type(echoed) is int


@pytest.mark.parametrize("body", [
    b"",
    b"not json",
    b'{"jsonrpc":"2.0","method":"notifications/initialized"}',  # a notification
    b'{"jsonrpc":"2.0","id":null,"method":"ping"}',
    b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]',  # a batch: no one id
    b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":true,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":9007199254740993,"method":"ping"}',  # past 2**53 - 1
    b'{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}',
    b'{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}',  # a key twice: refused as a body
    b'\xef\xbb\xbf{"jsonrpc":"2.0","id":1,"method":"ping"}',  # a BOM
    b'{"jsonrpc":"2.0","id":1,"method":"ping"} x',
    b'{"jsonrpc":"2.0","id":"\xff","method":"ping"}',  # not UTF-8
])
def test_no_id_when_the_body_has_none_the_gateway_can_read(body: bytes) -> None:
    assert request_id(body) is None


@given(st.binary(max_size=64))
def test_reading_an_id_never_fails(body: bytes) -> None:
    found: Any = request_id(body)
    assert found is None or type(found) in (str, int)


def test_a_refusal_adds_only_the_headers_it_has() -> None:
    assert Refusal(403, "denied").headers() == []
    refusal = Refusal(401, "token needed", challenge='Bearer resource_metadata="https://gw/é"',
                      retry_after=30, accept_encoding=True,
                      extra_headers=((b"x-one", b"1"), (b"x-two", b"2")))
    assert refusal.headers() == [
        (b"www-authenticate", 'Bearer resource_metadata="https://gw/é"'.encode("latin-1")),
        (b"retry-after", b"30"),
        (b"accept-encoding", b"identity"),
        (b"x-one", b"1"),
        (b"x-two", b"2"),
    ]
    assert Refusal(429, "slow down", retry_after=0).headers() == [(b"retry-after", b"0")]


def test_a_refusal_reads_as_its_message_and_answers_the_request_id_by_default() -> None:
    refusal = Refusal(429, "rate limit exceeded", outcome="rate_limited")
    assert str(refusal) == "rate limit exceeded"
    assert refusal.id is REQUEST_ID and refusal.code == GATEWAY_ERROR


def test_a_refused_body_keeps_the_body_errors_status_code_id_and_encoding() -> None:
    refusal = refused_body(BodyError(415, INVALID_REQUEST, "gzip bodies are not read", id="x",
                                     accept_encoding=True))
    assert (refusal.status, refusal.code, refusal.id, refusal.message, refusal.outcome) == \
        (415, INVALID_REQUEST, "x", "gzip bodies are not read", "bad_request")
    assert (b"accept-encoding", b"identity") in refusal.headers()
