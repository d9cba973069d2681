"""
What L{mcpgated.proxy.resource.GatewayResource} asks of the OAuth relay:
which requests are discovery documents and their answers, and the
challenge headers of a backend's 401/403.

The relay never looks at C{Authorization} or C{DPoP}: they go to the backend
with every other end-to-end header, and nothing here logs headers.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Optional, Tuple
from urllib.parse import urljoin, urlsplit

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent

from mcpgated.forwarding import Network, request_origin
from mcpgated.oauth.challenge import rewrite_header_values
from mcpgated.oauth.metadata import (
    AS_PATH,
    Fetched,
    MetadataCache,
    authorization_server_metadata_urls,
    backend_prm_locations,
    origin_of,
    rewrite_protected_resource,
    usable_url,
)
from mcpgated.oauth.terminating import protected_resource_document, terminates
from mcpgated.oauth.wellknown import (
    PROTECTED_RESOURCE,
    Discovery,
    classify,
    public_metadata_url,
    public_resource,
)
from mcpgated.routing import Route, RouteTable

log = Logger()

_JSON = (b"content-type", b"application/json")
_CORS = (b"access-control-allow-origin", b"*")
_MAX_HINTS = 10000


@attrs.frozen
class Answer:
    """
    The gateway's answer to a discovery request: C{body} with C{headers},
    or, when C{message} is set, a gateway error with that status.
    """

    status: int
    body: bytes = b""
    headers: Tuple[Tuple[bytes, bytes], ...] = ()
    message: Optional[str] = None


@attrs.define
class OAuthRelay:
    """
    @ivar agent: the gateway's agents toward backends (never a blocking
        client): L{mcpgated.proxy.upstream.UpstreamPool.agent}, which gives
        the pool's default agent, or the one trusting an API's
        C{backendCaFile} for its backend's host.
    @ivar public_url: the gateway's configured public URL, if any.
    @ivar trusted_proxies: networks whose forwarding headers are believed.
    """

    agent: Callable[[Optional[str]], Awaitable[IAgent]]
    clock: IReactorTime
    public_url: Optional[str] = None
    trusted_proxies: Iterable[Network] = ()
    cache: MetadataCache = attrs.field(default=None)
    # backend URL -> the resource_metadata URL its last challenge named
    _hints: Dict[str, str] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if self.cache is None:
            self.cache = MetadataCache(self.agent, self.clock)

    def request_origin(self, request: Any) -> str:
        """
        The origin the client used: C{Host} and the transport, or what a
        trusted proxy's C{Forwarded}/C{X-Forwarded-*} say.
        """
        return request_origin(request, self.trusted_proxies)

    # --- discovery documents ------------------------------------------------------------------

    def discovery(self, path: str, table: RouteTable, request: Any, *,
                  origin: Optional[str] = None) -> Optional[Discovery]:
        """
        The discovery request C{path} is, or L{None} for normal routing.

        @param origin: L{request_origin} of C{request} when the caller has
            it already (it is not worked out again).
        """
        if "/.well-known/" not in path:
            return None
        if origin is None:
            origin = self.request_origin(request)
        return classify(path, table, origin, self.public_url)

    async def answer(self, discovery: Discovery, request: Any, *,
                     origin: Optional[str] = None) -> Answer:
        """
        The answer to a discovery request.

        @param origin: as for L{discovery}.
        """
        method = request.method
        if method == b"OPTIONS":
            requested = request.requestHeaders.getRawHeaders(b"access-control-request-headers")
            return Answer(204, headers=(
                _CORS,
                (b"access-control-allow-methods", b"GET, HEAD, OPTIONS"),
                (b"access-control-allow-headers", requested[0] if requested else b"MCP-Protocol-Version"),
                (b"access-control-max-age", b"86400"),
            ))
        if method not in (b"GET", b"HEAD"):
            return Answer(405, headers=((b"allow", b"GET, HEAD, OPTIONS"),),
                          message="OAuth metadata is read with GET")
        route = discovery.route
        if route is None:
            return Answer(404, message="No OAuth metadata is published at this path")
        if origin is None:
            origin = self.request_origin(request)
        if discovery.kind == PROTECTED_RESOURCE:
            return await self._protected_resource(route, origin)
        return await self._authorization_server(route, origin)

    def _get(self, route: Route, url: str) -> "Deferred[Fetched]":
        """
        Fetch through the cache; the API's C{backendCaFile} is trusted for
        its backend's host only.
        """
        ca_file = route.definition.backend_ca_file
        if ca_file is not None and origin_of(url).lower() != origin_of(route.definition.backend).lower():
            ca_file = None
        return self.cache.get(url, ca_file)

    async def _backend_document(self, route: Route, origin: str) -> Tuple[Optional[Fetched], bool, bool]:
        """
        The backend's PRM: (the fetch that found it or L{None}, whether it is
        the root document, whether some location failed to answer).
        """
        failed = False
        backend = route.definition.backend
        public_path = urlsplit(public_resource(route, self.public_url, origin)).path
        for url, root in backend_prm_locations(backend, self._hints.get(backend), public_path):
            fetched = await self._get(route, url)
            if fetched.found:
                return fetched, root, failed
            failed = failed or fetched.failed
        return None, False, failed

    async def _protected_resource(self, route: Route, origin: str) -> Answer:
        if terminates(route.definition):
            # the gateway checks the tokens: its own document (terminating mode)
            document = protected_resource_document(
                route.definition, public_resource(route, self.public_url, origin))
            return Answer(200, json.dumps(document).encode("utf-8"), (_JSON, _CORS))
        backend = route.definition.backend
        fetched, root, failed = await self._backend_document(route, origin)
        if fetched is None or fetched.document is None:
            if failed:
                return Answer(502, message="The backend's protected resource metadata could not be fetched")
            return Answer(404, message="The backend publishes no protected resource metadata")
        resource = public_resource(route, self.public_url, origin)
        served = rewrite_protected_resource(fetched.document, backend, resource, root=root)
        if served is None:
            return Answer(404, message="The backend's host-wide metadata names another resource")
        body = fetched.body if served is fetched.document else json.dumps(served).encode("utf-8")
        return Answer(200, body, (_JSON, _CORS))

    async def _authorization_server(self, route: Route, origin: str) -> Answer:
        """
        The metadata of the backend's authorization server, as that server
        publishes it (never rewritten: its issuer and endpoints are its
        own). A backend without protected-resource metadata is taken to be
        a 2025-03-26 server, its own authorization server.
        """
        backend = route.definition.backend
        fetched, _, failed = await self._backend_document(route, origin)
        servers = fetched.document.get("authorization_servers") if fetched and fetched.document else None
        if isinstance(servers, list) and servers and isinstance(servers[0], str) and usable_url(servers[0]):
            urls = authorization_server_metadata_urls(servers[0])
        else:
            urls = [origin_of(backend) + AS_PATH]
        for url in urls:
            metadata = await self._get(route, url)
            if metadata.found:
                return Answer(200, metadata.body, (_JSON, _CORS))
            failed = failed or metadata.failed
        if failed:
            return Answer(502, message="The authorization server's metadata could not be fetched")
        return Answer(404, message="The backend's authorization server publishes no metadata")

    # --- challenges -----------------------------------------------------------------------------

    def response_headers(self, route: Route, request: Any, response: Any, upstream_url: bytes, *,
                         origin: Optional[str] = None) -> Headers:
        """
        The backend response's headers as the client should see them: for a
        401 or 403 of an API with relay, every C{resource_metadata} in
        C{WWW-Authenticate} points at the gateway's metadata URL for the API,
        all else as the backend sent it. The backend's own value is kept to
        find its metadata.

        @param origin: as for L{discovery}.
        """
        headers: Headers = response.headers
        if response.code not in (401, 403) or not route.definition.oauth.relay:
            return headers
        values = headers.getRawHeaders(b"www-authenticate")
        if not values:
            return headers
        if origin is None:
            origin = self.request_origin(request)
        url = public_metadata_url(route, self.public_url, origin)
        rewritten, originals, malformed = rewrite_header_values(values, url)
        if malformed:
            log.warn("API {api}: a WWW-Authenticate challenge from the backend is malformed;"
                     " relayed with resource_metadata replaced or as it was", api=route.api_id)
        self._note(route.definition.backend, upstream_url.decode("latin-1"), originals)
        out = Headers()
        for name, raw in headers.getAllRawHeaders():
            out.setRawHeaders(name, raw)
        out.setRawHeaders(b"www-authenticate", rewritten)
        return out

    def _note(self, backend: str, upstream_url: str, originals: List[str]) -> None:
        """
        Remember where the backend says its metadata is, as a path on the
        backend's own origin: the gateway never fetches from a host the
        backend names (a backend cannot make it fetch internal URLs), and a
        backend that announces its public URL (or the gateway's) still
        serves the document at that path itself.
        """
        for value in originals:
            try:
                parts = urlsplit(urljoin(upstream_url, value.strip()))
            except ValueError:
                continue
            if parts.scheme not in ("http", "https"):
                continue
            mapped = origin_of(backend) + (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            if usable_url(mapped):
                if self._hints.get(backend) != mapped:
                    if len(self._hints) >= _MAX_HINTS:
                        self._hints.clear()
                    self._hints[backend] = mapped
                return
