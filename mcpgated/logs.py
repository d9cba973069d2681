"""
Log files under C{[logging] dir}, rotated by size with a bounded number of
old files kept: the daemon log (text) and the access log (JSON lines).

twistd's own C{--logfile} (C{-} for stdout/journald) keeps working beside
these; twistd's built-in rotation keeps unlimited files, so these files use
L{LogFile} with C{maxRotatedFiles}.

A log file that cannot be written (a full disk: C{ENOSPC}, C{EIO}...) never
stops the daemon, the request path or the periodic flush: its lines are
dropped and counted (C{mcpgated_log_lines_dropped_total}, by log), the error
is logged once per streak of failures, and the file is opened afresh until
writing works again.

Files and folders created here are 0640 and 0750 whatever the umask
(L{mcpgated.files}); rotated files keep the mode of the file they replace.
"""

from __future__ import annotations

import json
import os
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, cast

import attrs
from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from prometheus_client.core import CounterMetricFamily
from twisted.internet.task import LoopingCall
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    LogPublisher,
    Logger,
    globalLogPublisher,
    textFileLogObserver,
)
from twisted.python.logfile import LogFile
from zope.interface import implementer

from mcpgated.files import LOG_DIR, LOG_FILE, create_file, make_dirs

log = Logger()

_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
_STRING = encode_basestring_ascii
_INFINITY = float("inf")


