"""
Files the daemon creates are its own whatever umask it starts with: the
databases (and SQLite's -wal/-shm files), the generated admin token and
their folder are 0600/0700, log files (rotated ones too) and their folder
0640/0750. A file that already exists keeps its operator's mode.
"""

from __future__ import annotations

import stat
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from tests.daemon_helpers import ACCEPT, INITIALIZE, UNREACHABLE, action, create, definition
from tests.support import Daemon, http


class UmaskDaemon(Daemon):
    """
    The daemon started by C{sh -c 'umask N; exec twistd ...'}.
    """

    def __init__(self, folder: Path, umask: int, **kwargs: object) -> None:
        super().__init__(folder, **kwargs)  # type: ignore[arg-type]
        self.umask = umask

    def command(self) -> List[str]:
        return ["sh", "-c", f'umask {self.umask:03o} && exec "$@"', "sh", *super().command()]


def _write_ini(folder: Path) -> None:
    # No admin token configured: one is generated beside the database.
    # Folders that do not exist yet; small log files, so they rotate.
    (folder / "mcpgated.ini").write_text(
        "[gateway]\nlisten = tcp:0:interface=127.0.0.1\n"
        "[admin]\nlisten = tcp:0:interface=127.0.0.1\n"
        "[storage]\npath = state/db/mcpgated.db\n"
        "[analytics]\npath = state/db/analytics.db\nexchange_log = on\n"
        "[logging]\ndir = logs/gateway\nmax_bytes = 2KB\nkeep = 2\n"
        "[daemon]\nports_file = run/ports.json\n")


def _modes(root: Path) -> Dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode)
            for p in sorted(root.rglob("*"))}


def _settled_modes(root: Path) -> Dict[str, int]:
    """
    The modes of a whole walk of C{root} while the daemon runs: a log file
    rotated during the walk (renamed, then opened anew; the oldest removed)
    makes the walk start again.
    """
    current = {f"logs/gateway/{name}.log" for name in ("mcpgated", "access", "exchanges")}
    deadline = time.monotonic() + 10
    while True:
        try:
            modes = _modes(root)
        except FileNotFoundError:
            modes = {}
        if current <= modes.keys():
            return modes
        assert time.monotonic() < deadline, f"the files never held still: {sorted(modes)}"


@pytest.fixture(scope="module", params=[0o000, 0o022, 0o077],
                ids=["umask-000", "umask-022", "umask-077"])
def files(request, tmp_path_factory, everything) -> Iterator[Dict[str, int]]:
    """
    The modes of what a daemon started with that umask created, after some
    admin writes and traffic (WAL files, exchange records, rotated logs).
    """
    tmp_path = tmp_path_factory.mktemp("modes")
    daemon = UmaskDaemon(tmp_path, request.param)
    _write_ini(tmp_path)
    daemon.start()
    try:
        daemon.token = (tmp_path / "state" / "db" / "admin.token").read_text().strip()
        api = create(daemon, definition("/modes", backend=f"http://127.0.0.1:{everything}/mcp"))
        action(daemon, api["id"], "_deploy")
        for number in range(12):  # daemon log lines
            create(daemon, definition(f"/more/{number}", backend=UNREACHABLE))
        for _ in range(30):  # access lines and exchange records
            status, _, _ = http("POST", daemon.gateway + "/modes", INITIALIZE, ACCEPT)
            assert status == 200
        # The lines are written in batches (within half a second).
        logs = tmp_path / "logs" / "gateway"
        deadline = time.monotonic() + 10
        while not ((logs / "access.log.1").exists() and (logs / "exchanges.log.1").exists()):
            assert time.monotonic() < deadline, sorted(p.name for p in logs.iterdir())
            time.sleep(0.05)
        # Written and kept open: the -wal and -shm files exist now.
        assert (tmp_path / "state" / "db" / "mcpgated.db-wal").exists()
        yield _settled_modes(tmp_path)
    finally:
        daemon.stop()


def test_secrets_are_the_service_users_alone(files):
    secrets = {name: mode for name, mode in files.items() if name.startswith("state")}
    assert secrets == {
        "state": 0o700,
        "state/db": 0o700,
        "state/db/admin.token": 0o600,
        "state/db/session.key": 0o600,  # the key sealing load-balanced sessions
        "state/db/mcpgated.db": 0o600,
        "state/db/mcpgated.db-wal": 0o600,
        "state/db/mcpgated.db-shm": 0o600,
        "state/db/analytics.db": 0o600,
        "state/db/analytics.db-wal": 0o600,
        "state/db/analytics.db-shm": 0o600,
    }


def test_logs_are_readable_by_the_group_only(files):
    logs = {name: mode for name, mode in files.items() if name.startswith("logs")}
    assert logs["logs"] == 0o750 and logs["logs/gateway"] == 0o750
    names = {name.rsplit("/", 1)[1] for name in logs if name.count("/") == 2}
    # Current and rotated files of the three logs.
    assert {"mcpgated.log", "mcpgated.log.1", "access.log", "access.log.1",
            "exchanges.log", "exchanges.log.1"} <= names, names
    assert {mode for name, mode in logs.items() if name.count("/") == 2} == {0o640}, logs


def test_existing_files_keep_their_mode(tmp_path):
    # An operator's choice (a log shipper reading as another user) stays.
    folder = tmp_path / "logs" / "gateway"
    folder.mkdir(parents=True)
    folder.chmod(0o755)
    (folder / "access.log").write_text("")
    (folder / "access.log").chmod(0o644)
    daemon = UmaskDaemon(tmp_path, 0o000)
    _write_ini(tmp_path)
    daemon.start()
    try:
        daemon.token = (tmp_path / "state" / "db" / "admin.token").read_text().strip()
        status, _, _ = http("POST", daemon.gateway + "/nowhere", {"jsonrpc": "2.0", "id": 1,
                                                                 "method": "ping"})
        assert status == 404
    finally:
        daemon.stop()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert stat.S_IMODE((folder / "access.log").stat().st_mode) == 0o644
    assert '"status":404' in (folder / "access.log").read_text()
    # What it created itself is private all the same.
    assert stat.S_IMODE((folder / "mcpgated.log").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "state" / "db" / "mcpgated.db").stat().st_mode) == 0o600
