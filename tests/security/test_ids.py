"""
Issue #11 item 2: JSON-RPC ids are matched by value, as the backend reads
them, wherever the gateway correlates a response with its request.

The attack: a C{tools/list} with id C{1.0} (or C{1e0}, C{10e-1}) was answered
by a JavaScript backend with id C{1}; the gateway matched by Python type
and value, found no list to filter and let the whole list out. Now ids are
keyed by value (L{mcpgated.mcp.ids}): C{1}, C{1.0}, C{1e0}, C{10e-1} and
C{-0}/C{0} are one id each, C{"1"} another; ids no two backends read alike
(fractions, booleans, numbers past 2**53 - 1, null, objects) are refused
with 400 / -32600. This holds for list filtering (JSON and SSE answers),
batch duplicates, the exchange log, and fails closed: a list answer whose
id matches nothing forwarded is withheld.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from tests.raw_backend import RawRequest
from tests.security.judge_support import (
    Recording,
    Streamable,
    exchange_log,
    post,
    start_daemon,
    stop_daemon,
)
from tests.support import Daemon, deploy, messages_of

ECHO_ONLY = {"rules": [{"tools": ["echo"]}]}
TOOLS = [{"name": "echo", "inputSchema": {"type": "object"}},
         {"name": "get-env", "inputSchema": {"type": "object"}}]


def _javascript_answer(request: RawRequest) -> Tuple[int, bytes]:
    """
    Answers as a JavaScript backend does: ids read by JSON.parse, written
    back by JSON.stringify (1.0 becomes 1); C{"wrong-id"} in a request's
    params makes it answer with another id.
    """
    decoded = json.loads(request.body)
    messages = decoded if isinstance(decoded, list) else [decoded]
    answers = []
    for message in messages:
        if "id" not in message:
            continue
        ident = message["id"]
        if isinstance(ident, float) and ident.is_integer():
            ident = int(ident)
        if (message.get("params") or {}).get("wrong-id"):
            ident = 424242
        if message["method"] == "tools/list":
            answers.append({"jsonrpc": "2.0", "id": ident, "result": {"tools": TOOLS}})
        else:
            answers.append({"jsonrpc": "2.0", "id": ident, "result": {"content": []}})
    if not answers:
        return 202, b""
    return 200, json.dumps(answers if isinstance(decoded, list) else answers[0]).encode()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, everything) -> Iterator[Tuple[Daemon, Dict[str, str], Recording]]:
    daemon = start_daemon(tmp_path_factory.mktemp("ids"))
    backend = Recording(_javascript_answer)
    apis = {"/guarded": deploy(daemon, "/guarded", f"http://127.0.0.1:{everything}/mcp",
                               acl=ECHO_ONLY)["id"],
            "/json": deploy(daemon, "/json", backend.url + "/mcp", acl=ECHO_ONLY)["id"]}
    yield daemon, apis, backend
    stop_daemon(daemon)
    backend.stop()


def _tools(answer: List[Dict[str, Any]]) -> List[str]:
    return sorted(t["name"] for m in answer if "result" in m for t in m["result"]["tools"])


def _list(id_text: str) -> bytes:
    return b'{"jsonrpc":"2.0","id":%s,"method":"tools/list"}' % id_text.encode()


SAME_AS_ONE = ["1.0", "1e0", "10e-1", "0.1e1", "1E+0", "100e-2", "1.00000000000000001"]
OTHER_VALID = ["1", "-0", "-0.0", "0", "9007199254740991", "-9007199254740991", '"1"', '"1.0"', '""']


@pytest.mark.parametrize("path", ["/guarded", "/json"])  # SSE answers, JSON answers
def test_lists_are_filtered_whatever_the_id_spelling(gateway, path):
    daemon, _, _ = gateway
    session = Streamable(daemon, path) if path == "/guarded" else None
    for id_text in SAME_AS_ONE + OTHER_VALID:
        body = _list(id_text)
        status, _, answer = session.post(body) if session else post(daemon, path, body)
        assert status == 200, (id_text, answer)
        assert _tools(messages_of(answer)) == ["echo"], id_text
    # a string and a number are two ids in one batch
    status, _, answer = post(daemon, path, b'[{"jsonrpc":"2.0","id":"7","method":"tools/list"},'
                                           b'{"jsonrpc":"2.0","id":7.0,"method":"tools/call",'
                                           b'"params":{"name":"echo","arguments":{"message":"hi"}}}]',
                             session.headers if session else None)
    assert status == 200, answer
    answers = messages_of(answer)
    assert _tools([m for m in answers if m["id"] == "7"]) == ["echo"]
    assert [m["id"] for m in answers if "result" in m and "content" in m["result"]] == [7]


@pytest.mark.parametrize("id_text", [
    "1.5", "-0.5", "true", "false", "null", "9007199254740992", "9007199254740993",
    "-9007199254740993", "1e16", "1e400", "[1]", "{}", '{"a":1}', "123456789012345678901234567890",
])
def test_ids_no_two_backends_read_alike_are_refused(gateway, id_text):
    daemon, _, backend = gateway
    before = len(backend.requests)
    for path in ("/guarded", "/json"):
        for body in (_list(id_text), b"[" + _list(id_text) + b"]"):
            status, _, answer = post(daemon, path, body)
            assert status == 400, (path, body, answer)
            message = json.loads(answer)
            assert message["error"]["code"] == -32600 and message["id"] is None
    assert len(backend.requests) == before  # never forwarded


def test_a_batch_reusing_an_id_by_value_is_refused(gateway):
    daemon, _, backend = gateway
    before = len(backend.requests)
    for first, second in [("1", "1.0"), ("1", "1e0"), ("0", "-0"), ("0", "-0.0"), ("2", "20e-1"),
                          ('"a"', '"a"'), ("3", "3")]:
        body = (b'[{"jsonrpc":"2.0","id":%s,"method":"tools/list"},'
                b'{"jsonrpc":"2.0","id":%s,"method":"tools/call","params":{"name":"get-env"}}]'
                % (first.encode(), second.encode()))
        status, _, answer = post(daemon, "/json", body)
        assert status == 400, (first, second, answer)
        assert json.loads(answer)["error"]["code"] == -32600
    assert len(backend.requests) == before


def test_a_list_answer_matching_no_request_is_withheld(gateway):
    daemon, _, _ = gateway
    status, _, body = post(daemon, "/json", b'{"jsonrpc":"2.0","id":5,"method":"tools/list",'
                                            b'"params":{"wrong-id":true}}')
    assert status == 200
    (answer,) = messages_of(body)
    assert "result" not in answer and answer["error"]["code"] == -32603
    assert "get-env" not in body.decode()
    # in a batch, the answer to the other (forwarded) request still passes
    status, _, body = post(daemon, "/json", b'[{"jsonrpc":"2.0","id":6,"method":"tools/list",'
                                            b'"params":{"wrong-id":true}},{"jsonrpc":"2.0","id":8,'
                                            b'"method":"tools/call","params":{"name":"echo"}}]')
    answers = messages_of(body)
    assert "get-env" not in body.decode()
    assert [m for m in answers if m.get("id") == 8] == [
        {"jsonrpc": "2.0", "id": 8, "result": {"content": []}}]


def test_the_exchange_log_matches_answers_by_value(gateway):
    daemon, apis, _ = gateway
    session = Streamable(daemon, "/guarded")
    for id_text in ("31.0", "32e0", "330e-1"):
        status, _, body = session.post(_list(id_text))
        assert status == 200 and _tools(messages_of(body)) == ["echo"]
    rows = exchange_log(daemon, apis["/guarded"], "&method=tools/list")
    outcomes = {r["jsonrpcId"]: r["outcome"] for r in rows if r["jsonrpcId"][:2] in ("31", "32", "33")}
    assert outcomes == {"31.0": "result", "32.0": "result", "33.0": "result"}
