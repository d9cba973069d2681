"""
A lean HTTP/1.1 keep-alive client for the gateway's hot path to backends.

Why not L{twisted.web.client.Agent}: Agent plus L{HTTPConnectionPool} costs
about 60 us of CPU per request. It re-parses the URL with C{urlparse},
builds a L{Request} object, goes through a stateful dispatcher per event,
parses the response line by line in Python (C{LineReceiver}), sanitises every
received header through L{Headers.addRawHeader}, chains several Deferreds
(pool, connection, request, response) and arms one C{callLater} per pooled
connection. This module does the same job for our narrow case (one request in
flight per connection, bodies already in memory) at a fraction of the cost:

  - The URL is split with plain bytes operations; everything derived from
    C{scheme://authority} (host, port, pool key, Host line, protocol factory)
    is cached per prefix.
  - The request head and body go out in one write, sent at once when the
    socket has nothing queued (L{mcpgated.proxy.fastwrite}).
  - Responses are parsed by C{httptools} (llhttp, in C), one parser per
    connection, reused for every message on it (llhttp resets itself after
    each message). Header callbacks fill C{Headers._rawHeaders} directly
    (under the keys L{Headers} itself uses), skipping the per-header
    validation L{Headers.addRawHeader} would repeat after llhttp.
  - The request L{Deferred} is the only Deferred per request; it is fired
    from the parser's C{on_headers_complete} callback.
  - The pool is a LIFO list of idle connections per C{(scheme, host, port)};
    idle connections are closed by one shared timer, armed for the earliest
    expiry, instead of one timer per returned connection.

Semantics follow Twisted's C{_newclient} where the gateway relies on them:
the response looks like L{IResponse} (C{code}, C{phrase}, C{version},
C{headers}, C{length}, C{deliverBody}); the body protocol ends with
L{ResponseDone}, L{PotentialDataLoss} (close-delimited body) or
L{ResponseFailed}; a connection lost before the response head fails the
request with L{ResponseNeverReceived}. The body transport is a push producer
whose pause and resume act on the backend socket, and whose C{stopProducing}
aborts the backend connection.

A connection goes back to the pool once the whole response has been read off
the wire and the response is detached from it: body bytes the consumer has
not taken yet (it is paused, or has not called C{deliverBody}) stay buffered
in the response, not in the socket.

Keep-alive follows Go's transport and nginx (see the HTTP edge reference,
section 8):

  - A connection is pooled only after the parser has returned from the read
    that completed the response (never from inside its callback, where the
    response's consumer may already send the next request), without
    C{Connection: close}, once the request is fully handed to the kernel,
    and within its caps (requests and lifetime per connection).
  - Any byte after the end of a response (in the same read or while idle)
    closes the connection: it is never parsed as the next request's response.
  - Idle timeout: the client's (per API, at most 4 s by default), shortened
    by the response's C{Keep-Alive: timeout=N} hint to N - 2 s as undici
    does; a hint of 2 s or less means no pooling.
  - A pooled connection is checked before it is written to: one C{poll(2)}
    on its socket, so an end-of-file, error or unsolicited byte the reactor
    has not processed yet makes the request go to another connection
    instead of failing. A reused connection that closes after the request
    was written, before any response byte, is retried on a new connection
    only for GET, HEAD, OPTIONS and TRACE (Go's C{isReplayable}); an MCP
    POST then fails with L{ResponseNeverReceived}.

httptools cannot tell llhttp that a response to HEAD has no body, so after a
HEAD response that announces a length the connection is closed rather than
reused (HEAD is rare toward MCP backends).
"""

from __future__ import annotations

