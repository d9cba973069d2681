"""
The incremental SSE framing: any chunking of a stream gives the same events
as the whole stream, and the legacy endpoint rewrite changes only the
endpoint event's data.
"""

from __future__ import annotations

from typing import List

from hypothesis import given, settings, strategies as st

from mcpgated.mcp.responses import ResponseReader
from mcpgated.mcp.sse import LineSplitter
from tests.sse_oracle import Event, EventParser, chunks_at

settings.register_profile("ci", deadline=None, max_examples=200, derandomize=True)
settings.load_profile("ci")

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
                max_size=20)
_ending = st.sampled_from(["\n", "\r", "\r\n"])


@st.composite
def streams(draw) -> str:
    """
    Event streams with every line ending, multi-line data, comments, ids,
    retry fields, event types and unknown fields.
    """
    parts: List[str] = []
    for _ in range(draw(st.integers(0, 6))):
        lines = draw(st.lists(st.one_of(
            _text.map(lambda t: "data: " + t),
            _text.map(lambda t: "data:" + t),
            _text.map(lambda t: ": " + t),
            _text.map(lambda t: "event: " + t),
            _text.map(lambda t: "id: " + t),
            st.integers(0, 10**6).map(lambda n: f"retry: {n}"),
            _text.map(lambda t: "x-unknown: " + t),
            st.just("data"),
        ), max_size=6))
        for line in lines:
            parts.append(line + draw(_ending))
        parts.append(draw(_ending))
    return "".join(parts)


def _parse(chunks: List[bytes]) -> List[Event]:
    parser = EventParser()
    events: List[Event] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events


@given(streams(), st.lists(st.integers(0, 10**6), max_size=12))
def test_any_chunking_gives_the_same_events(stream: str, cuts: List[int]) -> None:
    data = stream.encode("utf-8")
    assert _parse(chunks_at(data, cuts)) == _parse([data])


@given(streams(), st.lists(st.integers(0, 10**6), max_size=12))
def test_byte_by_byte_gives_the_same_events(stream: str, cuts: List[int]) -> None:
    data = stream.encode("utf-8")
    assert _parse([data[i:i + 1] for i in range(len(data))]) == _parse([data])


def test_fields_follow_the_html_rules() -> None:
    events = _parse([b": comment\r\nid: 7\r\nevent: message\r\ndata: {\"a\":\r\ndata:1}\r\nretry: 300\r\n\r\n"
                     b"data\n\n", b"id: 8\rdata: x\r\r", b"data: no-dispatch-yet"])
    assert events == [
        Event(type="message", data='{"a":\n1}', id="7", retry=300),
        Event(type="message", data="", id="7"),
        Event(type="message", data="x", id="8"),
    ]


def test_cr_then_lf_in_the_next_chunk_is_one_line_end() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"data: a\r") == [(b"data: a", b"\r")]
    assert splitter.feed(b"\n\r\n") == [(b"", b"\r\n")]


def test_overlong_line_is_cut_to_bound_memory() -> None:
    splitter = LineSplitter(max_line=10)
    assert splitter.feed(b"x" * 25) == [(b"x" * 25, b"")]
    assert splitter.feed(b"\n") == [(b"", b"\n")]


# --- the legacy endpoint event ------------------------------------------------------------


def _rewrite(chunks: List[bytes]) -> bytes:
    rewriter = ResponseReader(True, endpoint=lambda value: "https://gw.example/legacy" + value)
    out = b"".join(rewriter.feed(chunk) for chunk in chunks)
    return out + rewriter.flush()


@given(st.lists(st.integers(0, 200), max_size=8), _ending)
def test_endpoint_rewrite_is_chunking_independent(cuts: List[int], end: str) -> None:
    e = end.encode()
    stream = (b": hello" + e + e + b"event: endpoint" + e + b"data: /message?sessionId=abc" + e + e
              + b"event: message" + e + b'data: {"jsonrpc":"2.0"}' + e + e)
    expected = (b": hello" + e + e + b"event: endpoint" + e
                + b"data: https://gw.example/legacy/message?sessionId=abc" + e + e
                + b"event: message" + e + b'data: {"jsonrpc":"2.0"}' + e + e)
    assert _rewrite(chunks_at(stream, cuts)) == expected


def test_rewriter_passes_through_after_the_endpoint_event() -> None:
    rewriter = ResponseReader(True, endpoint=lambda value: "X")
    assert rewriter.feed(b"event: endpoint\ndata: /m?s=1\n\n") == b"event: endpoint\ndata: X\n\n"
    # later bytes are forwarded at once, even mid-event
    assert rewriter.feed(b"event: endpoint\ndata: /other") == b"event: endpoint\ndata: /other"


def test_rewriter_gives_up_on_streams_without_endpoint() -> None:
    rewriter = ResponseReader(True, endpoint=lambda value: "X", endpoint_within=100)
    big = b"data: " + b"y" * 200
    assert rewriter.feed(big) == big
