"""
News of other nodes' writes from PostgreSQL: C{LISTEN mcpgated_changes} on
a connection of its own, in a thread of its own, with each notice handed
to the listeners on the reactor thread.

The store sends the notices itself (C{pg_notify} inside each write's
transaction, L{mcpgated.store.PostgresApiStore}), so L{PostgresFeed.publish}
does nothing. A notice carries its sender's C{origin}: a feed given its
own store's origin skips the notices of its own writes.

A lost connection is retried with backoff (0.1 s doubling to 5 s); notices
sent meanwhile are lost, so every (re)connection delivers C{Change("all")}:
the listeners read everything again. The first connection delivers it too
(the store was read before the feed listened: what changed in between).
"""

from __future__ import annotations

import json
import threading
from typing import Any, Iterable, List, Optional

import attrs
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mcpgated.cluster.changes import ALL, BadChange, Change, IChangeFeed, Listener
from mcpgated.config import redacted_url

log = Logger()

CHANNEL = "mcpgated_changes"


def notice(change: Change, origin: str) -> str:
    """
    The NOTIFY payload: the change's JSON with its sender's C{origin}.
    """
    text = change.to_json()
    assert text.startswith("{")
    return '{"origin":' + json.dumps(origin) + "," + text[1:]


redacted = redacted_url  # URLs in messages: mcpgated.config.redacted_url


@implementer(IChangeFeed)
@attrs.define(slots=False)
class PostgresFeed(Service):
    """
    L{IChangeFeed} over PostgreSQL's LISTEN/NOTIFY. As a service it only
    stops: L{start} listening once the store has been read.

    @ivar url: the database's libpq URL.
    @ivar origin: this process's stores' origin (their notices are skipped).
    @ivar listening: whether the LISTEN connection is up (reactor thread).
    """

    reactor: IReactorFromThreads
    url: str = attrs.field(repr=redacted)
    origin: Optional[str] = None
    first_delay: float = 0.1
    max_delay: float = 5.0
    poll: float = 0.25  # how soon the thread sees stop()
    listening: bool = attrs.field(init=False, default=False)
    outages: int = attrs.field(init=False, default=0)  # connections lost or refused
    _listeners: List[Listener] = attrs.field(init=False, factory=list)
    _stopping: threading.Event = attrs.field(init=False, factory=threading.Event)
    _thread: Optional[threading.Thread] = attrs.field(init=False, default=None)
    _stopped: "Deferred[None]" = attrs.field(init=False, factory=Deferred)

    # --- IChangeFeed ----------------------------------------------------------------

    def publish(self, change: Change) -> "Optional[Deferred[None]]":
        # the store's pg_notify, inside the write's transaction, told everyone
        return None

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # --- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._listen, name="mcpgated-pgfeed", daemon=True)
        self._thread.start()

    def stopService(self) -> "Deferred[None]":
        Service.stopService(self)
        return self.stop()

    def stop(self) -> "Deferred[None]":
        """
        Stop listening. The Deferred fires once the thread has ended.
        """
        if self._thread is None:
            return succeed(None)
        self._stopping.set()
        return self._stopped

    # --- the thread ---------------------------------------------------------------

    def _listen(self) -> None:
        import psycopg  # here: psycopg loads only in a daemon that uses PostgreSQL

        delay = self.first_delay
        failures = 0
        try:
            while not self._stopping.is_set():
                try:
                    connection = psycopg.connect(
                        self.url, autocommit=True, connect_timeout=5, keepalives=1,
                        keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
                        application_name="mcpgated-feed")
                except psycopg.Error as e:
                    self._from_thread(self._failed, str(e).strip(), failures)
                    failures += 1
                    self._stopping.wait(delay)
                    delay = min(delay * 2, self.max_delay)
                    continue
                try:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self._from_thread(self._connected, failures)
                    failures, delay = 0, self.first_delay
                    while not self._stopping.is_set():
                        for heard in connection.notifies(timeout=self.poll):
                            self._from_thread(self._heard, heard.payload)
                except psycopg.Error as e:
                    self._from_thread(self._lost, str(e).strip())
                    failures = 1
                    self._stopping.wait(delay)  # a connection cut again and again: backoff
                    delay = min(delay * 2, self.max_delay)
                finally:
                    connection.close()
        finally:
            self._from_thread(self._ended)

    def _from_thread(self, f: Any, *args: Any) -> None:
        self.reactor.callFromThread(f, *args)

    # --- on the reactor thread ---------------------------------------------------------

    def _failed(self, error: str, failures: int) -> None:
        self.listening = False
        if failures == 0:  # once per outage
            self.outages += 1
            log.warn("change feed: cannot listen on PostgreSQL {where} ({error}); retrying",
                     where=redacted(self.url), error=error)

    def _lost(self, error: str) -> None:
        self.listening = False
        self.outages += 1
        log.warn("change feed: lost the connection to PostgreSQL {where} ({error}); "
                 "reconnecting", where=redacted(self.url), error=error)

    def _connected(self, failures: int) -> None:
        self.listening = True
        log.info("change feed: listening on PostgreSQL {where}{again}", where=redacted(self.url),
                 again="; reading everything again" if failures else "")
        self._deliver(Change(ALL))

    def _heard(self, payload: str) -> None:
        try:
            origin = json.loads(payload).get("origin")
            change = Change.from_json(payload)
        except (BadChange, ValueError, AttributeError):
            log.warn("change feed: ignored a notice that is not a change: {payload!r}",
                     payload=payload[:200])
            return
        if self.origin is not None and origin == self.origin:
            return
        self._deliver(change)

    def _deliver(self, change: Change) -> None:
        for listener in list(self._listeners):
            try:
                result = listener(change)
            except Exception:  # noqa: BLE001 -- one listener's bug must not starve the others
                log.failure("change feed: a listener failed on {change}", change=change)
                continue
            if isinstance(result, Deferred):
                result.addErrback(self._listener_failed, change)

    def _listener_failed(self, failure: Failure, change: Change) -> None:
        log.failure("change feed: a listener failed on {change}", failure, change=change)

    def _ended(self) -> None:
        self.listening = False
        self._stopped.callback(None)


class FeedMetrics:
    """
    A Prometheus collector: C{mcpgated_change_feed_listening} (1 while the
    feed's LISTEN connection is up) and C{mcpgated_change_feed_outages_total}
    (connections lost or refused), read when the registry is collected.
    """

    def __init__(self, feed: PostgresFeed) -> None:
        self._feed = feed

    def describe(self) -> Iterable[Metric]:
        return self.collect()

    def collect(self) -> Iterable[Metric]:
        listening = GaugeMetricFamily(
            "mcpgated_change_feed_listening",
            "1 while this node hears other nodes' writes (PostgreSQL LISTEN), else 0")
        listening.add_metric([], 1 if self._feed.listening else 0)
        outages = CounterMetricFamily(
            "mcpgated_change_feed_outages",
            "Times the change feed's PostgreSQL connection was lost or refused")
        outages.add_metric([], self._feed.outages)
        return [listening, outages]
