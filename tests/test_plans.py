"""
A plan's security settings and the API's backend credential as the admin
API reads them (L{mcpgated.policy.plans}): the values stored, their
defaults, and an error naming the field for anything else.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mcpgated.policy.acl import PolicyError
from mcpgated.policy.plans import (
    SECRET_MASK,
    parse_backend_auth,
    parse_configuration,
    shown,
)

WHERE = "plans[0]"
FIELD = f"{WHERE}.configuration"
AS = "https://as.example"


def pem(key: Any, private: bool = False) -> str:
    if private:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def refused(security: str, raw: Any, previous: Optional[Dict[str, Any]] = None) -> str:
    with pytest.raises(PolicyError) as caught:
        parse_configuration(security, raw, WHERE, previous)
    # the message names the setting too
    assert caught.value.field.rsplit(".", 1)[-1] in caught.value.message
    return caught.value.field


def test_a_keyless_plan_has_no_settings() -> None:
    assert parse_configuration("KEY_LESS", None, WHERE) == {}
    assert parse_configuration("KEY_LESS", {}, WHERE) == {}
    assert refused("KEY_LESS", {"header": "X"}) == f"{FIELD}.header"
    assert refused("KEY_LESS", ["not", "an", "object"]) == FIELD


def test_an_api_key_plan_reads_the_key_from_a_header_or_a_query_parameter() -> None:
    assert parse_configuration("API_KEY", {}, WHERE) == {"header": "X-Gravitee-Api-Key",
                                                         "queryParam": "api-key"}
    assert parse_configuration("API_KEY", {"header": "X-Key", "queryParam": ""}, WHERE) == \
        {"header": "X-Key", "queryParam": ""}  # "": never from the URL
    for bad in ("", "X Key", "X:Key", "X-Key\r\n", 3):
        assert refused("API_KEY", {"header": bad}) == f"{FIELD}.header"
    assert refused("API_KEY", {"queryParam": "a b"}) == f"{FIELD}.queryParam"
    assert refused("API_KEY", {"jwksUrl": AS}) == f"{FIELD}.jwksUrl"


def jwt(**raw: Any) -> Dict[str, Any]:
    return {"issuer": AS, "jwksUrl": f"{AS}/jwks", **raw}


def test_a_jwt_plan_with_its_defaults() -> None:
    assert parse_configuration("JWT", jwt(), WHERE) == {
        "issuer": AS, "jwksUrl": f"{AS}/jwks", "algorithms": ["RS256", "ES256"],
        "requiredScopes": [], "authorizationServers": [AS]}
    configured = parse_configuration("JWT", jwt(audience="https://gw/mcp", algorithms="EdDSA",
                                                requiredScopes="read", scopeClaim="scp",
                                                scopesSupported=["read", "write"]), WHERE)
    assert configured["audience"] == ["https://gw/mcp"]
    assert configured["algorithms"] == ["EdDSA"]
    assert configured["requiredScopes"] == ["read"]
    assert configured["scopeClaim"] == "scp"
    assert configured["scopesSupported"] == ["read", "write"]
    assert parse_configuration("JWT", jwt(anyAudience=True), WHERE)["anyAudience"] is True
    assert "anyAudience" not in parse_configuration("JWT", jwt(anyAudience=False), WHERE)


def test_a_jwt_plan_takes_a_public_key_of_the_kinds_it_verifies() -> None:
    for key in (rsa.generate_private_key(65537, 2048), ec.generate_private_key(ec.SECP256R1())):
        raw = {"issuer": AS, "publicKey": pem(key)}
        assert parse_configuration("JWT", raw, WHERE)["publicKey"] == pem(key)
    private = pem(ec.generate_private_key(ec.SECP256R1()), private=True)
    for bad in (private, "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n",
                "no pem at all", 42):
        assert refused("JWT", {"issuer": AS, "publicKey": bad}) == f"{FIELD}.publicKey"


@pytest.mark.parametrize("raw, field", [
    ({"jwksUrl": f"{AS}/jwks"}, "issuer"),
    ({"issuer": "", "jwksUrl": f"{AS}/jwks"}, "issuer"),
    ({"issuer": AS}, "jwksUrl"),  # neither
    (jwt(publicKey="x"), "jwksUrl"),  # both
    (jwt(jwksUrl="file:///etc/jwks"), "jwksUrl"),
    (jwt(jwksUrl="https:///no-host"), "jwksUrl"),
    (jwt(algorithms=["HS256"]), "algorithms"),  # a shared secret: never
    (jwt(algorithms=["none"]), "algorithms"),
    (jwt(algorithms=[]), "algorithms"),  # would refuse every token
    (jwt(audience=["https://a", 3]), "audience"),
    (jwt(anyAudience="yes"), "anyAudience"),
    (jwt(audience="https://a", anyAudience=True), "anyAudience"),
    (jwt(authorizationServers=["ftp://as"]), "authorizationServers"),
    (jwt(scopeClaim="a b"), "scopeClaim"),
    (jwt(clientSecret="s"), "clientSecret"),  # an OAuth 2 setting
])
def test_a_wrong_jwt_setting_is_named(raw: Dict[str, Any], field: str) -> None:
    assert refused("JWT", raw) == f"{FIELD}.{field}"


def oauth(**raw: Any) -> Dict[str, Any]:
    return {"introspectionUrl": f"{AS}/introspect", "authorizationServers": AS, **raw}


def test_an_oauth2_plan_introspects_and_names_its_authorization_servers() -> None:
    assert parse_configuration("OAUTH2", oauth(clientId="gw", clientSecret="s3cret",
                                               cacheSeconds=0), WHERE) == {
        "introspectionUrl": f"{AS}/introspect", "clientId": "gw", "clientSecret": "s3cret",
        "cacheSeconds": 0, "requiredScopes": [], "authorizationServers": [AS]}
    assert refused("OAUTH2", {"introspectionUrl": f"{AS}/introspect"}) == \
        f"{FIELD}.authorizationServers"
    assert refused("OAUTH2", {"authorizationServers": AS}) == f"{FIELD}.introspectionUrl"
    for seconds in (-1, 3601, 1.5, True, "60"):
        assert refused("OAUTH2", oauth(cacheSeconds=seconds)) == f"{FIELD}.cacheSeconds"
    assert refused("OAUTH2", oauth(clientSecret=1)) == f"{FIELD}.clientSecret"
    assert refused("OAUTH2", oauth(issuer="")) == f"{FIELD}.issuer"


def test_the_secret_is_shown_masked_and_a_masked_secret_keeps_the_stored_one() -> None:
    stored = parse_configuration("OAUTH2", oauth(clientId="gw", clientSecret="s3cret"), WHERE)
    view = shown(stored)
    assert view["clientSecret"] == SECRET_MASK and view["clientId"] == "gw"
    assert stored["clientSecret"] == "s3cret"  # shown() copies
    # the edited GET body comes back with the mask: the secret stays
    assert parse_configuration("OAUTH2", view, WHERE, stored)["clientSecret"] == "s3cret"
    # a new secret replaces it
    assert parse_configuration("OAUTH2", dict(view, clientSecret="new"), WHERE,
                               stored)["clientSecret"] == "new"
    # no stored secret to keep: the mask is no secret
    assert refused("OAUTH2", view) == f"{FIELD}.clientSecret"
    assert refused("OAUTH2", view, {"clientId": "gw"}) == f"{FIELD}.clientSecret"
    assert shown({"header": "X"}) == {"header": "X"}


def test_the_backend_credential() -> None:
    assert parse_backend_auth(None) is None
    assert parse_backend_auth({}) == {"forwardClientToken": False}
    assert parse_backend_auth({"header": "Authorization", "value": "Bearer b"}) == \
        {"forwardClientToken": False, "header": "Authorization", "value": "Bearer b"}
    assert parse_backend_auth({"forwardClientToken": True}) == {"forwardClientToken": True}


@pytest.mark.parametrize("raw, field", [
    ("Bearer x", "backendAuth"),
    ({"token": "x"}, "backendAuth.token"),
    ({"header": "Authorization"}, "backendAuth.value"),
    ({"value": "Bearer x"}, "backendAuth.header"),
    ({"header": "Authorization", "value": "Bearer x\r\nX-Injected: 1"}, "backendAuth.value"),
    ({"header": "Authorization", "value": "a\nb"}, "backendAuth.value"),
    ({"header": "Authorization", "value": ""}, "backendAuth.value"),
    ({"header": "Bad Header", "value": "v"}, "backendAuth.header"),
])
def test_a_wrong_backend_credential_is_named(raw: Any, field: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_backend_auth(raw)
    assert caught.value.field == field
