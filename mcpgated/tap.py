"""
The twistd plugin's options and composition root.

C{makeService} only constructs; files, the database and sockets are opened
when the services start.
"""

from __future__ import annotations

import gc
import json
import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Dict, List, Optional, Tuple, Union

import attrs
from twisted.application.service import IServiceCollection, MultiService, Service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, DeferredList, FirstError, gatherResults, maybeDeferred, succeed
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from mcpgated import config as configmod
from mcpgated.admin.api import AdminAPI
from mcpgated.admin.console import gateway_addresses
from mcpgated.analytics.metrics import Metrics
from mcpgated.analytics.recorder import Recorder
from mcpgated.analytics.store import AnalyticsStore, ExchangeStore
from mcpgated.files import SECRET_DIR, make_dirs
from mcpgated.keys import KeyIndex
from mcpgated.policy.auth import Authenticator
from mcpgated.policy.gate import Gate
from mcpgated.policy.pinbook import PinBook
from mcpgated.policy.interfaces import ILimiter
from mcpgated.policy.ratelimit import Limiter
from mcpgated.policy.redislimit import RedisLimitMetrics, redis_limiter
from mcpgated.policy.tokens import TokenVerifier
from mcpgated.logs import DroppedLines, LogFilesService
from mcpgated.proxy.balancer import HealthChecks
from mcpgated.proxy.listener import gateway_factory
from mcpgated.proxy.resource import GatewayResource
from mcpgated.proxy.upstream import UpstreamPool
from mcpgated.routing import RouteTable
from mcpgated.sealing import KeyFileError, Sealer, load_key_file
from mcpgated.sdnotify import notify
from mcpgated.site import CappedSite, json_too_large
from mcpgated.cluster.follower import StateFollower
from mcpgated.cluster.pgfeed import FeedMetrics, PostgresFeed, redacted
from mcpgated.store import SQLiteApiStore
from mcpgated.workers.metrics import PoolMetrics
from mcpgated.workers.pool import WorkerPool, share, worker_pool
from mcpgated.writable import unwritable

if TYPE_CHECKING:
    from mcpgated.store import PostgresApiStore

log = Logger()

ADMIN_MAX_BODY = 1024 * 1024


class Options(usage.Options):
    synopsis = "[-c /etc/mcpgated.ini] [--check-config]"
    longdesc = "Run the mcpgated MCP gateway. Every setting lives in the INI file."
    optParameters: ClassVar[List[List[Optional[str]]]] = [
        ["config", "c", "/etc/mcpgated.ini", "The INI configuration file."],
    ]
    optFlags: ClassVar[List[List[Optional[str]]]] = [
        ["check-config", None, "Validate the configuration file and exit."],
    ]

    def postOptions(self) -> None:
        # A bad file ends twistd with one line and status 1 on every Twisted
        # release: before 26.10, twistd exits 0 after printing a UsageError.
        try:
            self["parsed"] = configmod.load(self["config"])
        except configmod.ConfigError as e:
            raise SystemExit(f"mcpgated: {e}") from None
        if self["parsed"].admin.token_file is not None:
            # What startService will read: an unreadable or empty file is one
            # line now, before twistd logs, listens or daemonizes (a generated
            # token is not created by a check).
            try:
                admin_token(self["parsed"])
            except configmod.ConfigError as e:
                raise SystemExit(f"mcpgated: {e}") from None
        if self["parsed"].gateway.session_key_file is not None:
            # the same for a configured session key file (a generated one is
            # not created by a check)
            try:
                session_sealer(self["parsed"])
            except configmod.ConfigError as e:
                raise SystemExit(f"mcpgated: {e}") from None
        if self["check-config"]:
            refuse_unwritable(self["parsed"])
            sys.stdout.write(f"{self['config']}: configuration is valid\n")
            sys.stdout.flush()
            raise SystemExit(0)


def refuse_unwritable(cfg: configmod.Config) -> None:
    """
    Exit (one line per path, naming its section and key) if the daemon
    could not write every path it will write.
    """
    errors = unwritable(cfg)
    if errors:
        raise SystemExit("\n".join(f"mcpgated: {e}" for e in errors))


