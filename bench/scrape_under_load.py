#!/usr/bin/env python3
"""
Does a Prometheus scrape stall proxied traffic? (issue #12, item 1)

For each target (this tree, and optionally older trees with --before):
start nginx as the backend and mcpgated on CPU 1 (bench/run.py's helpers),
send 20,000 made-up JSON-RPC methods and 20,000 made-up tool names through
it (batches of 200), note RSS and the size and render time of /metrics,
then run wrk (c=16, small tools/call POSTs) twice without and twice with a
client scraping /metrics (every --interval seconds, default 1; 0: back to
back), interleaved, and compare p50/p99/max.

    python3 bench/scrape_under_load.py                      # a snapshot of this tree
    git archive <commit> mcpgated | tar -x -C /tmp/before   # the code before the fix
    python3 bench/scrape_under_load.py --before before=/tmp/before

Needs nginx, wrk and taskset (python3 bench/run.py --setup). Not part of the
test suite. Results: a table on stdout and bench/out/scrape_under_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402  (bench/run.py: processes, nginx, mcpgated, wrk)

FLOOD = 20_000
BATCH = 200


def _post_raw(port: int, path: str, bodies: List[bytes]) -> None:
    """
    Send each body as a POST on one keep-alive connection, reading each answer.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        reader = s.makefile("rb")
        for body in bodies:
            s.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      b"Accept: application/json, text/event-stream\r\n"
                      b"MCP-Protocol-Version: 2025-03-26\r\nContent-Length: %d\r\n\r\n%s"
                      % (path.encode(), len(body), body))
            length, chunked = 0, False
            reader.readline()
            while True:
                line = reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
                    chunked = True
            if chunked:
                while True:
                    size = int(reader.readline().split(b";")[0], 16)
                    reader.read(size + 2)
                    if size == 0:
                        break
            else:
                reader.read(length)


def flood(port: int) -> float:
    """
    20,000 made-up methods and 20,000 made-up tool names; the seconds it took.
    """
    bodies = []
    for start in range(0, FLOOD, BATCH):
        bodies.append(json.dumps([{"jsonrpc": "2.0", "id": n, "method": f"made/up-{n}"}
                                  for n in range(start, start + BATCH)]).encode())
        bodies.append(json.dumps([{"jsonrpc": "2.0", "id": n, "method": "tools/call",
                                   "params": {"name": f"tool-{n}-" + "x" * 40}}
                                  for n in range(start, start + BATCH)]).encode())
    t0 = time.monotonic()
    _post_raw(port, "/n/json", bodies)
    return time.monotonic() - t0


def scrape(admin: str) -> tuple:
    request = urllib.request.Request(admin + "/metrics",
                                     headers={"Authorization": f"Bearer {run.ADMIN_TOKEN}"})
    t0 = time.monotonic()
    with urllib.request.urlopen(request, timeout=120) as response:
        size = len(response.read())
    return size, time.monotonic() - t0


