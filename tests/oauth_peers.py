"""
Peer processes for the secured-backend tests, each on an ephemeral loopback
port, announcing its URL on stdout once it listens:

- ``as``: a real OAuth 2.1 authorization server built from the MCP Python
  SDK's own pieces (RFC 8414 metadata, dynamic client registration, the
  authorization endpoint with PKCE, the token endpoint), approving every
  authorization request at once, plus an RFC 7662 introspection endpoint;
- ``rs``: an MCP server (the SDK's MCPServer, streamable HTTP) protected by
  the SDK's bearer middleware: it publishes its own RFC 9728 metadata for
  its own URL, answers 401 with ``WWW-Authenticate: Bearer ...
  resource_metadata=...`` and accepts only tokens the authorization server
  issued for ``--audience`` (the gateway's URL for it);
- ``stub``: a scripted backend (a JSON file of path -> status, headers,
  body) counting the requests it gets, for hostile headers and documents.

Run as ``python tests/oauth_peers.py MODE ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import socket
import sys
import time
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, Optional

if TYPE_CHECKING:
    from mcp.shared.auth import OAuthClientInformationFull, OAuthToken


def _listen() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def _serve(app: Any, sock: socket.socket, banner: str) -> None:
    import uvicorn

    # The socket already listens: connections wait in its backlog until
    # uvicorn accepts them, so announcing now is not early.
    print(banner, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    asyncio.run(server.serve(sockets=[sock]))


# --- the authorization server --------------------------------------------------------------


class MemoryProvider:
    """
    The SDK's OAuthAuthorizationServerProvider, in memory, consenting at once.
    """

    def __init__(self) -> None:
        self.clients: Dict[str, Any] = {}
        self.codes: Dict[str, Any] = {}
        self.tokens: Dict[str, Any] = {}
        self.requested_resources: list = []

    async def get_client(self, client_id: str) -> Any:
        return self.clients.get(client_id)

    async def register_client(self, client_info: Any) -> None:
        self.clients[client_info.client_id] = client_info

    async def authorize(self, client: Any, params: Any) -> str:
        from mcp.server.auth.provider import AuthorizationCode, construct_redirect_uri

        code = secrets.token_urlsafe(24)
        self.codes[code] = AuthorizationCode(
            code=code, scopes=params.scopes or [], expires_at=time.time() + 300,
            client_id=client.client_id, code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=params.resource,
        )
        self.requested_resources.append(params.resource)
        return construct_redirect_uri(str(params.redirect_uri), code=code, state=params.state)

    async def load_authorization_code(self, client: Any, authorization_code: str) -> Any:
        code = self.codes.get(authorization_code)
        return code if code is not None and code.client_id == client.client_id else None

    async def exchange_authorization_code(self, client: Any, authorization_code: Any) -> Any:
        from mcp.server.auth.provider import AccessToken
        from mcp.shared.auth import OAuthToken

        self.codes.pop(authorization_code.code, None)
        token = "at-" + secrets.token_urlsafe(32)
        self.tokens[token] = AccessToken(
            token=token, client_id=client.client_id, scopes=authorization_code.scopes,
            expires_at=int(time.time()) + 3600, resource=authorization_code.resource,
        )
        return OAuthToken(access_token=token, token_type="Bearer", expires_in=3600,
                          scope=" ".join(authorization_code.scopes))

    async def load_refresh_token(self, client: Any, refresh_token: str) -> Any:
        return None

    async def exchange_refresh_token(self, client: Any, refresh_token: Any, scopes: Any) -> Any:
        from mcp.server.auth.provider import TokenError

        raise TokenError("invalid_grant", "no refresh tokens here")

    async def load_access_token(self, token: str) -> Any:
        return self.tokens.get(token)

    async def revoke_token(self, token: Any) -> None:
        self.tokens.pop(getattr(token, "token", None), None)


def authorization_server() -> None:
    from pydantic import AnyHttpUrl, ConfigDict, TypeAdapter
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from mcp.server.auth.routes import create_auth_routes
    from mcp.server.auth.settings import ClientRegistrationOptions

    sock = _listen()
    issuer = f"http://127.0.0.1:{sock.getsockname()[1]}"
    provider = MemoryProvider()

    async def introspect(request: Request) -> JSONResponse:
        form = await request.form()
        token = provider.tokens.get(str(form.get("token", "")))
        if token is None or (token.expires_at and token.expires_at < time.time()):
            return JSONResponse({"active": False})
        return JSONResponse({"active": True, "client_id": token.client_id, "scope": " ".join(token.scopes),
                             "exp": token.expires_at, "aud": token.resource, "iss": issuer})

    async def resources(request: Request) -> JSONResponse:
        return JSONResponse(provider.requested_resources)

    # The issuer exactly as the resource server lists it (no trailing "/"):
    # clients compare the two as strings.
    exact = TypeAdapter(AnyHttpUrl, config=ConfigDict(url_preserve_empty_path=True))
    routes = create_auth_routes(
        provider=provider,
        issuer_url=exact.validate_python(issuer),
        client_registration_options=ClientRegistrationOptions(
            enabled=True, valid_scopes=["mcp:tools"], default_scopes=["mcp:tools"]),
    )
    routes.append(Route("/introspect", introspect, methods=["POST"]))
    routes.append(Route("/_requested_resources", resources, methods=["GET"]))
    _serve(Starlette(routes=routes), sock, f"authorization server listening on {issuer}")


# --- the protected MCP server ----------------------------------------------------------------


class IntrospectionVerifier:
    """
    Accepts a token when the authorization server says it is active and
    was issued for C{audience}.
    """

    def __init__(self, introspection_url: str, audience: str) -> None:
        self.introspection_url = introspection_url
        self.audience = audience

    async def verify_token(self, token: str) -> Any:
        import httpx2

        from mcp.server.auth.provider import AccessToken

        async with httpx2.AsyncClient() as client:
            response = await client.post(self.introspection_url, data={"token": token})
        data = response.json()
        if not data.get("active") or data.get("aud") != self.audience:
            return None
        return AccessToken(token=token, client_id=data["client_id"], scopes=data["scope"].split(),
                           expires_at=data.get("exp"), resource=data["aud"])


def resource_server(issuer: str, audience: str, resource_is_audience: bool) -> None:
    import warnings

    from mcp.server.auth.middleware.auth_context import get_access_token
    from mcp.server.auth.settings import AuthSettings
    from mcp.server.mcpserver import MCPServer

    warnings.simplefilter("ignore")
    sock = _listen()
    own_url = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    # Either the server names itself as the resource (the gateway rewrites),
    # or it is configured with the gateway's URL (nothing to rewrite).
    server = MCPServer(
        "secured-backend",
        token_verifier=IntrospectionVerifier(issuer + "/introspect", audience),
        auth=AuthSettings(issuer_url=issuer, resource_server_url=audience if resource_is_audience else own_url,
                          required_scopes=["mcp:tools"], validate_token_resource=resource_is_audience),
    )

    @server.tool()
    def whoami() -> str:
        """The audience of the token this call carried."""
        token = get_access_token()
        return f"audience={token.resource if token else None}"

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    app = server.streamable_http_app(stateless_http=True, host="127.0.0.1")
    _serve(app, sock, f"resource server listening on {own_url}")


# --- the scripted backend ----------------------------------------------------------------------


def stub(script_path: str) -> None:
    """
    Serves C{{"routes": {"METHOD /path": {"status": .., "headers": [[k, v]], "json": .. | "body": ..}}}}
    from a JSON file (re-read on every request, so a test can change it);
    C{{PORT}} in values is replaced with the stub's port. C{GET /_count}
    answers how many requests each route got.
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    sock = _listen()
    port = str(sock.getsockname()[1])
    counts: Dict[str, int] = {}
    seen: list = []

    async def handle(request: Request) -> Response:
        key = f"{request.method} {request.url.path}"
        if key == "GET /_count":
            return JSONResponse(counts)
        if key == "GET /_seen":
            return JSONResponse(seen)
        counts[key] = counts.get(key, 0) + 1
        seen.append({"key": key, "authorization": request.headers.get("authorization"),
                     "dpop": request.headers.get("dpop")})
        with open(script_path) as f:
            routes = json.loads(f.read().replace("{PORT}", port))["routes"]
        spec: Optional[Dict[str, Any]] = routes.get(key)
        if spec is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        if "json" in spec:
            body = json.dumps(spec["json"]).encode()
            media = "application/json"
        else:
            body = spec.get("body", "").encode()
            media = None
        response = Response(body, status_code=spec.get("status", 200), media_type=media)
        for name, value in spec.get("headers", []):
            response.headers.append(name, value)
        return response

    app = Starlette(routes=[Route("/{path:path}", handle, methods=["GET", "POST", "DELETE", "OPTIONS"])])
    _serve(app, sock, f"stub listening on http://127.0.0.1:{port}")


