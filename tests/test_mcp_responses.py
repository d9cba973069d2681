"""
The response reader (L{mcpgated.mcp.responses.ResponseReader}): what the
client gets and what the observer is told, for JSON bodies and event
streams, watched only or judged, in any chunking.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytest
from hypothesis import given, settings, strategies as st

from mcpgated.mcp.ids import IdKey
from mcpgated.mcp.messages import Message
from mcpgated.mcp.responses import MAX_JUDGED, MAX_READ, TOO_LARGE, ResponseReader, dump
from tests.sse_oracle import chunks_at, oracle_messages

_SETTINGS = settings(deadline=None, derandomize=True, max_examples=200)


class Seen:
    """
    An observer that records what it is told, in order.
    """

    def __init__(self) -> None:
        self.calls: List[Tuple[Any, ...]] = []

    def messages(self, messages: Sequence[Message], size: int, stream: bool) -> None:
        self.calls.append(("messages", [m.raw for m in messages], size, stream))

    def endpoint(self, url: str) -> None:
        self.calls.append(("endpoint", url))

    def unread(self, size: int) -> None:
        self.calls.append(("unread", size))

    def raws(self) -> List[Any]:
        return [raw for call in self.calls if call[0] == "messages" for raw in call[1]]


class StubJudge:
    """
    Replaces the messages whose id key it is given; adds C{extra} once.
    """

    def __init__(self, replace: Optional[Dict[IdKey, Any]] = None, extra: Optional[List[Any]] = None,
                 batch: bool = False) -> None:
        self.replace = replace or {}
        self._extra = list(extra or [])
        self._batch = batch
        self.judged: List[Any] = []

    @property
    def batch(self) -> bool:
        return self._batch

    def judge(self, message: Message) -> Optional[Any]:
        self.judged.append(message.raw)
        return self.replace.get(message.id_key) if message.id_key is not None else None

    def extra(self) -> List[Any]:
        extra, self._extra = self._extra, []
        return extra


def _result(ident: Any, result: Any = None) -> Dict[str, Any]:
    return {"jsonrpc": "2.0", "id": ident, "result": {"tools": []} if result is None else result}


REPLACED = {"jsonrpc": "2.0", "id": 2, "result": {"tools": [{"name": "allowed"}]}}
DENIED = {"jsonrpc": "2.0", "id": 9, "error": {"code": -32003, "message": "denied"}}


def _run(reader: ResponseReader, chunks: Sequence[bytes]) -> Tuple[List[bytes], bytes]:
    outs = [reader.feed(chunk) for chunk in chunks]
    return outs, reader.flush()


# --- JSON, watched only --------------------------------------------------------------------


def test_json_watch_only_passes_bytes_at_once_and_reports_at_flush() -> None:
    seen = Seen()
    reader = ResponseReader(False, observer=seen)
    body = b'{"jsonrpc":"2.0", "id":1,\n "result":{"tools":[]}}'
    assert reader.feed(body[:10]) == body[:10]
    assert reader.feed(body[10:]) == body[10:]
    assert seen.calls == []  # nothing is read before the end
    assert reader.flush() == b""
    assert seen.calls == [("messages", [_result(1)], len(body), False)]


def test_json_watch_only_reports_each_element_of_a_batch() -> None:
    seen = Seen()
    body = json.dumps([_result(1), _result("a"), DENIED]).encode()
    outs, end = _run(ResponseReader(False, observer=seen), [body])
    assert outs == [body] and end == b""
    assert seen.calls == [("messages", [_result(1), _result("a"), DENIED], len(body), False)]


@pytest.mark.parametrize("body", [b"", b" ", b"\r\n", b"not json", b'{"a":', b"\xff\xfe{}"])
def test_json_watch_only_sends_any_body_once_as_it_came(body: bytes) -> None:
    seen = Seen()
    outs, end = _run(ResponseReader(False, observer=seen), [body[:1], body[1:]])
    assert b"".join(outs) + end == body
    assert seen.raws() == []


@_SETTINGS
@given(st.binary(max_size=60) | st.sampled_from([b'{"jsonrpc":"2.0","id":1,"result":{}}', b"[1,2]", b"  "]),
       st.lists(st.integers(0, 100), max_size=5))
def test_json_watch_only_output_is_the_input_in_any_chunking(body: bytes, cuts: List[int]) -> None:
    outs, end = _run(ResponseReader(False, observer=Seen()), chunks_at(body, cuts))
    assert b"".join(outs) + end == body


def test_json_watch_only_over_max_read_is_unread() -> None:
    seen = Seen()
    body = b'{"jsonrpc":"2.0","id":1,"result":{"pad":"' + b"x" * MAX_READ + b'"}}'
    chunks = chunks_at(body, [100, MAX_READ // 2, MAX_READ + 3])
    outs, end = _run(ResponseReader(False, observer=seen), chunks)
    assert outs == chunks and end == b""  # the bytes still pass, unchanged
    assert [call[0] for call in seen.calls] == ["unread"]


def test_json_watch_only_at_max_read_is_still_read() -> None:
    seen = Seen()
    head = b'{"jsonrpc":"2.0","id":1,"result":{"pad":"'
    body = head + b"x" * (MAX_READ - len(head) - 3) + b'"}}'
    assert len(body) == MAX_READ
    _run(ResponseReader(False, observer=seen), [body])
    assert [call[0] for call in seen.calls] == ["messages"]


# --- JSON, judged --------------------------------------------------------------------------


def test_json_judged_is_held_until_flush_and_an_unchanged_single_keeps_its_bytes() -> None:
    seen = Seen()
    judge = StubJudge()
    reader = ResponseReader(False, judge=judge, observer=seen)
    body = b'{ "jsonrpc" : "2.0",\n  "id" : 1.0, "result": {"tools": [], "x": "\\u00e9"} }\n'
    assert reader.feed(body[:7]) == b""
    assert reader.feed(body[7:]) == b""
    assert judge.judged == []
    assert reader.flush() == body  # byte for byte: not re-encoded
    assert judge.judged == [json.loads(body)]
    assert seen.calls == [("messages", [json.loads(body)], len(body), False)]


def test_json_judged_single_replaced() -> None:
    seen = Seen()
    body = json.dumps(_result(2, {"tools": [{"name": "allowed"}, {"name": "secret"}]})).encode()
    outs, end = _run(ResponseReader(False, judge=StubJudge({("n", 2): REPLACED}), observer=seen), [body])
    assert outs == [b""]
    assert json.loads(end) == REPLACED
    assert b"secret" not in end
    assert seen.calls == [("messages", [REPLACED], len(end), False)]


def test_json_judged_batch_with_extra_appended() -> None:
    seen = Seen()
    body = json.dumps([_result(1), _result(2, {"tools": [{"name": "secret"}]})]).encode()
    judge = StubJudge({("n", 2): REPLACED}, extra=[DENIED], batch=True)
    _, end = _run(ResponseReader(False, judge=judge, observer=seen), [body[:5], body[5:]])
    assert json.loads(end) == [_result(1), REPLACED, DENIED]
    assert seen.calls == [("messages", [_result(1), REPLACED, DENIED], len(end), False)]


def test_json_judged_single_with_extra_becomes_an_array() -> None:
    seen = Seen()
    body = json.dumps(_result(1)).encode()
    _, end = _run(ResponseReader(False, judge=StubJudge(extra=[DENIED]), observer=seen), [body])
    assert json.loads(end) == [_result(1), DENIED]
    assert seen.raws() == [_result(1), DENIED]


@pytest.mark.parametrize("body", [b"", b"  \n"])
def test_json_judged_empty_body_with_extra(body: bytes) -> None:
    # a batch all denied: an array; a single request denied: the object alone
    seen = Seen()
    _, end = _run(ResponseReader(False, judge=StubJudge(extra=[DENIED], batch=True), observer=seen), [body])
    assert json.loads(end) == [DENIED]
    _, end = _run(ResponseReader(False, judge=StubJudge(extra=[DENIED], batch=False), observer=seen), [body])
    assert json.loads(end) == DENIED
    assert seen.raws() == [DENIED, DENIED]


def test_json_judged_empty_body_without_extra_is_empty() -> None:
    seen = Seen()
    assert _run(ResponseReader(False, judge=StubJudge(batch=True), observer=seen), [b""]) == ([b""], b"")
    assert seen.calls == []


@pytest.mark.parametrize("body", [b"not json", b'{"jsonrpc":"2.0","id":1,', b"<html>502</html>"])
def test_json_judged_undecodable_passes_as_is(body: bytes) -> None:
    seen = Seen()
    judge = StubJudge({("n", 1): REPLACED})
    outs, end = _run(ResponseReader(False, judge=judge, observer=seen), [body])
    assert b"".join(outs) + end == body
    assert judge.judged == [] and seen.calls == []


def test_json_judged_over_max_judged_is_an_error_with_a_null_id() -> None:
    seen = Seen()
    judge = StubJudge()
    body = b'{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret","d":"' + b"x" * MAX_JUDGED + b'"}]}}'
    outs, end = _run(ResponseReader(False, judge=judge, observer=seen), chunks_at(body, [MAX_JUDGED // 2]))
    assert outs == [b"", b""]
    error = {"jsonrpc": "2.0", "id": None, "error": {"code": -32603, "message": TOO_LARGE}}
    assert json.loads(end) == error
    assert b"secret" not in end
    assert judge.judged == []
    assert [c[0] for c in seen.calls] == ["unread", "messages"]
    assert seen.raws() == [error]


# --- event streams, watched only ---------------------------------------------------------

_MESSAGES = [_result(1), _result("s", {"content": [{"type": "text", "text": "ü"}]}), DENIED,
             {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}},
             [_result(3), _result(4)], 7]


@st.composite
def event_streams(draw: Any) -> Tuple[bytes, List[Any]]:
    """
    An event stream of JSON-RPC messages (some split over several data
    lines) with comments, ids, event types, retry fields, non-JSON and empty
    events, in one of the three line endings; and its messages in order.
    """
    end = draw(st.sampled_from(["\n", "\r", "\r\n"]))
    parts: List[str] = []
    values: List[Any] = []
    for _ in range(draw(st.integers(0, 6))):
        lines: List[str] = []
        if draw(st.booleans()):
            lines.append(": keep-alive")
        if draw(st.booleans()):
            lines.append("event: message")
        if draw(st.booleans()):
            lines.append(f"id: {draw(st.integers(0, 99))}")
        kind = draw(st.sampled_from(["message", "message", "split", "text", "none"]))
        if kind in ("message", "split"):
            value = draw(st.sampled_from(_MESSAGES))
            text = json.dumps(value, ensure_ascii=False)
            if kind == "split":
                text = text.replace(", ", ",\ndata: ")
            lines.append("data: " + text)
            values.extend(value if isinstance(value, list) else [value])
        elif kind == "text":
            lines.append("data: not json")
        if draw(st.booleans()):
            lines.append("retry: 1000")
        parts.append("".join(line + end for line in lines) + end)
    return "".join(parts).encode("utf-8"), values


@_SETTINGS
@given(event_streams(), st.lists(st.integers(0, 10 ** 6), max_size=10))
def test_stream_watch_only_output_is_the_input_in_any_chunking(stream: Any, cuts: List[int]) -> None:
    data, values = stream
    seen = Seen()
    chunks = chunks_at(data, cuts)
    outs, end = _run(ResponseReader(True, observer=seen), chunks)
    assert outs == chunks  # each chunk at once, unchanged
    assert end == b""
    assert seen.raws() == values == oracle_messages([data])  # each message once, in order
    assert all(call[3] is True for call in seen.calls if call[0] == "messages")


def test_stream_watch_only_sizes_are_the_data_sizes() -> None:
    seen = Seen()
    payload = json.dumps(_result(1)).encode()
    _run(ResponseReader(True, observer=seen), [b"event: message\ndata: " + payload + b"\n\n"])
    assert seen.calls == [("messages", [_result(1)], len(payload), True)]


def test_stream_watch_only_skips_events_over_max_read() -> None:
    seen = Seen()
    big = b'data: {"jsonrpc":"2.0","id":1,"result":{"p":"' + b"x" * MAX_READ + b'"}}\n\n'
    small = b"data: " + json.dumps(_result(2)).encode() + b"\n\n"
    outs, end = _run(ResponseReader(True, observer=seen), [big, small])
    assert outs == [big, small] and end == b""
    assert seen.raws() == [_result(2)]


# --- event streams, judged ---------------------------------------------------------------


def _replaced_event(event: bytes, end: bytes, new: Any) -> bytes:
    """
    The event with its data lines replaced by one line carrying C{new},
    at the first data line's place; every other line as it was.
    """
    lines = event[: -len(end)].split(end)[:-1]
    out: List[bytes] = []
    written = False
    for line in lines:
        if line.startswith(b"data:"):
            if not written:
                out.append(b"data: " + dump(new) + end)
                written = True
        else:
            out.append(line + end)
    return b"".join(out) + end


@st.composite
def judged_streams(draw: Any) -> Tuple[bytes, bytes, List[Any]]:
    """
    A stream, the stream the client must get when id 2 is replaced by
    L{REPLACED} (and the batch [3, 4] by [3, REPLACED_4]), and the messages
    the observer must see.
    """
    end = draw(st.sampled_from(["\n", "\r", "\r\n"])).encode()
    stream, expected = b"", b""
    seen: List[Any] = []
    for _ in range(draw(st.integers(0, 6))):
        head = b""
        if draw(st.booleans()):
            head += b"event: message" + end
        if draw(st.booleans()):
            head += b"id: 5" + end
        if draw(st.booleans()):
            head += b": c" + end
        value = draw(st.sampled_from([_result(1), _result(2), [_result(3), _result(4)], DENIED, "text"]))
        if value == "text":
            event = head + b"data: not json" + end + end
            stream += event
            expected += event
            continue
        text = json.dumps(value).encode()
        if draw(st.booleans()):
            text = text.replace(b", ", b",\ndata:").replace(b"\n", end)
        event = head + b"data: " + text + end + b"retry: 7" + end + end
        stream += event
        if value == _result(2):
            expected += _replaced_event(event, end, REPLACED)
            seen.append(REPLACED)
        elif isinstance(value, list):
            sent = [_result(3), REPLACED_4]
            expected += _replaced_event(event, end, sent)
            seen.extend(sent)
        else:
            expected += event
            seen.append(value)
    return stream, expected, seen


REPLACED_4 = {"jsonrpc": "2.0", "id": 4, "result": {"tools": []}, "filtered": True}


def _judge() -> StubJudge:
    return StubJudge({("n", 2): REPLACED, ("n", 4): REPLACED_4})


def test_stream_judged_replaces_the_judged_event_and_keeps_the_others_byte_exact() -> None:
    seen = Seen()
    first = b": hi\r\nevent: message\r\nid: 1\r\ndata: " + json.dumps(_result(1)).encode() + b"\r\n\r\n"
    second = (b'id: 2\r\ndata: {"jsonrpc":"2.0",\r\ndata: "id":2,"result":{"tools":[{"name":"secret"}]}}'
               b"\r\nretry: 10\r\n\r\n")
    outs, end = _run(ResponseReader(True, judge=_judge(), observer=seen), [first + second])
    assert outs == [first + b"id: 2\r\ndata: " + dump(REPLACED) + b"\r\nretry: 10\r\n\r\n"]
    assert end == b""
    assert seen.raws() == [_result(1), REPLACED]


def test_stream_judged_holds_only_the_incomplete_event() -> None:
    reader = ResponseReader(True, judge=_judge())
    event = b"data: " + json.dumps(_result(1)).encode() + b"\n\n"
    assert reader.feed(event + b"data: {\"jsonrpc\"") == event
    assert reader.feed(b':"2.0","id":2,"result":{}}\n') == b""
    assert reader.feed(b"\n") == b"data: " + dump(REPLACED) + b"\n\n"


def test_stream_judged_batch_event_is_replaced_whole() -> None:
    seen = Seen()
    event = b"data: " + json.dumps([_result(3), _result(4)]).encode() + b"\n\n"
    outs, _ = _run(ResponseReader(True, judge=_judge(), observer=seen), [event])
    assert outs == [b"data: " + dump([_result(3), REPLACED_4]) + b"\n\n"]
    assert seen.raws() == [_result(3), REPLACED_4]


def test_stream_judged_batch_event_without_change_keeps_its_bytes() -> None:
    event = b"data: [" + json.dumps(_result(1)).encode() + b" , " + json.dumps(_result(5)).encode() + b"]\n\n"
    outs, _ = _run(ResponseReader(True, judge=_judge()), [event])
    assert outs == [event]


def test_stream_judged_extra_events_come_at_flush() -> None:
    seen = Seen()
    judge = StubJudge(extra=[DENIED, {**DENIED, "id": 10}])
    event = b"data: " + json.dumps(_result(1)).encode() + b"\n\n"
    reader = ResponseReader(True, judge=judge, observer=seen)
    assert reader.feed(event + b": partial") == event
    assert reader.flush() == (b": partial" + b"event: message\ndata: " + dump(DENIED) + b"\n\n"
                              + b"event: message\ndata: " + dump({**DENIED, "id": 10}) + b"\n\n")
    assert seen.raws() == [_result(1), DENIED, {**DENIED, "id": 10}]


@_SETTINGS
@given(judged_streams(), st.lists(st.integers(0, 10 ** 6), max_size=10))
def test_stream_judged_is_chunking_independent(stream: Any, cuts: List[int]) -> None:
    data, expected, messages = stream
    seen = Seen()
    outs, end = _run(ResponseReader(True, judge=_judge(), observer=seen), chunks_at(data, cuts))
    assert b"".join(outs) + end == expected
    assert seen.raws() == messages


def test_stream_judged_oversized_event_is_not_passed_unjudged() -> None:
    judge = StubJudge({("n", 1): {"jsonrpc": "2.0", "id": 1, "result": {"tools": []}}})
    event = (b'data: {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret"}],"pad":"'
             + b"p" * (MAX_JUDGED + 200000) + b'"}}\n\n')
    chunks = [event[i:i + 65536] for i in range(0, len(event), 65536)]
    outs, end = _run(ResponseReader(True, judge=judge), chunks)
    assert b"secret" not in b"".join(outs) + end


# --- the legacy endpoint event -----------------------------------------------------------


def _legacy(seen: Optional[Seen] = None, within: int = 64 * 1024) -> ResponseReader:
    return ResponseReader(True, observer=seen, endpoint=lambda url: "https://gw.example/api" + url,
                          endpoint_within=within)


def test_the_first_endpoint_event_is_rewritten_and_reported() -> None:
    seen = Seen()
    reader = _legacy(seen)
    assert reader.feed(b": hello\n\n") == b": hello\n\n"
    assert reader.feed(b"event: endpoint\r\nid: 1\r\ndata: /messages?sessionId=abc\r\n\r\n") == \
        b"event: endpoint\r\nid: 1\r\ndata: https://gw.example/api/messages?sessionId=abc\r\n\r\n"
    assert reader.feed(b"event: endpoint\ndata: /second\n\n") == b"event: endpoint\ndata: /second\n\n"
    assert reader.flush() == b""
    assert seen.calls == [("endpoint", "https://gw.example/api/messages?sessionId=abc")]


def test_bytes_after_the_endpoint_event_in_the_same_chunk_are_not_lost() -> None:
    seen = Seen()
    message = b"event: message\ndata: " + json.dumps(_result(1)).encode() + b"\n\n"
    chunk = b"event: endpoint\ndata: /m?s=1\n\n" + message + b"event: message\ndata: {\"jsonrpc\""
    outs, end = _run(_legacy(seen), [chunk])
    assert b"".join(outs) + end == (b"event: endpoint\ndata: https://gw.example/api/m?s=1\n\n" + message
                                    + b"event: message\ndata: {\"jsonrpc\"")
    assert outs[0].endswith(b'{"jsonrpc"')  # released at once, not at flush
    assert seen.calls == [("endpoint", "https://gw.example/api/m?s=1"), ("messages", [_result(1)], len(
        json.dumps(_result(1))), True)]


def test_a_message_split_across_the_endpoint_release_is_still_observed() -> None:
    seen = Seen()
    reader = _legacy(seen)
    reader.feed(b'event: endpoint\ndata: /m\n\ndata: {"jsonrpc":"2.0","id":1,')
    reader.feed(b'"result":{}}\n\n')
    reader.flush()
    assert seen.raws() == [{"jsonrpc": "2.0", "id": 1, "result": {}}]


@_SETTINGS
@given(st.lists(st.integers(0, 10 ** 6), max_size=8))
def test_endpoint_rewrite_with_messages_is_chunking_independent(cuts: List[int]) -> None:
    message = b"data: " + json.dumps(_result(1)).encode() + b"\n\n"
    stream = b": hi\n\nevent: endpoint\ndata: /m?s=1\n\n" + message + b"event: endpoint\ndata: /x\n\n"
    outs, end = _run(_legacy(), chunks_at(stream, cuts))
    assert b"".join(outs) + end == (b": hi\n\nevent: endpoint\ndata: https://gw.example/api/m?s=1\n\n" + message
                                    + b"event: endpoint\ndata: /x\n\n")


def test_endpoint_search_gives_up_after_endpoint_within_and_releases_held_bytes() -> None:
    seen = Seen()
    reader = _legacy(seen, within=100)
    assert reader.feed(b": x\n\ndata: partial") == b": x\n\n"  # the incomplete event is held
    rest = b" more" * 30
    assert reader.feed(rest) == b"data: partial" + rest  # past 100 bytes: released
    late = b"\n\nevent: endpoint\ndata: /late\n\n"
    assert reader.feed(late) == late  # no longer rewritten
    assert reader.flush() == b""
    assert not any(call[0] == "endpoint" for call in seen.calls)


def test_a_stream_that_ends_before_its_endpoint_event_releases_what_it_held() -> None:
    reader = _legacy()
    assert reader.feed(b"data: half") == b""
    assert reader.flush() == b"data: half"


def test_endpoint_rewrite_with_a_judge_keeps_judging() -> None:
    seen = Seen()
    reader = ResponseReader(True, judge=_judge(), observer=seen, endpoint=lambda url: "X" + url)
    stream = b"event: endpoint\ndata: /m\n\ndata: " + json.dumps(_result(2)).encode() + b"\n\n"
    outs, end = _run(reader, [stream])
    assert b"".join(outs) + end == b"event: endpoint\ndata: X/m\n\ndata: " + dump(REPLACED) + b"\n\n"
    assert seen.calls[0] == ("endpoint", "X/m")
    assert seen.raws() == [REPLACED]
