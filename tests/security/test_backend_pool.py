"""
The backend keep-alive pool (issue #11, item 10): a connection is reused
only when nothing can cross from one response into the next request.

  - Bytes after a complete response (a second, unasked-for response, part of
    one, garbage) never become the next request's response, even when that
    request is sent from the first response's end; the connection is closed.
  - A response's C{Keep-Alive: timeout=N} shortens the idle time to N - 2 s
    (undici); N <= 2 means no reuse; the idle deadline holds even when the
    timer is late.
  - A pooled connection the backend closed (FIN or RST) or wrote to, while
    the reactor has not noticed yet, is not written to: the request goes on
    a new connection instead of failing with 502.
  - A connection whose request is still partly queued is not pooled.
  - The per-API pool idle timeout (C{backendKeepAlive.idleTimeoutSeconds}),
    validated by the admin API.

In-process tests drive a real client against loopback servers; the daemon
tests put a real gateway between an HTTP client and a raw-socket backend.
"""

from __future__ import annotations

import json
import select
import socket
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import ResponseDone

from tests.raw_backend import RawBackend, RawConnection, RawRequest
from tests.support import deploy, http
from tests.test_backend_client import (
    JSON,
    ClientHarness,
    Collector,
    Received,
    ServerConnection,
    idle_count,
    ok,
    read,
    recv_request,
    reset,
    until,
)

REAL = b'{"jsonrpc":"2.0","id":2,"result":{"real":true}}'
BOGUS = b'{"jsonrpc":"2.0","id":2,"result":{"bogus":true}}'

# What a broken backend may send after a complete response.
EXTRA = {
    "second response": ok(BOGUS),
    "two responses": ok(BOGUS) + ok(BOGUS),
    "partial response": b"HTTP/1.1 2",
    "partial head": b"HTTP/1.1 200 OK\r\nContent-Length: 48\r\n",
    "garbage": b"XYZ garbage\r\n",
    "crlf then response": b"\r\n" + ok(BOGUS),
}
# Complete first responses of several framings.
FIRST = {
    "content-length": ok(),
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
               % (len(JSON), JSON),
    "chunked with trailer": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"%x\r\n%s\r\n0\r\nX-T: 1\r\n\r\n" % (len(JSON), JSON),
    "204": b"HTTP/1.1 204 No Content\r\n\r\n",
    "100 then 200": b"HTTP/1.1 100 Continue\r\n\r\n" + ok(),
}


class ExtraBytesTests(ClientHarness, TestCase):
    """
    A complete response followed, in the same write, by bytes nobody asked
    for; the next request is sent from inside the first response's end (as
    the gateway does for a pipelined client request).
    """

    async def _check(self, first: bytes, extra: bytes) -> None:
        def respond(conn: ServerConnection, req: Received) -> None:
            if conn.index == 0 and len(conn.requests) == 1:
                conn.transport.write(first + extra)
            else:
                conn.transport.write(ok(REAL))

        factory, base = self.serve(respond)
        client = self.make_client()
        second: List[Deferred] = []

        class SendsNext(Collector):
            def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
                second.append(client.request(b"POST", base + b"/mcp", None, b'{"id":2}'))
                super().connectionLost(reason)

        response = await client.request(b"POST", base + b"/mcp", None, b'{"id":1}')
        collector = SendsNext()
        response.deliverBody(collector)
        body, reason = await collector.done
        self.assertTrue(reason.check(ResponseDone), reason)
        self.assertEqual(body, b"" if response.code == 204 else JSON)
        body, reason = await read(await second[0])
        self.assertEqual(body, REAL)
        self.assertTrue(reason.check(ResponseDone), reason)
        # The first connection was closed; the second request went on a new one.
        await factory.connections[0].lost
        self.assertEqual([len(c.requests) for c in factory.connections], [1, 1])



def _variant(first: bytes, extra: bytes) -> Callable[[ExtraBytesTests], Any]:
    async def test(self: ExtraBytesTests) -> None:
        await self._check(first, extra)
    return test


# One test per variant: every one must hold on its own.
for _name, _extra in EXTRA.items():
    setattr(ExtraBytesTests, "test_after_content_length_" + _name.replace(" ", "_"),
            _variant(FIRST["content-length"], _extra))
for _name, _first in FIRST.items():
    setattr(ExtraBytesTests, "test_after_" + _name.replace(" ", "_").replace("-", "_"),
            _variant(_first, EXTRA["second response"]))


