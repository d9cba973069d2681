"""
The backend's OAuth metadata: where it lives, fetching it through the
gateway's own L{IAgent} (L{mcpgated.webclient}) with a bounded cache, and
the rewrite rules.

RFC 9728 section 3.3: a protected-resource metadata (PRM) document reached
through a challenge must name the URL the client used as its C{resource}.
Behind the gateway that URL is the gateway's, so a document whose
C{resource} is the backend's own URL gets the gateway's; any other value is
left alone so that a client still refuses a resource that is not this
API's. Authorization-server metadata is never rewritten: its C{issuer} must
match the URL it was found by (RFC 8414 section 3.3) and the tokens' C{iss}.
"""

from __future__ import annotations

import json
import re
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent

from mcpgated.webclient import fetch

log = Logger()

PRM_PATH = "/.well-known/oauth-protected-resource"
AS_PATH = "/.well-known/oauth-authorization-server"
OIDC_PATH = "/.well-known/openid-configuration"

_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)


# --- URLs ------------------------------------------------------------------------------------


def canonical_url(url: str) -> Optional[str]:
    """
    A URL in the form RFC 8707 resource identifiers are compared in:
    lowercase scheme and host, no default port, no fragment, no trailing
    slash on the path; L{None} when it is not an absolute http(s) URL.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path.rstrip("/"), parts.query, ""))


def same_resource(a: str, b: str) -> bool:
    """
    Whether two resource identifiers name the same resource.
    """
    left, right = canonical_url(a), canonical_url(b)
    return left is not None and left == right


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def well_known_url(url: str, well_known: str = PRM_PATH) -> str:
    """
    RFC 9728 section 3.1 (and RFC 8414 section 3.1): the well-known string
    inserted between the authority and the path; no query.
    """
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{well_known}{path}"


def backend_prm_locations(backend_url: str, hint: Optional[str] = None,
                          public_path: Optional[str] = None) -> List[Tuple[str, bool]]:
    """
    Where a backend's PRM may be, in the order tried, each with whether it
    is the host-wide root document: the C{resource_metadata} the backend
    itself announced, the path-inserted well-known URL, the same for the
    public path (a backend configured with the gateway's URL as its
    resource serves its document there), the root one.
    """
    origin = origin_of(backend_url)
    candidates = [hint, well_known_url(backend_url)]
    if public_path:
        candidates.append(origin + PRM_PATH + public_path.rstrip("/"))
    locations: List[Tuple[str, bool]] = []
    for url in candidates:
        if url and url not in [u for u, _ in locations]:
            locations.append((url, False))
    root = origin + PRM_PATH
    if root not in [u for u, _ in locations]:
        locations.append((root, True))
    return locations


def authorization_server_metadata_urls(issuer: str) -> List[str]:
    """
    Where an issuer's metadata may be (RFC 8414 section 3.1, then OpenID
    Connect Discovery both ways), as MCP clients try them.
    """
    parts = urlsplit(issuer)
    base = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    if path:
        return [base + AS_PATH + path, base + OIDC_PATH + path, base + path + OIDC_PATH]
    return [base + AS_PATH, base + OIDC_PATH]


def usable_url(value: str) -> bool:
    """
    An absolute http(s) URL the gateway may fetch (ASCII, a host, no
    credentials).
    """
    if not value.isascii() or any(c.isspace() or ord(c) < 0x20 for c in value):
        return False
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises on a port that is no number or out of range
    except ValueError:
        return False
    return (parts.scheme in _DEFAULT_PORTS and bool(parts.hostname)
            and parts.username is None and parts.password is None)


# --- the rewrite rules -----------------------------------------------------------------------


def rewrite_protected_resource(document: Mapping[str, Any], backend_url: str, public_resource: str,
                               *, root: bool = False) -> Optional[Mapping[str, Any]]:
    """
    The PRM document to serve for an API.

    @param document: the backend's document (a JSON object).
    @param backend_url: the API's backend URL.
    @param public_resource: the API's URL as clients use it.
    @param root: the document is the backend host's root one.

    @return: a new document with C{resource} set to C{public_resource} and
        C{signed_metadata} dropped (its signature covers the old value) when
        C{resource} is the backend's URL; else C{document} itself,
        unchanged, for the client to judge; else, for a root document,
        L{None}: a host-wide document names some other resource, and a
        client that found it by probing would refuse it anyway.
    """
    resource = document.get("resource")
    if isinstance(resource, str) and same_resource(resource, backend_url):
        rewritten = dict(document)
        rewritten["resource"] = public_resource
        rewritten.pop("signed_metadata", None)
        return rewritten
    if root:
        return None
    return document


# --- fetching --------------------------------------------------------------------------------


@attrs.frozen
class Fetched:
    """
    One metadata fetch: C{status} is L{None} when no response came (then
    C{error} says why); C{document} is the body when it is a JSON object.
    """

    url: str
    status: Optional[int] = None
    body: bytes = b""
    document: Optional[Mapping[str, Any]] = None
    error: Optional[str] = None

    @property
    def found(self) -> bool:
        return self.status == 200 and self.document is not None

    @property
    def failed(self) -> bool:
        """
        The location may hold a document but did not say (no answer, 5xx,
        429): not the same as "there is none".
        """
        return self.status is None or self.status >= 500 or self.status == 429


def _max_age(headers: Headers) -> Optional[float]:
    values = headers.getRawHeaders(b"cache-control") or []
    text = ",".join(v.decode("latin-1") for v in values).lower()
    if "no-store" in text or "no-cache" in text:
        return 0.0
    match = _MAX_AGE.search(text)
    return float(match.group(1)) if match else None


@attrs.define
class MetadataCache:
    """
    GETs metadata documents through the gateway's agent and keeps each for
    at most C{ttl} seconds (less when the backend's C{Cache-Control} says
    so; C{negative_ttl} for a 4xx). Failures (no answer, 5xx) are not
    cached. Concurrent requests for one URL share one fetch.

    @ivar agent: gives the agent that trusts C{ca_file} (L{None}: the
        system trust store), e.g. L{mcpgated.proxy.upstream.UpstreamPool.agent}.
    """

    agent: Callable[[Optional[str]], Awaitable[IAgent]]
    clock: IReactorTime
    ttl: float = 300.0
    negative_ttl: float = 30.0
    timeout: float = 10.0
    max_bytes: int = 256 * 1024
    max_entries: int = 1024
    _entries: Dict[Tuple[str, Optional[str]], Tuple[float, Fetched]] = attrs.field(factory=dict)
    _waiting: Dict[Tuple[str, Optional[str]], List["Deferred[Fetched]"]] = attrs.field(factory=dict)

    def get(self, url: str, ca_file: Optional[str] = None) -> "Deferred[Fetched]":
        """
        The document at C{url}, from the cache or fetched (with TLS verified
        against C{ca_file} when given).
        """
        key = (url, ca_file)
        entry = self._entries.get(key)
        if entry is not None:
            if entry[0] > self.clock.seconds():
                return succeed(entry[1])
            del self._entries[key]
        d: "Deferred[Fetched]" = Deferred()
        waiters = self._waiting.get(key)
        if waiters is not None:
            waiters.append(d)
            return d
        self._waiting[key] = [d]
        # (may settle at once, e.g. on a connection refused)
        Deferred.fromCoroutine(self._fetch(url, ca_file)).addBoth(self._settle, key)
        return d

    def forget(self) -> None:
        self._entries.clear()

    def _settle(self, result: Any, key: Tuple[str, Optional[str]]) -> None:
        if isinstance(result, Failure):  # pragma: no cover (_fetch catches everything)
            result = Fetched(key[0], error=result.getErrorMessage()), 0.0
        fetched, lifetime = result
        if lifetime > 0:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (self.clock.seconds() + lifetime, fetched)
        for d in self._waiting.pop(key, []):
            if not d.called:  # a cancelled waiter (its client left) is skipped
                d.callback(fetched)

    async def _fetch(self, url: str, ca_file: Optional[str]) -> Tuple[Fetched, float]:
        try:
            agent = await self.agent(ca_file)
            reply = await fetch(agent, self.clock, "GET", url, Headers({b"accept": [b"application/json"]}),
                                max_bytes=self.max_bytes, timeout=self.timeout)
        except Exception as e:  # noqa: BLE001 -- whatever went wrong, the location did not answer
            reason = str(e) or e.__class__.__name__
            log.info("fetching OAuth metadata {url} failed: {reason}", url=url, reason=reason)
            return Fetched(url, error=reason), 0.0
        status, headers, body = reply.status, reply.headers, reply.body
        document = None
        if status == 200:
            try:
                parsed = json.loads(body)
            except (ValueError, UnicodeDecodeError, RecursionError):
                parsed = None
            if isinstance(parsed, dict):
                document = parsed
        fetched = Fetched(url, status=status, body=body, document=document)
        if fetched.failed:
            return fetched, 0.0
        lifetime = self.ttl if fetched.found else min(self.ttl, self.negative_ttl)
        max_age = _max_age(headers)
        if max_age is not None:
            lifetime = min(lifetime, max_age)
        return fetched, lifetime
