"""
The relay under stress, in one reactor over real loopback sockets: the
gateway resource, Twisted backends that misbehave on purpose, and raw
clients that stall or leave.
"""

from __future__ import annotations

import gc
import json
from typing import Any, List, Optional

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from mcpgated.config import LimitsConfig
from mcpgated.logs import AccessLog
from mcpgated.model import STARTED, ApiDefinition, ApiRecord, Plan
from mcpgated.proxy.resource import GatewayResource
from mcpgated.proxy.upstream import UpstreamPool
from mcpgated.routing import RouteTable
from mcpgated.proxy.http11 import GatewayHTTPFactory
from mcpgated.site import jsonrpc_too_large
from tests.support import Firehose


class Backend(Resource):
    isLeaf = True

    def __init__(self) -> None:
        Resource.__init__(self)
        self.firehose: Optional[Firehose] = None
        self.gone: List[Deferred] = []
        self.requests: List[Any] = []
        self.arrived: Deferred = Deferred()

    def render(self, request: Any) -> Any:
        self.requests.append(request)
        # gone[i] fires True when request i's connection was lost before
        # the response finished, False when it finished normally.
        lost: Deferred = Deferred()
        request.notifyFinish().addCallbacks(lambda _: lost.callback(False),
                                            lambda _: lost.callback(True))
        self.gone.append(lost)
        if not self.arrived.called:
            self.arrived.callback(request)
        path = request.path
        if path == b"/firehose":
            request.setHeader(b"content-type", b"application/octet-stream")
            self.firehose = Firehose(request, 64 * 1024 * 1024, later=reactor.callLater).start()
            return NOT_DONE_YET
        if path == b"/events":
            request.setHeader(b"content-type", b"text/event-stream")
            request.write(b"id: 1\ndata: {\"first\":true}\n\n")
            return NOT_DONE_YET
        if path == b"/reset":
            request.setHeader(b"content-type", b"text/event-stream")
            request.write(b"data: {\"partial\":true}\n\n")
            # Close once the bytes are out, without the final chunk: a cut stream.
            request.transport.loseConnection()
            return NOT_DONE_YET
        if path == b"/hang":
            return NOT_DONE_YET
        if path == b"/echo":
            request.setHeader(b"content-type", b"application/json")
            seen = {k.decode().lower(): [x.decode() for x in v]
                    for k, v in request.requestHeaders.getAllRawHeaders()}
            return json.dumps({"headers": seen, "uri": request.uri.decode(),
                               "body": request.content.read().decode()}).encode()
        request.setResponseCode(404)
        return b"no"


class RawClient(Protocol):
    """
    Sends one request, keeps what arrives, can stop reading.
    """

    def __init__(self, request: bytes, stall_after: Optional[int] = None) -> None:
        self.request = request
        self.stall_after = stall_after
        self.received = bytearray()
        self.closed: Deferred = Deferred()
        self.stalled: Deferred = Deferred()
        self.first_data: Deferred = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if not self.first_data.called:
            self.first_data.callback(None)
        if self.stall_after is not None and len(self.received) >= self.stall_after \
                and not self.stalled.called:
            self.transport.pauseProducing()
            self.stalled.callback(len(self.received))

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)


