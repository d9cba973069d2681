#!/usr/bin/env python3
"""
The control channel's costs per request, in one process (CPU time, so a
loaded machine moves them little): both ends of the channel run here, over
an in-memory transport, so each figure is the worker's and the parent's
work together (bytes through a pipe cost a few us more per message, not
per request).

- records: an exchange record sent up (batched, JSON) and taken by the
  parent (CallRecord rebuilt, handed to the store's queue) against the
  single process's hand-over to the same queue;
- limits: a rate-limit decision asked of the parent (a JSON line per batch on
  the limits pipe pair), in batches of 1, 16
  and 64 per reactor turn (what c=1, 16, 64 clients give a worker at
  most), against the in-memory limiter's.

    python3 bench/workers_micro.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.testing import MemoryReactorClock
from twisted.test.iosim import FakeTransport, connect

from mcpgated.analytics.records import CallRecord
from mcpgated.policy.ratelimit import Limiter, RateLimit
from mcpgated.workers.main import RemoteLimiter, Uplink, WorkerControl
from mcpgated.workers.pool import Worker, WorkerPool
from mcpgated.workers.protocol import LimitServer


def per_call(run: Callable[[int], None], count: int) -> float:
    """CPU microseconds per unit of C{run(count)} (best of 5)."""
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        run(count)
        best = min(best, time.process_time() - start)
    return best / count * 1e6


def record(n: int) -> CallRecord:
    return CallRecord(1764000000.0 + n, "6f1c2a9e-0b7d-4d7a-9a53-3c1d0b0e8f11", "Weather", "Keyless",
                      "127.0.0.1", "tools/call", "request", target="forecast", jsonrpc_id="7",
                      session="bench-session-0123456789abcdef", protocol_version="2025-06-18",
                      outcome="result", http_status=200, latency_ms=1.25, ttfb_ms=1.1, bytes_in=112,
                      bytes_out=98, transport="json")


class Pipe:
    """A pipe's direction delivering at once (the limits pipe pair, in memory)."""

    def __init__(self, deliver: Callable[[bytes], None]) -> None:
        self.write = deliver


class Queue:
    """The store's side of the hand-over: its queue append (what AnalyticsStore.record does)."""

    def __init__(self) -> None:
        self.rows: List[Any] = []

    def record(self, rec: CallRecord) -> None:
        self.rows.append(rec)


def main() -> None:
    clock = MemoryReactorClock()
    sink = Queue()
    pool = WorkerPool(count=1, sockets=[], reactor=clock, argv=[], limiter=Limiter(clock), sink=sink.record)
    worker = Worker(pool, 1, 0.0)
    worker.serving = True
    pool.workers[1] = worker
    control = WorkerControl()
    pump = connect(worker.control, FakeTransport(worker.control, True), control, FakeTransport(control, False))
    server = LimitServer(pool.check, control.limits.dataReceived)
    control.limits.makeConnection(Pipe(server.data))  # type: ignore[arg-type]
    records = [record(n) for n in range(500)]

    def single(count: int) -> None:
        for n in range(count):
            sink.record(records[n % 500])
        sink.rows.clear()

    uplink = Uplink(control, clock)

    def up(count: int) -> None:
        for n in range(count):
            uplink.record(records[n % 500])  # flushes itself every 500
        uplink.flush()
        pump.flush()
        sink.rows.clear()

    limit = RateLimit(period=60.0, requests=10 ** 12, scope="plan")
    who = ("6f1c2a9e-0b7d-4d7a-9a53-3c1d0b0e8f11", "Keyless", "plan")
    calls = [("tools/call", "forecast")]
    memory = Limiter(clock)

    def in_memory(count: int) -> None:
        for _ in range(count):
            memory.check_all(limit, who, calls)

    def remote(batch: int) -> Callable[[int], None]:
        limiter = RemoteLimiter(control.limits, clock)

        def run(count: int) -> None:
            for _ in range(count // batch):
                for _ in range(batch):
                    limiter.check_all(limit, who, calls)
                clock.advance(0)
                pump.flush()

        return run

    rows = [
        ("record, single process (queue hand-over)", per_call(single, 20000)),
        ("record, worker -> parent (batched JSON, rebuilt, queued)", per_call(up, 20000)),
        ("limit decision, in memory", per_call(in_memory, 20000)),
    ]
    for batch in (1, 16, 64):
        rows.append((f"limit decision asked of the parent, {batch} per turn", per_call(remote(batch), 6400)))
    print("| what | CPU us per request |\n|---|---|")
    for what, us in rows:
        print(f"| {what} | {us:.1f} |")


if __name__ == "__main__":
    main()
