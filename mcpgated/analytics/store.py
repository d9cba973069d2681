"""
The exchange log and usage analytics: L{ExchangeStore}, what every store
of it does (queue, batches, pruning, queries), and L{AnalyticsStore}, the
embedded one in its own SQLite file (L{mcpgated.analytics.pgstore} keeps
the same log in PostgreSQL for several nodes).

Records are queued in memory on the reactor thread and written in batches,
one transaction per batch, on the store's own thread. A slow or full disk
never blocks or fails proxying: past C{max_queue} waiting records, new ones
are dropped and counted (C{dropped}), visible in the admin API and metrics.
A batch that cannot be written (disk full, I/O error) is dropped and counted
too; the error is logged once per streak of failures, and the periodic
flush and pruning go on. Each row names the node that wrote it (C{[gateway]
node}), added on the writer's thread.
"""

from __future__ import annotations

import math
import sqlite3
from itertools import compress
from operator import attrgetter, is_not
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, ParamSpec, Sequence, Tuple, TypeVar

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
# what a page of the log shows (and an entry, with the payloads)
_SUMMARY = [c for c in ("id", *COLUMNS, "node") if c not in (
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
    names = [*compress(COLUMNS, given), "node"]
    return (f"INSERT INTO exchanges ({', '.join(names)}) "  # noqa: S608
            f"VALUES ({', '.join('?' for _ in names)})")


_STATEMENTS: Dict[Tuple[bool, ...], str] = {}


def _write_rows(connection: sqlite3.Connection, rows: List[Tuple[Any, ...]],
                node: Optional[str] = None) -> None:
    """
    Insert the rows (L{_row}) in order, each naming C{node}: runs of rows
    with the same columns set go in one C{executemany}.
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
        run.append((*compress(row, shape), node))
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
    node: Optional[str] = None
    text: Optional[str] = None
    cursor: Optional[int] = None
    limit: int = 50


def _where(query: LogQuery) -> Tuple[str, List[Any]]:
    clauses: List[str] = []
    args: List[Any] = []
    simple = [("api_id", query.api_id), ("method", query.method), ("target", query.target),
              ("http_status", query.status), ("session", query.session),
              ("node", query.node)]
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


def clean_rows(rows: Iterable[Tuple[Any, ...]]) -> List[Tuple[Any, ...]]:
    """
    The rows with values a database takes: in text, a lone surrogate (JSON
    text may escape one, and a client's method, tool name or client name
    reaches the log as given) kept as its escape, C{\\ud800}, and NUL
    (PostgreSQL text refuses it) as C{\\u0000}; a whole number past 64
    bits (a JSON-RPC error code) as L{None}.
    """
    return [tuple(map(_clean_value, row)) for row in rows]


_INT64 = range(-(2 ** 63), 2 ** 63)


def _clean_value(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\u0000")
    if isinstance(value, int) and value not in _INT64:
        return None
    return value


class ExchangeStore(Service):
    """
    What every exchange log store does: records queued on the reactor
    thread, written in batches on the store's own thread(s), pruned every
    minute, and read for the admin API. A concrete store (an attrs class
    declaring the fields below) says where rows go: L{_open_db},
    L{_insert}, L{_query}, L{_delete}, L{_close}, L{_run_write},
    L{_run_read}, L{where}.

    @ivar node: the name every row written here is given (C{[gateway] node}).
    @ivar retention: seconds a record is kept.
    @ivar max_rows: rows kept at most (oldest deleted first).
    """

    reactor: Any  # the reactor: IReactorTime and IReactorFromThreads
    node: Optional[str]
    retention: float
    max_rows: int
    max_queue: int
    batch_interval: float
    dropped: int
    written: int
    # rows, not records: tuples of plain values, which the garbage collector
    # stops tracking, instead of objects it would scan until the next flush
    _queue: List[Tuple[Any, ...]]
    _flushing: bool
    _idle: List[Deferred[None]]  # fired when the flush in flight ends
    _open: bool
    _loops: List[LoopingCall]
    _failing: int  # records dropped in the current streak of failed writes
    _streak: bool  # writes are failing (logged once)
    _prune_failing: bool
    # Fires once started: None when the database is open, or the failure to
    # open it, which the owner handles (the daemon stops: mcpgated.tap).
    opened: Deferred[None]

    # --- what a concrete store provides --------------------------------------------------

    @property
    def where(self) -> str:
        """
        Where the log is, for messages (no secrets).
        """
        raise NotImplementedError

    def _run_write(self, work: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> Deferred[_R]:
        raise NotImplementedError

    def _run_read(self, work: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> Deferred[_R]:
        raise NotImplementedError

    def _start_threads(self) -> None:
        raise NotImplementedError

    def _stop_threads(self) -> None:
        raise NotImplementedError

    def _open_db(self) -> int:
        """
        Open (and migrate) the database; the schema version. Blocking.
        """
        raise NotImplementedError

    def _insert(self, rows: List[Tuple[Any, ...]]) -> None:
        """
        Write the rows (L{_row}), each naming L{node}, in one transaction.
        Blocking.
        """
        raise NotImplementedError

    def _query(self, sql: str, args: Sequence[Any]) -> List[Tuple[Any, ...]]:
        """
        The rows of one SELECT (C{?} placeholders). Blocking.
        """
        raise NotImplementedError

    def _delete(self, sql: str, args: Sequence[Any]) -> int:
        """
        Run one DELETE (C{?} placeholders); the rows deleted. Blocking.
        """
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def _kept_on_failure(self, failure: Any) -> bool:
        """
        Whether a batch that failed this way is queued again (the database
        was unreachable) instead of dropped.
        """
        return False

    # --- lifecycle ----------------------------------------------------------------------

    def startService(self) -> None:
        Service.startService(self)
        self._start_threads()
        d = self._run_write(self._open_db)
        d.addCallbacks(self._opened, self._failed_open)

    def _opened(self, version: int) -> None:
        self._open = True
        log.info("analytics store {path} open (schema {version})", path=self.where,
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
        # the last flush after the one in flight, which may queue its rows again
        d = self._when_idle().addCallback(lambda _: self.flush(final=True)) if self._open \
            else _done()
        d.addBoth(lambda _: self._run_write(self._close))
        d.addBoth(lambda _: self._stop_threads())
        return d

    def _when_idle(self) -> Deferred[None]:
        if not self._flushing:
            return _done()
        waiter: Deferred[None] = Deferred()
        self._idle.append(waiter)
        return waiter

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
        d = self._run_write(self._write_batch, rows)

        def written(_: Any) -> None:
            self.written += len(rows)
            if self._streak:
                log.info("analytics store {path} written again ({count} records were dropped)",
                         path=self.where, count=self._failing)
                self._failing, self._streak = 0, False

        def failed(failure: Any) -> None:
            kept = not final and self._kept_on_failure(failure)
            if kept:
                # back in front of what came since, up to max_queue
                queue = rows + self._queue
                self._queue = queue[:self.max_queue]
                self.dropped += len(queue) - len(self._queue)
                self._failing += len(queue) - len(self._queue)
            else:
                self.dropped += len(rows)
                self._failing += len(rows)
            if final:
                log.error("analytics write to {path} failed ({error}): {count} exchange records "
                          "are lost as the daemon stops", path=self.where,
                          error=failure.getErrorMessage(), count=len(rows))
            elif not self._streak:
                self._streak = True
                log.error("analytics write to {path} failed ({error}): exchange records are "
                          "{what} until writing works again", path=self.where,
                          error=failure.getErrorMessage(),
                          what=("kept (up to max_queue, then dropped and counted)" if kept
                                else "dropped and counted"))

        def done(_: Any) -> None:
            self._flushing = False
            waiters, self._idle = self._idle, []
            for waiter in waiters:
                waiter.callback(None)

        d.addCallbacks(written, failed)
        d.addBoth(done)
        return d

    def _write_batch(self, rows: List[Tuple[Any, ...]]) -> None:
        """
        L{_insert}; rows a database refuses for their text (see
        L{clean_rows}) are written once more with it made safe, so one
        client's odd name never costs the batch it shares with others.
        """
        try:
            self._insert(rows)
        except Exception as e:
            if self._kept_on_failure(e):
                raise
            cleaned = clean_rows(rows)
            if cleaned == rows:
                raise
            self._insert(cleaned)

    def prune(self) -> Deferred[Optional[int]]:
        if not self._open:
            return succeed(None)
        return self._run_write(self._prune, self.reactor.seconds() - self.retention)

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
        deleted = self._delete("DELETE FROM exchanges WHERE time < ?", (cutoff,))
        top = self._query("SELECT MAX(id) FROM exchanges", ())[0][0]
        if top is not None:
            deleted += self._delete("DELETE FROM exchanges WHERE id <= ?", (top - self.max_rows,))
        return deleted

    # --- reading ------------------------------------------------------------------------
    # (S608) The statements are built from constant column lists and _where's
    # clauses, which hold only "?" placeholders: every value is bound.

    def logs(self, query: LogQuery) -> "Deferred[Dict[str, Any]]":
        return self._run_read(self._logs, query)

    def _logs(self, query: LogQuery) -> Dict[str, Any]:
        where, args = _where(query)
        rows = self._query(
            f"SELECT {', '.join(_SUMMARY)} FROM exchanges{where} ORDER BY id DESC LIMIT ?",  # noqa: S608
            [*args, query.limit + 1],
        )
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        items = [{camel(k): v for k, v in zip(_SUMMARY, row, strict=True)} for row in rows]
        for item in items:
            item["truncated"] = bool(item["truncated"])
        return {"data": items, "nextCursor": str(items[-1]["id"]) if more and items else None}

    def log_entry(self, api_id: Optional[str], log_id: int) -> "Deferred[Optional[Dict[str, Any]]]":
        return self._run_read(self._log_entry, api_id, log_id)

    def _log_entry(self, api_id: Optional[str], log_id: int) -> Optional[Dict[str, Any]]:
        columns = ("id", *COLUMNS, "node")
        found = self._query(f"SELECT {', '.join(columns)} FROM exchanges WHERE id = ?",  # noqa: S608
                            (log_id,))
        if not found:
            return None
        entry = {camel(k): v for k, v in zip(columns, found[0], strict=True)}
        if api_id is not None and entry["apiId"] != api_id:
            return None
        entry["truncated"] = bool(entry["truncated"])
        return entry

    def analytics(self, api_id: Optional[str], since: float, until: float,
                  node: Optional[str] = None) -> "Deferred[Dict[str, Any]]":
        """
        The dashboard's summary of the window, of every node's traffic or
        of C{node}'s.
        """
        return self._run_read(self._analytics, api_id, since, until, node)

    def _analytics(self, api_id: Optional[str], since: float, until: float,
                   node: Optional[str] = None) -> Dict[str, Any]:
        where, args = _where(LogQuery(api_id=api_id, since=since, until=until, node=node))
        rows = self._query(
            f"SELECT time, method, kind, target, outcome, http_status, latency_ms, client, "  # noqa: S608
            f"client_name, bytes_in, bytes_out, consumer FROM exchanges{where}", args)
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




@attrs.define(slots=False)
class AnalyticsStore(ExchangeStore):
    """
    The exchange log in its own SQLite file (the default): one thread
    reads and writes.
    """

    reactor: Any  # the reactor: IReactorTime and IReactorFromThreads
    path: Path
    retention: float = 7 * 86400.0
    max_rows: int = 1_000_000
    max_queue: int = 50_000
    batch_interval: float = 0.5
    node: Optional[str] = None
    dropped: int = 0
    written: int = 0
    _queue: List[Tuple[Any, ...]] = attrs.field(factory=list)
    _pool: ThreadPool = attrs.field(factory=lambda: ThreadPool(1, 1, "mcpgated-analytics"))
    _connection: Optional[sqlite3.Connection] = None
    _flushing: bool = False
    _idle: List[Deferred[None]] = attrs.field(factory=list)
    _open: bool = False
    _loops: List[LoopingCall] = attrs.field(factory=list)
    _failing: int = 0
    _streak: bool = False
    _prune_failing: bool = False
    opened: Deferred[None] = attrs.field(init=False, factory=Deferred)

    @property
    def where(self) -> str:
        return str(self.path)

    def _start_threads(self) -> None:
        self._pool.start()

    def _stop_threads(self) -> None:
        self._pool.stop()

    def _run(self, work: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> Deferred[_R]:
        return deferToThreadPool(self.reactor, self._pool, work, *args, **kwargs)

    def _run_write(self, work: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> Deferred[_R]:
        return self._run(work, *args, **kwargs)

    def _run_read(self, work: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> Deferred[_R]:
        return self._run(work, *args, **kwargs)

    def _open_db(self) -> int:
        # NORMAL: analytics may lose the last batch on power loss, never corrupt.
        self._connection, version = open_database(self.path, "mcpgated.analytics", "NORMAL")
        return version

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _insert(self, rows: List[Tuple[Any, ...]]) -> None:
        connection = self._connection
        assert connection is not None
        connection.execute("BEGIN")
        try:
            _write_rows(connection, rows, self.node)
            connection.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (a full disk); a COMMIT that
            # failed leaves the transaction open, and the next BEGIN would fail.
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def _query(self, sql: str, args: Sequence[Any]) -> List[Tuple[Any, ...]]:
        connection = self._connection
        assert connection is not None
        return connection.execute(sql, args).fetchall()

    def _delete(self, sql: str, args: Sequence[Any]) -> int:
        connection = self._connection
        assert connection is not None
        return connection.execute(sql, args).rowcount


def _done() -> Deferred[None]:
    d: Deferred[None] = Deferred()
    d.callback(None)
    return d
