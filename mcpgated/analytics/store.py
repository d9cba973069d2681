"""
The exchange log and usage analytics in their own SQLite file.

Records are queued in memory on the reactor thread and written in batches,
one transaction per batch, on the store's own thread. A slow or full disk
never blocks or fails proxying: past C{max_queue} waiting records, new ones
are dropped and counted (C{dropped}), visible in the admin API and metrics.
A batch that cannot be written (disk full, I/O error) is dropped and counted
too; the error is logged once per streak of failures, and the periodic
flush and pruning go on.
"""

from __future__ import annotations

import math
import sqlite3
from itertools import compress
from operator import attrgetter, is_not
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, ParamSpec, Sequence, Tuple, TypeVar

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from mcpgated.analytics.records import RECORD_FIELDS, CallRecord
from mcpgated.sqlitedb import open_database

log = Logger()

_P = ParamSpec("_P")
_R = TypeVar("_R")

COLUMNS = RECORD_FIELDS
_TRUNCATED = COLUMNS.index("truncated")
# A column left out of an INSERT takes its default: NULL, or 0 for truncated.
# Binding None (or a bool) costs sqlite3 a failed adaptation lookup per value,
# so each row is written with the statement naming only its other columns.
_DEFAULTS = tuple(False if c == "truncated" else None for c in COLUMNS)
_values = attrgetter(*COLUMNS)
_SUMMARY = [c for c in ("id", *COLUMNS) if c not in (
    "request_headers", "response_headers", "request_payload", "response_payload")]
ERROR_OUTCOMES = ("error", "tool_error", "http_error", "upstream_error", "denied",
                  "rate_limited", "unauthorized", "forbidden", "bad_request", "bad_credentials")
_NICE_BUCKETS = (1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400)


def camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def _row(record: CallRecord) -> Tuple[Any, ...]:
    row = _values(record)
    if row[_TRUNCATED] is not False:
        return (*row[:_TRUNCATED], int(row[_TRUNCATED]), *row[_TRUNCATED + 1:])
    return row


def _statement(given: Tuple[bool, ...]) -> str:
    """
    The INSERT for a row whose columns C{given} are set (the others default).
    (S608) Only constant column names go into the text; values are bound.
    """
    names = list(compress(COLUMNS, given))
    return (f"INSERT INTO exchanges ({', '.join(names)}) "  # noqa: S608
            f"VALUES ({', '.join('?' for _ in names)})")


_STATEMENTS: Dict[Tuple[bool, ...], str] = {}


def _write_rows(connection: sqlite3.Connection, rows: List[Tuple[Any, ...]]) -> None:
    """
    Insert the rows (L{_row}) in order: runs of rows with the same columns
    set go in one C{executemany}.
    """
    statements = _STATEMENTS
    run: List[Tuple[Any, ...]] = []
    run_shape: Optional[Tuple[bool, ...]] = None
    insert = ""
    for row in rows:
        shape = tuple(map(is_not, row, _DEFAULTS))
        if shape != run_shape:
            if run:
                connection.executemany(insert, run)
                run = []
            found = statements.get(shape)
            if found is None:
                if len(statements) > 4096:
                    statements.clear()
                found = statements[shape] = _statement(shape)
            insert, run_shape = found, shape
        run.append(tuple(compress(row, shape)))
    if run:
        connection.executemany(insert, run)


@attrs.frozen
class LogQuery:
    api_id: Optional[str] = None
    since: Optional[float] = None
    until: Optional[float] = None
    method: Optional[str] = None
    target: Optional[str] = None
    outcome: Optional[str] = None
    status: Optional[int] = None
    client: Optional[str] = None
    session: Optional[str] = None
    text: Optional[str] = None
    cursor: Optional[int] = None
    limit: int = 50


