"""
Writes that skip the reactor when a TCP transport has nothing queued
(L{mcpgated.proxy.fastwrite}): the bytes reach the peer at once, in order
with anything queued, and what the kernel does not take goes through
Twisted's buffer as before.
"""

from __future__ import annotations

import socket

from twisted.internet.testing import StringTransport

from mcpgated.proxy.fastwrite import direct_writer
from tests.tcp_pair import received, tcp_pair


def drain(transport: object, peer: socket.socket, reactor: object, size: int) -> bytes:
    """
    Read what the peer gets while the reactor's writes run, up to C{size} bytes.
    """
    got = bytearray()
    for _ in range(100_000):
        if len(got) >= size:
            break
        if transport in reactor.writers:  # type: ignore[attr-defined]
            transport.doWrite()  # type: ignore[attr-defined]
        got += received(peer)
    return bytes(got)


def test_an_empty_transport_sends_at_once_without_the_reactor() -> None:
    transport, peer, reactor = tcp_pair()
    write = direct_writer(transport)
    write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert received(peer) == b"HTTP/1.1 200 OK\r\n\r\n"
    assert transport not in reactor.writers  # never registered for writability
    write(b"second")
    assert received(peer) == b"second"


def test_bytes_queued_by_the_transport_go_first() -> None:
    transport, peer, reactor = tcp_pair()
    write = direct_writer(transport)
    transport.write(b"queued;")
    write(b"direct")
    assert received(peer) == b""  # nothing overtook the queue
    transport.doWrite()
    assert received(peer) == b"queued;direct"


def test_what_the_kernel_does_not_take_is_queued_in_order() -> None:
    transport, peer, reactor = tcp_pair(send_buffer=4096)
    write = direct_writer(transport)
    payload = bytes(range(256)) * 8192  # 2 MiB: more than the socket takes at once
    write(payload)
    assert transport in reactor.writers  # the rest waits for the reactor, as transport.write's
    write(b"after")
    assert drain(transport, peer, reactor, len(payload) + 5) == payload + b"after"


def test_a_failing_send_is_left_to_the_transport_to_report() -> None:
    transport, peer, reactor = tcp_pair()
    write = direct_writer(transport)
    peer.close()
    write(b"to nobody")  # EPIPE: not raised here
    assert transport in reactor.writers


def test_a_closing_transport_is_not_written_behind_its_back() -> None:
    transport, peer, reactor = tcp_pair()
    write = direct_writer(transport)
    transport.loseConnection()
    write(b"late")
    assert received(peer) == b""


def test_other_transports_keep_their_own_write() -> None:
    transport = StringTransport()
    assert direct_writer(transport) == transport.write
    direct_writer(transport)(b"x")
    assert transport.value() == b"x"