def _c_encoder() -> Optional[Callable[[Any, int], Sequence[str]]]:
    """
    The C encoder that C{_ENCODER.encode} builds on every call, built once
    (and checked against it); L{None} where there is none (PyPy). It keeps
    no circular-reference marks (no state shared between calls): a
    circular value fails in it, and then in C{_ENCODER}, which says why.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        encode: Callable[[Any, int], Sequence[str]] = make(
            None, _ENCODER.default, _STRING, None, _ENCODER.key_separator,
            _ENCODER.item_separator, False, False, True)
        sample = {"a": 1.5, "b": [None, True, "\u00e9\n", 2 ** 70], "c": {"d": -0.0}, "e": object}
        if "".join(encode(sample, 0)) != _ENCODER.encode(sample):
            return None
    except Exception:  # noqa: BLE001 -- a private constructor's probe: any failure means json's own path
        return None
    return encode


_C_ENCODE = _c_encoder()


def _encode(fields: Dict[str, Any]) -> str:
    """
    C{_ENCODER.encode(fields)}, without building an encoder per call.
    """
    if _C_ENCODE is not None:
        try:
            return "".join(_C_ENCODE(fields, 0))
        except Exception:  # noqa: BLE001, S110 -- json's own path below raises json's own error
            pass
    return _ENCODER.encode(fields)


DAEMON_LOG = "mcpgated.log"
ACCESS_LOG = "access.log"
EXCHANGE_LOG = "exchanges.log"


def open_rotating(directory: Path, name: str, max_bytes: int, keep: int) -> LogFile:
    make_dirs(directory, LOG_DIR)
    # Created 0640 here; LogFile then keeps the file's mode across rotations.
    create_file(directory / name, LOG_FILE)
    return LogFile(name, str(directory), rotateLength=max_bytes, maxRotatedFiles=keep)


def _reopened(logfile: LogFile) -> LogFile:
    """
    The same log file opened afresh, after failed writes: a failed rotation
    may have left the old object without an open file, and the file may
    have been moved or removed meanwhile. What follows starts on a line of
    its own (a failed write may have left half a line).
    """
    try:
        logfile.close()
    except Exception:  # noqa: BLE001, S110 -- it had no open file left: there is nothing to close
        pass
    create_file(Path(logfile.path), LOG_FILE)  # if it was removed meanwhile
    fresh = LogFile(logfile.name, logfile.directory, rotateLength=logfile.rotateLength,
                    maxRotatedFiles=logfile.maxRotatedFiles)
    if fresh.size:
        with open(fresh.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            last = f.read(1)
        if last != b"\n":
            fresh.write("\n")
    return fresh


@implementer(ILogObserver)
@attrs.define
class GuardedObserver:
    """
    An observer writing to a file that may fail (a full disk): the first
    failure of a streak is raised, so Twisted reports it to the other
    observers (stdout, journald); the events after it are dropped and
    counted until a write works again.
    """

    observer: ILogObserver
    dropped: int = 0
    _failing: bool = False

    def __call__(self, event: LogEvent) -> None:
        try:
            self.observer(event)
        except Exception:
            self.dropped += 1
            if not self._failing:
                self._failing = True
                raise
            return
        self._failing = False


def daemon_observer(logfile: LogFile, level: LogLevel) -> GuardedObserver:
    return GuardedObserver(FilteringLogObserver(
        # LogFile is file-like (write, flush): all the observer uses.
        textFileLogObserver(cast(IO[str], logfile)),
        [LogLevelFilterPredicate(defaultLogLevel=level)],
    ))


@attrs.define
class AccessLog:
    """
    One JSON object per line, buffered in memory and written in batches (at
    most C{flush_interval} seconds or C{flush_bytes} late), so the request
    path never waits on a per-line file write.

    Records must not contain secrets; callers pass only chosen fields.

    A write that fails (L{OSError}: C{ENOSPC}, C{EIO}...) drops the lines of
    that flush and counts them in C{dropped}; the error is logged once per
    streak, and each later flush opens the file afresh and tries again.

    @ivar dropped: lines lost to failed writes since the start.
    """

    clock: IReactorTime
    logfile: Optional[LogFile]
    flush_interval: float = 0.5
    flush_bytes: int = 64 * 1024
    dropped: int = 0
    _buffer: List[str] = attrs.field(factory=list)
    _buffered: int = 0
    _loop: Optional[LoopingCall] = None
    _failing: int = 0  # lines dropped in the current streak of failed writes

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
            try:
                self.logfile.close()
            except Exception:  # noqa: BLE001, S110 -- a failed rotation left it without an open file
                pass
            self.logfile = None

    def record(self, fields: Dict[str, Any]) -> None:
        if self.logfile is None:
            return
        line = _encode(fields) + "\n"
        self._buffer.append(line)
        self._buffered += len(line)
        if self._buffered >= self.flush_bytes:
            self.flush()

    def exchange(self, time: float, api: Optional[str], api_id: Optional[str],
                 method: Optional[str], path: Optional[str], status: Optional[int],
                 outcome: str, bytes_in: int, bytes_out: int, duration_ms: float,
                 client: Optional[str]) -> None:
        """
        The gateway's line for one exchange: the same line as
        C{record({"time": time, "api": api, "apiId": api_id, "method": method,
        "path": path, "status": status, "outcome": outcome, "bytesIn": bytes_in,
        "bytesOut": bytes_out, "durationMs": duration_ms, "client": client})},
        formatted without the dictionary.
        """
        if self.logfile is None:
            return
        line = None
        if (type(time) is float and -_INFINITY < time < _INFINITY
                and type(duration_ms) is float and -_INFINITY < duration_ms < _INFINITY
                and type(bytes_in) is int and type(bytes_out) is int
                and type(outcome) is str and (type(status) is int or status is None)):
            try:
                line = (f'{{"time":{time!r},"api":{"null" if api is None else _STRING(api)},'
                        f'"apiId":{"null" if api_id is None else _STRING(api_id)},'
                        f'"method":{"null" if method is None else _STRING(method)},'
                        f'"path":{"null" if path is None else _STRING(path)},'
                        f'"status":{"null" if status is None else int.__repr__(status)},'
                        f'"outcome":{_STRING(outcome)},"bytesIn":{int.__repr__(bytes_in)},'
                        f'"bytesOut":{int.__repr__(bytes_out)},"durationMs":{duration_ms!r},'
                        f'"client":{"null" if client is None else _STRING(client)}}}\n')
            except TypeError:  # a text that is not a str
                pass
        if line is None:  # not the usual types: let the JSON encoder say how
            self.record({"time": time, "api": api, "apiId": api_id, "method": method,
                         "path": path, "status": status, "outcome": outcome,
                         "bytesIn": bytes_in, "bytesOut": bytes_out, "durationMs": duration_ms,
                         "client": client})
            return
        self._buffer.append(line)
        self._buffered += len(line)
        if self._buffered >= self.flush_bytes:
            self.flush()

    def lines(self, text: str) -> None:
        """
        Lines already formatted (each ending with a newline): a gateway
        worker's, written in the parent's file.
        """
        if self.logfile is None or not text:
            return
        self._buffer.append(text)
        self._buffered += len(text)
        if self._buffered >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        """
        Write the buffered lines. Never raises: lines a failed write could
        not take are dropped and counted.
        """
        if not self._buffer or self.logfile is None:
            return
        lines = self._buffer
        self._buffer = []
        self._buffered = 0
        if self._failing:
            try:
                self.logfile = _reopened(self.logfile)
            except Exception as e:  # noqa: BLE001 -- OSError mostly; any error is counted, not raised
                self._lost(len(lines), e)
                return
        written, error = _write(self.logfile, lines)
        if error is not None:
            self._lost(len(lines) - written, error)
            return
        if self._failing:
            log.info("{path} is written again ({count} lines were dropped)",
                     path=self.logfile.path, count=self._failing)
            self._failing = 0

    def _lost(self, count: int, error: Exception) -> None:
        self.dropped += count
        if not self._failing:
            path = getattr(self.logfile, "path", None)
            log.error("cannot write {path} ({error}): its lines are dropped and counted "
                      "until writing works again", path=path, error=str(error) or repr(error))
        self._failing += count


def _write(logfile: LogFile, lines: List[str]) -> Tuple[int, Optional[Exception]]:
    """
    Write C{lines} to C{logfile}, rotating as it does.

    @return: how many lines were written, and the error that stopped the
        others (L{OSError} mostly; whatever the file layer raised).
    """
    count = len(lines)
    limit = getattr(logfile, "rotateLength", None)
    if not limit:
        try:
            logfile.write("".join(lines))
            logfile.flush()
        except Exception as e:  # noqa: BLE001 -- OSError mostly; returned, counted by the caller, never raised
            return 0, e
        return count, None
    # LogFile checks its size limit before each write, and rotates once
    # it is reached: every file holds max_bytes plus at most one line.
    # Each write here takes the lines that the file would take one by one
    # before that check fires (the file is unbuffered: a write is a
    # system call).
    start = 0
    try:
        while start < count:
            room = limit - logfile.size
            if room <= 0:  # this write rotates first
                room = limit
            end = start + 1
            taken = len(lines[start])
            while end < count and taken < room:
                taken += len(lines[end])
                end += 1
            logfile.write(lines[start] if end == start + 1 else "".join(lines[start:end]))
            start = end
        logfile.flush()
    except Exception as e:  # noqa: BLE001 -- as above: returned, not raised
        return start, e
    return count, None


class DroppedLines:
    """
    A Prometheus collector: C{mcpgated_log_lines_dropped_total}, the lines
    each log file lost to failed writes (label C{log}: C{daemon},
    C{access}, C{exchanges}), read when the registry is collected.
    """

    def __init__(self, service: "LogFilesService") -> None:
        self._service = service

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(
            "mcpgated_log_lines_dropped",
            "Log lines dropped because their file could not be written (a full or failing disk)",
            labels=["log"])

    def describe(self) -> Iterable[CounterMetricFamily]:
        return [self._family()]

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = self._family()
        service = self._service
        daemon = service.daemon_observer
        family.add_metric(["daemon"], daemon.dropped if daemon is not None else 0)
        family.add_metric(["access"], service.access.dropped)
        family.add_metric(["exchanges"], service.exchanges.dropped)
        return [family]


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
    _observer: Optional[GuardedObserver] = attrs.field(init=False, default=None)

    @property
    def daemon_observer(self) -> Optional[GuardedObserver]:
        """
        The daemon log's observer while the service runs (its C{dropped}).
        """
        return self._observer

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
            try:
                self._daemon_file.close()
            except Exception:  # noqa: BLE001, S110 -- a failed rotation left it without an open file
                pass
            self._daemon_file = None
