"""
MCP inspection, exchange by exchange, with an injected clock: correlation
on the same stream, across streams of a session, batches, server->client
requests, both protocol eras, chunking independence.
"""

from __future__ import annotations

import json
from typing import Any, List, Optional

from twisted.internet.task import Clock
from twisted.web.http_headers import Headers

from mcpgated.analytics.store import AnalyticsStore, bucket_seconds, percentile
from mcpgated.analytics.tracker import Capture, CallRecord, ExchangeTracker, SessionBook


def _headers(**values: str) -> Headers:
    h = Headers()
    for name, value in values.items():
        h.setRawHeaders(name.replace("_", "-").encode(), [value.encode()])
    return h


class Harness:
    def __init__(self) -> None:
        self.clock = Clock()
        self.book = SessionBook()
        self.records: List[CallRecord] = []
        self.notifications: List[str] = []

    def tracker(self, method: bytes = b"POST", capture: str = "off") -> ExchangeTracker:
        return ExchangeTracker(
            clock=self.clock, book=self.book, emit=self.records.append,
            on_notification=lambda api, m: self.notifications.append(m), api_id="api",
            api_name="API", plan="Keyless", client="127.0.0.1", capture=Capture(capture),
            started=self.clock.seconds(), http_method=method)

    def exchange(self, body: Any, response: Optional[bytes], status: int = 200,
                 sse: bool = False, session: Optional[str] = None, uri: bytes = b"/mcp",
                 method: bytes = b"POST", response_session: Optional[str] = None,
                 chunk: int = 0, capture: str = "off") -> ExchangeTracker:
        t = self.tracker(method, capture)
        raw = json.dumps(body).encode() if body is not None else b""
        t.request(raw, _headers(mcp_session_id=session) if session else Headers(), uri)
        rh = _headers(content_type="text/event-stream" if sse else "application/json")
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
               json.dumps({"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "Unknown tool: x"}}).encode())
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
    get.request(b"", _headers(mcp_session_id="S"), b"/mcp")
    get.response(200, _headers(content_type="text/event-stream"), 1.0, True)
    get.data(_sse({"jsonrpc": "2.0", "id": "5", "result": {}}))  # "5" is not 5
    assert h.records == []
    get.data(_sse({"jsonrpc": "2.0", "id": 5, "result": {}}))
    record, = h.records
    assert (record.target, record.outcome, record.http_status) == ("slow", "result", 202)


def test_legacy_sse_session_from_endpoint_event():
    h = Harness()
    stream = h.tracker(b"GET")
    stream.request(b"", Headers(), b"/legacy/sse")
    stream.response(200, _headers(content_type="text/event-stream"), 1.0, True)
    stream.data(b"event: endpoint\ndata: http://gw/legacy/message?sessionId=abc\n\n")
    h.exchange({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, None, status=202,
               uri=b"/legacy/message?sessionId=abc")
    stream.data(b"event: message\ndata: " + json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"tools": []}}).encode() + b"\n\n")
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
              _headers(authorization="Bearer secret", cookie="c=1", x_api_key="k", accept="*/*"), b"/mcp")
    t.response(200, _headers(set_cookie="s=2", content_type="application/json"), 1.0, False)
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
    t.response(200, _headers(content_type="text/event-stream"), 1.0, True)
    t.data(b"data: {\"jsonrpc\": \n\ndata: [1, 2\n\n: comment\n\n")
    t.finished("complete", 200)
    assert h.records == []


def test_store_drops_and_counts_when_full():
    store = AnalyticsStore(Clock(), path=None, max_queue=3)  # never started: nothing drains it
    for i in range(5):
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
