"""
Strict reading of JSON-RPC request bodies (L{mcpgated.mcp.body}): the
headers that say how a body is encoded, the bytes, the JSON and the ids.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from mcpgated.mcp.body import (
    BodyError,
    check_bytes,
    check_headers,
    content_encoding_problem,
    content_type_problem,
    decode,
    parse,
)

CALL = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo"}}


@pytest.mark.parametrize("value", [
    b"application/json", b"Application/JSON", b"application/json; charset=utf-8",
    b"application/json;charset=UTF-8", b'application/json; charset="utf-8"',
    b"application/json ; charset=Utf-8", b"application/json;\tcharset=utf8",
    b"application/json; profile=x", b"application/json;", b"application/json; charset=utf-8;",
    b'application/json; x="a;b"; charset=utf-8', b'application/json; charset="utf\\-8"',
])
def test_json_in_utf8_is_taken(value):
    assert content_type_problem([value]) is None
    check_headers([value], None)


@pytest.mark.parametrize("value", [
    b"application/json; charset=utf-7", b"application/json; charset=utf-16",
    b"application/json; charset=UTF-16LE", b"application/json; charset=latin1",
    b"application/json; charset=iso-8859-1", b"application/json; charset=windows-1252",
    b'application/json; charset="utf-7"', b"application/json; charset=utf-8; charset=utf-7",
    b"application/json; charset=utf-8; Charset=utf-8", b"application/json; charset=",
    b"application/json; charset", b"application/json; charset = utf-8",
    b"text/plain", b"application/jsonx", b"application/json-rpc", b"text/json",
    b"application/x-www-form-urlencoded", b"", b"application", b'application/json; x="open',
])
def test_anything_else_is_415(value):
    assert content_type_problem([value]) is not None
    with pytest.raises(BodyError) as e:
        check_headers([value], None)
    assert e.value.status == 415 and not e.value.accept_encoding


def test_no_content_type_declares_no_charset_and_is_taken():
    check_headers(None, None)


def test_two_content_types_are_refused():
    with pytest.raises(BodyError) as e:
        check_headers([b"application/json", b"application/json; charset=utf-7"], None)
    assert e.value.status == 415


@pytest.mark.parametrize("values", [[b"gzip"], [b"deflate"], [b"br"], [b"GZIP"], [b"identity, gzip"],
                                    [b"identity", b"gzip"], [b"x-gzip"], [b"zstd"], [b"compress"]])
def test_content_encodings_are_415_naming_identity(values):
    assert content_encoding_problem(values) is not None
    with pytest.raises(BodyError) as e:
        check_headers([b"application/json"], values)
    assert e.value.status == 415 and e.value.accept_encoding


@pytest.mark.parametrize("values", [[b"identity"], [b"Identity"], [b""], [b" identity , identity"]])
def test_identity_is_no_encoding(values):
    check_headers([b"application/json"], values)


@pytest.mark.parametrize("body", [
    b"\xef\xbb\xbf" + json.dumps(CALL).encode(),
    json.dumps(CALL).encode("utf-16"), json.dumps(CALL).encode("utf-16-le"),
    json.dumps(CALL).encode("utf-16-be"), json.dumps(CALL).encode("utf-32"),
    b'{"jsonrpc":"2.0","id":1,"method":"x\xff"}', b'{"a":"\xed\xa0\x80"}',  # CESU surrogate
    b'{"a":"\xc0\xae"}',  # overlong
])
def test_bytes_no_backend_reads_as_utf8_json_are_400(body):
    with pytest.raises(BodyError) as e:
        decode(body)
    assert e.value.status == 400 and e.value.code == -32700
    with pytest.raises(BodyError):
        check_bytes(body)


@pytest.mark.parametrize("body", [b'{"a":NaN}', b'{"a":Infinity}', b'{"a":-Infinity}', b"{", b"",
                                  b" ", b'{"a":1}x', b"[" * 100000, b'{"a":"\x00"}'])
def test_what_javascript_refuses_is_400(body):
    with pytest.raises(BodyError) as e:
        decode(body)
    assert e.value.status == 400


@pytest.mark.parametrize("body", [
    b'{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{},"params":{"name":"x"}}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}',
    b'{"jsonrpc":"2.0","id":1,"method":"ping","\\u006dethod":"tools/call"}',
])
def test_repeated_keys_are_refused(body):
    with pytest.raises(BodyError) as e:
        decode(body)
    assert (e.value.status, e.value.code) == (400, -32600)


def test_escaped_lone_surrogates_are_read_as_javascript_reads_them():
    # JSON.parse('"\\ud800"') is a one-unit string; Python reads the same code point
    assert decode(b'{"a":"\\ud800"}') == {"a": "\ud800"}
    check_bytes(b'{"a":"\\ud800"}')


@settings(deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text()
                    | st.floats(allow_nan=False, allow_infinity=False),
                    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
                    max_leaves=20))
def test_any_json_value_reads_back(value):
    body = json.dumps(value, ensure_ascii=False).encode("utf-8")
    assert decode(body) == value
    check_bytes(body)


@pytest.mark.parametrize("id_text", ["null", "1.5", "true", "9007199254740992", "[1]", "{}"])
def test_requests_with_ids_no_backend_matches_alike_are_refused(id_text):
    body = b'{"jsonrpc":"2.0","id":%s,"method":"tools/call"}' % id_text.encode()
    with pytest.raises(BodyError) as e:
        parse(body)
    assert (e.value.status, e.value.code, e.value.id) == (400, -32600, None)
    with pytest.raises(BodyError):
        parse(b"[" + body + b"]")


def test_a_batch_reusing_an_id_by_value_is_refused():
    for pair in (b"1,1", b"1,1.0", b"1,1e0", b"0,-0", b'"a","a"'):
        first, second = pair.split(b",")
        body = (b'[{"jsonrpc":"2.0","id":%s,"method":"tools/list"},'
                b'{"jsonrpc":"2.0","id":%s,"method":"tools/call"}]') % (first, second)
        with pytest.raises(BodyError) as e:
            parse(body)
        assert e.value.code == -32600, pair


def test_keys_notifications_and_client_answers():
    parsed = parse(b'[{"jsonrpc":"2.0","id":"1","method":"tools/list"},'
                   b'{"jsonrpc":"2.0","id":1.0,"method":"tools/call"},'
                   b'{"jsonrpc":"2.0","method":"notifications/initialized"},'
                   b'{"jsonrpc":"2.0","id":null,"error":{"code":-1,"message":"x"}},'
                   b'{"jsonrpc":"2.0","id":7,"result":{}}]')
    assert parsed.batch and len(parsed.messages) == 5
    assert parsed.keys == [("s", "1"), ("n", 1)]  # the requests only
    single = parse(json.dumps(CALL).encode())
    assert not single.batch and [m.raw for m in single.messages] == [CALL] and single.keys == [("n", 1)]
    # each message is classified once, here, for every stage after
    assert [m.kind for m in parsed.messages] == [
        "request", "request", "notification", "response", "response"]
    assert [m.id_key for m in parsed.messages] == [("s", "1"), ("n", 1), None, None, ("n", 7)]
