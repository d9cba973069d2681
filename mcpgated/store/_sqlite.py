"""
The embedded store: one SQLite file in WAL mode, used from one dedicated
thread so the reactor never waits on disk.

Every write is one C{BEGIN IMMEDIATE ... COMMIT} with C{synchronous=FULL}:
when its Deferred fires the change is on disk, so a C{kill -9} right after an
acknowledged admin call loses nothing.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple, TypeVar

import attrs
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from mcpgated.definitions import InvalidField, definition_from_json
from mcpgated.model import STARTED, STOPPED, ApiDefinition, ApiRecord, paths_overlap
from mcpgated.sqlitedb import open_database
from mcpgated.store._interface import Closed, Conflict, IApiStore, NotFound, Unavailable
from mcpgated.store._pins import PinStore
from mcpgated.store._subscriptions import SubscriptionStore

if TYPE_CHECKING:
    from mcpgated.keys import KeyGrant
    from mcpgated.policy.pinning import PinState

T = TypeVar("T")
log = Logger()
# sqlite3.SQLITE_FULL, named by the module from Python 3.11 only
_SQLITE_FULL = 13


def _dump(definition: Optional[ApiDefinition]) -> Optional[str]:
    if definition is None:
        return None
    return json.dumps(definition.to_json(), sort_keys=True, separators=(",", ":"))


def _load(text: Optional[str]) -> Optional[ApiDefinition]:
    return None if text is None else definition_from_json(json.loads(text))


def _unavailable(error: sqlite3.OperationalError) -> Unavailable:
    """
    What the database refused with, as the store's own error: a full disk
    (or database size limit) apart from other failures.
    """
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
    full = code == _SQLITE_FULL if code is not None else "is full" in str(error)
    return Unavailable(str(error), full)


_COLUMNS = "id, definition, deployed, state, created_at, updated_at, deployed_at"


def _record(row: Tuple[Any, ...]) -> ApiRecord:
    definition = _load(row[1])
    assert definition is not None
    return ApiRecord(
        id=row[0],
        definition=definition,
        deployed=_load(row[2]),
        state=row[3],
        created_at=row[4],
        updated_at=row[5],
        deployed_at=row[6],
    )


class ApiSQL:
    """
    Mixin: the API definitions' SQL, shared by the SQLite and PostgreSQL
    stores (the PostgreSQL store runs it through a connection adapter).
    Needs C{_transaction(work, *args)} from the store it is mixed into.
    """

    _transaction: Callable[..., "Deferred[Any]"]

    @staticmethod
    def _fetch(connection: sqlite3.Connection, api_id: str) -> ApiRecord:
        row = connection.execute(
            f"SELECT {_COLUMNS} FROM apis WHERE id = ?", (api_id,)  # noqa: S608 -- constant columns
        ).fetchone()
        if row is None:
            raise NotFound(api_id)
        return _record(row)

    @staticmethod
    def _overlapping(
        connection: sqlite3.Connection, context_path: str, exclude: Optional[str],
        started_only: bool,
    ) -> Optional[ApiRecord]:
        rows = connection.execute(
            f"SELECT {_COLUMNS} FROM apis WHERE deployed IS NOT NULL"  # noqa: S608 -- constant columns
        ).fetchall()
        for row in rows:
            other = _record(row)
            if other.id == exclude or other.deployed is None:
                continue
            if started_only and other.state != STARTED:
                continue
            if paths_overlap(other.deployed.context_path, context_path):
                return other
        return None

    # --- IApiStore ------------------------------------------------------------

    def list_apis(self) -> "Deferred[List[ApiRecord]]":
        def work(connection: sqlite3.Connection) -> List[ApiRecord]:
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM apis ORDER BY created_at, id"  # noqa: S608 -- constant columns
            ).fetchall()
            return [_record(row) for row in rows]

        return self._transaction(work)

    def get_api(self, api_id: str) -> "Deferred[ApiRecord]":
        return self._transaction(self._fetch, api_id)

    def _check_path(self, connection: sqlite3.Connection, definition: ApiDefinition,
                    exclude: Optional[str]) -> None:
        other = self._overlapping(connection, definition.context_path, exclude, False)
        if other is not None and other.deployed is not None:
            raise InvalidField(
                "contextPath",
                f"contextPath {definition.context_path} overlaps "
                f"{other.deployed.context_path} of deployed API {other.id}",
            )

    def create_api(self, definition: ApiDefinition, now: float) -> "Deferred[ApiRecord]":
        def work(connection: sqlite3.Connection) -> ApiRecord:
            self._check_path(connection, definition, None)
            api_id = str(uuid.uuid4())
            connection.execute(
                "INSERT INTO apis (id, definition, deployed, state, created_at, updated_at,"
                " deployed_at) VALUES (?, ?, NULL, ?, ?, ?, NULL)",
                (api_id, _dump(definition), STOPPED, now, now),
            )
            return self._fetch(connection, api_id)

        return self._transaction(work)

    def update_api(self, api_id: str, definition: ApiDefinition, now: float) -> "Deferred[ApiRecord]":
        def work(connection: sqlite3.Connection) -> ApiRecord:
            self._fetch(connection, api_id)
            self._check_path(connection, definition, api_id)
            connection.execute(
                "UPDATE apis SET definition = ?, updated_at = ? WHERE id = ?",
                (_dump(definition), now, api_id),
            )
            return self._fetch(connection, api_id)

        return self._transaction(work)

    def delete_api(self, api_id: str) -> "Deferred[None]":
        def work(connection: sqlite3.Connection) -> None:
            record = self._fetch(connection, api_id)
            if record.state == STARTED:
                raise Conflict("the API is STARTED: stop it (POST /apis/{id}/_stop) before deleting", "state")
            open_subscriptions = connection.execute(
                "SELECT COUNT(*) FROM subscriptions WHERE api_id = ? AND status = 'ACCEPTED'",
                (api_id,)).fetchone()[0]
            if open_subscriptions:
                raise Conflict(f"the API has {open_subscriptions} ACCEPTED subscription(s): close "
                               "them (POST /apis/{id}/subscriptions/{sid}/_close) before deleting",
                               "subscriptions")
            # Its CLOSED subscriptions and their keys go too (ON DELETE CASCADE).
            connection.execute("DELETE FROM apis WHERE id = ?", (api_id,))

        return self._transaction(work)

    def deploy_api(self, api_id: str, now: float) -> "Deferred[ApiRecord]":
        def work(connection: sqlite3.Connection) -> ApiRecord:
            record = self._fetch(connection, api_id)
            path = record.definition.context_path
            other = self._overlapping(connection, path, api_id, False)
            if other is not None and other.deployed is not None:
                raise Conflict(
                    f"contextPath {path} overlaps {other.deployed.context_path} "
                    f"of deployed API {other.id}",
                    "contextPath",
                )
            connection.execute(
                "UPDATE apis SET deployed = definition, state = ?, deployed_at = ?,"
                " updated_at = ? WHERE id = ?",
                (STARTED, now, now, api_id),
            )
            return self._fetch(connection, api_id)

        return self._transaction(work)

    def set_state(self, api_id: str, state: str, now: float) -> "Deferred[ApiRecord]":
        if state not in (STARTED, STOPPED):
            raise ValueError(state)

        def work(connection: sqlite3.Connection) -> ApiRecord:
            record = self._fetch(connection, api_id)
            if record.deployed is None:
                raise Conflict("the API was never deployed: POST /apis/{id}/_deploy first", "state")
            if state == STARTED:
                other = self._overlapping(connection, record.deployed.context_path, api_id, True)
                if other is not None and other.deployed is not None:
                    raise Conflict(
                        f"contextPath {record.deployed.context_path} overlaps "
                        f"{other.deployed.context_path} of started API {other.id}",
                        "contextPath",
                    )
            connection.execute(
                "UPDATE apis SET state = ?, updated_at = ? WHERE id = ?", (state, now, api_id)
            )
            return self._fetch(connection, api_id)

        return self._transaction(work)


@implementer(IApiStore)
@attrs.define
class SQLiteApiStore(ApiSQL, SubscriptionStore, PinStore):
    """
    L{IApiStore} on a SQLite file.

    @ivar reactor: used to deliver results from the store thread.
    @ivar path: the database file; its folder is created if missing.
    """

    reactor: IReactorFromThreads
    path: Path
    _pool: ThreadPool = attrs.field(init=False, factory=lambda: ThreadPool(1, 1, "mcpgated-store"))
    _connection: Optional[sqlite3.Connection] = attrs.field(init=False, default=None)
    _closing: bool = attrs.field(init=False, default=False)
    # how the next transaction begins: a read takes no lock (WAL: a snapshot),
    # so another process's write (a worker's pins, the parent's admin call)
    # never holds up the reloads of the others
    _begin: str = attrs.field(init=False, default="BEGIN IMMEDIATE")

    # --- lifecycle -----------------------------------------------------------

    def start(self) -> "Deferred[int]":
        self._pool.start()
        return self._run(self._open)

    def stop(self) -> "Deferred[None]":
        # Work already queued runs first (one thread, in order); later
        # calls are refused instead of failing against a closed file.
        self._closing = True
        return self._run(self._close).addBoth(self._stopPool)

    def _stopPool(self, result: T) -> T:
        self._pool.stop()
        return result

    def _open(self) -> int:
        self._connection, version = open_database(self.path, "mcpgated.store")
        return version

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # --- plumbing --------------------------------------------------------------

    def _run(self, work: Callable[..., T], *args: Any) -> "Deferred[T]":
        return deferToThreadPool(self.reactor, self._pool, work, *args)

    def _reading(self, call: Callable[..., "Deferred[T]"], *args: Any) -> "Deferred[T]":
        """
        Run a mixin's read-only method in a transaction that takes no lock.
        """
        self._begin = "BEGIN"
        try:
            return call(*args)
        finally:
            self._begin = "BEGIN IMMEDIATE"

    def _transaction(self, work: Callable[..., T], *args: Any) -> "Deferred[T]":
        if self._closing:
            return fail(Closed())
        begin, self._begin = self._begin, "BEGIN IMMEDIATE"

        def inThread() -> T:
            connection = self._connection
            if connection is None:
                raise RuntimeError("store is not open")
            try:
                connection.execute(begin)
                try:
                    result = work(connection, *args)
                    connection.execute("COMMIT")
                except BaseException:
                    # SQLite may have rolled back already (a full disk); a
                    # COMMIT that failed leaves the transaction open.
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as e:
                raise _unavailable(e) from e
            return result

        return self._run(inThread)

    # --- reads: no lock (see _begin) ------------------------------------------------

    def list_apis(self) -> "Deferred[List[ApiRecord]]":
        return self._reading(super().list_apis)

    def get_api(self, api_id: str) -> "Deferred[ApiRecord]":
        return self._reading(super().get_api, api_id)

    def usable_keys(self, now: float) -> "Deferred[List[Tuple[str, KeyGrant]]]":
        return self._reading(super().usable_keys, now)

    def pin_states(self, api_id: Optional[str] = None,
                   ) -> "Deferred[List[Tuple[str, str, str, PinState]]]":
        return self._reading(super().pin_states, api_id)

