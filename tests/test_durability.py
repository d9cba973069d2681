"""
The SQLite store under stress: a kill -9 in the middle of a burst of
concurrent admin writes loses no acknowledged write, and SIGTERM shuts the
daemon down cleanly (listeners closed, store flushed and closed).
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any, Dict, List, Set

import attrs

from mcpgated.sqlitedb import migrations
from tests.daemon_helpers import ACCEPT, all_apis, definition
from tests.support import Daemon, http

SCHEMA = migrations("mcpgated.store")[-1][0]  # the newest store/migrations/NNN_*.sql

WRITERS = 8


@attrs.define
class Acknowledged:
    """
    What the admin API acknowledged (2xx), and so must survive.
    """

    created: Dict[str, str] = attrs.field(factory=dict)  # id -> context path
    deployed: Set[str] = attrs.field(factory=set)
    renamed: Set[str] = attrs.field(factory=set)
    deleted: Set[str] = attrs.field(factory=set)
    failures: List[str] = attrs.field(factory=list)
    lock: threading.Lock = attrs.field(factory=threading.Lock)
    enough: threading.Event = attrs.field(factory=threading.Event)

    def count(self) -> int:
        return len(self.created) + len(self.deployed) + len(self.renamed) + len(self.deleted)


class _CutOff(Exception):
    """
    The daemon went away mid-request, or refused because it is stopping.
    """


def _call(daemon: Daemon, expected: int, method: str, path: str, body: Any = None) -> Any:
    try:
        status, answer = daemon.admin(method, path, body)
    except Exception as e:  # connection refused, reset or closed early
        raise _CutOff(f"{type(e).__name__}: {e}") from e
    if status == 503:  # shutting down: refused, nothing written
        raise _CutOff(answer["error"])
    if status != expected:
        raise AssertionError(f"{method} {path}: {status} {answer}")
    return answer


def _writer(daemon: Daemon, backend: str, number: int, acked: Acknowledged,
            stop: threading.Event, target: int) -> None:
    """
    Create, deploy and rename, or create and delete (every third API),
    until the daemon stops answering.
    """
    index = 0
    while not stop.is_set():
        path = f"/w{number}/api{index}"
        try:
            api_id = _call(daemon, 201, "POST", "/apis", definition(path, backend))["id"]
            with acked.lock:
                acked.created[api_id] = path
            if index % 3 == 2:
                _call(daemon, 204, "DELETE", f"/apis/{api_id}")
                with acked.lock:
                    acked.deleted.add(api_id)
            else:
                _call(daemon, 200, "POST", f"/apis/{api_id}/_deploy")
                with acked.lock:
                    acked.deployed.add(api_id)
                _call(daemon, 200, "PUT", f"/apis/{api_id}",
                      definition(path, backend, name=f"renamed {api_id}"))
                with acked.lock:
                    acked.renamed.add(api_id)
        except _CutOff as e:
            with acked.lock:
                acked.failures.append(str(e))
            return
        index += 1
        if acked.count() >= target:
            acked.enough.set()


def _burst(daemon: Daemon, backend: str, target: int) -> tuple:
    acked = Acknowledged()
    stop = threading.Event()
    errors: List[BaseException] = []

    def run(number: int) -> None:
        try:
            _writer(daemon, backend, number, acked, stop, target)
        except BaseException as e:  # noqa: BLE001 -- handed to the test's thread, which raises it
            errors.append(e)
            acked.enough.set()

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    assert acked.enough.wait(60), "the burst did not get going"
    assert errors == []
    return acked, stop, threads, errors


def _finish(acked: Acknowledged, stop: threading.Event, threads: List[threading.Thread],
            errors: List[BaseException]) -> None:
    stop.set()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    assert errors == []


def _check_survivors(daemon: Daemon, acked: Acknowledged) -> None:
    stored: Dict[str, Any] = {api["id"]: api for api in all_apis(daemon)}
    missing = [i for i in acked.created if i not in stored and i not in acked.deleted]
    assert missing == [], f"{len(missing)} acknowledged creates lost"
    resurrected = [i for i in acked.deleted if i in stored]
    assert resurrected == [], "acknowledged deletes undone"
    for api_id in acked.deployed:
        api = stored[api_id]
        assert api["state"] == "STARTED", api
        assert api["deployed"]["contextPath"] == acked.created[api_id]
    for api_id in acked.renamed:
        assert stored[api_id]["name"] == f"renamed {api_id}"
    # The routing table is rebuilt from the store: every acknowledged
    # deploy is served (relayed to server-everything, which refuses a ping
    # outside a session: its 400, not the gateway's 404).
    started = [api for api in stored.values() if api["state"] == "STARTED"]
    assert daemon.admin("GET", "/health")[1]["apisStarted"] == len(started)
    for api_id in acked.deployed:
        status, _, body = http("POST", daemon.gateway + acked.created[api_id],
                               {"jsonrpc": "2.0", "id": 1, "method": "ping"}, ACCEPT)
        assert status == 400 and b"No MCP API" not in body, (acked.created[api_id], body)


def test_kill_9_during_a_write_burst_loses_no_acknowledged_write(tmp_path, everything):
    daemon = Daemon(tmp_path).start()
    acked, stop, threads, errors = _burst(daemon, f"http://127.0.0.1:{everything}/mcp", 150)
    daemon.kill()  # SIGKILL while the writers are still writing
    with acked.lock:
        counted = acked.count()
    _finish(acked, stop, threads, errors)
    assert len(acked.failures) == WRITERS  # every writer was cut off mid-burst
    # Writes acknowledged between the kill signal and the process dying
    # count too: the snapshot above is only a lower bound.
    assert acked.count() >= counted >= 150
    assert (tmp_path / "data" / "mcpgated.db-wal").exists()  # no clean close happened

    daemon.start()
    try:
        _check_survivors(daemon, acked)
        assert any("store" in line and f"open (schema {SCHEMA})" in line
                   for line in daemon.proc.output)
    finally:
        daemon.stop()


def test_sigterm_shuts_down_cleanly_during_a_write_burst(tmp_path, everything):
    daemon = Daemon(tmp_path).start()
    ports = dict(daemon.ports)
    acked, stop, threads, errors = _burst(daemon, f"http://127.0.0.1:{everything}/mcp", 60)
    assert daemon.stop() == -15  # twistd re-raises SIGTERM after a clean shutdown
    _finish(acked, stop, threads, errors)
    assert len(acked.failures) == WRITERS  # every writer was cut off mid-burst

    output = daemon.proc.output
    store = tmp_path / "data" / "mcpgated.db"

    def line_of(text: str) -> int:
        found = [n for n, line in enumerate(output) if text in line]
        assert found, f"no {text!r} in the output:\n" + "\n".join(output[-30:])
        return found[0]

    terminated = line_of("Main loop terminated")
    assert line_of("Received SIGTERM") < terminated
    for port in ports["gateway"] + ports["admin"]:
        assert line_of(f"Port {port} Closed") < terminated
    assert line_of(f"store {store} closed") < terminated
    problems = [line for line in output if "Traceback" in line or "Unhandled" in line
                or "#critical" in line or "#error" in line]
    assert problems == [], "\n".join(output)

    # Flushed and closed: the WAL was checkpointed into the database and
    # removed, the ports file is gone, and the daemon log saw it all.
    assert not (tmp_path / "data" / "mcpgated.db-wal").exists()
    assert not (tmp_path / "run" / "ports.json").exists()
    assert f"store {store} closed" in (tmp_path / "log" / "mcpgated.log").read_text()
    with sqlite3.connect(store) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    connection.close()

    daemon.start()
    try:
        _check_survivors(daemon, acked)
    finally:
        daemon.stop()
