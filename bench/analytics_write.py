#!/usr/bin/env python3
"""
The exchange log's writer: SQLite ([analytics] path, the default) against
PostgreSQL ([analytics] url), in one run.

The request path is the same for both stores (ExchangeStore.record appends
one tuple to a list on the reactor thread); what differs is the writer
thread, which competes with the reactor for the CPU. For each store and
batch size this writes the same metadata-only records (as the tracker makes
them) with the store's own batch writer and reports records per second and
the writer thread's CPU microseconds per record. PostgreSQL variants:
`COPY` (what mcpgated ships) and a multi-row `INSERT` (psycopg's
executemany, pipelined), to show why COPY; on a throwaway local server
(tests/engines.py: fsync off, so the figures are the CPU's, not the disk's),
with `synchronous_commit` on (PostgreSQL's default) and off.

    python3 bench/analytics_write.py [--records 60000] [--rounds 3]

Needs Debian's postgresql. Results: a table on stdout and
bench/out/analytics_write.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import psycopg  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402

from mcpgated.analytics.pgstore import PostgresAnalyticsStore  # noqa: E402
from mcpgated.analytics.records import CallRecord  # noqa: E402
from mcpgated.analytics.store import COLUMNS, AnalyticsStore, ExchangeStore, _row  # noqa: E402
from tests.engines import PostgresServer  # noqa: E402

BATCHES = (250, 1000, 2500)  # 0.5 s of 500, 2,000 and 5,000 requests/s


def rows(count: int) -> List[Tuple[Any, ...]]:
    made = []
    for n in range(count):
        record = CallRecord(time=1.8e9 + n / 1000, api_id="3f1c9a52-7d7e-4a57-9d0b-2f4f0f0c1e11",
                            api_name="Everything", plan="Keyless", client="127.0.0.1",
                            method="tools/call", kind="request", target="echo",
                            jsonrpc_id=str(n), outcome="result", http_status=200,
                            latency_ms=1.234, ttfb_ms=0.9, bytes_in=180, bytes_out=240,
                            session="9c1d0e6f3b2a4d5e", protocol_version="2025-06-18",
                            client_name="mcp", client_version="1.0.0", transport="json")
        made.append(_row(record))
    return made


def insert_rows(store: PostgresAnalyticsStore, batch: List[Tuple[Any, ...]]) -> None:
    """
    The alternative to COPY: one multi-row INSERT statement per batch, through
    psycopg's executemany (pipeline mode).
    """
    names = ", ".join((*COLUMNS, "node"))
    marks = ", ".join("%s" for _ in range(len(COLUMNS) + 1))
    statement = f"INSERT INTO exchanges ({names}) VALUES ({marks})"
    node = store.node

    def work(connection: "psycopg.Connection[Tuple[Any, ...]]") -> None:
        with connection.transaction(), connection.cursor() as cursor:
            cursor.executemany(statement, [(*row, node) for row in batch])

    store._using(work)


def measure(write: Callable[[List[Tuple[Any, ...]]], None], data: List[Tuple[Any, ...]],
            batch: int) -> Tuple[float, float]:
    """
    (records per second, writer CPU microseconds per record).
    """
    wall, cpu = time.perf_counter(), time.thread_time()
    for start in range(0, len(data), batch):
        write(data[start:start + batch])
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    return len(data) / wall, cpu / len(data) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data = rows(args.records)
    server = PostgresServer()
    results: Dict[str, Dict[int, List[Tuple[float, float]]]] = {}
    try:
        with tempfile.TemporaryDirectory() as folder:
            for round_ in range(args.rounds):
                targets: List[Tuple[str, ExchangeStore, Callable[..., None]]] = []
                sqlite = AnalyticsStore(Clock(), Path(folder) / f"a{round_}.db", node="bench")
                sqlite._open_db()
                targets.append(("sqlite (synchronous=NORMAL)", sqlite, sqlite._write_batch))
                for synchronous in ("on", "off"):
                    url = server.new_database()
                    with psycopg.connect(server.url, autocommit=True) as admin:
                        admin.execute(f'ALTER DATABASE "{url.rsplit("/", 1)[1]}" '
                                      f"SET synchronous_commit = {synchronous}")
                    copy = PostgresAnalyticsStore(Clock(), url, node="bench")
                    copy._open_db()
                    targets.append((f"postgresql COPY (synchronous_commit={synchronous})", copy,
                                    copy._write_batch))
                    insert = PostgresAnalyticsStore(Clock(), server.new_database(), node="bench")
                    insert._open_db()
                    if synchronous == "on":
                        targets.append(("postgresql INSERT (synchronous_commit=off)", insert,
                                        lambda b, s=insert: insert_rows(s, b)))
                for name, store, write in targets:
                    for batch in BATCHES:
                        results.setdefault(name, {}).setdefault(batch, []).append(
                            measure(write, data, batch))
                    store._close()
    finally:
        server.close()
    print(f"{args.records} records per store and batch size, median of {args.rounds} rounds")
    print(f"| store | {' | '.join(f'batch {b}: records/s, CPU us/record' for b in BATCHES)} |")
    print(f"| --- | {' | '.join('---' for _ in BATCHES)} |")
    table: Dict[str, Dict[str, Dict[str, float]]] = {}
    for name, by_batch in results.items():
        cells = []
        for batch in BATCHES:
            rate = statistics.median(r for r, _ in by_batch[batch])
            cpu = statistics.median(c for _, c in by_batch[batch])
            table.setdefault(name, {})[str(batch)] = {"records_per_s": rate, "cpu_us": cpu}
            cells.append(f"{rate:,.0f}, {cpu:.1f}")
        print(f"| {name} | {' | '.join(cells)} |")
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "analytics_write.json").write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