def _where(query: LogQuery) -> Tuple[str, List[Any]]:
    clauses: List[str] = []
    args: List[Any] = []
    simple = [("api_id", query.api_id), ("method", query.method), ("target", query.target),
              ("http_status", query.status), ("session", query.session)]
    for column, value in simple:
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    if query.outcome is not None:
        if query.outcome == "errors":
            clauses.append(f"outcome IN ({', '.join('?' for _ in ERROR_OUTCOMES)})")
            args.extend(ERROR_OUTCOMES)
        else:
            clauses.append("outcome = ?")
            args.append(query.outcome)
    if query.client is not None:
        clauses.append("(client = ? OR client_name = ?)")
        args.extend([query.client, query.client])
    if query.since is not None:
        clauses.append("time >= ?")
        args.append(query.since)
    if query.until is not None:
        clauses.append("time < ?")
        args.append(query.until)
    if query.text:
        like = "%" + query.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        clauses.append("(method LIKE ? ESCAPE '\\' OR target LIKE ? ESCAPE '\\' OR "
                       "error_message LIKE ? ESCAPE '\\' OR client_name LIKE ? ESCAPE '\\' OR "
                       "jsonrpc_id LIKE ? ESCAPE '\\')")
        args.extend([like] * 5)
    if query.cursor is not None:
        clauses.append("id < ?")
        args.append(query.cursor)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def percentile(sorted_values: Sequence[float], q: float) -> Optional[float]:
    """
    Nearest-rank percentile of ascending values.
    """
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return round(sorted_values[rank - 1], 3)


def _percentiles(values: List[float], presorted: bool = False) -> Dict[str, Optional[float]]:
    """
    p50, p90 and p99 of some latencies (L{None} each when there are none).
    """
    ordered = values if presorted else sorted(values)
    return {"p50": percentile(ordered, 50), "p90": percentile(ordered, 90),
            "p99": percentile(ordered, 99)}


def bucket_seconds(span: float, target: int = 60) -> int:
    """
    A round bucket width giving at most about C{target} buckets over C{span}.
    """
    wanted = span / target
    for width in _NICE_BUCKETS:
        if width >= wanted:
            return width
    return math.ceil(wanted / 86400.0) * 86400


