"""
The gateway listener's HTTP/1.1 server (L{mcpgated.proxy.http11}) as a
client sees it: the real reactor on 127.0.0.1, small test resources, and a
raw TCP client that sends bytes and reads what comes back.
"""

from __future__ import annotations

import json
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from mcpgated.jsonrpc import INVALID_REQUEST
from mcpgated.proxy.edge import (
    BODY,
    BUSY,
    HEAD,
    IDLE,
    ClientDeadlines,
    ClientTimeouts,
    host_problem,
)
from mcpgated.proxy.http11 import GatewayChannel, GatewayHTTPFactory, GatewayRequest
from mcpgated.site import jsonrpc_too_large
from tests.contract.harness import RawClient, Response, get, parse_responses, post, run
from tests.support import Firehose

MAX_BODY = 1000


# the client side: tests.contract.harness (Response, parse_responses, RawClient)


# --- the server side ------------------------------------------------------------------


class TrackedChannel(GatewayChannel):
    """
    A L{GatewayChannel} that says when its connection is gone, so cleanup can
    wait for the server's side of every connection.
    """

    def __init__(self, factory: GatewayHTTPFactory) -> None:
        super().__init__(factory)
        self.gone: Deferred = Deferred()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        super().connectionLost(reason)
        self.gone.callback(None)


class TrackedFactory(GatewayHTTPFactory):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.channels: List[TrackedChannel] = []

    def buildProtocol(self, addr: Any) -> GatewayChannel:
        channel = TrackedChannel(self)
        self.channels.append(channel)
        return channel


class Recorder:
    """
    A resource recording what it renders and answering with C{answer}; with
    no C{answer} the request is held for the test to answer.

    @ivar outcomes: per request, a L{Deferred} firing with L{None} when the
        answer finished, or the exception the connection was lost with.
    """

    def __init__(self, answer: Optional[Callable[[GatewayRequest], None]] = None) -> None:
        self.answer = answer
        self.requests: List[GatewayRequest] = []
        self.outcomes: List[Deferred] = []
        self.events: List[Tuple[str, bytes]] = []
        self._rendered: List[Tuple[int, Deferred]] = []

    def render(self, request: GatewayRequest) -> None:
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
                # Told on the next reactor turn, once the channel has done
                # all it does with the bytes it read.
                reactor.callLater(0, entry[1].callback, self.requests[entry[0]])

    def rendered(self, index: int = 0) -> Deferred:
        """
        Fires with the C{index}th request once it is rendered, after the
        read that led to it is handled.
        """
        waiter: Deferred = Deferred()
        if index < len(self.requests):
            waiter.callback(self.requests[index])
        else:
            self._rendered.append((index, waiter))
        return waiter

    def reply(self, request: GatewayRequest, body: bytes, code: int = 200) -> None:
        self.events.append(("finish", request.path))
        request.setResponseCode(code)
        request.setHeader(b"Content-Length", b"%d" % len(body))
        request.write(body)
        request.finish()


def echo(request: GatewayRequest) -> None:
    """
    Answers with what the request said, as JSON with a C{Content-Length}.
    """
    body = json.dumps({
        "method": request.method.decode(),
        "uri": request.uri.decode(),
        "path": request.path.decode(),
        "version": request.clientproto.decode(),
        "body": request.content.getvalue().decode("latin-1"),
        "headers": {name.decode(): [value.decode("latin-1") for value in values]
                    for name, values in request.requestHeaders.getAllRawHeaders()},
    }).encode()
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Content-Length", b"%d" % len(body))
    request.write(body)
    request.finish()


