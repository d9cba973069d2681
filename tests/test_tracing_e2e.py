"""
OpenTelemetry traces end to end: the real daemon with [tracing] pointing at
a real OTLP/HTTP receiver started by the test (decoding with the official
protobuf definitions, opentelemetry-proto), the official Python SDK as the
client (with a tracer of its own: it puts a traceparent in each request's
params._meta) and an official-SDK server as the backend, whose tool tells
what traceparent header it was sent.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterator, List, Optional

import anyio
import pytest
from mcp import Client
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan, Status as ProtoStatus
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mcpgated.analytics.records import session_hash
from tests.daemon_helpers import set_options
from tests.support import Daemon, deploy, http, metric, script_file, start_python_server, subscribe_key

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"

BACKEND = '''
import json
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("traced-backend")

@server.tool()
def whoami(ctx: Context) -> str:
    """The trace context this request reached the server with."""
    headers = ctx.headers or {}
    return json.dumps({"traceparent": headers.get("traceparent")})

@server.tool()
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b

server.run(transport="streamable-http", host="127.0.0.1", port=0, stateless_http=True)
'''


class Collector:
    """
    An OTLP/HTTP receiver: POST /v1/traces, protobuf, decoded with the
    official definitions; the spans kept as plain dicts.
    """

    def __init__(self) -> None:
        self.spans: List[Dict[str, Any]] = []
        self.changed = threading.Condition()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                collector.received(request, self.path)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def received(self, request: ExportTraceServiceRequest, path: str) -> None:
        found = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append({
                        "path": path, "service": resource.get("service.name"),
                        "pid": resource.get("process.pid"),
                        "name": span.name, "kind": span.kind,
                        "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                        "parent": span.parent_span_id.hex(),
                        "status": span.status.code, "description": span.status.message,
                        "attributes": {a.key: _value(a.value) for a in span.attributes},
                    })
        with self.changed:
            self.spans.extend(found)
            self.changed.notify_all()

    def wait(self, match: Callable[[Dict[str, Any]], bool], count: int = 1,
             timeout: float = 20.0) -> List[Dict[str, Any]]:
        with self.changed:
            assert self.changed.wait_for(
                lambda: len([s for s in self.spans if match(s)]) >= count, timeout), self.spans
            return [s for s in self.spans if match(s)]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture
def collector() -> Iterator[Collector]:
    receiver = Collector()
    yield receiver
    receiver.stop()


@pytest.fixture
def backend(tmp_path: Any) -> Iterator[int]:
    proc, port = start_python_server(script_file(tmp_path, "traced_backend.py", BACKEND))
    yield port
    proc.stop()


def _daemon(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, endpoint: str) -> Daemon:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # the batch processor's delay, in ms
    daemon = Daemon(tmp_path)
    set_options(daemon, "tracing", otlp_endpoint=endpoint, service_name="edge-gateway")
    return daemon.start()


@pytest.fixture
def traced(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, collector: Collector) -> Iterator[Daemon]:
    daemon = _daemon(tmp_path, monkeypatch, collector.url)
    yield daemon
    daemon.stop_if_running()


def _client_spans() -> InMemorySpanExporter:
    """
    A tracer in this process, as an instrumented MCP client has: the SDK
    then puts each request's context in its params._meta.
    """
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


async def _session(url: str) -> Dict[str, Any]:
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("agent turn") as root:
        async with Client(url) as client:
            result = await client.call_tool("whoami", {})
            return {"trace_id": f"{root.get_span_context().trace_id:032x}",
                    "backend": json.loads(result.content[0].text)}


def _of(spans: List[Dict[str, Any]], kind: int, name: str) -> Dict[str, Any]:
    found = [s for s in spans if s["kind"] == kind and s["name"] == name]
    assert len(found) == 1, spans
    return found[0]


def test_one_trace_runs_from_the_sdk_client_through_the_gateway_to_the_server(
        traced: Daemon, collector: Collector, backend: int) -> None:
    client_spans = _client_spans()
    deploy(traced, "/traced", f"http://127.0.0.1:{backend}/mcp")
    seen = anyio.run(_session, traced.gateway + "/traced")
    trace_id = seen["trace_id"]
    [server] = collector.wait(lambda s: s["kind"] == ProtoSpan.SPAN_KIND_SERVER
                              and s["name"] == "tools/call whoami")
    [client] = collector.wait(lambda s: s["kind"] == ProtoSpan.SPAN_KIND_CLIENT
                              and s["parent"] == server["span_id"])
    # the client's trace continued, from the span its SDK put in params._meta
    assert server["trace_id"] == trace_id and client["trace_id"] == trace_id
    sdk_ids = {f"{s.context.span_id:016x}" for s in client_spans.get_finished_spans()
               if f"{s.context.trace_id:032x}" == trace_id}
    assert server["parent"] in sdk_ids
    assert server["service"] == "edge-gateway" and server["path"] == "/v1/traces"
    attributes = server["attributes"]
    assert attributes["mcp.method.name"] == "tools/call"
    assert attributes["gen_ai.tool.name"] == "whoami"
    assert attributes["gen_ai.operation.name"] == "execute_tool"
    assert attributes["http.response.status_code"] == 200
    assert attributes["jsonrpc.request.id"]
    assert server["status"] == 0  # unset: no error
    assert client["name"] == "tools/call whoami"
    assert client["attributes"]["http.response.status_code"] == 200
    assert client["attributes"]["server.address"] == "127.0.0.1"
    assert client["attributes"]["server.port"] == backend
    # the backend was sent the CLIENT span's context
    _, sent_trace, sent_span, _ = seen["backend"]["traceparent"].split("-")
    assert (sent_trace, sent_span) == (trace_id, client["span_id"])


def test_the_traceparent_header_is_continued_and_the_session_hashed_as_in_the_logs(
        traced: Daemon, collector: Collector, everything: int) -> None:
    api = deploy(traced, "/everything", f"http://127.0.0.1:{everything}/mcp")
    traceparent = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "raw", "version": "1"}}}
    status, headers, _ = http("POST", traced.gateway + "/everything", init,
                              dict(ACCEPT, traceparent=traceparent))
    assert status == 200
    session = headers["mcp-session-id"]
    common = dict(ACCEPT, traceparent=traceparent, **{"mcp-session-id": session,
                                                      "mcp-protocol-version": "2025-11-25"})
    assert http("POST", traced.gateway + "/everything",
                {"jsonrpc": "2.0", "method": "notifications/initialized"}, common)[0] == 202
    status, _, _ = http("POST", traced.gateway + "/everything",
                        {"jsonrpc": "2.0", "id": "call-2", "method": "tools/call",
                         "params": {"name": "no-such-tool", "arguments": {}}}, common)
    assert status == 200
    spans = collector.wait(lambda s: s["trace_id"] == CLIENT_TRACE
                           and s["kind"] == ProtoSpan.SPAN_KIND_SERVER, count=3)
    first = _of(spans, ProtoSpan.SPAN_KIND_SERVER, "initialize")
    assert first["parent"] == CLIENT_SPAN
    assert first["attributes"]["mcp.protocol.version"] == "2025-11-25"
    call = _of(spans, ProtoSpan.SPAN_KIND_SERVER, "tools/call no-such-tool")
    assert call["parent"] == CLIENT_SPAN
    assert call["attributes"]["mcp.session.id"] == session_hash(api["id"], session)
    assert call["attributes"]["mcp.protocol.version"] == "2025-11-25"
    assert call["attributes"]["jsonrpc.request.id"] == "call-2"
    notified = _of(spans, ProtoSpan.SPAN_KIND_SERVER, "notifications/initialized")
    assert notified["attributes"]["http.response.status_code"] == 202


def _guarded(backend: int) -> Dict[str, Any]:
    return {"plans": [{"name": "Gold", "security": "API_KEY",
                       "rateLimit": {"requests": 2, "periodSeconds": 3600},
                       "acl": {"rules": [{"tools": ["whoami"]}]}}]}


def _call(daemon: Daemon, tool: str, headers: Dict[str, str], number: int) -> int:
    body = {"jsonrpc": "2.0", "id": number, "method": "tools/call",
            "params": {"name": tool, "arguments": {}}}
    return http("POST", daemon.gateway + "/guarded", body, dict(ACCEPT, **headers))[0]


def test_refusals_are_error_spans_with_their_reason(
        traced: Daemon, collector: Collector, backend: int) -> None:
    api = deploy(traced, "/guarded", f"http://127.0.0.1:{backend}/mcp", **_guarded(backend))
    subscription, key = subscribe_key(traced, api["id"], "Gold", "acme-agent")
    keyed = {"X-Gravitee-Api-Key": key["key"]}
    assert _call(traced, "whoami", keyed, 1) == 200
    assert _call(traced, "add", keyed, 2) == 200  # denied by access control, in the answer
    assert _call(traced, "whoami", keyed, 3) == 429  # the plan's two requests spent
    assert _call(traced, "whoami", {}, 4) == 401
    assert _call(traced, "whoami", {"Origin": "http://evil.example"}, 5) == 403
    spans = collector.wait(lambda s: s["kind"] == ProtoSpan.SPAN_KIND_SERVER, count=5)
    by_id = {s["attributes"].get("jsonrpc.request.id"): s for s in spans}
    allowed = by_id["1"]
    assert allowed["attributes"]["mcpgated.plan"] == "Gold"
    assert allowed["attributes"]["mcpgated.application"] == subscription["application"]
    assert allowed["status"] == 0
    denied = by_id["2"]
    assert denied["status"] == ProtoStatus.STATUS_CODE_ERROR
    assert denied["attributes"]["error.type"] == denied["attributes"]["rpc.response.status_code"]
    assert not [s for s in collector.spans if s["kind"] == ProtoSpan.SPAN_KIND_CLIENT
                and s["parent"] == denied["span_id"]]  # never sent to the backend
    for number, status, error in (("3", 429, "rate_limited"), ("4", 401, "unauthorized")):
        refused = by_id[number]
        assert refused["status"] == ProtoStatus.STATUS_CODE_ERROR, refused
        assert refused["attributes"]["error.type"] == error
        assert refused["attributes"]["http.response.status_code"] == status
        assert refused["description"]
    # Origin: refused before the body is read, a span of the HTTP request
    [origin] = [s for s in spans if s["attributes"].get("http.response.status_code") == 403]
    assert origin["status"] == ProtoStatus.STATUS_CODE_ERROR
    assert "allowed_origins" in origin["description"]


def test_a_collector_that_is_down_costs_the_traffic_nothing_and_drops_are_counted(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch, backend: int) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}"
    daemon = _daemon(tmp_path, monkeypatch, down)
    try:
        deploy(daemon, "/traced", f"http://127.0.0.1:{backend}/mcp")
        seen = anyio.run(_session, daemon.gateway + "/traced")
        assert seen["backend"]["traceparent"]  # traffic goes on, traced
        started = time.monotonic()
        for number in range(20):
            status, _, _ = http("POST", daemon.gateway + "/traced",
                                {"jsonrpc": "2.0", "id": number, "method": "tools/list"},
                                dict(ACCEPT, **{"mcp-protocol-version": "2025-11-25"}))
            assert status in (200, 400)  # answered by the backend, whatever it says
        assert time.monotonic() - started < 5  # not slowed by the exporter's retries
        deadline = time.monotonic() + 30
        dropped: Optional[float] = 0.0
        while time.monotonic() < deadline:  # no event tells the exporter gave up: poll
            dropped = metric(daemon, "mcpgated_tracing_spans_dropped_total", missing=0.0)
            if dropped and dropped >= 20:
                break
            time.sleep(0.2)
        assert dropped is not None and dropped >= 20
        assert metric(daemon, "mcpgated_tracing_spans_exported_total") == 0
    finally:
        daemon.stop_if_running()


def test_each_worker_exports_its_own_spans(tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                           collector: Collector, everything: int) -> None:
    from tests.test_workers import only, settled, start, workers

    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    daemon = start(tmp_path, {"tracing": {"otlp_endpoint": collector.url}})
    try:
        deploy(daemon, "/both", f"http://127.0.0.1:{everything}/mcp")
        assert settled(daemon, "/both")
        pids = workers(daemon)
        for index in (1, 2):
            with only(daemon, index):
                status, _, _ = http("POST", daemon.gateway + "/both",
                                    {"jsonrpc": "2.0", "id": f"worker-{index}", "method": "ping"},
                                    dict(ACCEPT, **{"mcp-protocol-version": "2025-11-25"}))
                assert status in (200, 400)
        for index in (1, 2):
            wanted = f"worker-{index}"
            [span] = collector.wait(lambda s, wanted=wanted: s["kind"] == ProtoSpan.SPAN_KIND_SERVER
                                    and s["attributes"].get("jsonrpc.request.id") == wanted)
            assert span["pid"] == pids[index] and span["service"] == "mcpgated"
        # /metrics: the workers' counts summed
        exported = len([s for s in collector.wait(lambda s: s["pid"] in pids.values(), count=4)])
        deadline = time.monotonic() + 10
        while metric(daemon, "mcpgated_tracing_spans_exported_total", missing=0.0) < exported:
            assert time.monotonic() < deadline  # polled: the parent sums what workers report
            time.sleep(0.1)
    finally:
        daemon.stop_if_running()


def test_with_tracing_off_the_gateway_adds_no_trace_context(daemon: Daemon, backend: int) -> None:
    deploy(daemon, "/plain", f"http://127.0.0.1:{backend}/mcp")
    seen = anyio.run(_session, daemon.gateway + "/plain")
    assert seen["backend"] == {"traceparent": None}
    assert metric(daemon, "mcpgated_tracing_spans_dropped_total", missing=-1.0) == -1.0
