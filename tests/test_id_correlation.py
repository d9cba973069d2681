"""
Every place that matches a response to its request keys ids by value
(L{mcpgated.mcp.ids}): list filtering (JSON and SSE), the exchange log's
tracker, the id the gateway echoes in its own errors; and the rewriters
fail closed on an answer they cannot place.
"""

from __future__ import annotations

import json
from typing import Any, List

from hypothesis import given, settings, strategies as st
from twisted.internet.task import Clock
from twisted.web.http_headers import Headers

from mcpgated.analytics.records import Capture, CallRecord
from mcpgated.analytics.sessions import SessionBook
from mcpgated.analytics.tracker import ExchangeTracker
from mcpgated.jsonrpc import request_id
from mcpgated.mcp.ids import MAX_SAFE
from mcpgated.policy.rewrite import UNMATCHED
from tests.exchange_driver import DrivenExchange, RecordingMetrics, events_judged, json_judged

TOOLS = {"tools": [{"name": "echo"}, {"name": "secret"}]}


def _only_echo(method: str, result: Any) -> Any:
    return {"tools": [t for t in result["tools"] if t["name"] == "echo"]}


SPELLINGS = st.integers(-MAX_SAFE, MAX_SAFE).flatmap(lambda n: st.sampled_from(
    [str(n), f"{n}.0", f"{n}e0", f"{n * 10}e-1", f"{n}.000"]))


@settings(deadline=None)
@given(SPELLINGS)
def test_a_list_asked_with_any_spelling_is_filtered_in_json_and_sse(spelling):
    value = json.loads(spelling)
    key = ("n", int(value))
    # a JavaScript backend answers with the number it read
    answer = {"jsonrpc": "2.0", "id": int(value), "result": TOOLS}
    rewriter = json_judged({key: "tools/list"}, _only_echo, [], batch=False)
    rewriter.feed(json.dumps(answer).encode())
    assert json.loads(rewriter.flush())["result"]["tools"] == [{"name": "echo"}]
    events = events_judged({key: "tools/list"}, _only_echo, [])
    out = events.feed(b"data: " + json.dumps(answer).encode() + b"\n\n") + events.flush()
    assert b"secret" not in out and b"echo" in out


def test_an_answer_matching_no_forwarded_request_is_withheld_while_lists_are_filtered():
    lists = {("n", 1): "tools/list"}
    for answer_id in (2, "1", None, 1.5, True):
        answer = {"jsonrpc": "2.0", "id": answer_id, "result": TOOLS}
        rewriter = json_judged(lists, _only_echo, [], batch=False, forwarded={("n", 3)})
        rewriter.feed(json.dumps(answer).encode())
        out = json.loads(rewriter.flush())
        assert out["error"] == {"code": -32603, "message": UNMATCHED}, answer_id
        events = events_judged(lists, _only_echo, [], forwarded={("n", 3)})
        out_events = events.feed(b"data: " + json.dumps(answer).encode() + b"\n\n")
        assert b"secret" not in out_events and UNMATCHED.encode() in out_events
    # the answer to a forwarded call that is not a list passes as it came
    body = json.dumps({"jsonrpc": "2.0", "id": 3.0, "result": TOOLS}).encode()
    rewriter = json_judged(lists, _only_echo, [], batch=False, forwarded={("n", 3)})
    rewriter.feed(body)
    assert rewriter.flush() == body


def test_answers_are_read_as_a_client_reads_them():
    # invalid UTF-8 in a list answer: a client reads U+FFFD, so must the filter
    body = (b'{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"},'
            b'{"name":"secret","description":"\xff"}]}}')
    rewriter = json_judged({("n", 1): "tools/list"}, _only_echo, [], batch=False)
    rewriter.feed(body)
    assert b"secret" not in rewriter.flush()


def _tracker(records: List[CallRecord], book: SessionBook) -> DrivenExchange:
    return DrivenExchange(ExchangeTracker(clock=Clock(), book=book, emit=records.append,
                                          metrics=RecordingMetrics(), api_id="api",
                                          api_name="API", plan="Keyless", client="127.0.0.1",
                                          capture=Capture(), started=0.0))


@settings(deadline=None)
@given(SPELLINGS, st.booleans())
def test_the_exchange_log_matches_answers_by_value(spelling, sse):
    records: List[CallRecord] = []
    tracker = _tracker(records, SessionBook())
    body = b'{"jsonrpc":"2.0","id":%s,"method":"tools/list"}' % spelling.encode()
    tracker.request(body, Headers(), b"/mcp")
    tracker.response(200, Headers(), 1.0, sse)
    answer = json.dumps({"jsonrpc": "2.0", "id": int(json.loads(spelling)), "result": TOOLS})
    tracker.data(b"data: " + answer.encode() + b"\n\n" if sse else answer.encode())
    tracker.finished("complete", 200)
    assert [(r.method, r.outcome) for r in records] == [("tools/list", "result")]


def test_the_exchange_log_does_not_record_what_the_gateway_refuses_to_read():
    for body in (b'{"jsonrpc":"2.0","id":null,"method":"tools/call"}',
                 b'{"jsonrpc":"2.0","id":1.5,"method":"tools/call"}',
                 b'\xef\xbb\xbf{"jsonrpc":"2.0","id":1,"method":"tools/call"}',
                 b'{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}'):
        records: List[CallRecord] = []
        tracker = _tracker(records, SessionBook())
        tracker.request(body, Headers(), b"/mcp")
        tracker.finished("bad_request", 400)
        assert records == [], body


def test_the_gateway_echoes_ids_it_can_read_as_javascript_writes_them():
    assert request_id(b'{"jsonrpc":"2.0","id":1.0,"method":"x"}') == 1
    assert request_id(b'{"jsonrpc":"2.0","id":"1","method":"x"}') == "1"
    for text in (b"1.5", b"true", b"null", b"9007199254740992", b"[1]"):
        assert request_id(b'{"jsonrpc":"2.0","id":%s,"method":"x"}' % text) is None
    # bodies it refuses to read: no id is read from them
    assert request_id(b'\xef\xbb\xbf{"jsonrpc":"2.0","id":1,"method":"x"}') is None
    assert request_id(b'{"jsonrpc":"2.0","id":1,"id":2,"method":"x"}') is None