class HTTP11TestCase(TestCase):
    timeout = 10

    def listen(self, resource: Any, clock: Any = reactor, max_body: int = MAX_BODY,
               idle_timeout: float = 75.0) -> TrackedFactory:
        factory = TrackedFactory(resource, clock, max_body, jsonrpc_too_large,
                                 ClientTimeouts(header=idle_timeout, body=idle_timeout,
                                                keepalive=idle_timeout))
        self.port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.clients: List[RawClient] = []

        def cleanup() -> Deferred:
            for client in self.clients:
                if not client.closed:
                    client.transport.abortConnection()  # type: ignore[union-attr]
            for channel in factory.channels:
                if not channel.gone.called:
                    channel.transport.abortConnection()  # type: ignore[union-attr]
            waits = [client.lost for client in self.clients]
            waits += [channel.gone for channel in factory.channels]
            waits.append(self.port.stopListening())
            return gatherResults(waits)

        self.addCleanup(cleanup)
        return factory

    async def connect(self) -> RawClient:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)
        client = await connectProtocol(endpoint, RawClient())
        self.clients.append(client)
        return client

    async def refused(self, resource: Recorder, data: bytes) -> Response:
        """
        Sends C{data}, expects an answer and a connection closed by the
        server, and no request rendered.
        """
        client = await self.connect()
        client.send(data)
        received = await client.lost
        [response] = parse_responses(received, 1, closed=True) or [None]
        assert response is not None, received
        self.assertEqual(response.header("connection"), "close")
        self.assertEqual(response.header("content-type"), "application/json")
        self.assertEqual(len(response.body), int(response.header("content-length") or -1))
        self.assertEqual(resource.requests, [])
        return response

    def assertJsonRpcError(self, response: Response, status: int) -> Dict[str, Any]:
        self.assertEqual(response.code, status)
        message = json.loads(response.body)
        self.assertEqual(message["jsonrpc"], "2.0")
        self.assertEqual(message["error"]["code"], INVALID_REQUEST)
        self.assertEqual(message["error"]["data"], {"httpStatus": status})
        return message


# --- connections and framing ------------------------------------------------------------


