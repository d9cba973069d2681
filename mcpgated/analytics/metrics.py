"""
Prometheus metrics (prometheus_client), in a registry of their own so tests
and several gateways in one process never share counters.

Every exchange counts in several series, and prometheus_client takes a lock
and a few calls per increment. So the request path only adds to plain
numbers kept beside each labelled counter, and those are carried into the
counters (with the public C{inc}) whenever the registry is collected on the
reactor thread (C{render}, C{render_in_thread}, or anything else reading
C{registry}): what is exported is the same, and series appear (with their
C{_created} time) at their first event. Latencies go to the histogram's
C{observe} at once: folding them later would mean writing its private
buckets.

Labels come from bounded sets, never from what a client may choose freely
(the exchange log keeps the exact names):

- C{method}: one of L{MCP_METHODS} (the methods of the MCP specification's
  revisions), else C{other};
- C{target}: the tool or prompt name of C{tools/call} and C{prompts/get}
  calls the gateway admitted, cut at L{MAX_LABEL} characters, for at most
  L{MAX_TARGETS} distinct names per API (later ones are C{other}); calls the
  gateway refused (L{REFUSED}) have none, their C{outcome} says why;
- C{outcome}: one of L{OUTCOMES}, else C{other};
- C{api_name}: beside C{api} (the id), the API's name, one per API (an
  operator's renaming starts new series; clients never choose it).

So each API has at most L{series_bound} C{mcpgated_mcp_calls} series.
C{render_in_thread} builds the text on a thread: a scrape never stalls
proxied requests.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Iterable, List, Set, Tuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

from mcpgated.analytics.records import CallRecord
from mcpgated.mcp.methods import SPEC_METHODS, TARGETED_CALLS

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# the histogram's upper bounds, +Inf last, as prometheus_client sets them
_TARGETED = TARGETED_CALLS
OTHER = "other"
MAX_TARGETS = 100  # distinct target labels per API
MAX_LABEL = 64  # characters of a target label

# Every method of the MCP specification (2024-11-05 to 2026-07-28): requests
# both ways and notifications. Any other method is counted as "other".
MCP_METHODS = SPEC_METHODS
# What the gateway refused itself, before the backend saw the call.
REFUSED = frozenset({"unauthorized", "forbidden", "bad_credentials", "bad_request",
                     "rate_limited", "denied"})
# Every outcome the exchange tracker gives ("" when it gave none).
OUTCOMES = REFUSED | frozenset({
    "", "result", "error", "tool_error", "http_error", "accepted", "no_response",
    "client_closed", "upstream_error", "unparsed",
})


def series_bound() -> int:
    """
    The most C{mcpgated_mcp_calls} series one API can have: untargeted
    calls of every method label, plus the targeted ones (each of the
    L{MAX_TARGETS} names, and C{other}, under both targeted methods), for
    every outcome label.
    """
    methods = len(MCP_METHODS) + 1
    targets = MAX_TARGETS + len(_TARGETED)  # ... and "other" under each targeted method
    return (methods + targets) * (len(OUTCOMES) + 1)


class Level:
    """
    A gauge's value, moved by L{inc} and L{dec} like a L{Gauge}'s, read
    when the registry is collected.
    """

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float = 0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = value


class _Settle:
    """
    Registered first: carries the pending counts into the children before
    the registry collects them, when collected on the thread that counts
    (a collection on another thread, L{Metrics.render_in_thread}, was
    settled before it started).
    """

    def __init__(self, settle: Callable[[], None]) -> None:
        self._settle = settle
        self._owner = threading.get_ident()

    def describe(self) -> List[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        if threading.get_ident() == self._owner:
            self._settle()
        return ()


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, dropped: Callable[[], int] = lambda: 0) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_Settle(self._settle))
        # by label values: [labelled child, count not yet added to it]
        self._counts: Dict[Tuple[Any, ...], List[Any]] = {}
        # by (api, name, method): labelled histogram children
        self._latencies: Dict[Tuple[str, str, str], Any] = {}
        # by API: the target labels given so far (at most MAX_TARGETS)
        self._targets: Dict[str, Set[Tuple[str, str]]] = {}
        # by API id: its name, the api_name label (set by the recorder)
        self._names: Dict[str, str] = {}
        self.calls = Counter(
            "mcpgated_mcp_calls", "JSON-RPC calls through the gateway",
            ["api", "api_name", "method", "target", "outcome"], registry=self.registry)
        self.latency = Histogram(
            "mcpgated_mcp_call_latency_seconds", "Gateway latency per JSON-RPC call",
            ["api", "api_name", "method"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.http = Counter(
            "mcpgated_http_requests", "HTTP exchanges through the gateway",
            ["api", "api_name", "status"], registry=self.registry)
        self.notifications = Counter(
            "mcpgated_mcp_notifications", "Server-to-client notifications relayed",
            ["api", "api_name", "method"], registry=self.registry)
        # tool-definition pinning (mcpgated.policy.pinning): kind and type
        # from fixed sets, "what" is list_item or call
        self.pin_events = Counter(
            "mcpgated_pin_drift_events", "Pinning events: tool, prompt or resource template "
            "definitions changed, new or removed", ["api", "api_name", "kind", "type"],
            registry=self.registry)
        self.pin_blocks = Counter(
            "mcpgated_pin_blocked", "List items and calls blocked by pinning",
            ["api", "api_name", "what"], registry=self.registry)
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

    def name(self, api_id: str, name: str) -> None:
        """
        The name of an API, for the C{api_name} label of its next series.
        """
        self._names[api_id] = name

    def _target(self, api_id: str, method: str, target: str) -> str:
        """
        The label of an admitted call's target: cut to L{MAX_LABEL}
        characters, one of the first L{MAX_TARGETS} of its API, else
        C{other}.
        """
        label = target[:MAX_LABEL]
        seen = self._targets.get(api_id)
        if seen is None:
            seen = self._targets[api_id] = set()
        if (method, label) in seen:
            return label
        if len(seen) < MAX_TARGETS:
            seen.add((method, label))
            return label
        return OTHER

    def call(self, record: CallRecord) -> None:
        method = record.method
        if method not in MCP_METHODS:
            method = OTHER
        outcome = record.outcome or ""
        if outcome not in OUTCOMES:
            outcome = OTHER
        target = ""
        if method in _TARGETED and record.target and outcome not in REFUSED:
            target = self._target(record.api_id, method, record.target)
        key = (record.api_id, record.api_name, method, target, outcome)
        entry = self._counts.get(key)
        if entry is None:
            entry = self._counts[key] = [self.calls.labels(*key), 0]
        entry[1] += 1
        latency = record.latency_ms
        if latency is not None and record.kind != "notification":
            child = self._latencies.get(key[:3])
            if child is None:
                child = self._latencies[key[:3]] = self.latency.labels(*key[:3])
            child.observe(latency / 1000.0)

    def exchange(self, api_id: str, status: Any) -> None:
        # status: a three-digit code (the parsers take no other) or None
        name = self._names.get(api_id, "")
        key = ("http", api_id, name, status)
        entry = self._counts.get(key)
        if entry is None:
            entry = self._counts[key] = [self.http.labels(api_id, name, str(status)), 0]
        entry[1] += 1

    def notification(self, api_id: str, method: str) -> None:
        if method not in MCP_METHODS:
            method = OTHER
        name = self._names.get(api_id, "")
        key = ("notification", api_id, name, method)
        entry = self._counts.get(key)
        if entry is None:
            entry = self._counts[key] = [self.notifications.labels(api_id, name, method), 0]
        entry[1] += 1

    def pin_event(self, api_id: str, kind: str, type: str) -> None:
        name = self._names.get(api_id, "")
        key = ("pin_event", api_id, name, kind, type)
        entry = self._counts.get(key)
        if entry is None:
            entry = self._counts[key] = [self.pin_events.labels(api_id, name, kind, type), 0]
        entry[1] += 1

    def pin_blocked(self, api_id: str, what: str, count: int) -> None:
        name = self._names.get(api_id, "")
        key = ("pin_blocked", api_id, name, what)
        entry = self._counts.get(key)
        if entry is None:
            entry = self._counts[key] = [self.pin_blocks.labels(api_id, name, what), 0]
        entry[1] += count

    def _settle(self) -> None:
        for entry in self._counts.values():
            if entry[1]:
                entry[0].inc(entry[1])
                entry[1] = 0

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def render_in_thread(self) -> "Deferred[bytes]":
        """
        L{render}, with the text built on a thread of the reactor's pool:
        the pending counts are settled here (on the reactor thread, the one
        that counts), then prometheus_client, whose children lock their
        values, collects and formats them there.
        """
        self._settle()
        return deferToThread(generate_latest, self.registry)
