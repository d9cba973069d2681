"""
JWT and OAUTH2 plans: the gateway as the OAuth resource server of its APIs
("terminating" mode), through the real daemon.

The test runs its own token peers on loopback port 0 (a JWK set server
whose keys it rotates, an RFC 7662 introspection endpoint counting its
calls, a backend recording the headers it gets), npm's server-everything
behind the APIs, the official SDK client with different tokens, and the
SDK's OAuth client provider against the real authorization server of
tests/oauth_peers.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import parse_qs

import anyio
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from tests.oauth_peers import oauth_client
from tests.support import BIN, REPO, Daemon, Proc, deploy, http, running

PRM = "/.well-known/oauth-protected-resource"
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}
CLIENT_ID, CLIENT_SECRET = "gateway client", "s3cret:&/"


# --- the test's own peers ------------------------------------------------------------------


class Peers:
    """
    One threaded HTTP server on an ephemeral loopback port:
    C{GET /jwks/<name>} serves C{jwks[name]}; C{POST /introspect} answers
    from C{tokens} (RFC 7662, HTTP Basic client credentials required);
    C{POST /backend} records the request headers and answers a JSON-RPC
    result.
    """

    def __init__(self) -> None:
        self.jwks: Dict[str, Dict[str, Any]] = {}
        self.tokens: Dict[str, Dict[str, Any]] = {}
        self.counts: Counter = Counter()
        self.introspected: List[Dict[str, Any]] = []
        self.recorded: List[Dict[str, str]] = []
        self.lock = threading.Lock()
        peers = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                name = self.path.rpartition("/")[2]
                with peers.lock:
                    peers.counts[f"jwks/{name}"] += 1
                    document = peers.jwks.get(name)
                self._answer(200 if document else 404, document or {"error": "none"})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/backend":
                    with peers.lock:
                        peers.recorded.append({k.lower(): v for k, v in self.headers.items()})
                    message = json.loads(body)
                    self._answer(200, {"jsonrpc": "2.0", "id": message.get("id"), "result": {}})
                    return
                form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                expected = "Basic " + base64.b64encode(b"gateway+client:s3cret%3A%26%2F").decode()
                with peers.lock:
                    peers.introspected.append({"authorization": self.headers.get("Authorization"),
                                               "content_type": self.headers.get("Content-Type"),
                                               "form": form})
                    peers.counts[f"introspect/{form.get('token')}"] += 1
                    answer = peers.tokens.get(form.get("token", ""), {"active": False})
                if self.headers.get("Authorization") != expected:
                    self._answer(401, {"error": "invalid_client"})
                    return
                self._answer(200, answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, key: str) -> int:
        with self.lock:
            return self.counts[key]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_set(*keys: Any) -> Dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


class Issuer:
    """
    Signs tokens for one issuer and audience.
    """

    def __init__(self, issuer: str, audience: str) -> None:
        self.issuer = issuer
        self.audience = audience

    def sign(self, key: Any, alg: str = "RS256", kid: Optional[str] = "default", **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.issuer, "aud": self.audience, "sub": "alice", "iat": now,
                "exp": now + 600, "scope": "mcp"}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        header = {"alg": alg}
        if kid is not None:
            header["kid"] = key.kid if kid == "default" else kid
        return jwt.encode(header, body, key)


def _post(url: str, body: Any, token: Optional[str] = None) -> Tuple[int, Any, bytes]:
    headers = dict(ACCEPT)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return http("POST", url, raw=json.dumps(body).encode(), headers=headers)


def _params(challenge: str) -> Dict[str, str]:
    scheme, _, rest = challenge.partition(" ")
    assert scheme == "Bearer", challenge
    out = {}
    for part in rest.split('", '):
        name, _, value = part.partition("=")
        out[name.strip()] = value.strip().strip('"')
    return out


async def _look(url: str, token: str) -> Dict[str, Any]:
    """
    What the official SDK client sees with this token.
    """
    seen: Dict[str, Any] = {}
    client_http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with Client(streamable_http_client(url, http_client=client_http), mode="legacy") as client:
        seen["tools"] = sorted(t.name for t in (await client.list_tools()).tools)
        seen["echo"] = (await client.call_tool("echo", {"message": "hi"})).content[0].text
        try:
            seen["sum"] = (await client.call_tool("get-sum", {"a": 1, "b": 2})).content[0].text
        except MCPError as e:
            seen["sum"] = e.error.message
    return seen


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def peers() -> Iterator[Peers]:
    p = Peers()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[Daemon]:
    yield from running(Daemon(tmp_path_factory.mktemp("token-plans")))


TOOL_RULES = {"rules": [
    {"tools": ["echo"]},
    {"tools": ["get-sum"], "scopes": ["math"]},
    {"tools": ["get-*"], "claims": {"tier": "gold"}},
]}


# --- JWT -----------------------------------------------------------------------------------


def test_jwt_plan(gateway, peers, everything):
    public = gateway.gateway + "/jwt"
    rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
    ec = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
    peers.jwks["main"] = public_set(rsa, ec)
    issuer = Issuer(peers.url + "/issuer", public)
    api = deploy(gateway, "/jwt", f"http://127.0.0.1:{everything}/mcp", [{
        "name": "Tokens", "security": "JWT", "acl": TOOL_RULES, "configuration": {
            "issuer": issuer.issuer, "audience": public, "jwksUrl": peers.url + "/jwks/main",
            "requiredScopes": ["mcp"], "scopesSupported": ["mcp", "math"],
            "authorizationServers": [peers.url + "/issuer"]}}])
    assert api["plans"][0]["configuration"]["algorithms"] == ["RS256", "ES256"]
    metadata_url = f"{gateway.gateway}{PRM}/jwt"

    # no token: the challenge points at the gateway's own metadata
    status, headers, _ = _post(public, INITIALIZE)
    assert status == 401
    assert _params(headers["WWW-Authenticate"]) == {"resource_metadata": metadata_url, "scope": "mcp"}
    status, headers, body = http("GET", metadata_url)
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
    assert json.loads(body) == {
        "resource": public, "authorization_servers": [peers.url + "/issuer"],
        "scopes_supported": ["mcp", "math"], "bearer_methods_supported": ["header"],
        "resource_name": "jwt"}
    assert http("GET", public + PRM)[0] == 200  # the suffixed form too

    # valid tokens, RSA and EC
    for token in (issuer.sign(rsa), issuer.sign(ec, alg="ES256")):
        status, _, body = _post(public, INITIALIZE, token)
        assert status == 200, body

    # refused tokens: 401, invalid_token, pointing at the gateway
    now = int(time.time())
    stranger = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
    unsigned = _b64(b'{"alg":"none"}') + "." + _b64(json.dumps(
        {"iss": issuer.issuer, "aud": public, "exp": now + 600, "scope": "mcp"}).encode()) + "."
    confused_head = _b64(b'{"alg":"HS256","kid":"rsa-1"}') + "." + _b64(json.dumps(
        {"iss": issuer.issuer, "aud": public, "exp": now + 600, "scope": "mcp"}).encode())
    pem = rsa.as_pem(private=False)
    confused = confused_head + "." + _b64(hmac.new(pem, confused_head.encode(), hashlib.sha256).digest())
    refused = {
        "expired": issuer.sign(rsa, exp=now - 300, iat=now - 900),
        "not yet valid": issuer.sign(rsa, nbf=now + 600),
        "wrong issuer": issuer.sign(rsa, iss=peers.url + "/other"),
        "wrong audience": issuer.sign(rsa, aud="http://127.0.0.1:1/elsewhere"),
        "no expiry": issuer.sign(rsa, exp=None),
        "bad signature": issuer.sign(stranger),
        "alg none": unsigned,
        "alg confusion": confused,
        "opaque": "not-a-jwt",
    }
    reasons = {}
    for case, token in refused.items():
        status, headers, body = _post(public, INITIALIZE, token)
        assert status == 401, case
        params = _params(headers["WWW-Authenticate"])
        assert params["error"] == "invalid_token", case
        assert params["resource_metadata"] == metadata_url, case
        reasons[case] = params["error_description"]
        assert json.loads(body)["error"]["message"].startswith("The bearer token was rejected"), case
    assert "expired" in reasons["expired"] and "nbf" in reasons["not yet valid"]
    assert "iss" in reasons["wrong issuer"] and "aud" in reasons["wrong audience"]
    assert "signature" in reasons["bad signature"]

    # a valid token without the required scope: step-up
    status, headers, _ = _post(public, INITIALIZE, issuer.sign(rsa, scope="math"))
    assert status == 403
    params = _params(headers["WWW-Authenticate"])
    assert params["error"] == "insufficient_scope" and params["scope"] == "mcp"
    assert params["resource_metadata"] == metadata_url

    # the official client: what it sees depends on the token's scopes and claims
    basic = anyio.run(_look, public, issuer.sign(rsa))
    assert basic == {"tools": ["echo"], "echo": "Echo: hi", "sum": "Unknown tool: get-sum"}
    math = anyio.run(_look, public, issuer.sign(ec, alg="ES256", scope="mcp math"))
    assert math["tools"] == ["echo", "get-sum"] and math["sum"] == "The sum of 1 and 2 is 3."
    # scopes as a "scp" list, and a claim
    gold = anyio.run(_look, public, issuer.sign(rsa, scope=None, scp=["mcp"], tier="gold"))
    assert "get-sum" in gold["tools"] and "get-env" in gold["tools"] and "echo" in gold["tools"]
    assert not any(t.startswith("trigger") for t in gold["tools"])
    assert peers.count("jwks/main") == 1  # one fetch, cached since


def test_jwt_key_rotation_and_static_key(gateway, peers, everything):
    public = gateway.gateway + "/rotating"
    old = RSAKey.generate_key(2048, parameters={"kid": "2024"})
    new = RSAKey.generate_key(2048, parameters={"kid": "2025"})
    peers.jwks["rotating"] = public_set(old)
    issuer = Issuer(peers.url + "/rotating-issuer", public)
    deploy(gateway, "/rotating", f"http://127.0.0.1:{everything}/mcp", [{
        "name": "Tokens", "security": "JWT", "configuration": {
            "issuer": issuer.issuer, "audience": [public, "another"], "algorithms": ["RS256"],
            "jwksUrl": peers.url + "/jwks/rotating"}}])
    old_token = issuer.sign(old)
    assert _post(public, INITIALIZE, old_token)[0] == 200
    assert peers.count("jwks/rotating") == 1

    # the issuer rotates: a token with the new kid makes the gateway look again
    peers.jwks["rotating"] = public_set(new)
    assert _post(public, INITIALIZE, issuer.sign(new))[0] == 200
    assert peers.count("jwks/rotating") == 2
    # the retired key is gone; unknown kids do not make it fetch again at once
    for token in (old_token, issuer.sign(new, kid="2026"), issuer.sign(new, kid="2027")):
        status, headers, _ = _post(public, INITIALIZE, token)
        assert status == 401
        assert _params(headers["WWW-Authenticate"])["error_description"] == \
            "the token's signing key is unknown"
    assert peers.count("jwks/rotating") == 2
    # an algorithm the plan does not list
    ec = ECKey.generate_key("P-256", parameters={"kid": "2025"})
    assert _post(public, INITIALIZE, issuer.sign(ec, alg="ES256"))[0] == 401

    # keys that cannot be fetched: the token cannot be checked (503, not 401)
    deploy(gateway, "/nokeys", f"http://127.0.0.1:{everything}/mcp", [{
        "name": "Tokens", "security": "JWT", "configuration": {
            "issuer": issuer.issuer, "jwksUrl": peers.url + "/jwks/missing"}}])
    for _ in range(2):
        status, headers, body = _post(gateway.gateway + "/nokeys", INITIALIZE, issuer.sign(new))
        assert status == 503 and "WWW-Authenticate" not in headers, body
    assert peers.count("jwks/missing") == 1  # failures are not retried at once
    status, body = gateway.admin("POST", "/apis", {
        "name": "x", "version": "1", "contextPath": "/x", "backend": "http://127.0.0.1:1/mcp",
        "plans": [{"name": "T", "security": "JWT", "configuration": {
            "issuer": "https://idp.example", "publicKey": new.as_pem(private=True).decode()}}]})
    assert status == 400 and body["field"] == "plans[0].configuration.publicKey"

    # a static public key and a custom scope claim
    static_public = gateway.gateway + "/static"
    key = ECKey.generate_key("P-256")
    static = Issuer("https://idp.example/", static_public)
    deploy(gateway, "/static", f"http://127.0.0.1:{everything}/mcp", [{
        "name": "Static", "security": "JWT", "acl": TOOL_RULES, "configuration": {
            "issuer": static.issuer, "publicKey": key.as_pem(private=False).decode(),
            "algorithms": ["ES256"], "scopeClaim": "permissions", "requiredScopes": ["mcp"]}}])
    seen = anyio.run(_look, static_public, static.sign(key, alg="ES256", kid=None, scope=None,
                                                       permissions=["mcp", "math"]))
    assert seen["tools"] == ["echo", "get-sum"]
    status, headers, _ = _post(static_public, INITIALIZE, static.sign(key, alg="ES256", kid=None))
    assert status == 403  # "scope" is not the claim this plan reads
    document = json.loads(http("GET", f"{gateway.gateway}{PRM}/static")[2])
    assert document["authorization_servers"] == ["https://idp.example/"]  # the issuer by default
    assert document["scopes_supported"] == ["mcp"]  # the required scopes by default


# --- OAuth 2 introspection --------------------------------------------------------------------


def test_introspection_plan(gateway, peers, everything):
    public = gateway.gateway + "/introspected"
    now = int(time.time())
    peers.tokens.update({
        "tok-basic": {"active": True, "scope": "mcp", "client_id": "agent-1", "sub": "bob",
                      "exp": now + 3600, "aud": public},
        "tok-math": {"active": True, "scope": "mcp math", "client_id": "agent-2", "exp": now + 3600,
                     "aud": [public, "other"]},
        "tok-gold": {"active": True, "scope": "mcp", "tier": "gold", "exp": now + 3600, "aud": public},
        "tok-revoked": {"active": False},
        "tok-expired": {"active": True, "scope": "mcp", "exp": now - 600, "aud": public},
        "tok-elsewhere": {"active": True, "scope": "mcp", "exp": now + 3600, "aud": "https://other.example"},
        "tok-unscoped": {"active": True, "scope": "profile", "exp": now + 3600, "aud": public},
    })
    configuration = {"introspectionUrl": peers.url + "/introspect", "clientId": CLIENT_ID,
                     "clientSecret": CLIENT_SECRET, "requiredScopes": ["mcp"], "audience": public,
                     "authorizationServers": [peers.url + "/as"]}
    api = deploy(gateway, "/introspected", f"http://127.0.0.1:{everything}/mcp", [{
        "name": "Introspected", "security": "OAUTH2", "acl": TOOL_RULES,
        "configuration": configuration}])
    assert api["plans"][0]["configuration"]["clientSecret"] == "********"
    metadata_url = f"{gateway.gateway}{PRM}/introspected"

    # cached within the token's life: several requests, one introspection
    for _ in range(3):
        status, _, body = _post(public, INITIALIZE, "tok-basic")
        assert status == 200, body
    assert peers.count("introspect/tok-basic") == 1
    call = next(c for c in peers.introspected if c["form"].get("token") == "tok-basic")
    assert call["content_type"] == "application/x-www-form-urlencoded"
    assert call["form"] == {"token": "tok-basic", "token_type_hint": "access_token"}

    for token in ("tok-revoked", "tok-expired", "tok-elsewhere", "tok-unknown"):
        status, headers, _ = _post(public, INITIALIZE, token)
        assert status == 401, token
        params = _params(headers["WWW-Authenticate"])
        assert params["error"] == "invalid_token" and params["resource_metadata"] == metadata_url
    status, headers, _ = _post(public, INITIALIZE, "tok-unscoped")
    assert status == 403 and 'error="insufficient_scope"' in headers["WWW-Authenticate"]

    basic = anyio.run(_look, public, "tok-basic")
    assert basic["tools"] == ["echo"] and basic["sum"] == "Unknown tool: get-sum"
    math = anyio.run(_look, public, "tok-math")
    assert math["tools"] == ["echo", "get-sum"] and math["sum"] == "The sum of 1 and 2 is 3."
    gold = anyio.run(_look, public, "tok-gold")
    assert {"echo", "get-sum", "get-env"} <= set(gold["tools"])
    assert peers.count("introspect/tok-basic") == 1
    assert peers.count("introspect/tok-math") == 1

    # revocation: seen at once by a plan that does not cache
    deploy(gateway, "/uncached", f"http://127.0.0.1:{everything}/mcp", [{
        "name": "Uncached", "security": "OAUTH2",
        "configuration": dict(configuration, cacheSeconds=0, audience=["any"], issuer=peers.url + "/as")}])
    peers.tokens["tok-live"] = {"active": True, "scope": "mcp", "aud": "any", "iss": peers.url + "/as"}
    assert _post(gateway.gateway + "/uncached", INITIALIZE, "tok-live")[0] == 200
    peers.tokens["tok-live"] = {"active": False}
    assert _post(gateway.gateway + "/uncached", INITIALIZE, "tok-live")[0] == 401

    # wrong client credentials: the token cannot be checked (503, not 401)
    deploy(gateway, "/misconfigured", f"http://127.0.0.1:{everything}/mcp", [{
        "name": "Bad", "security": "OAUTH2",
        "configuration": dict(configuration, clientSecret="wrong")}])
    status, headers, body = _post(gateway.gateway + "/misconfigured", INITIALIZE, "tok-math")
    assert status == 503 and "WWW-Authenticate" not in headers, body


# --- what reaches the backend ------------------------------------------------------------------


def test_backend_gets_its_credential_not_the_token(gateway, peers):
    key = ECKey.generate_key("P-256")
    plans = [{"name": "Static", "security": "JWT", "configuration": {
        "issuer": "https://idp.example", "publicKey": key.as_pem(private=False).decode(),
        "algorithms": ["ES256"]}}]
    deploy(gateway, "/recorded", peers.url + "/backend", plans,
           backendAuth={"header": "X-Backend-Credential", "value": "backend-secret"})
    deploy(gateway, "/replaced", peers.url + "/backend", plans,
           backendAuth={"header": "Authorization", "value": "Bearer backend-token"})
    deploy(gateway, "/forwarded", peers.url + "/backend", plans,
           backendAuth={"forwardClientToken": True})
    # each token issued for its API's URL (the audience a plan without one expects)
    tokens = {path: Issuer("https://idp.example", gateway.gateway + path).sign(key, alg="ES256", kid=None)
              for path in ("/recorded", "/replaced", "/forwarded")}
    for path, token in tokens.items():
        status, _, body = _post(gateway.gateway + path, INITIALIZE, token)
        assert status == 200, (path, body)
    recorded, replaced, forwarded = peers.recorded[-3:]
    assert "authorization" not in recorded and recorded["x-backend-credential"] == "backend-secret"
    assert replaced["authorization"] == "Bearer backend-token"
    assert forwarded["authorization"] == f"Bearer {tokens['/forwarded']}"
    assert not any(token in value for token in tokens.values()
                   for r in (recorded, replaced) for value in r.values())


# --- the SDK's OAuth flow against the gateway -------------------------------------------------


async def _authorized(mcp_url: str) -> Dict[str, Any]:
    seen: Dict[str, Any] = {}
    async with oauth_client(mcp_url, seen) as client:
        seen["tools"] = sorted(t.name for t in (await client.list_tools()).tools)
        seen["echo"] = (await client.call_tool("echo", {"message": "through"})).content[0].text
    return seen


def test_sdk_oauth_client_gets_a_token_for_the_gateway(tmp_path, everything):
    daemon = Daemon(tmp_path).start()
    authorization = Proc([str(BIN / "python"), str(REPO / "tests" / "oauth_peers.py"), "as"])
    try:
        issuer = authorization.wait_for(r"authorization server listening on (\S+)").group(1)
        public = daemon.gateway + "/sdk"
        deploy(daemon, "/sdk", f"http://127.0.0.1:{everything}/mcp", [{
            "name": "OAuth", "security": "OAUTH2", "acl": {"rules": [{"tools": ["echo", "get-sum"]}]},
            "configuration": {"introspectionUrl": issuer + "/introspect", "clientId": "gw",
                              "clientSecret": "unused", "issuer": issuer, "audience": public,
                              "requiredScopes": ["mcp:tools"], "authorizationServers": [issuer]}}])

        seen = anyio.run(_authorized, public)
        assert seen["tools"] == ["echo", "get-sum"] and seen["echo"] == "Echo: through"
        exchanges = seen["exchanges"]
        challenge = next(e for e in exchanges if e[2] == 401)
        assert challenge[1] == public
        assert _params(challenge[3]) == {"resource_metadata": f"{daemon.gateway}{PRM}/sdk",
                                         "scope": "mcp:tools"}
        assert ("GET", f"{daemon.gateway}{PRM}/sdk", 200) in [e[:3] for e in exchanges]
        assert any(u.startswith(issuer + "/token") and s == 200 for _, u, s, _ in exchanges)
        assert json.loads(http("GET", issuer + "/_requested_resources")[2]) == [public]
        token = seen["token"]
        assert token
        # the token's audience is the gateway's URL: another API of the gateway refuses it
        deploy(daemon, "/other", f"http://127.0.0.1:{everything}/mcp", [{
            "name": "OAuth", "security": "OAUTH2", "configuration": {
                "introspectionUrl": issuer + "/introspect", "audience": daemon.gateway + "/other",
                "authorizationServers": [issuer]}}])
        assert _post(daemon.gateway + "/other", INITIALIZE, token)[0] == 401
    finally:
        authorization.stop()
        daemon.stop()
    written = "\n".join(daemon.proc.output)
    for path in (tmp_path / "log").rglob("*"):
        if path.is_file():
            written += path.read_text(errors="replace")
    assert "/sdk" in written and token not in written


# --- the verifier alone, on a fake clock -----------------------------------------------------


class FakeAgent:
    """
    Answers every request from C{route(method, url, body)} -> (status, JSON).
    """

    def __init__(self, route: Any) -> None:
        self.route = route
        self.requests: List[Tuple[bytes, str, Optional[bytes], Any]] = []

    def request(self, method: bytes, url: bytes, headers: Any, producer: Any) -> Any:
        from twisted.internet.defer import succeed
        from twisted.python.failure import Failure
        from twisted.web.client import ResponseDone
        from twisted.web.http_headers import Headers
        from twisted.web.iweb import UNKNOWN_LENGTH

        body = None
        if producer is not None:
            chunks: List[bytes] = []
            producer.startProducing(type("C", (), {"write": staticmethod(chunks.append)})())
            body = b"".join(chunks)
        self.requests.append((method, url.decode(), body, headers))
        status, document = self.route(method, url.decode(), body)

        class Response:
            code = status
            headers = Headers()
            length = UNKNOWN_LENGTH

            def deliverBody(self, protocol: Any) -> None:
                protocol.dataReceived(json.dumps(document).encode())
                protocol.connectionLost(Failure(ResponseDone()))

        return succeed(Response())


class FakePool:
    def __init__(self, agent: FakeAgent) -> None:
        self.agent = agent

    def default_agent(self) -> FakeAgent:
        return self.agent


def _run(coroutine: Any) -> Any:
    from twisted.internet.defer import Deferred

    results: List[Any] = []
    Deferred.fromCoroutine(coroutine).addBoth(results.append)
    assert results, "the verifier waited on something"
    return results[0]


class _Plan:
    def __init__(self, security: str, configuration: Dict[str, Any]) -> None:
        self.security = security
        self.configuration = configuration
        self.name = security


def test_verifier_caches_within_the_token_life_and_refetches_keys():
    from twisted.internet.task import Clock

    from mcpgated.policy.auth import InvalidToken, TokenInfo
    from mcpgated.policy.tokens import TokenVerifier

    clock = Clock()
    clock.advance(1_000_000)
    now = clock.seconds()
    answers: Dict[str, Any] = {"short": {"active": True, "scope": "a b", "exp": now + 100, "sub": "s"},
                               "long": {"active": True, "scope": "a", "exp": now + 10_000}}
    keys = {"set": public_set(RSAKey.generate_key(2048, parameters={"kid": "one"}))}

    def route(method: bytes, url: str, body: Optional[bytes]) -> Tuple[int, Any]:
        if url.endswith("/jwks"):
            return 200, keys["set"]
        token = parse_qs(body.decode())["token"][0]
        return 200, answers.get(token, {"active": False})

    agent = FakeAgent(route)
    verifier = TokenVerifier(clock, FakePool(agent))
    # caching, not audiences, is what this test is about: plans that accept any
    plan = _Plan("OAUTH2", {"introspectionUrl": "http://as/introspect", "clientId": "c",
                            "anyAudience": True})

    def introspections() -> int:
        return sum(1 for r in agent.requests if r[1].endswith("/introspect"))

    info = _run(verifier.verify("short", plan))
    assert isinstance(info, TokenInfo) and info.scopes == {"a", "b"} and info.subject == "s"
    assert agent.requests[0][3].getRawHeaders(b"authorization") == [
        b"Basic " + base64.b64encode(b"c:")]
    clock.advance(99)
    _run(verifier.verify("short", plan))
    assert introspections() == 1  # cached until the token's exp...
    answers["short"] = {"active": False}
    clock.advance(2)
    assert isinstance(_run(verifier.verify("short", plan)).value, InvalidToken)
    assert introspections() == 2  # ...not beyond it
    _run(verifier.verify("long", plan))
    clock.advance(299)
    _run(verifier.verify("long", plan))
    assert introspections() == 3
    clock.advance(2)
    _run(verifier.verify("long", plan))
    assert introspections() == 4  # at most 5 minutes however long the token lives
    # inactive answers are remembered briefly
    for _ in range(3):
        assert isinstance(_run(verifier.verify("never", plan)).value, InvalidToken)
    assert introspections() == 5
    clock.advance(11)
    _run(verifier.verify("never", plan))
    assert introspections() == 6

    # JWT: leeway on exp, and an unknown kid fetches the keys again once per interval
    jwt_plan = _Plan("JWT", {"issuer": "https://i", "jwksUrl": "http://as/jwks", "algorithms": ["RS256"],
                             "anyAudience": True})
    signer = RSAKey.generate_key(2048, parameters={"kid": "one"})
    keys["set"] = public_set(signer)
    issuer = Issuer("https://i", "aud")
    now = clock.seconds()
    info = _run(verifier.verify(issuer.sign(signer, iat=now - 60, exp=now - 20), jwt_plan))
    assert info.subject == "alice" and info.scopes == {"mcp"} and info.claims["aud"] == "aud"
    expired = _run(verifier.verify(issuer.sign(signer, iat=now - 60, exp=now - 40), jwt_plan))
    assert isinstance(expired.value, InvalidToken)
    fetches = lambda: sum(1 for r in agent.requests if r[1].endswith("/jwks"))  # noqa: E731
    assert fetches() == 1
    other = RSAKey.generate_key(2048, parameters={"kid": "two"})
    for _ in range(3):
        refused = _run(verifier.verify(issuer.sign(other, iat=now, exp=now + 600), jwt_plan))
        assert isinstance(refused.value, InvalidToken)
    assert fetches() == 2
    keys["set"] = public_set(signer, other)
    clock.advance(10)
    now = clock.seconds()
    assert _run(verifier.verify(issuer.sign(other, iat=now, exp=now + 600), jwt_plan)).subject == "alice"
    assert fetches() == 3


def test_a_connection_that_fails_before_any_answer_is_tried_once_more():
    from twisted.internet.defer import fail
    from twisted.internet.error import ConnectionLost
    from twisted.internet.task import Clock
    from twisted.python.failure import Failure
    from twisted.web.client import ResponseNeverReceived

    from mcpgated.policy.auth import TokenInfo
    from mcpgated.policy.tokens import TokenVerifier

    clock = Clock()
    clock.advance(1_000_000)
    answer = {"active": True, "scope": "a", "exp": clock.seconds() + 100, "sub": "s"}

    class Flaky(FakeAgent):
        failures = 1

        def request(self, method: bytes, url: bytes, headers: Any, producer: Any) -> Any:
            if self.failures:
                self.failures -= 1
                self.requests.append((method, url.decode(), None, headers))
                return fail(ResponseNeverReceived([Failure(ConnectionLost("reset"))]))
            return super().request(method, url, headers, producer)

    plan = _Plan("OAUTH2", {"introspectionUrl": "http://as/introspect", "clientId": "c",
                            "anyAudience": True})
    once = Flaky(lambda method, url, body: (200, answer))
    info = _run(TokenVerifier(clock, FakePool(once)).verify("tok", plan))
    assert isinstance(info, TokenInfo) and len(once.requests) == 2  # the reset one, then the answer
    twice = Flaky(lambda method, url, body: (200, answer))
    twice.failures = 2
    refused = _run(TokenVerifier(clock, FakePool(twice)).verify("tok", plan))
    assert refused.value.status == 503 and len(twice.requests) == 2  # no third try