class ConnectionTests(HTTP11TestCase):
    @run
    async def test_keep_alive(self) -> None:
        """
        Two requests, one after the other, on one connection are both
        answered; the answers carry a C{Date} and the resource's
        C{Content-Length}, and the connection stays open.
        """
        factory = self.listen(Recorder(echo))
        client = await self.connect()
        client.send(get(b"/one?x=1"))
        [first] = await client.responses(1)
        client.send(post(b"/two", b'{"jsonrpc":"2.0"}'))
        [_, second] = await client.responses(2)

        self.assertEqual(first.code, 200)
        self.assertEqual(json.loads(first.body)["path"], "/one")
        self.assertEqual(json.loads(first.body)["uri"], "/one?x=1")
        self.assertEqual(int(first.header("content-length") or -1), len(first.body))
        date = parsedate_to_datetime(first.header("date") or "")
        self.assertLess(abs(date.timestamp() - reactor.seconds()), 5)
        self.assertEqual(json.loads(second.body)["method"], "POST")
        self.assertEqual(json.loads(second.body)["body"], '{"jsonrpc":"2.0"}')
        self.assertIsNone(second.header("connection"))
        self.assertFalse(client.closed)
        self.assertEqual(len(factory.channels), 1)

    @run
    async def test_connection_close(self) -> None:
        """
        A request with C{Connection: close} is answered with it, then the
        server closes the connection.
        """
        self.listen(Recorder(echo))
        client = await self.connect()
        client.send(get(b"/", b"Connection: close\r\n"))
        received = await client.lost
        [response] = parse_responses(received, 1) or []
        self.assertEqual(response.code, 200)
        self.assertEqual(response.header("connection"), "close")

    @run
    async def test_http10_keep_alive(self) -> None:
        """
        An HTTP/1.0 client asking for keep-alive gets it when the length is
        known: C{Connection: keep-alive}, and a second answer on the same
        connection.
        """
        self.listen(Recorder(echo))
        client = await self.connect()
        client.send(get(b"/a", b"Connection: keep-alive\r\n", b"HTTP/1.0"))
        [first] = await client.responses(1)
        client.send(get(b"/b", b"Connection: keep-alive\r\n", b"HTTP/1.0"))
        [_, second] = await client.responses(2)
        self.assertEqual(first.header("connection"), "keep-alive")
        self.assertEqual(json.loads(second.body)["version"], "HTTP/1.0")
        self.assertFalse(client.closed)

    @run
    async def test_pipelining(self) -> None:
        """
        Two requests in one write are answered in order, and the second is
        rendered only once the first is finished.
        """
        resource = Recorder()
        self.listen(resource)
        client = await self.connect()
        client.send(get(b"/first") + get(b"/second"))
        first = await resource.rendered(0)
        self.assertEqual([r.path for r in resource.requests], [b"/first"])
        self.assertEqual(bytes(client.data), b"")

        resource.reply(first, b"one")
        second = await resource.rendered(1)
        resource.reply(second, b"two")
        responses = await client.responses(2)

        self.assertEqual([r.body for r in responses], [b"one", b"two"])
        self.assertEqual(resource.events, [("render", b"/first"), ("finish", b"/first"),
                                           ("render", b"/second"), ("finish", b"/second")])

    @run
    async def test_pipelined_burst(self) -> None:
        """
        Thousands of pipelined requests answered at once, as a resource
        answering synchronously does, are all answered, in order.
        """
        resource = Recorder(lambda request: resource.reply(request, request.path))
        self.listen(resource)
        client = await self.connect()
        count = 3000
        client.send(b"".join(get(b"/%d" % i) for i in range(count - 1))
                    + get(b"/last", b"Connection: close\r\n"))
        received = await client.lost
        responses = parse_responses(received, count) or []
        self.assertEqual(len(responses), count)
        self.assertEqual([r.body for r in responses],
                         [b"/%d" % i for i in range(count - 1)] + [b"/last"])

    @run
    async def test_chunked_without_length(self) -> None:
        """
        An answer without C{Content-Length} is chunked for an HTTP/1.1 client:
        one chunk per non-empty write, then C{0\\r\\n\\r\\n}; the connection
        stays open.
        """
        def answer(request: GatewayRequest) -> None:
            request.write(b"alpha")
            request.write(b"")
            request.write(b"beta gamma")
            request.finish()

        self.listen(Recorder(answer))
        client = await self.connect()
        client.send(get())
        [response] = await client.responses(1)
        self.assertEqual(response.header("transfer-encoding"), "chunked")
        self.assertIsNone(response.header("content-length"))
        self.assertEqual(response.chunks, (b"alpha", b"beta gamma"))
        self.assertTrue(bytes(client.data).endswith(
            b"\r\n\r\n5\r\nalpha\r\na\r\nbeta gamma\r\n0\r\n\r\n"))
        client.send(get())
        await client.responses(2)
        self.assertFalse(client.closed)

    @run
    async def test_http10_close_delimited(self) -> None:
        """
        For an HTTP/1.0 client an answer without C{Content-Length} is not
        chunked: the body is the bytes written, ended by closing.
        """
        def answer(request: GatewayRequest) -> None:
            request.write(b"alpha")
            request.write(b"beta")
            request.finish()

        self.listen(Recorder(answer))
        client = await self.connect()
        client.send(get(b"/", b"", b"HTTP/1.0"))
        received = await client.lost
        head, _, body = received.partition(b"\r\n\r\n")
        self.assertNotIn(b"transfer-encoding", head.lower())
        self.assertIn(b"\r\nConnection: close", head)
        self.assertEqual(body, b"alphabeta")

    @run
    async def test_head_has_no_body(self) -> None:
        """
        The answer to HEAD has the resource's headers, C{Content-Length}
        included, and no body: the next answer on the connection follows
        right after its head.
        """
        def answer(request: GatewayRequest) -> None:
            request.setHeader(b"Content-Length", b"11")
            request.write(b"hello world")
            request.finish()

        self.listen(Recorder(answer))
        client = await self.connect()
        client.send(get(b"/", method=b"HEAD"))
        [head] = await client.responses(1, no_body=[True])
        client.send(get(b"/"))
        [_, full] = await client.responses(2, no_body=[True, False])
        self.assertEqual(head.code, 200)
        self.assertEqual(head.header("content-length"), "11")
        self.assertEqual(full.body, b"hello world")
        self.assertEqual(bytes(client.data).count(b"hello world"), 1)

    @run
    async def test_no_content(self) -> None:
        """
        A 204 has neither body nor C{Content-Length}, whether the resource
        wrote a body and a length or only finished.
        """
        def answer(request: GatewayRequest) -> None:
            request.setResponseCode(204)
            if request.path == b"/wrote":
                request.setHeader(b"Content-Length", b"5")
                request.write(b"hello")
            request.finish()

        self.listen(Recorder(answer))
        client = await self.connect()
        client.send(get(b"/wrote"))
        await client.responses(1)
        client.send(get(b"/finished"))
        await client.responses(2)
        client.send(get(b"/wrote", b"Connection: close\r\n"))
        received = await client.lost
        responses = parse_responses(received, 3) or []
        self.assertEqual([r.code for r in responses], [204, 204, 204])
        for response in responses:
            self.assertIsNone(response.header("content-length"))
            self.assertIsNone(response.header("transfer-encoding"))
        self.assertNotIn(b"hello", received)
        self.assertTrue(received.endswith(b"\r\n\r\n"))


