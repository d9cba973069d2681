"""
Pure header rules for the relay: hop-by-hop filtering both ways, forwarding
headers, and the public origin clients see.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from twisted.web.http_headers import Headers

from mcpgated._twisted_compat import canonical_name, raw_headers

# RFC 9110 section 7.6.1, plus the historical proxy ones.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

# Set by the gateway itself toward the backend.
_REQUEST_DROP = HOP_BY_HOP | {
    b"host",
    b"content-length",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"forwarded",
}
_RESPONSE_DROP = HOP_BY_HOP | {b"server", b"date"}

# Headers keys its dict by canonical name (b"Content-Type"); the rules
# below work on that dict directly, without re-validating values that
# Headers or the HTTP parser already checked.
_canonical = canonical_name
_REQUEST_DROP_KEYS = frozenset(_canonical(name) for name in _REQUEST_DROP)
_RESPONSE_DROP_KEYS = frozenset(_canonical(name) for name in _RESPONSE_DROP)
_CONNECTION = _canonical(b"connection")
_X_FORWARDED_FOR = _canonical(b"x-forwarded-for")
_X_FORWARDED_PROTO = _canonical(b"x-forwarded-proto")
_X_FORWARDED_HOST = _canonical(b"x-forwarded-host")


def connection_tokens(headers: Headers) -> frozenset:
    names = set()
    for value in headers.getRawHeaders(b"connection", ()):
        for token in value.replace(b",", b" ").split():
            token = token.strip().lower()
            if token:
                names.add(token)
    return frozenset(names)


def _copy(source: Headers, drop: frozenset) -> List[Tuple[bytes, Sequence[bytes]]]:
    """
    The end-to-end headers of C{source} (canonical names): not in C{drop}
    (canonical names), not named by its C{Connection} header.
    """
    raw = raw_headers(source)
    if _CONNECTION in raw:
        named = frozenset(_canonical(token) for token in connection_tokens(source))
        return [(name, values) for name, values in raw.items()
                if name not in drop and name not in named]
    return [(name, values) for name, values in raw.items() if name not in drop]


def is_trusted(address: Optional[str], networks: Iterable) -> bool:
    if not address or not networks:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _first(headers: Headers, name: bytes) -> Optional[str]:
    value = headers.getRawHeaders(name)
    if not value:
        return None
    return value[0].split(b",")[0].strip().decode("latin-1") or None


def _forwarded_pair(headers: Headers) -> Tuple[Optional[str], Optional[str]]:
    """
    C{proto} and C{host} from the first element of an RFC 7239 C{Forwarded}.
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
    trusted_proxies: Iterable,
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
        f_proto, f_host = _forwarded_pair(headers)
        proto = f_proto or _first(headers, b"x-forwarded-proto")
        forwarded_host = f_host or _first(headers, b"x-forwarded-host")
        if proto in ("http", "https"):
            scheme = proto
        if forwarded_host:
            host = forwarded_host
    return f"{scheme}://{host}"


def public_base_path(public_url: Optional[str]) -> str:
    """
    The path prefix of a configured public URL (e.g. C{/gw} behind a proxy
    that mounts the gateway under a path), without trailing slash.
    """
    if not public_url:
        return ""
    return urlsplit(public_url).path.rstrip("/")


def upstream_request_headers(
    incoming: Headers,
    peer: Optional[str],
    origin: str,
    trusted_proxies: Iterable,
) -> Headers:
    """
    The headers sent to the backend: everything end-to-end (MCP headers,
    Authorization, Accept, Content-Type, ...) unchanged; hop-by-hop and
    C{Host} dropped (the client sets C{Host} to the backend authority); the
    X-Forwarded-* set added.
    """
    out = Headers()
    raw = raw_headers(out)
    for name, values in _copy(incoming, _REQUEST_DROP_KEYS):
        raw[name] = list(values)
    chain = []
    if is_trusted(peer, trusted_proxies):
        for value in incoming.getRawHeaders(b"x-forwarded-for", ()):
            chain.extend(part.strip() for part in value.split(b",") if part.strip())
    if peer:
        chain.append(peer.encode("latin-1"))
    if chain:
        out.setRawHeaders(_X_FORWARDED_FOR, [b", ".join(chain)])
    scheme, _, host = origin.partition("://")
    out.setRawHeaders(_X_FORWARDED_PROTO, [scheme.encode("latin-1")])
    out.setRawHeaders(_X_FORWARDED_HOST, [host.encode("latin-1")])
    return out


def copy_response_headers(upstream: Headers, outgoing: Headers) -> None:
    """
    Copy the backend's end-to-end response headers (C{Mcp-Session-Id},
    C{WWW-Authenticate}, C{Retry-After}, C{Content-Length}, ...) onto the
    client response, replacing what twisted.web set by default.
    """
    raw = raw_headers(outgoing)
    for name, values in _copy(upstream, _RESPONSE_DROP_KEYS):
        raw[name] = list(values)


def is_event_stream(headers: Headers) -> bool:
    value = headers.getRawHeaders(b"content-type")
    return bool(value) and value[0].split(b";")[0].strip().lower() == b"text/event-stream"
