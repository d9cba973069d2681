"""
The backend client against real loopback servers in this process: canned
raw HTTP responses, keep-alive, framing, failures, cancellation and
backpressure.
"""

from __future__ import annotations

import select
import shutil
import socket
import struct
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.internet import reactor, ssl
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import ConnectError, ConnectionAborted
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock, deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.error import SchemeNotSupported
from twisted.web.client import ResponseDone, ResponseFailed, ResponseNeverReceived
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH

from mcpgated.proxy.backend_client import BackendClient, BackendResponse, keep_alive_hint
from tests.test_tls import self_signed

JSON = b'{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}'


class Received:
    """
    One request as the server saw it.
    """

    def __init__(self, head: bytes, body: bytes) -> None:
        lines = head.split(b"\r\n")
        self.head = head
        self.request_line = lines[0]
        self.method, self.target, _ = lines[0].split(b" ")
        self.headers: Dict[bytes, List[bytes]] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            self.headers.setdefault(name.strip().lower(), []).append(value.strip())
        self.body = body


Respond = Callable[["ServerConnection", Received], None]


class ServerConnection(Protocol):
    """
    Parses requests (Content-Length bodies only) and lets the test's
    C{respond} answer each.
    """

    factory: "CannedServer"

    def connectionMade(self) -> None:
        self.buffer = b""
        self.requests: List[Received] = []
        self.lost: Deferred[None] = Deferred()
        self.index = len(self.factory.connections)
        self.factory.connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while not self.transport.disconnecting:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            received = Received(self.buffer[:end], b"")
            length = int(received.headers.get(b"content-length", [b"0"])[0])
            if len(self.buffer) < end + 4 + length:
                return
            received.body = self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            self.requests.append(received)
            self.factory.requests.append(received)
            self.factory.respond(self, received)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost.callback(None)


class CannedServer(Factory):
    protocol = ServerConnection
    noisy = False

    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.connections: List[ServerConnection] = []
        self.requests: List[Received] = []