class KeepAliveHintTests(ClientHarness, TestCase):
    """
    C{Keep-Alive: timeout=N}: N - 2 s of idleness at most; N <= 2: no reuse.
    """

    async def _not_pooled(self, hint: bytes) -> None:
        factory, base = self.serve(lambda conn, req: conn.transport.write(
            ok(extra=b"Keep-Alive: " + hint + b"\r\n")))
        client = self.make_client()
        for _ in range(2):
            body, reason = await read(await client.request(b"POST", base + b"/", None, b"{}"))
            self.assertEqual(body, JSON)
        self.assertEqual([len(c.requests) for c in factory.connections], [1, 1])
        await factory.connections[0].lost

    async def test_hint_1(self) -> None:
        await self._not_pooled(b"timeout=1")

    async def test_hint_2(self) -> None:
        await self._not_pooled(b"timeout=2")

    async def test_hint_0(self) -> None:
        await self._not_pooled(b"timeout=0")

    async def test_hint_upper_case(self) -> None:
        await self._not_pooled(b"TIMEOUT=2")

    async def test_hint_after_max(self) -> None:
        await self._not_pooled(b"max=100, timeout=1")

    async def test_hint_with_spaces(self) -> None:
        await self._not_pooled(b"timeout = 2, max=5")

    async def test_hint_in_a_second_header_line(self) -> None:
        factory, base = self.serve(lambda conn, req: conn.transport.write(
            ok(extra=b"Keep-Alive: max=5\r\nKeep-Alive: timeout=2\r\n")))
        client = self.make_client()
        for _ in range(2):
            await read(await client.request(b"GET", base + b"/", None, None))
        self.assertEqual(len(factory.connections), 2)

    async def test_hint_shortens_idle_timeout(self) -> None:
        clock = Clock()
        factory, base = self.serve(lambda conn, req: conn.transport.write(
            ok(extra=b"Keep-Alive: timeout=5, max=100\r\n")))
        client = self.make_client(clock=clock, idle_timeout=4.0)
        await read(await client.request(b"GET", base + b"/", None, None))
        clock.advance(2.9)
        self.assertEqual(idle_count(client), 1)
        clock.advance(0.2)
        # 3 s = 5 - 2: closed, not at the client's 4 s.
        self.assertEqual(idle_count(client), 0)
        await factory.connections[0].lost

    async def test_shorter_hint_rearms_the_timer(self) -> None:
        clock = Clock()

        def respond(conn: ServerConnection, req: Received) -> None:
            hint = b"Keep-Alive: timeout=3\r\n" if req.target == b"/short" else b""
            conn.transport.write(ok(extra=hint))

        factory, base = self.serve(respond)
        client = self.make_client(clock=clock, idle_timeout=4.0)
        # Two connections at once: one without a hint, one with 3 - 2 = 1 s.
        plain = client.request(b"GET", base + b"/plain", None, None)
        short = client.request(b"GET", base + b"/short", None, None)
        await read(await plain)
        await read(await short)
        self.assertEqual(idle_count(client), 2)
        clock.advance(1.05)
        self.assertEqual(idle_count(client), 1)
        clock.advance(3)
        self.assertEqual(idle_count(client), 0)

    async def test_expired_connection_not_reused_when_the_timer_is_late(self) -> None:
        clock = Clock()
        factory, base = self.serve(lambda conn, req: conn.transport.write(ok()))
        client = self.make_client(clock=clock, idle_timeout=4.0)
        await read(await client.request(b"GET", base + b"/", None, None))
        clock.rightNow += 5  # time passes; the sweep has not run yet
        await read(await client.request(b"POST", base + b"/", None, b"{}"))
        self.assertEqual([len(c.requests) for c in factory.connections], [1, 1])
        await factory.connections[0].lost


