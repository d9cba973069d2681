"""
Pure header rules for the relay: hop-by-hop filtering both ways, the
C{X-Forwarded-*} set sent to backends, and event-stream detection. Who is a
trusted proxy and the public origin are L{mcpgated.forwarding}'s.
"""

from __future__ import annotations

from typing import Dict, FrozenSet, Iterable, List, Optional

from twisted.web.http_headers import Headers

from mcpgated._twisted_compat import canonical_name, headers_from_raw, raw_headers
from mcpgated.forwarding import Network, is_trusted

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


# Connection values that name nothing beyond the hop-by-hop set (the usual ones)
_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close", b"Keep-Alive", b"Close"})


def connection_tokens(headers: Headers) -> FrozenSet[bytes]:
    names = set()
    for value in headers.getRawHeaders(b"connection", ()):
        for token in value.replace(b",", b" ").split():
            token = token.strip().lower()
            if token:
                names.add(token)
    return frozenset(names)


def _copy(source: Headers, drop: FrozenSet[bytes]) -> Dict[bytes, List[bytes]]:
    """
    The end-to-end headers of C{source} (canonical names), each list of
    values copied: not in C{drop} (canonical names), not named by its
    C{Connection} header.
    """
    raw = raw_headers(source)
    connection = raw.get(_CONNECTION)
    if connection is not None and not (len(connection) == 1 and connection[0] in _PLAIN_CONNECTION):
        named = frozenset(_canonical(token) for token in connection_tokens(source))
        return {name: list(values) for name, values in raw.items()
                if name not in drop and name not in named}
    return {name: list(values) for name, values in raw.items() if name not in drop}


def upstream_request_headers(
    incoming: Headers,
    peer: Optional[str],
    origin: str,
    trusted_proxies: Iterable[Network],
) -> Headers:
    """
    The headers sent to the backend: everything end-to-end (MCP headers,
    Authorization, Accept, Content-Type, ...) unchanged; hop-by-hop and
    C{Host} dropped (the client sets C{Host} to the backend authority); the
    X-Forwarded-* set added.
    """
    raw = _copy(incoming, _REQUEST_DROP_KEYS)
    out = headers_from_raw(raw)
    chain: List[bytes] = []
    if is_trusted(peer, trusted_proxies):
        for value in incoming.getRawHeaders(b"x-forwarded-for", ()):
            chain.extend(part.strip() for part in value.split(b",") if part.strip())
    if peer:
        chain.append(peer.encode("latin-1"))
    # Into the dictionary too: every value below comes from a parsed header
    # (no CR or LF), the peer's address or the origin worked out from them.
    if chain:
        raw[_X_FORWARDED_FOR] = [b", ".join(chain)]
    scheme, _, host = origin.partition("://")
    raw[_X_FORWARDED_PROTO] = [scheme.encode("latin-1")]
    raw[_X_FORWARDED_HOST] = [host.encode("latin-1")]
    return out


def copy_response_headers(upstream: Headers, outgoing: Headers) -> None:
    """
    Copy the backend's end-to-end response headers (C{Mcp-Session-Id},
    C{WWW-Authenticate}, C{Retry-After}, C{Content-Length}, ...) onto the
    client response, replacing what twisted.web set by default.
    """
    raw_headers(outgoing).update(_copy(upstream, _RESPONSE_DROP_KEYS))


def is_event_stream(headers: Headers) -> bool:
    value = headers.getRawHeaders(b"content-type")
    return value is not None and len(value) > 0 and value[0].split(b";")[0].strip().lower() == b"text/event-stream"
