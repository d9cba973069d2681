"""
CPU per proxied exchange, in process: the gateway's own Python work for one
small C{tools/call} POST, from the request's bytes to the answer's, without
sockets and without the noise of a shared machine.

The gateway listener's channel (C{http11.py}) is fed the raw request over
an in-memory transport; the resource routes it, reads the body, makes the
exchange's observer, and asks a backend client that answers at once with
nginx's JSON (or SSE) answer; the answer goes through the relay, the
response reader, the tracker, the metrics, the access log and the analytics
store's queue. What is left out: the kernel (recv, send, epoll), llhttp in
the backend client, and the analytics store's thread.

    python3 bench/exchange_micro.py [--src DIR ...] [--sse] [-n 5000] [--repeat 9]

Each C{--src} is a folder holding a C{mcpgated/} package (e.g. from
C{git archive REV mcpgated | tar -x -C DIR}); the trees run alternately,
best of C{--repeat} runs of C{-n} exchanges each (process CPU time).

On a shared or virtual machine, time varies by 20 % from run to run;
C{--opcodes} counts instead the Python bytecodes one exchange executes
(C{sys.settrace} opcode events), which is exact and repeatable: a proxy
for the gateway's own CPU, blind to C code (json, llhttp, the kernel).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

REQUEST = (b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo",'
           b'"arguments":{"message":"hello from wrk"}}}')
JSON_ANSWER = (b'{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text",'
               b'"text":"Echo: hello from wrk"}],"isError":false}}')
SSE_ANSWER = b"event: message\ndata: " + JSON_ANSWER + b"\n\n"
SESSION = b"bench-session-0123456789abcdef"  # the backend's session id


def _child(n: int, repeat: int, sse: bool, gc_tuned: bool = False,
           lb: bool = False, tracing: bool = False) -> Dict[str, Any]:
    """
    Runs in a fresh interpreter with the tree under test first on sys.path.
    """
    from twisted.internet.defer import succeed
    from twisted.internet.task import Clock
    from twisted.python.failure import Failure
    from twisted.test.proto_helpers import StringTransport
    from twisted.web.client import ResponseDone

    from mcpgated._twisted_compat import headers_from_raw
    from mcpgated.analytics.metrics import Metrics
    from mcpgated.analytics.recorder import Recorder
    from mcpgated.analytics.store import AnalyticsStore
    from mcpgated.config import parse_text
    from mcpgated.logs import AccessLog, open_rotating
    from mcpgated.model import STARTED, ApiDefinition, ApiRecord, Plan
    from mcpgated.proxy.http11 import GatewayHTTPFactory
    from mcpgated.proxy.resource import GatewayResource
    from mcpgated.routing import RouteTable

    answer = SSE_ANSWER if sse else JSON_ANSWER

    class Transport:
        def pauseProducing(self) -> None:
            pass

        def resumeProducing(self) -> None:
            pass

        def stopProducing(self) -> None:
            pass

    class Response:
        code = 200
        phrase = b"OK"
        length = len(answer)

        def __init__(self) -> None:
            # as the backend client builds them: a dictionary from its parser
            self.headers = headers_from_raw({
                b"Server": [b"nginx/1.22.1"], b"Date": [b"Thu, 03 Dec 2026 14:00:00 GMT"],
                b"Content-Type": [b"text/event-stream" if sse else b"application/json"],
                b"Content-Length": [b"%d" % len(answer)], b"Connection": [b"keep-alive"],
                b"Mcp-Session-Id": [SESSION]})

        def deliverBody(self, protocol: Any) -> None:
            protocol.makeConnection(Transport())
            protocol.dataReceived(answer)
            protocol.connectionLost(Failure(ResponseDone()))

    class Client:
        def request(self, method: bytes, url: bytes, headers: Any, body: Any) -> Any:
            return succeed(Response())

    class Upstreams:
        agent = None
        client = Client()

        def default_client(self, idle_timeout: float = 0) -> Any:
            return self.client

    folder = Path(tempfile.mkdtemp(prefix="exchange-micro-"))
    clock = Clock()
    clock.advance(1_800_000_000)
    cfg = parse_text("")
    store = AnalyticsStore(clock, folder / "analytics.db")
    metrics = Metrics(dropped=lambda: 0)
    recorder = Recorder(clock, store, metrics, None)
    access_log = AccessLog(clock, open_rotating(folder, "access.log", 10 * 1024 * 1024, 2))
    routes = RouteTable()
    definition = ApiDefinition("bench", "1", "", "/n", "http://127.0.0.1:9/n",
                               (Plan("Keyless"),))
    api_id = "0f8e2c6a-1b3d-4e5f-8a9b-0c1d2e3f4a5b"
    session = SESSION
    sealer = None
    if lb:  # two endpoints: the client's session id sealed, unsealed on each request
        import attrs

        from mcpgated.model import Endpoint
        from mcpgated.sealing import Sealer, endpoint_id

        definition = attrs.evolve(definition, endpoints=(
            Endpoint("http://127.0.0.1:9/n"), Endpoint("http://127.0.0.1:10/n")))
        sealer = Sealer([bytes(32)])
        session = sealer.seal(api_id, endpoint_id("http://127.0.0.1:9/n"),
                              SESSION.decode()).encode()
    routes.load([ApiRecord(id=api_id, definition=definition,
                           deployed=definition, state=STARTED, created_at=0.0, updated_at=0.0,
                           deployed_at=0.0)])
    resource = GatewayResource(routes=routes, upstreams=Upstreams(), clock=clock,  # type: ignore[arg-type]
                               access_log=access_log, limits=cfg.limits, recorder=recorder)
    if sealer is not None:
        resource.sealer = sealer
    if tracing:  # [tracing] on, ratio 1.0: spans made and queued; the exporter a no-op
        from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

        from mcpgated.analytics.tracing import Tracing

        class Collector(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        resource.tracing = Tracing(None, exporter=Collector())
    factory = GatewayHTTPFactory(resource, clock, cfg.limits.max_body, lambda size: b"")
    channel = factory.buildProtocol(None)
    transport = StringTransport(peerAddress=None)
    channel.makeConnection(transport)
    head = (b"POST /n/json HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
            b"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            b"Mcp-Session-Id: %s\r\n"
            b"Mcp-Protocol-Version: 2025-06-18\r\nContent-Length: %d\r\n\r\n"
            % (session, len(REQUEST)))
    wire = head + REQUEST

    def run(count: int) -> float:
        t0 = time.process_time()
        for _ in range(count):
            channel.dataReceived(wire)
            transport.clear()
            if len(store._queue) > 1000:  # the store thread's swap, not its inserts
                store._queue = []
            clock.advance(0.001)
        return time.process_time() - t0

    run(200)
    if gc_tuned:
        import gc

        gc.collect()
        gc.freeze()  # as mcpgated.collector.tune() does once the daemon has started
        gc.set_threshold(50_000, *gc.get_threshold()[1:])
    channel.dataReceived(wire)
    out = transport.value()
    assert b"200 OK" in out and answer in out, out[:300]
    assert b"Mcp-Session-Id: " + session in out, out[:600]  # the client's id, sealed or not
    transport.clear()
    best = min(run(n) for _ in range(repeat))
    return {"us_per_exchange": best / n * 1e6}


def _opcodes(sse: bool, lb: bool = False, tracing: bool = False) -> Dict[str, Any]:
    """
    Python bytecodes per exchange: the count for 2N exchanges less the
    count for N (the setup and warm-up cancel out).
    """
    count = [0]

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode":
            count[0] += 1
        return tracer

    def measure(n: int) -> int:
        count[0] = 0
        sys.settrace(tracer)
        try:
            _child(n, 1, sse, lb=lb, tracing=tracing)
        finally:
            sys.settrace(None)
        return count[0]

    measure(10)  # imports
    once, twice = measure(300), measure(600)
    return {"opcodes_per_exchange": (twice - once) / 300}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", action="append", default=[],
                        help="a folder holding mcpgated/ (default: this checkout); repeatable")
    parser.add_argument("--sse", action="store_true", help="answer with one SSE event")
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the trees")
    parser.add_argument("--gc-tuned", action="store_true",
                        help="freeze startup objects and raise the young GC threshold first")
    parser.add_argument("--opcodes", action="store_true",
                        help="count Python bytecodes per exchange instead of timing")
    parser.add_argument("--lb", action="store_true",
                        help="a load-balanced API (two endpoints), the session id sealed; "
                             "as a tree's suffix: TREE+lb")
    parser.add_argument("--tracing", action="store_true",
                        help="[tracing] on at ratio 1.0 (a no-op exporter); as a tree's suffix: "
                             "TREE+tracing")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.opcodes:
            print(json.dumps(_opcodes(args.sse, args.lb, args.tracing)))
        else:
            print(json.dumps(_child(args.n, args.repeat, args.sse, args.gc_tuned, args.lb,
                                    args.tracing)))
        return
    # a tree, or TREE+gc: the tree with the collector tuned; TREE+lb: a load-balanced API
    trees = args.src or [str(Path(__file__).resolve().parent.parent)]
    results: Dict[str, List[float]] = {tree: [] for tree in trees}
    for _ in range(args.rounds):
        for tree in trees:
            folder, _, variant = tree.partition("+")
            env = dict(os.environ, PYTHONPATH=folder)
            out = subprocess.run([sys.executable, __file__, "--child", folder, "-n", str(args.n),
                                  "--repeat", str(args.repeat)] + (["--sse"] if args.sse else [])
                                 + (["--gc-tuned"] if variant == "gc" or args.gc_tuned else [])
                                 + (["--opcodes"] if args.opcodes else [])
                                 + (["--lb"] if variant == "lb" or args.lb else [])
                                 + (["--tracing"] if variant == "tracing" or args.tracing else []),
                                 env=env, capture_output=True, text=True, cwd=folder)
            if out.returncode:
                raise SystemExit(out.stderr)
            result = json.loads(out.stdout.splitlines()[-1])
            results[tree].append(result.get("us_per_exchange", result.get("opcodes_per_exchange")))
        if args.opcodes:
            break  # exact: one round says it all
    unit = "opcodes/exchange" if args.opcodes else "us/exchange"
    base = min(results[trees[0]])
    for tree, values in results.items():
        best = min(values)
        print(f"{tree:40} {best:8.1f} {unit}  x{best / base:.3f}  (rounds: "
              f"{', '.join(f'{v:.1f}' for v in values)})")


if __name__ == "__main__":
    main()
