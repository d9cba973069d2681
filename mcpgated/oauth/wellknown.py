"""
Which request paths are OAuth discovery documents the gateway answers
itself, for which API, and the public URLs of an API.

Served, for APIs with C{oauth.relay} or a PUBLISHED C{JWT}/C{OAUTH2} plan
(then the gateway's own document, L{mcpgated.oauth.terminating}):

- C{/.well-known/oauth-protected-resource<public path>}: RFC 9728's
  path-inserted URL of the API (the one the gateway's challenges name); the
  public path is the context path, optionally after the public URL's own
  path (a gateway mounted under C{/gw}), with or without it;
- C{/.well-known/oauth-protected-resource}: only when one API owns the host;
- C{<context path>/.well-known/oauth-protected-resource}: clients that append
  the well-known suffix to the MCP URL.

And with C{oauth.proxyAuthorizationServerDiscovery} as well,
C{/.well-known/oauth-authorization-server} (host root, the 2025-03-26 rule;
also path-inserted and suffixed).

Any other C{/.well-known/oauth-*} path is answered 404 by the gateway;
C{<context path>/.well-known/...} paths of APIs without relay go to the
backend as before.
"""

from __future__ import annotations

from typing import Iterable, List, Optional
from urllib.parse import urlsplit

import attrs

from mcpgated.oauth.metadata import AS_PATH, PRM_PATH, origin_of, well_known_url
from mcpgated.oauth.terminating import terminates
from mcpgated.routing import Route, RouteTable

PROTECTED_RESOURCE = "protected-resource"
AUTHORIZATION_SERVER = "authorization-server"

_KINDS = ((PRM_PATH, PROTECTED_RESOURCE), (AS_PATH, AUTHORIZATION_SERVER))


@attrs.frozen
class Discovery:
    """
    A discovery request the gateway answers.

    @ivar kind: L{PROTECTED_RESOURCE} or L{AUTHORIZATION_SERVER}.
    @ivar route: the API whose document it is, or L{None} for a 404.
    """

    kind: str
    route: Optional[Route]


def serves(kind: str, route: Optional[Route]) -> bool:
    if route is None:
        return False
    oauth = route.definition.oauth
    if kind == PROTECTED_RESOURCE:
        return oauth.relay or terminates(route.definition)
    return oauth.relay and oauth.proxy_authorization_server_discovery


def classify(path: str, table: RouteTable, request_origin: str,
             gateway_public_url: Optional[str]) -> Optional[Discovery]:
    """
    The discovery request a path is, or L{None} for normal routing.

    @param request_origin: the origin the client used (forwarding headers
        believed only from trusted proxies), to tell which API owns a host.
    """
    routes = table.routes()
    for prefix, kind in _KINDS:
        if path == prefix or path == prefix + "/":
            return Discovery(kind, root_route(kind, routes, request_origin))
        if path.startswith(prefix + "/"):
            route = _inserted_route(path[len(prefix):], table, routes, gateway_public_url)
            return Discovery(kind, route if serves(kind, route) else None)
    match = table.match(path)
    if match is not None:
        route, rest = match
        for prefix, kind in _KINDS:
            if (rest == prefix or rest.startswith(prefix + "/")) and serves(kind, route):
                return Discovery(kind, route)
    return None


def _inserted_route(rest: str, table: RouteTable, routes: List[Route],
                    gateway_public_url: Optional[str]) -> Optional[Route]:
    candidates = [rest]
    for base in _base_paths(routes, gateway_public_url):
        if rest.startswith(base + "/"):
            candidates.append(rest[len(base):])
    for candidate in candidates:
        match = table.match(candidate)
        if match is not None:
            return match[0]
    return None


def _base_paths(routes: Iterable[Route], gateway_public_url: Optional[str]) -> List[str]:
    bases = set()
    for url in [gateway_public_url] + [r.definition.public_url for r in routes]:
        if url:
            path = urlsplit(url).path.rstrip("/")
            if path:
                bases.add(path)
    return sorted(bases, key=len, reverse=True)


def _same_origin(a: str, b: str) -> bool:
    return origin_of(a).lower() == b.lower()


def host_routes(routes: Iterable[Route], request_origin: str) -> List[Route]:
    """
    The APIs served on a host: those whose own C{publicUrl} names it, or,
    when none does, every API without one.
    """
    routes = list(routes)
    named = [r for r in routes
             if r.definition.public_url and _same_origin(r.definition.public_url, request_origin)]
    return named or [r for r in routes if not r.definition.public_url]


def root_route(kind: str, routes: Iterable[Route], request_origin: str) -> Optional[Route]:
    """
    The API whose document is served at the host root.

    Protected-resource metadata: only the API that owns the host (the only
    one served on it). Authorization-server metadata (a 2025-03-26 host has
    one authorization server): that API, or else the only API on the host
    that asked for it.
    """
    on_host = host_routes(routes, request_origin)
    if len(on_host) == 1 and serves(kind, on_host[0]):
        return on_host[0]
    if kind == AUTHORIZATION_SERVER:
        asking = [r for r in on_host if serves(kind, r)]
        if len(asking) == 1:
            return asking[0]
    return None


# --- public URLs ----------------------------------------------------------------------------


def public_base(route: Route, gateway_public_url: Optional[str], request_origin: str) -> str:
    """
    Scheme, authority and path prefix clients reach the API's context path
    under: the API's C{publicUrl}, else the gateway's C{public_url}, else the
    request's origin.
    """
    return (route.definition.public_url or gateway_public_url or request_origin).rstrip("/")


def public_resource(route: Route, gateway_public_url: Optional[str], request_origin: str) -> str:
    """
    The API's URL as clients use it: its resource identifier (RFC 8707).
    """
    return public_base(route, gateway_public_url, request_origin) + route.context_path


def public_metadata_url(route: Route, gateway_public_url: Optional[str], request_origin: str) -> str:
    """
    Where the gateway serves the API's protected-resource metadata (RFC 9728
    section 3.1: the well-known string inserted before the path).
    """
    return well_known_url(public_resource(route, gateway_public_url, request_origin))
