#!/usr/bin/env python3
"""
mcpgated with [gateway] workers = 2 against workers = 1 on this machine,
interleaved in one run: wrk (c=64, the MCP tools/call POST of post.lua)
through each daemon to an nginx backend answering the JSON at once.

Nothing is pinned: the two workers need both CPUs, and wrk and nginx share
them (on a 2-CPU machine, the load generator and the backend take CPU
the gateway would otherwise use: the ratio is a lower bound of what the
gateway alone gains).

    python3 bench/workers.py [--rounds 3] [--duration 10] [--conns 64]

Results: a table on stdout and bench/out/workers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402 -- bench/run.py's process and probe helpers

ALL_CPUS = f"0-{len(os.sched_getaffinity(0)) - 1}"


def descendants(pid: int) -> List[int]:
    found = [pid]
    for child in bench.children(pid):
        found.extend(descendants(child))
    return found


def start_daemon(name: str, work: Path, backend_port: int, workers: int) -> Dict[str, Any]:
    folder = work / name
    folder.mkdir()
    ini = folder / "mcpgated.ini"
    ini.write_text(
        f"[gateway]\nlisten = tcp:0:interface=127.0.0.1\nworkers = {workers}\n"
        f"[admin]\nlisten = tcp:0:interface=127.0.0.1\ntoken = {bench.ADMIN_TOKEN}\n"
        "[storage]\npath = data/mcpgated.db\n"
        "[logging]\ndir = log\nlevel = info\naccess_log = on\n"
        "[daemon]\nports_file = run/ports.json\n")
    twistd = str(Path(sys.executable).parent / "twistd")
    proc = bench.Proc(name, [twistd, "-n", "--pidfile=", "mcpgated", "-c", str(ini)], ALL_CPUS, work,
                      cwd=folder)
    bound = json.loads(bench.wait_file(folder / "run" / "ports.json", proc))
    admin = f"http://127.0.0.1:{bound['admin'][0]}"
    for path, plan in (("/n", {}), ("/l", {"rateLimit": {"requests": 10 ** 12, "periodSeconds": 3600}})):
        api = bench.http_json("POST", admin + "/apis", {
            "name": f"bench{path.replace('/', '-')}", "version": "1", "contextPath": path,
            "backend": f"http://127.0.0.1:{backend_port}/n",
            "plans": [{"name": "Keyless", "security": "KEY_LESS", **plan}]}, bench.ADMIN_TOKEN)
        bench.http_json("POST", f"{admin}/apis/{api['id']}/_deploy", None, bench.ADMIN_TOKEN)
    return {"name": name, "workers": workers, "proc": proc, "port": bound["gateway"][0]}


# what each path measures: the API at /l has a plan rate limit (never reached)
PATHS = {"/n/json": "no limit", "/l/json": "rate limit"}


def wrk(target: Dict[str, Any], conns: int, duration: float, path: str = "/n/json") -> Dict[str, Any]:
    pids = descendants(target["proc"].pid)
    cpu0 = bench.cpu_seconds(pids)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{int(duration)}s", "--latency", "-s", str(HERE / "post.lua"),
         f"http://127.0.0.1:{target['port']}{path}"],
        capture_output=True, text=True, timeout=duration + 60).stdout
    cpu = bench.cpu_seconds(pids) - cpu0
    import re

    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    result: Dict[str, Any] = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "requests": requests, "cpu_s": cpu, "processes": len(pids), "errors": 0}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        result[f"p{pct}_ms"] = bench._ms(m.group(1)) if m else None
    for pattern in (r"Non-2xx or 3xx responses: (\d+)",
                    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"):
        m = re.search(pattern, out)
        if m:
            result["errors"] += sum(int(g) for g in m.groups())
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--conns", type=int, default=64)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mcpgated-bench-workers-"))
    procs = []
    try:
        backend_port = bench.free_port()
        nginx = bench.start_nginx("backend", ALL_CPUS, work, bench.NGINX_BACKEND.format(
            port=backend_port, json=bench.JSON_ANSWER), backend_port)
        procs.append(nginx)
        targets = [start_daemon("workers-1", work, backend_port, 1),
                   start_daemon("workers-2", work, backend_port, 2)]
        procs.extend(t["proc"] for t in targets)
        for target in targets:  # warm up (connections, first routes)
            for path in PATHS:
                wrk(target, args.conns, 2, path)
        runs: Dict[str, List[Dict[str, Any]]] = {
            f"{t['name']} {what}": [] for what in PATHS.values() for t in targets}
        ratios: Dict[str, List[float]] = {what: [] for what in PATHS.values()}
        for number in range(args.rounds):
            for path, what in PATHS.items():
                order = targets if number % 2 == 0 else list(reversed(targets))
                got = {}
                for target in order:
                    got[target["name"]] = result = wrk(target, args.conns, args.duration, path)
                    runs[f"{target['name']} {what}"].append(result)
                    print(f"round {number + 1} {target['name']} {what}: {result}", flush=True)
                ratios[what].append(got["workers-2"]["rps"] / got["workers-1"]["rps"])
        table = ["| target | req/s (median) | p50 ms | p99 ms | CPU us/request (all its processes) | errors |",
                 "|---|---|---|---|---|---|"]
        summary: Dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                   "conns": args.conns, "duration": args.duration,
                                   "rounds": args.rounds, "runs": runs, "ratios": ratios,
                                   "load_average": os.getloadavg()}
        for name, results in runs.items():
            rps = statistics.median(r["rps"] for r in results)
            p50 = statistics.median(r["p50_ms"] for r in results)
            p99 = statistics.median(r["p99_ms"] for r in results)
            cpu = statistics.median(r["cpu_s"] / r["requests"] * 1e6 for r in results)
            errors = sum(r["errors"] for r in results)
            table.append(f"| {name} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {cpu:.0f} | {errors} |")
        table.append("")
        for what, values in ratios.items():
            table.append(f"workers-2 / workers-1, {what}, per round: "
                         f"{', '.join(f'{r:.2f}x' for r in values)}; median {statistics.median(values):.2f}x")
        # where the CPU goes: workers-2 with one worker paused (SIGSTOP), so one
        # worker serves as the single process does; CPU per request by process
        parent = targets[1]["proc"].pid
        kids = bench.children(parent)
        split: Dict[str, List[float]] = {"workers-1 process": [], "worker": [], "twistd parent": []}
        os.kill(kids[1], signal.SIGSTOP)
        try:
            for number in range(args.rounds):
                for target in (targets if number % 2 == 0 else list(reversed(targets))):
                    pids = descendants(target["proc"].pid)
                    before = {pid: bench.cpu_seconds([pid]) for pid in pids}
                    result = wrk(target, args.conns, args.duration)
                    per = {pid: (bench.cpu_seconds([pid]) - before[pid]) / result["requests"] * 1e6
                           for pid in pids}
                    if target is targets[0]:
                        split["workers-1 process"].append(per[pids[0]])
                    else:
                        split["worker"].append(per[kids[0]])
                        split["twistd parent"].append(per[parent])
        finally:
            os.kill(kids[1], signal.SIGCONT)
        summary["one_worker_split_us"] = split
        table.append("")
        table.append("one worker serving (the other paused), CPU us/request by process, median: " + ", ".join(
            f"{name} {statistics.median(values):.0f}" for name, values in split.items()))
        summary["load_average_end"] = os.getloadavg()
        table.append(f"load average at start {summary['load_average']}, at end {summary['load_average_end']}")
        print("\n".join(table))
        out = HERE / "out"
        out.mkdir(exist_ok=True)
        (out / "workers.json").write_text(json.dumps(summary, indent=1))
    finally:
        for proc in reversed(procs):
            proc.stop()


if __name__ == "__main__":
    main()
