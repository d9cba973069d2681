"""
The contract suite's harness: a gateway listener built by the real factory
(L{mcpgated.proxy.listener.gateway_factory}) for either HTTP server, on
127.0.0.1 port 0 in the test's reactor; a raw TCP client that sends bytes
and waits on conditions over what comes back; recording resources.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from mcpgated.config import LimitsConfig
from mcpgated.jsonrpc import INVALID_REQUEST
from mcpgated.proxy.listener import gateway_factory

MAX_BODY = 1000


# --- the client side ------------------------------------------------------------------


@attrs.frozen
class Response:
    """
    One parsed response: header names lower-cased; for a chunked body the
    chunks as framed (without the last, empty one).
    """

    code: int
    headers: Dict[str, List[str]]
    body: bytes
    chunks: Optional[Tuple[bytes, ...]] = None

    def header(self, name: str) -> Optional[str]:
        values = self.headers.get(name)
        return values[-1] if values else None


def parse_head(data: bytes) -> Optional[Tuple[int, Dict[str, List[str]], bytes]]:
    """
    The status, headers and the bytes after the first head in C{data}, or
    L{None} while it is not complete.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = data[:end].decode("latin-1").split("\r\n")
    version, code_text = lines[0].split(" ", 2)[:2]
    assert version in ("HTTP/1.1", "HTTP/1.0"), lines[0]
    headers: Dict[str, List[str]] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        assert colon, f"bad header line {line!r}"
        headers.setdefault(name.lower(), []).append(value.strip())
    return int(code_text), headers, data[end + 4:]


def parse_responses(data: bytes, count: int, no_body: Sequence[bool] = (),
                    closed: bool = False) -> Optional[List[Response]]:
    """
    The first C{count} responses in C{data}, or L{None} while they are not
    all there. C{no_body[i]} marks an answer to HEAD; a body without length
    or chunking ends when the connection is C{closed}.
    """
    responses: List[Response] = []
    while len(responses) < count:
        parsed = parse_head(data)
        if parsed is None:
            return None
        code, headers, rest = parsed
        index = len(responses)
        if (index < len(no_body) and no_body[index]) or code in (204, 304) or code < 200:
            responses.append(Response(code, headers, b""))
            data = rest
        elif "content-length" in headers:
            length = int(headers["content-length"][-1])
            if len(rest) < length:
                return None
            responses.append(Response(code, headers, rest[:length]))
            data = rest[length:]
        elif headers.get("transfer-encoding") == ["chunked"]:
            chunks: List[bytes] = []
            position = 0
            while True:
                eol = rest.find(b"\r\n", position)
                if eol < 0:
                    return None
                size = int(rest[position:eol], 16)
                if len(rest) < eol + 2 + size + 2:
                    return None
                assert rest[eol + 2 + size:eol + 4 + size] == b"\r\n", "bad chunk framing"
                chunk = rest[eol + 2:eol + 2 + size]
                position = eol + 4 + size
                if size == 0:
                    break
                chunks.append(chunk)
            responses.append(Response(code, headers, b"".join(chunks), tuple(chunks)))
            data = rest[position:]
        elif closed:
            responses.append(Response(code, headers, rest))
            data = b""
        else:
            return None
    return responses


