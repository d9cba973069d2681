"""
OpenTelemetry traces in memory (L{mcpgated.analytics.tracing}): the spans of
an exchange as the resource drives them, collected by the SDK's
InMemorySpanExporter; the dropped-span count; [tracing] in the INI file.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry, generate_latest
from twisted.logger import formatEvent, globalLogPublisher
from twisted.web.http_headers import Headers
from zope.interface.verify import verifyObject

from mcpgated.analytics.interfaces import IExchangeObserver
from mcpgated.analytics.records import session_hash
from mcpgated.analytics.tracing import ExchangeSpan, Tracing, _traces_url
from mcpgated.config import ConfigError, TracingConfig, parse_text
from mcpgated.mcp.body import parse
from mcpgated.mcp.messages import classify

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01"
CALL = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{}}}'
INI = "[gateway]\nlisten = tcp:0\n[admin]\nlisten = tcp:0\n"


class Principal:
    class plan:
        name = "Gold"

    application_id = "app-1"


def _tracing(exporter: SpanExporter) -> Tracing:
    return Tracing(None, exporter=exporter)


def _spans(tracing: Tracing, exporter: InMemorySpanExporter) -> Dict[SpanKind, ReadableSpan]:
    assert tracing.flush()
    return {span.kind: span for span in exporter.get_finished_spans()}


def _exchange(tracing: Tracing, body: bytes = CALL, **headers: str) -> ExchangeSpan:
    raw = Headers({name.replace("_", "-").encode(): [value.encode()] for name, value in headers.items()})
    trace = tracing.exchange(raw)
    trace.read(parse(body), "api-1", "Everything", b"POST")
    return trace


def _backend(trace: ExchangeSpan) -> Headers:
    upstream = Headers()
    trace.backend(upstream, b"http://127.0.0.1:9/mcp")
    return upstream


def test_a_tool_call_makes_a_server_span_and_a_client_span_named_by_the_mcp_conventions() -> None:
    exporter = InMemorySpanExporter()
    tracing = _tracing(exporter)
    trace = _exchange(tracing, mcp_session_id="s-1", mcp_protocol_version="2025-11-25")
    trace.principal(Principal())
    upstream = _backend(trace)
    trace.response(200, Headers(), 1.0, False)
    trace.messages([classify({"jsonrpc": "2.0", "id": 7, "result": {"content": []}})], 40, False)
    trace.close("complete", 200)
    spans = _spans(tracing, exporter)
    server, client = spans[SpanKind.SERVER], spans[SpanKind.CLIENT]
    assert server.name == "tools/call echo" and client.name == "tools/call echo"
    attributes = dict(server.attributes or {})
    assert attributes["mcp.method.name"] == "tools/call"
    assert attributes["gen_ai.tool.name"] == "echo"
    assert attributes["gen_ai.operation.name"] == "execute_tool"
    assert attributes["jsonrpc.request.id"] == "7"
    assert attributes["mcp.session.id"] == session_hash("api-1", "s-1")  # as the logs hash it
    assert attributes["mcp.protocol.version"] == "2025-11-25"
    assert attributes["http.response.status_code"] == 200
    assert attributes["mcpgated.plan"] == "Gold" and attributes["mcpgated.application"] == "app-1"
    assert server.status.status_code is StatusCode.UNSET
    # the CLIENT span is the SERVER span's child, and the backend is told so
    assert client.parent is not None and client.parent.span_id == server.context.span_id
    assert client.context.trace_id == server.context.trace_id
    [sent] = upstream.getRawHeaders(b"traceparent")
    version, trace_id, span_id, flags = sent.decode().split("-")
    assert (trace_id, span_id) == (f"{client.context.trace_id:032x}", f"{client.context.span_id:016x}")
    assert int(flags, 16) & 1  # sampled
    assert dict(client.attributes or {}) == {"server.address": "127.0.0.1", "server.port": 9,
                                             "http.response.status_code": 200}


def test_the_clients_traceparent_header_is_continued() -> None:
    exporter = InMemorySpanExporter()
    tracing = _tracing(exporter)
    trace = _exchange(tracing, traceparent=TRACEPARENT, tracestate="vendor=1")
    upstream = _backend(trace)
    trace.close("complete", 200)
    server = _spans(tracing, exporter)[SpanKind.SERVER]
    assert f"{server.context.trace_id:032x}" == TRACE
    assert server.parent is not None and f"{server.parent.span_id:016x}" == PARENT
    assert upstream.getRawHeaders(b"tracestate") == [b"vendor=1"]
    assert upstream.getRawHeaders(b"traceparent")[0].startswith(f"00-{TRACE}-".encode())


def test_the_traceparent_in_params_meta_is_continued_when_no_header_has_one() -> None:
    exporter = InMemorySpanExporter()
    tracing = _tracing(exporter)
    body = (b'{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"simple",'
            b'"_meta":{"traceparent":"' + TRACEPARENT.encode() + b'"}}}')
    trace = _exchange(tracing, body)
    trace.close("complete", 200)
    server = _spans(tracing, exporter)[SpanKind.SERVER]
    assert server.name == "prompts/get simple"
    assert dict(server.attributes or {})["gen_ai.prompt.name"] == "simple"
    assert f"{server.context.trace_id:032x}" == TRACE


def test_the_header_wins_over_params_meta() -> None:
    exporter = InMemorySpanExporter()
    tracing = _tracing(exporter)
    other = "00-11111111111111111111111111111111-2222222222222222-01"
    body = (b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{'
            b'"_meta":{"traceparent":"' + other.encode() + b'"}}}')
    trace = _exchange(tracing, body, traceparent=TRACEPARENT)
    trace.close("complete", 200)
    assert f"{_spans(tracing, exporter)[SpanKind.SERVER].context.trace_id:032x}" == TRACE


def test_a_resource_read_names_its_uri_as_an_attribute_not_in_the_span_name() -> None:
    exporter = InMemorySpanExporter()
    tracing = _tracing(exporter)
    body = b'{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"demo://r/1"}}'
    _exchange(tracing, body).close("complete", 200)
    server = _spans(tracing, exporter)[SpanKind.SERVER]
    assert server.name == "resources/read"
    assert dict(server.attributes or {})["mcp.resource.uri"] == "demo://r/1"


def test_a_json_rpc_error_answer_sets_the_code_and_error_type() -> None:
    exporter = InMemorySpanExporter()
    tracing = _tracing(exporter)
    trace = _exchange(tracing)
    _backend(trace)
    trace.messages([classify({"jsonrpc": "2.0", "id": 7,
                             "error": {"code": -32602, "message": "Unknown tool"}})], 60, False)
    trace.close("complete", 200)
    server = _spans(tracing, exporter)[SpanKind.SERVER]
    attributes = dict(server.attributes or {})
    assert attributes["rpc.response.status_code"] == "-32602"
    assert attributes["error.type"] == "-32602"
    assert server.status.status_code is StatusCode.ERROR
    assert server.status.description == "Unknown tool"


@pytest.mark.parametrize("status, code, message, outcome", [
    (429, -32000, "Rate limit exceeded", "rate_limited"),
    (401, -32001, "Missing credentials", "unauthorized"),
    (403, -32000, "Host header not allowed by this gateway ([gateway] allowed_hosts)",
     "gateway_error"),
])
def test_a_refusal_is_an_error_span_with_its_reason(status: int, code: int, message: str,
                                                    outcome: str) -> None:
    exporter = InMemorySpanExporter()
    tracing = _tracing(exporter)
    trace = tracing.exchange(Headers({b"traceparent": [TRACEPARENT.encode()]}))
    if outcome != "gateway_error":  # Host/Origin: refused before the body is read
        trace.read(parse(CALL), "api-1", "Everything", b"POST")
    trace.refused(status, code, message, outcome)
    trace.close(outcome, status)
    spans = _spans(tracing, exporter)
    assert set(spans) == {SpanKind.SERVER}  # no backend call
    server = spans[SpanKind.SERVER]
    attributes = dict(server.attributes or {})
    assert server.status.status_code is StatusCode.ERROR
    assert server.status.description == message
    assert attributes["error.type"] == outcome
    assert attributes["rpc.response.status_code"] == str(code)
    assert attributes["http.response.status_code"] == status
    assert f"{server.context.trace_id:032x}" == TRACE


def test_a_backend_that_fails_ends_the_client_span_in_error() -> None:
    exporter = InMemorySpanExporter()
    tracing = _tracing(exporter)
    trace = _exchange(tracing)
    _backend(trace)
    trace.close("gateway_error", 502)
    spans = _spans(tracing, exporter)
    client, server = spans[SpanKind.CLIENT], spans[SpanKind.SERVER]
    assert client.status.status_code is StatusCode.ERROR
    assert dict(client.attributes or {})["error.type"] == "gateway_error"
    assert server.status.status_code is StatusCode.ERROR


def test_sampling_at_ratio_zero_records_nothing_but_still_propagates() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing(None, sample_ratio=0.0, exporter=exporter)
    trace = _exchange(tracing)
    upstream = _backend(trace)
    trace.close("complete", 200)
    assert tracing.flush()
    assert exporter.get_finished_spans() == ()
    [sent] = upstream.getRawHeaders(b"traceparent")
    assert not int(sent.decode().rsplit("-", 1)[1], 16) & 1  # not sampled, said to the backend


def test_the_span_passes_every_observer_call_on() -> None:
    calls: List[str] = []

    class Inner:
        def __getattr__(self, name: str) -> Any:
            return lambda *args: calls.append(name)

    trace = _tracing(InMemorySpanExporter()).exchange(Headers())
    assert verifyObject(IExchangeObserver, trace)
    trace.inner = Inner()  # type: ignore[assignment]
    trace.request(Headers(), b"/", 0, None)
    trace.admitted(Principal(), (), ())
    trace.bridged("2025-11-25")
    trace.response(200, Headers(), 0.0, False)
    trace.messages([], 0, False)
    trace.endpoint("http://x/")
    trace.unread(1)
    trace.finished("complete", 200)
    assert calls == ["request", "admitted", "bridged", "response", "messages", "endpoint", "unread",
                     "finished"]


class Down(SpanExporter):
    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("collector down")
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass


def test_spans_a_collector_never_got_are_counted_as_dropped_in_metrics() -> None:
    tracing = _tracing(Down())
    for _ in range(2):
        _exchange(tracing).close("complete", 200)
        tracing.flush()
    registry = CollectorRegistry()
    registry.register(tracing.metrics())
    text = generate_latest(registry).decode()
    assert "mcpgated_tracing_spans_dropped_total 2.0" in text
    assert "mcpgated_tracing_spans_exported_total 0.0" in text


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends() -> None:
    results = [SpanExportResult.FAILURE, SpanExportResult.FAILURE, SpanExportResult.SUCCESS,
               SpanExportResult.SUCCESS]

    class Flaky(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return results.pop(0)

        def shutdown(self) -> None:
            pass

    events: List[Dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        tracing = _tracing(Flaky())
        for _ in range(4):
            _exchange(tracing).close("complete", 200)
            assert tracing.flush()
    finally:
        globalLogPublisher.removeObserver(events.append)
    lines = [formatEvent(e) for e in events if e.get("log_namespace") == "mcpgated.analytics.tracing"]
    assert len(lines) == 2, lines
    assert "does not take spans" in lines[0] and "takes spans again (2 dropped in all)" in lines[1]


def test_a_full_queue_drops_and_counts() -> None:
    entered, release = threading.Event(), threading.Event()

    class Stuck(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            entered.set()
            release.wait(10)  # a collector that does not answer
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    tracing = Tracing(None, exporter=Stuck(), max_queue_size=4)
    for _ in range(4):  # one span each: a full batch, taken by the exporting thread
        _exchange(tracing).close("complete", 200)
    assert entered.wait(10)
    for _ in range(6):  # 4 wait in the queue, 2 are dropped
        _exchange(tracing).close("complete", 200)
    assert tracing.exporter.dropped == 2
    release.set()
    assert tracing.flush()
    assert (tracing.exporter.exported, tracing.exporter.dropped) == (8, 2)


def test_the_traces_url_is_the_endpoints_or_its_v1_traces() -> None:
    assert _traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert _traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert _traces_url("http://c:4318/custom/traces") == "http://c:4318/custom/traces"


def test_tracing_is_off_by_default() -> None:
    assert parse_text(INI).tracing == TracingConfig(None, 1.0, "mcpgated")


def test_tracing_keys_are_read() -> None:
    config = parse_text(INI + "[tracing]\notlp_endpoint = http://127.0.0.1:4318\n"
                        "sample_ratio = 0.25\nservice_name = edge-gw\n")
    assert config.tracing == TracingConfig("http://127.0.0.1:4318", 0.25, "edge-gw")


@pytest.mark.parametrize("key, value", [
    ("otlp_endpoint", "collector:4318"),
    ("otlp_endpoint", "grpc://collector:4317"),
    ("sample_ratio", "1.5"),
    ("sample_ratio", "-0.1"),
    ("sample_ratio", "half"),
    ("service_name", " "),
])
def test_a_bad_tracing_value_is_one_line_naming_section_and_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_text(INI + f"[tracing]\n{key} = {value}\n")
    text = str(caught.value)
    assert "[tracing]" in text and key in text and "\n" not in text
