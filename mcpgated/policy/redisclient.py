"""
A small Redis client for the reactor thread: one pipelined connection,
replies parsed by C{hiredis.Reader} (C), commands packed by
C{hiredis.pack_command}, reconnecting with backoff. It never blocks: a
command either goes out at once, waits (bounded by C{timeout}) for the
connection being made, or fails at once with L{RedisUnavailable} while
Redis is known to be down.

One outage is one pair of log lines (down, then back), whatever the number
of commands that failed meanwhile; L{RedisClient.outages} counts them.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Deque, List, Optional, Sequence, Tuple, Union, cast
from urllib.parse import unquote, urlsplit

import attrs
import hiredis
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
from twisted.internet.interfaces import IDelayedCall, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

Arg = Union[str, bytes, int, float]
# hiredis's stub declares a one-element tuple: any tuple of Args is packed
_pack_command = cast(Callable[[Tuple[Arg, ...]], bytes], hiredis.pack_command)
# (what the caller waits on, when the command was given)
_Waiting = Tuple["Deferred[Any]", float]


class RedisUnavailable(Exception):
    """
    No answer from Redis: not connected, the connection was lost, or no
    answer within the client's timeout.
    """


class RedisError(Exception):
    """
    Redis answered with an error (C{-ERR ...}): the message is its text.
    """


@attrs.frozen
class RedisAddress:
    """
    Where Redis is: C{redis://[[user]:password@]host[:port][/db]} or
    C{unix:///path/to/redis.sock[?db=N]}.
    """

    host: Optional[str]
    port: int = 6379
    path: Optional[str] = None  # a unix socket
    db: int = 0
    username: Optional[str] = None
    password: Optional[str] = attrs.field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> "RedisAddress":
        """
        @raise ValueError: not a URL of this form (the message says which).
        """
        usage = "redis://[[user]:password@]host[:port][/db] or unix:///path.sock[?db=N]"
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as e:
            raise ValueError(f"{url!r} is not a Redis URL ({usage}): {e}") from None
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if parts.scheme == "unix":
            if not parts.path:
                raise ValueError(f"{url!r} names no socket path ({usage})")
            db_text = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p).get("db", "0")
            return cls(None, path=parts.path, db=_db(db_text, url), username=username,
                       password=password)
        if parts.scheme != "redis" or not parts.hostname:
            raise ValueError(f"{url!r} is not a Redis URL ({usage})")
        if parts.query or parts.fragment:
            raise ValueError(f"{url!r} must not have a query or fragment ({usage})")
        return cls(parts.hostname, port=port or 6379, db=_db(parts.path.strip("/") or "0", url),
                   username=username, password=password)

    def endpoint(self, reactor: Any) -> IStreamClientEndpoint:
        if self.path is not None:
            return UNIXClientEndpoint(reactor, self.path, timeout=5)
        assert self.host is not None
        return HostnameEndpoint(reactor, self.host, self.port, timeout=5)

    def describe(self) -> str:
        """
        The address without its credentials (for the log).
        """
        where = f"unix:{self.path}" if self.path is not None else f"{self.host}:{self.port}"
        return f"{where}/{self.db}"

    def handshake(self) -> List[bytes]:
        """
        The commands a new connection sends first: AUTH, SELECT.
        """
        commands = []
        if self.password is not None:
            auth: Tuple[Arg, ...] = ("AUTH", self.password)
            if self.username:
                auth = ("AUTH", self.username, self.password)
            commands.append(_pack_command(auth))
        if self.db:
            commands.append(_pack_command(("SELECT", self.db)))
        return commands


def _db(text: str, url: str) -> int:
    if not text.isdigit():
        raise ValueError(f"{url!r}: the database must be a number, not {text!r}")
    return int(text)


_CLOSED = Failure(ConnectionError("closed"))


class _Connection(Protocol):
    """
    One connection: replies parsed by hiredis, handed in order to the
    client.
    """

    def __init__(self, client: "RedisClient") -> None:
        self._client = client
        self._reader = hiredis.Reader()
        self.dead = False  # dropped: what it still reads is ignored

    def dataReceived(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        reply = self._client._reply
        try:
            while not self.dead:
                answer = reader.gets()
                if answer is False:
                    return
                reply(answer)
        except hiredis.ProtocolError as e:
            log.error("Redis sent what is not RESP ({error}); reconnecting", error=str(e))
            self.abort()

    def abort(self) -> None:
        self.dead = True
        transport: Any = self.transport
        transport.abortConnection()

    def connectionLost(self, reason: Failure = _CLOSED) -> None:
        self._client._lost(self, reason)


@attrs.define(eq=False, slots=False)
class RedisClient(Service):
    """
    Redis over one pipelined connection on the reactor thread.

    @ivar timeout: the longest a command waits for its answer (or for the
        connection being made); past it the connection is dropped, every
        waiting command fails with L{RedisUnavailable} and Redis counts as
        down until a new connection is made.
    @ivar on_state: called with C{(up, reason)} when Redis goes down (once
        per outage) and when it is back.
    """

    reactor: Any  # IReactorTime + what the endpoint needs
    address: RedisAddress
    timeout: float = 0.5
    retry_initial: float = 0.05
    retry_max: float = 2.0
    on_state: Optional[Callable[[bool, str], None]] = None
    outages: int = 0
    up: bool = False
    _endpoint: Optional[IStreamClientEndpoint] = None
    _connection: Optional[_Connection] = None
    _connecting: Optional["Deferred[Any]"] = None
    _down: bool = False  # known down: commands fail at once
    _down_since: float = 0.0
    _delay: float = 0.0
    _retry: Optional[IDelayedCall] = None
    _watch: Optional[IDelayedCall] = None
    _watch_due: float = 0.0
    _granted: Optional["Deferred[Any]"] = None  # the command given a second period
    _handshake: int = 0  # handshake replies still expected on the connection
    _opening: Optional[_Connection] = None  # connected, its handshake not answered yet
    _opening_timer: Optional[IDelayedCall] = None
    _sent: Deque[_Waiting] = attrs.field(factory=collections.deque)
    _queued: List[Tuple[bytes, _Waiting]] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        self._delay = self.retry_initial

    @property
    def down(self) -> bool:
        """
        Known down (an outage began and no connection is made yet):
        commands fail at once.
        """
        return self._down

    # -- the service -----------------------------------------------------

    def startService(self) -> None:
        Service.startService(self)
        self._endpoint = self.address.endpoint(self.reactor)
        self._connect()

    def stopService(self) -> None:
        Service.stopService(self)
        for call in (self._retry, self._watch, self._opening_timer):
            if call is not None and call.active():
                call.cancel()
        self._retry = self._watch = self._opening_timer = None
        if self._connecting is not None:
            self._connecting.cancel()
        for connection in (self._connection, self._opening):
            if connection is not None and connection.transport is not None:
                connection.transport.loseConnection()
        self._connection = self._opening = None
        self._fail_all(RedisUnavailable("the client stopped"))

    # -- commands --------------------------------------------------------

    def execute(self, *args: Arg) -> "Deferred[Any]":
        """
        Send one command; the Deferred fires with its reply, or fails with
        L{RedisError} (an error reply) or L{RedisUnavailable}.
        """
        return self.send(_pack_command(args))

    def send(self, payload: bytes) -> "Deferred[Any]":
        """
        Send one packed command (C{hiredis.pack_command}).
        """
        connection = self._connection
        if connection is None:
            if self._down or not self.running:
                return fail(RedisUnavailable(f"Redis at {self.address.describe()} is unreachable"))
            waiting: _Waiting = (Deferred(), self.reactor.seconds())
            self._queued.append((payload, waiting))
        else:
            waiting = (Deferred(), self.reactor.seconds())
            connection.transport.write(payload)  # type: ignore[union-attr]
            self._sent.append(waiting)
        if self._watch is None:
            self._arm(self.timeout)
        return waiting[0]

    def _reply(self, answer: Any) -> None:
        if self._handshake:
            self._handshaken(answer)
            return
        waiting, _ = self._sent.popleft()
        if isinstance(answer, hiredis.ReplyError):
            waiting.errback(RedisError(str(answer)))
        else:
            waiting.callback(answer)

    # -- time-outs -------------------------------------------------------

    def _arm(self, delay: float) -> None:
        self._watch_due = self.reactor.seconds() + delay
        self._watch = self.reactor.callLater(delay, self._check_timeout)

    def _check_timeout(self) -> None:
        self._watch = None
        now = self.reactor.seconds()
        oldest: Optional[_Waiting] = None
        if self._sent:
            oldest = self._sent[0]
        if self._queued and (oldest is None or self._queued[0][1][1] < oldest[1]):
            oldest = self._queued[0][1]
        if oldest is None:
            return
        late = oldest[1] + self.timeout - now
        if late > 0:
            self._arm(late)
            return
        if now - self._watch_due > self.timeout / 2 and self._granted is not oldest[0]:
            # The reactor was busy past the time-out (timed calls run before
            # I/O): the command may have gone out late, its answer may wait
            # unread. One more period for it, from now.
            self._granted = oldest[0]
            self._arm(self.timeout)
            return
        reason = f"no answer within {self.timeout:g} s"
        self._went_down(reason)
        connection = self._connection
        if connection is not None:
            connection.abort()  # fails what was sent
        else:
            self._fail_all(RedisUnavailable(reason))

    # -- connecting ------------------------------------------------------

    def _connect(self) -> None:
        self._retry = None
        assert self._endpoint is not None
        factory = Factory.forProtocol(lambda: _Connection(self))
        factory.noisy = False
        self._connecting = d = self._endpoint.connect(factory)
        d.addCallbacks(self._connected, self._connect_failed)

    def _connected(self, connection: _Connection) -> None:
        """
        Connected: the handshake (AUTH, SELECT, PING) goes out; the
        connection is used once PING is answered, within C{timeout}.
        """
        self._connecting = None
        if not self.running:
            connection.transport.loseConnection()  # type: ignore[union-attr]
            return
        handshake = [*self.address.handshake(), _pack_command(("PING",))]
        self._handshake = len(handshake)
        self._opening = connection
        connection.transport.write(b"".join(handshake))  # type: ignore[union-attr]
        self._opening_timer = self.reactor.callLater(self.timeout, self._handshake_late, connection)

    def _handshake_late(self, connection: _Connection) -> None:
        self._opening_timer = None
        if connection is self._opening:
            self._went_down(f"no answer to the connection's setup within {self.timeout:g} s")
            connection.abort()

    def _handshaken(self, answer: Any) -> None:
        connection = self._opening
        assert connection is not None
        if isinstance(answer, hiredis.ReplyError):
            self._went_down(f"the connection's setup was refused: {answer}")
            connection.abort()
            return
        self._handshake -= 1
        if self._handshake:
            return
        if self._opening_timer is not None and self._opening_timer.active():
            self._opening_timer.cancel()
        self._opening = self._opening_timer = None
        queued, self._queued = self._queued, []
        if queued:
            connection.transport.write(b"".join(payload for payload, _ in queued))  # type: ignore[union-attr]
            self._sent.extend(waiting for _, waiting in queued)
        self._connection = connection
        self._delay = self.retry_initial
        was_down, self._down, self.up = self._down, False, True
        if was_down:
            log.info("Redis at {address} is reachable again (down for {seconds:.1f} s)",
                     address=self.address.describe(),
                     seconds=self.reactor.seconds() - self._down_since)
        else:
            log.info("Redis at {address} connected", address=self.address.describe())
        if self.on_state is not None:
            self.on_state(True, "connected")

    def _connect_failed(self, reason: Failure) -> None:
        self._connecting = None
        if not self.running:
            return
        self._went_down(reason.getErrorMessage())
        self._schedule()  # first: failing a command runs its callers' code (which may stop us)
        self._fail_all(RedisUnavailable(reason.getErrorMessage()))

    def _lost(self, connection: _Connection, reason: Failure) -> None:
        if connection is self._opening:
            # lost (or dropped) before the setup was answered
            self._opening, self._handshake = None, 0
            if self._opening_timer is not None and self._opening_timer.active():
                self._opening_timer.cancel()
            self._opening_timer = None
            if self.running:
                self._went_down(f"connection lost during its setup: {reason.getErrorMessage()}")
                self._schedule()
                self._fail_all(RedisUnavailable(reason.getErrorMessage()))
            return
        if connection is not self._connection:
            return
        self._connection = None
        self.up = False
        self._fail_all(RedisUnavailable(f"connection lost: {reason.getErrorMessage()}"))
        if not self.running:
            return
        if self._down:
            # dropped for want of answers: Redis is there but slow, so try
            # again after the backoff, not at once
            self._schedule()
        else:
            # at once: a dropped connection or a restarted Redis is back at
            # once; a failure to reconnect starts the outage
            self._connect()

    def _schedule(self) -> None:
        self._retry = self.reactor.callLater(self._delay, self._connect)
        self._delay = min(self._delay * 2, self.retry_max)

    def _went_down(self, reason: str) -> None:
        """
        The first failure of an outage: logged, counted, told.
        """
        self.up = False
        if self._down:
            return
        self._down = True
        self._down_since = self.reactor.seconds()
        self.outages += 1
        log.warn("Redis at {address} is unreachable ({reason})",
                 address=self.address.describe(), reason=reason)
        if self.on_state is not None:
            self.on_state(False, reason)

    def _fail_all(self, error: Exception) -> None:
        sent, self._sent = self._sent, collections.deque()
        queued, self._queued = self._queued, []
        for waiting, _ in sent:
            waiting.errback(error)
        for _, (waiting, _) in queued:
            waiting.errback(error)


def pack(args: Sequence[Arg]) -> bytes:
    """
    One command as RESP bytes (for callers that pack once and send often).
    """
    return _pack_command(tuple(args))
