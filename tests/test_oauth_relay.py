"""
Secured backends through the real daemon: the official MCP Python client
with its OAuth provider, pointed only at the gateway, against a real
authorization server and a token-checking MCP server (tests/oauth_peers.py);
and a scripted backend for hostile challenges, metadata documents and the
public URL behind a forwarding proxy.
"""

from __future__ import annotations

import json
from http.client import HTTPConnection, HTTPMessage
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple
from urllib.parse import urlsplit

import anyio
import pytest

from tests.oauth_peers import oauth_client
from tests.daemon_helpers import set_options
from tests.support import BIN, REPO, Daemon, Proc, deploy, http

PEERS = str(REPO / "tests" / "oauth_peers.py")
TRUSTED_PROXY = "127.0.0.2"  # a forwarding proxy on loopback; 127.0.0.1 is an ordinary client
PRM = "/.well-known/oauth-protected-resource"


def start_daemon(folder: Path) -> Daemon:
    daemon = Daemon(folder)
    set_options(daemon, "gateway", trusted_proxies=f"{TRUSTED_PROXY}/32")
    return daemon.start()


def peer(*args: str) -> Proc:
    return Proc([str(BIN / "python"), PEERS, *args])


def raw(daemon: Daemon, method: str, path: str, headers: Optional[Dict[str, str]] = None,
        body: Optional[bytes] = None, source: str = "127.0.0.1") -> Tuple[int, HTTPMessage, bytes]:
    """
    One exchange with the gateway from a chosen loopback source address,
    with exactly the headers given (Host included).
    """
    conn = HTTPConnection("127.0.0.1", daemon.ports["gateway"][0], timeout=30,
                                      source_address=(source, 0))
    try:
        conn.putrequest(method, path, skip_host="Host" in (headers or {}), skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.msg, response.read()
    finally:
        conn.close()


@pytest.fixture
def gateway(tmp_path) -> Iterator[Daemon]:
    daemon = start_daemon(tmp_path)
    yield daemon
    if daemon.proc is not None and daemon.proc.popen.poll() is None:
        daemon.stop()


# --- the official client, end to end --------------------------------------------------------


async def _authorized_session(mcp_url: str) -> Dict[str, Any]:
    seen: Dict[str, Any] = {}
    async with oauth_client(mcp_url, seen) as client:
        seen["protocol"] = client.protocol_version
        seen["whoami"] = (await client.call_tool("whoami", {})).content[0].text
        seen["add"] = (await client.call_tool("add", {"a": 20, "b": 22})).content[0].text
    return seen


def test_sdk_client_discovers_authorizes_and_calls_through_the_gateway(gateway, tmp_path):
    authorization = peer("as")
    issuer = authorization.wait_for(r"authorization server listening on (\S+)").group(1)
    public = gateway.gateway + "/secure"
    backend = peer("rs", "--issuer", issuer, "--audience", public)
    try:
        backend_url = backend.wait_for(r"resource server listening on (\S+)").group(1)
        api = deploy(gateway, "/secure", backend_url,
                     oauth={"relay": True, "proxyAuthorizationServerDiscovery": True})
        assert api["oauth"] == {"relay": True, "proxyAuthorizationServerDiscovery": True}
        assert api["plans"][0]["security"] == "KEY_LESS"

        seen = anyio.run(_authorized_session, public)

        # The backend got a token issued for the gateway's URL, and served the calls.
        assert seen["whoami"] == f"audience={public}"
        assert seen["add"] == "42"
        status, _, requested = http("GET", issuer + "/_requested_resources")
        assert json.loads(requested) == [public]  # RFC 8707 resource sent to the AS

        exchanges = seen["exchanges"]
        backend_origin = "{0.scheme}://{0.netloc}".format(urlsplit(backend_url))
        assert not [e for e in exchanges if e[1].startswith(backend_origin)], exchanges
        # The challenge the client saw pointed at the gateway...
        challenge = next(e for e in exchanges if e[2] == 401)
        assert challenge[1] == public
        assert f'resource_metadata="{gateway.gateway}{PRM}/secure"' in challenge[3]
        assert 'error="invalid_token"' in challenge[3]
        # ...and the metadata came from there.
        assert (("GET", f"{gateway.gateway}{PRM}/secure", 200)
                in [(m, u, s) for m, u, s, _ in exchanges])
        assert any(u.startswith(issuer + "/token") and s == 200 for _, u, s, _ in exchanges)

        status, _, body = http("GET", gateway.gateway + PRM + "/secure")
        document = json.loads(body)
        assert document["resource"] == public
        assert document["authorization_servers"] == [issuer]
        assert document["scopes_supported"] == ["mcp:tools"]

        # 2025-03-26 clients look for the AS metadata on the MCP server's
        # origin: the gateway hands over the AS's own document, unchanged.
        status, headers, legacy = http("GET", gateway.gateway + "/.well-known/oauth-authorization-server")
        _, _, direct = http("GET", issuer + "/.well-known/oauth-authorization-server")
        assert status == 200 and legacy == direct
        assert json.loads(legacy)["issuer"] == issuer

        token = seen["token"]
        assert token
    finally:
        backend.stop()
        authorization.stop()
    gateway.stop()
    written = "\n".join(gateway.proc.output)
    for path in (tmp_path / "log").rglob("*"):
        if path.is_file():
            written += path.read_text(errors="replace")
    assert "/secure" in written  # the access log has the exchanges...
    assert token not in written  # ...and never the token


def test_backend_that_names_the_gateway_as_its_resource(gateway):
    """
    The configuration the spec research recommends: the backend's own
    resource identifier is the gateway's URL (the SDK's
    AuthSettings.resource_server_url), so its challenge and document already
    agree with the gateway, which only has to find and serve the document.
    """
    authorization = peer("as")
    issuer = authorization.wait_for(r"authorization server listening on (\S+)").group(1)
    public = gateway.gateway + "/agreed"
    backend = peer("rs", "--issuer", issuer, "--audience", public, "--resource-is-audience")
    try:
        backend_url = backend.wait_for(r"resource server listening on (\S+)").group(1)
        deploy(gateway, "/agreed", backend_url, oauth={"relay": True})
        seen = anyio.run(_authorized_session, public)
        assert seen["whoami"] == f"audience={public}"
        status, _, body = http("GET", f"{gateway.gateway}{PRM}/agreed")
        assert status == 200 and json.loads(body)["resource"] == public
    finally:
        backend.stop()
        authorization.stop()


# --- a scripted backend: challenges, documents, public URLs -----------------------------------

CHALLENGE = ('Bearer realm="mcp, primary", error="invalid_token", '
             'error_description="token expired, \\"renew\\" it", '
             'resource_metadata="http://127.0.0.1:{PORT}/custom/metadata.json", scope="files:read files:write"')
DPOP_CHALLENGE = 'DPoP algs="ES256 PS256", resource_metadata=http://127.0.0.1:{PORT}/custom/metadata.json'
STEP_UP = ('Bearer error="insufficient_scope", scope="files:write admin", '
           'resource_metadata="http://127.0.0.1:{PORT}/.well-known/oauth-protected-resource/scoped", '
           'error_description="needs, admin"')

SCRIPT = {"routes": {
    "POST /mcp": {"status": 401, "json": {"error": "invalid_token"},
                  "headers": [["WWW-Authenticate", CHALLENGE], ["WWW-Authenticate", DPOP_CHALLENGE],
                              ["DPoP-Nonce", "n-1"]]},
    "GET /custom/metadata.json": {"json": {
        "resource": "http://127.0.0.1:{PORT}/mcp/", "authorization_servers": ["https://as.example/t1"],
        "scopes_supported": ["files:read", "files:write"], "bearer_methods_supported": ["header"],
        "dpop_signing_alg_values_supported": ["ES256"], "signed_metadata": "eyJhbGciOi.x.y"},
        "headers": [["Cache-Control", "max-age=600"]]},
    "POST /scoped": {"status": 403, "body": "forbidden", "headers": [["WWW-Authenticate", STEP_UP]]},
    "GET /.well-known/oauth-protected-resource/evil": {"json": {
        "resource": "https://evil.example.com/mcp", "authorization_servers": ["https://as.example"],
        "signed_metadata": "kept.as.is"}},
    "GET /.well-known/oauth-protected-resource": {"json": {
        "resource": "http://127.0.0.1:{PORT}", "authorization_servers": ["https://as.example"]}},
    "GET /.well-known/oauth-protected-resource/plain": {"json": {
        "resource": "http://127.0.0.1:{PORT}/plain", "authorization_servers": ["http://127.0.0.1:{PORT}/t1"]}},
    "GET /.well-known/oauth-authorization-server/t1": {"json": {
        "issuer": "http://127.0.0.1:{PORT}/t1", "authorization_endpoint": "http://127.0.0.1:{PORT}/t1/authorize",
        "token_endpoint": "http://127.0.0.1:{PORT}/t1/token", "code_challenge_methods_supported": ["S256"]}},
}}


@pytest.fixture
def scripted(tmp_path) -> Iterator[Tuple[str, Proc]]:
    script = tmp_path / "stub.json"
    script.write_text(json.dumps(SCRIPT))
    proc = peer("stub", "--script", str(script))
    url = proc.wait_for(r"stub listening on (\S+)").group(1)
    yield url, proc
    proc.stop()


def _filled(template: str, stub_url: str) -> str:
    return template.replace("{PORT}", str(urlsplit(stub_url).port))


def _params(value: str) -> str:
    """
    Everything of a challenge but its resource_metadata (for equality).
    """
    from mcpgated.oauth.challenge import parse_challenges

    return repr([(c.scheme, [(p.name, p.value) for p in c.params if p.name != "resource_metadata"])
                 for c in parse_challenges(value)])


def test_challenges_point_at_the_gateway_and_keep_everything_else(gateway, scripted):
    stub_url, _ = scripted
    deploy(gateway, "/files", stub_url + "/mcp", oauth={"relay": True})
    deploy(gateway, "/scoped", stub_url + "/scoped", oauth={"relay": True})
    deploy(gateway, "/open", stub_url + "/mcp")  # the same backend without relay
    origin = gateway.gateway
    host = urlsplit(origin).netloc

    status, headers, body = raw(gateway, "POST", "/files", {
        "Host": host, "Content-Type": "application/json", "Authorization": "Bearer secret-token-1",
        "DPoP": "eyJ0eXAiOiJkcG9wK2p3dCJ9.proof.sig"}, b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
    assert status == 401 and json.loads(body) == {"error": "invalid_token"}
    challenges = headers.get_all("WWW-Authenticate")
    metadata_url = f"{origin}{PRM}/files"
    assert challenges == [
        _filled(CHALLENGE, stub_url).replace(f"http://127.0.0.1:{urlsplit(stub_url).port}/custom/metadata.json",
                                             metadata_url),
        'DPoP algs="ES256 PS256", resource_metadata="' + metadata_url + '"',
    ]
    assert headers["DPoP-Nonce"] == "n-1"
    # The backend got the credentials exactly as sent.
    _, _, seen = http("GET", stub_url + "/_seen")
    last = json.loads(seen)[-1]
    assert last == {"key": "POST /mcp", "authorization": "Bearer secret-token-1",
                    "dpop": "eyJ0eXAiOiJkcG9wK2p3dCJ9.proof.sig"}

    # Step-up: 403 insufficient_scope, only resource_metadata changes.
    status, headers, body = raw(gateway, "POST", "/scoped", {"Host": host}, b"{}")
    assert (status, body) == (403, b"forbidden")
    step_up = headers["WWW-Authenticate"]
    assert f'resource_metadata="{origin}{PRM}/scoped"' in step_up
    assert _params(step_up) == _params(_filled(STEP_UP, stub_url))
    assert step_up.startswith('Bearer error="insufficient_scope", scope="files:write admin", ')

    # Without relay the backend's challenge is untouched.
    status, headers, _ = raw(gateway, "POST", "/open", {"Host": host}, b"{}")
    assert status == 401 and headers.get_all("WWW-Authenticate")[0] == _filled(CHALLENGE, stub_url)

    # The metadata: found where the backend's challenge said, resource
    # rewritten (trailing slash and all), signed_metadata dropped, the
    # rest as the backend wrote it.
    status, headers, body = http("GET", metadata_url)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert headers["Access-Control-Allow-Origin"] == "*"
    document = json.loads(body)
    expected = dict(SCRIPT["routes"]["GET /custom/metadata.json"]["json"], resource=origin + "/files")
    del expected["signed_metadata"]
    assert document == expected
    # also where clients append the suffix to the MCP URL; and fetched once (cached)
    status, _, again = http("GET", origin + "/files" + PRM)
    assert status == 200 and json.loads(again) == document
    _, _, counts = http("GET", stub_url + "/_count")
    assert json.loads(counts)["GET /custom/metadata.json"] == 1

    # No relay, no document; CORS preflight answered.
    assert http("GET", f"{origin}{PRM}/open")[0] == 404
    status, headers, _ = raw(gateway, "OPTIONS", f"{PRM}/files", {
        "Host": host, "Origin": "http://app.localhost:6274", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "mcp-protocol-version"})
    assert status == 204 and headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Access-Control-Allow-Headers"] == "mcp-protocol-version"


def test_metadata_documents_follow_the_rewrite_rules(gateway, scripted):
    stub_url, _ = scripted
    origin = gateway.gateway
    deploy(gateway, "/evil", stub_url + "/evil", oauth={"relay": True})
    deploy(gateway, "/rootonly", stub_url + "/rootonly", oauth={"relay": True})
    deploy(gateway, "/plain", stub_url + "/plain", oauth={"relay": True})
    deploy(gateway, "/owned", stub_url + "/plain", publicUrl="http://owner.localhost:8443/base",
           oauth={"relay": True, "proxyAuthorizationServerDiscovery": True})

    # A resource that is not the backend's URL is served as it is, so the
    # client refuses it.
    status, _, body = http("GET", f"{origin}{PRM}/evil")
    _, _, direct = http("GET", f"{stub_url}{PRM}/evil")
    assert status == 200 and body == direct
    # A backend's host-wide document names another resource: never passed on.
    status, _, body = http("GET", f"{origin}{PRM}/rootonly")
    assert status == 404 and json.loads(body)["error"]["data"]["httpStatus"] == 404
    # Several APIs on this host: none owns the root document.
    assert http("GET", origin + PRM)[0] == 404
    # No AS discovery on this host (the API that asked lives on another).
    assert http("GET", origin + "/.well-known/oauth-authorization-server")[0] == 404

    # The API with its own public URL owns its host: root and path-inserted
    # documents there name its public URL.
    owned = {"Host": "owner.localhost:8443"}
    for path in (PRM, f"{PRM}/base/owned", f"{PRM}/owned"):
        status, _, body = raw(gateway, "GET", path, owned)
        assert status == 200, path
        assert json.loads(body)["resource"] == "http://owner.localhost:8443/base/owned"
    status, _, body = raw(gateway, "GET", "/.well-known/oauth-authorization-server", owned)
    _, _, direct = http("GET", stub_url + "/.well-known/oauth-authorization-server/t1")
    assert status == 200 and body == direct  # the AS's document, byte for byte

    # Unreachable backend: the client is told the metadata could not be
    # fetched (and does not take that for "no metadata").
    deploy(gateway, "/down", "http://127.0.0.1:1/mcp", oauth={"relay": True})
    status, headers, body = http("GET", f"{origin}{PRM}/down")
    assert status == 502 and headers["Content-Type"] == "application/json"


def test_public_urls_behind_a_forwarding_proxy(gateway, scripted):
    stub_url, _ = scripted
    deploy(gateway, "/files", stub_url + "/mcp", oauth={"relay": True})
    forwarded = {"Host": "internal.localhost:8082", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "mcp.example.com"}

    def challenge_and_document(source: str, headers: Dict[str, str]) -> Tuple[str, str]:
        status, answer, _ = raw(gateway, "POST", "/files", dict(headers, **{"Content-Type": "application/json"}),
                                b"{}", source=source)
        assert status == 401
        url = [v for v in answer.get_all("WWW-Authenticate") if v.startswith("Bearer")][0]
        url = url.split('resource_metadata="', 1)[1].split('"', 1)[0]
        status, _, body = raw(gateway, "GET", urlsplit(url).path, headers, source=source)
        assert status == 200
        return url, json.loads(body)["resource"]

    # From the trusted proxy: its X-Forwarded-Proto/-Host are the public URL.
    assert challenge_and_document(TRUSTED_PROXY, forwarded) == (
        f"https://mcp.example.com{PRM}/files", "https://mcp.example.com/files")
    rfc7239 = {"Host": "internal.localhost:8082", "Forwarded": 'for=192.0.2.1;proto=https;host="rfc.example"'}
    assert challenge_and_document(TRUSTED_PROXY, rfc7239) == (
        f"https://rfc.example{PRM}/files", "https://rfc.example/files")
    # From anyone else the same headers are ignored: Host and the transport.
    assert challenge_and_document("127.0.0.1", forwarded) == (
        f"http://internal.localhost:8082{PRM}/files", "http://internal.localhost:8082/files")


def test_an_api_on_its_own_host_owns_the_root_document_behind_a_gateway_public_url(tmp_path, scripted):
    # the discovery documents are classified by the origin the client used,
    # not by the gateway's own [gateway] public_url
    stub_url, _ = scripted
    daemon = Daemon(tmp_path)
    set_options(daemon, "gateway", public_url="http://gw.localhost:8080",
                allowed_hosts="gw.localhost:8080, owner.localhost:8443")
    daemon.start()
    try:
        deploy(daemon, "/owned", stub_url + "/plain", publicUrl="http://owner.localhost:8443/base",
               oauth={"relay": True})
        status, _, body = raw(daemon, "GET", PRM, {"Host": "owner.localhost:8443"})
        assert status == 200, body
        assert json.loads(body)["resource"] == "http://owner.localhost:8443/base/owned"
        # the gateway's own host has several (here: no) APIs of its own: no root document
        assert raw(daemon, "GET", PRM, {"Host": "gw.localhost:8080"})[0] == 404
    finally:
        daemon.stop()
