"""
The gateway listener on twisted.web's server (C{[gateway] http = twisted}):
the operator's fallback from the fast channel (L{mcpgated.proxy.http11}),
serving the same L{GatewayResource} under the same edge rules
(L{mcpgated.proxy.edge}): the body cap (413), the head cap (431, trailers
included), exactly one valid C{Host}, trailers dropped, the client
timeouts, JSON-RPC bodies for refusals, no 100 Continue for a refused
request. Slower (twisted.web parses line by line), never different.

Twisted's private hooks it needs are in L{mcpgated._twisted_compat}.
"""

from __future__ import annotations

from typing import Callable, Optional

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import Request, datetimeToString
from twisted.web.resource import IResource

from mcpgated._twisted_compat import (
    HTTPChannelHooks,
    cap_trailers,
    in_trailers,
    request_line,
    request_version,
)
from mcpgated.proxy.edge import (
    BODY,
    BUSY,
    HEAD,
    HEAD_TOO_LARGE,
    IDLE,
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    TRAILERS_TOO_LARGE,
    ClientDeadlines,
    ClientTimeouts,
    body_timeout_message,
    head_timeout_message,
    host_problem,
    refusal,
)
from mcpgated.site import CappedRequest, CappedSite

_VERSIONS = frozenset({b"HTTP/1.0", b"HTTP/1.1"})
_NO_BODY_CODES = frozenset({204, 304})


class TwistedGatewayRequest(CappedRequest):
    """
    A twisted.web request as the gateway answers it: no default
    C{Content-Type} or C{Server}, no C{Content-Length} on 204 and 304, and
    writing or finishing after the client left is a no-op (as on the fast
    channel), not an error.
    """

    defaultContentType = None
    _gone = False

    def process(self) -> None:
        self.site = self.capped_site
        self.setHeader(b"Date", datetimeToString())
        self.prepath = []
        self.postpath = []
        try:
            self.render(self.site.resource)
        except BaseException:  # noqa: BLE001 -- as twisted.web's Request.process: a 500, not a dead channel
            self.processingFailed(Failure())

    def gotLength(self, length: Optional[int]) -> None:
        # Known before the body, so a 413 refused here is logged with them.
        self.method, self.uri = request_line(self.channel)
        self.path = self.uri.partition(b"?")[0]
        CappedRequest.gotLength(self, length)

    def write(self, data: bytes) -> None:
        if self._gone or self.finished:
            return
        if not self.startedWriting and self.code in _NO_BODY_CODES:
            self.responseHeaders.removeHeader(b"Content-Length")
        CappedRequest.write(self, data)

    def finish(self) -> None:
        if self._gone or self.finished:
            return
        CappedRequest.finish(self)

    def connectionLost(self, reason: Failure) -> None:
        self._gone = True
        CappedRequest.connectionLost(self, reason)


