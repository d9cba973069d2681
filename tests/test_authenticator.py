"""
L{mcpgated.policy.auth.Authenticator} in memory: which plan a request's
credential selects, and what a client is told when none does. The
real-daemon tests (test_token_plans, test_subscriptions, security/) drive
the same code through the gateway; these run in milliseconds and reach the
corners one by one.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import attrs
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.web.http_headers import Headers
from zope.interface import implementer, providedBy
from zope.interface.verify import verifyObject

from mcpgated.jsonrpc import Refusal
from mcpgated.keys import KeyGrant, KeyIndex, hash_key
from mcpgated.model import Plan
from mcpgated.policy.auth import (
    DEFAULT_KEY_HEADER,
    Authenticator,
    InvalidToken,
    ITokenVerifier,
    Principal,
    TokenInfo,
)
from mcpgated.policy.tokens import TokenVerifier
from tests.support import make_headers

API = "api-1"
CHALLENGE = 'Bearer resource_metadata="https://gw.example/.well-known/oauth-protected-resource/mcp"'
RESOURCE = "https://gw.example/mcp"
KEY = "k-0123456789abcdef0123456789abcdef"


@attrs.frozen
class Definition:
    """
    What the authenticator reads of an API definition: its plans.
    """

    plans: Tuple[Plan, ...]


@implementer(ITokenVerifier)
@attrs.define
class StubVerifier:
    """
    Accepts the tokens it was given, per plan name; records every call.
    """

    accepted: Dict[Tuple[str, str], TokenInfo] = attrs.field(factory=dict)
    unavailable: Sequence[str] = ()
    calls: List[Tuple[str, str, Optional[str]]] = attrs.field(factory=list)

    async def verify(self, token: str, plan: Any, resource: Optional[str] = None) -> TokenInfo:
        self.calls.append((token, plan.name, resource))
        if plan.name in self.unavailable:
            raise Refusal(503, "The token issuer did not answer", outcome="unavailable")
        info = self.accepted.get((plan.name, token))
        if info is None:
            raise InvalidToken(f'signature "{plan.name}" does not match')
        return info


def grant(plan: str = "Gold", api_id: str = API, expires_at: Optional[float] = None) -> KeyGrant:
    return KeyGrant(api_id=api_id, plan=plan, application_id="app-1", application_name="acme",
                    subscription_id="sub-1", expires_at=expires_at)


def keys(*entries: Tuple[str, KeyGrant]) -> KeyIndex:
    index = KeyIndex()
    index.load((hash_key(key), value) for key, value in entries)
    return index


def authenticate(authenticator: Authenticator, plans: Sequence[Plan],
                 request_headers: Optional[Headers] = None,
                 query: Optional[Dict[str, List[str]]] = None) -> Principal:
    """
    Run C{authenticate} to the end (the stubs never wait) and give back
    its principal, or raise its refusal.
    """
    coroutine = authenticator.authenticate(API, Definition(tuple(plans)),
                                           request_headers or Headers(), query or {},
                                           CHALLENGE, RESOURCE)
    outcome: List[Any] = []
    Deferred.fromCoroutine(coroutine).addBoth(outcome.append)
    assert outcome, "authenticate waited on something"
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    if hasattr(outcome[0], "raiseException"):
        outcome[0].raiseException()
    assert isinstance(outcome[0], Principal)
    return outcome[0]


def refused(authenticator: Authenticator, plans: Sequence[Plan],
            request_headers: Optional[Headers] = None,
            query: Optional[Dict[str, List[str]]] = None) -> Refusal:
    with pytest.raises(Refusal) as caught:
        authenticate(authenticator, plans, request_headers, query)
    return caught.value


KEYLESS = Plan("Free", "KEY_LESS")
GOLD = Plan("Gold", "API_KEY")
JWT = Plan("Tokens", "JWT", configuration={"issuer": "https://idp.example"})
OAUTH = Plan("Introspected", "OAUTH2", configuration={"requiredScopes": ["mcp:read", "mcp:call"]})


# --- interfaces -------------------------------------------------------------------------------


def test_the_stub_and_the_real_verifier_provide_the_token_verifier_interface() -> None:
    assert verifyObject(ITokenVerifier, StubVerifier())
    assert verifyObject(ITokenVerifier, TokenVerifier(Clock(), upstreams=None))


def test_the_authenticator_provides_what_it_declares() -> None:
    authenticator = Authenticator(Clock(), keys=KeyIndex(), verifier=StubVerifier())
    for interface in providedBy(authenticator):
        assert verifyObject(interface, authenticator)


# --- keyless ----------------------------------------------------------------------------------


def test_no_credential_selects_the_keyless_plan() -> None:
    principal = authenticate(Authenticator(Clock()), [GOLD, KEYLESS])
    assert principal.plan is KEYLESS
    assert principal.credential is None and principal.consumer is None


def test_an_unpublished_keyless_plan_does_not_open_the_api() -> None:
    closed = Plan("Free", "KEY_LESS", status="CLOSED")
    refusal = refused(Authenticator(Clock(), keys=KeyIndex()), [closed, GOLD])
    assert refusal.status == 401
    assert refusal.message.lower() == f"an api key is required (header {DEFAULT_KEY_HEADER.lower()})"


# --- API keys ---------------------------------------------------------------------------------


def test_api_key_in_the_default_header_selects_its_subscriptions_plan() -> None:
    authenticator = Authenticator(Clock(), keys=keys((KEY, grant())))
    principal = authenticate(authenticator, [KEYLESS, GOLD],
                             make_headers(**{DEFAULT_KEY_HEADER: KEY}))
    assert principal.plan is GOLD
    assert (principal.application_id, principal.application_name, principal.subscription_id) \
        == ("app-1", "acme", "sub-1")
    assert principal.credential == "api_key" and principal.consumer == "acme"


def test_api_key_header_name_is_case_insensitive_and_value_trimmed() -> None:
    authenticator = Authenticator(Clock(), keys=keys((KEY, grant())))
    principal = authenticate(authenticator, [GOLD], make_headers(**{"x-gravitee-api-key": f" {KEY} "}))
    assert principal.plan is GOLD


def test_api_key_in_the_query_and_in_a_configured_header() -> None:
    custom = Plan("Gold", "API_KEY", configuration={"header": "X-Key", "queryParam": "key"})
    authenticator = Authenticator(Clock(), keys=keys((KEY, grant())))
    assert authenticate(authenticator, [custom], query={"key": [KEY]}).plan is custom
    assert authenticate(authenticator, [custom], make_headers(X_Key=KEY)).plan is custom
    # the default names no longer carry a key for this plan
    assert refused(authenticator, [custom], query={"api-key": [KEY]}).status == 401


def test_the_header_wins_over_the_query() -> None:
    other = "k-other-other-other-other-other-other"
    authenticator = Authenticator(Clock(), keys=keys((KEY, grant()),
                                                     (other, grant(plan="Silver"))))
    silver = Plan("Silver", "API_KEY")
    principal = authenticate(authenticator, [GOLD, silver], make_headers(**{DEFAULT_KEY_HEADER: KEY}),
                             {"api-key": [other]})
    assert principal.plan is GOLD


@pytest.mark.parametrize("index", [
    KeyIndex(),  # unknown (or revoked: revoking removes the key from the index)
    keys((KEY, grant(api_id="another-api"))),  # a key of another API
    keys((KEY, grant(expires_at=1000.0))),  # expired (rotation's grace period is over)
    keys((KEY, grant(plan="Closed"))),  # its plan is not a published API_KEY plan here
])
def test_unusable_key_is_refused_whatever_the_reason(index: KeyIndex) -> None:
    clock = Clock()
    clock.advance(1000.0)
    refusal = refused(Authenticator(clock, keys=index), [KEYLESS, GOLD],
                      make_headers(**{DEFAULT_KEY_HEADER: KEY}))
    assert (refusal.status, refusal.message) == (401, "The API key is unknown, expired or revoked")
    assert refusal.challenge is None


def test_a_key_works_until_it_expires() -> None:
    clock = Clock()
    authenticator = Authenticator(clock, keys=keys((KEY, grant(expires_at=60.0))))
    assert authenticate(authenticator, [GOLD], make_headers(**{DEFAULT_KEY_HEADER: KEY})).plan is GOLD
    clock.advance(60.0)
    assert refused(authenticator, [GOLD], make_headers(**{DEFAULT_KEY_HEADER: KEY})).status == 401


def test_a_key_never_falls_back_to_the_keyless_plan() -> None:
    refusal = refused(Authenticator(Clock(), keys=KeyIndex()), [KEYLESS, GOLD],
                      query={"api-key": ["made-up"]})
    assert refusal.status == 401


def test_a_key_and_a_bearer_token_together_are_a_bad_request() -> None:
    authenticator = Authenticator(Clock(), keys=keys((KEY, grant())), verifier=StubVerifier())
    refusal = refused(authenticator, [GOLD, JWT],
                      make_headers(Authorization="Bearer t", **{DEFAULT_KEY_HEADER: KEY}))
    assert refusal.status == 400 and refusal.outcome == "bad_credentials"
    assert "both an API key and a bearer token" in refusal.message


# --- bearer tokens ----------------------------------------------------------------------------


def test_a_valid_token_selects_its_plan_with_the_tokens_identity() -> None:
    info = TokenInfo("alice", frozenset({"mcp:read"}), {"sub": "alice"}, client_id="cli")
    verifier = StubVerifier({("Tokens", "good"): info})
    principal = authenticate(Authenticator(Clock(), verifier=verifier), [KEYLESS, JWT],
                             make_headers(Authorization="Bearer good"))
    assert principal.plan is JWT
    assert (principal.subject, principal.scopes, principal.credential) \
        == ("alice", frozenset({"mcp:read"}), "bearer")
    assert principal.consumer == "cli"
    assert verifier.calls == [("good", "Tokens", RESOURCE)]


def test_token_plans_are_tried_in_order_until_one_accepts() -> None:
    info = TokenInfo("bob", frozenset({"mcp:read", "mcp:call"}))
    verifier = StubVerifier({("Introspected", "opaque"): info})
    principal = authenticate(Authenticator(Clock(), verifier=verifier), [JWT, OAUTH],
                             make_headers(Authorization="bearer  opaque "))
    assert principal.plan is OAUTH
    assert [plan for _, plan, _ in verifier.calls] == ["Tokens", "Introspected"]


def test_no_token_on_a_token_only_api_gets_the_challenge() -> None:
    refusal = refused(Authenticator(Clock(), verifier=StubVerifier()), [JWT])
    assert refusal.status == 401
    assert refusal.message == "Authentication required: send a bearer token"
    assert refusal.challenge == CHALLENGE


def test_a_bearer_token_is_ignored_where_no_plan_takes_tokens() -> None:
    verifier = StubVerifier()
    principal = authenticate(Authenticator(Clock(), verifier=verifier), [KEYLESS],
                             make_headers(Authorization="Bearer whatever"))
    assert principal.plan is KEYLESS and verifier.calls == []


@pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "Token abc"])
def test_an_authorization_that_is_not_a_bearer_token_is_no_token(value: str) -> None:
    refusal = refused(Authenticator(Clock(), verifier=StubVerifier()), [JWT],
                      make_headers(Authorization=value))
    assert refusal.message == "Authentication required: send a bearer token"


def test_a_rejected_token_says_why_in_the_challenge() -> None:
    refusal = refused(Authenticator(Clock(), verifier=StubVerifier()), [JWT],
                      make_headers(Authorization="Bearer forged"))
    assert refusal.status == 401
    # the reason is quoted safely: its double quotes become single ones
    assert refusal.message == "The bearer token was rejected: signature 'Tokens' does not match"
    assert refusal.challenge == (CHALLENGE + ', error="invalid_token", '
                                 "error_description=\"signature 'Tokens' does not match\"")


def test_missing_scopes_are_a_403_naming_them() -> None:
    verifier = StubVerifier({("Introspected", "t"): TokenInfo("carol", frozenset({"mcp:read"}))})
    refusal = refused(Authenticator(Clock(), verifier=verifier), [OAUTH],
                      make_headers(Authorization="Bearer t"))
    assert (refusal.status, refusal.outcome) == (403, "forbidden")
    assert refusal.challenge == CHALLENGE + ', error="insufficient_scope", scope="mcp:call mcp:read"'


def test_an_issuer_that_does_not_answer_is_not_an_invalid_token() -> None:
    verifier = StubVerifier(unavailable=("Tokens",))
    refusal = refused(Authenticator(Clock(), verifier=verifier), [JWT],
                      make_headers(Authorization="Bearer t"))
    assert refusal.status == 503


def test_without_a_verifier_tokens_cannot_be_checked() -> None:
    refusal = refused(Authenticator(Clock()), [JWT], make_headers(Authorization="Bearer t"))
    assert refusal.status == 401
    assert refusal.challenge == CHALLENGE + ', error="invalid_token"'


# --- what a principal decides downstream ------------------------------------------------------


def test_rate_limit_keys_follow_the_credential() -> None:
    assert Principal(GOLD, subscription_id="s").limit_key("10.0.0.1", "subscription") == "sub:s"
    assert Principal(JWT, subject="alice").limit_key("10.0.0.1", "subscription") \
        == "sub:Tokens:alice"
    assert Principal(KEYLESS).limit_key("10.0.0.1", "subscription") == "ip:Free:10.0.0.1"
    assert Principal(GOLD, subscription_id="s").limit_key("10.0.0.1", "plan") == "plan:Gold"
