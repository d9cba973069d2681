"""
The exchange log in PostgreSQL (C{[analytics] url = postgresql://...}):
every node writes its records to one table, so the admin API and console of
any node show the traffic of all of them, each record naming its node.

The queue, batches, pruning and queries are L{ExchangeStore}'s, as for the
SQLite file; here a batch is one C{COPY} in one transaction on the writer's
own thread and connection, and reads run on up to two reader threads with
their own connections, so a long dashboard query never holds up writing
(psycopg 3, blocking calls, never on the reactor thread). The batches of
all nodes commit one at a time (an advisory lock held to the commit), so
record ids are in commit order: polling for records after the last id seen
misses none that another node commits later. A batch that
fails because the database cannot be reached is queued again (up to
C{max_queue}, then records are dropped and counted); a connection the
server closed while idle is replaced and the batch written at once. Reads
while the database is unreachable are L{Unavailable} (the admin API's 503).
Migrations are C{pg_migrations/NNN_*.sql}, applied in order under an
advisory lock (nodes starting together), their number kept in
C{mcpgated_analytics_schema}.
"""

from __future__ import annotations

import threading
from importlib import resources
from typing import Any, Callable, List, Optional, ParamSpec, Sequence, Tuple, TypeVar

import attrs
import psycopg
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from mcpgated.analytics.store import COLUMNS, ExchangeStore
from mcpgated.store import Unavailable
from mcpgated.config import redacted_url

_P = ParamSpec("_P")
_R = TypeVar("_R")

# (S608) constant column names only
_COPY = f"COPY exchanges ({', '.join((*COLUMNS, 'node'))}) FROM STDIN"
# one key for every mcpgated node migrating this database's exchange log
_MIGRATION_LOCK = 0x6D637067_616E6C79 & 0x7FFFFFFFFFFFFFFF
# ... and one taken by each batch: batches of all nodes commit one at a time,
# so ids are in commit order and "records after id N" (the console's and
# mcpgatedctl logs --follow's polling) misses none committed later
_WRITE_LOCK = _MIGRATION_LOCK - 1
_LOST = (psycopg.OperationalError, psycopg.InterfaceError)


def migrations() -> List[Tuple[int, str]]:
    folder = resources.files("mcpgated.analytics") / "pg_migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text("utf-8")))
    return sorted(found)


redacted = redacted_url  # URLs in messages: mcpgated.config.redacted_url


@attrs.define(slots=False)
class PostgresAnalyticsStore(ExchangeStore):
    """
    @ivar url: a libpq connection URL (C{postgresql://user:password@host/db}).
    @ivar connect_timeout: seconds to wait for a connection.
    """

    reactor: Any  # the reactor: IReactorTime and IReactorFromThreads
    url: str = attrs.field(repr=False)
    retention: float = 7 * 86400.0
    max_rows: int = 1_000_000
    max_queue: int = 50_000
    batch_interval: float = 0.5
    node: Optional[str] = None
    connect_timeout: float = 5.0
    dropped: int = 0
    written: int = 0
    _queue: List[Tuple[Any, ...]] = attrs.field(factory=list)
    _writer: ThreadPool = attrs.field(factory=lambda: ThreadPool(1, 1, "mcpgated-analytics-pg"))
    _readers: ThreadPool = attrs.field(
        factory=lambda: ThreadPool(1, 2, "mcpgated-analytics-pg-read"))
    # each thread's connection, and every connection opened (closed on stop)
    _local: threading.local = attrs.field(factory=threading.local)
    _connections: List[psycopg.Connection[Tuple[Any, ...]]] = attrs.field(factory=list)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)
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
        return redacted(self.url)

    # --- threads and connections -----------------------------------------------------------

    def _start_threads(self) -> None:
        self._writer.start()
        self._readers.start()

    def _stop_threads(self) -> None:
        self._readers.stop()
        self._writer.stop()

    def _run_write(self, work: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> Deferred[_R]:
        return deferToThreadPool(self.reactor, self._writer, work, *args, **kwargs)

    def _run_read(self, work: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> Deferred[_R]:
        def read() -> _R:
            try:
                return work(*args, **kwargs)
            except _LOST as e:
                raise Unavailable(f"the analytics database cannot be reached: {e}", False) from e

        return deferToThreadPool(self.reactor, self._readers, read)

    def _connection(self) -> Tuple[psycopg.Connection[Tuple[Any, ...]], bool]:
        """
        This thread's connection, and whether it was opened just now.
        """
        connection: Optional[psycopg.Connection[Tuple[Any, ...]]] = getattr(
            self._local, "connection", None)
        if connection is not None and not connection.closed:
            return connection, False
        connection = psycopg.connect(self.url, autocommit=True,
                                     connect_timeout=max(1, round(self.connect_timeout)),
                                     application_name="mcpgated-analytics")
        self._local.connection = connection
        with self._lock:
            self._connections = [c for c in self._connections if not c.closed]
            self._connections.append(connection)
        return connection, True

    def _forget(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()

    def _using(self, work: Callable[[psycopg.Connection[Tuple[Any, ...]]], _R]) -> _R:
        """
        C{work} with this thread's connection; on a connection found lost
        when first used since an earlier call (the server restarted, or
        closed it while idle), once more on a new one.
        """
        connection, fresh = self._connection()
        try:
            return work(connection)
        except _LOST:
            self._forget()
            if fresh:
                raise
        connection, _ = self._connection()
        try:
            return work(connection)
        except _LOST:
            self._forget()
            raise

    def _close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()

    def _kept_on_failure(self, failure: Any) -> bool:
        error = failure.value if isinstance(failure, Failure) else failure
        return isinstance(error, _LOST)

    # --- the database ----------------------------------------------------------------------

    def _open_db(self) -> int:
        return self._using(_migrate)

    def _insert(self, rows: List[Tuple[Any, ...]]) -> None:
        node = self.node

        def copy(connection: psycopg.Connection[Tuple[Any, ...]]) -> None:
            with connection.transaction(), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
                with cursor.copy(_COPY) as copying:
                    for row in rows:
                        copying.write_row((*row, node))

        self._using(copy)

    def _query(self, sql: str, args: Sequence[Any]) -> List[Tuple[Any, ...]]:
        statement = sql.replace("?", "%s")
        return self._using(lambda c: c.execute(statement, args).fetchall())

    def _delete(self, sql: str, args: Sequence[Any]) -> int:
        statement = sql.replace("?", "%s")
        return self._using(lambda c: c.execute(statement, args).rowcount)


def _migrate(connection: psycopg.Connection[Tuple[Any, ...]]) -> int:
    """
    Apply the migrations this database lacks; its schema version.
    """
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        connection.execute("CREATE TABLE IF NOT EXISTS mcpgated_analytics_schema "
                           "(version integer NOT NULL)")
        row = connection.execute("SELECT max(version) FROM mcpgated_analytics_schema").fetchone()
        version = int(row[0]) if row is not None and row[0] is not None else 0
        for number, script in migrations():
            if number > version:
                connection.execute(script.encode("utf-8"))
                version = number
        connection.execute("DELETE FROM mcpgated_analytics_schema")
        connection.execute("INSERT INTO mcpgated_analytics_schema (version) VALUES (%s)", (version,))
    return version
