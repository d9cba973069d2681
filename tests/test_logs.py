"""
Log files under [logging] dir: the daemon log and the JSON-lines access log,
rotated by size with a bounded number of old files; twistd's own
--logfile=- keeps working beside them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import List

from mcpgated.logs import AccessLog, open_rotating
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


class _Clock:
    def seconds(self) -> float:
        return 0.0


_ACCESS_KEYS = ("time", "api", "apiId", "method", "path", "status", "outcome", "bytesIn",
                "bytesOut", "durationMs", "client")


def test_access_line_from_values_is_the_line_from_a_dict(tmp_path):
    samples = [
        (1800000000.123, "files", "0f8e", "POST", "/files/mcp", 200, "complete", 112, 109, 0.25,
         "127.0.0.1"),
        (1.0, None, None, None, None, None, "too_large", 0, 0, 1e-07, None),
        (1e22, "é\u2028\"\\", "\x00", "GET", "/a b/\u00ff", 404, "x", 10 ** 20, -1, 1e300, "::1"),
        (float("nan"), "a", "b", "c", "d", 1, "o", 1, 2, float("inf"), "z"),
        (1.5, b"bytes", "b", "c", "d", True, "o", 1, 2, 3.0, "z"),
        (2, "a", "b", "c", "d", 1, "o", 1, 2, 3.0, "z"),
    ]
    by_values = AccessLog(_Clock(), open_rotating(tmp_path, "a.log", 1 << 20, 1))
    by_dict = AccessLog(_Clock(), open_rotating(tmp_path, "b.log", 1 << 20, 1))
    for values in samples:
        by_values.exchange(*values)
        by_dict.record(dict(zip(_ACCESS_KEYS, values)))
    assert by_values._buffer == by_dict._buffer
    by_values.stop()
    by_dict.stop()
    assert (tmp_path / "a.log").read_bytes() == (tmp_path / "b.log").read_bytes()
    assert json.loads((tmp_path / "a.log").read_text().splitlines()[0])["path"] == "/files/mcp"


def test_batched_writes_rotate_where_line_by_line_writes_would(tmp_path):
    # A batch goes out in as few writes as rotation allows; the files end up
    # as if each line had been written alone (LogFile checks before a write).
    rnd = random.Random(3)
    for trial in range(60):
        max_bytes, keep = rnd.choice([64, 100, 256, 1000]), rnd.choice([1, 2, 3])
        batched, single = tmp_path / f"{trial}-batched", tmp_path / f"{trial}-single"
        if rnd.random() < 0.3:
            old = "x" * rnd.randrange(3 * max_bytes) + "\n"
            for folder in (batched, single):
                folder.mkdir()
                (folder / "access.log").write_text(old)
        log = AccessLog(_Clock(), open_rotating(batched, "access.log", max_bytes, keep),
                        flush_bytes=rnd.choice([1, 64, 300, 5000]))
        reference = open_rotating(single, "access.log", max_bytes, keep)
        for n in range(rnd.randrange(1, 150)):
            fields = {"n": n, "pad": "y" * rnd.randrange(120)}
            log.record(fields)
            reference.write(json.dumps(fields, separators=(",", ":")) + "\n")
            if rnd.random() < 0.05:
                log.flush()
        log.stop()
        reference.close()
        assert ({p.name: p.read_bytes() for p in batched.iterdir()}
                == {p.name: p.read_bytes() for p in single.iterdir()}), trial
