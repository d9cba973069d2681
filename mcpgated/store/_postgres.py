"""
The shared store: PostgreSQL through psycopg 3, on a small pool of threads
(one connection each) so the reactor never waits on the network.

The SQL is the SQLite store's (the mixins L{ApiSQL}, L{SubscriptionStore}
and L{PinStore}), run through L{_Connection}, an adapter that turns C{?}
placeholders into psycopg's and gives inserts a C{lastrowid}. The schema is
the same, as numbered scripts in C{pg_migrations/}.

Writes are serialized across every node sharing the database by a
transaction-scoped advisory lock (what C{BEGIN IMMEDIATE} is for SQLite:
the path-overlap rules span several APIs), and each write that changed a
row sends C{pg_notify('mcpgated_changes', <Change JSON>)} inside its own
transaction: PostgreSQL delivers it on commit, never for a rolled-back
write (L{mcpgated.cluster.pgfeed.PostgresFeed} listens).

PostgreSQL unreachable: each call fails with L{Unavailable} (the admin
API answers 503) and the next one connects again; the gateway keeps
serving what it loaded.
"""

from __future__ import annotations

import functools
import secrets
import threading
from importlib import resources
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

import attrs
import psycopg
import psycopg.errors
from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from mcpgated.cluster.changes import API, KEYS, PINS, Change
from mcpgated.cluster.pgfeed import CHANNEL, notice, redacted
from mcpgated.model import ApiDefinition, ApiRecord
from mcpgated.store._interface import Closed, IApiStore, Unavailable
from mcpgated.store._pins import PinStore
from mcpgated.store._sqlite import ApiSQL
from mcpgated.store._subscriptions import SubscriptionStore

T = TypeVar("T")
log = Logger()

# pg_advisory_xact_lock keys: every write, and the schema migrations
_WRITE_LOCK = 0x6D637067  # "mcpg"
_MIGRATION_LOCK = 0x6D637068
POOL_SIZE = 4  # threads, hence connections, per process
CONNECT_TIMEOUT = 5  # seconds; a refused connection fails at once


def migrations() -> List[Tuple[int, str]]:
    """
    (number, script) of C{pg_migrations/*.sql}, in order.
    """
    folder = resources.files("mcpgated.store") / "pg_migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text("utf-8")))
    return sorted(found)


_READ, _INSERT, _WRITE = 0, 1, 2


@functools.lru_cache(maxsize=512)
def _translate(sql: str) -> Tuple[str, int]:
    """
    The SQLite mixins' statement for psycopg: C{?} -> C{%s} (none of the
    shared SQL has a C{?} or C{%} in a literal), and an INSERT returns its
    row's id (every table has one) for C{lastrowid}; with what it does
    (L{_READ}, L{_INSERT} or another L{_WRITE}).
    """
    text = sql.replace("%", "%%").replace("?", "%s")
    verb = text.lstrip().split(None, 1)[0].upper()
    if verb == "INSERT":
        if "RETURNING" not in text.upper():
            text += " RETURNING id"
        return text, _INSERT
    return text, _READ if verb in ("SELECT", "WITH") else _WRITE


class _Cursor:
    """
    What the mixins use of a C{sqlite3.Cursor}.
    """

    __slots__ = ("_cursor", "lastrowid")

    def __init__(self, cursor: "psycopg.Cursor[Any]", lastrowid: Any) -> None:
        self._cursor = cursor
        self.lastrowid = lastrowid

    def fetchone(self) -> Optional[Tuple[Any, ...]]:
        return self._cursor.fetchone()

    def fetchall(self) -> List[Tuple[Any, ...]]:
        return self._cursor.fetchall()

    def __iter__(self) -> Any:
        return iter(self._cursor)


class _Connection:
    """
    What the mixins use of a C{sqlite3.Connection}, over a psycopg one.

    @ivar wrote: whether a statement of this transaction changed a row.
    """

    __slots__ = ("_raw", "wrote")

    def __init__(self, raw: "psycopg.Connection[Any]") -> None:
        self._raw = raw
        self.wrote = False

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        text, verb = _translate(sql)
        cursor = self._raw.execute(text, tuple(params))
        lastrowid = None
        if verb != _READ and cursor.rowcount > 0:
            self.wrote = True
            if verb == _INSERT:
                row = cursor.fetchone()
                lastrowid = row[0] if row else None
        return _Cursor(cursor, lastrowid)


def _unavailable(error: psycopg.Error) -> Unavailable:
    full = isinstance(error, (psycopg.errors.DiskFull, psycopg.errors.OutOfMemory))
    return Unavailable(str(error).strip() or type(error).__name__, full)


