"""
Protected-resource metadata: the rewrite rules, where a backend's document
is looked for, the bounded cache (on a fake clock and a scripted agent),
which request paths are discovery documents, the public URLs behind
trusted and untrusted forwarding proxies, and the API definition fields.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Dict, List, Optional

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers

from mcpgated.definitions import parse_definition
from mcpgated.model import ApiRecord
from mcpgated.oauth.metadata import (
    MetadataCache,
    authorization_server_metadata_urls,
    backend_prm_locations,
    canonical_url,
    rewrite_protected_resource,
    same_resource,
)
from mcpgated.oauth.wellknown import (
    AUTHORIZATION_SERVER,
    PROTECTED_RESOURCE,
    Discovery,
    classify,
    public_metadata_url,
    public_resource,
)
from mcpgated.forwarding import public_origin
from mcpgated.routing import RouteTable
from tests.support import make_headers

BACKEND = "http://10.0.0.7:3001/mcp"
PUBLIC = "https://gw.example/mcp-proxy"


# --- rewrite rules --------------------------------------------------------------------------------


def test_resource_equal_to_the_backend_is_rewritten_and_signature_dropped():
    document = {"resource": BACKEND, "authorization_servers": ["https://as.example/t1"],
                "scopes_supported": ["a", "b"], "jwks_uri": "https://10.0.0.7:3001/jwks",
                "bearer_methods_supported": ["header"], "dpop_bound_access_tokens_required": True,
                "resource_name": "Files", "signed_metadata": "eyJ.x.y"}
    served = rewrite_protected_resource(document, BACKEND, PUBLIC)
    expected = dict(document, resource=PUBLIC)
    del expected["signed_metadata"]
    assert served == expected
    assert "signed_metadata" in document  # the cached original is not touched


@pytest.mark.parametrize("resource", [
    "http://10.0.0.7:3001/mcp/", "HTTP://10.0.0.7:3001/mcp", "http://10.0.0.7:3001/mcp#frag",
])
def test_equal_means_canonically_equal(resource):
    served = rewrite_protected_resource({"resource": resource}, BACKEND, PUBLIC)
    assert served == {"resource": PUBLIC}


@pytest.mark.parametrize("document", [
    {"resource": "https://evil.example.com/mcp", "signed_metadata": "kept"},
    {"resource": "http://10.0.0.7:3001/mcp/other"},
    {"resource": "http://10.0.0.7:3001"},
    {"resource": PUBLIC},  # the backend already names the gateway
    {"resource": 42},
    {"authorization_servers": ["https://as.example"]},  # no resource at all
])
def test_any_other_resource_is_served_unchanged(document):
    assert rewrite_protected_resource(document, BACKEND, PUBLIC) is document


def test_root_document_is_rewritten_or_refused_never_passed_on():
    assert rewrite_protected_resource({"resource": BACKEND}, BACKEND, PUBLIC, root=True) == {"resource": PUBLIC}
    assert rewrite_protected_resource({"resource": "http://10.0.0.7:3001"}, BACKEND, PUBLIC, root=True) is None
    assert rewrite_protected_resource({}, BACKEND, PUBLIC, root=True) is None


def test_canonical_urls():
    assert canonical_url("HTTPS://Gw.Example:443/a/") == "https://gw.example/a"
    assert canonical_url("http://h:8080") == "http://h:8080"
    assert canonical_url("http://[::1]:80/x") == "http://[::1]/x"
    assert canonical_url("ftp://h/x") is None and canonical_url("/relative") is None
    assert canonical_url("http://h:99999/") is None
    assert same_resource("http://h/mcp?x=1", "http://h/mcp?x=1") and not same_resource("http://h/a", "http://h/b")


def test_where_a_backends_document_is_looked_for():
    assert backend_prm_locations(BACKEND) == [
        ("http://10.0.0.7:3001/.well-known/oauth-protected-resource/mcp", False),
        ("http://10.0.0.7:3001/.well-known/oauth-protected-resource", True),
    ]
    assert backend_prm_locations("http://h:1/", "http://h:1/custom.json") == [
        ("http://h:1/custom.json", False), ("http://h:1/.well-known/oauth-protected-resource", False)]
    # a backend whose resource is the gateway's URL serves its document under the public path
    assert backend_prm_locations(BACKEND, None, "/mcp-proxy") == [
        ("http://10.0.0.7:3001/.well-known/oauth-protected-resource/mcp", False),
        ("http://10.0.0.7:3001/.well-known/oauth-protected-resource/mcp-proxy", False),
        ("http://10.0.0.7:3001/.well-known/oauth-protected-resource", True),
    ]
    assert authorization_server_metadata_urls("https://as.example/t1") == [
        "https://as.example/.well-known/oauth-authorization-server/t1",
        "https://as.example/.well-known/openid-configuration/t1",
        "https://as.example/t1/.well-known/openid-configuration",
    ]
    assert authorization_server_metadata_urls("https://as.example") == [
        "https://as.example/.well-known/oauth-authorization-server",
        "https://as.example/.well-known/openid-configuration",
    ]


# --- the cache ------------------------------------------------------------------------------------


class FakeResponse:
    def __init__(self, code: int, body: bytes, headers: Optional[Dict[str, str]] = None) -> None:
        self.code = code
        self.body = body
        self.length = len(body)
        self.headers = Headers({k.encode(): [v.encode()] for k, v in (headers or {}).items()})

    def deliverBody(self, protocol: Any) -> None:
        transport = FakeTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(self.body)
        if not transport.stopped:
            protocol.connectionLost(Failure(ResponseDone()))


class FakeTransport:
    stopped = False

    def stopProducing(self) -> None:
        self.stopped = True

    def loseConnection(self) -> None:
        self.stopped = True


class ScriptedAgent:
    """
    Answers each GET from C{script} (url -> response), or never when the URL
    is not scripted; records requests and the CA file asked for.
    """

    def __init__(self, script: Dict[str, FakeResponse]) -> None:
        self.script = script
        self.requests: List[bytes] = []
        self.pending: List[Deferred] = []
        self.ca_files: List[Optional[str]] = []

    async def __call__(self, ca_file: Optional[str]) -> "ScriptedAgent":
        self.ca_files.append(ca_file)
        return self

    def request(self, method: bytes, uri: bytes, headers: Headers, body: Any) -> Deferred:
        assert method == b"GET" and body is None
        assert headers.getRawHeaders(b"authorization") is None
        self.requests.append(uri)
        response = self.script.get(uri.decode())
        if response is None:
            d: Deferred = Deferred()
            self.pending.append(d)
            return d
        d = Deferred()
        d.callback(response)
        return d


def _result(d: Deferred) -> Any:
    results: List[Any] = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


DOC = json.dumps({"resource": BACKEND}).encode()
URL = "http://10.0.0.7:3001/.well-known/oauth-protected-resource/mcp"


def test_found_document_is_cached_for_the_ttl_then_refetched():
    clock = Clock()
    agent = ScriptedAgent({URL: FakeResponse(200, DOC)})
    cache = MetadataCache(agent, clock, ttl=300)
    first = _result(cache.get(URL))
    assert first.found and first.document == {"resource": BACKEND} and first.body == DOC
    clock.advance(299)
    assert _result(cache.get(URL)) is first and len(agent.requests) == 1
    clock.advance(2)
    assert _result(cache.get(URL)).found and len(agent.requests) == 2
    assert clock.getDelayedCalls() == []


@pytest.mark.parametrize("cache_control, lifetime", [
    ("max-age=10", 10), ("public, max-age=100000", 300), ("no-store", 0), ("no-cache", 0),
])
def test_backend_cache_control_can_only_shorten_the_ttl(cache_control, lifetime):
    clock = Clock()
    agent = ScriptedAgent({URL: FakeResponse(200, DOC, {"Cache-Control": cache_control})})
    cache = MetadataCache(agent, clock, ttl=300)
    _result(cache.get(URL))
    if lifetime:
        clock.advance(lifetime - 1)
        _result(cache.get(URL))
        assert len(agent.requests) == 1
        clock.advance(1)
    _result(cache.get(URL))
    assert len(agent.requests) == 2


def test_not_found_is_cached_briefly_and_failures_not_at_all():
    clock = Clock()
    agent = ScriptedAgent({URL: FakeResponse(404, b"{}"), "http://h/5xx": FakeResponse(503, b"")})
    cache = MetadataCache(agent, clock, ttl=300, negative_ttl=30)
    missing = _result(cache.get(URL))
    assert not missing.found and not missing.failed
    clock.advance(29)
    _result(cache.get(URL))
    assert len(agent.requests) == 1
    clock.advance(1)
    _result(cache.get(URL))
    assert len(agent.requests) == 2
    assert _result(cache.get("http://h/5xx")).failed
    assert _result(cache.get("http://h/5xx")).failed
    assert agent.requests.count(b"http://h/5xx") == 2


def test_not_json_or_not_an_object_is_not_a_document():
    clock = Clock()
    agent = ScriptedAgent({"http://h/a": FakeResponse(200, b"<html>"), "http://h/b": FakeResponse(200, b"[1]")})
    cache = MetadataCache(agent, clock)
    assert not _result(cache.get("http://h/a")).found
    assert not _result(cache.get("http://h/b")).found


def test_concurrent_requests_share_one_fetch_and_a_silent_backend_times_out():
    clock = Clock()
    agent = ScriptedAgent({})
    cache = MetadataCache(agent, clock, timeout=10)
    waiting = [cache.get(URL) for _ in range(3)]
    left = cache.get(URL)
    left.cancel()  # one client goes away; the others still get their answer
    left.addErrback(lambda f: f.trap(CancelledError))
    assert len(agent.requests) == 1
    clock.advance(10)
    results = [_result(d) for d in waiting]
    assert all(r.failed and r.error == "timed out" for r in results)
    assert agent.pending[0].called  # the request itself was cancelled
    again = cache.get(URL)
    assert len(agent.requests) == 2  # a failure is not cached
    clock.advance(10)
    assert _result(again).failed
    assert clock.getDelayedCalls() == []


def test_oversized_document_is_refused():
    clock = Clock()
    agent = ScriptedAgent({URL: FakeResponse(200, b" " * 2048 + DOC)})
    cache = MetadataCache(agent, clock, max_bytes=1024)
    result = _result(cache.get(URL))
    assert result.failed and "larger than 1024" in result.error


def test_ca_file_is_part_of_the_key_and_passed_to_the_agent():
    clock = Clock()
    agent = ScriptedAgent({URL: FakeResponse(200, DOC)})
    cache = MetadataCache(agent, clock)
    _result(cache.get(URL))
    _result(cache.get(URL, "/etc/ca.pem"))
    _result(cache.get(URL, "/etc/ca.pem"))
    assert agent.ca_files == [None, "/etc/ca.pem"]


# --- discovery paths and public URLs --------------------------------------------------------------


def _definition(path: str, relay: bool = True, asd: bool = False, public_url: Optional[str] = None) -> Any:
    body = {"name": path, "version": "1", "contextPath": path, "backend": BACKEND,
            "plans": [{"name": "Keyless", "security": "KEY_LESS"}],
            "oauth": {"relay": relay, "proxyAuthorizationServerDiscovery": asd}}
    if public_url:
        body["publicUrl"] = public_url
    return parse_definition(body)


def _table(*definitions: Any) -> RouteTable:
    table = RouteTable()
    table.load([ApiRecord(id=d.context_path, definition=d, deployed=d, state="STARTED",
                          created_at=0.0, updated_at=0.0, deployed_at=0.0) for d in definitions])
    return table


def _api(d: Optional[Discovery]) -> Any:
    return None if d is None else (d.kind, d.route.context_path if d.route else None)


ORIGIN = "https://gw.example"
PRM = "/.well-known/oauth-protected-resource"
ASM = "/.well-known/oauth-authorization-server"


def test_discovery_paths_map_to_apis():
    table = _table(_definition("/files"), _definition("/open", relay=False), _definition("/a/b", asd=True))
    assert _api(classify(f"{PRM}/files", table, ORIGIN, None)) == (PROTECTED_RESOURCE, "/files")
    assert _api(classify(f"{PRM}/files/sse", table, ORIGIN, None)) == (PROTECTED_RESOURCE, "/files")
    assert _api(classify(f"/files{PRM}", table, ORIGIN, None)) == (PROTECTED_RESOURCE, "/files")
    assert _api(classify(f"{PRM}/a/b", table, ORIGIN, None)) == (PROTECTED_RESOURCE, "/a/b")
    # no relay: the gateway says 404 at the well-known URL, the backend answers under the path
    assert _api(classify(f"{PRM}/open", table, ORIGIN, None)) == (PROTECTED_RESOURCE, None)
    assert classify(f"/open{PRM}", table, ORIGIN, None) is None
    assert _api(classify(f"{PRM}/nowhere", table, ORIGIN, None)) == (PROTECTED_RESOURCE, None)
    # several APIs on the host: no root document; AS discovery by the one that asked
    assert _api(classify(PRM, table, ORIGIN, None)) == (PROTECTED_RESOURCE, None)
    assert _api(classify(ASM, table, ORIGIN, None)) == (AUTHORIZATION_SERVER, "/a/b")
    assert _api(classify(f"{ASM}/files", table, ORIGIN, None)) == (AUTHORIZATION_SERVER, None)
    assert _api(classify(f"/a/b{ASM}", table, ORIGIN, None)) == (AUTHORIZATION_SERVER, "/a/b")
    # ordinary paths are routed as before
    assert classify("/files", table, ORIGIN, None) is None
    assert classify("/.well-known/other", table, ORIGIN, None) is None
    assert classify("/files/.well-known/other", table, ORIGIN, None) is None


def test_root_document_only_when_one_api_owns_the_host():
    only = _table(_definition("/files"))
    assert _api(classify(PRM, only, ORIGIN, None)) == (PROTECTED_RESOURCE, "/files")
    assert _api(classify(ASM, only, ORIGIN, None)) == (AUTHORIZATION_SERVER, None)  # not asked for
    hosts = _table(_definition("/files"), _definition("/one", public_url="https://one.example"),
                   _definition("/two", public_url="https://two.example/base"))
    assert _api(classify(PRM, hosts, "https://one.example", None)) == (PROTECTED_RESOURCE, "/one")
    assert _api(classify(PRM, hosts, "https://TWO.example", None)) == (PROTECTED_RESOURCE, "/two")
    assert _api(classify(PRM, hosts, "https://other.example", None)) == (PROTECTED_RESOURCE, "/files")
    # a public URL with a path: with or without it (a proxy may strip it)
    assert _api(classify(f"{PRM}/base/two", hosts, ORIGIN, None)) == (PROTECTED_RESOURCE, "/two")
    assert _api(classify(f"{PRM}/two", hosts, ORIGIN, None)) == (PROTECTED_RESOURCE, "/two")
    gw = _table(_definition("/files"))
    assert _api(classify(f"{PRM}/gw/files", gw, ORIGIN, "https://gw.example/gw")) == (PROTECTED_RESOURCE, "/files")


TRUSTED = (ipaddress.ip_network("10.0.0.0/8"),)


@pytest.mark.parametrize("peer, headers, gateway_url, api_url, resource", [
    # straight to the gateway: Host and the transport
    ("203.0.113.9", dict(host="gw.example:8082"), None, None, "http://gw.example:8082/files"),
    # an untrusted client's forwarding headers are ignored
    ("203.0.113.9", dict(host="gw.example:8082", x_forwarded_proto="https", x_forwarded_host="evil.example"),
     None, None, "http://gw.example:8082/files"),
    # a trusted TLS terminator's are believed
    ("10.1.2.3", dict(host="10.0.0.5:8082", x_forwarded_proto="https", x_forwarded_host="mcp.example.com"),
     None, None, "https://mcp.example.com/files"),
    ("10.1.2.3", dict(host="10.0.0.5", forwarded='for=1.2.3.4;proto=https;host="rfc.example:8443"'),
     None, None, "https://rfc.example:8443/files"),
    # configuration wins: the gateway's public_url (with its path), then the API's publicUrl
    ("10.1.2.3", dict(host="10.0.0.5", x_forwarded_host="x.example"), "https://gw.example/gw", None,
     "https://gw.example/gw/files"),
    ("10.1.2.3", dict(host="10.0.0.5", x_forwarded_host="x.example"), "https://gw.example/gw",
     "https://files.example", "https://files.example/files"),
])
def test_public_resource_and_metadata_urls(peer, headers, gateway_url, api_url, resource):
    route = _table(_definition("/files", public_url=api_url)).routes()[0]
    origin = public_origin(make_headers(**headers), False, peer, None, TRUSTED)
    assert public_resource(route, gateway_url, origin) == resource
    scheme, _, rest = resource.partition("://")
    authority, _, path = rest.partition("/")
    assert public_metadata_url(route, gateway_url, origin) == f"{scheme}://{authority}{PRM}/{path}"


# --- the relay: where the backend says its document is ----------------------------------------------


class FakeRequest:
    def __init__(self, host: str, method: bytes = b"GET") -> None:
        self.method = method
        self.requestHeaders = make_headers(host=host)

    def getClientAddress(self) -> Any:
        from twisted.internet.address import IPv4Address

        return IPv4Address("TCP", "203.0.113.9", 40000)

    def isSecure(self) -> bool:
        return False


def test_backend_named_metadata_is_fetched_from_the_backend_only():
    from mcpgated.oauth.relay import OAuthRelay

    moved = "http://10.0.0.7:3001/custom/meta.json?v=2"
    agent = ScriptedAgent({moved: FakeResponse(200, json.dumps({"resource": BACKEND, "x": 1}).encode())})
    relay = OAuthRelay(agent, Clock())
    route = _table(_definition("/files")).routes()[0]
    challenge = FakeResponse(401, b"", {"WWW-Authenticate":
                                        'Bearer resource_metadata="http://169.254.169.254/custom/meta.json?v=2"'})
    headers = relay.response_headers(route, FakeRequest("gw.example"), challenge, BACKEND.encode())
    assert headers.getRawHeaders(b"www-authenticate") == [
        b'Bearer resource_metadata="http://gw.example/.well-known/oauth-protected-resource/files"']
    answer = _result(Deferred.fromCoroutine(relay.answer(
        Discovery(PROTECTED_RESOURCE, route), FakeRequest("gw.example"))))
    assert answer.status == 200 and json.loads(answer.body) == {"resource": "http://gw.example/files", "x": 1}
    # the host the backend named was never contacted: its path was asked of the backend
    assert agent.requests == [moved.encode()]
    # other statuses and APIs without relay: headers untouched
    ok = FakeResponse(200, b"", {"WWW-Authenticate": 'Bearer resource_metadata="x"'})
    assert relay.response_headers(route, FakeRequest("gw.example"), ok, b"") is ok.headers


class OpaqueRequest(FakeRequest):
    """
    A request whose origin must not be worked out (the caller gave it).
    """

    def getClientAddress(self) -> Any:
        raise AssertionError("the origin was worked out again")

    def isSecure(self) -> bool:
        raise AssertionError("the origin was worked out again")


def test_an_origin_the_caller_gives_is_used_as_is():
    from mcpgated.oauth.relay import OAuthRelay

    prm = "http://10.0.0.7:3001/.well-known/oauth-protected-resource/mcp"
    agent = ScriptedAgent({prm: FakeResponse(200, json.dumps({"resource": BACKEND}).encode())})
    relay = OAuthRelay(agent, Clock())
    table = _table(_definition("/files"))
    route = table.routes()[0]
    request = OpaqueRequest("ignored.example")
    origin = "https://given.example"
    discovery = relay.discovery(f"{PRM}/files", table, request, origin=origin)
    assert discovery == Discovery(PROTECTED_RESOURCE, route)
    answer = _result(Deferred.fromCoroutine(relay.answer(discovery, request, origin=origin)))
    assert answer.status == 200 and json.loads(answer.body) == {"resource": "https://given.example/files"}
    challenge = FakeResponse(401, b"", {"WWW-Authenticate": f'Bearer resource_metadata="http://b{PRM}/mcp"'})
    headers = relay.response_headers(route, request, challenge, BACKEND.encode(), origin=origin)
    assert headers.getRawHeaders(b"www-authenticate") == [
        b'Bearer resource_metadata="https://given.example/.well-known/oauth-protected-resource/files"']
    # without it, the request's own origin (its Host, not the gateway's public URL)
    plain = FakeRequest("host.example")
    assert relay.request_origin(plain) == "http://host.example"
    answer = _result(Deferred.fromCoroutine(relay.answer(discovery, plain)))
    assert json.loads(answer.body) == {"resource": "http://host.example/files"}
