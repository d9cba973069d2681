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

Then, end to end (`--wrk`): wrk c=64 (bench/post.lua's tools/call) through
two daemons to an nginx backend, one with the exchange log in SQLite (as
shipped), one in PostgreSQL (synchronous_commit on); interleaved rounds;
req/s, the daemon's CPU microseconds per request and PostgreSQL's (all its
processes).

    python3 bench/analytics_write.py [--records 60000] [--rounds 3] [--wrk] [--duration 8]

Needs Debian's postgresql (and nginx, wrk for --wrk). Results: tables on
stdout and bench/out/analytics_write.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import psycopg  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402

from mcpgated.analytics.pgstore import PostgresAnalyticsStore  # noqa: E402
from mcpgated.analytics.records import CallRecord  # noqa: E402
from mcpgated.analytics.store import COLUMNS, AnalyticsStore, ExchangeStore, _row  # noqa: E402
from tests.engines import PostgresServer  # noqa: E402

import run as bench  # noqa: E402 -- bench/run.py's process and probe helpers

ALL_CPUS = f"0-{len(os.sched_getaffinity(0)) - 1}"

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


def synchronous(server: PostgresServer, on: bool) -> str:
    """
    A new database of the server whose commits are synchronous or not.
    """
    url = server.new_database()
    with psycopg.connect(server.url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{url.rsplit("/", 1)[1]}" '
                      f"SET synchronous_commit = {'on' if on else 'off'}")
    return url


def start_daemon(name: str, work: Path, backend_port: int, extra: str) -> Dict[str, Any]:
    folder = work / name
    folder.mkdir()
    ini = folder / "mcpgated.ini"
    ini.write_text(
        "[gateway]\nlisten = tcp:0:interface=127.0.0.1\n"
        f"[admin]\nlisten = tcp:0:interface=127.0.0.1\ntoken = {bench.ADMIN_TOKEN}\n"
        "[storage]\npath = data/mcpgated.db\n"
        "[logging]\ndir = log\nlevel = info\naccess_log = on\n"
        "[daemon]\nports_file = run/ports.json\n" + extra)
    twistd = str(Path(sys.executable).parent / "twistd")
    proc = bench.Proc(name, [twistd, "-n", "--pidfile=", "mcpgated", "-c", str(ini)], ALL_CPUS, work,
                      cwd=folder)
    bound = json.loads(bench.wait_file(folder / "run" / "ports.json", proc))
    admin = f"http://127.0.0.1:{bound['admin'][0]}"
    api = bench.http_json("POST", admin + "/apis", {
        "name": "bench", "version": "1", "contextPath": "/n",
        "backend": f"http://127.0.0.1:{backend_port}/n",
        "plans": [{"name": "Keyless", "security": "KEY_LESS"}]}, bench.ADMIN_TOKEN)
    bench.http_json("POST", f"{admin}/apis/{api['id']}/_deploy", None, bench.ADMIN_TOKEN)
    return {"name": name, "proc": proc, "port": bound["gateway"][0], "admin": admin}


def wrk(target: Dict[str, Any], server: PostgresServer, conns: int, duration: float) -> Dict[str, Any]:
    pids = [target["proc"].pid, *bench.children(target["proc"].pid)]
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    cpu0 = bench.cpu_seconds(pids)
    pg0 = bench.cpu_seconds([postmaster, *bench.children(postmaster)])
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{int(duration)}s", "--latency", "-s", str(HERE / "post.lua"),
         f"http://127.0.0.1:{target['port']}/n/json"],
        capture_output=True, text=True, timeout=duration + 60).stdout
    cpu = bench.cpu_seconds(pids) - cpu0
    # (a backend that ended during the run is not counted: they live as long as their connection)
    pg = bench.cpu_seconds([postmaster, *bench.children(postmaster)]) - pg0
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses: (\d+)",
                    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"):
        m = re.search(pattern, out)
        if m:
            errors += sum(int(g) for g in m.groups())
    p50 = re.search(r"^\s*50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s*99%\s+(\S+)", out, re.M)
    return {"rps": requests / duration, "cpu_us": cpu / max(requests, 1) * 1e6,
            "pg_cpu_us": pg / max(requests, 1) * 1e6, "errors": errors,
            "p50_ms": bench._ms(p50.group(1)) if p50 else None,
            "p99_ms": bench._ms(p99.group(1)) if p99 else None}


