"""
One gateway worker process (C{python -m mcpgated.workers.main}), spawned
by L{mcpgated.workers.pool.WorkerPool} with the listening sockets on
inherited file descriptors and the control channel on fds 0 (in) and 3
(out).

It serves the data plane only: the routes, keys and pins are read from
the same store as the parent's (each process its own connection) and
read again on each change the parent relays; rate-limit decisions are
asked of the parent (L{RemoteLimiter}); exchange records, access-log
lines and metrics go up the channel; log events are JSON lines on its
standard output. SIGTERM (or the parent's end) drains it: it stops
accepting, closes idle connections, lets exchanges in flight finish (at
most L{DRAIN_TIMEOUT} seconds), then exits.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
import weakref
from operator import attrgetter
from typing import Any, Dict, List, Optional, Sequence, Tuple

import attrs
from twisted.application.service import MultiService
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.task import LoopingCall
from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevelFilterPredicate,
    globalLogBeginner,
    jsonFileLogObserver,
)
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from mcpgated import config as configmod
from mcpgated._twisted_compat import server_tls_context
from mcpgated.analytics.metrics import Metrics
from mcpgated.analytics.records import CallRecord
from mcpgated.analytics.recorder import Recorder
from mcpgated.analytics.store import COLUMNS
from mcpgated.cluster.changes import PINS, Change, IChangeFeed, Listener
from mcpgated.cluster.follower import StateFollower
from mcpgated.keys import KeyIndex
from mcpgated.logs import AccessLog
from mcpgated.policy.interfaces import ILimiter
from mcpgated.policy.pinbook import PinBook
from mcpgated.policy.ratelimit import RateLimit
from mcpgated.policy.redislimit import RedisLimitMetrics, redis_limiter
from mcpgated.proxy.listener import gateway_factory
from mcpgated.proxy.upstream import UpstreamPool
from mcpgated.routing import RouteTable
from mcpgated.store import PostgresApiStore, SQLiteApiStore
from mcpgated.tap import StoreService, data_plane, session_sealer
from mcpgated.workers.metrics import snapshot
from mcpgated.workers.pool import CONTROL_IN, CONTROL_OUT, DRAIN_TIMEOUT, LIMITS_IN, LIMITS_OUT
from mcpgated.workers.protocol import (
    ACCESS,
    METRICS,
    RECORDS,
    Changed,
    Control,
    LimitClient,
    Ready,
    Scrape,
)

log = Logger()

FLUSH_INTERVAL = 0.1  # records and access lines go up at least this often
FLUSH_RECORDS = 500  # ... or once this many records wait
MAX_CHECKS = 200  # rate-limit decisions asked of the parent in one message
_values = attrgetter(*COLUMNS)


class WorkerControl(Control):
    """
    The worker's end of the channel.
    """

    def __init__(self) -> None:
        Control.__init__(self)
        self.feed = ParentFeed(self)
        self.metrics: Optional[Metrics] = None
        self.limits = LimitClient()  # on its own pipe pair

    @Changed.responder
    def _changed(self, change: str) -> "Deferred[Dict[str, Any]]":
        # answered once applied: the admin write that caused it answers then
        return self.feed.heard(change).addCallback(lambda _: {})

    @Scrape.responder
    def _scrape(self) -> Dict[str, Any]:
        if self.metrics is not None:
            self.send(METRICS, snapshot(self.metrics.registry))
        return {}


@implementer(IChangeFeed)
@attrs.define
class ParentFeed:
    """
    A worker's feed: what it publishes (its pin writes) goes to the parent,
    which tells the other workers; what the parent relays is heard here.
    """

    control: WorkerControl
    _listeners: List[Listener] = attrs.field(factory=list)

    def publish(self, change: Change) -> "Optional[Deferred[None]]":
        if self.control.transport is not None:
            self.control.callRemote(Changed, change=change.to_json()).addErrback(
                lambda f: log.error("cannot tell the parent of {change}: {error}",
                                    change=change.to_json(), error=f.getErrorMessage()))
        return None  # the other workers hear it from the parent; nothing waits on it

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def heard(self, text: str) -> "Deferred[None]":
        """
        Give a change to the listeners; fires once those that answer with
        a Deferred (the store follower) have applied it.
        """
        change = Change.from_json(text)
        applying = [d for d in (listener(change) for listener in self._listeners)
                    if isinstance(d, Deferred)]
        return gatherResults(applying).addCallback(lambda _: None)


@implementer(ILimiter)
@attrs.define
class RemoteLimiter:
    """
    Rate limits counted in the parent (exact across workers): the
    decisions asked in one reactor turn go in one line on the limits pipe,
    answered in order.
    """

    client: LimitClient
    clock: Any
    _limits: Dict[RateLimit, str] = attrs.field(factory=dict)
    _pending: List[Tuple[List[Any], "Deferred[Optional[float]]"]] = attrs.field(factory=list)

    def check_all(self, limit: RateLimit, who: Any, calls: Any) -> "Deferred[Optional[float]]":
        text = self._limits.get(limit)
        if text is None:
            if len(self._limits) > 1000:
                self._limits.clear()
            text = self._limits[limit] = json.dumps(limit.to_json())
        d: Deferred[Optional[float]] = Deferred()
        if not self._pending:
            self.clock.callLater(0, self._ask)
        self._pending.append(([text, who, calls if type(calls) is list else list(calls)], d))
        if len(self._pending) >= MAX_CHECKS:
            self._ask()
        return d

    def _ask(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        self.client.ask([entry for entry, _ in batch]).addCallbacks(
            self._answered, self._failed, (batch,), errbackArgs=(batch,))

    @staticmethod
    def _answered(waits: List[Optional[float]],
                  batch: List[Tuple[List[Any], "Deferred[Optional[float]]"]]) -> None:
        for (_, d), wait in zip(batch, waits, strict=True):
            d.callback(wait)

    @staticmethod
    def _failed(failure: Any, batch: List[Tuple[List[Any], "Deferred[Optional[float]]"]]) -> None:
        for _, d in batch:
            d.errback(failure)


@attrs.define
class Uplink:
    """
    Exchange records (the analytics store's side of the L{Recorder}) and
    access-log lines, sent up in batches.
    """

    control: WorkerControl
    clock: Any
    _records: List[Tuple[Any, ...]] = attrs.field(factory=list)
    _loop: Optional[LoopingCall] = None
    access: Optional["UpAccessLog"] = None
    dropped: int = 0

    def start(self) -> None:
        self._loop = LoopingCall(self.flush)
        self._loop.clock = self.clock
        self._loop.start(FLUSH_INTERVAL, now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self.flush()

    def record(self, record: CallRecord) -> None:
        self._records.append(_values(record))
        if len(self._records) >= FLUSH_RECORDS:
            self.flush()

    def flush(self) -> None:
        if self.access is not None:
            self.access.flush()
        if self._records:
            rows, self._records = self._records, []
            if self.control.transport is None:
                self.dropped += len(rows)
                return
            self.control.send(RECORDS, json.dumps(rows, separators=(",", ":"), default=str).encode())


class UpAccessLog(AccessLog):
    """
    The access log of a worker: its lines are sent to the parent, which
    writes them in its access log.
    """

    control: Optional[WorkerControl] = None

    def flush(self) -> None:
        buffer = self._buffer
        if not buffer or self.control is None:
            return
        self._buffer = []
        self._buffered = 0
        if self.control.transport is None:
            self.dropped += len(buffer)
            return
        self.control.send(ACCESS, "".join(buffer).encode("utf-8"))


@attrs.define
class Listening:
    fd: int
    family: int
    description: str


def parse_listen(value: str) -> Listening:
    fd, family, description = value.split(":", 2)
    return Listening(int(fd), int(family), description)


@attrs.define(slots=False)
class WorkerService(MultiService):
    """
    The data plane of one worker process.
    """

    cfg: configmod.Config
    reactor: Any
    index: int
    listening: Sequence[Listening]
    control: WorkerControl
    routes: RouteTable = attrs.field(init=False, factory=RouteTable)
    keys: KeyIndex = attrs.field(init=False, factory=KeyIndex)
    ports: List[Any] = attrs.field(init=False, factory=list)
    draining: Optional["Deferred[None]"] = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        MultiService.__init__(self)
        cfg, reactor, control = self.cfg, self.reactor, self.control
        # the parent's store (its schema is up to date before workers start)
        self.store: "SQLiteApiStore | PostgresApiStore" = (
            PostgresApiStore(reactor, cfg.storage.url) if cfg.storage.url
            else SQLiteApiStore(reactor, cfg.storage.path))
        self.pins = PinBook(self.store, reactor)
        self.pins.on_change = lambda api_id: control.feed.publish(Change(PINS, api_id))
        self.follower = StateFollower(self.store, self.routes, self.keys, self.pins, reactor)
        control.feed.subscribe(self.follower.changed)
        StoreService(self.store, self.routes, reactor, self._serve, keys=self.keys, pins=self.pins,
                     on_failed=self._failed).setServiceParent(self)
        self.upstreams = UpstreamPool(reactor=reactor, limits=cfg.limits)
        self.upstreams.setServiceParent(self)
        self.uplink = Uplink(control, reactor)
        self.metrics = Metrics(dropped=lambda: self.uplink.dropped)
        self.pins.metrics = self.metrics
        control.metrics = self.metrics
        access = UpAccessLog(reactor, None)
        if cfg.logging.dir is not None and cfg.logging.access_log:
            access.control = control
            access.logfile = True  # type: ignore[assignment]  # lines are kept (and sent up)
            self.uplink.access = access
        recorder = None
        if cfg.analytics.enabled:
            recorder = Recorder(reactor, self.uplink, self.metrics)  # type: ignore[arg-type]
        # [ratelimit] redis: each worker counts in Redis itself, else the parent counts
        shared = redis_limiter(cfg.ratelimit, reactor)
        limiter: ILimiter = RemoteLimiter(control.limits, reactor) if shared is None else shared
        if shared is not None:
            shared.client.setServiceParent(self)
            self.metrics.registry.register(RedisLimitMetrics(shared))
        # each worker exports its own spans and checks endpoints itself
        self.gateway = data_plane(self, cfg, reactor, self.routes, self.upstreams, self.keys,
                                  self.pins, limiter, recorder, access, self.metrics)
        self.site = gateway_factory(cfg.gateway.http, self.gateway, reactor, cfg.limits)
        self.channels: "weakref.WeakSet[Any]" = weakref.WeakSet()
        build = self.site.buildProtocol

        def tracked(addr: Any) -> Any:
            protocol = build(addr)
            self.channels.add(protocol)
            return protocol

        self.site.buildProtocol = tracked  # type: ignore[method-assign]

    def startService(self) -> None:
        # the parent made the key file (if it was to be generated) before
        # spawning the workers
        self.gateway.sealer = session_sealer(self.cfg)
        MultiService.startService(self)

    def _failed(self, failure: Any) -> None:
        log.critical("worker {index} cannot open the store: {error}; exiting", index=self.index,
                     error=failure.getErrorMessage())
        self.reactor.stop()

    def _serve(self) -> None:
        """
        The routes are loaded: adopt the listening sockets, tell the parent.
        """
        if self.draining is not None:
            return
        for listening in self.listening:
            factory: Any = self.site
            context = None
            if listening.description.startswith("ssl:"):
                context = server_tls_context(
                    endpoints.serverFromString(self.reactor, listening.description))
            if context is not None:
                factory = TLSMemoryBIOFactory(context, False, self.site)
            port = self.reactor.adoptStreamPort(listening.fd, listening.family, factory)
            _one_accept_per_wake(port)
            self.ports.append(port)
            os.close(listening.fd)
        self.uplink.start()
        # as the single process does once ready: what is loaded now lives as
        # long as the worker, out of the collector's full passes
        gc.collect()
        gc.freeze()
        self.control.callRemote(Ready, pid=os.getpid())

    def drain(self) -> "Deferred[None]":
        """
        Stop accepting, close idle connections, let the busy ones finish
        their exchange (then close), at most L{DRAIN_TIMEOUT} seconds.
        """
        if self.draining is not None:
            return self.draining
        log.info("worker {index} draining", index=self.index)
        # (None: a port already closed)
        stopped = [d for d in (port.stopListening() for port in self.ports) if d is not None]
        self.ports = []
        done: Deferred[None] = Deferred()
        self.draining = done
        deadline = self.reactor.seconds() + DRAIN_TIMEOUT

        def check() -> None:
            busy = 0
            for channel in list(self.channels):
                transport = getattr(channel, "transport", None)
                if transport is None or not getattr(transport, "connected", False):
                    continue
                if _idle(channel):
                    transport.loseConnection()
                else:
                    busy += 1
                    if hasattr(channel, "close_after"):
                        channel.close_after = True
            if busy == 0 or self.reactor.seconds() >= deadline:
                if busy:
                    log.warn("worker {index}: {busy} exchanges still running after {timeout} s",
                             index=self.index, busy=busy, timeout=DRAIN_TIMEOUT)
                loop.stop()
                done.callback(None)

        loop = LoopingCall(check)
        loop.clock = self.reactor
        DeferredList(stopped).addCallback(lambda _: loop.start(0.05))
        return done

    def stopService(self) -> "Deferred[None]":
        def rest(_: object) -> "Deferred[Any]":
            self.uplink.stop()
            self.gateway.stop()
            return DeferredList([d for d in (MultiService.stopService(self),) if d is not None])

        return self.drain().addCallback(rest).addCallback(lambda _: None)


def _one_accept_per_wake(port: Any) -> None:
    """
    Every worker wakes when a connection comes to the shared socket; each
    accepts one per wake (Twisted's port takes up to a growing number), so
    a burst of connections is shared between the idle workers instead of
    going to whichever woke first.
    """
    read = port.doRead

    def doRead() -> Any:
        port.numberAccepts = 1
        return read()

    port.doRead = doRead


def _idle(channel: Any) -> bool:
    """
    No request read in part or being answered (the fast server's channel,
    or twisted.web's).
    """
    if getattr(channel, "active", None) is not None or getattr(channel, "parsing", None) is not None:
        return False
    return not getattr(channel, "ready", None) and not getattr(channel, "requests", None)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="mcpgated worker")
    parser.add_argument("--config", required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--listen", action="append", default=[], type=parse_listen)
    args = parser.parse_args(argv)
    cfg = configmod.load(args.config)

    from twisted.internet import reactor as global_reactor
    from twisted.internet import stdio

    reactor: Any = global_reactor
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(jsonFileLogObserver(out),
                              [LogLevelFilterPredicate(defaultLogLevel=cfg.logging.level)])],
        redirectStandardIO=False, discardBuffer=True)
    control = WorkerControl()
    service = WorkerService(cfg, reactor, args.index, args.listen, control)
    stopping: List[bool] = []

    def stop() -> None:
        if not stopping:
            stopping.append(True)
            service.stopService().addBoth(lambda _: reactor.stop())

    def parent_gone() -> None:
        if not stopping:
            log.warn("worker {index}: the parent is gone; stopping", index=args.index)
            stop()

    control.on_lost = parent_gone
    stdio.StandardIO(control, stdin=CONTROL_IN, stdout=CONTROL_OUT, reactor=reactor)  # type: ignore[call-arg]
    stdio.StandardIO(control.limits, stdin=LIMITS_IN, stdout=LIMITS_OUT, reactor=reactor)  # type: ignore[call-arg]
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda signum, frame: reactor.callFromThread(stop))
    reactor.callWhenRunning(service.startService)
    reactor.run(installSignalHandlers=False)
    sys.exit(0)


if __name__ == "__main__":
    main()
