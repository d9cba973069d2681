"""
The HTTP/1.1 server behaviour the gateway listener promises, as one suite run
against both servers C{[gateway] http} can name: the fast channel (llhttp)
and twisted.web's. Each test talks raw bytes over a real loopback socket to
a listener built by the real factory; the timeouts run on an injected clock.
"""

from __future__ import annotations

import json
from typing import Any, List

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock

from tests.contract.harness import (
    MAX_BODY,
    ContractCase,
    Recorder,
    chunked,
    echo,
    get,
    parse_responses,
    post,
    run,
)

CHUNKED_POST = b"POST /mcp HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n"


class Contract:
    """
    The contract; mixed into one L{ContractCase} per server below.
    """

    # --- framing ---------------------------------------------------------------------

    @run
    async def test_content_length_and_keep_alive(self: Any) -> None:
        """
        A body framed by C{Content-Length}, bytes that look like HTTP
        included, reaches the resource exactly; the next request on the same
        connection is answered too.
        """
        resource = Recorder(echo)
        self.listen(resource)
        client = await self.connect()
        body = b"\x00\xff\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"
        client.send(post(b"/mcp", body))
        [first] = await client.responses(1)
        client.send(get(b"/two?x=1"))
        [_, second] = await client.responses(2)
        self.assertEqual(json.loads(first.body)["body"].encode("latin-1"), body)
        self.assertEqual(json.loads(second.body)["uri"], "/two?x=1")
        self.assertEqual([r.path for r in resource.requests], [b"/mcp", b"/two"])
        self.assertFalse(client.closed)

    @run
    async def test_chunked_request_body(self: Any) -> None:
        """
        A chunked body arriving over several reads reaches the resource as
        its chunks joined.
        """
        resource = Recorder(echo)
        self.listen(resource)
        client = await self.connect()
        client.send(CHUNKED_POST + b"6\r\nhello \r\n")
        client.send(b"8\r\nchunked \r\n5\r\nworld\r\n0\r\n\r\n")
        [response] = await client.responses(1)
        self.assertEqual(json.loads(response.body)["body"], "hello chunked world")

    @run
    async def test_chunked_response_without_length(self: Any) -> None:
        """
        An answer without C{Content-Length} is chunked for HTTP/1.1, and the
        connection serves the next request.
        """
        def answer(request: Any) -> None:
            request.write(b"alpha")
            request.write(b"beta gamma")
            request.finish()

        self.listen(Recorder(answer))
        client = await self.connect()
        client.send(get())
        [response] = await client.responses(1)
        self.assertEqual(response.header("transfer-encoding"), "chunked")
        self.assertEqual(response.body, b"alphabeta gamma")
        client.send(get())
        await client.responses(2)
        self.assertFalse(client.closed)

    @run
    async def test_http10_close_delimited(self: Any) -> None:
        """
        For HTTP/1.0 an answer without C{Content-Length} is not chunked: the
        body is the bytes written, ended by the server closing.
        """
        def answer(request: Any) -> None:
            request.write(b"alpha")
            request.write(b"beta")
            request.finish()

        self.listen(Recorder(answer))
        client = await self.connect()
        client.send(get(b"/", b"", b"HTTP/1.0"))
        received = await client.lost
        head, _, body = received.partition(b"\r\n\r\n")
        self.assertNotIn(b"transfer-encoding", head.lower())
        self.assertEqual(body, b"alphabeta")

    @run
    async def test_connection_close(self: Any) -> None:
        """
        C{Connection: close} gets its answer, then the server closes.
        """
        self.listen(Recorder(echo))
        client = await self.connect()
        client.send(get(b"/", b"Connection: close\r\n"))
        received = await client.lost
        [response] = parse_responses(received, 1) or []
        self.assertEqual(response.code, 200)

    # --- pipelining ------------------------------------------------------------------

    @run
    async def test_pipelining_in_order(self: Any) -> None:
        """
        Requests sent in one write are answered in order, each rendered only
        once the one before is finished.
        """
        resource = Recorder()
        self.listen(resource)
        client = await self.connect()
        client.send(get(b"/first") + post(b"/second", b"body") + get(b"/third"))
        first = await resource.rendered(0)
        self.assertEqual(len(resource.requests), 1)
        resource.reply(first, b"one")
        resource.reply(await resource.rendered(1), b"two")
        resource.reply(await resource.rendered(2), b"three")
        responses = await client.responses(3)
        self.assertEqual([r.body for r in responses], [b"one", b"two", b"three"])
        self.assertEqual(resource.events, [
            ("render", b"/first"), ("finish", b"/first"), ("render", b"/second"),
            ("finish", b"/second"), ("render", b"/third"), ("finish", b"/third")])

    # --- limits ----------------------------------------------------------------------

    @run
    async def test_declared_body_over_cap_413(self: Any) -> None:
        """
        A declared length over the cap gets 413 with the JSON-RPC body, the
        413 hook sees it, the resource never does.
        """
        resource = Recorder(echo)
        self.listen(resource)
        message = await self.refused(resource, b"POST /mcp HTTP/1.1\r\nHost: gw.test\r\n"
                                     b"Content-Length: %d\r\n\r\n" % (MAX_BODY + 1), 413)
        self.assertIn("larger than", message["error"]["message"])
        self.assertEqual([r.path for r in resource.too_large], [b"/mcp"])

    @run
    async def test_chunked_body_over_cap_413(self: Any) -> None:
        """
        A chunked body growing past the cap gets 413.
        """
        resource = Recorder(echo)
        self.listen(resource)
        await self.refused(resource, CHUNKED_POST + b"%x\r\n%s\r\n" % (600, b"c" * 600) * 2, 413)

    @run
    async def test_body_at_cap_accepted(self: Any) -> None:
        resource = Recorder(echo)
        self.listen(resource)
        client = await self.connect()
        client.send(post(b"/mcp", b"a" * MAX_BODY))
        [response] = await client.responses(1)
        self.assertEqual(len(json.loads(response.body)["body"]), MAX_BODY)

    @run
    async def test_head_over_cap_431(self: Any) -> None:
        """
        A head over 64 KB gets 431: one long field, or many fields.
        """
        resource = Recorder(echo)
        self.listen(resource)
        await self.refused(resource, get(b"/", b"X-Big: " + b"a" * 70000 + b"\r\n"), 431)
        many = b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 1000) for i in range(70))
        await self.refused(resource, get(b"/", many), 431)

    @run
    async def test_unfinished_head_over_cap_431(self: Any) -> None:
        """
        A head still arriving past 64 KB is refused without waiting for its end.
        """
        resource = Recorder(echo)
        self.listen(resource)
        await self.refused(resource, b"GET / HTTP/1.1\r\nHost: gw.test\r\nX-Big: " + b"a" * 66000,
                           431)

    @run
    async def test_malformed_400(self: Any) -> None:
        """
        A header line without a colon gets 400 with a JSON-RPC body.
        """
        resource = Recorder(echo)
        self.listen(resource)
        await self.refused(resource, b"GET / HTTP/1.1\r\nHost: gw.test\r\nBad Header\r\n\r\n", 400)

    # --- trailers --------------------------------------------------------------------

    @run
    async def test_trailers_dropped(self: Any) -> None:
        """
        Trailer fields never become request headers: not an API key, a
        second Host, an Authorization or a session; the body is intact and
        the connection goes on.
        """
        resource = Recorder(echo)
        self.listen(resource)
        client = await self.connect()
        client.send(CHUNKED_POST + chunked(b'{"jsonrpc":"2.0"}', trailers=(
            b"X-Gravitee-Api-Key: stolen\r\nHost: evil.example\r\n"
            b"Authorization: Bearer t\r\nMcp-Session-Id: s\r\n")))
        [response] = await client.responses(1)
        seen = json.loads(response.body)
        self.assertEqual(seen["body"], '{"jsonrpc":"2.0"}')
        self.assertEqual(seen["host"], "gw.test")
        self.assertEqual(seen["headers"]["host"], ["gw.test"])
        for name in ("x-gravitee-api-key", "authorization", "mcp-session-id"):
            self.assertNotIn(name, seen["headers"])
        client.send(get(b"/after"))
        [_, after] = await client.responses(2)
        self.assertEqual(json.loads(after.body)["path"], "/after")

    @run
    async def test_trailers_over_cap_431(self: Any) -> None:
        """
        Trailers count against the head's 64 KB: a large one is refused with
        431, in one read or dribbled.
        """
        resource = Recorder(echo)
        self.listen(resource)
        big = b"X-Big: " + b"t" * 70000 + b"\r\n"
        await self.refused(resource, CHUNKED_POST + chunked(b"abc", trailers=big), 431)
        client = await self.connect()
        start = CHUNKED_POST + b"3\r\nabc\r\n"
        client.send(start)
        await self.sides[-1].read(len(start))
        client.send(b"0\r\nX-Big: ")
        for _ in range(20):
            client.send(b"t" * 4096)
        self.assertRefusal(await client.lost, 431, resource)

    # --- Host ------------------------------------------------------------------------

    @run
    async def test_host_required_and_single(self: Any) -> None:
        """
        HTTP/1.1 without Host, with two (even equal), or with an invalid one
        gets 400.
        """
        resource = Recorder(echo)
        self.listen(resource)
        cases = [
            b"",
            b"Host: evil.example\r\nHost: 127.0.0.1\r\n",
            b"Host: gw.test\r\nHost: gw.test\r\n",
            b"Host: a,b\r\n",
            b"Host: a..b\r\n",
            b"Host: gw.test:70000\r\n",
            b"Host: gw.test/x\r\n",
            b"Host: user@gw.test\r\n",
            b"Host: \r\n",
        ]
        for host in cases:
            message = await self.refused(resource, get(b"/", host=host), 400)
            self.assertIn("Host", message["error"]["message"], host)

    @run
    async def test_valid_hosts(self: Any) -> None:
        """
        Names, addresses, IPv6 literals and ports pass; HTTP/1.0 may have no
        Host.
        """
        self.listen(Recorder(echo))
        client = await self.connect()
        hosts = [b"gw.test", b"127.0.0.1:8082", b"[::1]:443", b"GW.Example.", b"a_b-c~d"]
        for index, host in enumerate(hosts):
            client.send(get(b"/", host=b"Host: " + host + b"\r\n"))
            responses = await client.responses(index + 1)
            self.assertEqual(json.loads(responses[-1].body)["host"], host.decode())
        client.send(get(b"/", b"", b"HTTP/1.0", host=b""))
        received = await client.lost
        [*_, last] = parse_responses(received, len(hosts) + 1) or [None]
        self.assertEqual(last.code, 200)

    # --- timeouts --------------------------------------------------------------------

    @run
    async def test_header_timeout_from_first_byte(self: Any) -> None:
        """
        A head still incomplete 10 s after its first byte is closed with 408,
        although bytes kept coming (slowloris).
        """
        clock = Clock()
        resource = Recorder(echo)
        self.listen(resource, clock=clock, header=10, body=30, keepalive=30)
        client = await self.connect()
        side = self.sides[0]
        sent = 0
        for piece in (b"GET / HTTP/1.1\r\n", b"Host: gw.test\r\n", b"X-A: 1\r\n", b"X-B: 2\r\n"):
            client.send(piece)
            sent += len(piece)
            await side.read(sent)
            clock.advance(3)
        self.assertFalse(client.closed)
        clock.advance(1)
        self.assertRefusal(await client.lost, 408, resource)

    @run
    async def test_header_timeout_silent_when_nothing_sent(self: Any) -> None:
        """
        A connection that sends nothing is closed after the header timeout,
        without an answer.
        """
        clock = Clock()
        self.listen(Recorder(echo), clock=clock, header=10, body=30, keepalive=30)
        client = await self.connect()
        clock.advance(9)
        self.assertFalse(client.closed)
        clock.advance(1)
        self.assertEqual(await client.lost, b"")

    @run
    async def test_keepalive_timeout(self: Any) -> None:
        """
        A keep-alive connection idle for the keep-alive timeout is closed
        without a word; one idle for less is not; the next request's head
        then has the header timeout.
        """
        clock = Clock()
        self.listen(Recorder(echo), clock=clock, header=5, body=5, keepalive=20)
        client = await self.connect()
        client.send(get(b"/a"))
        await client.responses(1)
        clock.advance(19)
        client.send(get(b"/b"))
        await client.responses(2)
        clock.advance(19)
        self.assertFalse(client.closed)
        size = len(client.data)
        clock.advance(1)
        self.assertEqual(len(await client.lost), size)
        self.assertEqual(clock.getDelayedCalls(), [])

    @run
    async def test_slow_upload_not_cut(self: Any) -> None:
        """
        A body that keeps arriving, a few bytes every 9 s for far longer than
        every timeout, is received and answered.
        """
        clock = Clock()
        resource = Recorder(echo)
        self.listen(resource, clock=clock, header=10, body=10, keepalive=10)
        client = await self.connect()
        side = self.sides[0]
        head = b"POST /mcp HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 40\r\n\r\n"
        client.send(head)
        await side.read(len(head))
        for index in range(10):
            clock.advance(9)
            client.send(b"0123")
            await side.read(len(head) + 4 * (index + 1))
        [response] = await client.responses(1)
        self.assertEqual(json.loads(response.body)["body"], "0123" * 10)
        self.assertFalse(client.closed)

    @run
    async def test_body_stall_408(self: Any) -> None:
        """
        A body that stops arriving for the body timeout gets 408 and close.
        """
        clock = Clock()
        resource = Recorder(echo)
        self.listen(resource, clock=clock, header=30, body=10, keepalive=30)
        client = await self.connect()
        data = b"POST /mcp HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 40\r\n\r\nabc"
        client.send(data)
        await self.sides[0].read(len(data))
        clock.advance(9)
        self.assertFalse(client.closed)
        clock.advance(1)
        self.assertRefusal(await client.lost, 408, resource)

    @run
    async def test_no_timeout_while_answering(self: Any) -> None:
        """
        A request held past every timeout keeps its connection: the answer
        arrives and the connection serves the next request.
        """
        clock = Clock()
        resource = Recorder()
        self.listen(resource, clock=clock, header=10, body=10, keepalive=10)
        client = await self.connect()
        client.send(get(b"/held"))
        request = await resource.rendered(0)
        clock.advance(100)
        resource.reply(request, b"late answer")
        [response] = await client.responses(1)
        self.assertEqual(response.body, b"late answer")
        client.send(get(b"/next"))
        resource.reply(await resource.rendered(1), b"next")
        await client.responses(2)
        self.assertFalse(client.closed)

    # --- streaming -------------------------------------------------------------------

    @run
    async def test_stream_head_before_first_byte(self: Any) -> None:
        """
        A streamed answer's status and headers reach the client when the
        resource writes them (C{write(b"")}), before any body byte; events
        follow as chunks.
        """
        def answer(request: Any) -> None:
            request.setHeader(b"Content-Type", b"text/event-stream")
            request.write(b"")

        resource = Recorder(answer)
        self.listen(resource)
        client = await self.connect()
        client.send(get(b"/events"))
        code, headers, rest = await client.head()
        self.assertEqual(code, 200)
        self.assertEqual(headers["content-type"], ["text/event-stream"])
        self.assertEqual(headers["transfer-encoding"], ["chunked"])
        self.assertEqual(rest, b"")
        resource.requests[0].write(b"data: 1\n\n")
        await client.until(lambda: True if client.data.endswith(b"data: 1\n\n\r\n") else None)

    # --- 100-continue ----------------------------------------------------------------

    @run
    async def test_expect_continue(self: Any) -> None:
        """
        C{Expect: 100-continue} gets C{100 Continue} before the body is
        sent, then the answer.
        """
        self.listen(Recorder(echo))
        client = await self.connect()
        client.send(b"POST /mcp HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\n"
                    b"Expect: 100-continue\r\n\r\n")
        await client.until(lambda: True if b"\r\n\r\n" in client.data else None)
        self.assertEqual(bytes(client.data), b"HTTP/1.1 100 Continue\r\n\r\n")
        client.send(b"hello")
        interim, final = await client.responses(2)
        self.assertEqual((interim.code, final.code), (100, 200))
        self.assertEqual(json.loads(final.body)["body"], "hello")

    @run
    async def test_expect_continue_over_cap(self: Any) -> None:
        """
        C{Expect: 100-continue} with a length over the cap gets 413, never a
        C{100 Continue}.
        """
        resource = Recorder(echo)
        self.listen(resource)
        client = await self.connect()
        client.send(b"POST /mcp HTTP/1.1\r\nHost: gw.test\r\nContent-Length: %d\r\n"
                    b"Expect: 100-continue\r\n\r\n" % (MAX_BODY + 1))
        received = await client.lost
        self.assertNotIn(b"100 Continue", received)
        self.assertRefusal(received, 413, resource)

    # --- answers without a body ------------------------------------------------------

    @run
    async def test_head_204_304_have_no_body(self: Any) -> None:
        """
        HEAD keeps the resource's headers and sends no body; 204 and 304 have
        no body, and 204 no C{Content-Length}: the next answer follows right
        after each head.
        """
        def answer(request: Any) -> None:
            code = {b"/204": 204, b"/304": 304}.get(request.path, 200)
            request.setResponseCode(code)
            request.setHeader(b"Content-Length", b"11")
            request.write(b"hello world")
            request.finish()

        self.listen(Recorder(answer))
        client = await self.connect()
        client.send(get(b"/", method=b"HEAD") + get(b"/204") + get(b"/304") + get(b"/"))
        responses = await client.responses(4, no_body=[True])
        self.assertEqual([r.code for r in responses], [200, 204, 304, 200])
        self.assertEqual(responses[0].header("content-length"), "11")
        self.assertIsNone(responses[1].header("content-length"))
        self.assertEqual(responses[3].body, b"hello world")
        self.assertEqual(bytes(client.data).count(b"hello world"), 1)

    # --- disconnects -----------------------------------------------------------------

    @run
    async def test_client_disconnect_fails_notify_finish(self: Any) -> None:
        """
        A client leaving while its request is held makes C{notifyFinish}
        fail; writing and finishing after that do not raise.
        """
        resource = Recorder()
        self.listen(resource)
        client = await self.connect()
        client.send(get(b"/held"))
        request = await resource.rendered(0)
        client.transport.loseConnection()
        reason = await resource.outcomes[0]
        self.assertIsInstance(reason, (ConnectionDone, ConnectionLost))
        request.write(b"late")
        request.finish()

    # --- Upgrade ---------------------------------------------------------------------

    @run
    async def test_upgrade_on_post_keeps_the_body(self: Any) -> None:
        """
        C{Upgrade: h2c} on a POST (C{curl --http2}) is ignored: the body,
        framed by length or chunked, reaches the resource, what it contains
        is never a request, and the connection serves the next one.
        """
        resource = Recorder(echo)
        self.listen(resource)
        client = await self.connect()
        smuggled = b"GET /admin HTTP/1.1\r\nHost: gw.test\r\n\r\n"
        upgrade = (b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                   b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n")
        client.send(post(b"/mcp", smuggled, upgrade))
        [first] = await client.responses(1)
        client.send(CHUNKED_POST[:-2] + upgrade + b"\r\n" + chunked(smuggled[:10], smuggled[10:]))
        [_, second] = await client.responses(2)
        client.send(get(b"/after"))
        [*_, third] = await client.responses(3)
        self.assertEqual([r.code for r in (first, second, third)], [200, 200, 200])
        self.assertEqual(json.loads(first.body)["body"].encode(), smuggled)
        self.assertEqual(json.loads(second.body)["body"].encode(), smuggled)
        self.assertEqual([r.path for r in resource.requests], [b"/mcp", b"/mcp", b"/after"])
        self.assertFalse(client.closed)

    @run
    async def test_upgrade_websocket_answered_as_http(self: Any) -> None:
        """
        C{Upgrade: websocket} gets an ordinary answer, never a 101; a
        pipelined request after it is answered too.
        """
        resource = Recorder(echo)
        self.listen(resource)
        client = await self.connect()
        client.send(get(b"/ws", b"Connection: upgrade\r\nUpgrade: websocket\r\n") + get(b"/next"))
        responses: List[Any] = await client.responses(2)
        self.assertEqual([r.code for r in responses], [200, 200])
        self.assertEqual([r.path for r in resource.requests], [b"/ws", b"/next"])


class FastServer(Contract, ContractCase):
    server = "fast"


class TwistedServer(Contract, ContractCase):
    server = "twisted"
