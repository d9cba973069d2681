"""
Real processes for the tests: the mcpgated daemon (twistd -n), npm's
server-everything, small backends. Everything binds port 0 on loopback and
is found by what the process prints or by its listening sockets; waits are
on output lines (blocking reads with a deadline), never sleeps.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.web.http_headers import Headers
from zope.interface import implementer

REPO = Path(__file__).resolve().parent.parent
NODE_BIN = REPO / "tests" / "npm" / "node_modules" / ".bin"
BIN = Path(sys.executable).parent
ADMIN_TOKEN = "test-admin-token"


class Proc:
    """
    A child process whose output lines are read by a thread into a queue,
    so a test can wait for a line with a deadline.
    """

    def __init__(self, argv: List[str], env: Optional[Dict[str, str]] = None,
                 cwd: Optional[str] = None) -> None:
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.argv = argv
        self.popen = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env, cwd=cwd,
            start_new_session=True,
        )
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.output: List[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.output.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> "re.Match[str]":
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {pattern!r} from {self.argv}:\n"
                                     + "\n".join(self.output[-40:]))
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"process exited ({self.popen.wait()}) before {pattern!r}:\n"
                                     + "\n".join(self.output[-40:]))
            match = regex.search(line)
            if match:
                return match

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 15.0) -> int:
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            return self.popen.wait()

    def kill(self) -> int:
        self.signal(signal.SIGKILL)
        return self.popen.wait()


def start_python_server(*argv: str, timeout: float = 30.0) -> Tuple[Proc, int]:
    """
    A Python server script (the SDK's servers, on uvicorn, port 0) started
    with this venv's python: the process, once it listens, and its port.
    """
    proc = Proc([str(BIN / "python"), *argv])
    proc.wait_for(r"Uvicorn running on", timeout)
    ports = listening_ports(proc.popen.pid)
    assert ports, "the server listens on no port"
    return proc, ports[0]


def script_file(folder: Path, name: str, text: str) -> str:
    """
    C{text} written to C{folder/name}: its path, to run.
    """
    path = folder / name
    path.write_text(text)
    return str(path)


def listening_ports(pid: int) -> List[int]:
    """
    TCP ports the process (or its children) listens on, from /proc.
    """
    inodes = set()
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids.extend(int(c) for c in children)
    except OSError:
        pass
    for p in pids:
        fd_dir = Path(f"/proc/{p}/fd")
        try:
            for fd in fd_dir.iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:
                ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(set(ports))


def start_everything(transport: str = "streamableHttp") -> Tuple[Proc, int]:
    """
    npm's @modelcontextprotocol/server-everything on an ephemeral port.
    """
    proc = Proc([str(NODE_BIN / "mcp-server-everything"), transport], env={"PORT": "0"})
    proc.wait_for(r"listening on port|running on port")
    ports = listening_ports(proc.popen.pid)
    assert ports, "server-everything is not listening"
    return proc, ports[0]


def http(method: str, url: str, body: Any = None, headers: Optional[Dict[str, str]] = None,
         raw: Optional[bytes] = None, timeout: float = 30.0) -> Tuple[int, Any, bytes]:
    """
    One HTTP exchange; the headers come back as a case-insensitive mapping.
    """
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    if body is not None and "Content-Type" not in (headers or {}):
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


class Daemon:
    """
    C{twistd -n mcpgated} in a temporary folder, on port-0 listeners.
    """

    def __init__(self, folder: Path, extra: str = "", token: str = ADMIN_TOKEN,
                 gateway_listen: str = "tcp:0:interface=127.0.0.1") -> None:
        self.folder = folder
        self.token = token
        self.ini = folder / "mcpgated.ini"
        self.ini.write_text(
            f"[gateway]\nlisten = {gateway_listen}\n"
            f"[admin]\nlisten = tcp:0:interface=127.0.0.1\ntoken = {token}\n"
            f"[storage]\npath = data/mcpgated.db\n"
            f"[logging]\ndir = log\n"
            f"[daemon]\nports_file = run/ports.json\n" + extra
        )
        self.proc: Optional[Proc] = None
        self.ports: Dict[str, List[int]] = {}

    def command(self) -> List[str]:
        """
        What runs the daemon (subclasses add twistd options or a wrapper).
        """
        return [str(BIN / "twistd"), "-n", "--pidfile=", "mcpgated", "-c", str(self.ini)]

    def start(self, timeout: float = 30.0) -> "Daemon":
        self.proc = Proc(self.command(), cwd=str(self.folder))
        match = self.proc.wait_for(r"mcpgated ready: (\{.*\})", timeout)
        self.ports = json.loads(match.group(1))
        return self

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway'][0]}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['admin'][0]}"

    def admin(self, method: str, path: str, body: Any = None, token: Optional[str] = None,
              raw: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None
              ) -> Tuple[int, Any]:
        all_headers = {"Authorization": f"Bearer {token or self.token}"}
        if raw is not None:
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        status, _, data = http(method, self.admin_url + path, body, all_headers, raw)
        return status, (json.loads(data) if data else None)

    def deploy(self, backend: str, context_path: str = "/mcp-proxy", name: str = "Everything") -> str:
        return deploy(self, context_path, backend, name=name, version="1.0")["id"]

    def stop(self) -> int:
        assert self.proc is not None
        return self.proc.stop()

    def kill(self) -> int:
        assert self.proc is not None
        return self.proc.kill()

    def stop_if_running(self) -> None:
        """
        Stop the daemon unless it was never started or has exited (a test
        may have stopped or killed it).
        """
        if self.proc is not None and self.proc.popen.poll() is None:
            self.stop()


def running(daemon: Daemon) -> Iterator[Daemon]:
    """
    For fixtures, C{yield from running(Daemon(folder))}: the daemon started,
    then stopped after its tests unless they stopped it.
    """
    daemon.start()
    yield daemon
    daemon.stop_if_running()


def keyless() -> List[Dict[str, Any]]:
    """
    The plans of an open API: one keyless plan.
    """
    return [{"name": "Keyless", "security": "KEY_LESS"}]


def api_definition(context_path: str, backend: str, plans: Optional[List[Dict[str, Any]]] = None,
                   **fields: Any) -> Dict[str, Any]:
    """
    The admin JSON of an API at C{context_path}, named after its path, with
    C{plans} (one keyless plan by default); C{fields} add or replace fields.
    """
    body: Dict[str, Any] = {
        "name": context_path.strip("/") or "root", "version": "1", "contextPath": context_path,
        "backend": backend, "plans": keyless() if plans is None else plans}
    body.update(fields)
    return body


def deploy(daemon: Daemon, context_path: str, backend: str,
           plans: Optional[List[Dict[str, Any]]] = None, **fields: Any) -> Dict[str, Any]:
    """
    Create (201) and deploy (200) the API L{api_definition} describes; the
    deployed API's JSON (its id: C{["id"]}).
    """
    status, api = daemon.admin("POST", "/apis", api_definition(context_path, backend, plans, **fields))
    assert status == 201, api
    status, deployed = daemon.admin("POST", f"/apis/{api['id']}/_deploy")
    assert status == 200, deployed
    assert isinstance(deployed, dict)
    return deployed


def subscribe_key(daemon: Daemon, api_id: str, plan: str, application: str
                  ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """
    A new application subscribed to C{plan} of the API, and an API key of
    that subscription: the subscription's JSON and the key's (C{["key"]} is
    the secret).
    """
    status, app = daemon.admin("POST", "/applications", {"name": application})
    assert status == 201, app
    status, sub = daemon.admin("POST", f"/apis/{api_id}/subscriptions",
                               {"application": app["id"], "plan": plan})
    assert status == 201, sub
    status, key = daemon.admin("POST", f"/apis/{api_id}/subscriptions/{sub['id']}/keys")
    assert status == 201, key
    assert isinstance(sub, dict) and isinstance(key, dict)
    return sub, key


def make_headers(**values: str) -> Headers:
    """
    Request headers for in-memory tests: C{X_Forwarded_For="..."} is
    C{X-Forwarded-For}, one value each.
    """
    headers = Headers()
    for name, value in values.items():
        headers.setRawHeaders(name.replace("_", "-").encode(), [value.encode()])
    return headers


@implementer(IPushProducer)
class Firehose:
    """
    A push producer writing numbered 64 KiB chunks (L{chunk}) to a request
    while it is not paused, up to C{total} bytes, then finishing it.
    C{was_paused} fires with the bytes produced when it is first paused,
    C{was_resumed} when it is first resumed after that.

    @param later: a reactor's C{callLater}: writing then starts, and
        resumes, on the next turn instead of inside C{start} and
        C{resumeProducing}.
    """

    size = 65536

    def __init__(self, request: Any, total: int,
                 later: Optional[Callable[..., Any]] = None) -> None:
        self.request = request
        self.total = total
        self.later = later
        self.produced = 0
        self.paused = False
        self.finished = False
        self.was_paused: "Deferred[int]" = Deferred()
        self.was_resumed: "Deferred[int]" = Deferred()

    @classmethod
    def chunk(cls, index: int) -> bytes:
        return (b"%08d" % index) * (cls.size // 8)

    def start(self) -> "Firehose":
        self.request.registerProducer(self, True)
        self._schedule()
        return self

    def _schedule(self) -> None:
        if self.later is None:
            self._pump()
        else:
            self.later(0, self._pump)

    def _pump(self) -> None:
        while not self.paused and not self.finished and self.produced < self.total:
            self.request.write(self.chunk(self.produced // self.size))
            self.produced += self.size
        if self.produced >= self.total and not self.finished:
            self.finished = True
            self.request.unregisterProducer()
            self.request.finish()

    def pauseProducing(self) -> None:
        self.paused = True
        if not self.was_paused.called:
            self.was_paused.callback(self.produced)

    def resumeProducing(self) -> None:
        self.paused = False
        if self.was_paused.called and not self.was_resumed.called:
            self.was_resumed.callback(self.produced)
        self._schedule()

    def stopProducing(self) -> None:
        self.finished = True


def messages_of(body: bytes) -> List[Dict[str, Any]]:
    """
    The JSON-RPC messages of an answer: a JSON body (one message or a
    batch) or SSE events.
    """
    text = body.decode("utf-8")
    if text.lstrip().startswith(("{", "[")):
        decoded = json.loads(text)
        return decoded if isinstance(decoded, list) else [decoded]
    return [json.loads(line[5:]) for line in text.splitlines()
            if line.startswith("data:") and line[5:].strip()]


def metric(daemon: Daemon, name: str, missing: Optional[float] = None, **labels: str) -> float:
    """
    A series' value on the admin C{/metrics}: C{name} without labels, or
    with (at least) C{labels}. An absent series is C{missing}, or an
    AssertionError when that is L{None}.
    """
    status, _, raw = http("GET", daemon.admin_url + "/metrics",
                          headers={"Authorization": f"Bearer {daemon.token}"})
    assert status == 200
    for line in raw.decode().splitlines():
        series, _, value = line.rpartition(" ")
        if labels:
            found = series.startswith(name + "{") and all(
                f'{key}="{label}"' in series for key, label in labels.items())
        else:
            found = series == name
        if found:
            return float(value)
    if missing is None:
        raise AssertionError(f"{name} {labels or ''} not in /metrics")
    return missing