def end_to_end(server: PostgresServer, rounds: int, duration: float, conns: int) -> Dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="mcpgated-bench-analytics-"))
    procs: List[Any] = []
    try:
        backend_port = bench.free_port()
        procs.append(bench.start_nginx("backend", ALL_CPUS, work, bench.NGINX_BACKEND.format(
            port=backend_port, json=bench.JSON_ANSWER), backend_port))
        embedded = start_daemon("sqlite", work, backend_port, "")
        shared = start_daemon("postgres", work, backend_port,
                              f"[analytics]\nurl = {synchronous(server, True)}\n")
        procs.extend([embedded["proc"], shared["proc"]])
        cells = [("exchange log in SQLite (default)", embedded),
                 ("exchange log in PostgreSQL", shared)]
        for _, target in cells:  # warm up
            wrk(target, server, conns, 2)
        runs: Dict[str, List[Dict[str, Any]]] = {name: [] for name, _ in cells}
        for number in range(rounds):
            for name, target in (cells if number % 2 == 0 else list(reversed(cells))):
                result = wrk(target, server, conns, duration)
                runs[name].append(result)
                print(f"round {number + 1} {name}: {result}", flush=True)
        for name, target in cells:
            dropped = bench.http_json("GET", target["admin"] + "/analytics?last=3600", None,
                                      bench.ADMIN_TOKEN)["droppedRecords"]
            runs[name].append({"dropped_records": dropped})
        return runs
    finally:
        for proc in reversed(procs):
            proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wrk", action="store_true")
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--conns", type=int, default=64)
    args = parser.parse_args()
    data = rows(args.records)
    server = PostgresServer()
    results: Dict[str, Dict[int, List[Tuple[float, float]]]] = {}
    runs: Dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory() as folder:
            for round_ in range(args.rounds):
                targets: List[Tuple[str, ExchangeStore, Callable[..., None]]] = []
                sqlite = AnalyticsStore(Clock(), Path(folder) / f"a{round_}.db", node="bench")
                sqlite._open_db()
                targets.append(("sqlite (synchronous=NORMAL)", sqlite, sqlite._write_batch))
                for on in (True, False):
                    copy = PostgresAnalyticsStore(Clock(), synchronous(server, on), node="bench")
                    copy._open_db()
                    targets.append((f"postgresql COPY (synchronous_commit={'on' if on else 'off'})",
                                    copy, copy._write_batch))
                insert = PostgresAnalyticsStore(Clock(), synchronous(server, False), node="bench")
                insert._open_db()
                targets.append(("postgresql INSERT (synchronous_commit=off)", insert,
                                lambda b, s=insert: insert_rows(s, b)))
                for name, store, write in targets:
                    for batch in BATCHES:
                        results.setdefault(name, {}).setdefault(batch, []).append(
                            measure(write, data, batch))
                    store._close()
        if args.wrk:
            runs = end_to_end(server, args.rounds, args.duration, args.conns)
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
    if runs:
        print(f"\nwrk c={args.conns}, {args.rounds} rounds of {args.duration:g} s (medians):\n")
        print("| exchange log | req/s | gateway CPU us/request | PostgreSQL CPU us/request | p50 ms "
              "| p99 ms | errors | dropped records |")
        print("|---|---|---|---|---|---|---|---|")
        for name, results_ in runs.items():
            timed = [r for r in results_ if "rps" in r]
            print(f"| {name} | {statistics.median(r['rps'] for r in timed):,.0f} | "
                  f"{statistics.median(r['cpu_us'] for r in timed):.0f} | "
                  f"{statistics.median(r['pg_cpu_us'] for r in timed):.1f} | "
                  f"{statistics.median(r['p50_ms'] for r in timed):.2f} | "
                  f"{statistics.median(r['p99_ms'] for r in timed):.2f} | "
                  f"{sum(r['errors'] for r in timed)} | {results_[-1]['dropped_records']} |")
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "analytics_write.json").write_text(json.dumps({"writer": table, "wrk": runs}, indent=2))


if __name__ == "__main__":
    main()