def main(argv: list) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["as", "rs", "stub"])
    parser.add_argument("--issuer")
    parser.add_argument("--audience")
    parser.add_argument("--script")
    parser.add_argument("--resource-is-audience", action="store_true")
    args = parser.parse_args(argv)
    if args.mode == "as":
        authorization_server()
    elif args.mode == "rs":
        resource_server(args.issuer, args.audience, args.resource_is_audience)
    else:
        stub(args.script)


if __name__ == "__main__":
    main(sys.argv[1:])


# The SDK client's token storage, in memory (for OAuth client tests).
class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: Optional[OAuthToken] = None
        self.client_info: Optional[OAuthClientInformationFull] = None

    async def get_tokens(self) -> Optional[OAuthToken]:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> Optional[OAuthClientInformationFull]:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


@contextlib.asynccontextmanager
async def oauth_client(mcp_url: str, seen: Dict[str, Any]) -> "AsyncIterator[Any]":
    """
    The official SDK client with its OAuth provider, knowing only C{mcp_url}.
    The authorization redirect is followed by hand (the test authorization
    server approves at once) and its code handed back. Every HTTP exchange is
    recorded in C{seen["exchanges"]}, the authorization URL in
    C{seen["authorization_url"]}, the access token in C{seen["token"]}.
    """
    import httpx2
    from urllib.parse import parse_qs, urlsplit

    from mcp import Client
    from mcp.client.auth import OAuthClientProvider
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

    seen.setdefault("exchanges", [])
    redirect: Dict[str, str] = {}

    async def on_redirect(authorization_url: str) -> None:
        seen["authorization_url"] = authorization_url
        async with httpx2.AsyncClient() as browser:
            answer = await browser.get(authorization_url)
        assert answer.status_code == 302, answer.text
        query = parse_qs(urlsplit(answer.headers["location"]).query)
        redirect.update({key: values[0] for key, values in query.items()})

    async def on_callback() -> AuthorizationCodeResult:
        return AuthorizationCodeResult(code=redirect["code"], state=redirect.get("state"),
                                       iss=redirect.get("iss"))

    async def record(response: Any) -> None:
        request = response.request
        seen["exchanges"].append((request.method, str(request.url), response.status_code,
                                  response.headers.get("www-authenticate")))

    storage = MemoryStorage()
    provider = OAuthClientProvider(
        server_url=mcp_url,
        client_metadata=OAuthClientMetadata(client_name="mcpgated-test",
                                            redirect_uris=["http://127.0.0.1:9/callback"],
                                            grant_types=["authorization_code", "refresh_token"]),
        storage=storage, redirect_handler=on_redirect, callback_handler=on_callback)
    async with httpx2.AsyncClient(auth=provider, event_hooks={"response": [record]}) as http_client:
        async with Client(streamable_http_client(mcp_url, http_client=http_client)) as client:
            yield client
    seen["token"] = storage.tokens.access_token if storage.tokens else None
