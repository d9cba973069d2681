"""
Log files under [logging] dir: the daemon log and the JSON-lines access log,
rotated by size with a bounded number of old files; twistd's own
--logfile=- keeps working beside them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

from tests.daemon_helpers import TwistdDaemon, create, set_options
from tests.support import Daemon, http

MAX_BYTES = 2048
KEEP = 2
# The longest single write: one access line or one daemon log event.
LONGEST_LINE = 600


def _rotated(folder: Path, name: str) -> List[Path]:
    """
    C{name}, C{name.1}, C{name.2}, ...: newest first.
    """
    found = sorted(folder.glob(name + "*"))
    assert {p.name for p in found} <= {name} | {f"{name}.{n}" for n in range(1, 100)}, found
    return [folder / name] + [folder / f"{name}.{n}" for n in range(1, len(found))]


def test_logs_rotate_by_size_and_keep_a_bounded_number(tmp_path):
    daemon = Daemon(tmp_path)
    set_options(daemon, "logging", max_bytes="2KB", keep=str(KEEP))
    daemon.start()
    requests = 120
    apis = 80
    try:
        for number in range(requests):
            status, _, _ = http("POST", daemon.gateway + f"/nowhere/{number}",
                                {"jsonrpc": "2.0", "id": number, "method": "ping"})
            assert status == 404
        created = [create(daemon, {"name": f"api {n}", "version": "1", "contextPath": f"/a{n}",
                                   "backend": "http://127.0.0.1:1/mcp",
                                   "plans": [{"name": "K", "security": "KEY_LESS"}]})["id"]
                   for n in range(apis)]
    finally:
        assert daemon.stop() == -15  # the access log is flushed on shutdown
    folder = tmp_path / "log"

    # The access log: at most keep + 1 files, each about max_bytes, the
    # newest exchanges kept and the oldest ones dropped, in order.
    files = _rotated(folder, "access.log")
    assert len(files) == KEEP + 1
    numbers = []
    for path in reversed(files):  # oldest first
        size = path.stat().st_size
        assert 0 < size <= MAX_BYTES + LONGEST_LINE, (path, size)
        for line in path.read_text().splitlines():
            record = json.loads(line)
            assert record["method"] == "POST" and record["status"] == 404
            assert record["outcome"] == "gateway_error"
            numbers.append(int(record["path"].rsplit("/", 1)[1]))
    assert numbers == sorted(numbers)
    assert numbers[-1] == requests - 1
    assert numbers[0] > 0  # the oldest lines were rotated away
    assert all(path.stat().st_size >= MAX_BYTES for path in files[1:])

    # The daemon log: same bound; the newest file saw the shutdown.
    files = _rotated(folder, "mcpgated.log")
    assert len(files) == KEEP + 1
    for path in files:
        size = path.stat().st_size
        assert 0 < size <= MAX_BYTES + LONGEST_LINE, (path, size)
    newest = files[0].read_text()
    assert f"API {created[-1]} created at /a{apis - 1}" in newest
    assert "store" in newest and "closed" in newest
    text = "".join(path.read_text() for path in files)
    assert f"API {created[0]} created" not in text  # rotated away
    assert "mcpgated ready" not in text

    # A restart appends to the current files and keeps the bound.
    daemon.start()
    daemon.stop()
    files = _rotated(folder, "mcpgated.log")
    assert len(files) == KEEP + 1
    assert "mcpgated ready" in "".join(path.read_text() for path in files)


def test_logfile_dash_still_logs_to_stdout_beside_the_files(tmp_path):
    daemon = TwistdDaemon(tmp_path, ["--logfile=-"])
    set_options(daemon, "logging", access_log="off")
    daemon.start()  # found its "mcpgated ready" line on stdout
    try:
        status, _, _ = http("POST", daemon.gateway + "/nowhere", {"jsonrpc": "2.0", "id": 1})
        assert status == 404
    finally:
        assert daemon.stop() == -15
    assert any("Main loop terminated" in line for line in daemon.proc.output)
    folder = tmp_path / "log"
    assert "mcpgated ready" in (folder / "mcpgated.log").read_text()
    assert not (folder / "access.log").exists()  # access_log = off


def test_no_log_folder_means_no_log_files(tmp_path):
    daemon = TwistdDaemon(tmp_path, ["--logfile=-"])
    daemon.ini.write_text(daemon.ini.read_text().replace("dir = log\n", "dir =\n"))
    daemon.start()
    try:
        status, _, _ = http("POST", daemon.gateway + "/nowhere", {"jsonrpc": "2.0", "id": 1})
        assert status == 404
    finally:
        assert daemon.stop() == -15
    assert any("mcpgated ready" in line for line in daemon.proc.output)
    assert not (tmp_path / "log").exists()
    assert [p for p in tmp_path.rglob("*") if ".log" in p.name] == []
