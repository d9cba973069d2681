"""
OpenTelemetry traces of proxied exchanges ([tracing] otlp_endpoint): one
SERVER span per exchange and a CLIENT span for its backend call, exported
over OTLP/HTTP (protobuf) by the SDK's batch processor on a thread of its
own, never on the reactor. A collector that is down costs the traffic
nothing: the spans are dropped and counted
(C{mcpgated_tracing_spans_dropped_total}).

Names and attributes follow OpenTelemetry's semantic conventions for MCP
(open-telemetry/semantic-conventions-genai, docs/gen-ai/mcp.md and
model/mcp/spans.yaml; https://opentelemetry.io/docs/specs/semconv/gen-ai/mcp/):
the span name is C{"{mcp.method.name} {target}"}, the target the tool or
prompt name (never the resource URI: high cardinality); attributes
C{mcp.method.name}, C{gen_ai.tool.name}, C{gen_ai.prompt.name},
C{mcp.resource.uri}, C{mcp.session.id}, C{mcp.protocol.version},
C{jsonrpc.request.id}, C{rpc.response.status_code} and C{error.type} for a
JSON-RPC error, C{http.response.status_code}; the gateway's own start with
C{mcpgated.}, among them C{mcpgated.backend.protocol_version}, the MCP
version the gateway spoke to the backend when it bridged versions (the
client's is C{mcp.protocol.version}). Trace context is read from the
C{traceparent} header, else from C{params._meta} (where MCP clients put it,
as the conventions recommend).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Dict, Iterable, Optional, Sequence
from urllib.parse import urlsplit

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client.core import CounterMetricFamily
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from zope.interface import implementer

from mcpgated.analytics.interfaces import IExchangeObserver
from mcpgated.analytics.records import session_hash
from mcpgated.config import TracingConfig
from mcpgated.mcp.body import RequestBody
from mcpgated.mcp.messages import RESPONSE, Message

log = Logger()

_PROPAGATOR = TraceContextTextMapPropagator()
# what each method's target is, as an attribute
_TARGETS = {"tools/call": "gen_ai.tool.name", "prompts/get": "gen_ai.prompt.name",
            "resources/read": "mcp.resource.uri", "resources/subscribe": "mcp.resource.uri",
            "resources/unsubscribe": "mcp.resource.uri"}
_NAMED = frozenset({"tools/call", "prompts/get"})  # low cardinality: in the span name
_GOOD = frozenset({"complete", "denied"})  # outcomes that are no error of the exchange


# The SDK logs each failed batch and retry (three lines a batch while a
# collector is down), and each span a full queue drops: the exporter below
# logs once per outage instead, and /metrics counts.
_QUIET = ("opentelemetry.exporter", "opentelemetry.sdk._shared_internal",
          "opentelemetry.sdk.trace.export")


class CountingExporter(SpanExporter):
    """
    An exporter that counts what it exported and what was lost (a failed
    export: the collector down or refusing), around the OTLP exporter; an
    outage is logged when it starts and when it ends.
    """

    failing = False

    def __init__(self, inner: SpanExporter, endpoint: Optional[str] = None) -> None:
        self.inner = inner
        self.endpoint = endpoint
        self.exported = 0
        self.dropped = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception:  # noqa: BLE001 -- an exporter's bug loses spans, not the daemon
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self.exported += len(spans)
            if self.failing:
                self.failing = False
                log.info("OpenTelemetry collector {endpoint} takes spans again ({dropped} dropped"
                         " in all)", endpoint=self.endpoint, dropped=self.dropped)
        else:
            self.dropped += len(spans)
            if not self.failing:
                self.failing = True
                log.warn("OpenTelemetry collector {endpoint} does not take spans: they are"
                         " dropped (mcpgated_tracing_spans_dropped_total) until it does",
                         endpoint=self.endpoint)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _Processor(BatchSpanProcessor):
    """
    The SDK's batch processor, counting spans it drops when its queue is
    full (the exporter cannot keep up).
    """

    def __init__(self, exporter: CountingExporter, max_queue_size: int = 2048) -> None:
        super().__init__(exporter, max_queue_size=max_queue_size, export_timeout_millis=5000,
                         max_export_batch_size=min(512, max_queue_size))
        self.counting = exporter
        self.max_queue = max_queue_size

    def on_end(self, span: ReadableSpan) -> None:
        # where the SDK keeps its queue: 1.34 and later, and before
        queue = getattr(getattr(self, "_batch_processor", None), "_queue", None)
        if queue is None:
            queue = getattr(self, "queue", None)
        if queue is not None and len(queue) >= self.max_queue:
            self.counting.dropped += 1
        super().on_end(span)


class Tracing:
    """
    The daemon's tracer: makes each exchange's L{ExchangeSpan}.
    """

    def __init__(self, endpoint: Optional[str], sample_ratio: float = 1.0,
                 service_name: str = "mcpgated", exporter: Optional[SpanExporter] = None,
                 max_queue_size: int = 2048) -> None:
        if exporter is None:
            assert endpoint is not None
            endpoint = _traces_url(endpoint)
            exporter = OTLPSpanExporter(endpoint=endpoint, timeout=5)
        for name in _QUIET:
            logging.getLogger(name).setLevel(logging.CRITICAL)
        self.exporter = CountingExporter(exporter, endpoint)
        self.processor = _Processor(self.exporter, max_queue_size)
        self.provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
            # the process: each worker ([gateway] workers) exports its own spans
            resource=Resource.create({"service.name": service_name, "process.pid": os.getpid()}))
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("mcpgated")

    def exchange(self, headers: Any) -> "ExchangeSpan":
        """
        The span of an exchange just begun (created once its request is read).
        """
        return ExchangeSpan(self, headers)

    def flush(self) -> bool:
        return self.provider.force_flush(5000)

    def shutdown(self) -> None:
        """
        Export what is queued and stop (blocks: call it off the reactor).
        """
        self.provider.shutdown()

    def metrics(self) -> "TracingMetrics":
        return TracingMetrics(self.exporter)


def from_config(config: TracingConfig) -> Optional[Tracing]:
    """
    The tracer [tracing] asks for, or L{None} (no endpoint: off).
    """
    if config.otlp_endpoint is None:
        return None
    return Tracing(config.otlp_endpoint, config.sample_ratio, config.service_name)


class TracingService(Service):
    """
    Exports what is queued when the daemon stops (on a thread: the
    collector may be slow or gone).
    """

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing

    def stopService(self) -> "Deferred[None]":
        Service.stopService(self)
        return deferToThread(self.tracing.shutdown)


def _traces_url(endpoint: str) -> str:
    """
    The OTLP/HTTP traces URL of C{endpoint}: as given when it names a path,
    else with C{/v1/traces}, as the SDK's own variable works.
    """
    if urlsplit(endpoint).path.strip("/"):
        return endpoint
    return endpoint.rstrip("/") + "/v1/traces"


class TracingMetrics:
    """
    A Prometheus collector: C{mcpgated_tracing_spans_exported_total} and
    C{mcpgated_tracing_spans_dropped_total}.
    """

    def __init__(self, exporter: CountingExporter) -> None:
        self._exporter = exporter

    def describe(self) -> Iterable[CounterMetricFamily]:
        return self._families(False)

    def collect(self) -> Iterable[CounterMetricFamily]:
        return self._families(True)

    def _families(self, values: bool) -> Iterable[CounterMetricFamily]:
        exported = CounterMetricFamily("mcpgated_tracing_spans_exported",
                                       "Spans the OTLP exporter delivered to the collector")
        dropped = CounterMetricFamily(
            "mcpgated_tracing_spans_dropped",
            "Spans lost: the collector could not be reached or refused them, or the queue was full")
        if values:
            exported.add_metric([], self._exporter.exported)
            dropped.add_metric([], self._exporter.dropped)
        return [exported, dropped]


def _header(headers: Any, name: bytes) -> Optional[str]:
    values = headers.getRawHeaders(name)
    return values[0].decode("latin-1") if values else None


def _parent(headers: Any, message: Optional[Message]) -> Optional[Context]:
    """
    The client's trace context: its C{traceparent} header, else its
    request's C{params._meta.traceparent}.
    """
    carrier: Dict[str, str] = {}
    traceparent = _header(headers, b"traceparent")
    if traceparent is not None:
        carrier["traceparent"] = traceparent
        state = _header(headers, b"tracestate")
        if state is not None:
            carrier["tracestate"] = state
    elif message is not None and type(message.params) is dict:
        meta = message.params.get("_meta")
        if type(meta) is dict and type(meta.get("traceparent")) is str:
            carrier["traceparent"] = meta["traceparent"]
            if type(meta.get("tracestate")) is str:
                carrier["tracestate"] = meta["tracestate"]
    if not carrier:
        return None
    return _PROPAGATOR.extract(carrier)


@implementer(IExchangeObserver)
class ExchangeSpan:
    """
    The spans of one exchange. Sees the answer side as an
    L{IExchangeObserver} in front of the exchange's own observer
    (C{inner}), to which it passes everything on; the resource tells it of
    the rest (L{read}, L{backend}, L{refused}, L{close}). Never raises.
    """

    span: Optional[Span] = None
    client: Optional[Span] = None
    inner: Optional[IExchangeObserver] = None
    _error: Optional[str] = None

    def __init__(self, tracing: Tracing, headers: Any) -> None:
        self.tracing = tracing
        self.headers = headers
        self.start = time.time_ns()

    def read(self, body: Optional[RequestBody], api_id: str, api_name: str,
             http_method: bytes) -> None:
        """
        The request, routed and read: the SERVER span starts (at the
        exchange's start), continuing the client's trace.
        """
        try:
            message = body.single if body is not None else None
            name = http_method.decode("latin-1")
            attributes: Dict[str, Any] = {"http.request.method": name,
                                          "mcpgated.api": api_id, "mcpgated.api.name": api_name}
            if message is not None and message.method is not None:
                method = message.method
                name = method
                attributes["mcp.method.name"] = method
                target = message.target
                if target is not None and method in _TARGETS:
                    attributes[_TARGETS[method]] = target
                    if method in _NAMED:
                        name = f"{method} {target}"
                if method == "tools/call":
                    attributes["gen_ai.operation.name"] = "execute_tool"
                if message.id is not None:
                    attributes["jsonrpc.request.id"] = str(message.id)
                if method == "initialize" and type(message.params) is dict:
                    version = message.params.get("protocolVersion")
                    if type(version) is str:
                        attributes["mcp.protocol.version"] = version
            elif body is not None and body.batch:
                attributes["jsonrpc.batch.size"] = len(body.messages)
            version = _header(self.headers, b"mcp-protocol-version")
            if version is not None:
                attributes["mcp.protocol.version"] = version
            session = _header(self.headers, b"mcp-session-id")
            if session is not None:
                attributes["mcp.session.id"] = session_hash(api_id, session)  # as the logs hash it
            self.span = self.tracing.tracer.start_span(
                name, context=_parent(self.headers, message), kind=SpanKind.SERVER,
                attributes=attributes, start_time=self.start)
        except Exception:  # noqa: BLE001 -- tracing never breaks proxying
            log.failure("tracing failed")

    def _server(self) -> Span:
        span = self.span
        if span is None:  # refused before it was read: a span of the HTTP request
            span = self.span = self.tracing.tracer.start_span(
                "HTTP", context=_parent(self.headers, None), kind=SpanKind.SERVER,
                start_time=self.start)
        return span

    def backend(self, headers: Any, url: bytes) -> None:
        """
        The backend call begins: its CLIENT span, named in the C{traceparent}
        (and C{tracestate}) of the backend request's C{headers}.
        """
        try:
            server = self._server()
            name = server.name if isinstance(server, ReadableSpan) else "backend"
            # the backend's address only: its URL may carry a secret in its query
            parts = urlsplit(url.decode("latin-1"))
            attributes: Dict[str, Any] = {"server.address": parts.hostname or ""}
            if parts.port is not None:
                attributes["server.port"] = parts.port
            client = self.client = self.tracing.tracer.start_span(
                name, context=set_span_in_context(server), kind=SpanKind.CLIENT,
                attributes=attributes)
            carrier: Dict[str, str] = {}
            _PROPAGATOR.inject(carrier, context=set_span_in_context(client))
            for key, value in carrier.items():
                headers.setRawHeaders(key.encode("ascii"), [value.encode("latin-1")])
        except Exception:  # noqa: BLE001 -- tracing never breaks proxying
            log.failure("tracing failed")

    def principal(self, principal: Any) -> None:
        """
        The gate's caller: its plan and application.
        """
        span = self.span
        if span is None:
            return
        try:
            span.set_attribute("mcpgated.plan", principal.plan.name)
            if principal.application_id is not None:
                span.set_attribute("mcpgated.application", principal.application_id)
        except Exception:  # noqa: BLE001 -- tracing never breaks proxying
            log.failure("tracing failed")

    def refused(self, status: int, code: int, message: str, outcome: str) -> None:
        """
        The gateway refused the exchange (Host/Origin, auth, rate limit,
        access control...): the reason on the span.
        """
        try:
            span = self._server()
            span.set_attribute("rpc.response.status_code", str(code))
            span.set_attribute("mcpgated.refusal", message)
            self._error = outcome
            span.set_status(Status(StatusCode.ERROR, message))
        except Exception:  # noqa: BLE001 -- tracing never breaks proxying
            log.failure("tracing failed")

    def close(self, outcome: str, status: Optional[int]) -> None:
        """
        The exchange ended: both spans end.
        """
        try:
            span = self._server()
            client = self.client
            if client is not None:
                if status is not None and client.is_recording():
                    client.set_attribute("http.response.status_code", status)
                if outcome not in _GOOD:
                    client.set_attribute("error.type", outcome)
                    client.set_status(Status(StatusCode.ERROR))
                client.end()
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            span.set_attribute("mcpgated.outcome", outcome)
            if self._error is not None or outcome not in _GOOD or (status or 0) >= 500:
                span.set_attribute("error.type", self._error or outcome)
                if self._error is None:
                    span.set_status(Status(StatusCode.ERROR))
            span.end()
        except Exception:  # noqa: BLE001 -- tracing never breaks proxying
            log.failure("tracing failed")

    # --- IExchangeObserver: the answer, passed on to the exchange's observer ---------

    def request(self, headers: Any, uri: bytes, size: int, body: Optional[RequestBody]) -> None:
        if self.inner is not None:
            self.inner.request(headers, uri, size, body)

    def admitted(self, principal: Any, denied: Any = (), would_deny: Any = ()) -> None:
        if self.inner is not None:
            self.inner.admitted(principal, denied, would_deny)

    def bridged(self, backend_version: str) -> None:
        span = self.span
        if span is not None:
            try:
                span.set_attribute("mcpgated.backend.protocol_version", backend_version)
            except Exception:  # noqa: BLE001 -- tracing never breaks proxying
                log.failure("tracing failed")
        if self.inner is not None:
            self.inner.bridged(backend_version)

    def response(self, status: int, headers: Any, ttfb_ms: float, event_stream: bool) -> None:
        if self.client is not None:
            self.client.set_attribute("http.response.status_code", status)
        if self.inner is not None:
            self.inner.response(status, headers, ttfb_ms, event_stream)

    def messages(self, messages: Sequence[Message], size: int, stream: bool) -> None:
        span = self.span
        if span is not None and self._error is None:
            for message in messages:
                error = message.error
                if message.kind == RESPONSE and type(error) is dict:
                    code = str(error.get("code"))
                    span.set_attribute("rpc.response.status_code", code)
                    self._error = code  # semconv: error.type is the JSON-RPC code
                    reason = error.get("message")
                    span.set_status(Status(StatusCode.ERROR,
                                           reason if type(reason) is str else None))
                    break
        if self.inner is not None:
            self.inner.messages(messages, size, stream)

    def endpoint(self, url: str) -> None:
        if self.inner is not None:
            self.inner.endpoint(url)

    def unread(self, size: int) -> None:
        if self.inner is not None:
            self.inner.unread(size)

    def finished(self, outcome: str, status: Optional[int] = None) -> None:
        if self.inner is not None:
            self.inner.finished(outcome, status)
