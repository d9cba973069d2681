#!/usr/bin/env python3
"""
mcpgated speed benchmark: direct vs nginx vs a minimal twisted.web relay vs
mcpgated (CPython, and PyPy when available), interleaved in one run.

Each proxy runs alone on CPU 1 (taskset); wrk, the backends and the probes
run on CPU 0. Only loopback traffic. Not part of the test suite.

    python3 bench/run.py --setup      # once: apt/pip installs (needs root)
    python3 bench/run.py              # the whole run (~15 minutes)
    python3 bench/run.py --quick      # a smoke run (~3 minutes)

Results: bench/out/results.json and bench/out/results.md (tables).
See bench/README.md for what is measured and how to read it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LOAD_CPU, PROXY_CPU = "0", "1"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mcpgated-bench"
PYPY_VENV = CACHE / "pypy-venv"
TOOLS_VENV = CACHE / "tools-venv"
APT_PACKAGES = ["nginx-light", "wrk", "util-linux", "pypy3", "pypy3-venv"]
ADMIN_TOKEN = "bench-admin-token"
JSON_ANSWER = ('{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text",'
               '"text":"Echo: hello from wrk"}],"isError":false}}')
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*args: Any) -> None:
    print(time.strftime("%H:%M:%S"), *args, flush=True)


# --- setup -------------------------------------------------------------------------

def install_requires() -> List[str]:
    """
    mcpgated's install_requires from setup.cfg, without version floors (the
    PyPy venv takes what supports PyPy 3.9; mcpgated is imported from the tree).
    """
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    lines = cfg.get("options", "install_requires", fallback="").split("\n")
    return [re.split(r"[<>=!~;]", line.strip())[0] for line in lines if line.strip()]


def setup() -> None:
    """
    The one-time installs: Debian packages, a PyPy venv with mcpgated's
    dependencies, a tools venv with py-spy.
    """
    subprocess.run(["apt-get", "update"], check=True)
    subprocess.run(["apt-get", "install", "-y", *APT_PACKAGES], check=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    if not (PYPY_VENV / "bin" / "pypy3").exists():
        subprocess.run(["pypy3", "-m", "venv", str(PYPY_VENV)], check=True)
    # cryptography has no source-buildable release here (Rust crates are not
    # reachable): take the newest wheel built for this PyPy.
    subprocess.run([str(PYPY_VENV / "bin" / "pip"), "install", "-q",
                    "--only-binary=cryptography,cffi", *install_requires()], check=True)
    if not (TOOLS_VENV / "bin" / "py-spy").exists():
        subprocess.run([sys.executable, "-m", "venv", str(TOOLS_VENV)], check=True)
        subprocess.run([str(TOOLS_VENV / "bin" / "pip"), "install", "-q", "py-spy"], check=True)


def check_tools(args: argparse.Namespace) -> None:
    missing = [t for t in ("nginx", "wrk", "taskset") if shutil.which(t) is None]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: run `python3 bench/run.py --setup` once "
                 f"(apt-get install -y {' '.join(APT_PACKAGES)})")
    if not Path(args.python).exists():
        sys.exit(f"no interpreter at {args.python} (the project venv: python3 -m venv .venv && "
                 ".venv/bin/pip install -e .)")
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 CPUs (one for the proxy, one for the load)")


# --- processes ---------------------------------------------------------------------

def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Proc:
    """A child on one CPU, in its own session, output to a file."""

    def __init__(self, name: str, argv: List[str], cpu: str, workdir: Path,
                 env: Optional[Dict[str, str]] = None, cwd: Optional[Path] = None) -> None:
        self.name = name
        self.logpath = workdir / f"{name}.out"
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.popen = subprocess.Popen(
            ["taskset", "-c", cpu, *argv], stdout=open(self.logpath, "wb"),
            stderr=subprocess.STDOUT, env=full_env, cwd=str(cwd or workdir),
            start_new_session=True, preexec_fn=_raise_nofile)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
            except ProcessLookupError:
                pass


def wait_file(path: Path, proc: Proc, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            text = path.read_text().strip()
            if text:
                return text
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.logpath.read_text()[-3000:]}")
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} not ready after {timeout}s:\n{proc.logpath.read_text()[-3000:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> List[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cpu_seconds(pids: List[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def status_kb(pids: List[int], key: str) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def reset_peak(pids: List[int]) -> None:
    for pid in pids:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            pass


def http_json(method: str, url: str, body: Any = None, token: Optional[str] = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
    return json.loads(raw) if raw else None


# --- the targets -------------------------------------------------------------------

class Target:
    """Where requests go: host:port, and the processes whose CPU/RSS count."""

    def __init__(self, name: str, port: int, proc: Optional[Proc], kind: str) -> None:
        self.name, self.port, self.proc, self.kind = name, port, proc, kind
        self.direct_ports: Dict[str, int] = {}

    def port_for(self, path: str) -> int:
        if self.direct_ports:
            return self.direct_ports["/a/" if path.startswith("/a/") else "/n/"]
        return self.port

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port_for(path)}{path}"

    def pids(self) -> List[int]:
        if self.proc is None:
            return []
        if self.kind == "nginx":  # the worker does the work
            return children(self.proc.pid) or [self.proc.pid]
        return [self.proc.pid]


NGINX_COMMON = """
worker_processes 1;
master_process on;
pid {dir}/{name}.pid;
error_log {dir}/{name}.error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 16000; }}
http {{
  client_body_temp_path {dir}/{name}-body;
  proxy_temp_path {dir}/{name}-proxy;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  {http}
}}
"""

NGINX_BACKEND = """
  access_log off;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = /n/json {{ default_type application/json; return 200 '{json}'; }}
    location = /n/sse {{ default_type text/event-stream;
                        return 200 'event: message\\ndata: {json}\\n\\n'; }}
  }}
