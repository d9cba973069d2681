"""
The admin API's view of the traffic: the exchange log (C{/logs}, one entry
with its captured payloads), the dashboard's aggregates (C{/analytics}) and
the Prometheus metrics (C{/metrics}), with the parsing of their query
arguments (time windows, filters, pages).
"""

from __future__ import annotations

import datetime
import json
import math
from typing import Any, Dict, FrozenSet, Optional, Tuple, Union

from twisted.internet.defer import Deferred
from twisted.web.iweb import IRequest

from mcpgated.admin.endpoint import (
    AdminState,
    Answer,
    HTTPError,
    app,
    endpoint,
    error_answer,
    unauthorized,
)
from mcpgated.analytics.metrics import OUTCOMES
from mcpgated.analytics.store import ExchangeStore, LogQuery

# The largest id SQLite stores (a signed 64-bit INTEGER).
MAX_ROW_ID = 2 ** 63 - 1
DEFAULT_WINDOW = 3600.0
MAX_WINDOW = 366 * 86400
# The query parameters each route reads; any other is a 400 naming it (a
# misspelt filter must not answer an unfiltered page as if it applied).
RANGE_PARAMS = frozenset({"from", "to", "last"})
# the dashboard's: a window, and one node's traffic if asked
SUMMARY_PARAMS = RANGE_PARAMS | {"node"}
LOG_PARAMS = RANGE_PARAMS | {"method", "tool", "target", "outcome", "status", "client", "session",
                             "node", "q", "cursor", "limit"}
# what ?outcome= takes: an outcome the tracker gives, or "errors" (any failure)
LOG_OUTCOMES = frozenset(o for o in OUTCOMES if o) | {"errors"}


