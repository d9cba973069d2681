"""
Issue #11 item 1: the gateway reads a JSON-RPC body exactly as a backend
may, or refuses it.

The attack: on the legacy HTTP+SSE transport the MCP TypeScript SDK decodes
a POST body by its declared charset. A UTF-7 body whose string
C{"+ACIALAAi-name+ACIAOgAi-echo"} is harmless UTF-8 holds, for the backend, a
second C{"name":"echo"}: the gateway judged (and logged) C{get-sum}, the
backend ran C{echo}. Now any charset other than UTF-8 and any
C{Content-Encoding} gets a 415 with a JSON-RPC error, a body that is not
strict UTF-8 JSON (BOM, UTF-16, invalid bytes, NaN) a 400, on every API
(with or without policy) and on both transports; UTF-8 in any spelling
passes, and so do JSON escapes of lone surrogates (JavaScript reads them
as Python does).
"""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from tests.security.judge_support import (
    Legacy,
    Streamable,
    exchange_log,
    start_daemon,
    stop_daemon,
)
from tests.support import Daemon, deploy

GET_SUM_ONLY = {"rules": [{"tools": ["get-sum"]}]}


def _attack(id: int) -> bytes:
    # UTF-8: one "name" (get-sum) and a harmless "x"; UTF-7: a second "name": "echo"
    return (b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"get-sum",'
            b'"arguments":{"a":1,"b":2,"message":"pwned"},"x":"+ACIALAAi-name+ACIAOgAi-echo"}}' % id)


def _echo(id: int, message: str) -> Dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": message}}}


def _sum(id: int) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                       "params": {"name": "get-sum", "arguments": {"a": 2, "b": 3}}}).encode()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, everything, everything_sse) -> Iterator[Tuple[Daemon, Dict[str, str]]]:
    daemon = start_daemon(tmp_path_factory.mktemp("charset"))
    sse = f"http://127.0.0.1:{everything_sse}"
    streamable = f"http://127.0.0.1:{everything}/mcp"
    apis = {
        "/legacy-acl": deploy(daemon, "/legacy-acl", sse, acl=GET_SUM_ONLY)["id"],
        "/legacy": deploy(daemon, "/legacy", sse)["id"],
        "/acl": deploy(daemon, "/acl", streamable, acl=GET_SUM_ONLY)["id"],
        "/plain": deploy(daemon, "/plain", streamable)["id"],
    }
    yield daemon, apis
    stop_daemon(daemon)


def _refusal(status: int, body: bytes, expected: int) -> Dict[str, Any]:
    assert status == expected, (status, body[:300])
    message = json.loads(body)
    assert message["jsonrpc"] == "2.0" and message["error"]["data"]["httpStatus"] == expected
    return message


@pytest.mark.parametrize("path", ["/legacy-acl", "/legacy"])
def test_a_utf7_body_never_runs_what_the_gateway_did_not_read(gateway, path):
    daemon, apis = gateway
    session = Legacy(daemon, path)
    status, body = session.post(_attack(2), "application/json; charset=utf-7")
    message = _refusal(status, body, 415)
    assert message["id"] is None and "utf-8" in message["error"]["message"].lower()
    # the session goes on; nothing answered id 2 before the next call's answer
    status, _ = session.post(_sum(3))
    assert status == 202
    seen = session.until(3)
    assert [m for m in seen if m.get("id") == 2] == []
    assert "The sum of 2 and 3 is 5." in json.dumps(seen[-1])
    assert "pwned" not in json.dumps(seen)
    session.close()


def test_the_exchange_log_does_not_record_a_call_the_backend_did_not_run(gateway):
    daemon, apis = gateway
    session = Legacy(daemon, "/legacy")
    assert session.post(_attack(12), "application/json; charset=utf-7")[0] == 415
    assert session.post(_sum(13))[0] == 202
    session.until(13)
    session.close()
    rows = exchange_log(daemon, apis["/legacy"], "&method=tools/call")
    assert [(r["jsonrpcId"], r["target"], r["outcome"]) for r in rows
            if r["jsonrpcId"] in ("12", "13")] == [("13", "get-sum", "result")]


# (content type, body encoder, expected status) for one echo call
UTF8 = [
    "application/json", "application/json; charset=UTF-8", 'application/json; charset="utf-8"',
    "application/json;charset=utf8", "APPLICATION/JSON; Charset=Utf-8",
]
REFUSED_CHARSETS = [
    ("application/json; charset=utf-7", "utf-7"),
    ("application/json; charset=utf-16", "utf-16"),
    ("application/json; charset=utf-16le", "utf-16-le"),
    ("application/json; charset=UTF-16BE", "utf-16-be"),
    ("application/json; charset=latin1", "latin-1"),
    ("application/json; charset=iso-8859-1", "latin-1"),
    ('application/json; charset="utf-7"', "utf-7"),
    ("application/json; charset=utf-8; charset=utf-7", "utf-8"),
    ("text/plain; charset=utf-8", "utf-8"),
]
ENCODINGS = [("gzip", gzip.compress), ("deflate", zlib.compress), ("br", lambda b: b),
             ("GZIP", gzip.compress), ("identity, gzip", gzip.compress)]
