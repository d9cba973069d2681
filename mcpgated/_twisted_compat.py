"""
Twisted's private names mcpgated relies on, in one place: when a Twisted
release renames or drops one, this is the module to change.

Each helper degrades to Twisted's own behaviour when the name is missing.
"""

from __future__ import annotations

from typing import Tuple

from twisted.web.http import HTTPChannel


# --- twisted.web's server (mcpgated.proxy.twisted_server) ----------------------------


def request_version(channel: HTTPChannel) -> bytes:
    """
    The HTTP version of the request whose head C{channel} is reading (set
    from the request line, private until the request is received).
    """
    return getattr(channel, "_version", b"HTTP/1.1")


def request_line(channel: HTTPChannel) -> Tuple[bytes, bytes]:
    """
    The method and target of the request whose head C{channel} is reading
    (twisted.web gives them to the request only once its body is in).
    """
    return getattr(channel, "_command", b""), getattr(channel, "_path", b"")


def cap_trailers(channel: HTTPChannel, limit: int) -> None:
    """
    At most C{limit} bytes of trailer fields for the chunked body
    C{channel} is about to read (Twisted's own cap is 64 KiB).
    """
    decoder = getattr(channel, "_transferDecoder", None)
    if decoder is not None and hasattr(decoder, "_maxTrailerHeadersSize"):
        decoder._maxTrailerHeadersSize = max(limit, 0)


def in_trailers(channel: HTTPChannel) -> bool:
    """
    Whether C{channel} is reading the trailer section of a chunked body.
    """
    decoder = getattr(channel, "_transferDecoder", None)
    return getattr(decoder, "state", None) == "TRAILER"


class HTTPChannelHooks(HTTPChannel):
    """
    L{HTTPChannel} with two private steps turned into methods a subclass
    overrides: C{bad_request} (a malformed request: Twisted answers a bare
    400 and closes) and C{send_continue} (C{100 Continue} once a head asks
    for it).
    """

    def _respondToBadRequestAndDisconnect(self) -> None:
        self.bad_request()

    def _send100Continue(self) -> None:
        self.send_continue()

    def bad_request(self) -> None:
        HTTPChannel._respondToBadRequestAndDisconnect(self)

    def send_continue(self) -> None:
        HTTPChannel._send100Continue(self)