@attrs.define(slots=False)
class AnalyticsStore(Service):
    """
    @ivar retention: seconds a record is kept.
    @ivar max_rows: rows kept at most (oldest deleted first).
    """

    reactor: Any  # the reactor: IReactorTime and IReactorFromThreads
    path: Path
    retention: float = 7 * 86400.0
    max_rows: int = 1_000_000
    max_queue: int = 50_000
    batch_interval: float = 0.5
    dropped: int = 0
    written: int = 0
    # rows, not records: tuples of plain values, which the garbage collector
    # stops tracking, instead of objects it would scan until the next flush
    _queue: List[Tuple[Any, ...]] = attrs.field(factory=list)
    _pool: ThreadPool = attrs.field(factory=lambda: ThreadPool(1, 1, "mcpgated-analytics"))
    _connection: Optional[sqlite3.Connection] = None
    _flushing: bool = False
    _open: bool = False
    _loops: List[LoopingCall] = attrs.field(factory=list)
    _failing: int = 0  # records dropped in the current streak of failed writes
    _prune_failing: bool = False
    # Fires once started: None when the database is open, or the failure to
    # open it, which the owner handles (the daemon stops: mcpgated.tap).
    opened: Deferred[None] = attrs.field(init=False, factory=Deferred)

    # --- lifecycle ----------------------------------------------------------------------

    def startService(self) -> None:
        Service.startService(self)
        self._pool.start()
        d = self._run(self._open_db)
        d.addCallbacks(self._opened, self._failed_open)

    def _open_db(self) -> int:
        # NORMAL: analytics may lose the last batch on power loss, never corrupt.
        self._connection, version = open_database(self.path, "mcpgated.analytics", "NORMAL")
        return version

    def _opened(self, version: int) -> None:
        self._open = True
        log.info("analytics store {path} open (schema {version})", path=str(self.path),
                 version=version)
        for interval, job in ((self.batch_interval, self.flush), (60.0, self._prune_job)):
            loop = LoopingCall(job)
            loop.clock = self.reactor
            loop.start(interval, now=False).addErrback(
                lambda f: log.failure("analytics job failed", f))
            self._loops.append(loop)
        self.opened.callback(None)

    def _failed_open(self, failure: Any) -> None:
        self.opened.errback(failure)

    def stopService(self) -> "Deferred[None]":
        Service.stopService(self)
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []
        d = self.flush(final=True) if self._open else _done()
        d.addBoth(lambda _: self._run(self._close))
        d.addBoth(lambda _: self._pool.stop())
        return d

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _run(self, work: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> Deferred[_R]:
        return deferToThreadPool(self.reactor, self._pool, work, *args, **kwargs)

    # --- writing ------------------------------------------------------------------------

    def record(self, record: CallRecord) -> None:
        if len(self._queue) >= self.max_queue:
            self.dropped += 1
            return
        self._queue.append(_row(record))

    def flush(self, final: bool = False) -> Deferred[None]:
        if self._flushing and not final:
            return _done()
        if not self._queue or not self._open:
            return _done()
        batch, self._queue = self._queue, []
        rows = batch
        self._flushing = True
        d = self._run(self._insert, rows)

        def written(_: Any) -> None:
            self.written += len(rows)
            if self._failing:
                log.info("analytics store {path} written again ({count} records were dropped)",
                         path=str(self.path), count=self._failing)
                self._failing = 0

        def failed(failure: Any) -> None:
            self.dropped += len(rows)
            if not self._failing:
                log.error("analytics write failed ({error}): exchange records are dropped and "
                          "counted until writing works again", error=failure.getErrorMessage())
            self._failing += len(rows)

        def done(_: Any) -> None:
            self._flushing = False

        d.addCallbacks(written, failed)
        d.addBoth(done)
        return d

    def _insert(self, rows: List[Tuple[Any, ...]]) -> None:
        connection = self._connection
        assert connection is not None
        connection.execute("BEGIN")
        try:
            _write_rows(connection, rows)
            connection.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (a full disk); a COMMIT that
            # failed leaves the transaction open, and the next BEGIN would fail.
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def prune(self) -> Deferred[Optional[int]]:
        if not self._open:
            return succeed(None)
        return self._run(self._prune, self.reactor.seconds() - self.retention)

    def _prune_job(self) -> Deferred[None]:
        """
        L{prune} for the periodic job: a failure (a full disk) is logged
        once per streak and the job goes on (a failed Deferred would stop
        its LoopingCall for good).
        """

        def pruned(_: Any) -> None:
            self._prune_failing = False

        def failed(failure: Any) -> None:
            if not self._prune_failing:
                self._prune_failing = True
                log.error("analytics pruning failed ({error}); retrying every minute",
                          error=failure.getErrorMessage())

        return self.prune().addCallbacks(pruned, failed)

    def _prune(self, cutoff: float) -> int:
        connection = self._connection
        assert connection is not None
        deleted = connection.execute("DELETE FROM exchanges WHERE time < ?", (cutoff,)).rowcount
        top = connection.execute("SELECT MAX(id) FROM exchanges").fetchone()[0]
        if top is not None:
            deleted += connection.execute("DELETE FROM exchanges WHERE id <= ?",
                                          (top - self.max_rows,)).rowcount
        return deleted

    # --- reading ------------------------------------------------------------------------
    # (S608) The statements are built from constant column lists and _where's
    # clauses, which hold only "?" placeholders: every value is bound.

    def logs(self, query: LogQuery) -> "Deferred[Dict[str, Any]]":
        return self._run(self._logs, query)

    def _logs(self, query: LogQuery) -> Dict[str, Any]:
        connection = self._connection
        assert connection is not None
        where, args = _where(query)
        rows = connection.execute(
            f"SELECT {', '.join(_SUMMARY)} FROM exchanges{where} ORDER BY id DESC LIMIT ?",  # noqa: S608
            [*args, query.limit + 1],
        ).fetchall()
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        items = [{camel(k): v for k, v in zip(_SUMMARY, row, strict=True)} for row in rows]
        for item in items:
            item["truncated"] = bool(item["truncated"])
        return {"data": items, "nextCursor": str(items[-1]["id"]) if more and items else None}

    def log_entry(self, api_id: Optional[str], log_id: int) -> "Deferred[Optional[Dict[str, Any]]]":
        return self._run(self._log_entry, api_id, log_id)

    def _log_entry(self, api_id: Optional[str], log_id: int) -> Optional[Dict[str, Any]]:
        connection = self._connection
        assert connection is not None
        columns = ("id", *COLUMNS)
        row = connection.execute(f"SELECT {', '.join(columns)} FROM exchanges WHERE id = ?",  # noqa: S608
                                 (log_id,)).fetchone()
        if row is None:
            return None
        entry = {camel(k): v for k, v in zip(columns, row, strict=True)}
        if api_id is not None and entry["apiId"] != api_id:
            return None
        entry["truncated"] = bool(entry["truncated"])
        return entry

    def analytics(self, api_id: Optional[str], since: float, until: float) -> "Deferred[Dict[str, Any]]":
        return self._run(self._analytics, api_id, since, until)

    def _analytics(self, api_id: Optional[str], since: float, until: float) -> Dict[str, Any]:
        connection = self._connection
        assert connection is not None
        where, args = _where(LogQuery(api_id=api_id, since=since, until=until))
        rows = connection.execute(
            f"SELECT time, method, kind, target, outcome, http_status, latency_ms, client, "  # noqa: S608
            f"client_name, bytes_in, bytes_out, consumer FROM exchanges{where}", args).fetchall()
        width = bucket_seconds(max(until - since, 1.0))
        start = math.floor(since / width) * width
        buckets: Dict[int, Dict[str, int]] = {}
        totals = {"requests": 0, "notifications": 0, "errors": 0, "httpErrors": 0,
                  "jsonrpcErrors": 0, "toolErrors": 0, "bytesIn": 0, "bytesOut": 0}
        methods: Dict[str, Dict[str, Any]] = {}
        targets: Dict[Tuple[str, str], Dict[str, Any]] = {}
        clients: Dict[Tuple[str, str, str], int] = {}
        statuses: Dict[str, int] = {}
        latencies: List[float] = []
        for (time, method, kind, target, outcome, status, latency, client, name, b_in, b_out,
             consumer) in rows:
            notification = kind == "notification"
            # rates are over requests: a notification has no answer to fail
            is_error = not notification and outcome in ERROR_OUTCOMES
            totals["notifications" if notification else "requests"] += 1
            totals["errors"] += is_error
            totals["httpErrors"] += bool(status is not None and status >= 400)
            totals["jsonrpcErrors"] += outcome == "error"
            totals["toolErrors"] += outcome == "tool_error"
            totals["bytesIn"] += b_in or 0
            totals["bytesOut"] += b_out or 0
            if status is not None:
                statuses[str(status)] = statuses.get(str(status), 0) + 1
            m = methods.setdefault(method, {"method": method, "count": 0, "errors": 0,
                                            "latencies": []})
            m["count"] += 1
            m["errors"] += is_error
            if target is not None:
                t = targets.setdefault((method, target), {
                    "method": method, "name": target, "count": 0, "errors": 0, "latencies": []})
                t["count"] += 1
                t["errors"] += is_error
                if latency is not None:
                    t["latencies"].append(latency)
            if not notification:
                who = (consumer or "", name or "", client or "")
                clients[who] = clients.get(who, 0) + 1
                if latency is not None:
                    latencies.append(latency)
                    m["latencies"].append(latency)
            b = buckets.setdefault(int((time - start) // width),
                                   {"requests": 0, "notifications": 0, "errors": 0})
            b["notifications" if notification else "requests"] += 1
            b["errors"] += is_error
        latencies.sort()
        count = totals["requests"]
        by_target = []
        for t in sorted(targets.values(), key=lambda t: (-t["count"], t["name"])):
            t["errorRate"] = round(t["errors"] / t["count"], 4) if t["count"] else 0.0
            t["latencyMs"] = _percentiles(t.pop("latencies"))
            by_target.append(t)
        for m in methods.values():
            requests = m["count"] if not m["method"].startswith("notifications/") else 0
            m["errorRate"] = round(m["errors"] / requests, 4) if requests else 0.0
            m["latencyMs"] = _percentiles(m.pop("latencies"))
        series = []
        steps = math.ceil((until - start) / width)
        for i in range(steps):
            b = buckets.get(i, {"requests": 0, "notifications": 0, "errors": 0})
            series.append({"time": start + i * width, **b})
        top = sorted(clients.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        return {
            "apiId": api_id,
            "from": since,
            "to": until,
            "totals": dict(totals, errorRate=round(totals["errors"] / count, 4) if count else 0.0),
            "statuses": statuses,
            "latencyMs": _percentiles(latencies, presorted=True),
            "byMethod": sorted(methods.values(), key=lambda m: (-m["count"], m["method"])),
            "byTarget": by_target,
            "topClients": [{"client": " · ".join(p for p in key if p) or "unknown",
                            "application": key[0] or None, "clientName": key[1] or None,
                            "address": key[2] or None, "count": n} for key, n in top],
            "timeSeries": {"bucketSeconds": width, "points": series},
            "droppedRecords": self.dropped,
        }


def _done() -> Deferred[None]:
    d: Deferred[None] = Deferred()
    d.callback(None)
    return d
