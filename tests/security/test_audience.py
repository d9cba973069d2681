"""
Issue #12, item 4: a token plan without C{audience} accepts only tokens
issued for the API's public resource URL, the C{resource} its
protected-resource metadata advertises (MCP authorization: a server MUST
reject tokens not issued for it). C{anyAudience: true} is the explicit
opt-out; the admin API shows the effective audiences.

Tokens are JWTs (a static key) and RFC 7662 introspection answers, through
the real daemon.
"""

from __future__ import annotations

import json
import time
from typing import Any, Dict, Iterator, Optional

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from mcpgated.oauth.terminating import effective_audiences
from mcpgated.definitions import parse_definition
from tests.support import Daemon, deploy, http, running

PRM = "/.well-known/oauth-protected-resource"
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
ISSUER = "https://idp.example"
KEY = ECKey.generate_key("P-256")
MISSING: Any = object()


def _token(aud: Any) -> str:
    now = int(time.time())
    claims: Dict[str, Any] = {"iss": ISSUER, "sub": "alice", "exp": now + 600, "iat": now}
    if aud is not MISSING:
        claims["aud"] = aud
    return jwt.encode({"alg": "ES256"}, claims, KEY)


def _call(url: str, token: str, host: Optional[str] = None) -> int:
    headers = dict(ACCEPT, Authorization=f"Bearer {token}")
    if host is not None:
        headers["Host"] = host
    return http("POST", url, raw=json.dumps(PING).encode(), headers=headers)[0]


def _jwt_plan(**configuration: Any) -> Dict[str, Any]:
    return {"name": "Tokens", "security": "JWT", "configuration": dict(
        {"issuer": ISSUER, "algorithms": ["ES256"], "publicKey": KEY.as_pem(private=False).decode()},
        **configuration)}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[Daemon]:
    yield from running(Daemon(tmp_path_factory.mktemp("audience")))


def test_jwt_without_audience_accepts_only_tokens_for_the_api(daemon, peer):
    url = daemon.gateway + "/jwt"
    api = deploy(daemon, "/jwt", peer.url + "/mcp", [_jwt_plan()])
    # the metadata's resource is the audience expected
    document = json.loads(http("GET", f"{daemon.gateway}{PRM}/jwt")[2])
    assert document["resource"] == url
    assert _call(url, _token(url)) == 200
    assert _call(url, _token([url, "https://some-other-rs.example"])) == 200
    for aud in ("https://some-other-rs.example", daemon.gateway + "/other-api", url + "/",
                daemon.gateway, url.upper(), [], "", MISSING, ["https://a.example", "https://b"]):
        status, headers, body = http("POST", url, raw=json.dumps(PING).encode(),
                                     headers=dict(ACCEPT, Authorization=f"Bearer {_token(aud)}"))
        assert status == 401, aud
        assert 'error="invalid_token"' in headers["WWW-Authenticate"]
        assert "aud" in headers["WWW-Authenticate"]
    assert api["effectiveAudience"] == {"Tokens": {"audience": ["{origin}/jwt"], "source": "request"}}
    assert api["deployed"]["effectiveAudience"] == api["effectiveAudience"]


def test_the_audience_follows_the_public_url(daemon, peer):
    public = "https://gw.example/base"
    api = deploy(daemon, "/pinned", peer.url + "/mcp", [_jwt_plan()], publicUrl=public)
    url = daemon.gateway + "/pinned"
    assert _call(url, _token(public + "/pinned")) == 200
    # the address the client used does not decide it when a public URL is set
    assert _call(url, _token(url)) == 401
    assert api["effectiveAudience"] == {
        "Tokens": {"audience": [public + "/pinned"], "source": "publicUrl"}}


def test_without_a_public_url_the_request_origin_decides(daemon, peer):
    deploy(daemon, "/hosted", peer.url + "/mcp", [_jwt_plan()])
    url = daemon.gateway + "/hosted"
    port = daemon.ports["gateway"][0]
    # the metadata a client reached through "localhost" names that origin; so does the audience
    document = json.loads(http("GET", f"{daemon.gateway}{PRM}/hosted",
                               headers={"Host": f"localhost:{port}"})[2])
    assert document["resource"] == f"http://localhost:{port}/hosted"
    assert _call(url, _token(f"http://localhost:{port}/hosted"), host=f"localhost:{port}") == 200
    assert _call(url, _token(f"http://localhost:{port}/hosted")) == 401


