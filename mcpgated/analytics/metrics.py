"""
Prometheus metrics (prometheus_client), in a registry of their own so tests
and several gateways in one process never share counters.

Every exchange counts in several series, and prometheus_client takes a lock
and a few calls per increment. So the request path only adds to plain
numbers kept beside each labelled counter, and those are carried into the
counters (with the public C{inc}) whenever the registry is collected
(C{render}, or anything else reading C{registry}): what is exported is the
same, and series appear (with their C{_created} time) at their first event.
Latencies go to the histogram's C{observe} at once: folding them later would
mean writing its private buckets.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Tuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from mcpgated.analytics.tracker import CallRecord

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# the histogram's upper bounds, +Inf last, as prometheus_client sets them
_TARGETED = frozenset({"tools/call", "prompts/get"})


class Level:
    """
    A gauge's value, moved by L{inc} and L{dec} like a L{Gauge}'s, read
    when the registry is collected.
    """

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = value


class _Settle:
    """
    Registered first: carries the pending counts into the children before
    the registry collects them.
    """

    def __init__(self, settle: Callable[[], None]) -> None:
        self._settle = settle

    def describe(self) -> List[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        self._settle()
        return ()


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, dropped: Callable[[], int] = lambda: 0) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_Settle(self._settle))
        # by label values: [labelled child, count not yet added to it]
        self._counts: Dict[Tuple[Any, ...], List[Any]] = {}
        # by (api, method): [child, observations per bucket not yet added, sum of all]
        self._latencies: Dict[Tuple[str, str], Any] = {}  # labelled histogram children
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
        self.open_streams = Level()
        level = self.open_streams
        open_gauge = Gauge(
            "mcpgated_open_streams", "Responses currently streaming to clients",
            registry=self.registry)
        open_gauge.set_function(lambda: float(level.value))
        dropped_gauge = Gauge(
            "mcpgated_exchange_records_dropped", "Exchange log records dropped (store slow or full)",
            registry=self.registry)
        dropped_gauge.set_function(lambda: float(dropped()))

    def call(self, record: CallRecord) -> None:
        method = record.method
        target = record.target if method in _TARGETED else ""
        key = (record.api_id, method, target or "", record.outcome or "")
        entry = self._counts.get(key)
        if entry is None:
            entry = self._counts[key] = [self.calls.labels(*key), 0]
        entry[1] += 1
        latency = record.latency_ms
        if latency is not None and record.kind != "notification":
            child = self._latencies.get(key[:2])  # type: ignore[index]
            if child is None:
                child = self._latencies[key[:2]] = self.latency.labels(*key[:2])  # type: ignore
            child.observe(latency / 1000.0)

    def exchange(self, api_id: str, status: Any) -> None:
        key = ("http", api_id, status)
        entry = self._counts.get(key)
        if entry is None:
            entry = self._counts[key] = [self.http.labels(api_id, str(status)), 0]
        entry[1] += 1

    def notification(self, api_id: str, method: str) -> None:
        key = ("notification", api_id, method)
        entry = self._counts.get(key)
        if entry is None:
            entry = self._counts[key] = [self.notifications.labels(api_id, method), 0]
        entry[1] += 1

    def _settle(self) -> None:
        for entry in self._counts.values():
            if entry[1]:
                entry[0].inc(entry[1])
                entry[1] = 0

    def render(self) -> bytes:
        return generate_latest(self.registry)
