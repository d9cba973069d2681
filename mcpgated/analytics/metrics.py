"""
Prometheus metrics (prometheus_client), in a registry of their own so tests
and several gateways in one process never share counters.
"""

from __future__ import annotations

from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from mcpgated.analytics.tracker import CallRecord

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, dropped: Callable[[], int] = lambda: 0) -> None:
        self.registry = CollectorRegistry()
        # labelled children by label values: labels() costs more than inc()
        self._children: dict = {}
        self.calls = Counter(
            "mcpgated_mcp_calls", "JSON-RPC calls through the gateway",
            ["api", "method", "target", "outcome"], registry=self.registry)
        self.latency = Histogram(
            "mcpgated_mcp_call_latency_seconds", "Gateway latency per JSON-RPC call",
            ["api", "method"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.http = Counter(
            "mcpgated_http_requests", "HTTP exchanges through the gateway",
            ["api", "status"], registry=self.registry)
        self.notifications = Counter(
            "mcpgated_mcp_notifications", "Server-to-client notifications relayed",
            ["api", "method"], registry=self.registry)
        self.open_streams = Gauge(
            "mcpgated_open_streams", "Responses currently streaming to clients",
            registry=self.registry)
        dropped_gauge = Gauge(
            "mcpgated_exchange_records_dropped", "Exchange log records dropped (store slow or full)",
            registry=self.registry)
        dropped_gauge.set_function(lambda: float(dropped()))

    def call(self, record: CallRecord) -> None:
        target = record.target if record.method in ("tools/call", "prompts/get") else ""
        key = (record.api_id, record.method, target or "", record.outcome or "")
        counter = self._children.get(key)
        if counter is None:
            counter = self._children[key] = self.calls.labels(*key)
        counter.inc()
        if record.latency_ms is not None and record.kind != "notification":
            histogram = self._children.get(key[:2])
            if histogram is None:
                histogram = self._children[key[:2]] = self.latency.labels(*key[:2])
            histogram.observe(record.latency_ms / 1000.0)

    def exchange(self, api_id: str, status: Any) -> None:
        self.http.labels(api_id, str(status)).inc()

    def notification(self, api_id: str, method: str) -> None:
        self.notifications.labels(api_id, method).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
