"""
C{[gateway] workers = 2} with real daemons: the twistd process keeps the
admin API and the stores, two worker processes serve the shared gateway
socket. Which worker answers is chosen by pausing the other one
(SIGSTOP: it cannot accept), so every assertion about "each worker" is
deterministic.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from tests.daemon_helpers import ACCEPT, INITIALIZE, set_options
from tests.pin_support import Backend as PinBackend
from tests.pin_support import deploy_pinned
from tests.raw_backend import RawBackend, RawConnection, RawRequest
from tests.support import Daemon, deploy, http, listening_ports, messages_of, metric, subscribe_key
from tests.test_tls import _escape, https, self_signed

NOTIFICATION = {"jsonrpc": "2.0", "method": "notifications/initialized"}
READY = re.compile(r"worker (\d+) ready \(pid (\d+)\)")


def workers(daemon: Daemon) -> Dict[int, int]:
    """
    Worker index -> pid, as the daemon last announced them.
    """
    assert daemon.proc is not None
    found: Dict[int, int] = {}
    for line in list(daemon.proc.output):
        match = READY.search(line)
        if match:
            found[int(match.group(1))] = int(match.group(2))
    return found


@contextmanager
def only(daemon: Daemon, index: int) -> Iterator[int]:
    """
    Every other worker paused: new connections go to worker C{index}.
    """
    others = [pid for i, pid in workers(daemon).items() if i != index]
    for pid in others:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield workers(daemon)[index]
    finally:
        for pid in others:
            os.kill(pid, signal.SIGCONT)


def call(daemon: Daemon, path: str, headers: Optional[Dict[str, str]] = None,
         body: Any = INITIALIZE) -> Tuple[int, bytes]:
    status, _, data = http("POST", daemon.gateway + path, body, dict(ACCEPT, **(headers or {})),
                           timeout=10)
    return status, data


def within(seconds: float, check: Callable[[], bool]) -> bool:
    """
    Whether C{check()} becomes true within C{seconds} (polled: a change
    reaching another process has no event a test can wait on).
    """
    deadline = time.monotonic() + seconds
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def settled(daemon: Daemon, path: str, status: int = 200, seconds: float = 5.0,
            body: Any = INITIALIZE, headers: Optional[Dict[str, str]] = None) -> bool:
    """
    Whether, within C{seconds}, ten requests in a row (fresh connections,
    taken by whichever worker accepts first) answer C{status}: every worker
    has applied the last change. Pausing a worker (L{only}) before that
    could stop it inside a store transaction (SQLite's BEGIN IMMEDIATE,
    reads too), which would hold the other worker's reload back.
    """
    def ten() -> bool:
        return all(call(daemon, path, headers, body)[0] == status for _ in range(10))

    return within(seconds, ten)


def start(folder: Path, options: Optional[Dict[str, Dict[str, str]]] = None, **kwargs: Any) -> Daemon:
    daemon = Daemon(folder, **kwargs)
    set_options(daemon, "gateway", workers="2")
    for section, values in (options or {}).items():
        set_options(daemon, section, **values)
    daemon.start()
    assert set(workers(daemon)) == {1, 2}
    return daemon


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory, everything: int) -> Iterator[Daemon]:
    daemon = start(tmp_path_factory.mktemp("workers"))
    yield daemon
    daemon.stop_if_running()


@pytest.fixture(scope="module")
def backend(everything: int) -> str:
    return f"http://127.0.0.1:{everything}/mcp"


def test_two_workers_each_serve_the_shared_socket(pool: Daemon, backend: str) -> None:
    deploy(pool, "/both", backend)
    assert settled(pool, "/both")
    port = pool.ports["gateway"][0]
    pids = workers(pool)
    assert len(set(pids.values())) == 2
    assert pool.proc is not None and pool.proc.popen.pid not in pids.values()
    for index, pid in pids.items():
        assert port in listening_ports(pid), f"worker {index} does not hold the gateway socket"
        with only(pool, index):
            for _ in range(3):
                status, body = call(pool, "/both")
                assert status == 200, body
                assert b"mcp-servers/everything" in body


def test_a_deploy_is_live_in_every_worker_when_the_admin_answers(pool: Daemon, backend: str) -> None:
    for index in (1, 2):
        path = f"/fresh-{index}"
        assert call(pool, path)[0] == 404
        deploy(pool, path, backend)
        # the deploy's 200 comes once every worker has applied it: each
        # worker alone routes the API at once
        for serving in (1, 2):
            with only(pool, serving):
                assert call(pool, path)[0] == 200
    # ... and a stop too
    status, apis = pool.admin("GET", "/apis")
    api_id = next(a["id"] for a in apis["data"] if a["contextPath"] == "/fresh-1")
    assert pool.admin("POST", f"/apis/{api_id}/_stop")[0] == 200
    for serving in (1, 2):
        with only(pool, serving):
            assert call(pool, "/fresh-1")[0] == 404


def test_a_revoked_key_is_refused_by_every_worker_when_the_admin_answers(pool: Daemon, backend: str) -> None:
    api = deploy(pool, "/keyed", backend, plans=[{"name": "Gold", "security": "API_KEY"}])
    sub, key = subscribe_key(pool, api["id"], "Gold", "revoked-app")
    secret = {"X-Gravitee-Api-Key": key["key"]}
    assert settled(pool, "/keyed", 200, headers=secret)
    for serving in (1, 2):
        with only(pool, serving):
            assert call(pool, "/keyed", secret)[0] == 200
    status, _ = pool.admin("DELETE", f"/apis/{api['id']}/subscriptions/{sub['id']}/keys/{key['id']}")
    assert status == 204  # answered once every worker refuses the key
    for serving in (1, 2):
        with only(pool, serving):
            assert call(pool, "/keyed", secret)[0] == 401


def test_a_rate_limit_is_exact_across_workers(pool: Daemon, backend: str) -> None:
    deploy(pool, "/limited", backend, plans=[
        {"name": "Open", "security": "KEY_LESS",
         "rateLimit": {"requests": 6, "periodSeconds": 3600, "scope": "plan"}}])
    assert settled(pool, "/limited", 400, body=NOTIFICATION)  # (not counted: no request)
    for serving in (1, 2):  # routed by both (what is measured: the counting)
        with only(pool, serving):
            assert within(5.0, lambda: call(pool, "/limited", body={
                "jsonrpc": "2.0", "method": "notifications/initialized"})[0] != 404)
    answers: List[Tuple[int, int]] = []
    for serving in (1, 2, 1, 2, 1, 2, 1, 2):
        with only(pool, serving):
            answers.append((serving, call(pool, "/limited")[0]))
    assert answers == [(1, 200), (2, 200), (1, 200), (2, 200), (1, 200), (2, 200),
                       (1, 429), (2, 429)]


def test_records_metrics_and_access_lines_of_every_worker_reach_the_parent(
        pool: Daemon, backend: str) -> None:
    api = deploy(pool, "/recorded", backend)
    assert settled(pool, "/recorded", 400, body=NOTIFICATION)  # (no record, no 200)
    names = {1: "client-of-worker-1", 2: "client-of-worker-2"}
    for serving, name in names.items():
        body = json.loads(json.dumps(INITIALIZE))
        body["params"]["clientInfo"]["name"] = name
        with only(pool, serving):
            assert within(1.0, lambda body=body: call(pool, "/recorded", body=body)[0] == 200)

    def logged() -> bool:
        for name in names.values():
            status, found = pool.admin("GET", f"/apis/{api['id']}/logs?client={name}")
            assert status == 200, found
            if len(found["data"]) != 1:
                return False
        return True

    assert within(5.0, logged), pool.admin("GET", f"/apis/{api['id']}/logs")
    assert metric(pool, "mcpgated_http_requests_total", api=api["id"], status="200") == 2
    assert metric(pool, "mcpgated_mcp_calls_total", api=api["id"], method="initialize",
                  outcome="result") == 2
    access = pool.folder / "log" / "access.log"

    def in_access_log() -> bool:
        lines = [json.loads(line) for line in access.read_text().splitlines() if line]
        # (a request that came before the route was live has its 404 line too)
        return sum(1 for line in lines if line.get("path") == "/recorded" and line.get("status") == 200) == 2

    assert within(5.0, in_access_log)


def test_worker_log_lines_reach_the_daemon_log(pool: Daemon) -> None:
    text = (pool.folder / "log" / "mcpgated.log").read_text()
    for index in (1, 2):
        assert re.search(rf"worker {index}: store .* open", text), text[-2000:]
    assert pool.proc is not None
    assert any(re.search(r"worker 2: store .* open", line) for line in pool.proc.output)


def test_a_killed_worker_is_replaced_and_traffic_goes_on(pool: Daemon, backend: str) -> None:
    deploy(pool, "/resilient", backend)
    assert within(1.0, lambda: call(pool, "/resilient")[0] == 200)
    before = workers(pool)
    os.kill(before[1], signal.SIGKILL)
    assert pool.proc is not None
    pool.proc.wait_for(rf"worker 1 \(pid {before[1]}\) died \(signal 9\); restarting it", 10)
    # meanwhile (and after), every request is served
    for _ in range(10):
        assert call(pool, "/resilient")[0] == 200
    pool.proc.wait_for(r"worker 1 ready \(pid \d+\)", 10)
    after = workers(pool)
    assert after[1] != before[1] and after[2] == before[2]
    with only(pool, 1):  # the new worker serves, routes loaded
        assert call(pool, "/resilient")[0] == 200


def test_tls_listener_is_adopted_by_the_workers(tmp_path: Path, backend: str) -> None:
    key, cert = self_signed(tmp_path)
    daemon = start(tmp_path, gateway_listen=f"ssl:0:interface=127.0.0.1:privateKey={_escape(key)}"
                                            f":certKey={_escape(cert)}")
    try:
        daemon.deploy(backend, "/secure")
        trusting = ssl.create_default_context(cafile=str(cert))
        port = daemon.ports["gateway"][0]
        for serving in (1, 2):
            with only(daemon, serving):
                assert within(1.0, lambda: https(f"https://localhost:{port}/secure", trusting,
                                                 INITIALIZE, ACCEPT)[0] == 200)
    finally:
        daemon.stop_if_running()


def test_sigterm_drains_every_worker(tmp_path: Path) -> None:
    arrived, release = threading.Event(), threading.Event()

    def respond(connection: RawConnection, request: RawRequest) -> None:
        if b'"id": 9' in request.body:  # the slow one; probes are answered at once
            arrived.set()
            release.wait(10)
        body = b'{"jsonrpc":"2.0","id":9,"result":{"done":true}}'
        connection.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    backend = RawBackend(respond)
    daemon = start(tmp_path)
    try:
        daemon.deploy(backend.url + "/mcp", "/slow")
        pids = workers(daemon)
        outcome: Dict[str, Any] = {}

        def in_flight() -> None:
            outcome["answer"] = call(daemon, "/slow", body={"jsonrpc": "2.0", "id": 9, "method": "ping"})

        thread = threading.Thread(target=in_flight)
        assert settled(daemon, "/slow", body={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        with only(daemon, 1):
            assert within(1.0, lambda: call(daemon, "/slow", body={"jsonrpc": "2.0", "id": 1,
                                                                  "method": "ping"})[0] == 200)
            thread.start()
            assert arrived.wait(10), "the request did not reach the backend"
        assert daemon.proc is not None
        daemon.proc.signal(signal.SIGTERM)
        daemon.proc.wait_for(r"worker 1: worker 1 draining", 10)
        daemon.proc.wait_for(r"worker 2 \(pid \d+\) stopped", 10)  # it had nothing to finish
        with pytest.raises(ConnectionRefusedError):  # nobody listens any more, as with one process
            socket.create_connection(("127.0.0.1", daemon.ports["gateway"][0]), timeout=5)
        assert thread.is_alive() and daemon.proc.popen.poll() is None
        release.set()
        thread.join(10)
        assert outcome["answer"] == (200, b'{"jsonrpc":"2.0","id":9,"result":{"done":true}}'), outcome
        try:
            status = daemon.proc.popen.wait(20)
        except subprocess.TimeoutExpired:
            raise AssertionError("\n".join(daemon.proc.output[-40:])) from None
        assert status == -15  # twistd ends by the signal, as with one process
        daemon.proc.wait_for(r"worker 1 \(pid \d+\) stopped: exit status 0", 1)
        for pid in pids.values():
            assert not Path(f"/proc/{pid}").exists()
    finally:
        release.set()
        daemon.stop_if_running()
        backend.stop()


def test_workers_follow_a_postgresql_store(tmp_path: Path, backend: str, postgres: Any) -> None:
    daemon = start(tmp_path, {"storage": {"url": postgres.new_database()}})
    try:
        api = deploy(daemon, "/on-pg", backend)
        for serving in (1, 2):
            with only(daemon, serving):
                assert within(1.0, lambda: call(daemon, "/on-pg")[0] == 200)
        assert daemon.admin("POST", f"/apis/{api['id']}/_stop")[0] == 200
        for serving in (1, 2):
            with only(daemon, serving):
                assert within(1.0, lambda: call(daemon, "/on-pg")[0] == 404)
    finally:
        daemon.stop_if_running()


def test_with_redis_each_worker_counts_there_exactly(tmp_path: Path, backend: str, redis: Any) -> None:
    redis.flush()
    daemon = start(tmp_path, {"ratelimit": {"redis": redis.url}})
    try:
        deploy(daemon, "/redis-limited", backend, plans=[
            {"name": "Open", "security": "KEY_LESS",
             "rateLimit": {"requests": 3, "periodSeconds": 3600, "scope": "plan"}}])
        assert settled(daemon, "/redis-limited", 400, body=NOTIFICATION)
        seen: List[Tuple[int, bytes]] = []
        for serving in (1, 2):  # routed by both (what is measured: the counting)
            with only(daemon, serving):
                assert within(5.0, lambda: seen.append(call(daemon, "/redis-limited", body={
                    "jsonrpc": "2.0", "method": "notifications/initialized"})) or seen[-1][0] != 404), \
                    (serving, seen[-3:], daemon.proc.output[-30:] if daemon.proc else None)
        answers = []
        for serving in (2, 1, 2, 1):
            with only(daemon, serving):
                answers.append((serving, call(daemon, "/redis-limited")[0]))
        assert answers == [(2, 200), (1, 200), (2, 200), (1, 429)]
        assert metric(daemon, "mcpgated_ratelimit_redis_up") == 1
    finally:
        daemon.stop_if_running()


def test_workers_exit_when_the_twistd_process_is_killed(tmp_path: Path) -> None:
    daemon = start(tmp_path)
    pids = workers(daemon)
    assert daemon.proc is not None
    os.kill(daemon.proc.popen.pid, signal.SIGKILL)  # the parent only: no drain, no signal to them
    daemon.proc.popen.wait(10)
    # each worker hears its channel close, drains (nothing in flight) and exits
    assert within(10.0, lambda: not any(_alive(pid) for pid in pids.values()))


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _session(daemon: Daemon, path: str) -> Dict[str, str]:
    """
    A 2025-06-18 session through the gateway (initialized), its headers.
    """
    status, headers, body = http("POST", daemon.gateway + path, INITIALIZE, ACCEPT, timeout=10)
    assert status == 200, body
    session = {"Mcp-Session-Id": headers["Mcp-Session-Id"], "MCP-Protocol-Version": "2025-06-18"}
    status, _ = call(daemon, path, session, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert status == 202
    return session


def _tools(daemon: Daemon, path: str, session: Dict[str, str]) -> List[str]:
    status, body = call(daemon, path, session, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    assert status == 200, body
    (message,) = [m for m in messages_of(body) if m.get("id") == 2]
    return sorted(t["name"] for t in message["result"]["tools"])


def test_pins_written_by_one_worker_are_known_to_the_other(tmp_path: Path) -> None:
    server = PinBackend(tmp_path)
    (tmp_path / "daemon").mkdir()
    daemon = start(tmp_path / "daemon")

    def drift() -> List[Tuple[str, str]]:
        status, body = daemon.admin("GET", f"/apis/{api_id}/pins/events")
        assert status == 200, body
        return [(e["kind"], e["name"]) for e in body["data"] if e["type"] == "changed"]

    try:
        api_id = deploy_pinned(daemon, server, {"mode": "block"})
        assert settled(daemon, "/pinned")
        for serving in (1, 2):  # first use through worker 1 pins v1; worker 2 sees the same pins
            with only(daemon, serving):
                assert call(daemon, "/pinned")[0] == 200
                assert _tools(daemon, "/pinned", _session(daemon, "/pinned")) == ["add", "echo", "switch"]
        # (the first use's pins committed: no worker is paused inside that write)
        assert within(5.0, lambda: len(daemon.admin("GET", f"/apis/{api_id}/pins")[1]["data"]) >= 3)
        server.switch("v2")  # the backend changes "add"
        with only(daemon, 1):  # worker 1 sees the drift: one event, the pin pending, "add" held back
            assert _tools(daemon, "/pinned", _session(daemon, "/pinned")) == ["echo", "switch"]
        assert within(2.0, lambda: ("tool", "add") in drift())
        with only(daemon, 2):  # worker 2 was told: it holds "add" back as a known drift, no new event
            assert _tools(daemon, "/pinned", _session(daemon, "/pinned")) == ["echo", "switch"]
        assert drift().count(("tool", "add")) == 1
        pin = next(p for p in daemon.admin("GET", f"/apis/{api_id}/pins")[1]["data"] if p["name"] == "add")
        status, _ = daemon.admin("POST", f"/apis/{api_id}/pins/{pin['id']}/_approve",
                                 {"fingerprint": pin["pending"]["fingerprint"]})
        assert status == 200
        for serving in (1, 2):  # the operator's approval reaches both
            with only(daemon, serving):
                session = _session(daemon, "/pinned")
                assert within(1.0, lambda s=session: _tools(daemon, "/pinned", s) == ["add", "echo", "switch"])
    finally:
        daemon.stop_if_running()
        server.proc.stop()
