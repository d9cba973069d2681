"""
The exchange log in PostgreSQL (mcpgated.analytics.pgstore) against a real
server (the C{postgres} fixture), held to the SQLite store's answers: the
same records give the same /logs pages and /analytics summaries. Each
record names its node, in both stores. The store's blocking halves are
called directly here (they run on its threads in the daemon);
test_analytics_postgres_daemon.py runs real daemons on it.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import psycopg
import pytest
from twisted.internet.task import Clock

from mcpgated import config
from mcpgated.analytics.pgstore import PostgresAnalyticsStore, migrations, redacted
from mcpgated.analytics.records import CallRecord
from mcpgated.analytics.store import AnalyticsStore, ExchangeStore, LogQuery, _row
from tests.engines import PostgresServer, free_port


@pytest.fixture(scope="module")
def pg_database(postgres: PostgresServer) -> str:
    return postgres.new_database()


def _fresh_pg(postgres: PostgresServer, node: str = "n1") -> PostgresAnalyticsStore:
    store = PostgresAnalyticsStore(Clock(), postgres.new_database(), node=node)
    store._open_db()
    return store


def _fresh_sqlite(folder: Path, node: str = "n1") -> AnalyticsStore:
    store = AnalyticsStore(Clock(), folder / "analytics.db", node=node)
    store._open_db()
    return store


@pytest.fixture(params=["sqlite", "postgres"])
def make_store(request: Any, tmp_path: Path) -> Iterator[Any]:
    """
    A factory of open stores of one kind on one database: make(node).
    """
    opened: List[ExchangeStore] = []
    url = request.getfixturevalue("postgres").new_database() if request.param == "postgres" else None

    def make(node: str) -> ExchangeStore:
        store: ExchangeStore
        if url is not None:
            store = PostgresAnalyticsStore(Clock(), url, node=node)
        else:
            store = AnalyticsStore(Clock(), tmp_path / "analytics.db", node=node)
        store._open_db()
        opened.append(store)
        return store

    yield make
    for store in opened:
        store._close()


def _records(count: int, start: float = 1000.0) -> List[CallRecord]:
    """
    A mix of what the tracker writes: results, JSON-RPC and tool errors,
    notifications, denials, captured payloads, text with LIKE's wildcards.
    """
    records = []
    for n in range(count):
        kind = "notification" if n % 11 == 0 else "request"
        method = "notifications/initialized" if kind == "notification" else (
            "tools/call" if n % 3 else "resources/read")
        record = CallRecord(time=start + n * 7.5, api_id="api-a" if n % 4 else "api-b",
                            api_name="A", plan="Keyless" if n % 5 else None,
                            client=f"10.0.0.{n % 3}", method=method, kind=kind)
        if kind == "request":
            record.target = ("echo", "get_sum", "100%_off", "file:///x")[n % 4]
            record.outcome = ("result", "error", "tool_error", "denied", "result")[n % 5]
            record.http_status = 403 if record.outcome == "denied" else 200
            record.latency_ms = 1.25 * (n % 17)
            record.ttfb_ms = 0.5
            record.jsonrpc_id = str(n)
            if record.outcome == "error":
                record.error_code, record.error_message = -32602, f"bad params {n}"
        else:
            record.outcome = "accepted"
        record.client_name = "claude" if n % 2 else "mcp"
        record.session = f"s{n % 4}"
        record.bytes_in, record.bytes_out = n * 10, n * 20
        record.truncated = n % 13 == 0
        if n % 6 == 0:
            record.request_payload = '{"jsonrpc": "2.0", "method": "tools/call"}'
            record.consumer = "app-1"
        records.append(record)
    return records


def _queries() -> List[LogQuery]:
    return [
        LogQuery(), LogQuery(api_id="api-a"), LogQuery(method="tools/call", target="echo"),
        LogQuery(outcome="errors"), LogQuery(outcome="tool_error"), LogQuery(status=403),
        LogQuery(client="claude"), LogQuery(client="10.0.0.1"), LogQuery(session="s2"),
        LogQuery(text="100%_"), LogQuery(text="%"), LogQuery(text="bad params 1"),
        LogQuery(since=1100.0, until=1300.0), LogQuery(limit=7), LogQuery(cursor=40, limit=5),
        LogQuery(node="n1"), LogQuery(node="elsewhere"),
    ]


def test_the_same_records_give_the_same_answers_in_both_stores(postgres: PostgresServer,
                                                               tmp_path: Path) -> None:
    rows = [_row(r) for r in _records(120)]
    sqlite, pg = _fresh_sqlite(tmp_path), _fresh_pg(postgres)
    for store in (sqlite, pg):
        store._write_batch(rows[:70])
        store._write_batch(rows[70:])
    try:
        for query in _queries():
            expected = sqlite._logs(query)
            assert pg._logs(query) == expected, query
            assert expected["data"] or query.node == "elsewhere", query  # the queries match rows
        # a page boundary walked with cursors
        assert pg._logs(LogQuery(limit=50))["nextCursor"] == "71"
        for log_id in (1, 13, 120):
            assert pg._log_entry(None, log_id) == sqlite._log_entry(None, log_id)
            assert pg._log_entry("api-a", log_id) == sqlite._log_entry("api-a", log_id)
        assert pg._log_entry(None, 121) is None
        for api_id, since, until in ((None, 900.0, 2000.0), ("api-b", 1000.0, 1500.0),
                                     (None, 0.0, 86400.0 * 3)):
            summary = pg._analytics(api_id, since, until)
            assert summary == sqlite._analytics(api_id, since, until)
        assert pg._analytics(None, 900.0, 2000.0)["totals"]["requests"] == 109
    finally:
        sqlite._close()
        pg._close()


def test_each_record_names_its_node_and_node_filters(make_store: Any) -> None:
    a, b = make_store("gw-a"), make_store("gw-b")
    a._write_batch([_row(r) for r in _records(3)])
    b._write_batch([_row(r) for r in _records(2, start=5000.0)])
    page = a._logs(LogQuery())
    assert [r["node"] for r in page["data"]] == ["gw-b", "gw-b", "gw-a", "gw-a", "gw-a"]
    assert [r["node"] for r in b._logs(LogQuery(node="gw-a"))["data"]] == ["gw-a"] * 3
    assert [r["id"] for r in a._logs(LogQuery(node="gw-b"))["data"]] == [5, 4]
    assert b._log_entry(None, 1)["node"] == "gw-a"
    # the dashboard's summary: every node's traffic, or one node's
    everyone = a._analytics(None, 0.0, 10_000.0, None)["totals"]
    only_b = a._analytics(None, 0.0, 10_000.0, "gw-b")["totals"]
    only_a = b._analytics(None, 0.0, 10_000.0, "gw-a")["totals"]
    assert only_a["requests"] + only_a["notifications"] == 3
    assert only_b["requests"] + only_b["notifications"] == 2
    assert everyone["requests"] == only_a["requests"] + only_b["requests"]


def test_records_written_before_nodes_have_none(tmp_path: Path) -> None:
    # An analytics.db of the release before: migration 003 adds the column.
    import sqlite3

    from mcpgated.sqlitedb import migrations as sqlite_migrations

    path = tmp_path / "analytics.db"
    old = sqlite3.connect(str(path), isolation_level=None)
    for number, script in sqlite_migrations("mcpgated.analytics"):
        if number <= 2:
            old.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
    old.execute("INSERT INTO exchanges (time, api_id, method, kind) VALUES (1.0, 'a', 'ping', 'request')")
    old.close()
    store = AnalyticsStore(Clock(), path, node="now")
    assert store._open_db() == sqlite_migrations("mcpgated.analytics")[-1][0]
    store._write_batch([_row(_records(1, start=2.0)[0])])
    assert [r["node"] for r in store._logs(LogQuery())["data"]] == ["now", None]
    store._close()


def test_nodes_migrating_one_database_together(postgres: PostgresServer) -> None:
    url = postgres.new_database()
    stores = [PostgresAnalyticsStore(Clock(), url, node=f"n{i}") for i in range(4)]
    versions: List[Any] = []

    def open_one(store: PostgresAnalyticsStore) -> None:
        try:
            versions.append(store._open_db())
        except Exception as e:  # noqa: BLE001 -- the test reports it
            versions.append(e)

    threads = [threading.Thread(target=open_one, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    latest = migrations()[-1][0]
    assert versions == [latest] * 4
    stores[0]._write_batch([_row(_records(1)[0])])
    # opened again: nothing re-run, the rows stay
    again = PostgresAnalyticsStore(Clock(), url)
    assert again._open_db() == latest
    assert len(again._logs(LogQuery())["data"]) == 1
    for store in (*stores, again):
        store._close()


def _kill_connections(postgres: PostgresServer) -> int:
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        row = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE application_name = 'mcpgated-analytics'").fetchone()
    assert row is not None
    return int(row[0])


def test_a_connection_the_server_closed_is_replaced_at_once(postgres: PostgresServer) -> None:
    store = _fresh_pg(postgres)
    store._write_batch([_row(r) for r in _records(5)])
    assert _kill_connections(postgres) >= 1
    # the next batch and the next read go through on new connections
    store._write_batch([_row(r) for r in _records(5, start=9000.0)])
    assert len(store._logs(LogQuery())["data"]) == 10
    store._close()


def test_a_batch_the_unreachable_database_refused_is_kept() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    store = PostgresAnalyticsStore(Clock(), url, connect_timeout=1)
    with pytest.raises(psycopg.OperationalError) as caught:
        store._write_batch([_row(_records(1)[0])])
    assert store._kept_on_failure(caught.value)  # queued again, not dropped
    # a refused batch of bad data is not kept
    assert not store._kept_on_failure(psycopg.DataError("no"))


def test_a_url_password_never_reaches_messages() -> None:
    url = "postgresql://gw:s3cret@db.example:5432/mcp?sslmode=require"
    assert redacted(url) == "postgresql://gw:***@db.example:5432/mcp?sslmode=require"
    assert "s3cret" not in PostgresAnalyticsStore(Clock(), url).where
    assert "s3cret" not in repr(PostgresAnalyticsStore(Clock(), url))
    assert redacted("postgresql://gw@db/mcp") == "postgresql://gw@db/mcp"


def test_node_and_url_settings() -> None:
    assert config.parse_text("").gateway.node == socket.gethostname()
    assert config.parse_text("[gateway]\nnode = eu-1\n").gateway.node == "eu-1"
    cfg = config.parse_text("[analytics]\nurl = postgresql://gw@db/mcp\n")
    assert cfg.analytics.url == "postgresql://gw@db/mcp"
    assert config.parse_text("").analytics.url is None
    bad: List[Tuple[str, str]] = [
        ("[gateway]\nnode = two words\n", "[gateway] node"),
        ("[gateway]\nnode = " + "x" * 101 + "\n", "[gateway] node"),
        ("[analytics]\nurl = mysql://db/x\n", "[analytics] url"),
        ("[analytics]\nurl = /var/lib/pg\n", "[analytics] url"),
    ]
    for text, where in bad:
        with pytest.raises(config.ConfigError) as caught:
            config.parse_text(text)
        assert where in str(caught.value) and "\n" not in str(caught.value)


# --- the queue while the database is unreachable (reactor side, thread calls held) ---------


class _HeldPool:
    """
    A thread pool whose calls wait until the test runs them (on its thread).
    """

    def __init__(self) -> None:
        self.calls: List[Any] = []

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def callInThreadWithCallback(self, on_result: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        self.calls.append((on_result, f, args, kwargs))

    def run_next(self) -> None:
        from twisted.python.failure import Failure

        on_result, f, args, kwargs = self.calls.pop(0)
        try:
            result = f(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 -- handed over as Twisted's pool does
            on_result(False, Failure(e))
        else:
            on_result(True, result)


class _NowReactor(Clock):
    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)


def _unreachable_store(max_queue: int = 50_000) -> Tuple[PostgresAnalyticsStore, _HeldPool]:
    pool = _HeldPool()
    store = PostgresAnalyticsStore(_NowReactor(), f"postgresql://postgres@127.0.0.1:{free_port()}/x",
                                   max_queue=max_queue, connect_timeout=1, writer=pool,
                                   readers=_HeldPool())
    store._open = True  # as if PostgreSQL went away after startup
    return store, pool


def test_batches_are_kept_in_order_while_unreachable_then_dropped_past_max_queue() -> None:
    from twisted.logger import globalLogPublisher

    errors: List[Any] = []
    globalLogPublisher.addObserver(errors.append)
    try:
        store, pool = _unreachable_store(max_queue=8)
        records = _records(12)
        for record in records[:5]:
            store.record(record)
        store.flush()
        for record in records[5:7]:
            store.record(record)  # arrive while the first batch is being tried
        pool.run_next()  # refused: the batch goes back in front
        assert store._queue == [_row(r) for r in records[:7]] and store.dropped == 0
        store.flush()
        for record in records[7:12]:
            store.record(record)  # 7 + 1 kept; the queue is full at 8: 4 dropped
        pool.run_next()
        assert store._queue == [_row(r) for r in records[:8]]
        assert store.dropped == 4
    finally:
        globalLogPublisher.removeObserver(errors.append)
    failed = [e for e in errors if "analytics write to" in e.get("log_format", "")]
    assert len(failed) == 1  # once per outage
    assert failed[0]["what"].startswith("kept")


def test_the_last_flush_waits_for_the_one_in_flight(tmp_path: Path) -> None:
    # SQLite here: the order of the reactor side, whichever the store
    pool = _HeldPool()
    store = AnalyticsStore(_NowReactor(), tmp_path / "a.db", pool=pool)
    store.startService()
    pool.run_next()  # open
    outages = [True]
    insert = store._insert

    def once_unreachable(rows: Any) -> None:
        if outages and outages.pop():
            raise psycopg.OperationalError("connection refused")
        insert(rows)

    store._insert = once_unreachable  # type: ignore[method-assign]
    store._kept_on_failure = lambda failure: True  # type: ignore[method-assign]
    for record in _records(3):
        store.record(record)
    store.flush()  # in flight
    store.record(_records(1, start=50.0)[0])
    stopped = store.stopService()
    assert len(pool.calls) == 1  # the last flush has not taken the queue yet
    pool.run_next()  # refused and queued again
    pool.run_next()  # the last flush: all four
    pool.run_next()  # close
    assert stopped.called and store.written == 4 and store.dropped == 0
    store._open_db()
    assert len(store._logs(LogQuery())["data"]) == 4
    store._close()


def test_batches_of_all_nodes_commit_in_id_order(postgres: PostgresServer) -> None:
    """
    A batch that takes its ids first commits first: while one node's batch
    is open, another's waits, so "records after the last id seen" (the
    console's and mcpgatedctl logs --follow's polling) misses nothing a node
    commits later. Here the first node's transaction is held open by a lock
    the test takes, the way a slow batch would be.
    """
    import time

    from mcpgated.analytics.pgstore import _WRITE_LOCK

    url = postgres.new_database()
    a, b = (PostgresAnalyticsStore(Clock(), url, node=n) for n in ("a", "b"))
    a._open_db()
    b._open_db()
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (_WRITE_LOCK,))
        done: List[str] = []
        writer = threading.Thread(target=lambda: (b._write_batch([_row(_records(1)[0])]),
                                                  done.append("b")))
        writer.start()
        deadline = time.monotonic() + 10
        waiting = 0
        while not waiting and time.monotonic() < deadline:  # no event to wait on: poll the server
            row = holder.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                "'mcpgated-analytics' AND wait_event_type = 'Lock'").fetchone()
            waiting = row[0] if row else 0
        assert waiting == 1 and done == []  # b's batch waits for the open one
        holder.execute("SELECT pg_advisory_unlock(%s)", (_WRITE_LOCK,))
        writer.join(10)
    assert done == ["b"]
    a._write_batch([_row(_records(1, start=2000.0)[0])])
    assert [r["node"] for r in a._logs(LogQuery())["data"]] == ["a", "b"]
    a._close()
    b._close()


def test_the_exchange_log_file_names_the_node_too(tmp_path: Path) -> None:
    from mcpgated.analytics.metrics import Metrics
    from mcpgated.analytics.recorder import Recorder

    lines: List[Any] = []

    class Lines:
        def record(self, fields: Any) -> None:
            lines.append(fields)

    recorder = Recorder(Clock(), None, Metrics(), Lines(), node="eu-2")
    recorder.emit(_records(1)[0])
    assert lines[0]["node"] == "eu-2" and lines[0]["method"] == "notifications/initialized"
