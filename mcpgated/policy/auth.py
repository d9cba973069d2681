"""
Plan selection by the credentials a request carries, as Gravitee does:
an API key selects an C{API_KEY} plan, a bearer token a C{JWT} or
C{OAUTH2} plan, no credential the C{KEY_LESS} plan.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import unquote_to_bytes

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.web.http_headers import Headers
from zope.interface import Interface

from mcpgated.jsonrpc import Refusal
from mcpgated.policy.acl import Caller

if TYPE_CHECKING:
    from mcpgated.keys import KeyIndex
    from mcpgated.model import ApiDefinition, Plan

DEFAULT_KEY_HEADER = "X-Gravitee-Api-Key"
DEFAULT_KEY_QUERY = "api-key"
TOKEN_PLANS = ("JWT", "OAUTH2")


@attrs.frozen
class TokenInfo:
    subject: Optional[str]
    scopes: FrozenSet[str]
    claims: Mapping[str, Any] = attrs.field(factory=dict, hash=False)
    client_id: Optional[str] = None
    expires_at: Optional[float] = None


class InvalidToken(Exception):
    """
    The bearer token is not valid for this plan (message safe to show).
    """


class ITokenVerifier(Interface):
    async def verify(token: str, plan: Plan, resource: Optional[str] = None) -> TokenInfo:
        """
        Check a bearer token against a C{JWT} or C{OAUTH2} plan's settings
        (C{resource}: the API's public resource URL, the audience expected
        when the plan names none); raise L{InvalidToken} when it is not valid.
        """


@attrs.frozen
class Principal:
    plan: Plan
    application_id: Optional[str] = None
    application_name: Optional[str] = None
    subscription_id: Optional[str] = None
    subject: Optional[str] = None
    scopes: FrozenSet[str] = frozenset()
    claims: Mapping[str, Any] = attrs.field(factory=dict, hash=False)
    credential: Optional[str] = None  # "api_key" | "bearer" | None

    @property
    def consumer(self) -> Optional[str]:
        return self.application_name or self.subject

    def caller(self) -> Caller:
        return Caller(self.plan.name, self.application_id, self.scopes, self.claims)

    def limit_key(self, client: Optional[str], scope: str) -> str:
        if scope == "plan":
            return f"plan:{self.plan.name}"
        if self.subscription_id:
            return f"sub:{self.subscription_id}"
        if self.subject:
            return f"sub:{self.plan.name}:{self.subject}"
        return f"ip:{self.plan.name}:{client}"


def _config(plan: Plan) -> Mapping[str, Any]:
    return getattr(plan, "configuration", None) or {}


def key_locations(plans: Sequence[Plan]) -> Tuple[List[str], List[str]]:
    headers: List[str] = []
    queries: List[str] = []
    for plan in plans:
        if plan.security == "API_KEY":
            config = _config(plan)
            header = config.get("header", DEFAULT_KEY_HEADER)
            query = config.get("queryParam", DEFAULT_KEY_QUERY)
            if header and header.lower() not in headers:
                headers.append(header.lower())
            if query and query not in queries:
                queries.append(query)
    return headers, queries


def bearer_token(headers: Headers) -> Optional[str]:
    value = headers.getRawHeaders(b"authorization")
    if not value:
        return None
    scheme, _, token = value[0].decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def strip_query(query: bytes, names: List[str]) -> bytes:
    """
    The query without the API key parameters (they never reach the backend),
    every other byte as the client sent it.

    Pairs are split on C{&} only, and a pair is dropped when its name,
    decoded as the gateway decodes it to read the key (C{+} as a space, then
    percent-escapes), is one of C{names}: C{api%2Dkey=K} is the key as much
    as C{api-key=K} is. Everything else, empty pairs and C{+} versus
    C{%20} included, is kept unchanged.
    """
    if not query or not names:
        return query
    if b"%" not in query and not any(name.encode("latin-1") in query for name in names):
        return query  # no pair can be named like a key parameter
    wanted = {name.encode("latin-1") for name in names}
    parts = query.split(b"&")
    kept = [part for part in parts
            if unquote_to_bytes(part.partition(b"=")[0].replace(b"+", b" ")) not in wanted]
    if len(kept) == len(parts):
        return query
    return b"&".join(kept)


@attrs.define
class Authenticator:
    """
    @ivar keys: the gateway's L{mcpgated.keys.KeyIndex} (or anything with
        C{lookup(api_id, key, now)}).
    @ivar verifier: checks bearer tokens for C{JWT}/C{OAUTH2} plans.
    """

    clock: IReactorTime
    keys: Optional[KeyIndex] = None
    verifier: Optional[ITokenVerifier] = None

    async def authenticate(self, api_id: str, definition: ApiDefinition, headers: Headers,
                           query: Dict[str, List[str]], challenge: str,
                           resource: Optional[str] = None) -> Principal:
        """
        @param challenge: the C{WWW-Authenticate} value for token plans
            (pointing at the gateway's protected-resource metadata).
        @param resource: the API's public resource URL (the C{resource} of
            that metadata): the audience tokens must name unless the plan
            says otherwise.
        @raise Refusal: no plan accepts the request.
        """
        plans = [p for p in definition.plans if p.status == "PUBLISHED"]
        key_headers, key_queries = key_locations(plans)
        presented_key = None
        for name in key_headers:
            value = headers.getRawHeaders(name.encode("latin-1"))
            if value:
                presented_key = value[0].decode("latin-1").strip()
                break
        if presented_key is None:
            for name in key_queries:
                if query.get(name):
                    presented_key = query[name][0]
                    break
        token_plans = [p for p in plans if p.security in TOKEN_PLANS]
        token = bearer_token(headers) if token_plans else None
        if presented_key is not None and token is not None:
            raise Refusal(400, "The request carries both an API key and a bearer token; "
                               "send the credential of one plan only", outcome="bad_credentials")
        if presented_key is not None:
            return self._api_key(api_id, plans, presented_key)
        if token is not None:
            return await self._token(token, token_plans, challenge, resource)
        keyless = next((p for p in plans if p.security == "KEY_LESS"), None)
        if keyless is not None:
            return Principal(plan=keyless)
        if token_plans:
            raise Refusal(401, "Authentication required: send a bearer token", challenge)
        raise Refusal(401, f"An API key is required (header {key_headers[0] if key_headers else DEFAULT_KEY_HEADER})")

    def _api_key(self, api_id: str, plans: List[Plan], key: str) -> Principal:
        grant = self.keys.lookup(api_id, key, self.clock.seconds()) if self.keys is not None else None
        plan = None
        if grant is not None:
            plan = next((p for p in plans if p.name == grant.plan and p.security == "API_KEY"), None)
        if grant is None or plan is None:
            raise Refusal(401, "The API key is unknown, expired or revoked")
        return Principal(plan=plan, application_id=grant.application_id,
                         application_name=grant.application_name,
                         subscription_id=grant.subscription_id, credential="api_key")

    async def _token(self, token: str, plans: List[Plan], challenge: str,
                     resource: Optional[str]) -> Principal:
        if self.verifier is None:
            raise Refusal(401, "Bearer tokens cannot be checked by this gateway",
                          challenge + ', error="invalid_token"')
        reason = "invalid token"
        unavailable: Optional[Refusal] = None
        for plan in plans:
            try:
                info = await self.verifier.verify(token, plan, resource)
            except InvalidToken as e:
                reason = str(e) or reason
                continue
            except Refusal as e:  # the plan's keys or introspection endpoint did not answer
                unavailable = e
                continue
            required = frozenset(_config(plan).get("requiredScopes", ()))
            if not required <= info.scopes:
                missing = " ".join(sorted(required))
                raise Refusal(403, "The token lacks required scopes",
                              f'{challenge}, error="insufficient_scope", scope="{missing}"',
                              outcome="forbidden")
            return Principal(plan=plan, subject=info.subject, scopes=info.scopes,
                             claims=info.claims, credential="bearer",
                             application_name=info.client_id)
        if unavailable is not None:
            raise unavailable
        safe = reason.replace('"', "'").replace("\\", "")[:200]
        raise Refusal(401, f"The bearer token was rejected: {safe}",
                      f'{challenge}, error="invalid_token", error_description="{safe}"')