BAD_BYTES = [
    ("BOM", lambda b: b"\xef\xbb\xbf" + b),
    ("UTF-16 with BOM, no charset", lambda b: b.decode().encode("utf-16")),
    ("UTF-16LE, no charset", lambda b: b.decode().encode("utf-16-le")),
    ("invalid UTF-8", lambda b: b.replace(b"MARK", b"MA\xffRK")),
    ("encoded surrogate", lambda b: b.replace(b"MARK", b"MA\xed\xa0\x80RK")),
    ("NaN", lambda b: b.replace(b'"MARK"', b"NaN")),
    ("Infinity", lambda b: b.replace(b'"MARK"', b"-Infinity")),
]


class _Transport:
    """
    Posts on a session of either transport; C{answer(id)} is the call's
    answer as the client gets it.
    """

    def __init__(self, daemon: Daemon, kind: str, path: str) -> None:
        self.kind = kind
        self.session: Any = Legacy(daemon, path) if kind == "legacy" else Streamable(daemon, path)
        self.answers: Dict[int, Dict[str, Any]] = {}
        self.stray: List[Dict[str, Any]] = []

    def post(self, body: bytes, content_type: Optional[str],
             headers: Optional[Dict[str, str]] = None) -> Tuple[int, bytes]:
        if self.kind == "legacy":
            return self.session.post(body, content_type, headers)
        status, _, answer = self.session.post(body, content_type, headers)
        return status, answer

    def accepted(self, id: int, body: bytes, content_type: Optional[str]) -> Dict[str, Any]:
        status, answer = self.post(body, content_type)
        if self.kind == "legacy":
            assert status == 202, (content_type, status, answer)
            seen = self.session.until(id)
            self.stray.extend(seen[:-1])
            return seen[-1]
        assert status == 200, (content_type, status, answer)
        text = answer.decode()
        return [json.loads(line[5:]) for line in text.splitlines()
                if line.startswith("data:") and line[5:].strip()][-1] if "data:" in text \
            else json.loads(text)


@pytest.mark.parametrize("kind, path", [("streamable", "/plain"), ("streamable", "/acl"),
                                        ("legacy", "/legacy"), ("legacy", "/legacy-acl")])
def test_only_utf8_json_is_read(gateway, kind, path):
    daemon, apis = gateway
    transport = _Transport(daemon, kind, path)
    echo = path in ("/plain", "/legacy")  # the ACL allows get-sum only elsewhere

    def call(id: int, text: str) -> Dict[str, Any]:
        if echo:
            return _echo(id, text)
        return {"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": "get-sum", "arguments": {"a": id, "b": 1}, "_meta": {"t": text}}}

    def check(answer: Dict[str, Any], id: int, text: str) -> None:
        expected = f"Echo: {text}" if echo else f"The sum of {id} and 1 is {id + 1}."
        assert answer["result"]["content"][0]["text"] == expected, answer

    next_id = 100
    for content_type in UTF8:
        next_id += 1
        answer = transport.accepted(next_id, json.dumps(call(next_id, f"ok-{next_id}")).encode(),
                                    content_type)
        check(answer, next_id, f"ok-{next_id}")
    refused_ids = []
    for content_type, codec in REFUSED_CHARSETS:
        next_id += 1
        refused_ids.append(next_id)
        body = json.dumps(call(next_id, "MARK é"), ensure_ascii=False).encode(codec)
        status, answer = transport.post(body, content_type)
        assert _refusal(status, answer, 415)["error"]["code"] == -32600, content_type
    for coding, compress in ENCODINGS:
        next_id += 1
        refused_ids.append(next_id)
        status, answer = transport.post(compress(json.dumps(call(next_id, "MARK")).encode()),
                                        "application/json", {"Content-Encoding": coding})
        _refusal(status, answer, 415)
    for name, mangle in BAD_BYTES:
        next_id += 1
        refused_ids.append(next_id)
        plain = json.dumps(call(next_id, "MARK")).encode()
        mangled = mangle(plain)
        assert mangled != plain, name
        status, answer = transport.post(mangled, "application/json")
        assert _refusal(status, answer, 400)["error"]["code"] == -32700, name
    # a lone surrogate written as a JSON escape is one string for every reader
    next_id += 1
    answer = transport.accepted(next_id, json.dumps(call(next_id, "s\ud800")).encode(),
                                "application/json")
    check(answer, next_id, "s\ud800")
    # nothing refused reached the backend: no answer to it ever came
    assert not [m for m in transport.stray if m.get("id") in refused_ids]


def test_a_compressed_body_gets_accept_encoding_identity(gateway):
    daemon, _ = gateway
    session = Streamable(daemon, "/plain")
    status, headers, body = session.post(gzip.compress(json.dumps(_echo(1, "x")).encode()),
                                         headers={"Content-Encoding": "gzip"})
    _refusal(status, body, 415)
    assert headers["Accept-Encoding"] == "identity"