def test_explicit_audience_and_explicit_opt_out(daemon, peer):
    explicit = deploy(daemon, "/explicit", peer.url + "/mcp",
                       [_jwt_plan(audience=["api://mcp", "https://rs.example"])])
    url = daemon.gateway + "/explicit"
    assert _call(url, _token("api://mcp")) == 200
    assert _call(url, _token(url)) == 401  # the plan's audience replaces the default
    assert explicit["effectiveAudience"]["Tokens"] == {
        "audience": ["api://mcp", "https://rs.example"], "source": "plan"}

    anyone = deploy(daemon, "/anyone", peer.url + "/mcp", [_jwt_plan(anyAudience=True)])
    url = daemon.gateway + "/anyone"
    for aud in ("https://some-other-rs.example", MISSING, url):
        assert _call(url, _token(aud)) == 200, aud
    assert anyone["effectiveAudience"]["Tokens"] == {"audience": None, "source": "anyAudience"}
    assert anyone["plans"][0]["configuration"]["anyAudience"] is True
    status, shown = daemon.admin("GET", f"/apis/{anyone['id']}")
    assert status == 200 and shown["effectiveAudience"] == anyone["effectiveAudience"]
    # what GET shows can be PUT back
    status, updated = daemon.admin("PUT", f"/apis/{anyone['id']}", shown)
    assert status == 200, updated


@pytest.mark.parametrize("configuration,field", [
    ({"anyAudience": "yes"}, "anyAudience"),
    ({"anyAudience": 1}, "anyAudience"),
    ({"anyAudience": True, "audience": "https://rs.example"}, "anyAudience"),
    ({"audience": 3}, "audience"),
])
def test_audience_settings_are_validated(daemon, configuration, field):
    for plan in (_jwt_plan(**configuration),
                 {"name": "Intro", "security": "OAUTH2", "configuration": dict(
                     {"introspectionUrl": "https://as.example/introspect",
                      "authorizationServers": ["https://as.example"]}, **configuration)}):
        status, body = daemon.admin("POST", "/apis", {
            "name": "x", "version": "1", "contextPath": "/invalid", "backend": "http://127.0.0.1:1/mcp",
            "plans": [plan]})
        assert status == 400 and body["field"] == f"plans[0].configuration.{field}", body


def test_introspection_without_audience_accepts_only_tokens_for_the_api(daemon, peer):
    url = daemon.gateway + "/introspected"
    now = int(time.time())
    peer.tokens.update({
        "for-us": {"active": True, "exp": now + 600, "aud": url},
        "for-us-too": {"active": True, "exp": now + 600, "aud": ["https://x.example", url]},
        "for-them": {"active": True, "exp": now + 600, "aud": "https://some-other-rs.example"},
        "for-nobody": {"active": True, "exp": now + 600},
    })
    configuration = {"introspectionUrl": peer.url + "/introspect", "cacheSeconds": 0,
                     "authorizationServers": ["https://as.example"]}
    api = deploy(daemon, "/introspected", peer.url + "/mcp", [
        {"name": "Intro", "security": "OAUTH2", "configuration": configuration}])
    assert _call(url, "for-us") == 200
    assert _call(url, "for-us-too") == 200
    assert _call(url, "for-them") == 401
    assert _call(url, "for-nobody") == 401  # no aud: not shown to be for this API
    assert api["effectiveAudience"] == {"Intro": {"audience": ["{origin}/introspected"],
                                                  "source": "request"}}
    deploy(daemon, "/introspected-any", peer.url + "/mcp", [
        {"name": "Intro", "security": "OAUTH2",
         "configuration": dict(configuration, anyAudience=True)}])
    assert _call(daemon.gateway + "/introspected-any", "for-them") == 200
    assert _call(daemon.gateway + "/introspected-any", "for-nobody") == 200


def test_effective_audiences_with_the_gateway_public_url():
    definition = parse_definition({
        "name": "x", "version": "1", "contextPath": "/mcp", "backend": "http://127.0.0.1:1/mcp",
        "plans": [_jwt_plan(), {"name": "Keyless", "security": "KEY_LESS"}]})
    assert effective_audiences(definition, "https://gw.example/") == {
        "Tokens": {"audience": ["https://gw.example/mcp"], "source": "gateway.public_url"}}
