"""
Issue #14 item 6: where the daemon writes, and what it does when it cannot.

Under the systemd unit (ProtectSystem=strict: everything read-only but the
unit's StateDirectory and LogsDirectory), an INI that sets only
C{[storage] path} and C{[logging] dir} left the analytics store in the
INI's read-only folder: the daemon logged a critical line, said ready and
dropped every exchange record. Now the analytics store follows the API
store (or C{$STATE_DIRECTORY}), C{--check-config} names the section and key
of a path the daemon could not write, and a daemon whose store does not
open exits with status 1 and one line, never ready (no READY=1 for
systemd's Type=notify).

Real twistd processes. The tests may run as root, for whom chmod does not
stop writes: a read-only folder is then a path under /proc, where no one
creates anything.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

from mcpgated import config
from tests.support import BIN, Proc

# --- where the files go ---------------------------------------------------------------------


def test_the_analytics_store_follows_the_storage_path(tmp_path):
    cfg = config.parse_text("[storage]\npath = /srv/state/gw.db\n", "m.ini", tmp_path, {})
    assert cfg.storage.path == Path("/srv/state/gw.db")
    assert cfg.analytics.path == Path("/srv/state/analytics.db")
    relative = config.parse_text("[storage]\npath = data/gw.db\n", "m.ini", tmp_path, {})
    assert relative.analytics.path == relative.storage.path.parent / "analytics.db"


def test_systemd_state_directory_holds_both_stores(tmp_path):
    environ = {"STATE_DIRECTORY": "/var/lib/mcpgated:/var/lib/other"}
    cfg = config.parse_text("", "m.ini", tmp_path, environ)
    assert cfg.storage.path == Path("/var/lib/mcpgated/mcpgated.db")
    assert cfg.analytics.path == Path("/var/lib/mcpgated/analytics.db")
    # a path the INI names wins over the environment
    named = config.parse_text("[storage]\npath = /srv/gw.db\n[analytics]\npath = /srv/a/x.db\n",
                              "m.ini", tmp_path, environ)
    assert (named.storage.path, named.analytics.path) == (Path("/srv/gw.db"), Path("/srv/a/x.db"))
    # without systemd: var/ as before
    plain = config.parse_text("", "m.ini", tmp_path, {})
    assert plain.analytics.path.parent == plain.storage.path.parent
    assert plain.storage.path.name == "mcpgated.db" and plain.storage.path.parent.name == "var"


# --- ways to make a path unwritable, for root too ---------------------------------------------


def _chmod_stops_writes(folder: Path) -> bool:
    probe = folder / "chmod-probe"
    probe.mkdir()
    probe.chmod(0o500)
    try:
        (probe / "x").touch()
    except PermissionError:
        return True
    else:
        (probe / "x").unlink()
        return False
    finally:
        probe.chmod(0o700)
        probe.rmdir()


def _read_only_folder(tmp_path: Path) -> Path:
    """
    A folder no file can be created in: chmod 0500 where that stops this
    user, else (root) a folder under /proc.
    """
    if _chmod_stops_writes(tmp_path):
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o500)
        return folder
    return Path("/proc") / f"mcpgated-test-{uuid.uuid4().hex}"


def _under_a_file(tmp_path: Path) -> Path:
    (tmp_path / "a-file").write_text("not a folder\n")
    return tmp_path / "a-file"


WAYS = ["read-only-folder", "under-a-file"]


def _unwritable_folder(tmp_path: Path, way: str) -> Path:
    return _read_only_folder(tmp_path) if way == "read-only-folder" else _under_a_file(tmp_path)


def _ini(folder: Path, text: str) -> Path:
    ini = folder / "mcpgated.ini"
    ini.write_text("[gateway]\nlisten = tcp:0:interface=127.0.0.1\n"
                   "[admin]\nlisten = tcp:0:interface=127.0.0.1\ntoken = t\n" + text)
    return ini


def _twistd(argv: List[str], cwd: Path, env: Optional[Dict[str, str]] = None,
            timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "twistd"), *argv], cwd=str(cwd), capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("way", WAYS)
def test_check_config_names_each_path_it_cannot_write(tmp_path, way):
    folder = _unwritable_folder(tmp_path, way)
    ini = _ini(tmp_path, f"[storage]\npath = {folder}/data/mcpgated.db\n"
                         f"[analytics]\npath = {folder}/analytics.db\n"
                         f"[logging]\ndir = {folder}/log\n"
                         f"[daemon]\nports_file = {folder}/run/ports.json\n")
    result = _twistd(["mcpgated", "-c", str(ini), "--check-config"], tmp_path)
    assert result.returncode != 0
    assert result.stdout == "" and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert [line.split(f" cannot write {folder}/")[0] for line in lines] == [
        f"mcpgated: {ini}: [storage] path:",
        f"mcpgated: {ini}: [analytics] path:",
        f"mcpgated: {ini}: [logging] dir:",
        f"mcpgated: {ini}: [daemon] ports_file:",
    ], result.stderr
    # each path is checked on its own: the others writable, one line
    ok = tmp_path / "ok"
    ini = _ini(tmp_path, f"[storage]\npath = {ok}/mcpgated.db\n"
                         f"[logging]\ndir = {ok}/log\n"
                         f"[daemon]\nports_file = {folder}/run/ports.json\n")
    result = _twistd(["mcpgated", "-c", str(ini), "--check-config"], tmp_path)
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"mcpgated: {ini}: [daemon] ports_file: cannot write "
                           f"{folder}/run/ports.json: "), line
    assert not ok.exists()  # a check writes nothing


def test_check_config_takes_a_folder_for_a_file_and_a_file_for_a_folder(tmp_path):
    (tmp_path / "db-folder").mkdir()
    (tmp_path / "log-file").write_text("")
    ini = _ini(tmp_path, f"[storage]\npath = {tmp_path}/db-folder\n[logging]\ndir = {tmp_path}/log-file\n")
    result = _twistd(["mcpgated", "-c", str(ini), "--check-config"], tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"mcpgated: {ini}: [storage] path: cannot write {tmp_path}/db-folder: "
        f"{tmp_path}/db-folder is a folder, not a file",
        f"mcpgated: {ini}: [logging] dir: cannot write {tmp_path}/log-file: "
        f"{tmp_path}/log-file is not a folder",
    ]


# --- the unit's configuration, started as systemd would ------------------------------------


@pytest.fixture
def notify_socket() -> Iterator[socket.socket]:
    """
    A datagram socket standing in for systemd's NOTIFY_SOCKET (abstract
    namespace: no path length limit, nothing to clean up).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(f"\0mcpgated-test-{uuid.uuid4().hex}")
    sock.settimeout(10)
    yield sock
    sock.close()