class Scraper(threading.Thread):
    """Scrapes /metrics every C{interval} seconds (0: back to back) until stopped."""

    def __init__(self, admin: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.admin = admin
        self.interval = interval
        self.stop = threading.Event()
        self.times: List[float] = []

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            self.times.append(scrape(self.admin)[1])
            self.stop.wait(max(0.0, self.interval - (time.monotonic() - started)))


def wrk(target: "run.Target", duration: float) -> Dict[str, Any]:
    """
    bench/run.py's wrk cell (c=16, tools/call POSTs to nginx's JSON answer),
    plus wrk's maximum latency.
    """
    out = run.subprocess.run(
        ["taskset", "-c", run.LOAD_CPU, "wrk", "-t1", "-c16", f"-d{int(duration)}s", "--latency",
         "-s", str(HERE / "post.lua"), target.url("/n/json")],
        capture_output=True, text=True, timeout=duration + 60).stdout
    result: Dict[str, Any] = {"rps": float(run.re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct in ("50", "99"):
        m = run.re.search(rf"^\s+{pct}%\s+(\S+)", out, run.re.M)
        result[f"p{pct}_ms"] = run._ms(m.group(1)) if m else None
    m = run.re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", out, run.re.M)
    result["max_ms"] = run._ms(m.group(1)) if m else None
    m = run.re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = int(m.group(1)) if m else 0
    return result


def measure(name: str, src: Optional[str], work: Path, backend_port: int,
            duration: float, rounds: int, interval: float) -> Dict[str, Any]:
    target = run.start_mcpgated(name, sys.executable, work, {"/n/": backend_port, "/a/": backend_port},
                                src, {})
    try:
        bound = json.loads((work / name / "run" / "ports.json").read_text())
        admin = f"http://127.0.0.1:{bound['admin'][0]}"
        pids = target.pids()
        time.sleep(1.0)
        rss_before = run.status_kb(pids, "VmRSS")
        flood_s = flood(target.port)
        rss_after = run.status_kb(pids, "VmRSS")
        size, render_s = scrape(admin)
        result: Dict[str, Any] = {
            "flood_seconds": round(flood_s, 2), "rss_before_mb": round(rss_before / 1024, 1),
            "rss_after_flood_mb": round(rss_after / 1024, 1), "metrics_bytes": size,
            "scrape_seconds": round(render_s, 3), "idle": [], "scraping": [], "scrapes": []}
        for _ in range(rounds):
            result["idle"].append(wrk(target, duration))
            scraper = Scraper(admin, interval)
            scraper.start()
            result["scraping"].append(wrk(target, duration))
            scraper.stop.set()
            scraper.join()
            result["scrapes"].extend(scraper.times)
        result["rss_end_mb"] = round(run.status_kb(pids, "VmRSS") / 1024, 1)
        return result
    finally:
        target.proc.stop()


def _median(cells: List[Dict[str, Any]], key: str) -> float:
    return statistics.median(c[key] for c in cells if c.get(key) is not None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", action="append", default=[],
                        help="NAME=SRC: also measure the mcpgated/ package under SRC")
    parser.add_argument("--src", default="",
                        help="measure the mcpgated/ package under SRC instead of a snapshot of this tree")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk cell")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds between scrapes during wrk (0: back to back)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {int(run.LOAD_CPU)})
    work = Path(tempfile.mkdtemp(prefix="mcpgated-scrape-"))
    snapshot = Path(args.src) if args.src else work / "src"
    if not args.src:
        shutil.copytree(run.REPO / "mcpgated", snapshot / "mcpgated",
                        ignore=shutil.ignore_patterns("__pycache__"))
    targets = [("mcpgated", str(snapshot))] + [tuple(b.split("=", 1)) for b in args.before]
    backend_port = run.free_port()
    nginx = run.start_nginx("backend", run.LOAD_CPU, work, run.NGINX_BACKEND.format(
        port=backend_port, json=run.JSON_ANSWER), backend_port)
    results: Dict[str, Any] = {}
    try:
        for name, src in targets:
            run.log(f"{name}: flood, then wrk {args.rounds}x{args.duration:.0f}s idle and scraping"
                    f" every {args.interval}s")
            results[name] = measure(name, src, work, backend_port, args.duration, args.rounds,
                                    args.interval)
    finally:
        nginx.stop()
    out = run.REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "scrape_under_load.json").write_text(json.dumps(
        {"interval": args.interval, "duration": args.duration, "results": results}, indent=1))
    print("| target | RSS before -> after flood | /metrics size | scrape s (idle) | scrapes during wrk "
          "(median s) | req/s idle / scraping | p50 ms idle / scraping | p99 ms idle / scraping "
          "| max ms idle / scraping |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        idle, busy = r["idle"], r["scraping"]
        print(f"| {name} | {r['rss_before_mb']} -> {r['rss_after_flood_mb']} MB | "
              f"{r['metrics_bytes'] / 1024:,.0f} KB | {r['scrape_seconds']:.3f} | "
              f"{len(r['scrapes'])} ({statistics.median(r['scrapes']) if r['scrapes'] else 0:.3f}) | "
              f"{_median(idle, 'rps'):,.0f} / {_median(busy, 'rps'):,.0f} | "
              f"{_median(idle, 'p50_ms'):.3f} / {_median(busy, 'p50_ms'):.3f} | "
              f"{_median(idle, 'p99_ms'):.3f} / {_median(busy, 'p99_ms'):.3f} | "
              f"{_median(idle, 'max_ms'):.1f} / {_median(busy, 'max_ms'):.1f} |")


if __name__ == "__main__":
    main()
