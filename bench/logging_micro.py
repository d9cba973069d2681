"""
Micro-benchmark of the logging and inspection path of one proxied exchange.

Drives, N times, the calls that mcpgated.proxy.resource makes for a small
C{tools/call} POST (112-byte request) answered by a JSON body (109 bytes) or
by one SSE event, with a fake clock and no network:

  recorder.observer(...); observer.request(...) (the body parsed once);
  observer.response(...); the response reader's feed(chunk) and flush();
  observer.finished(...) (with the metrics); access_log.exchange(...)

The exchange records go to a real AnalyticsStore (the reactor-thread part,
C{record}, per exchange; the batch insert that runs on the store's thread is
timed separately, on a real SQLite file, every C{--batch} records, and
counted: it is CPU of the same process) and to the Prometheus metrics. The
access log writes to a real rotating file in a temporary folder.

  .venv/bin/python bench/logging_micro.py              # both answers, N=20000
  .venv/bin/python bench/logging_micro.py --profile    # and a cProfile of the total
  .venv/bin/python bench/logging_micro.py --exchange-log   # the optional exchanges.log too
  .venv/bin/python bench/logging_micro.py --access-call exchange   # AccessLog.exchange(...)
  .venv/bin/python bench/logging_micro.py --src /tmp/before   # another tree's mcpgated/

Printed: us per exchange for each component (wall-clock timers around each
call, so the sum is a little above the plain total) and the total of an
untimed run of the whole sequence (process CPU time). The machine may be
shared: compare runs made one after the other, best of --repeat. The
response Headers the backend client would build are made in the loop and
their cost is taken out.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

# --src DIR: measure the mcpgated package in DIR (another checkout) instead
if "--src" in sys.argv:
    sys.path.insert(0, sys.argv[sys.argv.index("--src") + 1])
else:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.web.http_headers import Headers

from mcpgated.analytics.metrics import Metrics
from mcpgated.analytics.recorder import Recorder
from mcpgated.analytics.store import AnalyticsStore
from mcpgated.logs import AccessLog, open_rotating
from mcpgated.mcp.body import parse
from mcpgated.mcp.responses import ResponseReader
from mcpgated.model import ApiDefinition, Plan

REQUEST = (b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo",'
           b'"arguments":{"message":"hello from wrk"}}}')
PARSED_REQUEST = parse(REQUEST)
JSON_ANSWER = (b'{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text",'
               b'"text":"Echo: hello from wrk"}],"isError":false}}')
SSE_ANSWER = b"event: message\ndata: " + JSON_ANSWER + b"\n\n"
API_ID = "0f8e2c6a-1b3d-4e5f-8a9b-0c1d2e3f4a5b"
PATH = b"/bench/mcp"


class FakeClock:
    """
    seconds() moves 50 us per call: latencies are non-zero and vary.
    """

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def seconds(self) -> float:
        self.now += 0.00005
        return self.now


def request_headers() -> Headers:
    # as twisted.web's server builds them for wrk's request (bench/post.lua)
    h = Headers()
    for name, value in ((b"host", b"127.0.0.1:8080"), (b"content-type", b"application/json"),
                        (b"accept", b"application/json, text/event-stream"),
                        (b"mcp-session-id", b"bench-session-0123456789abcdef"),
                        (b"mcp-protocol-version", b"2025-06-18"),
                        (b"content-length", b"%d" % len(REQUEST))):
        h.setRawHeaders(name, [value])
    return h


def response_headers(sse: bool) -> Headers:
    # as twisted.web's client gives them for nginx's answer
    h = Headers()
    h.setRawHeaders(b"server", [b"nginx/1.22.1"])
    h.setRawHeaders(b"date", [b"Sun, 22 Nov 2026 03:52:00 GMT"])
    h.setRawHeaders(b"content-type", [b"text/event-stream" if sse else b"application/json"])
    h.setRawHeaders(b"content-length", [b"%d" % len(SSE_ANSWER if sse else JSON_ANSWER)])
    h.setRawHeaders(b"connection", [b"keep-alive"])
    return h


class Request:
    """
    The parts of twisted.web's Request that the access-log line reads.
    """

    method = b"POST"
    path = PATH
    uri = PATH


class Route:
    def __init__(self, definition: ApiDefinition) -> None:
        self.api_id = API_ID
        self.definition = definition


class Timer:
    """
    Accumulates perf_counter time per component.
    """

    def __init__(self) -> None:
        self.spent: Dict[str, float] = {}

    def wrap(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        spent = self.spent
        spent.setdefault(name, 0.0)
        clock = time.perf_counter

        def timed(*args: Any) -> Any:
            t0 = clock()
            try:
                return call(*args)
            finally:
                spent[name] += clock() - t0

        return timed


class Bench:
    def __init__(self, folder: Path, exchange_log: bool, batch: int, caller: str) -> None:
        self.caller = caller
        self.clock = FakeClock()
        self.store = AnalyticsStore(self.clock, folder / "analytics.db")
        self.store._open_db()  # the store thread's connection, opened here
        self.store._open = True
        self.metrics = Metrics(dropped=lambda: self.store.dropped)
        self.exchanges = None
        if exchange_log:
            self.exchanges = AccessLog(self.clock, open_rotating(folder, "exchanges.log",
                                                                 10 * 1024 * 1024, 2))
        self.recorder = Recorder(self.clock, self.store, self.metrics, self.exchanges)
        self.access_log = AccessLog(self.clock, open_rotating(folder, "access.log",
                                                              10 * 1024 * 1024, 2))
        self.definition = ApiDefinition("bench", "1", "", "/bench", "http://127.0.0.1:9/mcp",
                                        (Plan("Keyless"),))
        self.route = Route(self.definition)
        self.request = Request()
        self.request_headers = request_headers()
        self.batch = batch
        self.store_thread = 0.0

    def drain(self) -> None:
        """
        What the store's batch flush does: the swap on the reactor thread,
        the rows and the insert on the store's thread (timed separately).
        """
        store = self.store
        if not store._queue:
            return
        batch, store._queue = store._queue, []
        t0 = time.perf_counter()
        store._insert(batch)
        self.store_thread += time.perf_counter() - t0

    def exchange(self, sse: bool, timer: Any = None) -> None:
        """
        One exchange, in GatewayResource's order. With C{timer}, each call
        is timed on its own.
        """
        recorder, clock = self.recorder, self.clock
        w = timer.wrap if timer is not None else (lambda name, call: call)
        started = clock.seconds()
        tracker = w("tracker", recorder.observer)(API_ID, self.definition, "127.0.0.1", started,
                                                  b"POST")
        # the body is parsed once by the resource, before any stage
        w("tracker", tracker.request)(self.request_headers, PATH, len(REQUEST), PARSED_REQUEST)
        headers = response_headers(sse)  # the client's Headers: not logging's cost
        sent = clock.seconds()
        w("tracker", tracker.response)(200, headers,
                                       round((clock.seconds() - sent) * 1000, 3), sse)
        reader = ResponseReader(sse, observer=tracker)
        w("tracker", reader.feed)(SSE_ANSWER if sse else JSON_ANSWER)
        w("tracker", reader.flush)()
        w("tracker", tracker.finished)("complete", 200)
        w("access log", self.access_line)(started, len(SSE_ANSWER if sse else JSON_ANSWER))

    def access_line(self, started: float, bytes_out: int) -> None:
        request, route = self.request, self.route
        if self.caller == "exchange":
            # GatewayResource._log calling AccessLog.exchange (proposed)
            self.access_log.exchange(
                round(started, 3),
                route.definition.name if route else None,
                route.api_id if route else None,
                request.method.decode("latin-1") if request.method else None,
                request.path.decode("latin-1") if request.path else None,
                200,
                "complete",
                len(REQUEST),
                bytes_out,
                round((self.clock.seconds() - started) * 1000, 3),
                "127.0.0.1",
            )
            return
        # GatewayResource._log, as it builds the line today
        self.access_log.record(
            {
                "time": round(started, 3),
                "api": route.definition.name if route else None,
                "apiId": route.api_id if route else None,
                "method": request.method.decode("latin-1") if request.method else None,
                "path": request.path.decode("latin-1") if request.path else None,
                "status": 200,
                "outcome": "complete",
                "bytesIn": len(REQUEST),
                "bytesOut": bytes_out,
                "durationMs": round((self.clock.seconds() - started) * 1000, 3),
                "client": "127.0.0.1",
            }
        )

    def finish(self) -> None:
        self.drain()
        self.access_log.flush()
        if self.exchanges is not None:
            self.exchanges.flush()


def headers_cost(n: int, sse: bool) -> float:
    t0 = time.process_time()
    for _ in range(n):
        response_headers(sse)
    return time.process_time() - t0


def run_total(folder: Path, n: int, sse: bool, args: Any, profile: bool = False) -> float:
    bench = Bench(folder, args.exchange_log, args.batch, args.access_call)
    for _ in range(200):  # warm caches (labels, settings)
        bench.exchange(sse)
    bench.finish()
    bench.store_thread = 0.0
    exchange, drain, batch = bench.exchange, bench.drain, args.batch
    profiler = cProfile.Profile() if profile else None
    gc.collect()
    t0 = time.process_time()
    if profiler is not None:
        profiler.enable()
    for i in range(1, n + 1):
        exchange(sse)
        if i % batch == 0:
            drain()
    bench.finish()
    if profiler is not None:
        profiler.disable()
    total = time.process_time() - t0 - headers_cost(n, sse)
    assert bench.store.written == 0 and bench.store.dropped == 0
    if profiler is not None:
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(30)
    return total / n * 1e6


class _Sink:
    def __init__(self, record: Callable[[Any], None]) -> None:
        self.record = record


def run_parts(folder: Path, n: int, sse: bool, args: Any) -> Dict[str, float]:
    bench = Bench(folder, args.exchange_log, args.batch, args.access_call)
    timer = Timer()
    # the sinks an exchange record goes to, timed apart from the tracker
    bench.metrics.call = timer.wrap("metrics.call", bench.metrics.call)  # type: ignore[method-assign]
    bench.store.record = timer.wrap("store.record", bench.store.record)  # type: ignore[method-assign]
    if bench.exchanges is not None:
        bench.recorder.exchange_log = _Sink(timer.wrap("exchanges.log", bench.exchanges.record))
    for _ in range(200):
        bench.exchange(sse, timer)
    bench.finish()
    for key in timer.spent:
        timer.spent[key] = 0.0
    bench.store_thread = 0.0
    gc.collect()
    for i in range(1, n + 1):
        bench.exchange(sse, timer)
        if i % args.batch == 0:
            bench.drain()
    before = bench.store_thread
    t0 = time.perf_counter()
    bench.finish()
    flush = time.perf_counter() - t0 - (bench.store_thread - before)
    spent = dict(timer.spent)
    # records are emitted inside tracker calls: take the sinks out of "tracker"
    inner = sum(spent.get(k, 0.0) for k in ("metrics.call", "store.record", "exchanges.log"))
    spent["tracker"] -= inner
    spent["metrics"] = spent.get("metrics", 0.0) + spent.pop("metrics.call", 0.0)
    spent["access log"] += flush  # the last partial batch's write
    spent["store thread"] = bench.store_thread
    return {k: v / n * 1e6 for k, v in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--batch", type=int, default=1000,
                        help="records per store insert (about 0.5 s at 2,000 req/s)")
    parser.add_argument("--exchange-log", action="store_true",
                        help="also write the optional exchanges.log")
    parser.add_argument("--profile", action="store_true", help="cProfile the total run")
    parser.add_argument("--only", choices=("json", "sse"))
    parser.add_argument("--src", help="a folder holding the mcpgated package to measure "
                                      "(default: this checkout)")
    parser.add_argument("--access-call", choices=("record", "exchange"), default="record",
                        help="how the access-log line is made: AccessLog.record(dict), as "
                             "GatewayResource._log does, or AccessLog.exchange(...) (proposed)")
    args = parser.parse_args()
    kinds = [args.only == "sse"] if args.only else [False, True]
    order = ["tracker", "metrics", "access log", "store.record", "store thread", "exchanges.log"]
    with tempfile.TemporaryDirectory() as tmp:
        for sse in kinds:
            name = "sse" if sse else "json"
            best: Dict[str, float] = {}
            totals: List[float] = []
            for r in range(args.repeat):
                folder = Path(tmp) / f"{name}-{r}"
                folder.mkdir()
                parts = run_parts(folder, args.n, sse, args)
                for k, v in parts.items():
                    best[k] = min(best.get(k, v), v)
                folder = Path(tmp) / f"{name}-{r}-total"
                folder.mkdir()
                totals.append(run_total(folder, args.n, sse, args))
            print(f"{name}: N={args.n}, best of {args.repeat}, us/exchange")
            for key in order:
                if key in best:
                    print(f"  {key:<14} {best[key]:7.2f}")
            print(f"  {'sum of parts':<14} {sum(best.values()):7.2f}")
            print(f"  {'total':<14} {min(totals):7.2f}   (untimed run, process CPU time)")
            if args.profile:
                folder = Path(tmp) / f"{name}-profile"
                folder.mkdir()
                run_total(folder, args.n, sse, args, profile=True)


if __name__ == "__main__":
    main()