@attrs.define(slots=False)
class ListenerService(Service):
    """
    Listen on one endpoint string. A bind failure stops startup with a
    one-line message (twistd exits non-zero) instead of a logged traceback.
    """

    role: str
    description: str
    factory: IProtocolFactory
    reactor: Any  # the reactor: IReactorCore, IReactorTCP, IReactorSSL ... at once
    port: Optional[IListeningPort] = attrs.field(init=False, default=None)

    def privilegedStartService(self) -> None:
        try:
            endpoint = endpoints.serverFromString(self.reactor, self.description)
        except Exception as e:  # noqa: BLE001 -- each endpoint parser raises its own errors: all are the operator's
            raise SystemExit(
                f"mcpgated: cannot listen on {self.description} ({self.role}): {e}"
            ) from None
        outcome: List[Union[IListeningPort, Failure]] = []
        endpoint.listen(self.factory).addBoth(outcome.append)
        if not outcome:
            raise SystemExit(f"mcpgated: listening on {self.description} did not complete")
        if isinstance(outcome[0], Failure):
            raise SystemExit(
                f"mcpgated: cannot listen on {self.description} ({self.role}): "
                f"{outcome[0].getErrorMessage()}"
            )
        self.port = outcome[0]
        Service.privilegedStartService(self)

    def startService(self) -> None:
        if self.port is None:
            self.privilegedStartService()
        assert self.port is not None
        host = self.port.getHost()
        log.info("{role} listening on {description} (port {port})", role=self.role,
                 description=self.description, port=getattr(host, "port", None))
        Service.startService(self)

    def stopService(self) -> Optional[Deferred[None]]:
        Service.stopService(self)
        port, self.port = self.port, None
        if port is not None:
            return port.stopListening()
        return None

    def bound_port(self) -> Optional[int]:
        if self.port is None:
            return None
        return getattr(self.port.getHost(), "port", None)


@attrs.define(slots=False)
class StoreService(Service):
    """
    Opens the store on start, loads the routing table and the API keys,
    closes on stop. A store that cannot open stops the daemon.
    """

    store: "SQLiteApiStore | PostgresApiStore"
    routes: RouteTable
    reactor: Any  # the reactor: IReactorCore and IReactorTime
    on_ready: Optional[Callable[[], None]] = None
    keys: KeyIndex = attrs.field(factory=KeyIndex)
    pins: Optional[PinBook] = None  # tool-definition pins, for the gateway
    # what a failure to open does; None: log it and stop the reactor
    on_failed: Optional[Callable[[Failure], None]] = None

    def startService(self) -> None:
        Service.startService(self)
        d = Deferred.fromCoroutine(self._load())
        d.addErrback(self._failed)

    async def _load(self) -> None:
        version = await self.store.start()
        # tickets before the reads: what a follower applies meanwhile (a
        # worker's, hearing its parent) is newer and stays (mcpgated.writeorder)
        routes_ticket = self.routes.order.begin()
        keys_ticket = self.keys.order.begin()
        pins_ticket = self.pins.order.begin() if self.pins is not None else None
        try:
            records = await self.store.list_apis()
            # Keys first: loading the routes releases the requests waiting for them.
            self.keys.load(await self.store.usable_keys(self.reactor.seconds()), keys_ticket)
            if self.pins is not None:
                self.pins.load(await self.store.pin_states(), pins_ticket)
            self.routes.load(records, routes_ticket)
        finally:
            self.routes.order.end()
            self.keys.order.end()
            if self.pins is not None:
                self.pins.order.end()
        log.info("store {path} open (schema {version}): {count} APIs, {live} started",
                 path=str(self.store.path), version=version, count=len(records),
                 live=len(self.routes.routes()))
        if self.on_ready is not None:
            self.on_ready()

    def _failed(self, failure: Failure) -> None:
        if self.on_failed is not None:
            self.on_failed(failure)
            return
        log.failure("cannot open the store {path}; stopping", failure, path=str(self.store.path))
        self.reactor.stop()

    def stopService(self) -> "Deferred[None]":
        Service.stopService(self)
        return self.store.stop().addCallback(self._closed)

    def _closed(self, result: None) -> None:
        log.info("store {path} closed", path=str(self.store.path))


def generated_token_path(cfg: configmod.Config) -> Path:
    """
    Where a generated admin token lives: C{admin.token} beside the database.
    """
    return cfg.storage.path.parent / "admin.token"


def files_line(cfg: configmod.Config) -> str:
    """
    Where the daemon keeps what an operator looks for (absolute paths): the
    admin token, the databases and the logs.
    """
    if cfg.admin.token:
        token = "[admin] token in " + str(cfg.source)
    else:
        token = str(cfg.admin.token_file or generated_token_path(cfg))
    databases = redacted(cfg.storage.url) if cfg.storage.url else str(cfg.storage.path)
    if cfg.analytics.enabled:
        databases += f" and {_analytics_where(cfg)}"
    logs = str(cfg.logging.dir) if cfg.logging.dir is not None else "none ([logging] dir is empty)"
    return f"admin token {token}; databases {databases}; logs {logs}"


