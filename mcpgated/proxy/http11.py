"""
The gateway listener's HTTP/1.1 server: llhttp (through C{httptools}) for
parsing, a small request object for L{GatewayResource}, and nothing else.

Why not C{twisted.web.server}: on the proxy's hot path twisted.web's
line-by-line parsing, its general-purpose L{Request} (form parsing, session,
resource traversal, per-request producer bookkeeping) and header
canonicalisation cost more CPU than everything the gateway does with a
request. This channel does only what a reverse proxy needs:

 - one request answered at a time per connection; pipelined requests wait,
   complete, in a queue, and reading stops until the answer is done;
 - bodies capped while they arrive (413 before buffering more), heads capped
   (431), malformed requests answered 400, all with a JSON-RPC error body and
   the connection closed;
 - the response framed by the handler's C{Content-Length}, else chunked
   (close-delimited for HTTP/1.0 clients);
 - the backend body as the client connection's producer, through the
   channel, so a client that stops reading pauses the backend and a client
   that leaves ends the exchange (L{GatewayRequest.notifyFinish} errbacks);
 - the client timeouts of L{mcpgated.proxy.edge} (head deadline, body read
   pauses, keep-alive idle) on one timer per connection;
 - exactly one valid C{Host} (HTTP/1.1); trailers counted against the head
   cap and dropped; an C{Upgrade} ignored, the body kept.

The admin listener keeps twisted.web (Klein): it is not on the hot path.
"""

from __future__ import annotations

from collections import deque
from email.utils import formatdate
from io import BytesIO
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple
from urllib.parse import parse_qs

import httptools
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress, IPushProducer, IReactorTime, ISSLTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES
from zope.interface import implementer

from mcpgated._twisted_compat import canonical_name, headers_from_raw, raw_headers
from mcpgated.jsonrpc import INVALID_REQUEST, error_body
from mcpgated.proxy.edge import (
    BODY,
    BUSY,
    HEAD,
    HEAD_TOO_LARGE,
    IDLE,
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    TRAILERS_TOO_LARGE,
    VALID_HOSTS,
    ClientDeadlines,
    ClientTimeouts,
    body_timeout_message,
    head_timeout_message,
    host_problem,
)
from mcpgated.proxy.fastwrite import direct_writer

log = Logger()


_NO_BODY_CODES = frozenset({204, 304})
_VERSIONS = frozenset({b"HTTP/1.1", b"HTTP/1.0"})
_names: Dict[bytes, bytes] = {}


def _canonical(name: bytes) -> bytes:
    """
    The header name as L{Headers} keys it (C{Content-Type}), cached.
    """
    found = _names.get(name)
    if found is None:
        found = canonical_name(name)
        if len(_names) < 4096:
            _names[name] = found
    return found


class _Clock:
    """
    The C{Date} header, formatted once per second.
    """

    __slots__ = ("clock", "second", "value")

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.second = -1
        self.value = b""

    def date(self) -> bytes:
        now = int(self.clock.seconds())
        if now != self.second:
            self.second = now
            self.value = formatdate(now, usegmt=True).encode("ascii")
        return self.value