class TwistedGatewayChannel(HTTPChannelHooks):
    """
    twisted.web's L{HTTPChannel} held to the gateway's edge rules.
    """

    MAX_LENGTH = MAX_HEAD_BYTES  # one line of a head
    maxHeaders = MAX_HEADERS
    # The head is counted here (431); Twisted's own count would say 400.
    totalHeadersSize = 2 * MAX_HEAD_BYTES

    site: "TwistedGatewaySite"
    head_size = 0
    refused = False
    tail = b""  # the last bytes of a head still being read
    deadlines: Optional[ClientDeadlines] = None

    def connectionMade(self) -> None:
        HTTPChannelHooks.connectionMade(self)
        self.deadlines = ClientDeadlines(self.site.clock, self.site.timeouts, self._expired)
        self.deadlines.start()

    def dataReceived(self, data: bytes) -> None:
        deadlines = self.deadlines
        if deadlines is not None:
            if deadlines.phase == IDLE:
                deadlines.set(HEAD, self.site.clock.seconds())
            elif deadlines.phase == BODY:
                deadlines.since = self.site.clock.seconds()
        if self.line_mode and not self.refused:
            # A head's lines end with CRLF only (RFC 9112 2.2, as the fast
            # channel): Twisted would wait for a CRLF that never comes.
            window = self.tail + data
            end = window.find(b"\r\n\r\n")
            head = window if end < 0 else window[:end]
            if head.count(b"\n") != head.count(b"\r\n"):
                self.refuse(400, "Malformed HTTP request: a line ends with LF alone")
                return
            # The last bytes, to see a CRLF or the blank line across reads;
            # a leading LF was counted with its CR in this window already.
            tail = window[-3:] if end < 0 else b""
            self.tail = tail[1:] if tail[:1] == b"\n" else tail
        HTTPChannelHooks.dataReceived(self, data)

    def lineReceived(self, line: bytes) -> None:
        if self.refused:
            return
        deadlines = self.deadlines
        if deadlines is not None and deadlines.phase == IDLE:
            # A pipelined request read from Twisted's buffer after an answer.
            deadlines.set(HEAD, self.site.clock.seconds())
        if b"\n" in line:
            self.refuse(400, "Malformed HTTP request: a line ends with LF alone")
            return
        if b"\r" in line:
            # RFC 9112 2.2: a bare CR is invalid (Twisted before 26 reads it as a space)
            self.refuse(400, "Malformed HTTP request: a bare CR in the head")
            return
        self.head_size += len(line) + 2
        if self.head_size > MAX_HEAD_BYTES:
            self.refuse(431, HEAD_TOO_LARGE)
            return
        HTTPChannelHooks.lineReceived(self, line)

    def lineLengthExceeded(self, line: bytes) -> None:
        self.refuse(431, HEAD_TOO_LARGE)

    def allHeadersReceived(self) -> None:
        request = self.requests[-1]
        version = request_version(self)
        if version not in _VERSIONS:
            self.refuse(505, "Only HTTP/1.0 and HTTP/1.1 are served")
            return
        problem = host_problem(request.requestHeaders.getRawHeaders(b"Host"), version)
        if problem is not None:
            self.refuse(400, problem)
            return
        if self.deadlines is not None and self.deadlines.phase != BUSY:
            self.deadlines.set(BODY, self.site.clock.seconds())
        # Trailers are kept apart by Twisted and dropped; they share the head's cap.
        cap_trailers(self, MAX_HEAD_BYTES - self.head_size)
        HTTPChannelHooks.allHeadersReceived(self)

    def allContentReceived(self) -> None:
        self.head_size = 0
        if self.deadlines is not None:
            self.deadlines.phase = BUSY
        HTTPChannelHooks.allContentReceived(self)

    def requestDone(self, request: Request) -> None:
        if self.deadlines is not None:
            self.deadlines.set(IDLE, self.site.clock.seconds())
        HTTPChannelHooks.requestDone(self, request)

    # --- refusals --------------------------------------------------------------------

    def bad_request(self) -> None:
        if in_trailers(self):
            self.refuse(431, TRAILERS_TOO_LARGE)
        else:
            self.refuse(400, "Malformed HTTP request")

    def send_continue(self) -> None:
        if self.requests and getattr(self.requests[-1], "_rejected", False):
            return  # refused from its head (413): no 100 Continue after the answer
        HTTPChannelHooks.send_continue(self)

    def refuse(self, status: int, message: str) -> None:
        """
        Answer a request the server cannot take and close the connection.
        """
        if self.refused:
            return
        self.refused = True
        if self.requests:
            self.requests[-1]._rejected = True  # its body and render are skipped
        self.transport.write(refusal(status, message))  # type: ignore[union-attr]
        self.loseConnection()

    def _expired(self, phase: int) -> None:
        if self.transport is None or self.refused:
            return
        timeouts = self.site.timeouts
        if phase == BODY:
            self.refuse(408, body_timeout_message(timeouts))
        elif phase == HEAD and (self.head_size or self.requests):
            self.refuse(408, head_timeout_message(timeouts))
        else:
            self.refused = True
            self.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.deadlines is not None:
            self.deadlines.stop()
        HTTPChannelHooks.connectionLost(self, reason)


class TwistedGatewaySite(CappedSite):
    """
    The gateway listener's factory on twisted.web.

    @ivar clock: the client timeouts' clock.
    """

    protocol = TwistedGatewayChannel  # type: ignore[assignment]
    requestFactory = TwistedGatewayRequest

    def __init__(self, resource: IResource, clock: IReactorTime, max_body: int,
                 too_large_body: Callable[[int], bytes],
                 timeouts: ClientTimeouts = ClientTimeouts()) -> None:
        CappedSite.__init__(self, resource, max_body, too_large_body)
        self.clock = clock
        self.timeouts = timeouts
        self.timeOut = None  # Twisted's idle timer: replaced by the edge's