def _analytics_where(cfg: configmod.Config) -> str:
    if cfg.analytics.url is not None:
        from mcpgated.analytics.pgstore import redacted

        return redacted(cfg.analytics.url)
    return str(cfg.analytics.path)


def analytics_store(cfg: configmod.Config, reactor: Any) -> ExchangeStore:
    """
    The exchange log: in PostgreSQL with C{[analytics] url}, else in the
    SQLite file at C{path}; its records name C{[gateway] node}.
    """
    if cfg.analytics.url is not None:
        from mcpgated.analytics.pgstore import PostgresAnalyticsStore  # psycopg only when used

        return PostgresAnalyticsStore(reactor, cfg.analytics.url, retention=cfg.analytics.retention,
                                      max_rows=cfg.analytics.max_rows, node=cfg.gateway.node)
    return AnalyticsStore(reactor, cfg.analytics.path, retention=cfg.analytics.retention,
                          max_rows=cfg.analytics.max_rows, node=cfg.gateway.node)


def admin_token(cfg: configmod.Config) -> str:
    """
    The admin token: from the config, from C{token_file}, or generated once
    into C{admin.token} beside the database (mode 0600).
    """
    if cfg.admin.token:
        return cfg.admin.token
    if cfg.admin.token_file is not None:
        try:
            token = cfg.admin.token_file.read_text("utf-8").strip()
        except OSError as e:
            raise configmod.ConfigError(f"cannot read: {e.strerror}", str(cfg.source),
                                        "admin", "token_file") from e
        if not token:
            raise configmod.ConfigError("the file is empty", str(cfg.source), "admin", "token_file")
        return token
    generated = generated_token_path(cfg)
    if generated.exists():
        return generated.read_text("utf-8").strip()
    make_dirs(generated.parent, SECRET_DIR)
    token = secrets.token_urlsafe(32)
    fd = os.open(generated, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(fd, 0o600)  # whatever the umask
        f.write(token + "\n")
    log.warn("no [admin] token configured: generated one in {path}", path=str(generated))
    return token


def session_sealer(cfg: configmod.Config) -> Sealer:
    """
    The seal of load-balanced APIs' session ids: the keys of C{[gateway]
    session_key_file}, or of C{session.key} beside the database (generated
    once, mode 0600).
    """
    path = cfg.gateway.session_key_file
    try:
        return Sealer(load_key_file(path or cfg.storage.path.parent / "session.key",
                                    generate=path is None))
    except KeyFileError as e:
        raise configmod.ConfigError(str(e), str(cfg.source), "gateway", "session_key_file") from e


def data_plane(parent: MultiService, cfg: configmod.Config, reactor: Any, routes: RouteTable,
               upstreams: UpstreamPool, keys: KeyIndex, pins: PinBook, limiter: ILimiter,
               recorder: Optional[Recorder], access_log: Any, metrics: Metrics,
               serving: bool = True) -> GatewayResource:
    """
    The gateway resource as every process that serves it builds it (the
    twistd process alone, or each worker: mcpgated.workers.main): its gate,
    and, when C{serving}, the traces it exports ([tracing]) and the active
    health checks of load-balanced endpoints, as services of C{parent}.
    """
    tracing = None
    if serving and cfg.tracing.otlp_endpoint is not None:
        from mcpgated.analytics.tracing import TracingService, from_config

        tracing = from_config(cfg.tracing)
        assert tracing is not None
        TracingService(tracing).setServiceParent(parent)
        metrics.registry.register(tracing.metrics())
    gateway = GatewayResource(
        routes=routes,
        upstreams=upstreams,
        clock=reactor,
        access_log=access_log,
        limits=cfg.limits,
        public_url=cfg.gateway.public_url,
        trusted_proxies=cfg.gateway.trusted_proxies,
        recorder=recorder,
        allowed_hosts=cfg.gateway.allowed_hosts,
        allowed_origins=cfg.gateway.allowed_origins,
        gate=Gate(Authenticator(reactor, keys=keys, verifier=TokenVerifier(reactor, upstreams)),
                  limiter, pins=pins),
        tracing=tracing,
    )
    if serving:
        HealthChecks(gateway.balancer, routes, reactor,
                     upstreams.default_agent()).setServiceParent(parent)
    return gateway


@attrs.define(slots=False)
class GatewayService(MultiService):
    """
    The whole daemon: logs, store, upstream pool, listeners.
    """

    cfg: configmod.Config
    reactor: Any
    routes: RouteTable = attrs.field(init=False, factory=RouteTable)
    keys: KeyIndex = attrs.field(init=False, factory=KeyIndex)  # API keys, for the gateway

    def __attrs_post_init__(self) -> None:
        MultiService.__init__(self)
        cfg, reactor = self.cfg, self.reactor
        self.logs = LogFilesService(
            clock=reactor,
            directory=cfg.logging.dir,
            level=cfg.logging.level,
            max_bytes=cfg.logging.max_bytes,
            keep=cfg.logging.keep,
            access_enabled=cfg.logging.access_log,
            exchange_enabled=cfg.analytics.enabled and cfg.analytics.exchange_log,
        )
        self.logs.setServiceParent(self)
        self.store: "SQLiteApiStore | PostgresApiStore"
        if cfg.storage.url:
            from mcpgated.store import PostgresApiStore  # psycopg only when used

            self.store = PostgresApiStore(reactor, cfg.storage.url)
        else:
            self.store = SQLiteApiStore(reactor, cfg.storage.path)
        self.pins = PinBook(self.store, reactor)
        self._loaded: Deferred[None] = Deferred()
        StoreService(self.store, self.routes, reactor, lambda: self._loaded.callback(None),
                     keys=self.keys, pins=self.pins,
                     on_failed=self._loaded.errback).setServiceParent(self)
        self.upstreams = UpstreamPool(reactor=reactor, limits=cfg.limits)
        self.upstreams.setServiceParent(self)
        self.analytics: Optional[ExchangeStore] = None
        recorder: Optional[Recorder] = None
        if cfg.analytics.enabled:
            self.analytics = analytics_store(cfg, reactor)
            self.analytics.setServiceParent(self)
        analytics = self.analytics
        # with workers, /metrics adds up theirs (mcpgated.workers)
        self.metrics = (PoolMetrics if cfg.gateway.workers > 1 else Metrics)(
            dropped=lambda: analytics.dropped if analytics else 0)
        self.pins.metrics = self.metrics
        self.metrics.registry.register(DroppedLines(self.logs))
        if analytics is not None:
            recorder = Recorder(reactor, analytics, self.metrics,
                                self.logs.exchanges if cfg.analytics.exchange_log else None,
                                node=cfg.gateway.node)
        # [ratelimit] redis: counters shared by every node, else in memory
        # (with workers, each worker has its own client: mcpgated.workers.main)
        shared = redis_limiter(cfg.ratelimit, reactor) if cfg.gateway.workers == 1 else None
        limiter: ILimiter = Limiter(reactor) if shared is None else shared
        if shared is not None:
            shared.client.setServiceParent(self)
            self.metrics.registry.register(RedisLimitMetrics(shared))
        # with workers, each worker traces and checks endpoints itself
        self.gateway = data_plane(self, cfg, reactor, self.routes, self.upstreams, self.keys,
                                  self.pins, limiter, recorder, self.logs.access, self.metrics,
                                  serving=cfg.gateway.workers == 1)
        gateway_site = gateway_factory(cfg.gateway.http, self.gateway, reactor, cfg.limits)
        self.listeners: List[ListenerService] = []
        for description in cfg.gateway.listen:
            self.listeners.append(ListenerService("gateway", description, gateway_site, reactor))
        self.admin = AdminAPI(self.store, self.routes, reactor, token="",
                              analytics=self.analytics, metrics=self.metrics, keys=self.keys,
                              pins=self.pins)
        self.admin.gateway_info = lambda: gateway_addresses(self.listeners, cfg.gateway.public_url)
        self.admin.backend_agent = self.upstreams.agent  # previews list backends (admin/preview.py)
        # [storage] url: other nodes' writes heard by LISTEN, from once the store is read
        self.feed: Optional[PostgresFeed] = None
        if not isinstance(self.store, SQLiteApiStore):
            self.feed = PostgresFeed(reactor, self.store.url, origin=self.store.origin)
            self.feed.subscribe(StateFollower(self.store, self.routes, self.keys, self.pins,
                                              reactor).changed)
            self.feed.setServiceParent(self)
            self.metrics.registry.register(FeedMetrics(self.feed))
            self.admin.changes = self.feed
            self._loaded.addCallback(lambda _: self.feed.start() if self.feed else None)
        # [gateway] workers > 1: worker processes serve the gateway sockets
        self.pool: Optional[WorkerPool] = worker_pool(self) if cfg.gateway.workers > 1 else None
        if self.pool is not None and self.feed is not None:
            self.feed.subscribe(self.pool.feed.publish)  # other nodes' writes, to the workers
        admin_site = CappedSite(self.admin.resource(), ADMIN_MAX_BODY, json_too_large)
        for description in cfg.admin.listen:
            self.listeners.append(ListenerService("admin", description, admin_site, reactor))
        for listener in self.listeners:
            listener.setServiceParent(self)

    def ports(self) -> Dict[str, List[Optional[int]]]:
        ports: Dict[str, List[Optional[int]]] = {}
        for listener in self.listeners:
            ports.setdefault(listener.role, []).append(listener.bound_port())
        return ports

    def _needed(self) -> List[Tuple[str, Union[Path, str], "Deferred[None]"]]:
        """
        (what, file, fired when open) of the stores the daemon needs.
        """
        needed: List[Tuple[str, Union[Path, str], "Deferred[None]"]] = [
            ("store", self.store.path, self._loaded)]
        if self.analytics is not None:
            needed.append(("analytics store", self.analytics.where, self.analytics.opened))
        return needed

    def _cannot_start(self, failure: Failure) -> None:
        """
        A store did not open: one line saying which and why, no readiness,
        and twistd exits with status 1 once every service has stopped.
        """
        error = failure.value
        if isinstance(error, FirstError):
            what, path, _ = self._needed()[error.index]
            log.critical("mcpgated cannot start: cannot open the {what} {path}: {error}; stopping",
                         what=what, path=str(path), error=error.subFailure.getErrorMessage())
        else:  # announcing failed (the ports file)
            log.failure("mcpgated cannot start; stopping", failure)
        self.reactor.addSystemEventTrigger("after", "shutdown", _exit_failed)
        self.reactor.stop()

    def _ready(self) -> None:
        """
        Listening and the stores open: announce the ports (log line and,
        if configured, the ports file written atomically; systemd's READY=1).
        """
        # What is loaded by now lives as long as the daemon: keep it out of
        # the garbage collector's full passes, which the exchange log's
        # queued records would otherwise trigger again and again.
        gc.collect()
        gc.freeze()
        ports = self.ports()
        path = self.cfg.daemon.ports_file
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(path.name + ".tmp")
            temporary.write_text(json.dumps(ports))
            os.replace(temporary, path)
        log.info("mcpgated ready: {ports_json}", ports_json=json.dumps(ports))
        problem = notify(f"READY=1\nSTATUS=ready: {json.dumps(ports)}")
        if problem is not None:
            log.warn("cannot tell systemd the daemon is ready: {problem}", problem=problem)

    def stopService(self) -> "Deferred[None]":
        notify("STOPPING=1")
        path = self.cfg.daemon.ports_file
        if path is not None:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        # Listeners, pool and store stop together (the store after its
        # pending writes); the log files close last, so they record the
        # whole shutdown and the access lines of exchanges ending during it.
        Service.stopService(self)
        self.gateway.stop()
        # workers drain first: their last records and log lines come here
        pool = self.pool
        first = maybeDeferred(pool.stopService) if pool is not None else succeed(None)
        return first.addBoth(lambda _: DeferredList([
            maybeDeferred(child.stopService) for child in reversed(list(self))
            if child is not self.logs and child is not pool])) \
            .addBoth(lambda _: self.logs.stopService())

    def startService(self) -> None:
        refuse_unwritable(self.cfg)
        try:
            self.admin.token = admin_token(self.cfg)
            self.gateway.sealer = session_sealer(self.cfg)
        except configmod.ConfigError as e:
            raise SystemExit(f"mcpgated: {e}") from None
        log.info("mcpgated files: {files}", files=files_line(self.cfg))
        MultiService.startService(self)
        if self.pool is not None:
            share(self.pool, self.listeners)
        # ready (and READY=1) only once every store the daemon needs is open
        # (and, with workers, once every worker serves)
        gatherResults([opened for _, _, opened in self._needed()], consumeErrors=True) \
            .addCallback(lambda _: self.pool.start() if self.pool is not None else None) \
            .addCallback(lambda _: self._ready()).addErrback(self._cannot_start)


def _exit_failed() -> None:
    """
    End twistd with status 1 (it would exit 0 after a stopped reactor),
    its output flushed.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(1)


def makeService(options: Dict[str, Any], reactor: Any = None) -> IServiceCollection:
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    cfg = options["parsed"] if "parsed" in options else configmod.load(options["config"])
    return GatewayService(cfg, reactor)