class AnalyticsRoutes(AdminState):
    def _analytics_store(self) -> ExchangeStore:
        if self.analytics is None:
            raise HTTPError(404, "analytics are disabled ([analytics] enabled = off)")
        return self.analytics

    async def _known_api(self, api_id: str) -> None:
        await self.store.get_api(api_id)  # NotFound -> 404

    async def _logs(self, request: IRequest, api_id: Optional[str]) -> Answer:
        store = self._analytics_store()
        if api_id is not None:
            await self._known_api(api_id)
        query = log_query(request, api_id, self.clock.seconds())
        return 200, await store.logs(query)

    @app.route("/apis/<string:api_id>/logs", methods=["GET"])
    @endpoint()
    async def api_logs(self, request: IRequest, api_id: str) -> Answer:
        return await self._logs(request, api_id)

    @app.route("/logs", methods=["GET"])
    @endpoint()
    async def all_logs(self, request: IRequest) -> Answer:
        return await self._logs(request, None)

    @app.route("/apis/<string:api_id>/logs/<int:log_id>", methods=["GET"])
    @endpoint()
    async def api_log_entry(self, request: IRequest, api_id: str, log_id: int) -> Answer:
        store = self._analytics_store()
        await self._known_api(api_id)
        known_params(request, frozenset())
        entry = await store.log_entry(api_id, log_id) if log_id <= MAX_ROW_ID else None
        if entry is None:
            raise HTTPError(404, "no exchange record with this id for this API", "logId")
        return 200, with_payloads(entry)

    async def _summary(self, request: IRequest, api_id: Optional[str]) -> Answer:
        store = self._analytics_store()
        if api_id is not None:
            await self._known_api(api_id)
        since, until = time_range(request, self.clock.seconds(), SUMMARY_PARAMS)
        node = _arg(request, "node") or None
        return 200, await store.analytics(api_id, since, until, node)

    @app.route("/apis/<string:api_id>/analytics", methods=["GET"])
    @endpoint()
    async def api_analytics(self, request: IRequest, api_id: str) -> Answer:
        return await self._summary(request, api_id)

    @app.route("/analytics", methods=["GET"])
    @endpoint()
    async def all_analytics(self, request: IRequest) -> Answer:
        return await self._summary(request, None)

    @app.route("/metrics", methods=["GET"])
    def prometheus(self, request: IRequest) -> Union[bytes, "Deferred[bytes]"]:
        if not self.authorized(request):
            return unauthorized(request)
        if self.metrics is None:
            return error_answer(request, 404, "metrics are disabled")
        request.setHeader(b"content-type", self.metrics.content_type.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        # rendered on a thread: a scrape never stalls the proxied traffic
        return self.metrics.render_in_thread()


def whole(raw: str) -> Optional[int]:
    """
    C{raw} as a whole number if it is one written in ASCII digits and fits a
    SQLite INTEGER, else L{None} (C{int} also takes C{"\\u0663"} and C{"1_0"}).
    """
    if raw.isascii() and raw.isdigit() and len(raw) <= 19:
        value = int(raw)
        if value <= MAX_ROW_ID:
            return value
    return None


def known_params(request: IRequest, known: FrozenSet[str]) -> None:
    """
    @raise HTTPError: 400 naming the first query parameter the route does
        not read.
    """
    unknown = sorted(k.decode("utf-8", "replace") for k in request.args
                     if k.decode("utf-8", "replace") not in known)
    if unknown:
        expected = ", ".join(sorted(known)) or "none"
        raise HTTPError(400, f"unknown query parameter {unknown[0]!r} (this route takes: {expected})",
                        unknown[0])


def _arg(request: IRequest, name: str) -> Optional[str]:
    values = request.args.get(name.encode("ascii"))
    if not values:
        return None
    value: str = values[0].decode("utf-8", "replace")
    return value


def _time(request: IRequest, name: str, default: Optional[float] = None) -> Optional[float]:
    raw = _arg(request, name)
    if raw is None or raw == "":
        return default
    try:
        value = parse_time(raw)
    except (ValueError, OverflowError):
        value = math.nan
    if not math.isfinite(value):
        raise HTTPError(400, f"{name} must be a number of seconds since the epoch or an ISO 8601 "
                             "time", name)
    return value


def parse_time(raw: str) -> float:
    """
    Seconds since the epoch, given as such or as an ISO 8601 time (UTC if
    it names no zone).

    @raise ValueError: for anything else.
    """
    try:
        return float(raw)
    except ValueError:
        moment = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        return moment.timestamp()


def _last(request: IRequest) -> Optional[float]:
    """
    C{last}: a window in seconds ending at C{to}, instead of C{from} (the
    server's clock, whatever the browser's says).
    """
    raw = _arg(request, "last")
    if raw is None or raw == "":
        return None
    if _arg(request, "from"):
        raise HTTPError(400, "give from or last, not both", "last")
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= MAX_WINDOW:
        raise HTTPError(400, "last must be a number of seconds, more than 0 and at most a year",
                        "last")
    return value


def time_range(request: IRequest, now: float,
               known: FrozenSet[str] = RANGE_PARAMS) -> Tuple[float, float]:
    """
    The dashboard's window from C{from}, C{to} and C{last} (default: the
    hour up to C{now}).

    @raise HTTPError: 400 naming the argument that is wrong or not in
        C{known}.
    """
    known_params(request, known)
    until = _time(request, "to", now)
    since = _time(request, "from", None)
    assert until is not None
    if since is None:
        since = until - (_last(request) or DEFAULT_WINDOW)
    if since >= until:
        raise HTTPError(400, "from must be earlier than to", "from")
    return since, until


def log_query(request: IRequest, api_id: Optional[str], now: float) -> LogQuery:
    """
    The exchange-log query of C{/logs}' arguments.

    @raise HTTPError: 400 naming the argument that is wrong or unknown.
    """
    known_params(request, LOG_PARAMS)
    outcome = _arg(request, "outcome") or None
    if outcome is not None and outcome not in LOG_OUTCOMES:
        raise HTTPError(400, f"outcome must be one of {', '.join(sorted(LOG_OUTCOMES))}", "outcome")
    limit = whole(_arg(request, "limit") or "50")
    if limit is None or not 1 <= limit <= 500:
        raise HTTPError(400, "limit must be a whole number from 1 to 500", "limit")
    cursor_raw = _arg(request, "cursor")
    cursor = None if cursor_raw is None else whole(cursor_raw)
    if cursor_raw is not None and cursor is None:
        raise HTTPError(400, "cursor must be a value returned as nextCursor", "cursor")
    status_raw = _arg(request, "status")
    status = None if status_raw is None else whole(status_raw)
    if status_raw is not None and (status is None or not 100 <= status <= 599):
        raise HTTPError(400, "status must be an HTTP status code", "status")
    last, until = _last(request), _time(request, "to")
    return LogQuery(
        api_id=api_id,
        since=_time(request, "from") if last is None else (now if until is None else until) - last,
        until=until,
        method=_arg(request, "method"),
        target=_arg(request, "tool") or _arg(request, "target"),
        outcome=outcome,
        status=status,
        client=_arg(request, "client"),
        session=_arg(request, "session"),
        node=_arg(request, "node"),
        text=_arg(request, "q"),
        cursor=cursor,
        limit=limit,
    )


def with_payloads(entry: Dict[str, Any]) -> Dict[str, Any]:
    """
    A log entry with its captured headers and payloads as JSON; one cut at
    the capture limit is shown as text.
    """
    for key in ("requestHeaders", "responseHeaders", "requestPayload", "responsePayload"):
        raw = entry.get(key)
        if raw is None:
            continue
        try:
            entry[key] = json.loads(raw)
        except ValueError:
            entry[key] = raw  # cut at the capture limit: shown as text
    return entry