class RelayTests(TestCase):
    def setUp(self) -> Deferred:
        return Deferred.fromCoroutine(self._setUp())

    async def _setUp(self) -> None:
        self.backend = Backend()
        self.backend_port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Site(self.backend))
        self.addCleanup(self.backend_port.stopListening)
        await self.start_gateway(LimitsConfig(max_body=4096, connect_timeout=5.0,
                                              header_timeout=5.0, idle_timeout=30.0))

    async def start_gateway(self, limits: LimitsConfig, backend: Optional[str] = None) -> None:
        routes = RouteTable()
        backend = backend or f"http://127.0.0.1:{self.backend_port.getHost().port}"
        definition = ApiDefinition("t", "1", "", "/api", backend, (Plan("Keyless"),))
        routes.load([ApiRecord("api-1", definition, definition, STARTED, 0.0, 0.0, 0.0)])
        self.upstreams = UpstreamPool(reactor=reactor, limits=limits)
        self.addCleanup(self.upstreams.stopService)
        resource = GatewayResource(routes=routes, upstreams=self.upstreams, clock=reactor,
                                   access_log=AccessLog(reactor, None), limits=limits,
                                   allowed_hosts=("gw.test", "gw"))
        self.addCleanup(resource.stop)
        site = GatewayHTTPFactory(resource, reactor, limits.max_body, jsonrpc_too_large)
        self.gateway_port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
        self.addCleanup(self.gateway_port.stopListening)

    async def connect(self, path: bytes, stall_after: Optional[int] = None,
                      method: bytes = b"GET", body: bytes = b"",
                      extra: bytes = b"") -> RawClient:
        if body and b"content-type:" not in extra.lower():
            extra += b"Content-Type: application/json\r\n"  # JSON-RPC bodies need it (415)
        request = (method + b" " + path + b" HTTP/1.1\r\nHost: gw.test\r\n" + extra
                   + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        client = RawClient(request, stall_after)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.gateway_port.getHost().port)
        protocol = await connectProtocol(endpoint, client)
        self.addCleanup(lambda: protocol.transport.abortConnection()
                        if protocol.transport.connected else None)
        return client

    # --- backpressure ----------------------------------------------------------------------

    async def _backpressure(self) -> None:
        client = await self.connect(b"/api/firehose", stall_after=256 * 1024)
        await client.stalled
        backend = self.backend.firehose
        assert backend is not None
        await backend.was_paused
        # The backend is held back by the stalled client, not by a buffer in
        # the gateway: over a full second it stays within socket buffers.
        before = backend.produced
        await deferLater(reactor, 1.0, lambda: None)
        self.assertTrue(backend.paused)
        self.assertLess(backend.produced, 32 * 1024 * 1024)
        self.assertLess(backend.produced - before, 8 * 1024 * 1024)
        # When the client reads again, the whole stream arrives.
        client.transport.resumeProducing()
        self.assertFalse(await self.backend.gone[0])
        self.assertEqual(backend.produced, 64 * 1024 * 1024)

    def test_stalled_client_pauses_backend(self) -> Deferred:
        return Deferred.fromCoroutine(self._backpressure())

    async def _resume(self) -> None:
        client = await self.connect(b"/api/firehose", stall_after=256 * 1024)
        await client.stalled
        await self.backend.firehose.was_paused
        client.transport.resumeProducing()
        self.assertFalse(await self.backend.gone[0])
        self.assertEqual(self.backend.firehose.produced, 64 * 1024 * 1024)

    def test_stream_completes_after_stall(self) -> Deferred:
        return Deferred.fromCoroutine(self._resume())

    # --- disconnects ----------------------------------------------------------------------

    async def _client_leaves(self) -> None:
        client = await self.connect(b"/api/events")
        await client.first_data
        self.assertIn(b'data: {"first":true}', client.received)
        client.transport.loseConnection()
        # The backend sees its connection closed: the upstream request was aborted.
        self.assertTrue(await self.backend.gone[0])

    def test_client_disconnect_aborts_upstream(self) -> Deferred:
        return Deferred.fromCoroutine(self._client_leaves())

    async def _client_leaves_before_headers(self) -> None:
        client = await self.connect(b"/api/hang")
        await self.backend.arrived
        client.transport.loseConnection()
        self.assertTrue(await self.backend.gone[0])

    def test_client_disconnect_before_headers_aborts_upstream(self) -> Deferred:
        return Deferred.fromCoroutine(self._client_leaves_before_headers())

    async def _reset(self) -> None:
        client = await self.connect(b"/api/reset")
        await client.closed
        self.assertIn(b"200 OK", client.received)
        self.assertIn(b'data: {"partial":true}', client.received)
        # A cut stream must not look complete: no terminating chunk.
        self.assertFalse(client.received.endswith(b"0\r\n\r\n"))

    def test_backend_reset_mid_stream_aborts_client(self) -> Deferred:
        return Deferred.fromCoroutine(self._reset())

    # --- errors the gateway makes ---------------------------------------------------------

    async def _status_and_body(self, client: RawClient) -> Any:
        await client.closed
        head, _, body = client.received.partition(b"\r\n\r\n")
        status = int(head.split(b" ")[1])
        return status, head, json.loads(body)

    async def _timeout(self) -> None:
        self.gateway_port.stopListening()
        await self.start_gateway(LimitsConfig(max_body=4096, connect_timeout=5.0,
                                              header_timeout=0.3, idle_timeout=30.0))
        body = b'{"jsonrpc":"2.0","id":"slow-1","method":"tools/call"}'
        client = await self.connect(b"/api/hang", method=b"POST", body=body,
                                    extra=b"Connection: close\r\n")
        status, head, message = await self._status_and_body(client)
        self.assertEqual(status, 504)
        self.assertIn(b"application/json", head.lower())
        self.assertEqual(message["id"], "slow-1")
        self.assertEqual(message["jsonrpc"], "2.0")
        # and the hung upstream request was abandoned
        self.assertTrue(await self.backend.gone[0])

    def test_backend_header_timeout_is_504(self) -> Deferred:
        return Deferred.fromCoroutine(self._timeout())

    async def _idle(self) -> None:
        self.gateway_port.stopListening()
        await self.start_gateway(LimitsConfig(max_body=4096, connect_timeout=5.0,
                                              header_timeout=5.0, idle_timeout=0.3))
        client = await self.connect(b"/api/events")
        await client.closed
        self.assertIn(b'data: {"first":true}', client.received)
        self.assertTrue(await self.backend.gone[0])

    def test_idle_stream_is_closed_by_watchdog(self) -> Deferred:
        return Deferred.fromCoroutine(self._idle())

    async def _down(self) -> None:
        probe = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(Resource()))
        dead = probe.getHost().port
        await probe.stopListening()
        self.gateway_port.stopListening()
        await self.start_gateway(LimitsConfig(max_body=4096, connect_timeout=5.0,
                                              header_timeout=5.0, idle_timeout=30.0),
                                 backend=f"http://127.0.0.1:{dead}/mcp")
        client = await self.connect(b"/api", method=b"POST",
                                    body=b'{"jsonrpc":"2.0","id":7,"method":"ping"}',
                                    extra=b"Connection: close\r\n")
        status, head, message = await self._status_and_body(client)
        self.assertEqual(status, 502)
        self.assertEqual(message["id"], 7)
        self.assertIn("unreachable", message["error"]["message"])

    def test_backend_down_is_502(self) -> Deferred:
        return Deferred.fromCoroutine(self._down())

    async def _too_large(self) -> None:
        client = await self.connect(b"/api/echo", method=b"POST", body=b"{" + b" " * 5000 + b"}")
        status, head, message = await self._status_and_body(client)
        self.assertEqual(status, 413)
        self.assertEqual(message["jsonrpc"], "2.0")
        self.assertIn("4 KB", message["error"]["message"])
        self.assertEqual(self.backend.requests, [])

    def test_oversize_body_is_413_and_never_reaches_backend(self) -> Deferred:
        return Deferred.fromCoroutine(self._too_large())

    async def _chunked_too_large(self) -> None:
        chunk = b"a" * 3000
        request = (b"POST /api/echo HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + b"%x\r\n" % len(chunk) + chunk + b"\r\n" + b"%x\r\n" % len(chunk) + chunk
                   + b"\r\n0\r\n\r\n")
        client = RawClient(request)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.gateway_port.getHost().port)
        await connectProtocol(endpoint, client)
        await client.closed
        self.assertTrue(client.received.startswith(b"HTTP/1.1 413"))
        self.assertEqual(self.backend.requests, [])

    def test_chunked_oversize_body_is_413(self) -> Deferred:
        return Deferred.fromCoroutine(self._chunked_too_large())

    # --- headers --------------------------------------------------------------------------

    async def _headers(self) -> None:
        client = await self.connect(
            b"/api/echo?x=1", method=b"POST", body=b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
            extra=(b"Connection: X-Secret-Hop, close\r\nX-Secret-Hop: 1\r\nKeep-Alive: 5\r\n"
                   b"Mcp-Session-Id: s-1\r\nMCP-Protocol-Version: 2025-11-25\r\n"
                   b"Mcp-Method: tools/call\r\nMcp-Name: =?base64?ZWNobw==?=\r\n"
                   b"Mcp-Param-Region: eu\r\nAuthorization: Bearer abc\r\n"
                   b"Last-Event-ID: 9\r\nX-Forwarded-For: 6.6.6.6\r\n"),
        )
        status, head, seen = await self._status_and_body(client)
        self.assertEqual(status, 200)
        headers = seen["headers"]
        for name, value in [("mcp-session-id", "s-1"), ("mcp-protocol-version", "2025-11-25"),
                            ("mcp-method", "tools/call"), ("mcp-name", "=?base64?ZWNobw==?="),
                            ("mcp-param-region", "eu"), ("authorization", "Bearer abc"),
                            ("last-event-id", "9")]:
            self.assertEqual(headers.get(name), [value], name)
        self.assertNotIn("x-secret-hop", headers)
        self.assertNotIn("keep-alive", headers)
        port = self.backend_port.getHost().port
        self.assertEqual(headers["host"], [f"127.0.0.1:{port}"])
        # an untrusted client's X-Forwarded-For is replaced, not extended
        self.assertEqual(headers["x-forwarded-for"], ["127.0.0.1"])
        self.assertEqual(headers["x-forwarded-proto"], ["http"])
        self.assertEqual(headers["x-forwarded-host"], ["gw.test"])
        self.assertEqual(seen["uri"], "/echo?x=1")

    def test_end_to_end_headers_forwarded_hop_by_hop_dropped(self) -> Deferred:
        return Deferred.fromCoroutine(self._headers())

    # --- DNS rebinding ---------------------------------------------------------------------

    async def _rebinding(self) -> None:
        for extra, expected in [(b"", 200), (b"Origin: http://localhost:6274\r\n", 200),
                                (b"Origin: http://evil.example\r\n", 403)]:
            client = await self.connect(b"/api/echo", method=b"POST", body=b"{}",
                                        extra=b"Connection: close\r\n" + extra)
            status, head, body = await self._status_and_body(client)
            self.assertEqual(status, expected, extra)
        request = (b"POST /api/echo HTTP/1.1\r\nHost: evil.example.com\r\nConnection: close\r\n"
                   b"Content-Length: 2\r\n\r\n{}")
        client = RawClient(request)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.gateway_port.getHost().port)
        await connectProtocol(endpoint, client)
        status, head, body = await self._status_and_body(client)
        self.assertEqual(status, 403)
        self.assertEqual(body["error"]["message"],
                         "Host header not allowed by this gateway ([gateway] allowed_hosts)")
        self.assertEqual(len(self.backend.requests), 2)

    def test_foreign_host_or_origin_on_loopback_is_refused(self) -> Deferred:
        return Deferred.fromCoroutine(self._rebinding())

    # --- memory ------------------------------------------------------------------------------

    async def _garbage(self) -> None:
        async def exchanges(n: int) -> None:
            for _ in range(n):
                client = await self.connect(b"/api/echo", method=b"POST", body=b"{}",
                                            extra=b"Connection: close\r\n")
                status, _, _ = await self._status_and_body(client)
                self.assertEqual(status, 200)

        await exchanges(3)  # caches and pools warm
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            await exchanges(20)
            gc.collect()
            left = sorted({f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage
                           if type(o).__module__.startswith("mcpgated")})
        finally:
            gc.set_debug(0)
            del gc.garbage[:]
        self.assertEqual(left, [])

    def test_exchanges_leave_no_cyclic_garbage(self) -> Deferred:
        """
        The gateway's per-request objects are freed by reference counting:
        no cycles for the garbage collector to find after an exchange.
        """
        return Deferred.fromCoroutine(self._garbage())