class RawClient(Protocol):
    """
    Keeps every byte that arrives; tests wait on conditions over them.
    """

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False
        self.lost: Deferred = Deferred()
        self._waiters: List[Tuple[Callable[[], Any], Deferred]] = []

    def send(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        self._check()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.closed = True
        self._check()
        waiters, self._waiters = self._waiters, []
        for _, waiter in waiters:
            waiter.errback(AssertionError(
                f"the connection closed first; received {bytes(self.data[:600])!r}"))
        self.lost.callback(bytes(self.data))

    def _check(self) -> None:
        for entry in list(self._waiters):
            check, waiter = entry
            result = check()
            if result is not None:
                self._waiters.remove(entry)
                waiter.callback(result)

    def until(self, check: Callable[[], Any]) -> Deferred:
        """
        Fires with C{check()} once it is not L{None}; fails if the connection
        closes first.
        """
        waiter: Deferred = Deferred()
        self._waiters.append((check, waiter))
        if self.closed:
            self.connectionLost(None)
        else:
            self._check()
        return waiter

    def responses(self, count: int, no_body: Sequence[bool] = ()) -> Deferred:
        return self.until(lambda: parse_responses(bytes(self.data), count, no_body, self.closed))

    def received(self, size: int) -> Deferred:
        """
        Fires once at least C{size} bytes came in.
        """
        return self.until(lambda: True if len(self.data) >= size else None)

    def head(self) -> Deferred:
        """
        Fires with (status, headers, bytes after the head) once a head is in.
        """
        return self.until(lambda: parse_head(bytes(self.data)))


# --- the server side ------------------------------------------------------------------


class Recorder(Resource):
    """
    A resource recording what it renders and answering with C{answer}; with
    no C{answer} the request is held for the test to answer.

    @ivar outcomes: per request, a L{Deferred} firing with L{None} when the
        answer finished, or with the exception the connection was lost with.
    """

    isLeaf = True

    def __init__(self, answer: Optional[Callable[[Any], None]] = None) -> None:
        Resource.__init__(self)
        self.answer = answer
        self.requests: List[Any] = []
        self.outcomes: List[Deferred] = []
        self.events: List[Tuple[str, bytes]] = []
        self.too_large: List[Any] = []
        self._rendered: List[Tuple[int, Deferred]] = []

    def render(self, request: Any) -> Any:
        self.requests.append(request)
        self.events.append(("render", request.path))
        outcome: Deferred = Deferred()
        request.notifyFinish().addCallbacks(lambda _: outcome.callback(None),
                                            lambda f: outcome.callback(f.value))
        self.outcomes.append(outcome)
        if self.answer is not None:
            self.answer(request)
        for entry in list(self._rendered):
            if entry[0] < len(self.requests):
                self._rendered.remove(entry)
                reactor.callLater(0, entry[1].callback, self.requests[entry[0]])
        return NOT_DONE_YET

    def log_too_large(self, request: Any) -> None:
        self.too_large.append(request)

    def rendered(self, index: int = 0) -> Deferred:
        """
        Fires with the C{index}th request once it is rendered (on the next
        reactor turn, after the server handled the read that led to it).
        """
        waiter: Deferred = Deferred()
        if index < len(self.requests):
            waiter.callback(self.requests[index])
        else:
            self._rendered.append((index, waiter))
        return waiter

    def reply(self, request: Any, body: bytes, code: int = 200) -> None:
        self.events.append(("finish", request.path))
        request.setResponseCode(code)
        request.setHeader(b"Content-Length", b"%d" % len(body))
        request.write(body)
        request.finish()


def echo(request: Any) -> None:
    """
    Answers with what the request said, as JSON with a C{Content-Length}.
    """
    request.content.seek(0)
    body = json.dumps({
        "method": request.method.decode(),
        "uri": request.uri.decode(),
        "path": request.path.decode(),
        "version": request.clientproto.decode(),
        "body": request.content.read().decode("latin-1"),
        "host": (request.getHeader(b"host") or b"").decode("latin-1"),
        "headers": {name.decode().lower(): [value.decode("latin-1") for value in values]
                    for name, values in request.requestHeaders.getAllRawHeaders()},
    }).encode()
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Content-Length", b"%d" % len(body))
    request.write(body)
    request.finish()


def get(path: bytes = b"/", headers: bytes = b"", version: bytes = b"HTTP/1.1",
        method: bytes = b"GET", host: bytes = b"Host: gw.test\r\n") -> bytes:
    return method + b" " + path + b" " + version + b"\r\n" + host + headers + b"\r\n"


def post(path: bytes, body: bytes, headers: bytes = b"") -> bytes:
    return (b"POST " + path + b" HTTP/1.1\r\nHost: gw.test\r\nContent-Length: %d\r\n" % len(body)
            + headers + b"\r\n" + body)


def chunked(*chunks: bytes, trailers: bytes = b"") -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n" + trailers + b"\r\n"


def run(test: Callable[[Any], Any]) -> Callable[[Any], Deferred]:
    """
    A trial test method from an C{async def} one.
    """

    def method(self: Any) -> Deferred:
        return Deferred.fromCoroutine(test(self))

    method.__name__ = test.__name__
    method.__doc__ = test.__doc__
    return method


def limits(max_body: int = MAX_BODY, header: float = 60.0, body: float = 60.0,
           keepalive: float = 75.0) -> LimitsConfig:
    return LimitsConfig(max_body=max_body, connect_timeout=10.0, header_timeout=60.0,
                        idle_timeout=300.0, client_header_timeout=header,
                        client_body_timeout=body, keepalive_timeout=keepalive)


class ServerSide:
    """
    The server's side of one connection: what it read, and when it is gone.
    """

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.received = 0
        self.gone: Deferred = Deferred()
        self._waiters: List[Tuple[int, Deferred]] = []
        data_received, connection_lost = channel.dataReceived, channel.connectionLost

        def received(data: bytes) -> None:
            self.received += len(data)
            data_received(data)
            for entry in list(self._waiters):
                if self.received >= entry[0]:
                    self._waiters.remove(entry)
                    entry[1].callback(None)

        def lost(reason: Failure) -> None:
            connection_lost(reason)
            self.gone.callback(None)

        channel.dataReceived = received
        channel.connectionLost = lost

    def read(self, total: int) -> Deferred:
        """
        Fires once the server has handled C{total} bytes of this connection.
        """
        waiter: Deferred = Deferred()
        if self.received >= total:
            waiter.callback(None)
        else:
            self._waiters.append((total, waiter))
        return waiter


class ContractCase(TestCase):
    """
    Base of the contract tests; C{server} names the implementation.
    """

    server = "fast"
    timeout = 15

    def listen(self, resource: Any, clock: Any = reactor, **options: Any) -> Any:
        factory = gateway_factory(self.server, resource, clock, limits(**options))
        build = factory.buildProtocol
        self.sides: List[ServerSide] = []

        def build_tracked(addr: Any) -> Any:
            channel = build(addr)
            self.sides.append(ServerSide(channel))
            return channel

        factory.buildProtocol = build_tracked
        self.port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.clients: List[RawClient] = []

        def cleanup() -> Deferred:
            for client in self.clients:
                if not client.closed:
                    client.transport.abortConnection()  # type: ignore[union-attr]
            for side in self.sides:
                if not side.gone.called and side.channel.transport is not None:
                    side.channel.transport.abortConnection()
            waits = [client.lost for client in self.clients]
            waits += [side.gone for side in self.sides]
            waits.append(self.port.stopListening())
            return gatherResults(waits)

        self.addCleanup(cleanup)
        return factory

    async def connect(self) -> RawClient:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)
        client = await connectProtocol(endpoint, RawClient())
        self.clients.append(client)
        return client

    async def refused(self, resource: Recorder, data: bytes, status: int) -> Dict[str, Any]:
        """
        Sends C{data}; expects a JSON-RPC error answer with C{status}, the
        connection closed by the server, and nothing rendered. Returns the
        error message.
        """
        client = await self.connect()
        client.send(data)
        received = await client.lost
        return self.assertRefusal(received, status, resource)

    def assertRefusal(self, received: bytes, status: int,
                      resource: Optional[Recorder] = None) -> Dict[str, Any]:
        [response] = parse_responses(received, 1, closed=True) or [None]
        assert response is not None, received
        self.assertEqual(response.code, status, received[:300])
        self.assertEqual(response.header("connection"), "close")
        self.assertEqual(response.header("content-type"), "application/json")
        self.assertEqual(len(response.body), int(response.header("content-length") or -1))
        message = json.loads(response.body)
        self.assertEqual(message["jsonrpc"], "2.0")
        self.assertEqual(message["error"]["data"]["httpStatus"], status)
        if status != 413:
            self.assertEqual(message["error"]["code"], INVALID_REQUEST)
        if resource is not None:
            self.assertEqual(resource.requests, [])
        return message
