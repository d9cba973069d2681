"""
Twisted's private names mcpgated relies on, in one place: when a Twisted
release renames or drops one, this is the module to change.

Each helper degrades to Twisted's own behaviour when the name is missing.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, Callable, Dict, List, Tuple, Union

from twisted.web.client import HTTPConnectionPool
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers, _nameEncoder


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


# --- Headers' own dictionary (mcpgated.proxy: the fast channel, the relay, the backend client)
#
# Headers keeps C{{Header-Case name: [values]}} in C{_rawHeaders}: the
# gateway fills and reads that dictionary directly, with names made canonical
# by Twisted's own encoder (C{_nameEncoder}, Twisted 24.10+).

canonical_name: Callable[[Union[str, bytes]], bytes] = _nameEncoder.encode
"""
A header name as L{Headers} keys it: C{b"content-type"} -> C{b"Content-Type"}.
"""

raw_headers: Callable[[Headers], Dict[bytes, List[bytes]]] = attrgetter("_rawHeaders")
"""
The live C{{canonical name: [values]}} dictionary of a L{Headers}.
"""


def headers_from_raw(raw: Dict[bytes, List[bytes]]) -> Headers:
    """
    A L{Headers} over C{raw} (canonical names, values already checked),
    without copying or re-validating it.
    """
    headers = Headers.__new__(Headers)
    headers._rawHeaders = raw
    return headers


# --- TCP and TLS transports' write buffers (mcpgated.proxy.fastwrite, backend_client) ------


def has_tcp_buffer(transport: Any) -> bool:
    """
    Whether C{transport} keeps its write buffer the way
    C{twisted.internet.abstract.FileDescriptor} does (so the two checks
    below apply).
    """
    return hasattr(transport, "_tempDataLen")


def tcp_buffered(transport: Any) -> bool:
    """
    Whether a TCP transport still holds bytes it has not handed to the kernel.
    """
    return bool(transport._tempDataLen) or transport.offset < len(transport.dataBuffer)


def tcp_can_send_now(transport: Any) -> bool:
    """
    Whether a C{send(2)} on a TCP transport's socket keeps its byte order
    and state: nothing buffered, connected, and its writing side open.
    """
    return (not transport._tempDataLen and transport.offset == len(transport.dataBuffer)
            and transport.connected and not transport.disconnecting
            and not transport._writeDisconnected)


def tls_buffered(transport: Any) -> bool:
    """
    Whether a TLS transport (C{TLSMemoryBIOProtocol}) still holds cleartext
    it has not encrypted yet (waiting for the handshake).
    """
    return bool(getattr(transport, "_appSendBuffer", None))


# --- twisted.web.client's connection pool (mcpgated.proxy.upstream) -----------------


def quiet_pool(reactor: Any, persistent: bool = True) -> HTTPConnectionPool:
    """
    An L{HTTPConnectionPool} whose connections do not log "Starting
    factory" and "Stopping factory" (twisted.web.client's
    C{_HTTP11ClientFactory} is C{noisy}: two info lines per connection of
    the gateway's own HTTP client). Only those two lines go: failures reach
    the caller's Deferreds as before.
    """
    pool = HTTPConnectionPool(reactor, persistent=persistent)
    noisy_factory = getattr(pool, "_factory", None)
    if isinstance(noisy_factory, type) and getattr(noisy_factory, "noisy", False):
        quiet: Any = type("QuietHTTP11ClientFactory", (noisy_factory,), {"noisy": False})
        pool._factory = quiet
    return pool



# --- endpoints (mcpgated.workers) -------------------------------------------------------


def server_tls_context(endpoint: Any) -> Any:
    """
    The TLS context factory of an C{ssl:} server endpoint (a worker wraps
    an adopted listening socket with it), or L{None} for any other.
    """
    return getattr(endpoint, "_sslContextFactory", None)


def listening_socket(port: Any) -> Any:
    """
    The socket object of a listening TCP or UNIX port.
    """
    return port.socket


def keep_shared_socket_open(port: Any) -> None:
    """
    Closing a listening port whose socket other processes share must not
    shut the socket down (Twisted's ports call C{shutdown()} before
    C{close()}, which stops it in every process): only this process's
    descriptor is closed, as Twisted does for an adopted socket.
    """
    if hasattr(port, "_shouldShutdown"):
        port._shouldShutdown = False