class StaleConnectionTests(ClientHarness, TestCase):
    """
    The backend closes (or writes to) the pooled connection just before the
    next request; the reactor has not seen it yet. Nothing of the POST may
    be written to that connection: it goes on a new one and succeeds.
    """

    async def _stale(self, spoil: Callable[[socket.socket], None]) -> None:
        listener, base = self.listen_raw()
        client = self.make_client()
        pending = client.request(b"POST", base + b"/mcp", None, b'{"id":1}')
        first = await self.accept_raw(listener, 1)
        recv_request(first)
        first.sendall(ok())
        await read(await pending)
        self.assertEqual(idle_count(client), 1)

        spoil(first)
        self.readable(0)
        # Same reactor turn: the client has not processed what arrived.
        pending = client.request(b"POST", base + b"/mcp", None, b'{"id":2}')
        fresh = await self.accept_raw(listener, 2)
        self.assertEqual(recv_request(fresh).body, b'{"id":2}')
        fresh.sendall(ok(REAL))
        body, reason = await read(await pending)
        self.assertEqual(body, REAL)
        await until(lambda: self.client_conns[0].lost)

    async def test_closed_fin(self) -> None:
        await self._stale(lambda sock: sock.shutdown(socket.SHUT_RDWR))

    async def test_closed_write_side_only(self) -> None:
        seen: List[bytes] = []

        def half_close(sock: socket.socket) -> None:
            sock.shutdown(socket.SHUT_WR)
            seen.append(sock)  # type: ignore[arg-type]

        await self._stale(half_close)
        # Nothing of the second request reached the first connection.
        first: socket.socket = seen[0]  # type: ignore[assignment]
        first.settimeout(5)
        self.assertEqual(first.recv(100), b"")

    async def test_reset(self) -> None:
        await self._stale(reset)

    async def test_unsolicited_response(self) -> None:
        await self._stale(lambda sock: sock.sendall(ok(BOGUS)))

    async def test_unsolicited_byte(self) -> None:
        await self._stale(lambda sock: sock.sendall(b"\r\n"))

    async def test_tls_closed(self) -> None:
        # The same check under TLS: the TCP socket below the TLS layer.
        factory, base, trust = self.serve_tls(lambda conn, req: conn.transport.write(ok()))
        client = self.make_client(tls=trust)
        await read(await client.request(b"POST", base + b"/mcp", None, b"{}"))
        self.assertEqual(idle_count(client), 1)
        factory.connections[0].transport.transport.getHandle().shutdown(socket.SHUT_RDWR)
        ready, _, _ = select.select([self.client_conns[0].transport.transport.getHandle()], [], [], 5)
        self.assertTrue(ready)
        pending = client.request(b"POST", base + b"/mcp", None, b'{"id":2}')
        body, reason = await read(await pending)
        self.assertEqual(body, JSON)
        self.assertEqual([len(c.requests) for c in factory.connections], [1, 1])


class UnsentRequestTests(ClientHarness, TestCase):
    async def test_answered_before_the_body_was_read(self) -> None:
        # The backend answers (keep-alive) without reading a large body: part
        # of it is still queued in the client's transport, so the connection
        # is not pooled (the next request would follow the rest of the body).
        listener, base = self.listen_raw()
        client = self.make_client()
        body = b"x" * (32 * 1024 * 1024)
        pending = client.request(b"POST", base + b"/mcp", None, body)
        server = await self.accept_raw(listener, 1)
        head = b""
        while b"\r\n\r\n" not in head:
            head += server.recv(1024)
        server.sendall(ok(b"too large"))
        answer, reason = await read(await pending)
        self.assertEqual(answer, b"too large")
        self.assertEqual(idle_count(client), 0)
        await until(lambda: self.client_conns[0].lost)


# -- through the daemon ------------------------------------------------------------------

ACCEPT = {"Accept": "application/json, text/event-stream"}


@pytest.fixture
def backends() -> Iterator[List[RawBackend]]:
    started: List[RawBackend] = []
    yield started
    for backend in started:
        backend.stop()


def _call(ident: int) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": ident, "method": "ping"}).encode()


def _post(daemon: Any, path: str, ident: int) -> Tuple[int, bytes]:
    status, _, body = http("POST", daemon.gateway + path, raw=_call(ident),
                           headers=dict(ACCEPT, **{"Content-Type": "application/json"}))
    return status, body


def _read_response(reader: Any) -> Tuple[int, bytes]:
    """
    One response off a client socket's file (Content-Length or chunked).
    """
    status = int(reader.readline().split(b" ")[1])
    headers: Dict[bytes, bytes] = {}
    while True:
        line = reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        return status, reader.read(int(headers[b"content-length"]))
    body = b""
    while True:
        size = int(reader.readline().strip(), 16)
        if not size:
            reader.readline()
            return status, body
        body += reader.read(size)
        reader.readline()


