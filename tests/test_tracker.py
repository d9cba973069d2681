"""
MCP inspection, exchange by exchange, with an injected clock: correlation
on the same stream, across streams of a session, batches, server->client
requests, both protocol eras, chunking independence.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any, List, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from twisted.internet.task import Clock
from twisted.web.http_headers import Headers

from mcpgated.analytics.metrics import LATENCY_BUCKETS, Metrics
from mcpgated.analytics.store import COLUMNS, AnalyticsStore, _row, bucket_seconds, percentile
from mcpgated.analytics.records import Capture, CallRecord
from mcpgated.analytics.sessions import SessionBook
from mcpgated.analytics.tracker import ExchangeTracker
from mcpgated.mcp.responses import MAX_READ, ResponseReader, loads
from tests.exchange_driver import DrivenExchange, RecordingMetrics
from tests.sse_oracle import oracle_messages
from tests.support import make_headers


class Harness:
    def __init__(self) -> None:
        self.clock = Clock()
        self.book = SessionBook()
        self.records: List[CallRecord] = []
        self.notifications: List[str] = []

    def tracker(self, method: bytes = b"POST", capture: str = "off") -> DrivenExchange:
        self.metrics = RecordingMetrics()
        self.metrics.notifications = self.notifications
        return DrivenExchange(ExchangeTracker(
            clock=self.clock, book=self.book, emit=self.records.append,
            metrics=self.metrics, api_id="api",
            api_name="API", plan="Keyless", client="127.0.0.1", capture=Capture(capture),
            started=self.clock.seconds(), http_method=method))

    def exchange(self, body: Any, response: Optional[bytes], status: int = 200,
                 sse: bool = False, session: Optional[str] = None, uri: bytes = b"/mcp",
                 method: bytes = b"POST", response_session: Optional[str] = None,
                 chunk: int = 0, capture: str = "off") -> DrivenExchange:
        t = self.tracker(method, capture)
        raw = json.dumps(body).encode() if body is not None else b""
        t.request(raw, make_headers(mcp_session_id=session) if session else Headers(), uri)
        rh = make_headers(content_type="text/event-stream" if sse else "application/json")
        if response_session:
            rh.setRawHeaders(b"mcp-session-id", [response_session.encode()])
        self.clock.advance(0.010)
        t.response(status, rh, 10.0, sse)
        if response:
            pieces = [response] if not chunk else [response[i:i + chunk]
                                                   for i in range(0, len(response), chunk)]
            for piece in pieces:
                self.clock.advance(0.001)
                t.data(piece)
        t.finished("complete", status)
        return t


def _sse(*messages: Any) -> bytes:
    return b"".join(b"event: message\r\ndata: " + json.dumps(m).encode() + b"\r\n\r\n"
                    for m in messages)


def test_initialize_gives_client_and_session_to_later_calls():
    h = Harness()
    h.exchange({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "inspector", "version": "1.2"}}},
        _sse({"jsonrpc": "2.0", "id": 0, "result": {"protocolVersion": "2025-06-18"}}),
        sse=True, response_session="S1")
    h.exchange({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "echo", "arguments": {}}},
               json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"content": []}}).encode(),
               session="S1")
    init, call = h.records
    assert init.session == call.session is not None
    assert call.session != "S1"  # stored hashed
    assert (call.client_name, call.client_version, call.protocol_version) == ("inspector", "1.2", "2025-06-18")
    assert (call.method, call.target, call.outcome, call.http_status) == ("tools/call", "echo", "result", 200)
    assert call.latency_ms == 11.0 and call.ttfb_ms == 10.0


def test_modern_meta_gives_client_per_request():
    h = Harness()
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "modern", "version": "2"},
            "io.modelcontextprotocol/clientCapabilities": {}}
    h.exchange({"jsonrpc": "2.0", "id": "a", "method": "tools/list", "params": {"_meta": meta}},
               json.dumps({"jsonrpc": "2.0", "id": "a", "result": {"tools": []}}).encode())
    record, = h.records
    assert (record.client_name, record.protocol_version, record.session) == ("modern", "2026-07-28", None)


def test_errors_tool_errors_and_http_errors():
    h = Harness()
    h.exchange({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x"}},
               json.dumps({"jsonrpc": "2.0", "id": 1,
                           "error": {"code": -32602, "message": "Unknown tool: x"}}).encode())
    h.exchange({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "y"}},
               json.dumps({"jsonrpc": "2.0", "id": 2, "result": {
                   "isError": True, "content": [{"type": "text", "text": "boom"}]}}).encode())
    h.exchange({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, b"Unauthorized", status=401)
    h.exchange({"jsonrpc": "2.0", "method": "notifications/initialized"}, None, status=202)
    outcomes = [(r.outcome, r.error_code, r.error_message, r.http_status) for r in h.records]
    assert outcomes == [("error", -32602, "Unknown tool: x", 200), ("tool_error", None, "boom", 200),
                        ("http_error", None, None, 401), ("accepted", None, None, 202)]
    assert h.records[-1].kind == "notification"


def test_progress_on_the_post_stream_any_chunking():
    messages = [{"jsonrpc": "2.0", "method": "notifications/progress",
                 "params": {"progressToken": 1, "progress": i}} for i in (1, 2, 3)]
    messages.append({"jsonrpc": "2.0", "id": 9, "result": {"content": []}})
    for chunk in (0, 1, 7, 64):
        h = Harness()
        h.exchange({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "long"}},
                   _sse(*messages), sse=True, chunk=chunk)
        record, = h.records
        assert (record.outcome, record.notifications, record.transport) == ("result", 3, "sse")
        assert h.notifications == ["notifications/progress"] * 3


def test_batch_elements_are_separate_calls():
    h = Harness()
    h.exchange([{"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                {"jsonrpc": "2.0", "id": 2, "method": "prompts/get", "params": {"name": "p"}},
                {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 0}}],
               json.dumps([{"jsonrpc": "2.0", "id": 2, "result": {}},
                           {"jsonrpc": "2.0", "id": 1, "error": {"code": -1, "message": "no"}}]).encode())
    got = sorted((r.method, r.target, r.outcome) for r in h.records)
    assert got == [("notifications/cancelled", None, "accepted"), ("prompts/get", "p", "result"),
                   ("tools/list", None, "error")]


def test_response_on_the_get_stream_and_ids_keep_their_type():
    h = Harness()
    # POST answered 202 with the answer to come on the session's GET stream
    h.exchange({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "slow"}},
               None, status=202, session="S")
    assert h.records == []
    get = h.tracker(b"GET")
    get.request(b"", make_headers(mcp_session_id="S"), b"/mcp")
    get.response(200, make_headers(content_type="text/event-stream"), 1.0, True)
    get.data(_sse({"jsonrpc": "2.0", "id": "5", "result": {}}))  # "5" is not 5
    assert h.records == []
    get.data(_sse({"jsonrpc": "2.0", "id": 5, "result": {}}))
    record, = h.records
    assert (record.target, record.outcome, record.http_status) == ("slow", "result", 202)


def test_legacy_sse_session_from_endpoint_event():
    h = Harness()
    stream = h.tracker(b"GET")
    stream.request(b"", Headers(), b"/legacy/sse")
    stream.response(200, make_headers(content_type="text/event-stream"), 1.0, True)
    stream.data(b"event: endpoint\ndata: http://gw/legacy/message?sessionId=abc\n\n")
    h.exchange({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, None, status=202,
               uri=b"/legacy/message?sessionId=abc")
    answer = {"jsonrpc": "2.0", "id": 1, "result": {"tools": []}}
    stream.data(b"event: message\ndata: " + json.dumps(answer).encode() + b"\n\n")
    record, = h.records
    assert (record.method, record.outcome) == ("tools/list", "result")


def test_server_request_answered_by_client_post():
    h = Harness()
    sampling = {"jsonrpc": "2.0", "id": 77, "method": "sampling/createMessage", "params": {"messages": []}}
    h.exchange({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "sample"}},
               _sse(sampling, {"jsonrpc": "2.0", "id": 1, "result": {}}), sse=True, session="S")
    h.exchange({"jsonrpc": "2.0", "id": 77, "result": {"role": "assistant"}}, None, status=202, session="S")
    kinds = [(r.kind, r.method, r.outcome) for r in h.records]
    assert kinds == [("request", "tools/call", "result"),
                     ("server_request", "sampling/createMessage", "result")]


def test_capture_bodies_redacts_and_truncates():
    h = Harness()
    h.exchange({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "login", "arguments": {"password": "hunter2", "user": "ada"}}},
               json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"access_token": "t0k", "x": "y" * 50000}}).encode(),
               capture="bodies")
    record, = h.records
    assert "hunter2" not in record.request_payload and "ada" in record.request_payload
    assert "t0k" not in record.response_payload
    assert record.truncated and len(record.response_payload) == 16384


def test_headers_capture_never_shows_credentials():
    h = Harness()
    t = h.tracker(capture="headers")
    t.request(b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
              make_headers(authorization="Bearer secret", cookie="c=1", x_api_key="k", accept="*/*"), b"/mcp")
    t.response(200, make_headers(set_cookie="s=2", content_type="application/json"), 1.0, False)
    t.data(b'{"jsonrpc":"2.0","id":1,"result":{}}')
    t.finished("complete", 200)
    record, = h.records
    shown = record.request_headers + record.response_headers
    for secret in ("secret", "c=1", '"k"', "s=2"):
        assert secret not in shown
    assert json.loads(record.request_headers)["Accept"] == ["*/*"]


def test_a_broken_message_never_breaks_the_tracker_callers():
    h = Harness()
    t = h.tracker()
    t.request(b"\xff\xfe not json", Headers(), b"/mcp")
    t.response(200, make_headers(content_type="text/event-stream"), 1.0, True)
    t.data(b"data: {\"jsonrpc\": \n\ndata: [1, 2\n\n: comment\n\n")
    t.finished("complete", 200)
    assert h.records == []


def test_store_drops_and_counts_when_full():
    store = AnalyticsStore(Clock(), path=None, max_queue=3)  # never started: nothing drains it
    for _ in range(5):
        store.record(CallRecord(time=0.0, api_id="a", api_name="a", plan=None, client=None,
                                method="ping", kind="request"))
    assert store.dropped == 2


def test_percentiles_and_buckets():
    values = sorted(float(v) for v in range(1, 101))
    assert (percentile(values, 50), percentile(values, 90), percentile(values, 99)) == (50.0, 90.0, 99.0)
    assert percentile([], 50) is None
    assert bucket_seconds(3600) == 60
    assert bucket_seconds(60) == 1
    assert bucket_seconds(7 * 86400) == 3 * 3600


def test_store_writes_each_record_as_given(tmp_path):
    # Rows leave out the columns a record does not set (they default): the
    # stored rows are the records' values, in order, whatever their mix.
    store = AnalyticsStore(Clock(), path=tmp_path / "analytics.db")
    store._open_db()
    records = []
    for n in range(40):
        record = CallRecord(time=float(n), api_id="a", api_name="A", plan=None if n % 3 else "P",
                            client="127.0.0.1", method="tools/call", kind="request")
        if n % 2:
            record.target, record.outcome, record.latency_ms = "echo", "result", 1.5
        if n % 5 == 0:
            record.error_code, record.error_message, record.outcome = -1, "no", "error"
        record.truncated = n % 7 == 0
        record.bytes_in = n
        records.append(record)
    store._insert([_row(r) for r in records[:25]])
    store._insert([_row(r) for r in records[25:]])
    rows = store._connection.execute(
        f"SELECT {', '.join(COLUMNS)} FROM exchanges ORDER BY id").fetchall()
    expected = [tuple(int(r.truncated) if c == "truncated" else getattr(r, c) for c in COLUMNS)
                for r in records]
    assert rows == expected
    store._close()


class _Seen:
    """
    An observer of a response reader that keeps what it was shown.
    """

    def __init__(self) -> None:
        self.values: List[Any] = []

    def messages(self, messages: Any, size: int, stream: bool) -> None:
        self.values.extend(m.raw for m in messages)

    def endpoint(self, url: str) -> None:
        self.values.append(("endpoint", url))

    def unread(self, size: int) -> None:
        self.values.append(("unread", size))


def test_the_response_reader_frames_streams_like_the_specification():
    pieces = [b"data: x", b"data:y", b"data", b"event: endpoint", b"event:", b": comment",
              b"id: 3", b"retry: 10", b"data: \xe2\x82", b"\xff: v", b"data:  two spaces",
              b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}", b"dat\xc3\xa9: z", b"",
              b"event: message", b"data: \xc3\xa9t\xc3\xa9", b"data: [1, {\"a\": 2}]",
              b"data: \"\xc3\xa9\""]
    ends = [b"\n", b"\r\n", b"\r"]
    rnd = random.Random(4)
    for _ in range(400):
        stream = b"".join(rnd.choice(pieces) + rnd.choice(ends) for _ in range(rnd.randrange(12)))
        cuts = sorted(rnd.sample(range(len(stream) + 1), min(len(stream) + 1, rnd.randrange(4))))
        chunks = [stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)])]
        seen = _Seen()
        reader = ResponseReader(True, observer=seen)
        # watching only: every byte goes out as it came, at once
        assert b"".join(reader.feed(chunk) for chunk in chunks) + reader.flush() == stream
        assert seen.values == oracle_messages(chunks, MAX_READ), chunks


def test_loads_reads_answers_as_a_client_does():
    samples = [b'{"a":1}', b'{"a":1} \n', b'{"a":1}x', b'{"a":', b"{", b"{}", b'{"a":"\xff"}',
               b'{"a":"\xed\xa0\x80"}', b"{\x00\x00\x00", b'{"\xc3\xa9":[1,2.5,null]}', b" {}",
               b"[1]", b"\xef\xbb\xbf{}", b"1", b'"{"', b"", b"{\t}"]
    for sample in samples:
        text = sample.decode("utf-8", "replace")  # invalid UTF-8 as U+FFFD, as a client reads it
        try:
            expected: Any = ("value", json.loads(text))
        except ValueError:
            expected = ("error", ValueError)
        try:
            got: Any = ("value", loads(sample))
        except ValueError:
            got = ("error", ValueError)
        assert got == expected, sample


def test_metrics_count_like_prometheus_client():
    # The request path adds to plain counts, carried into the series when
    # the registry is collected: the exposition is what the series give
    # when updated one event at a time.
    metrics = Metrics()
    registry = CollectorRegistry()
    calls = Counter("mcpgated_mcp_calls", "JSON-RPC calls through the gateway",
                    ["api", "api_name", "method", "target", "outcome"], registry=registry)
    latency = Histogram("mcpgated_mcp_call_latency_seconds", "Gateway latency per JSON-RPC call",
                        ["api", "api_name", "method"], buckets=LATENCY_BUCKETS, registry=registry)
    http = Counter("mcpgated_http_requests", "HTTP exchanges through the gateway",
                   ["api", "api_name", "status"], registry=registry)
    notifications = Counter("mcpgated_mcp_notifications", "Server-to-client notifications relayed",
                            ["api", "api_name", "method"], registry=registry)
    Counter("mcpgated_pin_drift_events", "Pinning events: tool, prompt or resource template "
            "definitions changed, new or removed", ["api", "api_name", "kind", "type"],
            registry=registry)
    Counter("mcpgated_pin_blocked", "List items and calls blocked by pinning",
            ["api", "api_name", "what"], registry=registry)
    streams = Gauge("mcpgated_open_streams", "Responses currently streaming to clients",
                    registry=registry)
    Gauge("mcpgated_exchange_records_dropped",
          "Exchange log records dropped (store slow or full)", registry=registry)
    rnd = random.Random(7)
    names = {"a": "A", "b": "B"}
    for api_id, name in names.items():
        metrics.name(api_id, name)
    for n in range(300):
        api_id = rnd.choice("ab")
        record = CallRecord(time=0.0, api_id=api_id, api_name=names[api_id], plan=None, client=None,
                            method=rnd.choice(["tools/call", "prompts/get", "tools/list"]),
                            kind=rnd.choice(["request", "notification"]))
        record.target = rnd.choice([None, "echo"])
        record.outcome = rnd.choice([None, "result", "error"])
        record.latency_ms = rnd.choice([None, 5.0, 0.0, rnd.expovariate(0.01), 1e6])
        metrics.call(record)
        target = record.target if record.method in ("tools/call", "prompts/get") else ""
        calls.labels(api_id, names[api_id], record.method, target or "", record.outcome or "").inc()
        if record.latency_ms is not None and record.kind != "notification":
            latency.labels(api_id, names[api_id], record.method).observe(record.latency_ms / 1000.0)
        status = rnd.choice([200, 404, None])
        metrics.exchange(record.api_id, status)
        http.labels(api_id, names[api_id], str(status)).inc()
        if n % 3 == 0:
            metrics.notification("a", "notifications/progress")
            notifications.labels("a", "A", "notifications/progress").inc()
        if n % 4 == 0:
            metrics.open_streams.inc()
            streams.inc()
        elif n % 4 == 1:
            metrics.open_streams.dec()
            streams.dec()
        if n % 50 == 0:
            assert _timeless(metrics.render()) == _timeless(generate_latest(registry))
    assert _timeless(metrics.render()) == _timeless(generate_latest(registry))
    assert metrics.registry.get_sample_value("mcpgated_http_requests_total",
                                             {"api": "a", "api_name": "A", "status": "200"}) == \
        registry.get_sample_value("mcpgated_http_requests_total",
                                  {"api": "a", "api_name": "A", "status": "200"})


def _timeless(exposition: bytes) -> str:
    # the _created samples hold when each series was made
    return re.sub(r"^(\S+_created(?:\{.*\})?) \S+$", r"\1", exposition.decode(), flags=re.M)
