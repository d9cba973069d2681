#!/usr/bin/env python3
"""
The cost of rate limits counted in Redis ([ratelimit] redis) against the
in-process counters, in one run:

1. **decisions** (in process, one Python process): CPU microseconds and
   wall time per rate-limit decision of
   - `memory`: mcpgated.policy.ratelimit.Limiter (the default);
   - `redis`: mcpgated.policy.redislimit.RedisLimiter on its reactor client
     (one pipelined connection, hiredis.Reader) -- what mcpgated ships;
   - `redis approximate`: mcpgated.policy.redisapprox.ApproximateLimiter
     (decided locally; its syncs, every 10 ms, are not in this part: the
     decisions here never yield to the reactor);
   - `redis-py thread`: the same Lua script through redis-py (with hiredis)
     from the reactor's thread pool (deferToThread per decision) -- the
     alternative the issue names;
   at 1 and 64 decisions in flight. CPU is this process's (redis-server's
   own CPU is not in it).
2. **wrk** (end to end): wrk c=64 (bench/post.lua's tools/call) through
   one daemon to an nginx backend, per API: no limit, a plan limit counted
   in memory, the same limit counted in Redis (a second daemon with
   `[ratelimit] redis`), and in Redis in approximate mode (a third daemon);
   interleaved rounds; req/s and the daemon's CPU microseconds per request.

    python3 bench/ratelimit_cost.py [--decisions 20000] [--rounds 3] [--duration 8] [--no-wrk]

Needs redis-server (and nginx, wrk for part 2). Results: tables on stdout and
bench/out/ratelimit_cost.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import run as bench  # noqa: E402 -- bench/run.py's process and probe helpers

ALL_CPUS = f"0-{len(os.sched_getaffinity(0)) - 1}"
LIMIT = {"requests": 10 ** 12, "toolCalls": 10 ** 12, "perTool": {"echo": 10 ** 12},
         "periodSeconds": 3600, "scope": "plan"}
CALLS = [("tools/call", "echo")]  # three budgets: requests, tool calls, echo's


def start_redis(work: Path) -> "tuple[bench.Proc, int]":
    port = bench.free_port()
    conf = work / "redis.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {work}\n")
    proc = bench.Proc("redis", ["redis-server", str(conf)], ALL_CPUS, work)
    deadline = time.monotonic() + 10
    while "Ready to accept" not in proc.logpath.read_text():
        if time.monotonic() > deadline or not proc.alive():
            raise RuntimeError("redis-server did not start: " + proc.logpath.read_text())
        time.sleep(0.05)
    return proc, port


# --- 1. decisions in process ---------------------------------------------------


def decisions(port: int, count: int) -> List[Dict[str, Any]]:
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred, ensureDeferred, gatherResults, maybeDeferred
    from twisted.internet.task import react
    from twisted.internet.threads import deferToThread

    from mcpgated.policy.ratelimit import Limiter, parse_limit
    from mcpgated.policy.redisclient import RedisAddress, RedisClient
    from mcpgated.policy.redisapprox import ApproximateLimiter
    from mcpgated.policy.redislimit import SCRIPT, RedisLimiter

    rate = parse_limit(LIMIT, "rateLimit")
    assert rate is not None
    results: List[Dict[str, Any]] = []

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread's
        return usage.ru_utime + usage.ru_stime

    async def measure(name: str, inflight: int, decide: Callable[[int], Any]) -> None:
        for _ in range(200):  # warm up: connections, script cache
            value = decide(0)
            if isinstance(value, Deferred):
                await value
        cpu0, wall0 = cpu(), time.perf_counter()
        done = 0
        while done < count:
            batch = min(inflight, count - done)
            if batch == 1:
                value = decide(done)
                if isinstance(value, Deferred):
                    await value
            else:
                await gatherResults([maybeDeferred(decide, done + n) for n in range(batch)])
            done += batch
        cpu1, wall1 = cpu(), time.perf_counter()
        results.append({"what": name, "inflight": inflight, "decisions": count,
                        "cpu_us": (cpu1 - cpu0) / count * 1e6,
                        "wall_us": (wall1 - wall0) / count * 1e6,
                        "per_s": count / (wall1 - wall0)})
        print(f"{name:>16} inflight {inflight:>2}: {results[-1]['cpu_us']:6.1f} us CPU, "
              f"{results[-1]['wall_us']:6.1f} us wall per decision", flush=True)

    async def main(_: Any) -> None:
        import redis as redispy

        memory = Limiter(reactor)
        client = RedisClient(reactor, RedisAddress.parse(f"redis://127.0.0.1:{port}/0"),
                             timeout=5.0)
        client.startService()
        shared = RedisLimiter(client, reactor)
        approximate = ApproximateLimiter(client, reactor, reactor, interval=0.01)
        pool = redispy.ConnectionPool(host="127.0.0.1", port=port, max_connections=64)
        sync = redispy.Redis(connection_pool=pool)
        script = sync.register_script(SCRIPT)
        reactor.suggestThreadPoolSize(10)

        def in_thread(n: int) -> "Deferred[Any]":
            # what a thread-based limiter would do per decision: the same
            # keys and arguments, the script through redis-py's EVALSHA
            now = time.time()
            window = int(now // 3600)
            keys = [f"mcpgated:rl:{{bench}}:3600:{window}:{k}" for k in ("requests", "tools", "tool:echo")]
            args = [3600000, 1, 10 ** 12, 1, 10 ** 12, 1, 10 ** 12]
            return deferToThread(script, keys=keys, args=args)

        who = ("bench-api", "Keyless", "plan:Keyless")
        for inflight in (1, 64):
            await measure("memory", inflight, lambda n: memory.check_all(rate, who, CALLS))
            await measure("redis (reactor)", inflight, lambda n: shared.check_all(rate, who, CALLS))
            await measure("redis approximate", inflight,
                          lambda n: approximate.check_all(rate, who, CALLS))
            await measure("redis-py thread", inflight, in_thread)
        approximate.stop()
        client.stopService()
        pool.disconnect()

    try:
        react(lambda r: ensureDeferred(main(r)))
    except SystemExit as e:
        if e.code:
            raise
    return results


# --- 2. end to end -------------------------------------------------------------


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
    for path, plan in (("/n", {}), ("/l", {"rateLimit": LIMIT})):
        api = bench.http_json("POST", admin + "/apis", {
            "name": f"bench{path.replace('/', '-')}", "version": "1", "contextPath": path,
            "backend": f"http://127.0.0.1:{backend_port}/n",
            "plans": [{"name": "Keyless", "security": "KEY_LESS", **plan}]}, bench.ADMIN_TOKEN)
        bench.http_json("POST", f"{admin}/apis/{api['id']}/_deploy", None, bench.ADMIN_TOKEN)
    return {"name": name, "proc": proc, "port": bound["gateway"][0]}


def wrk(target: Dict[str, Any], conns: int, duration: float, path: str) -> Dict[str, Any]:
    pids = [target["proc"].pid, *bench.children(target["proc"].pid)]
    cpu0 = bench.cpu_seconds(pids)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{int(duration)}s", "--latency", "-s", str(HERE / "post.lua"),
         f"http://127.0.0.1:{target['port']}{path}"],
        capture_output=True, text=True, timeout=duration + 60).stdout
    cpu = bench.cpu_seconds(pids) - cpu0
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses: (\d+)",
                    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"):
        m = re.search(pattern, out)
        if m:
            errors += sum(int(g) for g in m.groups())
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "requests": requests, "cpu_us": cpu / requests * 1e6, "errors": errors,
            "p50_ms": bench._ms(p50.group(1)) if p50 else None,
            "p99_ms": bench._ms(p99.group(1)) if p99 else None}


def end_to_end(work: Path, redis_port: int, rounds: int, duration: float, conns: int,
               procs: List[Any]) -> Dict[str, Any]:
    backend_port = bench.free_port()
    procs.append(bench.start_nginx("backend", ALL_CPUS, work, bench.NGINX_BACKEND.format(
        port=backend_port, json=bench.JSON_ANSWER), backend_port))
    memory = start_daemon("memory", work, backend_port, "")
    shared = start_daemon("redis", work, backend_port,
                          f"[ratelimit]\nredis = redis://127.0.0.1:{redis_port}/0\n")
    approximate = start_daemon("approximate", work, backend_port,
                               f"[ratelimit]\nredis = redis://127.0.0.1:{redis_port}/0\n"
                               "mode = approximate\n")
    procs.extend([memory["proc"], shared["proc"], approximate["proc"]])
    cells = [("no limit", memory, "/n/json"), ("limit in memory", memory, "/l/json"),
             ("limit in Redis", shared, "/l/json"),
             ("limit in Redis, approximate", approximate, "/l/json")]
    for _, target, path in cells:  # warm up
        wrk(target, conns, 2, path)
    runs: Dict[str, List[Dict[str, Any]]] = {name: [] for name, _, _ in cells}
    for number in range(rounds):
        order = cells if number % 2 == 0 else list(reversed(cells))
        for name, target, path in order:
            result = wrk(target, conns, duration, path)
            runs[name].append(result)
            print(f"round {number + 1} {name}: {result}", flush=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decisions", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--conns", type=int, default=64)
    parser.add_argument("--no-wrk", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mcpgated-bench-ratelimit-"))
    procs: List[Any] = []
    summary: Dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                               "load_average_start": os.getloadavg()}
    try:
        redis_proc, redis_port = start_redis(work)
        procs.append(redis_proc)
        # in a child: the decisions' reactor must not be this process's
        # (part 2 runs after it)
        out = subprocess.run([sys.executable, __file__, "--_decisions", str(redis_port),
                              str(args.decisions)], capture_output=True, text=True, check=True)
        sys.stdout.write(out.stderr)
        summary["decisions"] = json.loads(out.stdout)
        table = ["| decision | in flight | CPU us | wall us | decisions/s |", "|---|---|---|---|---|"]
        for r in summary["decisions"]:
            table.append(f"| {r['what']} | {r['inflight']} | {r['cpu_us']:.1f} | {r['wall_us']:.1f} | "
                         f"{r['per_s']:,.0f} |")
        if not args.no_wrk:
            runs = end_to_end(work, redis_port, args.rounds, args.duration, args.conns, procs)
            summary["wrk"] = runs
            table += ["", f"wrk c={args.conns}, {args.rounds} rounds of {args.duration:g} s (medians):", "",
                      "| API | req/s | CPU us/request | p50 ms | p99 ms | errors |",
                      "|---|---|---|---|---|---|"]
            for name, results in runs.items():
                table.append(
                    f"| {name} | {statistics.median(r['rps'] for r in results):,.0f} | "
                    f"{statistics.median(r['cpu_us'] for r in results):.0f} | "
                    f"{statistics.median(r['p50_ms'] for r in results):.2f} | "
                    f"{statistics.median(r['p99_ms'] for r in results):.2f} | "
                    f"{sum(r['errors'] for r in results)} |")
        summary["load_average_end"] = os.getloadavg()
        print("\n".join(table))
        (HERE / "out").mkdir(exist_ok=True)
        (HERE / "out" / "ratelimit_cost.json").write_text(json.dumps(summary, indent=1))
    finally:
        for proc in reversed(procs):
            proc.stop()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--_decisions":
        real_stdout = sys.stdout
        sys.stdout = sys.stderr  # progress lines; the JSON alone on stdout
        found = decisions(int(sys.argv[2]), int(sys.argv[3]))
        real_stdout.write(json.dumps(found))
    else:
        main()
