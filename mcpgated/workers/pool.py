"""
The twistd process's side of C{[gateway] workers = N}: it keeps the
listening sockets (opened by the tap, never accepted on here), spawns N
worker processes (L{mcpgated.workers.main}) that adopt them, restarts a
worker that dies (with a backoff), and drains them all at shutdown.

Each worker has a control channel (L{mcpgated.workers.protocol}) on which
the parent:

- tells it of every committed write (L{WorkerFeed}, an L{IChangeFeed})
  and relays the changes it makes itself (pin writes) to the others;
- counts its rate-limit decisions in one L{Limiter} (exact across
  workers);
- takes its exchange records (into the one analytics store and exchange
  log) and access-log lines (into the one access log);
- gathers its metrics for /metrics (L{mcpgated.workers.metrics}).

Workers' log events come as JSON lines on their standard output and are
published in the parent's log, each prefixed with C{worker N}; what a
worker writes on its standard error is logged line by line as warnings.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, gatherResults, succeed
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger, eventFromJSON, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from mcpgated._twisted_compat import keep_shared_socket_open, listening_socket
from mcpgated.analytics.records import CallRecord
from mcpgated.analytics.store import COLUMNS
from mcpgated.cluster.changes import BadChange, Change, FanOut, IChangeFeed, Listener
from mcpgated.cluster.follower import StateFollower
from mcpgated.policy.ratelimit import Limiter, RateLimit, parse_limit
from mcpgated.workers.protocol import (
    ACCESS,
    METRICS,
    RECORDS,
    Changed,
    Control,
    LimitServer,
    PipeTransport,
    Ready,
    Scrape,
)

log = Logger()

CONTROL_IN = 0  # the worker reads the channel on its standard input
CONTROL_OUT = 3  # ... and writes it on fd 3
LIMITS_OUT = 4  # rate-limit questions, worker to parent
LIMITS_IN = 5  # ... and their answers
FIRST_LISTENER = 6  # listening sockets from fd 6 on
# restarts: 0.1 s after the first death, doubling up to 10 s; a worker
# that lived RESET seconds starts the count again
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 10.0
RESET = 10.0
# how long an admin write waits for the workers to confirm they applied it
APPLY_TIMEOUT = 2.0
# how long a stopping worker may take to finish its exchanges (the worker
# gives up at DRAIN_TIMEOUT; the parent kills it a little later)
DRAIN_TIMEOUT = 30.0


def worker_count(value: str) -> int:
    """
    C{[gateway] workers}: a whole number from 1, or C{auto} (the CPUs).
    """
    if value == "auto":
        return max(1, os.cpu_count() or 1)
    return int(value)


@attrs.define
class Shared:
    """
    A listening socket the workers adopt: its fd here, its address family,
    and the endpoint description it was opened from (TLS settings).
    """

    fd: int
    family: int
    description: str


def shared(port: Any, description: str) -> Shared:
    """
    The L{Shared} socket of a listening port (stopped reading here).
    """
    port.stopReading()
    keep_shared_socket_open(port)
    sock = listening_socket(port)
    return Shared(sock.fileno(), sock.family, description)


@implementer(IChangeFeed)
@attrs.define
class WorkerFeed:
    """
    The parent's feed to its workers: C{publish} tells every worker;
    changes a worker makes are given to the subscribers here and relayed
    to the other workers.
    """

    pool: "WorkerPool"
    _listeners: List[Listener] = attrs.field(factory=list)

    def publish(self, change: Change) -> "Deferred[None]":
        return self.pool.tell(change.to_json(), None)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def heard(self, text: str, source: "Worker") -> None:
        try:
            change = Change.from_json(text)
        except BadChange as e:
            log.error("worker {index}: {error}", index=source.index, error=str(e))
            return
        self.pool.tell(text, source)
        for listener in self._listeners:
            listener(change)


class ParentControl(Control):
    """
    The parent's end of one worker's channel.
    """

    def __init__(self, worker: "Worker") -> None:
        Control.__init__(self)
        self.worker = worker

    @Changed.responder
    def _changed(self, change: str) -> Dict[str, Any]:
        self.worker.pool.feed.heard(change, self.worker)
        return {}

    @Ready.responder
    def _ready(self, pid: int) -> Dict[str, Any]:
        self.worker.ready(pid)
        return {}


class Worker(ProcessProtocol):
    """
    One worker process: its channel, its output lines, its end.
    """

    def __init__(self, pool: "WorkerPool", index: int, started: float) -> None:
        self.pool = pool
        self.index = index
        self.started = started
        self.pid: Optional[int] = None
        self.serving = False
        self.control = ParentControl(self)
        self.control.on_part = self._part
        self._lines: Dict[int, bytes] = {1: b"", 2: b""}
        self.ended: Deferred[None] = Deferred()
        self.metrics: Optional[Deferred[bytes]] = None

    def connectionMade(self) -> None:
        self.pid = self.transport.pid  # type: ignore[union-attr]
        self.control.makeConnection(PipeTransport(self.transport, CONTROL_IN))
        self.limits = LimitServer(self.pool.check, self._answer_limits)

    def _answer_limits(self, data: bytes) -> None:
        try:
            self.transport.writeToChild(LIMITS_IN, data)  # type: ignore[union-attr]
        except (KeyError, OSError):  # the worker is gone: its questions died with it
            pass

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == LIMITS_OUT:
            self.limits.data(data)
            return
        if childFD == CONTROL_OUT:
            self.control.dataReceived(data)
            return
        pending = self._lines.get(childFD, b"") + data
        *lines, rest = pending.split(b"\n")
        self._lines[childFD] = rest
        for line in lines:
            self._line(childFD, line)

    def _line(self, fd: int, line: bytes) -> None:
        if fd == 1:
            try:
                event = eventFromJSON(line.lstrip(b"\x1e").decode("utf-8", "replace"))
            except ValueError:
                log.warn("worker {index}: {line}", index=self.index, line=line.decode("utf-8", "replace"))
                return
            event["mcpgated_worker"] = self.index
            text = event.get("log_format")
            if text is None:  # a legacy event: its text as a literal
                text = str(event.get("log_text", "")).replace("{", "{{").replace("}", "}}")
            event["log_format"] = f"worker {self.index}: {text}"
            globalLogPublisher(event)
        elif line.strip():
            log.warn("worker {index} (stderr): {line}", index=self.index,
                     line=line.decode("utf-8", "replace"))

    def _part(self, kind: str, payload: bytes) -> None:
        if kind == RECORDS:
            self.pool.records(payload)
        elif kind == ACCESS:
            self.pool.access_lines(payload.decode("utf-8", "replace"))
        elif kind == METRICS and self.metrics is not None:
            metrics, self.metrics = self.metrics, None
            metrics.callback(payload)

    def ready(self, pid: int) -> None:
        self.serving = True
        log.info("worker {index} ready (pid {pid})", index=self.index, pid=pid)
        self.pool.worker_ready(self)

    def scrape(self) -> "Deferred[bytes]":
        """
        The worker's metrics snapshot (empty when it cannot answer).
        """
        if not self.serving or self.control.transport is None:
            return succeed(b"[]")
        got: Deferred[bytes] = Deferred()
        self.metrics = got

        def answered(result: object) -> None:
            # the Parts came before the answer: a worker that failed sends none
            if self.metrics is got:
                self.metrics = None
                got.callback(b"[]")

        self.control.callRemote(Scrape).addBoth(answered)
        return got

    def processEnded(self, reason: Failure) -> None:
        self.serving = False
        if self.metrics is not None:
            metrics, self.metrics = self.metrics, None
            metrics.callback(b"[]")
        self.control.connectionLost(reason)
        self.pool.ended(self, reason)
        self.ended.callback(None)


@attrs.define(slots=False)
class WorkerPool(Service):
    """
    Spawns and supervises the workers (a child of the gateway service,
    started by L{start} once the stores are open).

    @ivar argv: the worker's command, without the listener arguments.
    @ivar sink: takes the workers' exchange records (C{CallRecord}s) or
        L{None}; C{exchange_log} and C{access_log} (L{AccessLog}s) their lines.
    """

    count: int
    sockets: Sequence[Shared]
    reactor: Any
    argv: List[str]
    limiter: Limiter
    sink: Optional[Callable[[CallRecord], None]] = None
    exchange_log: Any = None
    access_log: Any = None
    workers: Dict[int, Worker] = attrs.field(init=False, factory=dict)
    feed: WorkerFeed = attrs.field(init=False)
    _failures: Dict[int, int] = attrs.field(init=False, factory=dict)
    _restarts: Dict[int, Any] = attrs.field(init=False, factory=dict)
    _limits: Dict[str, RateLimit] = attrs.field(init=False, factory=dict)
    _first_ready: Dict[int, "Deferred[None]"] = attrs.field(init=False, factory=dict)
    # the services of the shared sockets: closed here first when stopping
    listeners: List[Any] = attrs.field(init=False, factory=list)
    stopping: bool = attrs.field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        self.feed = WorkerFeed(self)

    def start(self) -> "Deferred[None]":
        """
        Spawn the workers; fires once every one of them serves.
        """
        waiting = []
        for index in range(1, self.count + 1):
            self._first_ready[index] = Deferred()
            waiting.append(self._first_ready[index])
            self.spawn(index)
        return DeferredList(waiting).addCallback(lambda _: None)

    def worker_ready(self, worker: "Worker") -> None:
        first = self._first_ready.pop(worker.index, None)
        if first is not None:
            first.callback(None)

    def spawn(self, index: int) -> Worker:
        self._restarts.pop(index, None)
        worker = Worker(self, index, self.reactor.seconds())
        argv = [*self.argv, "--index", str(index)]
        child_fds: Dict[int, Any] = {CONTROL_IN: "w", 1: "r", 2: "r", CONTROL_OUT: "r",
                                     LIMITS_OUT: "r", LIMITS_IN: "w"}
        for number, listener in enumerate(self.sockets):
            fd = FIRST_LISTENER + number
            child_fds[fd] = listener.fd
            argv += ["--listen", f"{fd}:{listener.family}:{listener.description}"]
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        self.reactor.spawnProcess(worker, argv[0], argv, env=env, path=os.getcwd(),
                                  childFDs=child_fds)
        self.workers[index] = worker
        log.info("worker {index} started (pid {pid})", index=index, pid=worker.pid)
        return worker

    def ended(self, worker: Worker, reason: Failure) -> None:
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
        if self.stopping:
            log.info("worker {index} (pid {pid}) stopped: {why}", index=worker.index,
                     pid=worker.pid, why=_why(reason))
            return
        lived = self.reactor.seconds() - worker.started
        failures = 0 if lived >= RESET else self._failures.get(worker.index, 0)
        delay = min(BACKOFF_FIRST * 2 ** failures, BACKOFF_MAX)
        self._failures[worker.index] = failures + 1
        log.error("worker {index} (pid {pid}) died ({why}); restarting it in {delay:.1f} s",
                  index=worker.index, pid=worker.pid, why=_why(reason), delay=delay)
        self._restarts[worker.index] = self.reactor.callLater(delay, self.spawn, worker.index)

    # -- what workers ask

    def tell(self, change: str, source: Optional[Worker]) -> "Deferred[None]":
        """
        Tell every worker but C{source}; the Deferred fires once each has
        applied the change (or failed to: logged), or after
        L{APPLY_TIMEOUT} (a worker stuck on a store read must not hold
        an admin answer).
        """
        applied = []
        for worker in list(self.workers.values()):
            if worker is not source and worker.control.transport is not None:
                applied.append(worker.control.callRemote(Changed, change=change)
                               .addErrback(self._not_applied, worker, change))
        done = gatherResults(applied).addCallback(lambda _: None)
        return done.addTimeout(APPLY_TIMEOUT, self.reactor).addErrback(
            self._not_applied, None, change)

    @staticmethod
    def _not_applied(failure: Failure, worker: Optional[Worker], change: str) -> None:
        log.warn("worker {index}: change {change} not confirmed applied: {error}",
                 index=worker.index if worker is not None else "*", change=change,
                 error=failure.getErrorMessage())

    def check(self, limit: str, who: Any, calls: List[List[Any]]) -> Optional[float]:
        """
        One decision of a worker: C{limit} as JSON, C{who} and C{calls}
        decoded from JSON (lists for tuples).
        """
        parsed = self._limits.get(limit)
        if parsed is None:
            parsed = parse_limit(json.loads(limit), "rateLimit")
            assert parsed is not None
            if len(self._limits) > 1000:
                self._limits.clear()
            self._limits[limit] = parsed
        return self.limiter.check_all(parsed, _hashable(who), [(m, t) for m, t in calls])

    def records(self, payload: bytes) -> None:
        rows = json.loads(payload)
        sink, exchanges = self.sink, self.exchange_log
        for row in rows:
            fields = dict(zip(COLUMNS, row, strict=True))
            if sink is not None:
                # the worker's record, as it was (same code both sides): its
                # fields set at once, not checked one by one again
                record = _new_record(CallRecord)
                record.__dict__.update(fields)
                sink(record)
            if exchanges is not None:
                exchanges.record({c: v for c, v in fields.items() if v is not None})

    def access_lines(self, text: str) -> None:
        if self.access_log is not None:
            self.access_log.lines(text)

    def scrape(self) -> "Deferred[List[bytes]]":
        """
        Every serving worker's metrics snapshot.
        """
        asked = [w.scrape() for w in list(self.workers.values())]
        return DeferredList(asked, consumeErrors=True).addCallback(
            lambda results: [value for ok, value in results if ok])

    # -- stopping

    def stopService(self) -> "Deferred[None]":
        """
        Drain every worker: each stops accepting, finishes its exchanges
        and exits (SIGTERM); one still running after the drain time is
        killed.
        """
        Service.stopService(self)
        self.stopping = True
        # this process's copies of the sockets closed now: once the workers
        # stop listening (at once), new connections are refused
        for listener in self.listeners:
            listener.stopService()
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        ending = []
        for worker in list(self.workers.values()):
            ending.append(worker.ended)
            try:
                worker.transport.signalProcess("TERM")  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001, S110 -- it has just exited: its end is on the way
                pass
        if not ending:
            return succeed(None)
        killer = self.reactor.callLater(DRAIN_TIMEOUT + 5, self._kill)
        return DeferredList(ending).addCallback(lambda _: killer.cancel() if killer.active() else None)

    def _kill(self) -> None:
        for worker in list(self.workers.values()):
            log.error("worker {index} (pid {pid}) did not stop in time: killing it",
                      index=worker.index, pid=worker.pid)
            try:
                worker.transport.signalProcess("KILL")  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001, S110 -- it has just exited
                pass


_new_record = object.__new__


def _hashable(value: Any) -> Hashable:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value  # type: ignore[no-any-return]


def _why(reason: Failure) -> str:
    if reason.check(ProcessDone):
        return "exit status 0"
    value = reason.value
    signal = getattr(value, "signal", None)
    if signal is not None:
        return f"signal {signal}"
    return f"exit status {getattr(value, 'exitCode', '?')}"


def worker_argv(config: str) -> List[str]:
    """
    The worker's command line: this Python, the worker module, the INI file.
    """
    return [sys.executable, "-m", "mcpgated.workers.main", "--config", config]



def worker_pool(service: Any) -> WorkerPool:
    """
    The pool of a gateway service (L{mcpgated.tap.GatewayService}) with
    C{[gateway] workers} above 1: its admin API's changes also go to the
    workers, the workers' changes (pin writes) reach the service's copies,
    its /metrics gathers theirs. Sockets are given at start (L{share}).
    """
    cfg = service.cfg
    analytics = service.analytics
    pool = WorkerPool(
        count=cfg.gateway.workers, sockets=[], reactor=service.reactor,
        argv=worker_argv(str(os.path.abspath(str(cfg.source)))), limiter=Limiter(service.reactor),
        sink=analytics.record if analytics is not None else None,
        exchange_log=service.logs.exchanges if analytics is not None and cfg.analytics.exchange_log
        else None,
        access_log=service.logs.access)
    service.admin.changes = FanOut([service.admin.changes, pool.feed])
    follower = StateFollower(service.store, service.routes, service.keys, service.pins,
                             service.reactor)
    pool.feed.subscribe(follower.changed)
    gather = getattr(service.metrics, "gather", None)
    if gather is not None:
        service.metrics.gather = pool.scrape
    pool.setServiceParent(service)
    return pool


def share(pool: WorkerPool, listeners: Sequence[Any]) -> None:
    """
    Hand the gateway listeners' sockets to the pool (they stop accepting
    here).
    """
    gateway = [listener for listener in listeners
               if listener.role == "gateway" and listener.port is not None]
    pool.sockets = [shared(listener.port, listener.description) for listener in gateway]
    pool.listeners = gateway
