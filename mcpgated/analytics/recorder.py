"""
Where finished exchange records go: the analytics store, the Prometheus
metrics and, optionally, a JSON-lines exchange log file.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, Callable, Dict, FrozenSet, Optional, Tuple

import attrs
from zope.interface import implementer

from mcpgated.analytics.interfaces import IRecorder
from mcpgated.analytics.metrics import Metrics
from mcpgated.analytics.records import DEFAULT_REDACT, CallRecord, Capture
from mcpgated.analytics.sessions import SessionBook
from mcpgated.analytics.store import COLUMNS, ExchangeStore
from mcpgated.analytics.tracker import ExchangeTracker
from mcpgated.model import ApiDefinition


@implementer(IRecorder)
@attrs.define
class Recorder:
    clock: Any
    store: Optional[ExchangeStore]
    metrics: Metrics
    exchange_log: Any = None  # an AccessLog-like object with record(dict), or None
    book: SessionBook = attrs.field(factory=SessionBook)
    # per deployed definition (by identity): its capture settings and plan
    _settings: Dict[int, Tuple[ApiDefinition, Capture, Optional[str], Callable[[CallRecord], None]]] = \
        attrs.field(factory=dict)
    node: Optional[str] = None  # named in each exchange log line ([gateway] node)

    def _for(self, api_id: str, definition: ApiDefinition) -> "tuple[Capture, Optional[str], Any]":
        found = self._settings.get(id(definition))
        if found is None or found[0] is not definition:
            settings = definition.analytics
            capture = Capture(settings.capture, settings.max_payload_bytes,
                              _redact_set(settings.redact_fields))
            plan = next((p.name for p in definition.plans if p.status == "PUBLISHED"), None)
            emit = self.emit if settings.logging else self.metrics.call
            self.metrics.name(api_id, definition.name)
            if len(self._settings) > 1000:
                self._settings.clear()
            found = self._settings[id(definition)] = (definition, capture, plan, emit)
        return found[1], found[2], found[3]

    def observer(self, api_id: str, definition: ApiDefinition, client: Optional[str],
                 started: float, http_method: bytes) -> ExchangeTracker:
        capture, plan, emit = self._for(api_id, definition)
        return ExchangeTracker(self.clock, self.book, emit, self.metrics,
                               api_id, definition.name, plan, client, capture, started,
                               http_method)

    def unrouted(self, status: Optional[int]) -> None:
        self.metrics.exchange("", status)

    def emit(self, record: CallRecord) -> None:
        self.metrics.call(record)
        if self.store is not None:
            self.store.record(record)
        if self.exchange_log is not None:
            line = {c: v for c, v in zip(COLUMNS, _values(record), strict=True) if v is not None}
            if self.node is not None:
                line["node"] = self.node
            self.exchange_log.record(line)


_values = attrgetter(*COLUMNS)

_CACHE: Dict[Tuple[str, ...], FrozenSet[str]] = {}


def _redact_set(fields: Tuple[str, ...]) -> FrozenSet[str]:
    found = _CACHE.get(fields)
    if found is None:
        found = _CACHE[fields] = DEFAULT_REDACT | frozenset(f.lower() for f in fields)
    return found
