"""
Log files under C{[logging] dir}, rotated by size with a bounded number of
old files kept: the daemon log (text) and the access log (JSON lines).

twistd's own C{--logfile} (C{-} for stdout/journald) keeps working beside
these; twistd's built-in rotation keeps unlimited files, so these files use
L{LogFile} with C{maxRotatedFiles}.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import attrs
from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    LogPublisher,
    globalLogPublisher,
    textFileLogObserver,
)
from twisted.python.logfile import LogFile

_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)

DAEMON_LOG = "mcpgated.log"
ACCESS_LOG = "access.log"
EXCHANGE_LOG = "exchanges.log"


def open_rotating(directory: Path, name: str, max_bytes: int, keep: int) -> LogFile:
    directory.mkdir(parents=True, exist_ok=True)
    return LogFile(name, str(directory), rotateLength=max_bytes, maxRotatedFiles=keep)


def daemon_observer(logfile: LogFile, level: LogLevel) -> ILogObserver:
    return FilteringLogObserver(
        textFileLogObserver(logfile),
        [LogLevelFilterPredicate(defaultLogLevel=level)],
    )


@attrs.define
class AccessLog:
    """
    One JSON object per line, buffered in memory and written in batches (at
    most C{flush_interval} seconds or C{flush_bytes} late), so the request
    path never waits on a per-line file write.

    Records must not contain secrets; callers pass only chosen fields.
    """

    clock: IReactorTime
    logfile: Optional[LogFile]
    flush_interval: float = 0.5
    flush_bytes: int = 64 * 1024
    _buffer: List[str] = attrs.field(factory=list)
    _buffered: int = 0
    _loop: Optional[LoopingCall] = None

    def start(self) -> None:
        if self.logfile is None:
            return
        self._loop = LoopingCall(self.flush)
        self._loop.clock = self.clock
        self._loop.start(self.flush_interval, now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self.flush()
        if self.logfile is not None:
            self.logfile.close()
            self.logfile = None

    def record(self, fields: Dict[str, Any]) -> None:
        if self.logfile is None:
            return
        line = _ENCODER.encode(fields) + "\n"
        self._buffer.append(line)
        self._buffered += len(line)
        if self._buffered >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        if not self._buffer or self.logfile is None:
            return
        # LogFile checks its size limit before each write; writing line by
        # line keeps every file within max_bytes (plus one line).
        for line in self._buffer:
            self.logfile.write(line)
        self.logfile.flush()
        self._buffer = []
        self._buffered = 0


@attrs.define(slots=False)
class LogFilesService(Service):
    """
    Opens the daemon log and the access log on start, closes them on stop.
    """

    clock: IReactorTime
    directory: Optional[Path]
    level: LogLevel
    max_bytes: int
    keep: int
    access_enabled: bool
    exchange_enabled: bool = False
    publisher: LogPublisher = globalLogPublisher
    access: AccessLog = attrs.field(init=False)
    exchanges: AccessLog = attrs.field(init=False)
    _daemon_file: Optional[LogFile] = attrs.field(init=False, default=None)
    _observer: Optional[ILogObserver] = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        self.access = AccessLog(self.clock, None)
        self.exchanges = AccessLog(self.clock, None)

    def startService(self) -> None:
        if self.directory is not None:
            self._daemon_file = open_rotating(self.directory, DAEMON_LOG, self.max_bytes, self.keep)
            self._observer = daemon_observer(self._daemon_file, self.level)
            self.publisher.addObserver(self._observer)
            if self.access_enabled:
                self.access.logfile = open_rotating(
                    self.directory, ACCESS_LOG, self.max_bytes, self.keep
                )
            if self.exchange_enabled:
                self.exchanges.logfile = open_rotating(
                    self.directory, EXCHANGE_LOG, self.max_bytes, self.keep
                )
        self.access.start()
        self.exchanges.start()
        Service.startService(self)

    def stopService(self) -> None:
        Service.stopService(self)
        self.access.stop()
        self.exchanges.stop()
        if self._observer is not None:
            self.publisher.removeObserver(self._observer)
            self._observer = None
        if self._daemon_file is not None:
            self._daemon_file.close()
            self._daemon_file = None