# What makes a store call fail as Unavailable (the database, not the call):
# the connection, the server's resources, an operator's intervention.
_DATABASE_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError,
                    psycopg.errors.InsufficientResources)

class _Stale(Exception):
    """
    A connection failed before its transaction began: nothing was done.
    """

    def __init__(self, error: psycopg.Error) -> None:
        super().__init__(str(error))
        self.error = error


# How each write names what it changed (from its result), for NOTIFY.
Announce = Callable[[Any], Change]


@implementer(IApiStore)
@attrs.define(slots=False)
class PostgresApiStore(ApiSQL, SubscriptionStore, PinStore):
    """
    L{IApiStore} on a PostgreSQL database (the tables are created by the
    migrations on start).

    @ivar reactor: used to deliver results from the store threads.
    @ivar url: the libpq URL (C{postgresql://user:password@host:port/db}).
    @ivar origin: this process's name in the notifications it sends (its
        own feed ignores them).
    """

    reactor: IReactorFromThreads
    url: str = attrs.field(repr=redacted)
    origin: str = attrs.field(factory=lambda: secrets.token_hex(8))
    pool_size: int = POOL_SIZE
    _pool: ThreadPool = attrs.field(init=False)
    _idle: List["psycopg.Connection[Any]"] = attrs.field(init=False, factory=list)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    _closing: bool = attrs.field(init=False, default=False)
    _pending: Dict[int, "Deferred[Any]"] = attrs.field(init=False, factory=dict)
    _announce: Optional[Announce] = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        self._pool = ThreadPool(1, self.pool_size, "mcpgated-pgstore")

    @property
    def path(self) -> str:
        """
        Where the store is, for log lines: the URL without its password.
        """
        return redacted(self.url)

    # --- lifecycle -----------------------------------------------------------

    def start(self) -> "Deferred[int]":
        self._pool.start()
        return self._run(self._open)

    def stop(self) -> "Deferred[None]":
        # Calls in flight finish (their Deferreds fire); later ones are refused.
        self._closing = True
        pending = list(self._pending.values())
        waited: "Deferred[Any]" = DeferredList(pending, consumeErrors=True)
        d = waited.addCallback(lambda _: self._run(self._close_all))
        return d.addBoth(self._stopPool)

    def _stopPool(self, result: T) -> T:
        self._pool.stop()
        return result

    def _connect(self) -> "psycopg.Connection[Any]":
        return psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT, keepalives=1,
                               keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
                               application_name="mcpgated", autocommit=True,
                               # acknowledged means durable, whatever the server's default
                               options="-c synchronous_commit=on")

    def _open(self) -> int:
        connection = self._connect()
        try:
            with connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                connection.execute("CREATE TABLE IF NOT EXISTS mcpgated_schema"
                                   " (version INTEGER NOT NULL)")
                row = connection.execute("SELECT max(version) FROM mcpgated_schema").fetchone()
                version = int(row[0]) if row and row[0] is not None else 0
                for number, script in migrations():
                    if number <= version:
                        continue
                    connection.execute(script.encode("utf-8"))
                    connection.execute("INSERT INTO mcpgated_schema (version) VALUES (%s)",
                                       (number,))
                    version = number
        except BaseException:
            connection.close()
            raise
        with self._lock:
            self._idle.append(connection)
        return version

    def _close_all(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    # --- plumbing --------------------------------------------------------------

    def _run(self, work: Callable[..., T], *args: Any) -> "Deferred[T]":
        return deferToThreadPool(self.reactor, self._pool, work, *args)

    def _acquire(self) -> "Tuple[psycopg.Connection[Any], bool]":
        """
        An idle connection (and True), else a new one (and False).
        """
        with self._lock:
            while self._idle:
                connection = self._idle.pop()
                if not connection.closed:
                    return connection, True
        return self._connect(), False

    def _release(self, connection: "psycopg.Connection[Any]") -> None:
        if connection.closed or connection.info.transaction_status != \
                psycopg.pq.TransactionStatus.IDLE:
            connection.close()
            return
        with self._lock:
            self._idle.append(connection)

    def _attempt(self, raw: "psycopg.Connection[Any]", announce: Optional[Announce],
                 work: Callable[..., T], args: Tuple[Any, ...]) -> T:
        """
        One transaction on C{raw}: a read in one snapshot; a write under
        the write lock, with its notice if it changed a row. C{raw} goes
        back to the idle ones (or is closed, if it failed).

        @raise _Stale: the connection failed before the transaction began.
        """
        try:
            # a read: one consistent snapshot; a write: the latest rows, locked
            raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ" if announce is None else "BEGIN")
        except _DATABASE_ERRORS as e:
            raw.close()
            raise _Stale(e) from e
        try:
            if announce is not None:
                raw.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
            connection = _Connection(raw)
            result = work(connection, *args)
            if announce is not None and connection.wrote:
                raw.execute("SELECT pg_notify(%s, %s)",
                            (CHANNEL, notice(announce(result), self.origin)))
            raw.execute("COMMIT")
        except BaseException:
            if not raw.closed and raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                try:
                    raw.execute("ROLLBACK")
                except _DATABASE_ERRORS:
                    raw.close()
            raise
        finally:
            self._release(raw)
        return result

    def _writing(self, announce: Announce, call: Callable[..., "Deferred[T]"],
                 *args: Any) -> "Deferred[T]":
        """
        Run a mixin's write method; its transaction takes the write lock
        and, if it changed a row, notifies C{announce(result)}.
        """
        self._announce = announce
        try:
            return call(*args)
        finally:
            self._announce = None

    def _transaction(self, work: Callable[..., T], *args: Any) -> "Deferred[T]":
        # Called on the reactor thread by the mixins' public methods.
        if self._closing:
            return fail(Closed())
        announce, self._announce = self._announce, None

        def inThread() -> T:
            try:
                raw, reused = self._acquire()
                try:
                    return self._attempt(raw, announce, work, args)
                except _Stale:
                    if not reused:
                        raise
                # an idle connection the server (or the network) had cut:
                # nothing was sent; once more on a new connection
                return self._attempt(self._connect(), announce, work, args)
            except _Stale as e:
                raise _unavailable(e.error) from e.error
            except _DATABASE_ERRORS as e:
                raise _unavailable(e) from e

        d = self._run(inThread)
        key = id(d)
        self._pending[key] = d

        def done(result: T) -> T:
            self._pending.pop(key, None)
            return result

        return d.addBoth(done)

    # --- the writes: what each tells the other nodes ---------------------------------

    def create_api(self, definition: ApiDefinition, now: float) -> "Deferred[ApiRecord]":
        return self._writing(_api_record, super().create_api, definition, now)

    def update_api(self, api_id: str, definition: ApiDefinition,
                   now: float) -> "Deferred[ApiRecord]":
        return self._writing(_api_record, super().update_api, api_id, definition, now)

    def delete_api(self, api_id: str) -> "Deferred[None]":
        return self._writing(lambda _: Change(API, api_id), super().delete_api, api_id)

    def deploy_api(self, api_id: str, now: float) -> "Deferred[ApiRecord]":
        return self._writing(_api_record, super().deploy_api, api_id, now)

    def set_state(self, api_id: str, state: str, now: float) -> "Deferred[ApiRecord]":
        return self._writing(_api_record, super().set_state, api_id, state, now)

    def create_application(self, name: str, description: str, now: float) -> "Deferred[Any]":
        return self._writing(_keys, super().create_application, name, description, now)

    def delete_application(self, application_id: str) -> "Deferred[List[str]]":
        return self._writing(_keys, super().delete_application, application_id)

    def create_subscription(self, api_id: str, application_id: str, plan: str,
                            now: float) -> "Deferred[Any]":
        return self._writing(_keys, super().create_subscription, api_id, application_id, plan,
                             now)

    def close_subscription(self, api_id: str, subscription_id: str,
                           now: float) -> "Deferred[Any]":
        return self._writing(_keys, super().close_subscription, api_id, subscription_id, now)

    def issue_key(self, api_id: str, subscription_id: str, key_hash: str, prefix: str,
                  now: float, replace_after: Optional[float] = None) -> "Deferred[Any]":
        return self._writing(_keys, super().issue_key, api_id, subscription_id, key_hash,
                             prefix, now, replace_after)

    def revoke_key(self, api_id: str, subscription_id: str, key_id: str,
                   now: float) -> "Deferred[Any]":
        return self._writing(_keys, super().revoke_key, api_id, subscription_id, key_id, now)

    def observe_pins(self, api_id: str, kind: str, items: Sequence[Any], settings: Any,
                     complete: bool, initial: bool, session: Optional[str],
                     now: float) -> "Deferred[Any]":
        return self._writing(lambda _: Change(PINS, api_id), super().observe_pins, api_id, kind,
                             items, settings, complete, initial, session, now)

    def decide_pin(self, api_id: str, pin_id: str, approve: bool, fingerprint: Optional[str],
                   now: float) -> "Deferred[Any]":
        return self._writing(lambda _: Change(PINS, api_id), super().decide_pin, api_id, pin_id,
                             approve, fingerprint, now)


def _api_record(record: ApiRecord) -> Change:
    return Change(API, record.id)


def _keys(result: object) -> Change:
    return Change(KEYS)
