"""
A real C{twisted.internet.tcp} server transport over one end of a
C{socketpair}, driven by hand (a L{MemoryReactor} records what it would
watch), with the other end a plain socket the test reads: for code that
checks a TCP transport's write buffer (tests/test_fastwrite.py,
tests/test_twisted_compat.py).
"""

from __future__ import annotations

import socket
from typing import Any, Tuple

from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor


class _Port:
    """
    What a L{tcp.Server} reads of its listening port.
    """

    _realPortNumber = 0
    _addressType: Any = None


def tcp_pair(send_buffer: int = 0) -> Tuple[tcp.Server, socket.socket, MemoryReactor]:
    """
    A connected L{tcp.Server}, the peer socket (blocking, with a timeout) and
    the reactor the transport registers with.

    @param send_buffer: C{SO_SNDBUF} of the transport's socket (0: the
        system's default).
    """
    ours, peer = socket.socketpair()
    if send_buffer:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    ours.setblocking(False)
    peer.settimeout(5)
    reactor = MemoryReactor()
    protocol = Protocol()
    transport = tcp.Server(ours, protocol, ("127.0.0.1", 0), _Port(), 1, reactor)
    protocol.makeConnection(transport)
    return transport, peer, reactor


def received(peer: socket.socket) -> bytes:
    """
    What the peer can read now, without waiting.
    """
    chunks = []
    peer.setblocking(False)
    try:
        while True:
            try:
                chunk = peer.recv(1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        peer.settimeout(5)
    return b"".join(chunks)