# --- request bodies ---------------------------------------------------------------------


class BodyTests(HTTP11TestCase):
    @run
    async def test_content_length_body(self) -> None:
        """
        A body framed by C{Content-Length} reaches the resource exactly,
        bytes that look like HTTP framing included.
        """
        resource = Recorder(lambda request: resource.reply(request, b""))
        self.listen(resource)
        client = await self.connect()
        body = b"\x00\xff\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n" + b"z" * (MAX_BODY - 34)
        client.send(post(b"/mcp", body))
        await client.responses(1)
        self.assertEqual(resource.requests[0].content.getvalue(), body)
        self.assertEqual(len(resource.requests), 1)

    @run
    async def test_chunked_body(self) -> None:
        """
        A chunked body reaches the resource as its chunks joined.
        """
        resource = Recorder(lambda request: resource.reply(request, b""))
        self.listen(resource)
        client = await self.connect()
        client.send(b"POST /mcp HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"6\r\nhello \r\n")
        client.send(b"8\r\nchunked \r\n5\r\nworld\r\n0\r\n\r\n")
        await client.responses(1)
        self.assertEqual(resource.requests[0].content.getvalue(), b"hello chunked world")

    @run
    async def test_body_at_limit(self) -> None:
        """
        A body of exactly C{max_body} bytes is accepted.
        """
        resource = Recorder(lambda request: resource.reply(request, b"ok"))
        self.listen(resource)
        client = await self.connect()
        client.send(post(b"/mcp", b"a" * MAX_BODY))
        [response] = await client.responses(1)
        self.assertEqual(response.code, 200)
        self.assertEqual(len(resource.requests[0].content.getvalue()), MAX_BODY)

    @run
    async def test_declared_length_over_limit(self) -> None:
        """
        A declared C{Content-Length} over the limit is refused with 413 and
        the JSON-RPC body from C{too_large_body}, before any body arrives;
        the hook sees the request and the resource never does.
        """
        resource = Recorder(echo)
        factory = self.listen(resource)
        rejected: List[GatewayRequest] = []
        factory.rejected_too_large = rejected.append
        response = await self.refused(
            resource, b"POST /mcp HTTP/1.1\r\nHost: gw.test\r\nContent-Length: %d\r\n\r\n"
            % (MAX_BODY + 1))
        self.assertJsonRpcError(response, 413)
        self.assertEqual(response.body, jsonrpc_too_large(MAX_BODY))
        self.assertEqual([r.path for r in rejected], [b"/mcp"])

    @run
    async def test_chunked_body_over_limit(self) -> None:
        """
        A chunked body that grows past the limit is refused with 413.
        """
        resource = Recorder(echo)
        factory = self.listen(resource)
        rejected: List[GatewayRequest] = []
        factory.rejected_too_large = rejected.append
        chunk = b"%x\r\n%s\r\n" % (600, b"c" * 600)
        response = await self.refused(
            resource, b"POST /mcp HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunk + chunk)
        self.assertJsonRpcError(response, 413)
        self.assertEqual(len(rejected), 1)

    @run
    async def test_expect_continue(self) -> None:
        """
        C{Expect: 100-continue} gets C{100 Continue} before the body is sent,
        then the final answer once it is.
        """
        resource = Recorder(echo)
        self.listen(resource)
        client = await self.connect()
        client.send(b"POST /mcp HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\n"
                    b"Expect: 100-continue\r\n\r\n")
        await client.until(lambda: True if b"\r\n\r\n" in client.data else None)
        self.assertEqual(bytes(client.data), b"HTTP/1.1 100 Continue\r\n\r\n")
        self.assertEqual(resource.requests, [])
        client.send(b"hello")
        interim, final = await client.responses(2)
        self.assertEqual(interim.code, 100)
        self.assertEqual(final.code, 200)
        self.assertEqual(json.loads(final.body)["body"], "hello")

    @run
    async def test_expect_continue_over_limit(self) -> None:
        """
        C{Expect: 100-continue} with a length over the limit gets 413, never
        C{100 Continue}.
        """
        resource = Recorder(echo)
        self.listen(resource)
        response = await self.refused(
            resource, b"POST /mcp HTTP/1.1\r\nHost: gw.test\r\nContent-Length: %d\r\n"
            b"Expect: 100-continue\r\n\r\n" % (MAX_BODY + 1))
        self.assertEqual(response.code, 413)


# --- refusals ---------------------------------------------------------------------------


class MalformedTests(HTTP11TestCase):
    @run
    async def test_bad_header_line(self) -> None:
        """
        A header line without a colon is answered 400 with a JSON-RPC error,
        and the connection closed.
        """
        resource = Recorder(echo)
        self.listen(resource)
        response = await self.refused(resource, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
        self.assertIn("Malformed HTTP request",
                      self.assertJsonRpcError(response, 400)["error"]["message"])

    @run
    async def test_bad_request_line(self) -> None:
        """
        A request line that is not HTTP is answered 400.
        """
        resource = Recorder(echo)
        self.listen(resource)
        response = await self.refused(resource, b"GET / SPDY/3\r\n\r\n")
        self.assertJsonRpcError(response, 400)

    @run
    async def test_length_and_chunked(self) -> None:
        """
        C{Content-Length} and C{Transfer-Encoding} together (request
        smuggling) are refused with 400, and what would be a second request
        in the body is never rendered.
        """
        resource = Recorder(echo)
        self.listen(resource)
        response = await self.refused(
            resource, b"POST /mcp HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n")
        self.assertJsonRpcError(response, 400)

    @run
    async def test_head_over_64k(self) -> None:
        """
        A complete head larger than 64 KB is refused with 431.
        """
        resource = Recorder(echo)
        self.listen(resource)
        response = await self.refused(
            resource, get(b"/", b"X-Big: " + b"a" * 70000 + b"\r\n"))
        self.assertJsonRpcError(response, 431)

    @run
    async def test_unfinished_head_over_64k(self) -> None:
        """
        A head still arriving past 64 KB is refused with 431 without waiting
        for its end.
        """
        resource = Recorder(echo)
        self.listen(resource)
        response = await self.refused(
            resource, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 66000)
        self.assertJsonRpcError(response, 431)

    @run
    async def test_256_header_fields(self) -> None:
        """
        256 header fields are accepted.
        """
        resource = Recorder(echo)
        self.listen(resource)
        client = await self.connect()
        client.send(get(b"/", b"".join(b"X-F%d: v\r\n" % i for i in range(255))))
        [response] = await client.responses(1)
        self.assertEqual(response.code, 200)
        self.assertEqual(len(json.loads(response.body)["headers"]), 256)

    @run
    async def test_too_many_header_fields(self) -> None:
        """
        More than 256 header fields are refused with 400 saying so.
        """
        resource = Recorder(echo)
        self.listen(resource)
        response = await self.refused(
            resource, get(b"/", b"".join(b"X-F%d: v\r\n" % i for i in range(256))))
        message = self.assertJsonRpcError(response, 400)["error"]["message"]
        self.assertIn("too many header fields", message)


# --- the exchange's lifetime --------------------------------------------------------------


class LifetimeTests(HTTP11TestCase):
    @run
    async def test_client_leaves(self) -> None:
        """
        A client leaving while its request is held makes C{notifyFinish}
        fail; writing and finishing after that do not raise.
        """
        resource = Recorder()
        self.listen(resource)
        client = await self.connect()
        client.send(get(b"/held"))
        request = await resource.rendered(0)
        client.transport.loseConnection()  # type: ignore[union-attr]
        reason = await resource.outcomes[0]
        self.assertIsInstance(reason, (ConnectionDone, ConnectionLost))
        request.write(b"late")
        request.finish()

    @run
    async def test_backpressure(self) -> None:
        """
        A client that stops reading pauses the resource's producer; once it
        reads again the producer is resumed, and the whole body arrives.
        """
        total = 8 * 1024 * 1024
        firehoses: List[Firehose] = []

        def answer(request: GatewayRequest) -> None:
            request.setHeader(b"Content-Length", b"%d" % total)
            firehoses.append(Firehose(request, total))
            firehoses[0].start()

        resource = Recorder(answer)
        self.listen(resource)
        client = await self.connect()
        client.transport.pauseProducing()  # type: ignore[union-attr]
        client.send(get(b"/firehose"))
        await resource.rendered(0)
        firehose = firehoses[0]
        produced = await firehose.was_paused
        self.assertLess(produced, total)
        self.assertEqual(len(client.data), 0)

        client.transport.resumeProducing()  # type: ignore[union-attr]
        await firehose.was_resumed
        await client.until(lambda: True if b"\r\n\r\n" in client.data else None)
        head_size = bytes(client.data[:70000]).index(b"\r\n\r\n") + 4
        await client.received(head_size + total)
        [response] = parse_responses(bytes(client.data), 1) or []
        self.assertEqual(response.code, 200)
        self.assertEqual(response.body, b"".join(Firehose.chunk(i)
                                                 for i in range(total // Firehose.size)))
        self.assertEqual(await resource.outcomes[0], None)

    @run
    async def test_idle_timeout(self) -> None:
        """
        A keep-alive connection idle for C{idle_timeout} is closed; one idle
        for less is not.
        """
        clock = Clock()
        self.listen(Recorder(echo), clock=clock, idle_timeout=10)
        client = await self.connect()
        client.send(get(b"/a"))
        await client.responses(1)
        clock.advance(9)
        client.send(get(b"/b"))
        await client.responses(2)
        self.assertFalse(client.closed)
        clock.advance(11)
        await client.lost
        self.assertEqual(clock.getDelayedCalls(), [])

    @run
    async def test_no_idle_timeout_while_answering(self) -> None:
        """
        A request held past C{idle_timeout} keeps its connection: its answer
        arrives, and the connection still serves the next request.
        """
        clock = Clock()
        resource = Recorder()
        self.listen(resource, clock=clock, idle_timeout=10)
        client = await self.connect()
        client.send(get(b"/held"))
        request = await resource.rendered(0)
        clock.advance(25)
        resource.reply(request, b"late answer")
        [response] = await client.responses(1)
        self.assertEqual(response.body, b"late answer")
        client.send(get(b"/next"))
        resource.reply(await resource.rendered(1), b"next answer")
        [_, response] = await client.responses(2)
        self.assertEqual(response.body, b"next answer")
        self.assertFalse(client.closed)
        clock.advance(10)
        await client.lost

    @run
    async def test_request_attributes(self) -> None:
        """
        The request says it is not secure, names the client's address,
        parses the query into C{args}, and C{getHeader} is case-insensitive
        and returns the last value.
        """
        def answer(request: GatewayRequest) -> None:
            address = request.getClientAddress()
            body = json.dumps({
                "secure": request.isSecure(),
                "client": [address.host, address.port],
                "args": {k.decode(): [v.decode() for v in vs] for k, vs in request.args.items()},
                "dup": request.getHeader(b"x-DUP").decode(),
                "type": request.getHeader(b"content-type").decode(),
                "missing": request.getHeader(b"X-Missing"),
            }).encode()
            request.setHeader(b"Content-Length", b"%d" % len(body))
            request.write(body)
            request.finish()

        self.listen(Recorder(answer))
        client = await self.connect()
        client.send(get(b"/q?a=1&a=2&b=",
                        b"X-Dup: one\r\nx-dup: two\r\nCONTENT-TYPE: text/plain\r\n"))
        [response] = await client.responses(1)
        seen = json.loads(response.body)
        self.assertEqual(seen, {
            "secure": False,
            "client": ["127.0.0.1", client.transport.getHost().port],  # type: ignore[union-attr]
            "args": {"a": ["1", "2"], "b": [""]},
            "dup": "two",
            "type": "text/plain",
            "missing": None,
        })


# --- the edge rules both servers share (mcpgated.proxy.edge) ----------------------------


class EdgeRuleTests(TestCase):
    def test_host_rule(self) -> None:
        """
        Exactly one valid Host for HTTP/1.1; none is fine for HTTP/1.0;
        validity as nginx's, with "," refused.
        """
        ok = [b"gw.test", b"GW.test:8082", b"127.0.0.1", b"[::1]", b"[::1]:443", b"a_b~c-d",
              b"x.example.", b"h:", b"xn--bcher-kva.example", b"%41.test"]
        bad = [b"", b"a,b", b"a b", b"a..b", b"a/b", b"a\\b", b"u@h", b"h:65536", b"h:1:2",
               b"[::1", b"h:port", b"h\x00", b"h\x7f"]
        for value in ok:
            self.assertIsNone(host_problem([value], b"HTTP/1.1"), value)
        for value in bad:
            self.assertEqual(host_problem([value], b"HTTP/1.1"),
                             "The request's Host header is not a valid host", value)
        self.assertEqual(host_problem(None, b"HTTP/1.1"), "The request has no Host header")
        self.assertIsNone(host_problem(None, b"HTTP/1.0"))
        self.assertEqual(host_problem([b"a", b"a"], b"HTTP/1.0"),
                         "The request has more than one Host header")

    def test_deadlines_follow_the_phase(self) -> None:
        """
        One timer serves every phase: a head begun just after an answer
        expires at its own deadline (before the keep-alive one would); body
        reads push the body deadline; an answer in progress never expires.
        """
        clock = Clock()
        expired: List[int] = []
        deadlines = ClientDeadlines(clock, ClientTimeouts(header=10, body=5, keepalive=30),
                                    expired.append)
        deadlines.start()
        clock.advance(1)
        deadlines.set(BUSY, clock.seconds())
        clock.advance(100)
        self.assertEqual(expired, [])
        deadlines.set(IDLE, clock.seconds())  # answered at 101
        clock.advance(2)
        deadlines.set(HEAD, clock.seconds())  # a head begins at 103
        clock.advance(9.5)
        self.assertEqual(expired, [])
        deadlines.set(BODY, clock.seconds())  # complete at 112.5
        for _ in range(6):
            clock.advance(4)
            deadlines.since = clock.seconds()  # a body read
        self.assertEqual(expired, [])
        clock.advance(5)
        self.assertEqual(expired, [BODY])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_keepalive_and_fresh_head_deadlines(self) -> None:
        clock = Clock()
        expired: List[int] = []
        deadlines = ClientDeadlines(clock, ClientTimeouts(header=10, body=5, keepalive=30),
                                    expired.append)
        deadlines.start()
        clock.advance(9.9)
        self.assertEqual(expired, [])
        clock.advance(0.1)
        self.assertEqual(expired, [HEAD])
        expired.clear()
        deadlines.start()
        deadlines.set(IDLE, clock.seconds())
        clock.advance(29)
        self.assertEqual(expired, [])
        clock.advance(1)
        self.assertEqual(expired, [IDLE])
        deadlines.stop()


def test_notify_gone_calls_back_only_when_the_client_goes_first() -> None:
    from twisted.internet.error import ConnectionLost
    from twisted.python.failure import Failure

    from mcpgated.proxy.http11 import GatewayRequest

    calls: List[Any] = []
    reason = Failure(ConnectionLost("gone"))
    lost = GatewayRequest(None)  # type: ignore[arg-type]
    lost.notify_gone(lambda why, arg: calls.append((why, arg)), "one")
    lost._lost(reason)
    lost._lost(reason)  # once only
    late = GatewayRequest(None)  # type: ignore[arg-type]
    late._lost(reason)
    late.notify_gone(lambda why, arg: calls.append((why, arg)), "two")  # already gone: at once
    done = GatewayRequest(None)  # type: ignore[arg-type]
    done.finished = True
    done.notify_gone(lambda why, arg: calls.append((why, arg)), "three")  # answered: never
    assert calls == [(reason, "one"), (reason, "two")]