def ok(body: bytes = JSON, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + extra
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


def answer(raw: bytes) -> Respond:
    return lambda conn, req: conn.transport.write(raw)


class Collector(Protocol):
    """
    Keeps the body pieces and the end reason; C{done} fires with both.
    """

    def __init__(self, on_data: Optional[Callable[["Collector", bytes], None]] = None) -> None:
        self.chunks: List[bytes] = []
        self.reason: Optional[Failure] = None
        self.done: Deferred[Tuple[bytes, Failure]] = Deferred()
        self.on_data = on_data

    def dataReceived(self, data: bytes) -> None:
        assert self.reason is None, "data after connectionLost"
        self.chunks.append(data)
        if self.on_data is not None:
            self.on_data(self, data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        assert self.reason is None, "connectionLost twice"
        self.reason = reason
        self.done.callback((b"".join(self.chunks), reason))

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


def read(response: BackendResponse) -> "Deferred[Tuple[bytes, Failure]]":
    collector = Collector()
    response.deliverBody(collector)
    return collector.done


async def turns(n: int = 5) -> None:
    """
    Let the reactor run C{n} iterations (not a timed wait).
    """
    for _ in range(n):
        await deferLater(reactor, 0, lambda: None)


async def until(predicate: Callable[[], bool], limit: int = 2000) -> None:
    for _ in range(limit):
        if predicate():
            return
        await deferLater(reactor, 0, lambda: None)
    raise AssertionError("condition not reached")


class ClientHarness:
    """
    Loopback servers and tracked clients for trial tests of the backend
    client; everything is closed at cleanup.
    """

    timeout = 5

    def setUp(self) -> None:
        self.servers: List[Tuple[Any, CannedServer]] = []
        self.client_conns: List[Any] = []
        self.clients: List[BackendClient] = []
        self.addCleanup(lambda: Deferred.fromCoroutine(self._cleanup()))

    async def _cleanup(self) -> None:
        for client in self.clients:
            await client.close_idle()
        for conn in self.client_conns:
            if not conn.lost:
                conn.transport.abortConnection()
        waits = []
        for port, factory in self.servers:
            for conn in factory.connections:
                if conn.transport.connected:
                    conn.transport.abortConnection()
                waits.append(conn.lost)
            await port.stopListening()
        await DeferredList(waits)
        await until(lambda: all(c.lost for c in self.client_conns))
        # A response that completed during the cleanup may have re-armed
        # the idle timer.
        for client in self.clients:
            await client.close_idle()

    def serve(self, respond: Respond) -> Tuple[CannedServer, bytes]:
        factory = CannedServer(respond)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.servers.append((port, factory))
        return factory, b"http://127.0.0.1:%d" % port.getHost().port

    def serve_tls(self, respond: Respond) -> Tuple[CannedServer, bytes, Any]:
        """
        A TLS server for localhost; returns the client TLS options too.
        """
        folder = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, folder, True)
        key, cert = self_signed(folder)
        factory = CannedServer(respond)
        port = reactor.listenSSL(0, factory, ssl.DefaultOpenSSLContextFactory(str(key), str(cert)),
                                 interface="127.0.0.1")
        self.servers.append((port, factory))
        trust = ssl.optionsForClientTLS("localhost",
                                        trustRoot=ssl.Certificate.loadPEM(cert.read_bytes()))
        return factory, b"https://localhost:%d" % port.getHost().port, trust

    def make_client(self, clock: Any = reactor, tls: Any = None, **kwargs: Any) -> BackendClient:
        conns = self.client_conns

        class Tracking:
            def __init__(self, endpoint: Any) -> None:
                self.endpoint = endpoint

            def connect(self, factory: Any) -> Deferred:
                def connected(protocol: Any) -> Any:
                    conns.append(protocol)
                    return protocol
                return self.endpoint.connect(factory).addCallback(connected)

        def endpoint_for(scheme: bytes, host: bytes, port: int) -> Any:
            endpoint = HostnameEndpoint(reactor, host.decode("ascii"), port, timeout=5)
            if scheme == b"https":
                endpoint = wrapClientTLS(tls, endpoint)
            return Tracking(endpoint)

        client = BackendClient(clock, endpoint_for, **kwargs)
        self.clients.append(client)
        return client

    def get(self, client: BackendClient, url: bytes, method: bytes = b"GET",
            body: Optional[bytes] = None, headers: Optional[Headers] = None) -> Deferred:
        return client.request(method, url, headers if headers is not None else Headers(), body)

    # -- a raw backend the test drives itself --------------------------------------------

    def listen_raw(self) -> Tuple[socket.socket, bytes]:
        """
        A listening socket the reactor knows nothing about: the test
        accepts, reads and answers on it itself, so a close or a byte it
        sends waits in the client's kernel buffer until the reactor runs.
        """
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(5)
        self.addCleanup(listener.close)
        return listener, b"http://127.0.0.1:%d" % listener.getsockname()[1]

    async def accept_raw(self, listener: socket.socket, count: int) -> socket.socket:
        """
        Accept the client's connection number C{count} (from 1) once the
        reactor has made it.
        """
        await until(lambda: len(self.client_conns) >= count)
        conn, _ = listener.accept()
        conn.settimeout(5)
        self.addCleanup(conn.close)
        return conn

    def readable(self, index: int) -> None:
        """
        Wait (blocking the reactor, on purpose) until what the server sent
        is in client connection C{index}'s socket: the reactor has not seen
        it yet.
        """
        fd = self.client_conns[index].transport.fileno()
        ready, _, _ = select.select([fd], [], [], 5)
        assert ready, "nothing arrived"


def recv_request(conn: socket.socket) -> Received:
    """
    One request (Content-Length body) read off a raw server socket.
    """
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, "closed before a request"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    received = Received(head, b"")
    length = int(received.headers.get(b"content-length", [b"0"])[0])
    while len(body) < length:
        chunk = conn.recv(65536)
        assert chunk, "closed in a request body"
        body += chunk
    received.body = body
    return received


def idle_count(client: BackendClient) -> int:
    return sum(len(idle) for idle in client._idle.values())


def reset(conn: socket.socket) -> None:
    """
    Close with a TCP RST (SO_LINGER 0).
    """
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


class BackendClientTests(ClientHarness, TestCase):

    # -- framing -------------------------------------------------------------------------

    async def test_content_length_json(self) -> None:
        factory, base = self.serve(answer(ok(extra=b"Set-Cookie: a=1\r\nset-cookie: b=2\r\n"
                                                    b"X-Trailing: v  \r\n")))
        client = self.make_client()
        response = await self.get(client, base + b"/mcp")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.phrase, b"OK")
        self.assertEqual(response.version, (b"HTTP", 1, 1))
        self.assertEqual(response.length, len(JSON))
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"application/json"])
        self.assertEqual(response.headers.getRawHeaders(b"Set-Cookie"), [b"a=1", b"b=2"])
        self.assertEqual(response.headers.getRawHeaders(b"x-trailing"), [b"v"])
        body, reason = await read(response)
        self.assertEqual(body, JSON)
        self.assertTrue(reason.check(ResponseDone))

    async def test_chunked(self) -> None:
        raw = (b"HTTP/1.1 201 Created Now\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n1;ext=1\r\n,\r\n6\r\n world\r\n0\r\n\r\n")
        factory, base = self.serve(answer(raw))
        client = self.make_client()
        response = await self.get(client, base + b"/")
        self.assertEqual((response.code, response.phrase), (201, b"Created Now"))
        self.assertIs(response.length, UNKNOWN_LENGTH)
        body, reason = await read(response)
        self.assertEqual(body, b"hello, world")
        self.assertTrue(reason.check(ResponseDone))
        # Still kept alive after a chunked body.
        await read(await self.get(client, base + b"/"))
        self.assertEqual(len(factory.connections), 1)

    async def test_trailers_dropped(self) -> None:
        factory, base = self.serve(answer(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
            b"2\r\nok\r\n0\r\nX-Sum: 1\r\n\r\n"))
        client = self.make_client()
        for _ in range(2):
            response = await self.get(client, base + b"/")
            self.assertFalse(response.headers.hasHeader(b"x-sum"))
            body, reason = await read(response)
            self.assertEqual(body, b"ok")
            self.assertTrue(reason.check(ResponseDone))
        self.assertEqual(len(factory.connections), 1)

    async def test_close_delimited(self) -> None:
        def respond(conn: ServerConnection, req: Received) -> None:
            conn.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ")
            conn.transport.write(b"the end")
            conn.transport.loseConnection()

        factory, base = self.serve(respond)
        client = self.make_client()
        response = await self.get(client, base + b"/")
        self.assertIs(response.length, UNKNOWN_LENGTH)
        body, reason = await read(response)
        self.assertEqual(body, b"until the end")
        self.assertTrue(reason.check(PotentialDataLoss))

    async def test_head_and_204_have_no_body(self) -> None:
        def respond(conn: ServerConnection, req: Received) -> None:
            if req.method == b"HEAD":
                conn.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
            else:
                conn.transport.write(b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n")

        factory, base = self.serve(respond)
        client = self.make_client()
        head = await self.get(client, base + b"/", method=b"HEAD")
        self.assertEqual((head.code, head.length), (200, 0))
        body, reason = await read(head)
        self.assertEqual(body, b"")
        self.assertTrue(reason.check(ResponseDone))
        for _ in range(2):
            empty = await self.get(client, base + b"/", method=b"DELETE")
            self.assertEqual((empty.code, empty.length), (204, 0))
            body, reason = await read(empty)
            self.assertEqual(body, b"")
            self.assertTrue(reason.check(ResponseDone))
        # The 204s share one connection (the HEAD one is not reused: llhttp
        # would still wait for its 1234 bytes).
        self.assertEqual([len(c.requests) for c in factory.connections], [1, 2])

    async def test_100_continue_skipped(self) -> None:
        factory, base = self.serve(answer(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            + ok(extra=b"X-Final: yes\r\n")))
        client = self.make_client()
        response = await self.get(client, base + b"/", method=b"POST", body=b"{}")
        self.assertEqual((response.code, response.phrase), (200, b"OK"))
        self.assertEqual(response.headers.getRawHeaders(b"x-final"), [b"yes"], response.headers)
        self.assertFalse(response.headers.hasHeader(b"link"))
        body, reason = await read(response)
        self.assertEqual(body, JSON)
        self.assertTrue(reason.check(ResponseDone))

    # -- the request on the wire ---------------------------------------------------------

    async def test_request_bytes(self) -> None:
        factory, base = self.serve(answer(ok()))
        client = self.make_client()
        port = base.rsplit(b":", 1)[1]
        headers = Headers({b"Content-Type": [b"application/json"], b"X-Multi": [b"1", b"2"],
                           b"Content-Length": [b"999"], b"Transfer-Encoding": [b"chunked"]})
        await read(await self.get(client, base + b"/mcp?x=1", method=b"POST", body=b"",
                                  headers=headers))
        await read(await self.get(client, base + b"/mcp", method=b"POST", body=b'{"a":1}',
                                  headers=Headers({b"Host": [b"backend.example"]})))
        await read(await self.get(client, base + b"?q=1#frag"))
        first, second, third = factory.requests
        self.assertEqual(first.request_line, b"POST /mcp?x=1 HTTP/1.1")
        self.assertEqual(first.headers[b"host"], [b"127.0.0.1:" + port])
        self.assertEqual(first.headers[b"content-length"], [b"0"])
        self.assertEqual(first.headers[b"content-type"], [b"application/json"])
        self.assertEqual(first.headers[b"x-multi"], [b"1", b"2"])
        self.assertNotIn(b"transfer-encoding", first.headers)
        self.assertEqual(first.body, b"")
        self.assertEqual(second.headers[b"host"], [b"backend.example"])
        self.assertEqual(second.headers[b"content-length"], [b"7"])
        self.assertEqual(second.body, b'{"a":1}')
        self.assertEqual(third.request_line, b"GET /?q=1 HTTP/1.1")
        self.assertNotIn(b"content-length", third.headers)
        # All on one kept-alive connection.
        self.assertEqual(len(factory.connections), 1)

    async def test_invalid_requests_fail(self) -> None:
        client = self.make_client()
        for method, url in [(b"GET", b"ftp://h/"), (b"GET", b"/relative"),
                            (b"GET", b"http://h/a b"), (b"GET", b"http://h/a\r\nX: 1"),
                            (b"GE T", b"http://h/"), (b"GET", b"http://h:99999/"),
                            (b"GET", b"http://h:8_0/"), (b"GET", b"http://[::1/")]:
            failure = self.failureResultOf(client.request(method, url, Headers(), None))
            self.assertIsInstance(failure.value, (ValueError, SchemeNotSupported), (method, url))

    async def test_url_parsing(self) -> None:
        seen: List[Tuple[bytes, bytes, int]] = []

        def endpoint_for(scheme: bytes, host: bytes, port: int) -> Any:
            seen.append((scheme, host, port))
            raise ConnectError("not here")

        client = BackendClient(reactor, endpoint_for)
        for url in [b"http://[::1]:8080/mcp", b"https://[::1]/", b"http://example.com",
                    b"https://user:pw@example.com:8443?x=1", b"HTTP://Example.com:81/a"]:
            self.failureResultOf(client.request(b"GET", url, Headers(), None), ConnectError)
        self.assertEqual(seen, [(b"http", b"::1", 8080), (b"https", b"::1", 443),
                                (b"http", b"example.com", 80),
                                (b"https", b"example.com", 8443),
                                (b"http", b"Example.com", 81)])
        self.assertEqual(client._targets[b"http://[::1]:8080"].host_line, b"host: [::1]:8080")

    # -- keep-alive ----------------------------------------------------------------------

    async def test_keep_alive_reuse(self) -> None:
        factory, base = self.serve(answer(ok()))
        client = self.make_client()
        for _ in range(3):
            body, reason = await read(await self.get(client, base + b"/mcp", b"POST", b"{}"))
            self.assertEqual(body, JSON)
        self.assertEqual(len(factory.connections), 1)
        self.assertEqual(len(factory.requests), 3)

    async def test_connection_close_not_reused(self) -> None:
        factory, base = self.serve(answer(ok(extra=b"Connection: close\r\n")))
        client = self.make_client()
        for _ in range(2):
            body, reason = await read(await self.get(client, base + b"/"))
            self.assertEqual(body, JSON)
            self.assertTrue(reason.check(ResponseDone))
        self.assertEqual(len(factory.connections), 2)
        self.assertEqual(client._idle, {})

    async def test_http10_not_reused(self) -> None:
        factory, base = self.serve(answer(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi"))
        client = self.make_client()
        for _ in range(2):
            response = await self.get(client, base + b"/")
            self.assertEqual(response.version, (b"HTTP", 1, 0))
            self.assertEqual((await read(response))[0], b"hi")
        self.assertEqual(len(factory.connections), 2)

    async def test_idle_closed_by_server_is_dropped(self) -> None:
        def respond(conn: ServerConnection, req: Received) -> None:
            conn.transport.write(ok())
            if conn.index == 0:
                conn.transport.loseConnection()

        factory, base = self.serve(respond)
        client = self.make_client()
        await read(await self.get(client, base + b"/", b"POST", b"{}"))
        await factory.connections[0].lost
        await until(lambda: self.client_conns[0].lost)
        self.assertEqual(client._take((b"http", b"127.0.0.1", int(base.rsplit(b":", 1)[1]))),
                         None)
        body, reason = await read(await self.get(client, base + b"/", b"POST", b"{}"))
        self.assertEqual(body, JSON)
        self.assertEqual(len(factory.connections), 2)

    async def _dead_reused(self, method: bytes) -> Tuple[CannedServer, Deferred]:
        """
        The second request on the first connection finds it closed without
        a response (the backend dropped the kept-alive connection).
        """
        def respond(conn: ServerConnection, req: Received) -> None:
            if conn.index == 0 and len(conn.requests) == 2:
                conn.transport.abortConnection()
            else:
                conn.transport.write(ok())

        factory, base = self.serve(respond)
        client = self.make_client()
        await read(await self.get(client, base + b"/"))
        return factory, self.get(client, base + b"/", method, b"{}" if method == b"POST" else None)

    async def test_retry_get_on_dead_reused_connection(self) -> None:
        factory, pending = await self._dead_reused(b"GET")
        body, reason = await read(await pending)
        self.assertEqual(body, JSON)
        self.assertEqual([len(c.requests) for c in factory.connections], [2, 1])

    async def test_no_retry_post_on_dead_reused_connection(self) -> None:
        factory, pending = await self._dead_reused(b"POST")
        with self.assertRaises(ResponseNeverReceived):
            await pending
        self.assertEqual(len(factory.connections), 1)

    async def test_close_idle(self) -> None:
        factory, base = self.serve(answer(ok()))
        client = self.make_client()
        pending = [self.get(client, base + b"/") for _ in range(3)]
        for d in pending:
            await read(await d)
        self.assertEqual(len(factory.connections), 3)
        await client.close_idle()
        self.assertEqual(client._idle, {})
        self.assertTrue(all(c.lost for c in self.client_conns))
        await DeferredList([c.lost for c in factory.connections])

    async def test_max_idle_per_host(self) -> None:
        factory, base = self.serve(answer(ok()))
        client = self.make_client(max_idle_per_host=1)
        responses = [await d for d in [self.get(client, base + b"/") for _ in range(3)]]
        for response in responses:
            await read(response)
        self.assertEqual(len(factory.connections), 3)
        self.assertEqual(sum(len(v) for v in client._idle.values()), 1)
        await DeferredList([c.lost for c in factory.connections[:2]])

    async def test_idle_timeout(self) -> None:
        clock = Clock()
        factory, base = self.serve(answer(ok()))
        client = self.make_client(clock=clock, idle_timeout=4.0)
        await read(await self.get(client, base + b"/"))
        clock.advance(2)
        await read(await self.get(client, base + b"/"))
        self.assertEqual(len(factory.connections), 1)
        # One timer for the whole pool, re-armed for the next oldest.
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(3)
        self.assertEqual(len(client._idle), 1)
        clock.advance(1.5)
        self.assertEqual(client._idle, {})
        self.assertEqual(clock.getDelayedCalls(), [])
        await factory.connections[0].lost

    async def test_tls(self) -> None:
        def respond(conn: ServerConnection, req: Received) -> None:
            if req.target == b"/stream":
                conn.transport.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                     b"5\r\nfirst\r\n")
            else:
                conn.transport.write(ok())

        factory, base, trust = self.serve_tls(respond)
        client = self.make_client(tls=trust)
        for _ in range(2):
            response = await self.get(client, base + b"/mcp", b"POST", b"{}")
            self.assertEqual(factory.requests[-1].headers[b"host"], [base[8:]])
            body, reason = await read(response)
            self.assertEqual(body, JSON)
            self.assertTrue(reason.check(ResponseDone))
        self.assertEqual(len(factory.connections), 1)
        # Pause, resume and stop go through the TLS transport.
        response = await self.get(client, base + b"/stream")
        collector = Collector(on_data=lambda c, data: c.transport.pauseProducing())
        response.deliverBody(collector)
        await until(lambda: bool(collector.chunks))
        collector.transport.resumeProducing()
        collector.transport.stopProducing()
        body, reason = await collector.done
        self.assertEqual(body, b"first")
        self.assertTrue(reason.check(ResponseFailed))
        await factory.connections[0].lost

    # -- failures ------------------------------------------------------------------------

    async def test_truncated_body(self) -> None:
        def respond(conn: ServerConnection, req: Received) -> None:
            if req.target == b"/chunked":
                conn.transport.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                     b"a\r\n0123456789\r\n")
            else:
                conn.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            conn.transport.loseConnection()

        factory, base = self.serve(respond)
        client = self.make_client()
        for path in (b"/length", b"/chunked"):
            response = await self.get(client, base + path)
            body, reason = await read(response)
            self.assertEqual(body, b"0123456789")
            self.assertTrue(reason.check(ResponseFailed), reason)

    async def test_connection_refused(self) -> None:
        factory, base = self.serve(answer(ok()))
        port, _ = self.servers.pop()
        await port.stopListening()
        client = self.make_client()
        with self.assertRaises(ConnectError):
            await self.get(client, base + b"/")

    async def test_lost_before_head(self) -> None:
        factory, base = self.serve(lambda conn, req: conn.transport.loseConnection())
        client = self.make_client()
        with self.assertRaises(ResponseNeverReceived):
            await self.get(client, base + b"/", b"POST", b"{}")

    async def test_lost_in_head(self) -> None:
        def respond(conn: ServerConnection, req: Received) -> None:
            conn.transport.write(b"HTTP/1.1 200 OK\r\nContent-")
            conn.transport.loseConnection()

        factory, base = self.serve(respond)
        client = self.make_client()
        with self.assertRaises(ResponseFailed) as caught:
            await self.get(client, base + b"/")
        self.assertNotIsInstance(caught.exception, ResponseNeverReceived)

    async def test_bad_head(self) -> None:
        factory, base = self.serve(answer(b"HTTP/1.1 abc Nope\r\n\r\n"))
        client = self.make_client()
        with self.assertRaises(ResponseFailed):
            await self.get(client, base + b"/")
        await factory.connections[0].lost

    async def test_cancel_before_head(self) -> None:
        arrived: Deferred[None] = Deferred()
        factory, base = self.serve(lambda conn, req: arrived.callback(None))
        client = self.make_client()
        pending = self.get(client, base + b"/", b"POST", b"{}")
        await arrived
        pending.cancel()
        with self.assertRaises(CancelledError):
            await pending
        await factory.connections[0].lost
        await until(lambda: self.client_conns[0].lost)
        self.assertEqual(client._idle, {})

    async def test_cancel_while_connecting(self) -> None:
        factory, base = self.serve(answer(ok()))
        client = self.make_client()
        pending = self.get(client, base + b"/")
        pending.cancel()
        with self.assertRaises(CancelledError):
            await pending
        self.assertEqual(client._idle, {})

    # -- the body transport --------------------------------------------------------------

    async def test_stop_producing_mid_body(self) -> None:
        def respond(conn: ServerConnection, req: Received) -> None:
            if conn.index == 0:
                conn.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst")
            else:
                conn.transport.write(ok())

        factory, base = self.serve(respond)
        client = self.make_client()
        response = await self.get(client, base + b"/")
        collector = Collector(on_data=lambda c, data: c.transport.stopProducing())
        response.deliverBody(collector)
        body, reason = await collector.done
        self.assertEqual(body, b"first")
        self.assertTrue(reason.check(ResponseFailed))
        self.assertTrue(reason.value.reasons[0].check(ConnectionAborted))
        await factory.connections[0].lost
        # Not reused: the next request gets a new connection.
        self.assertEqual((await read(await self.get(client, base + b"/")))[0], JSON)
        self.assertEqual(len(factory.connections), 2)

    async def test_stop_producing_in_make_connection(self) -> None:
        factory, base = self.serve(lambda conn, req: conn.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst"))
        client = self.make_client()
        response = await self.get(client, base + b"/")

        class Discard(Collector):
            def makeConnection(self, transport: Any) -> None:
                Collector.makeConnection(self, transport)
                transport.stopProducing()

        discard = Discard()
        response.deliverBody(discard)
        body, reason = await discard.done
        self.assertEqual(body, b"")
        self.assertTrue(reason.check(ResponseFailed))
        await factory.connections[0].lost

    async def test_pause_and_resume(self) -> None:
        more: List[ServerConnection] = []

        def respond(conn: ServerConnection, req: Received) -> None:
            if req.target == b"/ok":
                conn.transport.write(ok())
                return
            # Many chunks in one write: one read carries them all.
            conn.transport.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 + b"".join(b"4\r\n%04d\r\n" % i for i in range(50)))
            more.append(conn)

        factory, base = self.serve(respond)
        client = self.make_client()
        response = await self.get(client, base + b"/")
        paused: Deferred[None] = Deferred()

        def first(collector: Collector, data: bytes) -> None:
            if len(collector.chunks) == 1:
                collector.transport.pauseProducing()
                paused.callback(None)

        collector = Collector(on_data=first)
        response.deliverBody(collector)
        await paused
        backend = self.client_conns[0].transport
        self.assertNotIn(backend, reactor.getReaders())
        # More arrives at the socket meanwhile: not read, not delivered.
        more[0].transport.write(b"".join(b"4\r\n%04d\r\n" % i for i in range(50, 100))
                                + b"0\r\n\r\n")
        await turns(10)
        self.assertEqual(len(collector.chunks), 1)
        self.assertIsNone(collector.reason)
        collector.transport.resumeProducing()
        body, reason = await collector.done
        self.assertEqual(body, b"".join(b"%04d" % i for i in range(100)))
        self.assertTrue(reason.check(ResponseDone))
        # Resumed and back in the pool.
        self.assertIn(backend, reactor.getReaders())
        await read(await self.get(client, base + b"/ok"))
        self.assertEqual(len(factory.connections), 1)

    async def test_pause_within_buffered_delivery(self) -> None:
        factory, base = self.serve(answer(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"".join(b"1\r\n%d\r\n" % i for i in range(5)) + b"0\r\n\r\n"))
        client = self.make_client()
        response = await self.get(client, base + b"/")
        # Everything arrives before deliverBody (the Deferred fires from
        # within the parser, before it reads on); pause on each piece.
        await turns(3)
        collector = Collector(on_data=lambda c, data: c.transport.pauseProducing())
        response.deliverBody(collector)
        for n in range(1, 6):
            self.assertEqual(len(collector.chunks), n)
            self.assertIsNone(collector.reason)
            collector.transport.resumeProducing()
        body, reason = await collector.done
        self.assertEqual(body, b"01234")
        self.assertTrue(reason.check(ResponseDone))

    async def test_body_before_deliver_body_is_kept(self) -> None:
        conns: List[ServerConnection] = []

        def respond(conn: ServerConnection, req: Received) -> None:
            if conns:
                conn.transport.write(ok())
                return
            conn.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello")
            conns.append(conn)

        factory, base = self.serve(respond)
        client = self.make_client()
        response = await self.get(client, base + b"/")
        # Not read while nobody takes the body.
        conns[0].transport.write(b" world")
        await turns(10)
        self.assertNotIn(self.client_conns[0].transport, reactor.getReaders())
        body, reason = await read(response)
        self.assertEqual(body, b"hello world")
        self.assertTrue(reason.check(ResponseDone))
        await read(await self.get(client, base + b"/"))
        self.assertEqual(len(factory.connections), 1)

    async def test_complete_body_before_deliver_body(self) -> None:
        factory, base = self.serve(answer(ok()))
        client = self.make_client()
        response = await self.get(client, base + b"/")
        await turns(5)
        # The connection went back to the pool; the body stayed with us.
        self.assertEqual(sum(len(v) for v in client._idle.values()), 1)
        body, reason = await read(response)
        self.assertEqual(body, JSON)
        self.assertTrue(reason.check(ResponseDone))

    async def test_body_protocol_error_fails_response(self) -> None:
        factory, base = self.serve(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234"))
        client = self.make_client()
        response = await self.get(client, base + b"/")

        def boom(collector: Collector, data: bytes) -> None:
            raise ZeroDivisionError()

        # The body protocol fails on the first piece: the connection is
        # given up and the protocol told so, as Twisted does.
        collector = Collector(on_data=boom)
        response.deliverBody(collector)
        body, reason = await collector.done
        self.assertTrue(reason.check(ResponseFailed))
        self.assertTrue(reason.value.reasons[0].check(ZeroDivisionError))
        await factory.connections[0].lost
        self.assertEqual(client._idle, {})
        self.flushLoggedErrors(ZeroDivisionError)

    # -- keep-alive rules (see also tests/security/test_backend_pool.py) -----------------

    def test_keep_alive_hint(self) -> None:
        # undici's rule: timeout=N allows N - 2 s, at most 600 s.
        self.assertEqual(keep_alive_hint([b"timeout=5"]), 3.0)
        self.assertEqual(keep_alive_hint([b"timeout=5, max=1000"]), 3.0)
        self.assertEqual(keep_alive_hint([b"max=1000, Timeout = 75"]), 73.0)
        self.assertEqual(keep_alive_hint([b"max=10", b"timeout=3"]), 1.0)
        self.assertEqual(keep_alive_hint([b"timeout=2"]), 0.0)
        self.assertEqual(keep_alive_hint([b"timeout=0"]), -2.0)
        self.assertEqual(keep_alive_hint([b"timeout=86400"]), 600.0)
        self.assertIsNone(keep_alive_hint([b"max=10"]))
        self.assertIsNone(keep_alive_hint([b"mytimeout=10"]))
        self.assertIsNone(keep_alive_hint([b"timeout=abc"]))

    async def test_idle_timeout_zero_never_pools(self) -> None:
        factory, base = self.serve(answer(ok()))
        client = self.make_client(idle_timeout=0)
        for _ in range(2):
            body, reason = await read(await self.get(client, base + b"/", b"POST", b"{}"))
            self.assertEqual(body, JSON)
        self.assertEqual(idle_count(client), 0)
        self.assertEqual([len(c.requests) for c in factory.connections], [1, 1])
        await DeferredList([c.lost for c in factory.connections])

    async def test_max_requests_per_connection(self) -> None:
        factory, base = self.serve(answer(ok()))
        client = self.make_client(max_requests=2)
        for _ in range(5):
            await read(await self.get(client, base + b"/", b"POST", b"{}"))
        self.assertEqual([len(c.requests) for c in factory.connections], [2, 2, 1])
        await DeferredList([c.lost for c in factory.connections[:2]])

    async def test_max_lifetime(self) -> None:
        clock = Clock()
        factory, base = self.serve(answer(ok()))
        client = self.make_client(clock=clock, max_lifetime=10.0)
        await read(await self.get(client, base + b"/"))
        clock.advance(3)
        await read(await self.get(client, base + b"/"))
        clock.advance(3)
        await read(await self.get(client, base + b"/"))
        clock.advance(3)
        await read(await self.get(client, base + b"/"))
        self.assertEqual([len(c.requests) for c in factory.connections], [4])
        clock.advance(1.5)
        # 10.5 s old: answered, then closed rather than pooled.
        await read(await self.get(client, base + b"/"))
        self.assertEqual(idle_count(client), 0)
        await factory.connections[0].lost

    async def test_no_retry_post_written_then_closed(self) -> None:
        # The backend read the whole POST, then closed without a byte: the
        # request may have been processed, so it is not sent again.
        listener, base = self.listen_raw()
        client = self.make_client()
        pending = self.get(client, base + b"/mcp", b"POST", b"{}")
        server = await self.accept_raw(listener, 1)
        recv_request(server)
        server.sendall(ok())
        await read(await pending)
        pending = self.get(client, base + b"/mcp", b"POST", b'{"id":2}')
        self.assertEqual(recv_request(server).body, b'{"id":2}')
        server.close()
        with self.assertRaises(ResponseNeverReceived):
            await pending
        listener.setblocking(False)
        with self.assertRaises(BlockingIOError):
            listener.accept()
        self.assertEqual(len(self.client_conns), 1)

    async def test_no_retry_delete_written_then_reset(self) -> None:
        # Go's isReplayable: GET, HEAD, OPTIONS, TRACE only.
        factory, pending = await self._dead_reused(b"DELETE")
        with self.assertRaises(ResponseNeverReceived):
            await pending
        self.assertEqual(len(factory.connections), 1)

    async def test_retry_get_written_then_reset_raw(self) -> None:
        listener, base = self.listen_raw()
        client = self.make_client()
        pending = self.get(client, base + b"/mcp")
        server = await self.accept_raw(listener, 1)
        recv_request(server)
        server.sendall(ok())
        await read(await pending)
        pending = self.get(client, base + b"/mcp")
        self.assertEqual(recv_request(server).method, b"GET")
        reset(server)
        fresh = await self.accept_raw(listener, 2)
        self.assertEqual(recv_request(fresh).method, b"GET")
        fresh.sendall(ok())
        body, reason = await read(await pending)
        self.assertEqual(body, JSON)

    async def test_bytes_while_idle_close_the_connection(self) -> None:
        # Bytes that arrive in a later read, once the connection is idle
        # and the reactor sees them.
        factory, base = self.serve(answer(ok()))
        client = self.make_client()
        await read(await self.get(client, base + b"/"))
        factory.connections[0].transport.write(ok(b"bogus"))
        await until(lambda: self.client_conns[0].lost)
        self.assertEqual(idle_count(client), 0)
        body, reason = await read(await self.get(client, base + b"/"))
        self.assertEqual(body, JSON)
        self.assertEqual(len(factory.connections), 2)

    async def test_extra_after_response_read_later(self) -> None:
        # Bytes after a response that nobody reads yet: the connection is
        # closed, not pooled; the body stays whole.
        def respond(conn: ServerConnection, req: Received) -> None:
            conn.transport.write(ok() + ok(b"bogus") if conn.index == 0 else ok(b"real"))

        factory, base = self.serve(respond)
        client = self.make_client()
        response = await self.get(client, base + b"/mcp", b"POST", b"{}")
        await factory.connections[0].lost
        self.assertEqual(idle_count(client), 0)
        self.assertEqual((await read(response))[0], JSON)
        response = await self.get(client, base + b"/mcp", b"POST", b"{}")
        self.assertEqual((await read(response))[0], b"real")


class UpstreamPoolTests(TestCase):
    def test_one_client_per_idle_timeout(self) -> None:
        from mcpgated.config import LimitsConfig
        from mcpgated.proxy.upstream import UpstreamPool

        pool = UpstreamPool(Clock(), LimitsConfig(1024, 1.0, 1.0, 1.0))
        default = pool.default_client()
        self.assertIs(pool.default_client(4.0), default)
        self.assertEqual(default.idle_timeout, 4.0)
        short = pool.default_client(1.0)
        self.assertIsNot(short, default)
        self.assertEqual(short.idle_timeout, 1.0)
