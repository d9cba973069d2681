"""
Driving an L{ExchangeTracker} in memory the way the resource does
(L{mcpgated.proxy.resource}): the request body parsed once (or refused), and
the answer through the one response reader (L{mcpgated.mcp.responses}).
"""

from __future__ import annotations

from typing import Any, List, Optional

from mcpgated.analytics.tracker import ExchangeTracker
from mcpgated.mcp.body import BodyError, parse
from mcpgated.mcp.responses import ResponseReader
from mcpgated.policy.rewrite import Filter, ListJudge


class _Level:
    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1

    def dec(self) -> None:
        self.value -= 1


class RecordingMetrics:
    """
    The part of L{mcpgated.analytics.metrics.Metrics} a tracker uses, recorded.
    """

    def __init__(self) -> None:
        self.notifications: List[str] = []
        self.exchanges: List[Any] = []
        self.open_streams = _Level()

    def notification(self, api_id: str, method: str) -> None:
        self.notifications.append(method)

    def exchange(self, api_id: str, status: Any) -> None:
        self.exchanges.append(status)


class DrivenExchange:
    """
    The old tracker entry points (C{request(raw, headers, uri)}, C{data},
    C{finished}) over the new ones.
    """

    def __init__(self, tracker: ExchangeTracker) -> None:
        self.tracker = tracker
        self.reader: Optional[ResponseReader] = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tracker, name)

    def request(self, raw: bytes, headers: Any, uri: bytes) -> None:
        body = None
        if raw and self.tracker.http_method == b"POST":
            try:
                body = parse(raw)
            except BodyError:
                return  # refused by the gateway: never reaches the tracker
        self.tracker.request(headers, uri, len(raw), body)

    def response(self, status: int, headers: Any, ttfb_ms: float, event_stream: bool) -> None:
        self.tracker.response(status, headers, ttfb_ms, event_stream)
        legacy_get = event_stream and self.tracker.http_method == b"GET"
        self.reader = ResponseReader(event_stream, observer=self.tracker,
                                     endpoint=(lambda url: url) if legacy_get else None)

    def data(self, chunk: bytes) -> bytes:
        assert self.reader is not None
        return self.reader.feed(chunk)

    def finished(self, outcome: str, status: Optional[int] = None) -> None:
        if self.reader is not None:
            self.reader.flush()
            self.reader = None
        self.tracker.finished(outcome, status)


def json_judged(lists: Any, apply: Filter, extra: List[Any], batch: bool,
                forwarded: Any = frozenset()) -> ResponseReader:
    """
    The response reader as the resource builds it for a judged JSON answer.
    """
    return ResponseReader(False, ListJudge(lists, apply, extra, batch, forwarded=forwarded))


def events_judged(lists: Any, apply: Filter, extra: List[Any],
                  forwarded: Any = frozenset()) -> ResponseReader:
    """
    ... and for a judged event stream.
    """
    return ResponseReader(True, ListJudge(lists, apply, extra, False, forwarded=forwarded))