import re
import select
from typing import Any, Callable, Dict, List, Optional, Tuple

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser
from twisted.internet import tcp
from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.internet.error import ConnectionAborted
from twisted.internet.interfaces import (
    IDelayedCall,
    ILoggingContext,
    IProtocol,
    IPushProducer,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone, ResponseFailed, ResponseNeverReceived
from twisted.web.error import SchemeNotSupported
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH
from zope.interface import implementer

from mcpgated._twisted_compat import (
    headers_from_raw,
    raw_headers,
    tcp_buffered,
    tls_buffered,
)
from mcpgated.proxy.interfaces import IBackendClient
from mcpgated.proxy.fastwrite import direct_writer

__all__ = ["BackendClient", "BackendResponse"]

log = Logger()

EndpointFor = Callable[[bytes, bytes, int], IStreamClientEndpoint]

# Methods sent again when a reused connection closes after the request was
# written and before any response byte: Go's isReplayable set. An MCP POST
# is not idempotent and is never sent twice.
_RETRYABLE = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE"))
# undici: Keep-Alive: timeout=N allows N - 2 s of idleness (a margin for the
# server's timer and the network), at most 600 s.
_HINT_MARGIN = 2.0
_HINT_MAX = 600.0
_KEEP_ALIVE_TIMEOUT = re.compile(rb"(?:^|[\s,;])timeout\s*=\s*\"?(\d{1,9})", re.IGNORECASE).search
# Readiness of an idle socket: data, end of file, hang-up or error.
_POLL = getattr(select, "poll", None)
_POLL_EVENTS = (getattr(select, "POLLIN", 1) | getattr(select, "POLLPRI", 2)
                | getattr(select, "POLLRDHUP", 0))


def _header_key(name: bytes) -> bytes:
    """
    The key L{Headers} stores C{name} under in C{_rawHeaders}: Header-Case
    in Twisted 26 (lowercase in older releases). Asked of L{Headers} itself
    so the response headers we fill directly agree with its public API.
    """
    headers = Headers()
    headers.addRawHeader(name, b"")
    return next(iter(raw_headers(headers)))


_CL = _header_key(b"content-length")
_TE = _header_key(b"transfer-encoding")
_HOST = _header_key(b"host")
_KEEP_ALIVE = _header_key(b"keep-alive")
# Framing is ours: these never come from the caller's headers (in either
# spelling, for headers filled through _rawHeaders by hand).
_SKIP = frozenset((_CL, _TE, b"content-length", b"transfer-encoding"))
# Received header name -> key in _rawHeaders; bounded like Twisted's cache.
_KEYS: Dict[bytes, bytes] = {}
_MAX_KEYS = 10000
_DEFAULT_PORTS = {b"http": 80, b"https": 443}
_VERSIONS = {"1.1": (b"HTTP", 1, 1), "1.0": (b"HTTP", 1, 0)}
# As twisted.web._newclient: a request target is visible ASCII, no spaces.
_VALID_TARGET = re.compile(rb"[\x21-\x7e]+").fullmatch
_VALID_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch
_KNOWN_METHODS = frozenset((b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH"))
_MAX_TARGETS = 4096
_MAX_URLS = 4096


def _valid_method(method: bytes) -> bool:
    return _VALID_METHOD(method) is not None


def keep_alive_hint(values: List[bytes]) -> Optional[float]:
    """
    The idle time a response's C{Keep-Alive} header allows, as undici
    computes it: C{timeout=N} gives N - 2 s (0 or less: do not reuse), at
    most 600 s; L{None} without a C{timeout} parameter.
    """
    for value in values:
        match = _KEEP_ALIVE_TIMEOUT(value)
        if match is not None:
            return min(int(match.group(1)) - _HINT_MARGIN, _HINT_MAX)
    return None


class _UnexpectedResponse(Exception):
    """
    The backend sent a response while no request was waiting for one.
    """


class _Target:
    """
    Everything derived from one C{scheme://authority} prefix.
    """

    __slots__ = ("scheme", "host", "port", "key", "host_line", "factory")

    def __init__(self, client: "BackendClient", scheme: bytes, host: bytes, port: int,
                 authority: bytes) -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self.key: Tuple[bytes, bytes, int] = (scheme, host, port)
        self.host_line = b"host: " + authority
        self.factory = _ConnectionFactory(client, self.key)


def _parse_prefix(client: "BackendClient", prefix: bytes, scheme_end: int) -> _Target:
    """
    Parse C{scheme://authority} (no path) into a L{_Target}.
    """
    scheme = prefix[:scheme_end].lower()
    default = _DEFAULT_PORTS.get(scheme)
    if default is None:
        raise SchemeNotSupported(f"Unsupported scheme: {scheme!r}")
    authority = prefix[scheme_end + 3:].rpartition(b"@")[2]
    if authority.startswith(b"["):
        close = authority.find(b"]")
        if close < 0:
            raise ValueError(f"Invalid IPv6 authority: {authority!r}")
        host = authority[1:close]
        rest = authority[close + 1:]
        if rest and not rest.startswith(b":"):
            raise ValueError(f"Invalid authority: {authority!r}")
        port_text = rest[1:]
    else:
        host, _, port_text = authority.partition(b":")
    if port_text and not port_text.isdigit():
        raise ValueError(f"Invalid port: {authority!r}")
    port = int(port_text) if port_text else default
    if not host or not 0 < port < 65536 or not _VALID_TARGET(authority):
        raise ValueError(f"Invalid authority: {authority!r}")
    return _Target(client, scheme, host, port, authority)


@implementer(IBackendClient)
class BackendClient:
    """
    HTTP/1.1 client with a keep-alive pool, for requests whose body is in
    memory and whose response is streamed.

    @param endpoint_for: C{(scheme, host, port) -> IStreamClientEndpoint},
        called once per new connection; the endpoint does TLS, the connect
        timeout and TCP_NODELAY.
    @param idle_timeout: seconds an idle pooled connection is kept (a
        response's C{Keep-Alive: timeout=N} shortens it to N - 2 s); 0 turns
        pooling off.
    @param max_idle_per_host: idle connections kept per C{(scheme, host,
        port)}; the oldest is closed beyond that.
    @param max_requests: requests sent on one connection before it is
        closed (nginx's C{keepalive_requests}).
    @param max_lifetime: seconds after which a connection is closed instead
        of pooled (nginx's C{keepalive_time}).
    """

    def __init__(self, reactor: IReactorTime, endpoint_for: EndpointFor,
                 idle_timeout: float = 4.0, max_idle_per_host: int = 256,
                 max_requests: int = 1000, max_lifetime: float = 3600.0) -> None:
        self._reactor = reactor
        self._endpoint_for = endpoint_for
        self._idle_timeout = idle_timeout
        self._max_idle = max_idle_per_host
        self._max_requests = max_requests
        self._max_lifetime = max_lifetime
        self._targets: Dict[bytes, _Target] = {}
        self._urls: Dict[bytes, Tuple[_Target, bytes]] = {}
        self._idle: Dict[Tuple[bytes, bytes, int], List[_Connection]] = {}
        self._sweeper: Optional[IDelayedCall] = None
        self._sweep_at = 0.0

    @property
    def idle_timeout(self) -> float:
        return self._idle_timeout

    # -- requests ----------------------------------------------------------

    def request(self, method: bytes, url: bytes, headers: Optional[Headers],
                body: Optional[bytes]) -> "Deferred[BackendResponse]":
        """
        Send one request; the Deferred fires with the L{BackendResponse} once
        its head has arrived. Cancelling it aborts the connection.

        @param url: absolute C{http} or C{https} URL.
        @param headers: sent as given (C{Content-Length} and
            C{Transfer-Encoding} excepted); C{Host} is added from the URL
            when missing.
        @param body: sent with a C{Content-Length}, also when empty; L{None}
            sends neither.
        """
        cached = self._urls.get(url)
        if cached is None:
            try:
                cached = self._split(url)
            except Exception:  # noqa: BLE001 -- not swallowed: the caller's Deferred fails with it
                return fail()
        target, path = cached
        if method not in _KNOWN_METHODS and not _valid_method(method):
            return fail(ValueError(f"Invalid method: {method!r}"))

        lines = [method + b" " + path + b" HTTP/1.1"]
        append = lines.append
        raw = raw_headers(headers) if headers is not None else {}
        if _HOST not in raw and b"host" not in raw:
            append(target.host_line)
        for name, values in raw.items():
            if name not in _SKIP:
                for value in values:
                    append(b"%b: %b" % (name, value))
        if body is None:
            append(b"\r\n")
        else:
            append(b"content-length: %d\r\n" % len(body))
            append(body)
        req = _Request(target, method, b"\r\n".join(lines))
        d: Deferred[BackendResponse] = Deferred(req.cancel)
        req.deferred = d

        conn = self._take(target.key)
        if conn is not None:
            conn.send(req)
        else:
            self._connect(req)
        return d

    def _split(self, url: bytes) -> Tuple[_Target, bytes]:
        """
        C{url} as its L{_Target} and request target, cached per URL (and the
        target per C{scheme://authority}).
        """
        start = url.find(b"://")
        if start <= 0:
            raise ValueError(f"Not an absolute URL: {url!r}")
        end = url.find(b"/", start + 3)
        if end < 0:
            end = len(url)
        query = url.find(b"?", start + 3, end)
        if query >= 0:
            end = query
        prefix = url[:end]
        target = self._targets.get(prefix)
        if target is None:
            target = _parse_prefix(self, prefix, start)
            if len(self._targets) >= _MAX_TARGETS:
                self._targets.clear()
            self._targets[prefix] = target
        path = url[end:].partition(b"#")[0]
        if not path:
            path = b"/"
        elif path[0] == 63:  # b"?"
            path = b"/" + path
        if not _VALID_TARGET(path):
            raise ValueError(f"Invalid request target: {path!r}")
        cached = (target, path)
        if len(self._urls) >= _MAX_URLS:
            self._urls.clear()
        self._urls[url] = cached
        return cached

    def _connect(self, req: "_Request") -> None:
        target = req.target
        try:
            connecting = self._endpoint_for(target.scheme, target.host, target.port).connect(
                target.factory)
        except Exception:  # noqa: BLE001 -- not swallowed: the request fails with it
            req.fail(Failure())
            return
        req.connecting = connecting
        connecting.addCallbacks(_connected, _connect_failed, callbackArgs=(req,), errbackArgs=(req,))

    # -- the pool ----------------------------------------------------------

    def _take(self, key: Tuple[bytes, bytes, int]) -> "Optional[_Connection]":
        """
        The most recently used idle connection that is still good: not past
        its idle deadline, and with nothing readable on its socket (an end
        of file, an error or unsolicited bytes the reactor has not processed
        yet). Checked here, before anything is written to it.
        """
        idle = self._idle.get(key)
        if not idle:
            return None
        now = self._reactor.seconds()
        while idle:
            conn = idle.pop()
            if conn.lost or conn.dead:
                continue
            # Readable while idle (end of file, error, unsolicited bytes): stale.
            poll = conn.poll
            if conn.expires <= now or (poll is not None and poll(0)):
                conn.close()
                continue
            return conn
        return None

    def _release(self, conn: "_Connection") -> None:
        """
        A connection whose response is complete and that may be kept alive:
        pool it, or close it when its idle timeout is 0, it reached its caps
        or part of its request is still queued in the transport.
        """
        now = self._reactor.seconds()
        timeout = self._idle_timeout
        hint = conn.hint
        if hint is not None and hint < timeout:
            timeout = hint
        if timeout <= 0 or conn.sent >= self._max_requests or now - conn.born >= self._max_lifetime:
            conn.close()
            return
        inner = conn.tcp  # conn.unsent(), inline for plain TCP
        if ((inner is not None and tcp_buffered(inner))
                or (conn.tls and conn.unsent())):
            # What is left of the request would only be waited for.
            conn.abort()
            return
        key = conn.key
        idle = self._idle.get(key)
        if idle is None:
            idle = self._idle[key] = []
        if len(idle) >= self._max_idle:
            if not idle:
                conn.close()
                return
            idle.pop(0).close()
        expires = conn.expires = now + timeout
        idle.append(conn)
        sweeper = self._sweeper
        if sweeper is None:
            self._sweep_at = expires
            self._sweeper = self._reactor.callLater(timeout, self._sweep)
        elif expires < self._sweep_at:
            # A shorter Keep-Alive hint than the connections already idle.
            self._sweep_at = expires
            sweeper.reset(timeout)

    def _forget(self, conn: "_Connection") -> None:
        """
        An idle connection was lost.
        """
        idle = self._idle.get(conn.key)
        if idle:
            try:
                idle.remove(conn)
            except ValueError:
                return
            if not idle:
                del self._idle[conn.key]
                if not self._idle and self._sweeper is not None:
                    self._sweeper.cancel()
                    self._sweeper = None

    def _sweep(self) -> None:
        """
        Close the connections past their idle deadline, and arm the timer
        again for the earliest remaining one.
        """
        self._sweeper = None
        now = self._reactor.seconds()
        # A timer may fire a hair early; do not re-arm for microseconds.
        deadline = now + 0.01
        soonest: Optional[float] = None
        for key, idle in list(self._idle.items()):
            kept = [conn for conn in idle if conn.expires > deadline]
            if len(kept) != len(idle):
                for conn in idle:
                    if conn.expires <= deadline:
                        conn.close()
                idle[:] = kept
            if not idle:
                del self._idle[key]
                continue
            first = min(conn.expires for conn in idle)
            if soonest is None or first < soonest:
                soonest = first
        if soonest is not None:
            self._sweep_at = soonest
            self._sweeper = self._reactor.callLater(max(0.0, soonest - now), self._sweep)

    def close_idle(self) -> "Deferred[None]":
        """
        Close the idle pooled connections (for C{stopService}); fires once
        they are closed. Connections in use are left alone.
        """
        if self._sweeper is not None:
            if self._sweeper.active():
                self._sweeper.cancel()
            self._sweeper = None
        waits: List[Deferred[None]] = []
        for idle in self._idle.values():
            for conn in idle:
                if not conn.lost:
                    lost: Deferred[None] = Deferred()
                    conn.on_lost = lost
                    waits.append(lost)
                    conn.close()
        self._idle.clear()
        return DeferredList(waits).addCallback(lambda _: None)


def _connected(conn: "_Connection", req: "_Request") -> None:
    req.connecting = None
    if req.deferred is None:
        conn.close()
        return
    conn.send(req)


def _connect_failed(reason: Failure, req: "_Request") -> None:
    req.connecting = None
    if req.deferred is not None:
        req.fail(reason)


class _Request:
    """
    One request until its response head arrives.
    """

    __slots__ = ("target", "method", "data", "deferred", "conn", "connecting", "retried")

    def __init__(self, target: _Target, method: bytes, data: bytes) -> None:
        self.target = target
        self.method = method
        self.data = data
        self.deferred: Optional[Deferred[BackendResponse]] = None
        self.conn: Optional[_Connection] = None
        self.connecting: Optional[Deferred[Any]] = None
        self.retried = False

    def cancel(self, d: Deferred[BackendResponse]) -> None:
        # The Deferred errbacks with CancelledError once this returns.
        self.deferred = None
        conn = self.conn
        if conn is not None:
            conn.abort()
        elif self.connecting is not None:
            connecting, self.connecting = self.connecting, None
            connecting.cancel()

    def fail(self, reason: Failure) -> None:
        d = self.deferred
        if d is not None:
            self.deferred = None
            d.errback(reason)


class _ConnectionFactory(Factory):
    noisy = False

    def __init__(self, client: BackendClient, key: Tuple[bytes, bytes, int]) -> None:
        self.client = client
        self.key = key

    def buildProtocol(self, addr: Any) -> "_Connection":  # type: ignore[override]
        return _Connection(self.client, self.key)


@implementer(IProtocol, ILoggingContext)
class _Connection:
    """
    One backend connection: sends requests one at a time and parses the
    responses with one httptools parser.

    @ivar busy: a request was sent and its response is not complete on the
        wire yet.
    @ivar req: the request waiting for its response head.
    @ivar resp: the response whose body is still arriving.
    @ivar dead: we closed or aborted it; never reuse.
    @ivar ended: the parser completed a response during the current read;
        the connection is released once the parser has returned.
    @ivar keep: that response allows keep-alive (no C{Connection: close}).
    @ivar hint: the idle time its C{Keep-Alive} header allows, or L{None}.
    @ivar expires: when it leaves the pool, while idle.
    @ivar sent: requests sent on it.
    @ivar born: when it was connected.
    """

    __slots__ = (
        "client", "key", "transport", "parser", "req", "resp", "busy", "got", "reused",
        "dead", "lost", "sock_paused", "head_wait", "informational", "phrase", "raw",
        "on_lost", "write", "ended", "keep", "hint", "expires", "sent", "born", "poll", "tcp",
        "tls",
    )

    def __init__(self, client: BackendClient, key: Tuple[bytes, bytes, int]) -> None:
        self.client = client
        self.key = key
        self.transport: Any = None
        self.parser = HttpResponseParser(self)
        self.req: Optional[_Request] = None
        self.resp: Optional[BackendResponse] = None
        self.busy = False
        self.got = False
        self.reused = False
        self.dead = False
        self.lost = False
        self.sock_paused = False
        self.head_wait = False
        self.informational = False
        self.phrase = b""
        self.raw: Dict[bytes, List[bytes]] = {}
        self.on_lost: Optional[Deferred[None]] = None
        self.ended = False
        self.keep = False
        self.hint: Optional[float] = None
        self.expires = 0.0
        self.sent = 0
        self.born = 0.0
        self.poll: Optional[Callable[[int], List[Any]]] = None
        self.tcp: Any = None
        self.tls = False

    # -- IProtocol ---------------------------------------------------------

    def logPrefix(self) -> str:
        return "BackendConnection"

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport
        self.write = direct_writer(transport)
        self.born = self.client._reactor.seconds()
        # The TCP transport under TLS, if any: its socket is polled before
        # reuse and its buffer tells whether the request is fully sent.
        inner = transport
        while inner is not None and not isinstance(inner, tcp.Connection):
            inner = getattr(inner, "transport", None)
        self.tls = inner is not transport
        if inner is not None:
            self.tcp = inner
            if _POLL is not None:
                poller = _POLL()
                poller.register(inner.fileno(), _POLL_EVENTS)
                self.poll = poller.poll

    def connectionMade(self) -> None:
        pass

    def send(self, req: _Request) -> None:
        req.conn = self
        self.req = req
        self.busy = True
        self.got = False
        self.sent += 1
        self.write(req.data)

    def unsent(self) -> bool:
        """
        Whether part of the last request is still queued in the transport
        (the backend answered before reading all of it).
        """
        inner = self.tcp
        if inner is not None and tcp_buffered(inner):
            return True
        return tls_buffered(self.transport)

    def dataReceived(self, data: bytes) -> None:
        if not self.busy:
            # Nothing was asked: a broken backend; it cannot be reused.
            self.abort()
            return
        self.got = True
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade:
            # 101: the response was delivered without body; the connection
            # now speaks another protocol, which we do not.
            self.close()
            return
        except HttpParserError as e:
            if self.ended:
                # Bytes after the end of the response (on_message_begin
                # stopped the parser, or they are not HTTP): the response is
                # whole, the connection is not reusable.
                self._end(False)
                return
            self._parse_failed(e)
            return
        if self.ended:
            self._end(True)
            return
        if self.head_wait:
            # A HEAD response whose framing llhttp still waits for (it cannot
            # be told the response has no body): not reusable.
            self.head_wait = False
            self.busy = False
            self.close()
            return
        resp = self.resp
        if resp is not None and resp._protocol is None and not self.sock_paused and not self.dead:
            # Nobody reads the body yet: stop reading until deliverBody.
            self.sock_paused = True
            self.transport.pauseProducing()

    def connectionLost(self, reason: Optional[Failure] = None) -> None:
        self.lost = True
        on_lost = self.on_lost
        if on_lost is not None:
            self.on_lost = None
            on_lost.callback(None)
        if not self.busy:
            self.client._forget(self)
            return
        self.busy = False
        req = self.req
        if req is not None:
            self.req = None
            if req.deferred is None:
                return  # cancelled
            if (not self.got and self.reused and not req.retried
                    and req.method in _RETRYABLE):
                # The backend closed the kept-alive connection as we reused it.
                req.retried = True
                req.conn = None
                self.client._connect(req)
                return
            if self.got:
                req.fail(Failure(ResponseFailed([reason])))
            else:
                req.fail(Failure(ResponseNeverReceived([reason])))
            return
        resp = self.resp
        if resp is not None:
            self.resp = None
            resp._conn = None
            if resp._close_delimited and not self.dead:
                resp._finish(Failure(PotentialDataLoss()))
            else:
                resp._finish(Failure(ResponseFailed([reason])))

    # -- closing -----------------------------------------------------------

    def abort(self) -> None:
        if not self.dead and not self.lost:
            self.dead = True
            self.transport.abortConnection()
        self.dead = True

    def close(self) -> None:
        if not self.dead and not self.lost:
            self.dead = True
            self.transport.loseConnection()
        self.dead = True

    def _parse_failed(self, error: Exception) -> None:
        cause = error.__context__ if error.__context__ is not None else error
        self.abort()
        self.busy = False
        reason = Failure(ResponseFailed([Failure(cause)]))
        req = self.req
        if req is not None:
            self.req = None
            req.fail(reason)
        resp = self.resp
        if resp is not None:
            self.resp = None
            resp._conn = None
            resp._finish(reason)

    # -- httptools callbacks -----------------------------------------------

    def on_message_begin(self) -> None:
        if self.ended:
            # The backend sent more than the response asked for: stop here,
            # so none of it can pass for the next request's response.
            raise _UnexpectedResponse()

    def on_status(self, status: bytes) -> None:
        self.phrase += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if value and value[-1] in (32, 9):
            value = value.rstrip(b" \t")
        key = _KEYS.get(name)
        if key is None:
            key = _header_key(name)
            if len(_KEYS) < _MAX_KEYS:
                _KEYS[name] = key
        values = self.raw.get(key)
        if values is None:
            self.raw[key] = [value]
        else:
            values.append(value)

    def on_headers_complete(self) -> None:
        req = self.req
        if req is None:
            raise _UnexpectedResponse()
        parser = self.parser
        code = parser.get_status_code()
        raw = self.raw
        phrase = self.phrase
        self.raw = {}
        self.phrase = b""
        if code < 200 and code != 101:
            # 100 Continue, 102, 103: llhttp ends the message; wait for the
            # final response.
            self.informational = True
            return
        hint = raw.get(_KEEP_ALIVE)
        self.hint = None if hint is None else keep_alive_hint(hint)
        headers = headers_from_raw(raw)
        version = parser.get_http_version()
        resp = BackendResponse(code, phrase, _VERSIONS.get(version) or _version(version), headers)
        self.req = None
        if req.method == b"HEAD" or code == 101:
            resp.length = 0
            resp._end = Failure(ResponseDone())
            if code == 101:
                self.close()
            else:
                self.head_wait = True
        else:
            self.resp = resp
            resp._conn = self
            if code == 204 or code == 304:
                resp.length = 0
            else:
                te = raw.get(_TE)
                if te is not None:
                    resp.length = UNKNOWN_LENGTH
                    last = te[-1].rpartition(b",")[2].strip().lower()
                    resp._close_delimited = last != b"chunked"
                else:
                    cl = raw.get(_CL)
                    if cl is not None:
                        resp.length = int(cl[0])
                    else:
                        resp.length = UNKNOWN_LENGTH
                        resp._close_delimited = True
        d = req.deferred
        if d is not None:
            req.deferred = None
            d.callback(resp)

    def on_body(self, body: bytes) -> None:
        resp = self.resp
        if resp is not None:
            resp._data(body)

    def on_message_complete(self) -> None:
        if self.raw:
            # Trailer fields of a chunked body: dropped, as Twisted does.
            self.raw = {}
        if self.informational:
            self.informational = False
            return
        # Finished in dataReceived once the parser returns: the rest of
        # this read must be looked at before the connection can be reused.
        self.ended = True
        self.keep = self.parser.should_keep_alive()

    def _end(self, reusable: bool) -> None:
        """
        The response completed in the read just parsed: release the
        connection (or close it), then end the response's body, whose
        consumer may send the next request at once.
        """
        self.ended = False
        self.busy = False
        self.head_wait = False
        resp = self.resp
        if resp is not None:
            self.resp = None
            resp._conn = None
        if reusable and self.keep and not self.dead:
            if self.sock_paused:
                self.sock_paused = False
                self.transport.resumeProducing()
            self.reused = True
            self.client._release(self)
        elif reusable:
            self.close()
        else:
            self.abort()
        if resp is not None:
            resp._finish(Failure(ResponseDone()))


def _version(text: str) -> Tuple[bytes, int, int]:
    major, _, minor = text.partition(".")
    return (b"HTTP", int(major), int(minor or 0))


@implementer(IPushProducer)
class _BodyTransport:
    """
    What the body protocol gets as its transport: pausing pauses reading
    the backend socket; stopping aborts the backend connection.
    """

    __slots__ = ("_response",)

    disconnecting = False

    def __init__(self, response: "BackendResponse") -> None:
        self._response = response

    def pauseProducing(self) -> None:
        self._response._pause()

    def resumeProducing(self) -> None:
        self._response._resume()

    def stopProducing(self) -> None:
        self._response._stop()

    loseConnection = stopProducing

    def abortConnection(self) -> None:
        self._response._stop()


class BackendResponse:
    """
    A backend response, as much of L{twisted.web.iweb.IResponse} as the
    gateway uses.

    @ivar length: the C{Content-Length}, L{UNKNOWN_LENGTH} for chunked and
        close-delimited bodies, 0 for HEAD, 204 and 304.
    """

    __slots__ = (
        "code", "phrase", "version", "headers", "length",
        "_conn", "_protocol", "_pending", "_end", "_paused", "_stopped", "_done",
        "_draining", "_close_delimited",
    )

    request = None
    previousResponse = None

    def __init__(self, code: int, phrase: bytes, version: Tuple[bytes, int, int],
                 headers: Headers) -> None:
        self.code = code
        self.phrase = phrase
        self.version = version
        self.headers = headers
        self.length: Any = UNKNOWN_LENGTH
        self._conn: Optional[_Connection] = None
        self._protocol: Any = None
        self._pending: Optional[List[bytes]] = None
        self._end: Optional[Failure] = None
        self._paused = False
        self._stopped = False
        self._done = False
        self._draining = False
        self._close_delimited = False

    def __repr__(self) -> str:
        return f"<BackendResponse {self.code} {self.phrase!r} length={self.length!r}>"

    def deliverBody(self, protocol: Any) -> None:
        """
        Connect C{protocol} to the body: C{makeConnection}, then
        C{dataReceived} per piece, then C{connectionLost} once.
        """
        if self._protocol is not None:
            raise RuntimeError("deliverBody may only be called once")
        self._protocol = protocol
        protocol.makeConnection(_BodyTransport(self))
        self._drain()

    # -- from the connection -----------------------------------------------

    def _data(self, data: bytes) -> None:
        if self._stopped:
            return
        protocol = self._protocol
        if protocol is not None and not self._paused and not self._pending:
            protocol.dataReceived(data)
        elif self._pending is None:
            self._pending = [data]
        else:
            self._pending.append(data)

    def _finish(self, reason: Failure) -> None:
        if self._done:
            return
        if self._stopped:
            self._deliver_end(Failure(ResponseFailed([Failure(ConnectionAborted())])))
            return
        self._end = reason
        if self._protocol is not None and not self._paused and not self._pending:
            self._deliver_end(reason)

    # -- delivery ----------------------------------------------------------

    def _deliver_end(self, reason: Failure) -> None:
        self._done = True
        self._pending = None
        protocol = self._protocol
        try:
            protocol.connectionLost(reason)
        except Exception:  # noqa: BLE001 -- the body protocol's bug is logged; the exchange still ends
            log.failure("backend response body protocol failed in connectionLost")

    def _drain(self) -> None:
        if self._draining or self._done:
            return
        self._draining = True
        try:
            pending = self._pending
            while pending and not self._paused and not self._stopped:
                self._protocol.dataReceived(pending.pop(0))
        finally:
            self._draining = False
        if self._paused or self._stopped or self._done or self._pending:
            return
        if self._end is not None:
            self._deliver_end(self._end)
            return
        conn = self._conn
        if conn is not None and conn.sock_paused:
            conn.sock_paused = False
            conn.transport.resumeProducing()

    def _pause(self) -> None:
        if self._done or self._stopped:
            return
        self._paused = True
        conn = self._conn
        if conn is not None and not conn.sock_paused:
            conn.sock_paused = True
            conn.transport.pauseProducing()

    def _resume(self) -> None:
        if not self._paused:
            return
        self._paused = False
        self._drain()

    def _stop(self) -> None:
        if self._done or self._stopped:
            return
        self._stopped = True
        pending, self._pending = self._pending, None
        conn = self._conn
        if conn is not None:
            # connectionLost comes back through _finish, as with Twisted.
            conn.abort()
            return
        # Already off the wire: nothing left to abort.
        end = self._end
        if end is None or pending:
            end = Failure(ResponseFailed([Failure(ConnectionAborted())]))
        self._deliver_end(end)
