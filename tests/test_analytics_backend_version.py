"""
Exchange records say which MCP versions each side spoke (issue #16): the
client's in C{protocol_version}, and the one the gateway spoke to the
backend when an API's C{"protocol"} settings bridged versions in
C{backend_version} (L{None} when it did not bridge). The tracker stamps
every record of a bridged exchange, the exchange's span carries it, both
stores keep it (and records written before it was recorded read as null),
and it crosses from workers to the twistd process.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Iterator, List, Optional

import psycopg
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from twisted.internet.task import Clock
from twisted.web.http_headers import Headers

from mcpgated.analytics.metrics import Metrics
from mcpgated.analytics.pgstore import PostgresAnalyticsStore
from mcpgated.analytics.pgstore import migrations as pg_migrations
from mcpgated.analytics.records import Capture, CallRecord
from mcpgated.analytics.recorder import Recorder
from mcpgated.analytics.sessions import SessionBook
from mcpgated.analytics.store import AnalyticsStore, ExchangeStore, LogQuery, _row
from mcpgated.analytics.tracing import Tracing
from mcpgated.analytics.tracker import ExchangeTracker
from mcpgated.definitions import parse_definition
from mcpgated.mcp.body import parse
from mcpgated.policy.ratelimit import Limiter
from mcpgated.sqlitedb import migrations as sqlite_migrations
from mcpgated.workers.main import _values as worker_values
from mcpgated.workers.pool import WorkerPool
from tests.engines import PostgresServer
from tests.exchange_driver import DrivenExchange, RecordingMetrics
from tests.support import api_definition, make_headers

NEW = "2026-07-28"
OLD = "2025-11-25"


# --- the tracker -------------------------------------------------------------------------


class Harness:
    def __init__(self) -> None:
        self.clock = Clock()
        self.book = SessionBook()
        self.records: List[CallRecord] = []

    def tracker(self) -> DrivenExchange:
        return DrivenExchange(ExchangeTracker(
            clock=self.clock, book=self.book, emit=self.records.append,
            metrics=RecordingMetrics(), api_id="api", api_name="API", plan="Keyless",
            client="127.0.0.1", capture=Capture(), started=self.clock.seconds()))


def _sse(*messages: Any) -> bytes:
    return b"".join(b"event: message\r\ndata: " + json.dumps(m).encode() + b"\r\n\r\n"
                    for m in messages)


def _meta_call(id_: int, name: str) -> Any:
    return {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": {
        "name": name, "arguments": {},
        "_meta": {"io.modelcontextprotocol/protocolVersion": NEW,
                  "io.modelcontextprotocol/clientInfo": {"name": "next", "version": "1"}}}}


def test_every_record_of_a_bridged_exchange_names_the_backend_version() -> None:
    # a batch (a call and a notification) already open when the gateway bridges it;
    # a server->client request on the answer's stream, answered by a later POST
    h = Harness()
    t = h.tracker()
    batch = [_meta_call(1, "sample"), {"jsonrpc": "2.0", "method": "notifications/progress",
                                       "params": {"progressToken": 1, "progress": 1}}]
    t.request(json.dumps(batch).encode(), make_headers(mcp_session_id="S"), b"/mcp")
    t.bridged(OLD)
    t.response(200, make_headers(content_type="text/event-stream"), 5.0, True)
    sampling = {"jsonrpc": "2.0", "id": 77, "method": "sampling/createMessage",
                "params": {"messages": []}}
    t.data(_sse(sampling, {"jsonrpc": "2.0", "id": 1, "result": {"content": []}}))
    t.finished("complete", 200)
    answer = h.tracker()  # the client's answer: its own exchange, bridged or not
    answer.request(json.dumps({"jsonrpc": "2.0", "id": 77, "result": {"role": "assistant"}}).encode(),
                   make_headers(mcp_session_id="S"), b"/mcp")
    answer.response(202, Headers(), 1.0, False)
    answer.finished("complete", 202)
    seen = [(r.kind, r.method, r.outcome, r.backend_version) for r in h.records]
    assert seen == [("request", "tools/call", "result", OLD),
                    ("notification", "notifications/progress", "accepted", OLD),
                    ("server_request", "sampling/createMessage", "result", OLD)]
    # the client's own version stays the client's
    assert h.records[0].protocol_version == NEW


def test_records_opened_after_the_gateway_bridged_name_it_too() -> None:
    h = Harness()
    t = h.tracker()
    t.tracker.bridged(NEW)
    t.request(json.dumps(_meta_call(3, "echo")).encode(), Headers(), b"/mcp")
    t.response(200, make_headers(content_type="application/json"), 1.0, False)
    t.data(json.dumps({"jsonrpc": "2.0", "id": 3, "result": {}}).encode())
    t.finished("complete", 200)
    [record] = h.records
    assert (record.method, record.outcome, record.backend_version) == ("tools/call", "result", NEW)


def test_an_exchange_the_gateway_did_not_bridge_has_no_backend_version() -> None:
    h = Harness()
    for refused in (False, True):
        t = h.tracker()
        t.request(json.dumps(_meta_call(4, "echo")).encode(), Headers(), b"/mcp")
        if refused:  # refused before it reached the backend: no answer, no bridging
            t.finished("rate_limited", 429)
            continue
        t.response(200, make_headers(content_type="application/json"), 1.0, False)
        t.data(json.dumps({"jsonrpc": "2.0", "id": 4, "result": {}}).encode())
        t.finished("complete", 200)
    assert [(r.outcome, r.protocol_version, r.backend_version) for r in h.records] == [
        ("result", NEW, None), ("rate_limited", NEW, None)]


def test_the_recorder_writes_the_backend_version_to_the_exchange_log_file() -> None:
    # [analytics] exchange_log: the JSON line names it, only when bridged
    lines: List[Any] = []

    class Lines:
        def record(self, fields: Any) -> None:
            lines.append(fields)

    api = parse_definition(api_definition("/weather", "http://backend.invalid/mcp",
                                          [{"name": "Open", "security": "KEY_LESS"}]))
    clock = Clock()
    recorder = Recorder(clock, None, Metrics(), Lines())  # type: ignore[arg-type]
    for bridged in (OLD, None):
        tracker = recorder.observer("api-1", api, "192.0.2.7", clock.seconds(), b"POST")
        tracker.request(Headers(), b"/weather", 10, parse(json.dumps(_meta_call(1, "x")).encode()))
        if bridged is not None:
            tracker.bridged(bridged)
        tracker.finished("upstream_error", 502)
    assert [line.get("backend_version") for line in lines] == [OLD, None]
    assert "backend_version" not in lines[1]  # unset fields are left out of the line


# --- the exchange's span -----------------------------------------------------------------


def test_the_exchange_span_names_the_backend_version_and_passes_it_on() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing(None, exporter=exporter)
    told: List[Any] = []

    class Inner:
        def bridged(self, version: str) -> None:
            told.append(version)

    for bridged in (OLD, None):
        trace = tracing.exchange(make_headers(mcp_protocol_version=NEW))
        trace.inner = Inner()  # type: ignore[assignment]
        trace.read(parse(json.dumps(_meta_call(1, "echo")).encode()), "api-1", "Everything", b"POST")
        if bridged is not None:
            trace.bridged(bridged)
        trace.backend(Headers(), b"http://127.0.0.1:9/mcp")
        trace.close("complete", 200)
    assert tracing.flush()
    servers = [dict(s.attributes or {}) for s in exporter.get_finished_spans()
               if s.kind == SpanKind.SERVER]
    assert [a.get("mcpgated.backend.protocol_version") for a in servers] == [OLD, None]
    assert [a["mcp.protocol.version"] for a in servers] == [NEW, NEW]
    assert told == [OLD]


# --- the stores --------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: Any, tmp_path: Path) -> Iterator[ExchangeStore]:
    opened: ExchangeStore
    if request.param == "postgres":
        url = request.getfixturevalue("postgres").new_database()
        opened = PostgresAnalyticsStore(Clock(), url, node="n1")
    else:
        opened = AnalyticsStore(Clock(), tmp_path / "analytics.db", node="n1")
    opened._open_db()
    yield opened
    opened._close()


def _record(time: float, backend_version: Optional[str], **fields: Any) -> CallRecord:
    record = CallRecord(time, "api-a", "A", "Keyless", "10.0.0.1", "tools/call", "request",
                        target="echo", outcome="result", http_status=200,
                        protocol_version=NEW if backend_version == OLD else OLD, **fields)
    if backend_version is not None:
        record.backend_version = backend_version
    return record


def test_both_stores_keep_and_show_the_backend_version(store: ExchangeStore) -> None:
    # bridged both ways, and not bridged; with and without other optional columns
    records = [_record(1.0, OLD), _record(2.0, None), _record(3.0, NEW),
               _record(4.0, OLD, request_payload="{}", truncated=True), _record(5.0, None)]
    store._write_batch([_row(r) for r in records])
    page = store._logs(LogQuery())["data"]
    assert [(e["protocolVersion"], e["backendVersion"]) for e in page] == [
        (OLD, None), (NEW, OLD), (OLD, NEW), (OLD, None), (NEW, OLD)]
    entry = store._log_entry("api-a", 1)
    assert entry is not None and (entry["protocolVersion"], entry["backendVersion"]) == (NEW, OLD)
    assert store._log_entry(None, 2)["backendVersion"] is None  # type: ignore[index]


def test_both_stores_give_the_same_answers(postgres: PostgresServer, tmp_path: Path) -> None:
    rows = [_row(_record(float(n), (OLD, None, NEW)[n % 3])) for n in range(1, 31)]
    sqlite = AnalyticsStore(Clock(), tmp_path / "analytics.db", node="n1")
    pg = PostgresAnalyticsStore(Clock(), postgres.new_database(), node="n1")
    for s in (sqlite, pg):
        s._open_db()
        s._write_batch(rows)
    try:
        for query in (LogQuery(), LogQuery(limit=7), LogQuery(cursor=12, limit=5)):
            assert pg._logs(query) == sqlite._logs(query)
        for log_id in (1, 2, 3, 30):
            assert pg._log_entry(None, log_id) == sqlite._log_entry(None, log_id)
    finally:
        sqlite._close()
        pg._close()


def test_an_sqlite_exchange_log_of_the_release_before_keeps_its_records(tmp_path: Path) -> None:
    path = tmp_path / "analytics.db"
    old = sqlite3.connect(str(path), isolation_level=None)
    for number, script in sqlite_migrations("mcpgated.analytics"):
        if number <= 3:
            old.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
    old.execute("INSERT INTO exchanges (time, api_id, method, kind, protocol_version, node) "
                "VALUES (1.0, 'api-a', 'tools/call', 'request', '2025-06-18', 'old')")
    old.close()
    store = AnalyticsStore(Clock(), path, node="now")
    assert store._open_db() == sqlite_migrations("mcpgated.analytics")[-1][0] >= 4
    store._write_batch([_row(_record(2.0, OLD))])
    page = store._logs(LogQuery())["data"]
    assert [(e["node"], e["protocolVersion"], e["backendVersion"]) for e in page] == [
        ("now", NEW, OLD), ("old", "2025-06-18", None)]
    store._close()


def test_a_postgresql_exchange_log_of_the_release_before_keeps_its_records(
        postgres: PostgresServer) -> None:
    url = postgres.new_database()
    [(first, script)] = [m for m in pg_migrations() if m[0] == 1]
    with psycopg.connect(url, autocommit=True) as connection:
        # the schema the release before left: migration 001, its number kept
        connection.execute(script.encode("utf-8"))
        connection.execute("CREATE TABLE mcpgated_analytics_schema (version integer NOT NULL)")
        connection.execute("INSERT INTO mcpgated_analytics_schema (version) VALUES (%s)", (first,))
        connection.execute("INSERT INTO exchanges (time, api_id, method, kind, protocol_version, node) "
                           "VALUES (1.0, 'api-a', 'tools/call', 'request', '2025-06-18', 'old')")
    store = PostgresAnalyticsStore(Clock(), url, node="now")
    assert store._open_db() == pg_migrations()[-1][0] >= 2
    store._write_batch([_row(_record(2.0, OLD))])
    page = store._logs(LogQuery())["data"]
    assert [(e["node"], e["protocolVersion"], e["backendVersion"]) for e in page] == [
        ("now", NEW, OLD), ("old", "2025-06-18", None)]
    store._close()


# --- workers -----------------------------------------------------------------------------


def test_a_workers_record_reaches_the_twistd_process_with_its_backend_version() -> None:
    # [gateway] workers: records go up as JSON rows of the columns
    got: List[CallRecord] = []
    lines: List[Any] = []

    class Lines:
        def record(self, fields: Any) -> None:
            lines.append(fields)

    pool = WorkerPool(0, [], Clock(), [], Limiter(Clock()), sink=got.append, exchange_log=Lines())
    sent = [_record(1.0, OLD), _record(2.0, None)]
    pool.records(json.dumps([worker_values(r) for r in sent], separators=(",", ":")).encode())
    assert [r.backend_version for r in got] == [OLD, None]
    assert got == sent
    assert [line.get("backend_version") for line in lines] == [OLD, None]
