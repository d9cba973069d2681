"""
Twisted's private names behind L{mcpgated._twisted_compat}, each checked
against the Twisted installed, the way mcpgated uses it: the twisted.web
server's request line and trailers (mcpgated.proxy.twisted_server),
L{Headers}' own dictionary (the fast channel, the relay, the backend
client), and TCP and TLS write buffers (mcpgated.proxy.fastwrite, the
backend client). A Twisted release that renames one fails here first.
"""

from __future__ import annotations

from typing import Any, List, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.web.client import HTTPConnectionPool
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Site

from mcpgated._twisted_compat import (
    HTTPChannelHooks,
    canonical_name,
    cap_trailers,
    has_tcp_buffer,
    headers_from_raw,
    in_trailers,
    quiet_pool,
    raw_headers,
    request_line,
    request_version,
    tcp_buffered,
    tcp_can_send_now,
    tls_buffered,
)
from tests.tcp_pair import received, tcp_pair


class Hello(Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        return b"hello"


class Channel(HTTPChannelHooks):
    """
    A channel as mcpgated's twisted.web server builds on it: what the hooks
    saw, and a trailer cap when C{trailer_cap} is set.
    """

    trailer_cap: Any = None

    def connectionMade(self) -> None:
        HTTPChannelHooks.connectionMade(self)
        self.seen: List[Tuple[str, Any]] = []

    def allHeadersReceived(self) -> None:
        if self.trailer_cap is not None:
            cap_trailers(self, self.trailer_cap)
        HTTPChannelHooks.allHeadersReceived(self)

    def bad_request(self) -> None:
        self.seen.append(("bad_request", in_trailers(self)))
        HTTPChannelHooks.bad_request(self)

    def send_continue(self) -> None:
        self.seen.append(("send_continue", None))
        HTTPChannelHooks.send_continue(self)


def channel(trailer_cap: Any = None) -> Tuple[Channel, StringTransport]:
    site = Site(Hello(), reactor=Clock())  # the channel's idle timeout off the real reactor
    site.protocol = Channel  # type: ignore[assignment]
    protocol = site.buildProtocol(None)
    assert isinstance(protocol, Channel)
    protocol.trailer_cap = trailer_cap
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


# --- the twisted.web server --------------------------------------------------------------


def test_the_request_line_is_readable_before_the_head_ends() -> None:
    ch, _ = channel()
    assert request_version(ch) == b"HTTP/1.1"  # nothing read yet: the default
    assert request_line(ch) == (b"", b"")
    ch.dataReceived(b"POST /mcp?x=1 HTTP/1.0\r\nHost: gw.test\r\n")
    assert request_version(ch) == b"HTTP/1.0"
    assert request_line(ch) == (b"POST", b"/mcp?x=1")


def chunked(trailers: bytes) -> bytes:
    return (b"POST /mcp HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n" + trailers + b"\r\n")


def test_trailers_within_the_cap_are_read_and_the_request_answered() -> None:
    ch, transport = channel(trailer_cap=64)
    ch.dataReceived(chunked(b"X-Trailer: " + b"a" * 20 + b"\r\n"))
    assert transport.value().startswith(b"HTTP/1.1 200 ")
    assert ch.seen == []


def test_trailers_past_the_cap_are_a_bad_request_seen_in_the_trailers() -> None:
    big = b"X-Trailer: " + b"a" * 200 + b"\r\n"
    ch, transport = channel()
    ch.dataReceived(chunked(big))
    assert transport.value().startswith(b"HTTP/1.1 200 ")  # Twisted's own cap is 64 KiB
    for cap in (64, 0, -5):  # a head that used the whole cap leaves none
        ch, transport = channel(trailer_cap=cap)
        ch.dataReceived(chunked(big))
        assert ch.seen == [("bad_request", True)], cap
        assert transport.value().startswith(b"HTTP/1.1 400 ")


def test_a_malformed_head_is_a_bad_request_not_in_trailers() -> None:
    ch, transport = channel()
    ch.dataReceived(b"GET / HTTP/1.1\r\nHost: gw.test\r\nNo colon here\r\n\r\n")
    assert ch.seen == [("bad_request", False)]
    assert transport.value().startswith(b"HTTP/1.1 400 ")
    assert transport.disconnecting


def test_100_continue_goes_through_the_hook() -> None:
    ch, transport = channel()
    ch.dataReceived(b"POST /mcp HTTP/1.1\r\nHost: gw.test\r\nExpect: 100-continue\r\n"
                    b"Content-Length: 2\r\n\r\n")
    assert ch.seen == [("send_continue", None)]
    assert transport.value() == b"HTTP/1.1 100 Continue\r\n\r\n"
    ch.dataReceived(b"{}")
    assert b"HTTP/1.1 200 " in transport.value()


# --- Headers' own dictionary ----------------------------------------------------------------


def test_canonical_names_are_the_ones_headers_keys_by() -> None:
    for name in (b"content-type", b"CONTENT-TYPE", "content-type", b"Content-Type"):
        assert canonical_name(name) == b"Content-Type"
    assert canonical_name(b"mcp-session-id") == b"Mcp-Session-Id"
    headers = Headers()
    headers.addRawHeader(b"www-authenticate", b"Bearer")
    assert list(raw_headers(headers)) == [canonical_name(b"www-authenticate")]


def test_the_raw_dictionary_is_the_headers_own() -> None:
    headers = Headers({b"x-one": [b"1"]})
    raw = raw_headers(headers)
    assert raw == {b"X-One": [b"1"]}
    raw.setdefault(canonical_name(b"x-two"), []).append(b"2")
    assert headers.getRawHeaders(b"x-two") == [b"2"]
    headers.removeHeader(b"x-one")
    assert b"X-One" not in raw


def test_headers_over_a_raw_dictionary_share_it() -> None:
    raw = {b"Content-Type": [b"application/json"], b"Mcp-Session-Id": [b"s1"]}
    headers = headers_from_raw(raw)
    assert headers.getRawHeaders(b"content-type") == [b"application/json"]
    assert dict(headers.getAllRawHeaders()) == raw
    raw[b"Mcp-Session-Id"] = [b"s2"]
    assert headers.getRawHeaders(b"mcp-session-id") == [b"s2"]  # not a copy
    headers.setRawHeaders(b"x-added", [b"1"])
    assert raw[b"X-Added"] == [b"1"]


# --- write buffers -------------------------------------------------------------------------


def test_a_tcp_transport_s_buffer_is_seen_until_the_kernel_has_it() -> None:
    transport, peer, reactor = tcp_pair()
    assert has_tcp_buffer(transport)
    assert not tcp_buffered(transport) and tcp_can_send_now(transport)
    transport.write(b"queued")
    assert tcp_buffered(transport) and not tcp_can_send_now(transport)
    transport.doWrite()
    assert received(peer) == b"queued"
    assert not tcp_buffered(transport) and tcp_can_send_now(transport)


def test_a_tcp_transport_that_closes_or_half_closes_cannot_send_now() -> None:
    transport, peer, _ = tcp_pair()
    transport.loseWriteConnection()
    assert transport.doWrite() is None  # the reactor's turn: the writing side shuts
    assert peer.recv(10) == b""  # the peer sees the end
    assert not tcp_buffered(transport) and not tcp_can_send_now(transport)
    transport, peer, _ = tcp_pair()
    transport.loseConnection()
    assert not tcp_can_send_now(transport)


def test_other_transports_have_no_tcp_buffer() -> None:
    assert not has_tcp_buffer(StringTransport())


def test_tls_cleartext_written_before_the_handshake_is_seen_as_buffered() -> None:
    clock = Clock()
    factory = TLSMemoryBIOFactory(optionsForClientTLS("gw.test"), True,
                                  Factory.forProtocol(Protocol), clock)
    protocol = factory.buildProtocol(None)
    protocol.makeConnection(StringTransport())
    assert not tls_buffered(protocol)
    protocol.write(b"POST /mcp HTTP/1.1\r\n")
    clock.advance(0)  # Twisted hands small writes to TLS on the next turn
    assert tls_buffered(protocol)  # no handshake yet: kept in clear
    assert not tls_buffered(StringTransport())


# --- twisted.web.client's connection pool ---------------------------------------------------


class Endpoint:
    """
    Keeps the factory a pool connects with.
    """

    def __init__(self) -> None:
        self.factories: List[Any] = []

    def connect(self, factory: Any) -> "Deferred[Any]":
        self.factories.append(factory)
        return Deferred()


def factory_lines(pool: HTTPConnectionPool) -> List[str]:
    """
    What a connection of C{pool} logs when its factory starts and stops.
    """
    endpoint = Endpoint()
    pool.getConnection(("http", b"backend", 80), endpoint)
    [factory] = endpoint.factories
    events: List[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:
        factory.doStart()
        factory.doStop()
    finally:
        globalLogPublisher.removeObserver(events.append)
    return [formatEvent(event) for event in events]


def test_the_gateway_s_pool_connects_without_factory_log_lines() -> None:
    noisy = factory_lines(HTTPConnectionPool(MemoryReactor()))
    assert any("Starting factory" in line for line in noisy)  # what Twisted does
    assert factory_lines(quiet_pool(MemoryReactor())) == []
    assert quiet_pool(MemoryReactor()).persistent is True
    assert quiet_pool(MemoryReactor(), persistent=False).persistent is False