"""

NGINX_PROXY = """
  access_log {dir}/{name}.access.log combined buffer=64k flush=1s;
  upstream nbackend {{ server 127.0.0.1:{nport}; keepalive 256;
                      keepalive_requests 100000000; keepalive_timeout 300s; }}
  upstream abackend {{ server 127.0.0.1:{aport}; keepalive 256;
                      keepalive_requests 100000000; keepalive_timeout 300s; }}
  server {{
    listen 127.0.0.1:{port};
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_buffering off;
    proxy_request_buffering off;
    proxy_read_timeout 300s;
    location /n/ {{ proxy_pass http://nbackend; }}
    location /a/ {{ proxy_pass http://abackend; }}
  }}
"""


def start_nginx(name: str, cpu: str, work: Path, http: str, port: int) -> Proc:
    conf = work / f"{name}.conf"
    conf.write_text(NGINX_COMMON.format(dir=work, name=name, http=http))
    proc = Proc(name, ["nginx", "-p", str(work), "-c", str(conf), "-e", str(work / f"{name}.error.log"),
                       "-g", "daemon off;"], cpu, work)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if not proc.alive():
                raise RuntimeError(f"{name}: {(work / f'{name}.error.log').read_text()}") from None
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen")


def start_mcpgated(name: str, python: str, work: Path, ports: Dict[str, int],
                   src: Optional[str], env: Dict[str, str], logging: str = "on") -> Target:
    """
    @param logging: C{on} (access log and exchange log, metadata only, the
        defaults), C{off} (the APIs' exchange log records off:
        C{analytics.logging = false}; inspection, metrics and the access log
        stay), C{none} (access log off and C{[analytics] enabled = off}: no
        inspection, no metrics, no records), or C{capture} (exchange log
        capturing headers and bodies).
    """
    folder = work / name
    folder.mkdir()
    ini = folder / "mcpgated.ini"
    ini.write_text(
        "[gateway]\nlisten = tcp:0:interface=127.0.0.1\n"
        f"[admin]\nlisten = tcp:0:interface=127.0.0.1\ntoken = {ADMIN_TOKEN}\n"
        "[storage]\npath = data/mcpgated.db\n"
        f"[logging]\ndir = log\nlevel = info\naccess_log = {'off' if logging == 'none' else 'on'}\n"
        "[daemon]\nports_file = run/ports.json\n"
        + ("[analytics]\nenabled = off\n" if logging == "none" else ""))
    argv = [python, str(HERE / "launch_mcpgated.py")]
    if src:
        argv += ["--src", src]
    argv.append(str(ini))
    proc = Proc(name, argv, PROXY_CPU, work, env=env, cwd=folder)
    bound = json.loads(wait_file(folder / "run" / "ports.json", proc))
    admin = f"http://127.0.0.1:{bound['admin'][0]}"
    for prefix, port in (("/n", ports["/n/"]), ("/a", ports["/a/"])):
        api = http_json("POST", admin + "/apis", {
            "name": f"bench{prefix.replace('/', '-')}", "version": "1", "contextPath": prefix,
            "backend": f"http://127.0.0.1:{port}{prefix}",
            "plans": [{"name": "Keyless", "security": "KEY_LESS"}],
            "analytics": {"capture": "bodies" if logging == "capture" else "off",
                          **({"logging": False} if logging == "off" else {})}}, ADMIN_TOKEN)
        record = http_json("POST", f"{admin}/apis/{api['id']}/_deploy", None, ADMIN_TOKEN)
        if record and record.get("state") != "STARTED":
            http_json("POST", f"{admin}/apis/{api['id']}/_start", None, ADMIN_TOKEN)
    return Target(name, bound["gateway"][0], proc, "python")


def start_relay(name: str, python: str, work: Path, ports: Dict[str, int]) -> Target:
    portfile = work / f"{name}.port"
    proc = Proc(name, [python, str(HERE / "minirelay.py"), str(portfile),
                       f"/n/=http://127.0.0.1:{ports['/n/']}",
                       f"/a/=http://127.0.0.1:{ports['/a/']}"], PROXY_CPU, work)
    return Target(name, int(wait_file(portfile, proc)), proc, "python")


# --- probes --------------------------------------------------------------------------

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * UNITS[m.group(2)]


def run_wrk(target: Target, path: str, conns: int, duration: float) -> Dict[str, Any]:
    pids = target.pids()
    cpu0 = cpu_seconds(pids)
    out = subprocess.run(
        ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{conns}", f"-d{int(duration)}s", "--latency",
         "-s", str(HERE / "post.lua"), target.url(path)],
        capture_output=True, text=True, timeout=duration + 60).stdout
    cpu = cpu_seconds(pids) - cpu0
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    requests = int(m.group(1)) if m else 0
    result = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)) if requests else 0.0,
        "requests": requests,
        "cpu_us": cpu / requests * 1e6 if requests and pids else None,
        "errors": 0,
    }
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        result[f"p{pct}_ms"] = _ms(m.group(1)) if m else None
    for pattern in (r"Non-2xx or 3xx responses: (\d+)",
                    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"):
        m = re.search(pattern, out)
        if m:
            result["errors"] += sum(int(g) for g in m.groups())
    return result


def sse_latency(target: Target, method: str, events: int, interval_ms: float) -> List[float]:
    """Per-event delay (ms) from the backend's write to the client's read."""
    path = f"/a/ticks?n={events}&ms={interval_ms}"
    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ticks"}}'
    req = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json, "
           f"text/event-stream\r\nContent-Type: application/json\r\n").encode()
    req += (b"Content-Length: %d\r\n\r\n%s" % (len(body), body)) if method == "POST" else b"\r\n"
    s = socket.create_connection(("127.0.0.1", target.port_for(path)), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(req)
    buf, out = b"", []
    stamp = re.compile(rb'"t":(\d+)\}')
    try:
        while len(out) < events:
            data = s.recv(65536)
            now = time.monotonic_ns()
            if not data:
                break
            buf += data
            last = 0
            for m in stamp.finditer(buf):
                out.append((now - int(m.group(1))) / 1e6)
                last = m.end()
            buf = buf[last:]
    finally:
        s.close()
    return out[5:]  # the first events include the stream's setup


def ttfb(target: Target, count: int) -> List[float]:
    """New connection, one tools/call POST: connect to first response byte (ms)."""
    body = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}'
    req = (b"POST /n/json HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           b"Accept: application/json, text/event-stream\r\nConnection: close\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    port = target.port_for("/n/json")
    times = []
    for _ in range(count):
        t0 = time.monotonic_ns()
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(req)
        first = s.recv(65536)
        times.append((time.monotonic_ns() - t0) / 1e6)
        while first:
            first = s.recv(65536)
        s.close()
    return times[3:]


def backend_stats(port: int) -> Dict[str, int]:
    return http_json("GET", f"http://127.0.0.1:{port}/a/stats")


async def _open_streams(port: int, count: int, into: list) -> None:
    req = (b"GET /a/idle HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
           b"Mcp-Session-Id: bench-session\r\n\r\n")
    gate = asyncio.Semaphore(24)  # stays under the listeners' default backlog (50)

    async def one() -> None:
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(req)
            seen = b""
            while b"ready" not in seen:
                data = await asyncio.wait_for(reader.read(4096), 30)
                if not data:
                    raise RuntimeError("stream closed before its first event")
                seen += data
            into.append(writer)

    await asyncio.gather(*(one() for _ in range(count)))


def idle_streams(target: Target, backend_port: int, steps: List[int]) -> Dict[str, Any]:
    pids = target.pids()
    open_before = backend_stats(backend_port)["open_streams"]
    time.sleep(0.5)
    base = status_kb(pids, "VmRSS")
    writers: list = []
    loop = asyncio.new_event_loop()
    result: Dict[str, Any] = {"rss_base_kb": base}
    try:
        for n in steps:
            loop.run_until_complete(_open_streams(target.port_for("/a/idle"), n - len(writers),
                                                  writers))
            time.sleep(1.0)
            rss = status_kb(pids, "VmRSS")
            result[f"kb_per_stream_{n}"] = (rss - base) / n
            result[f"rss_{n}_kb"] = rss
            result[f"upstream_open_{n}"] = backend_stats(backend_port)["open_streams"] - open_before
        for w in writers:
            w.transport.abort()
        loop.run_until_complete(asyncio.sleep(0.1))
    finally:
        loop.close()
    deadline = time.monotonic() + 10
    left = None
    while time.monotonic() < deadline:
        left = backend_stats(backend_port)["open_streams"] - open_before
        if left <= 0:
            break
        time.sleep(0.2)
    result["upstream_left_after_close"] = left
    result["seconds_to_release"] = round(10 - (deadline - time.monotonic()), 1)
    return result


def big_stream(target: Target, backend_port: int, stalled: bool, mb: int = 10,
               hold: float = 4.0) -> Dict[str, Any]:
    pids = target.pids()
    time.sleep(0.3)
    reset_peak(pids)
    base = status_kb(pids, "VmRSS")
    path = f"/a/big?mb={mb}"
    s = socket.create_connection(("127.0.0.1", target.port_for(path)), timeout=30)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n".encode())
    t0 = time.monotonic()
    result: Dict[str, Any] = {"rss_base_kb": base}
    if stalled:
        peak = base
        end = time.monotonic() + hold
        while time.monotonic() < end:
            peak = max(peak, status_kb(pids, "VmRSS"))
            time.sleep(0.05)
        result["backend_sent_mb"] = round(backend_stats(backend_port)["big_sent"] / 2**20, 2)
        s.close()
    else:
        want, got, head = mb * 2**20, 0, b""
        while True:
            data = s.recv(1 << 20)
            if not data:
                break
            if head is not None:
                head += data
                if b"\r\n\r\n" in head:
                    got = len(head.split(b"\r\n\r\n", 1)[1])
                    head = None
            else:
                got += len(data)
            if got >= want:
                break
        result["mb_per_s"] = round(got / 2**20 / (time.monotonic() - t0), 1)
        s.close()
        peak = base
    peak = max(peak, status_kb(pids, "VmHWM"))
    result["rss_growth_kb"] = peak - base
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and backend_stats(backend_port)["big_open"] > 0:
        time.sleep(0.1)
    result["upstream_left_after_close"] = backend_stats(backend_port)["big_open"]
    return result


def pct(values: List[float], p: float) -> Optional[float]:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


# --- profiling -----------------------------------------------------------------------

def profile(target: Target, seconds: float, work: Path, rate: int) -> Optional[Dict[str, Any]]:
    pyspy = TOOLS_VENV / "bin" / "py-spy"
    if not pyspy.exists():
        pyspy = Path(shutil.which("py-spy") or "/nonexistent")
    if not pyspy.exists():
        log("py-spy not installed (run --setup): no profile")
        return None
    raw = work / f"profile-{target.name}.txt"
    spy = subprocess.Popen(["taskset", "-c", LOAD_CPU, str(pyspy), "record", "--pid",
                            str(target.pids()[0]), "--rate", str(rate), "--format", "raw",
                            "--output", str(raw), "--duration", str(int(seconds) + 2)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    load = run_wrk(target, "/n/json", 16, seconds)
    spy.wait(60)
    if not raw.exists():
        return None
    return {"wrk": load, **summarize_stacks(raw)}


# Where a sample belongs: the first of these found walking from the leaf up.
GROUPS = [
    ("access log (json.dumps + buffer)", r"^AccessLog\.|^GatewayResource\._log "),
    ("Content-Type via email.message (_parseContentType)", r"^_parseContentType "),
    ("mcpgated header rules (headers.py)", r"\(mcpgated/proxy/headers\.py\)"),
    ("socket send (fastwrite: send(2) before the reactor)", r"\(mcpgated/proxy/fastwrite\.py\)"),
    ("mcpgated HTTP server (http11.py, llhttp)", r"\(mcpgated/proxy/http11\.py\)"),
    ("mcpgated backend client (backend_client.py, llhttp)",
     r"\(mcpgated/proxy/backend_client\.py\)"),
    ("exchange inspection + records (analytics)", r"\(mcpgated/analytics/"),
    ("access control / plans (policy)", r"\(mcpgated/policy/"),
    ("mcpgated resource/relay/upstream code", r"\(mcpgated/"),
    ("twisted.web client: request write + response parse", r"\(twisted/web/_newclient\.py\)"),
    ("twisted.web client: Agent + pool", r"^(Agent|_AgentBase|HTTPConnectionPool|URI)\."),
    ("twisted.web server: request/response", r"\(twisted/web/(server|http|resource)\.py\)"),
    ("Headers objects", r"\(twisted/web/http_headers\.py\)"),
    ("Deferreds / coroutines", r"\(twisted/internet/defer\.py\)"),
    ("LineReceiver (header line splitting)", r"^LineReceiver\."),
    ("socket syscalls + reactor dispatch", r"^untilConcludes |\(twisted/python/(log|context)\.py\)|"
     r"^(Connection|Server|Client|Port|FileDescriptor|_PollLikeMixin|_SocketCloser|BaseClient)\."),
    ("epoll_wait (reactor poll)", r"^EPollReactor\."),
]


def _frames(stack: str) -> List[str]:
    """py-spy's "func (/path/file.py:12)" frames as "func (pkg/file.py)"."""
    out = []
    for frame in stack.split(";"):
        m = re.match(r"(.*) \((.*?)(:\d+)?\)$", frame)
        name, file = (m.group(1), m.group(2)) if m else (frame, "")
        file = re.sub(r".*/(site-packages|lib/python3[.\d]*|lib/pypy3[.\d]*)/", "", file)
        file = re.sub(r".*/src/mcpgated/", "mcpgated/", file)
        file = file.replace(str(REPO) + "/", "")
        out.append(f"{name} ({file})")
    return out


def _stacks(raw: Path) -> List[Any]:
    stacks = []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        # The reactor thread only (the thread pool's idle waits are not work).
        if stack and "mainLoop" in stack:
            stacks.append((_frames(stack), int(count)))
    return stacks


def stack_groups(raw: Path) -> List[Any]:
    counts: Dict[str, int] = collections.Counter()
    total = 0
    patterns = [(name, re.compile(p)) for name, p in GROUPS]
    for frames, n in _stacks(raw):
        total += n
        group = "other"
        for frame in reversed(frames):
            group = next((name for name, p in patterns if p.search(frame)), "")
            if group:
                break
        counts[group or "other"] += n
    return [(name, round(100 * n / total, 1)) for name, n in counts.most_common()]


def summarize_stacks(raw: Path, top: int = 30) -> Dict[str, Any]:
    """Cumulative and self sample shares per function from py-spy's collapsed stacks."""
    cum: Dict[str, int] = collections.Counter()
    own: Dict[str, int] = collections.Counter()
    total = 0
    for frames, n in _stacks(raw):
        total += n
        for f in set(frames):
            cum[f] += n
        own[frames[-1]] += n
    # Frames on (almost) every stack are the reactor's loop: not informative.
    roots = {f for f, n in cum.items() if n >= 0.97 * total}
    return {
        "samples": total,
        "groups": stack_groups(raw),
        "cumulative": [(f, round(100 * n / total, 1)) for f, n in cum.most_common(top + len(roots))
                       if f not in roots][:top],
        "self": [(f, round(100 * n / total, 1)) for f, n in own.most_common(top)],
    }


# --- the run ---------------------------------------------------------------------------

def environment(args: argparse.Namespace) -> Dict[str, Any]:
    def cmd(*argv: str) -> str:
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except Exception as e:  # noqa: BLE001 - informational only
            return f"? ({e})"

    git = cmd("git", "-C", str(REPO), "rev-parse", "--short", "HEAD")
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "mcpgated"],
                           capture_output=True, text=True).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    env = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": cpu, "kernel": platform.release(),
        "git": git + (" (mcpgated/ has uncommitted changes)" if dirty else ""),
        "cpython": cmd(args.python, "-c", "import sys, twisted; print(sys.version.split()[0], "
                       "'Twisted', twisted.__version__)"),
        "nginx": cmd("nginx", "-v"), "wrk": cmd("wrk", "--version"),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
    }
    if args.pypy:
        env["pypy"] = cmd(args.pypy, "-c", "import sys, twisted; print(sys.version.split()[0], "
                          "sys.pypy_version_info[:3], 'Twisted', twisted.__version__)")
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup", action="store_true", help="install the tools and exit (root)")
    parser.add_argument("--quick", action="store_true", help="1 round, 3 s cells, 1,000 streams")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk cell")
    parser.add_argument("--python", default=str(REPO / ".venv" / "bin" / "python"))
    parser.add_argument("--pypy", default=str(PYPY_VENV / "bin" / "pypy3"),
                        help="PyPy with Twisted (empty: skip the PyPy targets)")
    parser.add_argument("--no-pypy", action="store_true")
    parser.add_argument("--patched", action="append", default=[], metavar="NAME=SRC",
                        help="also measure mcpgated from another source tree (CPython)")
    parser.add_argument("--logging-variants", action="store_true",
                        help="also measure mcpgated with exchange log records off "
                             "(mcpgated-log-off), with inspection, metrics, access and "
                             "exchange logs all off (mcpgated-log-none) and with payload "
                             "capture (mcpgated-log-capture)")
    parser.add_argument("--streams", default="1000,5000")
    parser.add_argument("--only", default="", help="comma list of sections: wrk,sse,ttfb,idle,big,profile")
    parser.add_argument("--targets", default="", help="comma list to keep (direct is always kept)")
    parser.add_argument("--src", default="",
                        help="mcpgated source tree to measure (default: a snapshot of this "
                             "checkout's mcpgated/ taken at start, so edits during the run do "
                             "not change what is measured)")
    parser.add_argument("--wait-idle", type=float, default=0, metavar="MINUTES",
                        help="first wait (at most this long) for the 1-minute load average "
                             "to drop under 0.5 (other work on the machine skews everything)")
    parser.add_argument("--out", default=str(HERE / "out"))
    args = parser.parse_args()
    if args.setup:
        setup()
        return
    if args.no_pypy or not Path(args.pypy or "/nonexistent").exists():
        args.pypy = ""
    if args.quick:
        args.rounds, args.duration, args.streams = 1, 3.0, "1000"
    check_tools(args)
    deadline = time.monotonic() + args.wait_idle * 60
    while os.getloadavg()[0] >= 0.5 and time.monotonic() < deadline:
        time.sleep(10)
    sections = set((args.only or "wrk,sse,ttfb,idle,big,profile").split(","))
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    _raise_nofile()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    procs: List[Proc] = []
    results: Dict[str, Any] = {"env": environment(args), "args": vars(args)}
    try:
        results.update(run_all(args, sections, work, procs))
    finally:
        for p in reversed(procs):
            p.stop()
        results["env"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
        (out / "results.json").write_text(json.dumps(results, indent=1))
        (out / "results.md").write_text(report(results))
        log(f"results in {out}/results.json and results.md")
    print(report(results))


def run_all(args: argparse.Namespace, sections: set, work: Path, procs: List[Proc]) -> Dict[str, Any]:
    res: Dict[str, Any] = {}
    keep = set(filter(None, args.targets.split(","))) | {"direct"}

    def wanted(name: str) -> bool:
        return not args.targets or name in keep

    src = args.src
    if not src:
        src = str(work / "src")
        shutil.copytree(REPO / "mcpgated", Path(src) / "mcpgated",
                        ignore=shutil.ignore_patterns("__pycache__"))
    # Backends on the load CPU.
    nport = free_port()
    procs.append(start_nginx("nginx-backend", LOAD_CPU, work,
                             NGINX_BACKEND.format(port=nport, json=JSON_ANSWER), nport))
    backend = Proc("asyncio-backend", [sys.executable, str(HERE / "backend.py"),
                                       str(work / "backend.port")], LOAD_CPU, work)
    procs.append(backend)
    aport = int(wait_file(work / "backend.port", backend))
    ports = {"/n/": nport, "/a/": aport}

    targets: List[Target] = []
    direct = Target("direct", 0, procs[0], "nginx")
    direct.direct_ports = ports
    targets.append(direct)
    pport = free_port()
    nginx = wanted("nginx") and start_nginx("nginx-proxy", PROXY_CPU, work,
                        NGINX_PROXY.format(dir=work, name="nginx-proxy", port=pport, nport=nport,
                                           aport=aport), pport)
    if nginx:
        procs.append(nginx)
        targets.append(Target("nginx", pport, nginx, "nginx"))
    if wanted("relay"):
        targets.append(start_relay("relay", args.python, work, ports))
        procs.append(targets[-1].proc)
    if wanted("mcpgated"):
        targets.append(start_mcpgated("mcpgated", args.python, work, ports, src, {}))
        procs.append(targets[-1].proc)
    if args.logging_variants:
        for variant in ("off", "none", "capture"):
            targets.append(start_mcpgated(f"mcpgated-log-{variant}", args.python, work, ports,
                                          src, {}, logging=variant))
            procs.append(targets[-1].proc)
    for spec in args.patched:
        name, _, other = spec.partition("=")
        targets.append(start_mcpgated(name, args.python, work, ports, other, {}))
        procs.append(targets[-1].proc)
    if args.pypy and wanted("relay-pypy"):
        targets.append(start_relay("relay-pypy", args.pypy, work, ports))
        procs.append(targets[-1].proc)
    if args.pypy and wanted("mcpgated-pypy"):
        try:
            targets.append(start_mcpgated("mcpgated-pypy", args.pypy, work, ports, src,
                                          {"PYTHONPATH": str(REPO)}))
            procs.append(targets[-1].proc)
        except Exception as e:  # noqa: BLE001 - reported, the run goes on
            log(f"mcpgated does not start on PyPy: {e}")
            res["pypy_error"] = str(e)[-2000:]
    res["targets"] = [t.name for t in targets]
    log("targets up:", ", ".join(f"{t.name}:{t.port or 'direct'}" for t in targets))

    # Sanity: every target answers both paths; warm up (PyPy's JIT longest).
    for t in targets:
        for path in ("/n/json", "/n/sse"):
            w = run_wrk(t, path, 4, 1)
            if w["requests"] == 0 or w["errors"]:
                raise RuntimeError(f"{t.name} {path}: {w}")
    for t in targets:
        run_wrk(t, "/n/json", 16, 10 if "pypy" in t.name else 2)
        if "pypy" in t.name:
            run_wrk(t, "/n/sse", 16, 5)
            sse_latency(t, "GET", 400, 1)
            ttfb(t, 100)

    if "wrk" in sections:
        cells = [(body, c) for body in ("json", "sse") for c in (1, 16, 64)]
        raw: Dict[str, List[Dict[str, Any]]] = collections.defaultdict(list)
        for rnd in range(args.rounds):
            for i, (body, c) in enumerate(cells):
                order = targets[(rnd + i) % len(targets):] + targets[:(rnd + i) % len(targets)]
                for t in order:
                    r = run_wrk(t, f"/n/{body}", c, args.duration)
                    raw[f"{t.name}|{body}|{c}"].append(r)
                log(f"round {rnd + 1}/{args.rounds} {body} c={c}: " + ", ".join(
                    f"{t.name} {raw[f'{t.name}|{body}|{c}'][-1]['rps']:.0f}" for t in targets))
        res["wrk"] = {k: aggregate(v) for k, v in raw.items()}
        res["wrk_raw"] = raw

    if "sse" in sections:
        lat: Dict[str, List[float]] = collections.defaultdict(list)
        for rnd in range(max(2, args.rounds - 1)):
            for method in ("GET", "POST"):
                for t in targets[rnd % len(targets):] + targets[:rnd % len(targets)]:
                    lat[f"{t.name}|{method}"] += sse_latency(t, method, 400, 5)
        res["sse"] = {k: {"n": len(v), "p50_ms": pct(v, 50), "p99_ms": pct(v, 99)}
                      for k, v in lat.items()}
        log("sse per-event latency done")

    if "ttfb" in sections:
        tt: Dict[str, List[float]] = collections.defaultdict(list)
        for _round in range(2):
            for t in targets:
                tt[t.name] += ttfb(t, 150)
        res["ttfb"] = {k: {"n": len(v), "p50_ms": pct(v, 50), "p99_ms": pct(v, 99)}
                       for k, v in tt.items()}
        log("time to first byte done")

    proxies = [t for t in targets if t.name != "direct"]
    if "big" in sections:
        res["big"] = {}
        for t in proxies:
            res["big"][t.name] = {"fast": big_stream(t, aport, False),
                                  "stalled": big_stream(t, aport, True)}
            log(f"10 MB {t.name}: {res['big'][t.name]}")

    if "idle" in sections:
        steps = [int(s) for s in args.streams.split(",")]
        res["idle"] = {}
        for t in proxies:
            res["idle"][t.name] = idle_streams(t, aport, steps)
            log(f"idle streams {t.name}: {res['idle'][t.name]}")

    if "profile" in sections:
        res["profile"] = {}
        for t in targets:
            if t.kind == "python" and "pypy" not in t.name:
                res["profile"][t.name] = profile(t, 8 if not args.quick else 4, work, 200)
                log(f"profiled {t.name}")
    return res


def aggregate(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    def med(key: str) -> Optional[float]:
        vals = [r[key] for r in runs if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    return {"rps": med("rps"), "cpu_us": med("cpu_us"), "p50_ms": med("p50_ms"),
            "p99_ms": med("p99_ms"), "errors": sum(r["errors"] for r in runs),
            "rps_runs": [round(r["rps"]) for r in runs]}


# --- the report --------------------------------------------------------------------------

def _f(v: Any, fmt: str = "{:.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def report(res: Dict[str, Any]) -> str:
    lines = ["# mcpgated benchmark results", ""]
    env = res.get("env", {})
    for k, v in env.items():
        lines.append(f"- {k}: {v}")
    targets = res.get("targets", [])
    wrk = res.get("wrk")
    if wrk:
        lines += ["", "## Small tools/call POSTs (wrk, median of rounds)", "",
                  "CPU us/req is the proxy process (for direct: the nginx backend). "
                  "x relay is the median of per-round requests/s ratios; x direct is the "
                  "ratio of medians.", ""]
        lines.append("| answer | c | target | req/s | x relay | x direct | CPU us/req | p50 ms | "
                     "p99 ms | added p50 ms | errors |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for body in ("json", "sse"):
            for c in (1, 16, 64):
                direct = wrk.get(f"direct|{body}|{c}", {})
                for t in targets:
                    r = wrk.get(f"{t}|{body}|{c}")
                    if not r:
                        continue
                    # Median of the per-round ratios: rounds are interleaved, so
                    # this cancels slow drifts in the machine's other load.
                    mine = res["wrk_raw"].get(f"{t}|{body}|{c}", [])
                    base = res["wrk_raw"].get(f"relay|{body}|{c}", [])
                    ratios = [a["rps"] / b["rps"] for a, b in zip(mine, base) if b["rps"]]
                    x_relay = statistics.median(ratios) if ratios else None
                    x_direct = r["rps"] / direct["rps"] if direct.get("rps") else None
                    added = (r["p50_ms"] - direct["p50_ms"]
                             if r.get("p50_ms") is not None and direct.get("p50_ms") is not None
                             else None)
                    lines.append(f"| {body} | {c} | {t} | {_f(r['rps'])} | {_f(x_relay, '{:.2f}')} | "
                                 f"{_f(x_direct, '{:.3f}')} | {_f(r['cpu_us'])} | "
                                 f"{_f(r['p50_ms'], '{:.3f}')} | {_f(r['p99_ms'], '{:.3f}')} | "
                                 f"{_f(added, '{:+.3f}')} | {r['errors']} |")
    sse = res.get("sse")
    if sse:
        lines += ["", "## SSE per-event latency (backend write -> client read)", "",
                  "| target | method | events | p50 ms | p99 ms | added p50 ms | added p99 ms |",
                  "|---|---|---|---|---|---|---|"]
        for method in ("GET", "POST"):
            d = sse.get(f"direct|{method}", {})
            for t in targets:
                r = sse.get(f"{t}|{method}")
                if not r or r["p50_ms"] is None:
                    continue
                lines.append(f"| {t} | {method} | {r['n']} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
                             f"{r['p50_ms'] - d.get('p50_ms', 0):+.3f} | "
                             f"{r['p99_ms'] - d.get('p99_ms', 0):+.3f} |")
    tt = res.get("ttfb")
    if tt:
        lines += ["", "## Time to first byte on a new connection (POST, Connection: close)", "",
                  "| target | n | p50 ms | p99 ms | added p50 ms |", "|---|---|---|---|---|"]
        d = tt.get("direct", {})
        for t in targets:
            r = tt.get(t)
            if r:
                lines.append(f"| {t} | {r['n']} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
                             f"{r['p50_ms'] - d.get('p50_ms', 0):+.3f} |")
    idle = res.get("idle")
    if idle:
        steps = [int(s) for s in res["args"]["streams"].split(",")]
        lines += ["", "## Idle SSE streams", "",
                  "| target | base RSS MB | " + " | ".join(f"KB/stream @{n}" for n in steps)
                  + " | upstream open @max | upstream left 10 s after clients closed |",
                  "|---|---|" + "---|" * len(steps) + "---|---|"]
        for t, r in idle.items():
            lines.append(f"| {t} | {r['rss_base_kb'] / 1024:.1f} | "
                         + " | ".join(_f(r.get(f'kb_per_stream_{n}'), '{:.1f}') for n in steps)
                         + f" | {r.get(f'upstream_open_{steps[-1]}')} | {r['upstream_left_after_close']} |")
    big = res.get("big")
    if big:
        lines += ["", "## 10 MB response", "",
                  "| target | fast: RSS growth KB | fast: MB/s | stalled 4 s: RSS growth KB | "
                  "stalled: backend wrote MB | upstream left after close |",
                  "|---|---|---|---|---|---|"]
        for t, r in big.items():
            lines.append(f"| {t} | {r['fast']['rss_growth_kb']} | {r['fast'].get('mb_per_s')} | "
                         f"{r['stalled']['rss_growth_kb']} | {r['stalled'].get('backend_sent_mb')} | "
                         f"{r['stalled']['upstream_left_after_close']} |")
    prof = res.get("profile")
    if prof:
        for name, p in prof.items():
            if not p:
                continue
            lines += ["", f"## Profile: {name}, JSON POST c=16 (py-spy, {p['samples']} samples, "
                          f"{p['wrk']['rps']:.0f} req/s while sampled)", "",
                      "| cumulative % | function |", "|---|---|"]
            lines += [f"| {v} | `{f}` |" for f, v in p["cumulative"][:25]]
            lines += ["", "| share % | where (first match from the leaf up) |", "|---|---|"]
            lines += [f"| {v} | {f} |" for f, v in p.get("groups", [])]
            lines += ["", "| self % | function |", "|---|---|"]
            lines += [f"| {v} | `{f}` |" for f, v in p["self"][:15]]
    if res.get("pypy_error"):
        lines += ["", "mcpgated on PyPy failed to start:", "", "```", res["pypy_error"], "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
