"""
The public origin and the forwarding rules: which peers are trusted
proxies, what their C{Forwarded} / C{X-Forwarded-*} headers say, and the
scheme and authority clients use to reach the gateway.

Shared by the data plane (L{mcpgated.proxy}) and the OAuth relay
(L{mcpgated.oauth}): one rule for both, so the C{resource} the metadata
names and the C{X-Forwarded-*} a backend sees always agree.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Optional, Protocol, Tuple, Union
from urllib.parse import urlsplit

from twisted.web.http_headers import Headers

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class ForwardedRequest(Protocol):
    """
    What the rules read of a request (a L{twisted.web.iweb.IRequest}).
    """

    requestHeaders: Headers

    def getClientAddress(self) -> object: ...

    def isSecure(self) -> bool: ...


def peer_address(request: ForwardedRequest) -> Optional[str]:
    """
    The address of the connection's other end (a proxy's, behind one), or
    L{None} when the transport has no IP address.
    """
    host = getattr(request.getClientAddress(), "host", None)
    return host if isinstance(host, str) else None


def is_trusted(address: Optional[str], networks: Iterable[Network]) -> bool:
    """
    Whether C{address} is in one of C{networks}: a proxy whose forwarding
    headers are believed.
    """
    if not address or not networks:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _first(headers: Headers, name: bytes) -> Optional[str]:
    """
    The first element of the first C{name} header (a proxy chain's first
    hop is the client's), or L{None} when absent or empty.
    """
    value = headers.getRawHeaders(name)
    if not value:
        return None
    return value[0].split(b",")[0].strip().decode("latin-1") or None


def forwarded_pair(headers: Headers) -> Tuple[Optional[str], Optional[str]]:
    """
    C{proto} (lowercased) and C{host} from the first element of an RFC 7239
    C{Forwarded}, each L{None} when not given.
    """
    raw = headers.getRawHeaders(b"forwarded")
    if not raw:
        return None, None
    first = raw[0].decode("latin-1").split(",")[0]
    proto = host = None
    for pair in first.split(";"):
        key, _, value = pair.strip().partition("=")
        value = value.strip().strip('"')
        if key.lower() == "proto" and value:
            proto = value.lower()
        elif key.lower() == "host" and value:
            host = value
    return proto, host


def public_origin(
    headers: Headers,
    is_secure: bool,
    peer: Optional[str],
    public_url: Optional[str],
    trusted_proxies: Iterable[Network],
) -> str:
    """
    The scheme and authority clients use to reach the gateway.

    A configured C{public_url} wins; otherwise C{Forwarded} or
    C{X-Forwarded-Proto/-Host} are believed only from trusted proxies, and
    the request's own C{Host} and transport are used.
    """
    if public_url:
        parts = urlsplit(public_url)
        return f"{parts.scheme}://{parts.netloc}"
    scheme = "https" if is_secure else "http"
    host = _first(headers, b"host") or "localhost"
    if is_trusted(peer, trusted_proxies):
        f_proto, f_host = forwarded_pair(headers)
        proto = f_proto or _first(headers, b"x-forwarded-proto")
        forwarded_host = f_host or _first(headers, b"x-forwarded-host")
        if proto in ("http", "https"):
            scheme = proto
        if forwarded_host:
            host = forwarded_host
    return f"{scheme}://{host}"


def request_origin(request: ForwardedRequest, trusted_proxies: Iterable[Network],
                   public_url: Optional[str] = None) -> str:
    """
    L{public_origin} of C{request}: its headers, transport and peer.
    """
    return public_origin(request.requestHeaders, request.isSecure(), peer_address(request),
                         public_url, trusted_proxies)


def public_base_path(public_url: Optional[str]) -> str:
    """
    The path prefix of a configured public URL (e.g. C{/gw} behind a proxy
    that mounts the gateway under a path), without trailing slash.
    """
    if not public_url:
        return ""
    return urlsplit(public_url).path.rstrip("/")
