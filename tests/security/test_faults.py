"""
A log file that cannot be written (a full disk, an I/O error) never stops
the periodic flush: the lines of a failed write are dropped and counted
(C{mcpgated_log_lines_dropped_total}), the error is logged once per streak,
nothing piles up in memory, and writing resumes, on a line of its own, as
soon as the file can take it. The same for the exchange-log store's batches
and its pruning job.

Writes fail for real: the log file is a symbolic link to /dev/full (every
write: ENOSPC), or a LogFile whose writes raise the errno given.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from twisted.internet.defer import fail
from twisted.internet.task import Clock, LoopingCall
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.logfile import LogFile

from mcpgated.analytics.store import AnalyticsStore
from mcpgated.logs import (
    ACCESS_LOG,
    AccessLog,
    DroppedLines,
    GuardedObserver,
    LogFilesService,
    open_rotating,
)
from tests.daemon_helpers import ACCEPT, INITIALIZE, action, create, definition
from tests.support import Daemon, http, metric

DEV_FULL = "/dev/full"


@pytest.fixture
def events() -> Iterator[List[Dict[str, Any]]]:
    """
    What mcpgated logs during the test (warnings and worse, and infos).
    """
    seen: List[Dict[str, Any]] = []

    def observer(event: Dict[str, Any]) -> None:
        if str(event.get("log_namespace", "")).startswith("mcpgated"):
            seen.append(event)

    globalLogPublisher.addObserver(observer)
    yield seen
    globalLogPublisher.removeObserver(observer)


def _errors(events: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [e for e in events if e["log_level"] >= LogLevel.error]


def _line(n: int) -> Dict[str, Any]:
    return {"n": n, "pad": "x" * 40}


def _full_log(folder: Path) -> AccessLog:
    """
    An access log whose file is /dev/full, flushed by a LoopingCall on a
    fake clock.
    """
    folder.mkdir(exist_ok=True)
    (folder / ACCESS_LOG).symlink_to(DEV_FULL)
    clock = Clock()
    log = AccessLog(clock, open_rotating(folder, ACCESS_LOG, 1 << 20, 2))
    log.start()
    return log


class FailingLogFile(LogFile):
    """
    A LogFile whose writes raise C{OSError(error)} while C{failing}; with
    C{partial}, a failing write first writes half of its data.
    """

    error = errno.EIO
    failing = False
    partial = False

    def write(self, data: Any) -> None:
        if self.failing:
            if self.partial:
                LogFile.write(self, data[: len(data) // 2])
            raise OSError(self.error, os.strerror(self.error))
        LogFile.write(self, data)


# --- the access (and exchange) log writer ---------------------------------------------------


def test_flush_survives_a_full_disk_counts_and_resumes(tmp_path, events):
    folder = tmp_path / "log"
    log = _full_log(folder)
    for n in range(5):
        log.record(_line(n))
    log.clock.advance(0.5)  # the periodic flush: ENOSPC
    assert log.dropped == 5
    for n in range(5, 8):
        log.record(_line(n))
    log.clock.advance(0.5)
    log.clock.advance(0.5)  # nothing to write: no error, no reopening
    assert log.dropped == 8
    # The flush goes on, and nothing waits in memory for 64 KB to build up.
    assert log._loop is not None and log._loop.running
    assert log._buffer == [] and log._buffered == 0
    errors = _errors(events)
    assert len(errors) == 1, errors  # once per streak, not per flush
    assert "access.log" in errors[0]["path"] and "No space left" in errors[0]["error"]

    # Space again (the file is a plain one now): the next flush writes.
    (folder / ACCESS_LOG).unlink()
    log.record(_line(8))
    log.clock.advance(0.5)
    assert [json.loads(x)["n"] for x in (folder / ACCESS_LOG).read_text().splitlines()] == [8]
    assert log.dropped == 8
    assert [e["count"] for e in events if "written again" in e["log_format"]] == [8]

    # A new streak is logged again.
    (folder / ACCESS_LOG).unlink()
    (folder / ACCESS_LOG).symlink_to(DEV_FULL)
    log.logfile = open_rotating(folder, ACCESS_LOG, 1 << 20, 2)
    log.record(_line(9))
    log.clock.advance(0.5)
    assert log.dropped == 9 and len(_errors(events)) == 2
    log.stop()


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG],
                         ids=["ENOSPC", "EIO", "EDQUOT", "EFBIG"])
def test_errors_of_every_kind_are_survived(tmp_path, events, error):
    logfile = FailingLogFile(ACCESS_LOG, str(tmp_path), rotateLength=1 << 20)
    log = AccessLog(Clock(), logfile)
    log.start()
    FailingLogFile.error, FailingLogFile.failing = error, True
    try:
        log.record(_line(0))
        log.record(_line(1))
        log.clock.advance(0.5)
    finally:
        FailingLogFile.failing = False
    assert log.dropped == 2 and log._loop.running
    assert len(_errors(events)) == 1 and os.strerror(error) in _errors(events)[0]["error"]
    log.record(_line(2))
    log.clock.advance(0.5)
    assert [json.loads(x)["n"] for x in (tmp_path / ACCESS_LOG).read_text().splitlines()] == [2]
    log.stop()


def test_a_half_written_line_does_not_swallow_the_next_one(tmp_path, events):
    logfile = FailingLogFile(ACCESS_LOG, str(tmp_path), rotateLength=1 << 20)
    log = AccessLog(Clock(), logfile)
    log.start()
    log.record(_line(0))
    log.clock.advance(0.5)
    FailingLogFile.error, FailingLogFile.failing, FailingLogFile.partial = errno.ENOSPC, True, True
    try:
        log.record(_line(1))
        log.clock.advance(0.5)  # half of line 1 reaches the file
    finally:
        FailingLogFile.failing = FailingLogFile.partial = False
    log.record(_line(2))
    log.clock.advance(0.5)
    log.stop()
    lines = (tmp_path / ACCESS_LOG).read_text().splitlines()
    assert json.loads(lines[0])["n"] == 0
    assert lines[1].startswith('{"n":1') and not lines[1].endswith("}")  # the cut one
    assert json.loads(lines[2])["n"] == 2  # on its own line
    assert log.dropped == 1


def test_a_batch_written_in_part_counts_only_the_lost_lines(tmp_path):
    # A write per rotation: the lines before the failing write are kept.
    class FailsSecondWrite(LogFile):
        writes = 0

        def write(self, data: Any) -> None:
            FailsSecondWrite.writes += 1
            if FailsSecondWrite.writes == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            LogFile.write(self, data)

    log = AccessLog(Clock(), FailsSecondWrite(ACCESS_LOG, str(tmp_path), rotateLength=200))
    for n in range(6):  # about 60 bytes each: three fit before the rotation
        log.record(_line(n))
    log.flush()
    written = [json.loads(x)["n"] for x in (tmp_path / ACCESS_LOG).read_text().splitlines()]
    assert written == list(range(len(written))) and 0 < len(written) < 6
    assert log.dropped == 6 - len(written)
    log.stop()


def test_a_flush_forced_by_a_full_buffer_never_raises_into_the_request(tmp_path, events):
    log = _full_log(tmp_path / "log")
    log.flush_bytes = 100
    for _ in range(10):  # each call may flush at once: it must not raise
        log.exchange(1.0, "api", "id", "POST", "/mcp", 200, "complete", 1, 2, 0.5, "::1")
    assert log.dropped == 10 and log._buffer == []
    assert len(_errors(events)) == 1
    log.stop()


def test_a_log_file_left_closed_is_opened_again(tmp_path, events):
    # A rotation that failed half-way leaves LogFile without an open file:
    # its writes raise something other than OSError.
    log = AccessLog(Clock(), open_rotating(tmp_path, ACCESS_LOG, 1 << 20, 2))
    log.start()
    log.logfile.close()
    log.record(_line(0))
    log.clock.advance(0.5)
    assert log.dropped == 1 and log._loop.running and len(_errors(events)) == 1
    log.record(_line(1))
    log.clock.advance(0.5)
    assert [json.loads(x)["n"] for x in (tmp_path / ACCESS_LOG).read_text().splitlines()] == [1]
    log.stop()


def test_the_daemon_log_drops_and_counts_after_the_first_failure():
    calls: List[Any] = []

    def observer(event: Any) -> None:
        calls.append(event)
        if event.get("fail"):
            raise OSError(errno.ENOSPC, "No space left on device")

    guarded = GuardedObserver(observer)
    with pytest.raises(OSError):  # the first of a streak: Twisted reports it elsewhere
        guarded({"fail": True})
    guarded({"fail": True})
    guarded({"fail": True})
    guarded({})
    with pytest.raises(OSError):  # a new streak
        guarded({"fail": True})
    assert guarded.dropped == 4 and len(calls) == 5


def test_dropped_lines_are_a_prometheus_counter(tmp_path):
    service = LogFilesService(Clock(), tmp_path / "log", LogLevel.info, 1 << 20, 2,
                              access_enabled=True, exchange_enabled=True,
                              publisher=type(globalLogPublisher)())
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / ACCESS_LOG).symlink_to(DEV_FULL)
    service.startService()
    try:
        registry = CollectorRegistry()
        registry.register(DroppedLines(service))
        for n in range(3):
            service.access.record(_line(n))
        service.access.flush()
        text = generate_latest(registry).decode()
    finally:
        service.stopService()
    assert 'mcpgated_log_lines_dropped_total{log="access"} 3.0' in text
    assert 'mcpgated_log_lines_dropped_total{log="exchanges"} 0.0' in text
    assert 'mcpgated_log_lines_dropped_total{log="daemon"} 0.0' in text


# --- the exchange-log store --------------------------------------------------------------------


def test_pruning_that_fails_keeps_its_job_running(tmp_path, events):
    store = AnalyticsStore(Clock(), tmp_path / "a.db")
    store._open = True
    store._run = lambda *args: fail(sqlite3.OperationalError("database or disk is full"))
    loop = LoopingCall(store._prune_job)
    loop.clock = store.reactor
    loop.start(60.0, now=False)
    store.reactor.advance(60)
    store.reactor.advance(60)
    assert loop.running
    errors = _errors(events)
    assert len(errors) == 1 and "disk is full" in errors[0]["error"]
    loop.stop()


def test_a_batch_the_disk_refuses_leaves_no_transaction_open(tmp_path):
    # A real SQLite "database or disk is full" (the file may not grow): the
    # batch is rolled back, and the next one is written once it fits.
    from mcpgated.analytics.records import CallRecord
    from mcpgated.analytics.store import _row
    from mcpgated.sqlitedb import open_database

    store = AnalyticsStore(Clock(), tmp_path / "a.db")
    store._connection, _ = open_database(store.path, "mcpgated.analytics", "NORMAL")
    connection = store._connection
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    connection.execute(f"PRAGMA max_page_count = {pages}")
    big = [_row(CallRecord(1.0, "a", "A", None, "127.0.0.1", "tools/call", "request",
                           request_payload="y" * 5000)) for _ in range(20)]
    with pytest.raises(sqlite3.OperationalError, match="full"):
        store._insert(big)
    assert not connection.in_transaction
    connection.execute(f"PRAGMA max_page_count = {pages * 100}")
    store._insert(big)
    assert connection.execute("SELECT COUNT(*) FROM exchanges").fetchone()[0] == 20
    connection.close()


# --- the daemon ---------------------------------------------------------------------------


def _wait(condition: Any, what: str, timeout: float = 10.0) -> None:
    # The flush has no event to wait on: poll, with a deadline.
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_daemon_keeps_flushing_its_logs_through_a_full_disk(tmp_path, everything):
    daemon = Daemon(tmp_path, extra="[analytics]\nexchange_log = on\n")
    folder = tmp_path / "log"
    folder.mkdir()
    for name in ("access.log", "exchanges.log"):
        (folder / name).symlink_to(DEV_FULL)
    daemon.start()
    try:
        api = create(daemon, definition("/full", backend=f"http://127.0.0.1:{everything}/mcp"))
        action(daemon, api["id"], "_deploy")
        for _ in range(4):
            status, _, _ = http("POST", daemon.gateway + "/full", INITIALIZE, ACCEPT)
            assert status == 200
        access = 'mcpgated_log_lines_dropped_total{log="access"}'
        exchanges = 'mcpgated_log_lines_dropped_total{log="exchanges"}'
        _wait(lambda: metric(daemon, access) >= 4 and metric(daemon, exchanges) >= 4,
              "the dropped lines are counted")
        # The proxied traffic did not notice.
        status, _, _ = http("POST", daemon.gateway + "/full", INITIALIZE, ACCEPT)
        assert status == 200
        _wait(lambda: metric(daemon, access) >= 5, "later lines are dropped too")

        # Space again: the next line is in the file within a flush period,
        # not after 64 KB of lines.
        for name in ("access.log", "exchanges.log"):
            (folder / name).unlink()
        status, _, _ = http("POST", daemon.gateway + "/full", INITIALIZE, ACCEPT)
        assert status == 200
        _wait(lambda: (folder / "access.log").exists()
              and (folder / "access.log").read_text().count("\n") >= 1
              and (folder / "exchanges.log").exists()
              and (folder / "exchanges.log").read_text().count("\n") >= 1,
              "lines are written again")
        line = json.loads((folder / "access.log").read_text().splitlines()[0])
        assert line["apiId"] == api["id"] and line["status"] == 200
        dropped = metric(daemon, access)
    finally:
        daemon.stop()
    assert dropped == 5
    output = "\n".join(daemon.proc.output)
    assert output.count("cannot write") == 2, output  # one per file, not one per flush
    assert "access.log is written again (5 lines were dropped)" in output