def _notify_env(sock: socket.socket) -> Dict[str, str]:
    return {"NOTIFY_SOCKET": "@" + sock.getsockname()[1:].decode()}


def _received(sock: socket.socket) -> List[str]:
    """
    Every datagram already queued on the socket.
    """
    messages = []
    sock.setblocking(False)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(10)
    return messages


def test_the_units_ini_keeps_analytics_beside_the_store_and_says_ready(tmp_path, notify_socket):
    # /etc (the INI's folder, read-only under the unit) holds no writable var/.
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "var").write_text("read-only /etc: no var/ folder can be made here\n")
    state = tmp_path / "var-lib-mcpgated"
    ini = etc / "mcpgated.ini"
    ini.write_text("[gateway]\nlisten = tcp:0:interface=127.0.0.1\n"
                   "[admin]\nlisten = tcp:0:interface=127.0.0.1\n"
                   f"[storage]\npath = {state}/mcpgated.db\n[logging]\ndir = {tmp_path}/log\n")
    checked = _twistd(["mcpgated", "-c", str(ini), "--check-config"], tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    proc = Proc([str(BIN / "twistd"), "-n", "--pidfile=", "mcpgated", "-c", str(ini)],
                env=_notify_env(notify_socket), cwd=str(tmp_path))
    try:
        proc.wait_for(rf"analytics store {state}/analytics.db open")
        ports = json.loads(proc.wait_for(r"mcpgated ready: (\{.*\})").group(1))
        ready = notify_socket.recv(4096).decode()
        assert ready.splitlines() == ["READY=1", f"STATUS=ready: {json.dumps(ports)}"]
        assert proc.popen.poll() is None
    finally:
        assert proc.stop() in (0, -15)
    assert sorted(p.name for p in state.iterdir() if not p.name.endswith(("-wal", "-shm"))) == \
        ["admin.token", "analytics.db", "mcpgated.db", "session.key"]
    assert _received(notify_socket) == ["STOPPING=1"]
    assert not [line for line in proc.output if "cannot open" in line]


def test_state_directory_from_systemd(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    ini = _ini(tmp_path, f"[logging]\ndir = {tmp_path}/log\n")
    proc = Proc([str(BIN / "twistd"), "-n", "--pidfile=", "mcpgated", "-c", str(ini)],
                env={"STATE_DIRECTORY": str(state)}, cwd=str(tmp_path))
    try:
        proc.wait_for(rf"store {state}/mcpgated.db open")
        proc.wait_for(r"mcpgated ready")
    finally:
        proc.stop()
    assert (state / "analytics.db").is_file() and not (tmp_path / "var").exists()


# --- a store that does not open: status 1, one line, never ready ------------------------------


@pytest.mark.parametrize("store, line", [
    ("mcpgated.db", "cannot open the store {path}: file is not a database"),
    ("analytics.db", "cannot open the analytics store {path}: file is not a database"),
], ids=["api-store", "analytics-store"])
def test_a_store_that_cannot_open_ends_the_daemon_with_status_1(tmp_path, notify_socket,
                                                                  store, line):
    state = tmp_path / "state"
    state.mkdir()
    (state / store).write_bytes(b"this is not an SQLite database, but it is writable. " * 20)
    ini = _ini(tmp_path, f"[storage]\npath = {state}/mcpgated.db\n[logging]\ndir = {tmp_path}/log\n")
    result = _twistd(["-n", "--pidfile=", "mcpgated", "-c", str(ini)], tmp_path,
                     env=_notify_env(notify_socket))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    expected = line.format(path=state / store)
    assert [x for x in output.splitlines() if "cannot open" in x] == \
        [x for x in output.splitlines() if expected in x and "mcpgated cannot start" in x], output
    assert len([x for x in output.splitlines() if expected in x]) == 1, output
    assert "Traceback" not in output
    assert "mcpgated ready" not in output
    assert "READY=1" not in _received(notify_socket)
    # the daemon's own log file has the line too (closed before the exit)
    assert expected in (tmp_path / "log" / "mcpgated.log").read_text()


@pytest.mark.parametrize("way", WAYS)
def test_a_daemon_that_cannot_write_a_store_does_not_start(tmp_path, way):
    folder = _unwritable_folder(tmp_path, way)
    ini = _ini(tmp_path, f"[storage]\npath = {tmp_path}/state/mcpgated.db\n"
                         f"[logging]\ndir = {tmp_path}/log\n[analytics]\npath = {folder}/a.db\n")
    result = _twistd(["-n", "--pidfile=", "mcpgated", "-c", str(ini)], tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"mcpgated: {ini}: [analytics] path: cannot write {folder}/a.db" in output
    assert "mcpgated ready" not in output and "Traceback" not in output