def test_pipelined_request_never_gets_extra_bytes(daemon, backends):
    # The client pipelines two requests; the backend answers the first with
    # its response and a second, bogus one in the same write. The gateway
    # sends the second request as soon as the first answer ends.
    def respond(conn: RawConnection, request: RawRequest) -> None:
        ident = json.loads(request.body)["id"]
        answer = json.dumps({"jsonrpc": "2.0", "id": ident, "result": {"real": True}}).encode()
        extra = ok(BOGUS) if ident == 1 else b""
        conn.send(ok(answer) + extra)

    backend = RawBackend(respond)
    backends.append(backend)
    deploy(daemon, "/pipelined", backend.url + "/mcp")
    port = daemon.ports["gateway"][0]
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            requests = b""
            for ident in (1, 2):
                body = _call(ident)
                requests += (b"POST /pipelined HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                             b"Accept: application/json, text/event-stream\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            client.sendall(requests)
            reader = client.makefile("rb")
            answers = [_read_response(reader) for _ in range(2)]
        for ident, (status, body) in zip((1, 2), answers):
            assert status == 200, body
            assert json.loads(body) == {"jsonrpc": "2.0", "id": ident, "result": {"real": True}}
    # Each connection that carried the bogus bytes was closed by the gateway.
    for conn in backend.connections:
        if conn.requests and json.loads(conn.requests[-1].body)["id"] == 1:
            assert conn.peer_closed.wait(10)


def test_short_keep_alive_hint_is_not_reused(daemon, backends):
    backend = RawBackend(lambda conn, request: conn.send(
        ok(b'{"jsonrpc":"2.0","id":1,"result":{}}', extra=b"Keep-Alive: timeout=1\r\n")))
    backends.append(backend)
    deploy(daemon, "/hinted", backend.url + "/mcp")
    for ident in (1, 2, 3):
        assert _post(daemon, "/hinted", ident)[0] == 200
    assert [len(c.requests) for c in backend.connections] == [1, 1, 1]
    assert all(c.peer_closed.wait(10) for c in backend.connections)


def test_idle_timeout_per_api(daemon, backends):
    backend = RawBackend(lambda conn, request: conn.send(
        ok(b'{"jsonrpc":"2.0","id":1,"result":{}}')))
    backends.append(backend)
    deploy(daemon, "/never", backend.url + "/mcp", backendKeepAlive={"idleTimeoutSeconds": 0})
    for ident in (1, 2):
        assert _post(daemon, "/never", ident)[0] == 200
    assert [len(c.requests) for c in backend.connections] == [1, 1]
    assert all(c.peer_closed.wait(10) for c in backend.connections)

    other = RawBackend(lambda conn, request: conn.send(
        ok(b'{"jsonrpc":"2.0","id":1,"result":{}}')))
    backends.append(other)
    deploy(daemon, "/short", other.url + "/mcp", backendKeepAlive={"idleTimeoutSeconds": 1.5})
    deploy(daemon, "/default", other.url + "/mcp")
    assert _post(daemon, "/short", 1)[0] == 200
    assert _post(daemon, "/short", 2)[0] == 200  # reused within 1.5 s
    assert [len(c.requests) for c in other.connections] == [2]
    first = other.connections[0]
    assert first.peer_closed.wait(10)
    assert first.answered_at is not None and first.closed_at is not None
    idle = first.closed_at - first.answered_at
    assert 1.4 <= idle < 3.9, idle
    # The default (4 s) keeps its connection: a request right after reuses it.
    assert _post(daemon, "/default", 3)[0] == 200
    assert _post(daemon, "/default", 4)[0] == 200
    assert [len(c.requests) for c in other.connections] == [2, 2]
    assert not other.connections[1].peer_closed.is_set()


@pytest.mark.parametrize("value, field", [
    ({"idleTimeoutSeconds": -1}, "backendKeepAlive.idleTimeoutSeconds"),
    ({"idleTimeoutSeconds": 601}, "backendKeepAlive.idleTimeoutSeconds"),
    ({"idleTimeoutSeconds": "2s"}, "backendKeepAlive.idleTimeoutSeconds"),
    ({"idleTimeoutSeconds": True}, "backendKeepAlive.idleTimeoutSeconds"),
    ({"idleTimeoutSeconds": [2]}, "backendKeepAlive.idleTimeoutSeconds"),
    ({"idleTimeout": 2}, "backendKeepAlive.idleTimeout"),
    (2, "backendKeepAlive"),
    ("2s", "backendKeepAlive"),
])
def test_idle_timeout_validation(daemon, value, field):
    body = {"name": "x", "version": "1", "contextPath": "/x", "backend": "http://127.0.0.1:1/mcp",
            "plans": [{"name": "Keyless", "security": "KEY_LESS"}], "backendKeepAlive": value}
    status, error = daemon.admin("POST", "/apis", body)
    assert status == 400, error
    assert error["field"] == field and field in error["error"], error
    # The message says what is expected, not just that the field is wrong.
    expected = "is not a known field" if field.endswith("idleTimeout") else (
        "must be an object" if field == "backendKeepAlive" else "number of seconds")
    assert expected in error["error"], error


def test_idle_timeout_nan_and_shown(daemon):
    body = {"name": "x", "version": "1", "contextPath": "/x", "backend": "http://127.0.0.1:1/mcp",
            "plans": [{"name": "Keyless", "security": "KEY_LESS"}]}
    raw = json.dumps(dict(body, backendKeepAlive={"idleTimeoutSeconds": float("nan")})).encode()
    status, error = daemon.admin("POST", "/apis", raw=raw)
    assert status == 400 and error["field"] == "backendKeepAlive.idleTimeoutSeconds", error
    status, api = daemon.admin("POST", "/apis", body)
    assert status == 201 and api["backendKeepAlive"] == {"idleTimeoutSeconds": 4}, api
    status, api = daemon.admin("PUT", f"/apis/{api['id']}",
                               dict(body, backendKeepAlive={"idleTimeoutSeconds": 1.5}))
    assert status == 200 and api["backendKeepAlive"] == {"idleTimeoutSeconds": 1.5}, api