class GatewayRequest:
    """
    One request on a L{GatewayChannel}, with the part of twisted.web's
    C{IRequest} the gateway uses: C{method}, C{uri}, C{path}, C{args},
    C{requestHeaders}, C{responseHeaders}, C{content}, C{setResponseCode},
    C{write}, C{finish}, C{registerProducer}, C{notifyFinish}, and the
    connection's addresses.
    """

    __slots__ = ("channel", "method", "uri", "path", "clientproto", "requestHeaders",
                 "responseHeaders", "content", "code", "code_message", "keep_alive",
                 "started", "finished", "chunked", "no_body", "_body", "_body_size",
                 "_waiters", "_args", "expect_continue", "lost", "raw_in", "_gone")

    def __init__(self, channel: "GatewayChannel") -> None:
        self.channel = channel
        self.method = b"GET"
        self.uri = b""
        self.path = b""
        self.clientproto = b"HTTP/1.1"
        # the request headers' dictionary, filled by the channel as it parses
        self.raw_in: Dict[bytes, List[bytes]] = {}
        self.requestHeaders = headers_from_raw(self.raw_in)
        self.responseHeaders = headers_from_raw({})
        self.content: Optional[BytesIO] = None
        self.code = 200
        self.code_message: Optional[bytes] = None
        self.keep_alive = True
        self.started = False
        self.finished = False
        self.chunked = False
        self.no_body = False
        self._body: List[bytes] = []
        self._body_size = 0
        self._waiters: Optional[List[Deferred[None]]] = None
        self._gone: Optional[Tuple[Callable[[Failure, Any], None], Any]] = None
        self._args: Optional[Dict[bytes, List[bytes]]] = None
        self.expect_continue = False
        self.lost: Optional[Failure] = None  # why the client left before the answer ended

    # --- what the request says ------------------------------------------------------

    @property
    def args(self) -> Dict[bytes, List[bytes]]:
        if self._args is None:
            _, _, query = self.uri.partition(b"?")
            # as twisted.web reads it: escapes decoded to bytes, whatever they hold
            self._args = {
                name.encode("latin-1"): [v.encode("latin-1") for v in values]
                for name, values in parse_qs(query.decode("latin-1"), keep_blank_values=True,
                                             encoding="latin-1").items()
            } if query else {}
        return self._args

    def getHeader(self, name: bytes) -> Optional[bytes]:
        values = raw_headers(self.requestHeaders).get(_canonical(name))
        return values[-1] if values else None

    def getHost(self) -> Optional[IAddress]:
        return self.channel.host

    def getClientAddress(self) -> Optional[IAddress]:
        return self.channel.peer

    def isSecure(self) -> bool:
        return self.channel.secure

    # --- the answer ----------------------------------------------------------------

    def setResponseCode(self, code: int, message: Optional[bytes] = None) -> None:
        self.code = code
        self.code_message = message

    def setHeader(self, name: bytes, value: bytes) -> None:
        self.responseHeaders.setRawHeaders(name, [value])

    def _head(self) -> bytes:
        """
        The status line and headers, choosing the body's framing.
        """
        self.started = True
        code = self.code
        raw = raw_headers(self.responseHeaders)
        if self.method == b"HEAD" or code in _NO_BODY_CODES or 100 <= code < 200:
            self.no_body = True
            if code in _NO_BODY_CODES:
                raw.pop(b"Content-Length", None)
        elif b"Content-Length" not in raw:
            if self.clientproto == b"HTTP/1.1":
                self.chunked = True
                raw[b"Transfer-Encoding"] = [b"chunked"]
            else:
                self.keep_alive = False
        if not self.keep_alive:
            raw[b"Connection"] = [b"close"]
        elif self.clientproto == b"HTTP/1.0":
            raw[b"Connection"] = [b"keep-alive"]
        phrase = self.code_message or RESPONSES.get(code, b"Unknown")
        lines = [b"HTTP/1.1 %d %s\r\n" % (code, phrase)]
        if b"Date" not in raw:
            lines.append(b"Date: " + self.channel.dates.date() + b"\r\n")
        for name, values in raw.items():
            for value in values:
                lines.append(name + b": " + value + b"\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    def write(self, data: bytes) -> None:
        if self.finished or self.channel.transport is None:
            return
        if not self.started:
            head = self._head()
            if self.no_body or not data:
                self.channel.send(head)
            elif self.chunked:
                self.channel.send(b"%s%x\r\n%s\r\n" % (head, len(data), data))
            else:
                self.channel.send(head + data)
            return
        if self.no_body or not data:
            return
        if self.chunked:
            self.channel.send(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.channel.send(data)

    def finish(self) -> None:
        if self.finished:
            return
        if not self.started:
            raw = raw_headers(self.responseHeaders)
            if (b"Content-Length" not in raw and self.method != b"HEAD"
                    and self.code not in _NO_BODY_CODES and not 100 <= self.code < 200):
                raw[b"Content-Length"] = [b"0"]
            self.channel.send(self._head())
        elif self.chunked:
            self.channel.send(b"0\r\n\r\n")
        self.finished = True
        self._gone = None
        waiters, self._waiters = self._waiters, None
        if waiters:
            for waiter in waiters:
                waiter.callback(None)
        self.channel.answered(self)

    def notify_gone(self, gone: Callable[[Failure, Any], None], argument: Any) -> None:
        """
        C{notifyFinish().addErrback(gone, argument)} without a Deferred (the
        gateway asks it of every request): C{gone(reason, argument)} is
        called if the client's connection goes before the answer is
        finished.
        """
        if self.lost is not None:
            gone(self.lost, argument)
        elif not self.finished:
            self._gone = (gone, argument)

    def notifyFinish(self) -> Deferred[None]:
        """
        A L{Deferred} that fires when the answer is finished, or fails when
        the client's connection goes first.
        """
        waiter: Deferred[None] = Deferred()
        if self.lost is not None:
            waiter.errback(self.lost)
        elif self.finished:
            waiter.callback(None)
        else:
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
        return waiter

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        self.channel.register(producer)

    def unregisterProducer(self) -> None:
        self.channel.unregister()

    def _lost(self, reason: Failure) -> None:
        waiters, self._waiters = self._waiters, None
        gone, self._gone = self._gone, None
        self.finished = True
        self.lost = reason
        if waiters:
            for waiter in waiters:
                waiter.errback(reason)
        if gone is not None:
            gone[0](reason, gone[1])


@implementer(IPushProducer)
class GatewayChannel(Protocol):
    """
    One client connection to the gateway listener.
    """

    def __init__(self, factory: "GatewayHTTPFactory") -> None:
        self.factory = factory
        self.dates = factory.dates
        self.parser = httptools.HttpRequestParser(self)
        self.parsing: Optional[GatewayRequest] = None
        self.active: Optional[GatewayRequest] = None
        self.ready: Deque[GatewayRequest] = deque()
        self.head_bytes = 0
        self.head_size = 0
        self.in_head = True
        self.headers_seen = 0
        self.too_many_headers = False
        # What a parser callback refused with (raising stops the parser).
        self.refused_in_callback: Optional[Tuple[int, str]] = None
        self.trailer_size = 0  # trailer fields of the body being read, complete ones
        self.trailer_stream = 0  # bytes of reads that ended inside its trailer section
        self.after_chunk_header = False  # a chunk header read, no chunk data since
        self.upgrading: Optional[GatewayRequest] = None  # llhttp skipped its body
        self.resuming: Optional[GatewayRequest] = None  # its body, read by a fresh parser
        self.url: List[bytes] = []
        self.closing = False
        self.close_after = False
        # A refusal waiting for the requests read before it to be answered.
        self.refusal: Optional[Tuple[int, Optional[str]]] = None
        self.registered = False
        self.reading = True
        self.rendering = False
        self.producer: Optional[IPushProducer] = None
        self.peer: Optional[IAddress] = None
        self.host: Optional[IAddress] = None
        self.secure = False
        self.read_at = 0.0
        self.seconds: Callable[[], float] = factory.clock.seconds
        self.deadlines = ClientDeadlines(factory.clock, factory.timeouts, self._expired)
        self.send: Callable[[bytes], None] = _unconnected

    def connectionMade(self) -> None:
        transport = self.transport
        self.peer = transport.getPeer()  # type: ignore[union-attr]
        self.host = transport.getHost()  # type: ignore[union-attr]
        self.secure = ISSLTransport.providedBy(transport)
        self.send = direct_writer(transport)
        try:
            transport.setTcpNoDelay(True)  # type: ignore[union-attr]
        except (AttributeError, OSError):
            pass
        self.deadlines.start()

    # --- parsing ---------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        now = self.read_at = self.seconds()
        deadlines = self.deadlines
        if deadlines.phase == IDLE:
            # The first byte of a request: its head's deadline starts.
            deadlines.phase = HEAD
            deadlines.since = now
        elif deadlines.phase == BODY:
            deadlines.since = now
        if self.in_head:
            self.head_bytes += len(data)
        parsing = self.parsing
        body_before = parsing._body_size if parsing is not None and not self.in_head else -1
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self._upgraded(data, e.args[0])
            return
        except httptools.HttpParserError as e:
            if not self.closing:
                if self.refused_in_callback is not None:
                    self._refuse(*self.refused_in_callback)
                else:
                    reason = "too many header fields" if self.too_many_headers else str(e)
                    self._refuse(400, f"Malformed HTTP request: {reason}")
        if (self.after_chunk_header and body_before >= 0 and parsing is not None
                and self.parsing is parsing and not self.closing):
            # The read ended inside a trailer section (or right after a
            # chunk header) of a body it did not start: what it held beyond
            # chunk data counts, so a huge unfinished field is refused before
            # httptools gathers it (at most a read's chunk lines overcount).
            self.trailer_stream += len(data) - (parsing._body_size - body_before)
            if self.head_size + self.trailer_stream > MAX_HEAD_BYTES:
                self._refuse(431, TRAILERS_TOO_LARGE)
        if self.in_head and self.head_bytes > MAX_HEAD_BYTES and not self.closing:
            self._refuse(431, HEAD_TOO_LARGE)
        if self.active is None and self.ready:
            self._next()

    def _upgraded(self, data: bytes, offset: int) -> None:
        """
        llhttp stopped at the end of a head with C{Connection: upgrade} and
        C{Upgrade} (or a CONNECT), having ended the message without its
        body. The gateway does not switch protocols: the request stays an
        HTTP/1.1 request, its body is read by its own framing by a fresh
        parser, and the connection goes on (RFC 9110 section 7.8).
        """
        request, self.upgrading = self.upgrading, None
        if self.closing or request is None:
            return
        parser = self.parser = httptools.HttpRequestParser(self)
        if request.method == b"CONNECT":
            # Not a forward proxy: its body is read, but what follows would
            # be a tunnel's bytes, never requests. Answer, then close.
            self.close_after = True
        raw = raw_headers(request.requestHeaders)
        length = raw.get(b"Content-Length")
        if b"Transfer-Encoding" in raw or (length is not None and length[0].strip(b"0")):
            # A head for the fresh parser that frames the body as this one
            # does; its callbacks go on with the same request.
            self.resuming = request
            self.in_head = False
            framing = (b"Transfer-Encoding: chunked" if length is None
                       else b"Content-Length: " + length[0])
            parser.feed_data(b"POST / HTTP/1.1\r\n" + framing + b"\r\n\r\n")
        else:
            self._complete(request)
        rest = data[offset:]
        if rest and not self.closing:
            self.dataReceived(rest)
        elif self.active is None and self.ready:
            self._next()

    def on_message_begin(self) -> None:
        if self.resuming is not None:
            self.parsing = self.resuming
            return
        self.parsing = GatewayRequest(self)
        self.url = []
        self.headers_seen = 0
        self.head_size = 0
        self.trailer_size = self.trailer_stream = 0

    def on_url(self, url: bytes) -> None:
        self.url.append(url)
        self.head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self.parsing
        if request is None:
            return
        if not self.in_head:
            # A trailer field (after a chunked body): never a header. It
            # counts against the head cap and is dropped (RFC 9110 6.5.1).
            self.trailer_size += len(name) + len(value) + 4
            if self.head_size + self.trailer_size > MAX_HEAD_BYTES:
                self.refused_in_callback = (431, TRAILERS_TOO_LARGE)
                raise ValueError(TRAILERS_TOO_LARGE)
            return
        self.headers_seen += 1
        if self.headers_seen > MAX_HEADERS:
            self.too_many_headers = True
            raise ValueError("too many header fields")
        self.head_size += len(name) + len(value) + 4
        if value and value[-1] in b" \t":
            # llhttp keeps trailing whitespace; a field value has none (RFC 9110 section 5.5).
            value = value.rstrip(b" \t")
        raw = request.raw_in
        key = _names.get(name) or _canonical(name)
        values = raw.get(key)
        if values is None:
            raw[key] = [value]
        else:
            values.append(value)

    def on_headers_complete(self) -> None:
        request = self.parsing
        if request is None:
            return
        deadlines = self.deadlines
        if deadlines.phase != BUSY:
            deadlines.phase = BODY
            deadlines.since = self.read_at
        if request is self.resuming:
            # The fresh parser's stand-in head, after an upgrade: the body follows.
            self.resuming = None
            self.trailer_size = 0
            return
        parser = self.parser
        request.method = parser.get_method()
        request.clientproto = b"HTTP/" + parser.get_http_version().encode("ascii")
        request.keep_alive = parser.should_keep_alive()
        uri = request.uri = self.url[0] if len(self.url) == 1 else b"".join(self.url)
        request.path = uri.partition(b"?")[0]
        self.in_head = False
        self.head_bytes = 0
        # head_bytes only sees heads still unfinished at the end of a read: a
        # head completed by the read that takes it past the cap is caught here.
        if self.head_size > MAX_HEAD_BYTES:
            self._refuse(431, HEAD_TOO_LARGE)
            return
        if request.clientproto not in _VERSIONS:
            # llhttp reads any one-digit version (HTTP/0.9, HTTP/2.0) in an
            # HTTP/1 head; the gateway speaks only these two (RFC 9112 2.3).
            self._refuse(505, "Only HTTP/1.0 and HTTP/1.1 are served")
            return
        raw = raw_headers(request.requestHeaders)
        hosts = raw.get(b"Host")
        if hosts is None or len(hosts) != 1 or not VALID_HOSTS.get(hosts[0]):
            problem = host_problem(hosts, request.clientproto)
            if problem is not None:
                # Exactly one valid Host (RFC 9112 3.2), so the rebinding
                # check and the URLs the gateway builds read the same one.
                self._refuse(400, problem)
                return
        if parser.should_upgrade():
            # Never switched to (h2c, websocket): the request is answered as
            # HTTP/1.1; Upgrade and the fields Connection names (HTTP2-Settings)
            # are hop-by-hop, never sent on (mcpgated.proxy.headers).
            self.upgrading = request
        coding = raw.get(b"Transfer-Encoding")
        if coding is not None and (len(coding) != 1 or coding[0].lower() != b"chunked"):
            # llhttp takes any codings before a final chunked (gzip, chunked);
            # the gateway decodes none of them (RFC 9112 section 6.1: 501).
            self._refuse(501, "Transfer-Encoding other than chunked is not supported")
            return
        length = raw.get(b"Content-Length")
        if length is not None:
            try:
                declared = int(length[0])
            except ValueError:
                declared = 0
            if declared > self.factory.max_body:
                self._too_large(request)
                return
        expect = raw.get(b"Expect")
        if expect and expect[0].lower() == b"100-continue" and request.clientproto == b"HTTP/1.1":
            request.expect_continue = True
            if self.active is None and not self.ready:
                self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                request.expect_continue = False

    def on_chunk_header(self) -> None:
        self.after_chunk_header = True

    def on_body(self, body: bytes) -> None:
        if self.after_chunk_header:
            self.after_chunk_header = False
            self.trailer_stream = 0  # that was a chunk's header, not a trailer section
        request = self.parsing
        if request is None or self.closing:
            return
        request._body_size += len(body)
        if request._body_size > self.factory.max_body:
            self._too_large(request)
            return
        request._body.append(body)

    def on_message_complete(self) -> None:
        request = self.parsing
        self.parsing = None
        self.in_head = True
        self.head_bytes = 0
        self.after_chunk_header = False
        if request is None or self.closing or request is self.upgrading:
            # (an upgrade's body has not been read: see _upgraded)
            return
        self._complete(request)

    def _complete(self, request: GatewayRequest) -> None:
        self.deadlines.phase = BUSY
        body = request._body
        request.content = BytesIO(body[0] if len(body) == 1 else b"".join(body))
        request._body = []
        self.ready.append(request)
        if self.active is not None and self.reading:
            # Pipelined: stop reading until the current answer is done.
            self.reading = False
            self.transport.pauseProducing()  # type: ignore[union-attr]

    # --- answering -------------------------------------------------------------------

    def _next(self) -> None:
        # A request finished inside render leads back here through answered:
        # the loop already running takes the next one, so a burst of
        # pipelined requests answered at once does not recurse.
        if self.rendering:
            return
        self.rendering = True
        try:
            while self.active is None and self.ready and (not self.closing
                                                          or self.refusal is not None):
                request = self.active = self.ready.popleft()
                if request.expect_continue:
                    self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                self.factory.resource.render(request)
        finally:
            self.rendering = False

    def answered(self, request: GatewayRequest) -> None:
        """
        C{request} is finished: keep the connection for the next one, or
        close it.
        """
        if request is not self.active:
            return
        self.active = None
        if self.producer is not None:
            self.unregister()
        if (self.refusal is not None and request.keep_alive and not self.close_after
                and self.transport is not None):
            if self.ready:
                self._next()
            if self.active is None and not self.ready and self.refusal is not None:
                status, message = self.refusal
                self.refusal = None
                self._send_refusal(status, message)
            return
        if not request.keep_alive or self.closing or self.close_after:
            self.closing = True
            self.refusal = None
            if self.transport is not None:
                self.transport.loseConnection()
            return
        if self.ready:
            self._next()
        if self.active is None and not self.ready and not self.closing:
            # Waiting for the client again: a request read in part goes on
            # with its head or body deadline, else the keep-alive one.
            deadlines = self.deadlines
            deadlines.phase = IDLE if self.parsing is None else HEAD if self.in_head else BODY
            deadlines.since = self.seconds()
            if not self.reading:
                self.reading = True
                self.transport.resumeProducing()  # type: ignore[union-attr]

    def register(self, producer: IPushProducer) -> None:
        self.producer = producer
        if not self.registered:
            self.registered = True
            self.transport.registerProducer(self, True)  # type: ignore[union-attr]

    def unregister(self) -> None:
        self.producer = None
        if self.registered:
            self.registered = False
            self.transport.unregisterProducer()  # type: ignore[union-attr]

    # IPushProducer, for the transport: the client's reading speed drives
    # the backend's.
    def pauseProducing(self) -> None:
        if self.producer is not None:
            self.producer.pauseProducing()

    def resumeProducing(self) -> None:
        if self.producer is not None:
            self.producer.resumeProducing()

    def stopProducing(self) -> None:
        # The connection is going: connectionLost follows and ends the
        # exchange through notifyFinish, which stops the backend.
        pass

    # --- refusals --------------------------------------------------------------------

    def _too_large(self, request: GatewayRequest) -> None:
        self.factory.rejected_too_large(request)
        self._refuse(413, None)

    def _refuse(self, status: int, message: Optional[str]) -> None:
        """
        Answer an unparseable or oversized request and close: nothing after
        it on this connection can be framed. The requests read complete
        before it are answered first, as they would be had they been read
        one at a time: where the reads cut the bytes does not matter.
        """
        if self.closing:
            return
        self.closing = True
        self.parsing = None
        if self.active is not None or self.ready:
            self.refusal = (status, message)
            return
        self._send_refusal(status, message)

    def _send_refusal(self, status: int, message: Optional[str]) -> None:
        if message is None:
            body = self.factory.too_large_body(self.factory.max_body)
        else:
            body = error_body(INVALID_REQUEST, message, None, {"httpStatus": status})
        head = (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n" % (status, RESPONSES.get(status, b"Error"), len(body)))
        self.send(head + body)
        self.transport.loseConnection()  # type: ignore[union-attr]

    # --- lifetime --------------------------------------------------------------------

    def _expired(self, phase: int) -> None:
        """
        A client timeout passed: close, with a 408 when part of a request
        was read.
        """
        if self.transport is None or self.closing:
            return
        if phase == BODY or (phase == HEAD and self.parsing is not None):
            timeouts = self.factory.timeouts
            self._refuse(408, body_timeout_message(timeouts) if phase == BODY
                         else head_timeout_message(timeouts))
            return
        self.closing = True
        self.transport.loseConnection()

    def connectionLost(self, reason: Optional[Failure] = None) -> None:
        self.closing = True
        self.deadlines.stop()
        self.ready.clear()
        self.producer = None
        active, self.active = self.active, None
        if active is not None and not active.finished:
            active._lost(reason if reason is not None else Failure(ConnectionDone()))
        self.send = _unconnected
        # It holds this channel: no cycle left for the collector. Nothing
        # reads it once the channel is closing.
        self.parser = None  # type: ignore[assignment]


def _unconnected(data: bytes) -> None:
    pass


class GatewayHTTPFactory(Factory):
    """
    Builds L{GatewayChannel}s answered by C{resource.render(request)}.

    @ivar rejected_too_large: hook called with a request refused with 413.
    """

    noisy = False

    def __init__(self, resource: Any, clock: IReactorTime, max_body: int,
                 too_large_body: Callable[[int], bytes],
                 timeouts: ClientTimeouts = ClientTimeouts()) -> None:
        self.resource = resource
        self.clock = clock
        self.max_body = max_body
        self.too_large_body = too_large_body
        self.timeouts = timeouts
        self.dates = _Clock(clock)
        self.rejected_too_large: Callable[[Any], None] = lambda request: None

    def buildProtocol(self, addr: Optional[IAddress]) -> GatewayChannel:
        channel = GatewayChannel(self)
        channel.factory = self
        return channel
