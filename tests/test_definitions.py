"""
Validation of admin JSON (L{mcpgated.definitions}): what is accepted and in
which canonical form, which field a refusal names, and that an answer of the
admin API can be edited and sent back without losing secrets.

The admin API's own answers to bad bodies (status, JSON error, nothing
changed) are tested against a real daemon in tests/test_admin.py.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

import pytest
from hypothesis import given, settings, strategies as st

from mcpgated.definitions import (
    InvalidField,
    definition_from_json,
    normalize_context_path,
    parse_definition,
    read_object,
    read_string,
)
from mcpgated.model import (
    DEFAULT_IDLE_TIMEOUT,
    AnalyticsSettings,
    ApiDefinition,
    KeepAliveSettings,
    OAuthSettings,
)

BACKEND = "http://127.0.0.1:3001/mcp"
KEYLESS = {"name": "Keyless", "security": "KEY_LESS"}


def body(**changes: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {"name": "Weather", "version": "1.0", "contextPath": "/weather",
                           "backend": BACKEND, "plans": [KEYLESS]}
    out.update(changes)
    return out


def refused(raw: Any, previous: Optional[ApiDefinition] = None) -> InvalidField:
    with pytest.raises(InvalidField) as caught:
        parse_definition(raw, previous)
    assert caught.value.message and str(caught.value) == caught.value.message
    return caught.value


def refused_by(reader: Any, *args: Any, **kwargs: Any) -> InvalidField:
    with pytest.raises(InvalidField) as caught:
        reader(*args, **kwargs)
    return caught.value


# --- the field readers ----------------------------------------------------------------------------


def test_read_object_names_the_first_unknown_field_in_sorted_order() -> None:
    assert read_object({"a": 1}, {"a", "b"}) == {"a": 1}
    assert refused_by(read_object, {"zeta": 1, "alpha": 2, "a": 3}, {"a"}).field == "alpha"
    error = refused_by(read_object, ["a"], {"a"})
    assert (error.field, error.message) == (None, "the body must be a JSON object")


def test_read_string_strips_and_defaults() -> None:
    assert read_string({"name": "  Weather \n"}, "name") == "Weather"
    assert read_string({}, "description", required=False, default="none") == "none"
    assert read_string({"description": None}, "description", required=False) == ""
    # newlines and tabs are text; an optional field may be blank
    assert read_string({"d": "a\n\tb"}, "d", required=False) == "a\n\tb"
    assert read_string({"d": "   "}, "d", required=False) == ""


@pytest.mark.parametrize("raw, message", [
    ({}, "name is required"),
    ({"name": None}, "name is required"),
    ({"name": "  "}, "name must not be empty"),
    ({"name": 7}, "name must be a string"),
    ({"name": "x" * 11}, "name is longer than 10 characters"),
    ({"name": "a\x00b"}, "name contains control characters"),
    ({"name": "a\rb"}, "name contains control characters"),
])
def test_read_string_refusals_name_the_field(raw: Dict[str, Any], message: str) -> None:
    error = refused_by(read_string, raw, "name", max_length=10)
    assert (error.field, error.message) == ("name", message)


# --- context paths ------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, canonical", [
    ("/weather", "/weather"),
    ("/weather/", "/weather"),
    ("/a/b/c", "/a/b/c"),
    ("/mcp-proxy/v1.2", "/mcp-proxy/v1.2"),
    ("/%7Euser", "/%7Euser"),
])
def test_context_paths_in_canonical_form(raw: str, canonical: str) -> None:
    assert normalize_context_path(raw) == canonical
    assert parse_definition(body(contextPath=raw)).context_path == canonical


@pytest.mark.parametrize("raw", ["weather", "/", "//a", "/a//b", "/a/./b", "/a/%2e%2E", "/a?x",
                                 "/a#x", "/a b", "/.well-known/x", "/" + "a" * 200])
def test_bad_context_paths_are_refused_naming_the_field(raw: str) -> None:
    assert refused(body(contextPath=raw)).field == "contextPath"


# --- the whole definition ----------------------------------------------------------------------------


def test_defaults_of_a_minimal_definition() -> None:
    definition = parse_definition(body())
    assert definition.plans[0].status == "PUBLISHED"
    assert definition.description == "" and definition.public_url is None
    assert definition.analytics == AnalyticsSettings()
    assert definition.backend_keep_alive == KeepAliveSettings(DEFAULT_IDLE_TIMEOUT)
    assert definition.backend_auth is None and definition.backend_ca_file is None


def test_read_only_fields_of_an_answer_are_ignored_so_a_get_body_can_be_put_back() -> None:
    definition = parse_definition(body(
        analytics={"capture": "bodies", "maxPayloadBytes": 512, "redactFields": ["ssn"],
                   "logging": False},
        backendKeepAlive={"idleTimeoutSeconds": 1.5}, acl={"dryRun": True},
        pinning={"mode": "warn"}, publicUrl="https://mcp.example.com/",
        backendAuth={"header": "X-Api-Key", "value": "s3cret"}))
    shown = definition.to_json(secrets=False)
    shown.update({"id": "abc", "state": "STARTED", "createdAt": "2026-01-01T00:00:00.000Z",
                  "updatedAt": None, "deployedAt": None, "deploymentState": "DEPLOYED",
                  "needsRedeploy": False, "deployed": None, "effectiveAudience": []})
    assert parse_definition(json.loads(json.dumps(shown)), definition) == definition


def test_masked_secrets_keep_the_stored_ones_and_need_one() -> None:
    stored = parse_definition(body(backendAuth={"header": "X-Api-Key", "value": "s3cret"}))
    masked = stored.to_json(secrets=False)
    assert masked["backendAuth"]["value"] == "********"
    assert parse_definition(masked, stored).backend_auth == {
        "header": "X-Api-Key", "value": "s3cret", "forwardClientToken": False}
    # a mask with nothing stored behind it is not a secret
    assert refused(masked).field == "backendAuth.value"


@pytest.mark.parametrize("changes, field", [
    ({"plans": [dict(KEYLESS, rateLimit={"requests": "many"})]}, "plans[0].rateLimit.requests"),
    ({"plans": [dict(KEYLESS, acl={"rules": "all"})]}, "plans[0].acl.rules"),
    ({"plans": [KEYLESS, dict(KEYLESS, name="Other", description=5)]}, "plans[1].description"),
    ({"plans": [{"name": "K", "security": "API_KEY", "configuration": []}]},
     "plans[0].configuration"),
    ({"analytics": []}, "analytics"),
    ({"analytics": {"colour": 1}}, "analytics.colour"),
    ({"analytics": {"capture": "all"}}, "analytics.capture"),
    ({"analytics": {"maxPayloadBytes": 0}}, "analytics.maxPayloadBytes"),
    ({"analytics": {"maxPayloadBytes": True}}, "analytics.maxPayloadBytes"),
    ({"analytics": {"maxPayloadBytes": 1048577}}, "analytics.maxPayloadBytes"),
    ({"analytics": {"redactFields": ["ok", ""]}}, "analytics.redactFields"),
    ({"analytics": {"logging": "yes"}}, "analytics.logging"),
    ({"backendKeepAlive": 2}, "backendKeepAlive"),
    ({"backendKeepAlive": {"idle": 2}}, "backendKeepAlive.idle"),
    ({"backendKeepAlive": {"idleTimeoutSeconds": -1}}, "backendKeepAlive.idleTimeoutSeconds"),
    ({"backendKeepAlive": {"idleTimeoutSeconds": 601}}, "backendKeepAlive.idleTimeoutSeconds"),
    ({"backendKeepAlive": {"idleTimeoutSeconds": True}}, "backendKeepAlive.idleTimeoutSeconds"),
    ({"backendCaFile": "relative.pem", "backend": "https://x.example/mcp"}, "backendCaFile"),
    ({"backendCaFile": "/etc/ca.pem"}, "backendCaFile"),  # the backend is http://
    ({"acl": {"mode": "strict"}}, "acl.mode"),
    ({"backendAuth": {"header": "X-Key", "value": "a\r\nb"}}, "backendAuth.value"),
    ({"backendAuth": {"token": "x"}}, "backendAuth.token"),
    ({"pinning": {"mode": "audit"}}, "pinning.mode"),
    ({"pinning": "warn"}, "pinning"),
    ({"publicUrl": 5}, "publicUrl"),
    ({"oauth": {"relay": 1}}, "oauth.relay"),
])
def test_each_part_names_the_field_it_refuses(changes: Dict[str, Any], field: str) -> None:
    assert refused(body(**changes)).field == field


def test_oauth_and_public_url_default_and_canonical_form() -> None:
    minimal = parse_definition(body())
    assert minimal.oauth == OAuthSettings() and minimal.public_url is None
    assert minimal.to_json()["oauth"] == {"relay": False, "proxyAuthorizationServerDiscovery": False}
    relayed = parse_definition(body(oauth={"relay": True, "proxyAuthorizationServerDiscovery": True},
                                    publicUrl="https://mcp.example.com/base/"))
    assert relayed.public_url == "https://mcp.example.com/base"
    assert relayed.oauth == OAuthSettings(relay=True, proxy_authorization_server_discovery=True)


@pytest.mark.parametrize("extra, field", [
    ({"oauth": True}, "oauth"),
    ({"oauth": {"relay": "yes"}}, "oauth.relay"),
    ({"oauth": {"audience": "x"}}, "oauth.audience"),
    ({"oauth": {"proxyAuthorizationServerDiscovery": True}}, "oauth.proxyAuthorizationServerDiscovery"),
    ({"publicUrl": "mcp.example.com"}, "publicUrl"),
    ({"publicUrl": "https://mcp.example.com/?q=1"}, "publicUrl"),
    ({"publicUrl": "https://user:pw@mcp.example.com"}, "publicUrl"),
    ({"publicUrl": 'https://mcp.example.com/"x'}, "publicUrl"),
    ({"publicUrl": "https://mcp.example.com/a/../b"}, "publicUrl"),
])
def test_bad_oauth_fields_are_refused(extra: Dict[str, Any], field: str) -> None:
    assert refused(body(**extra)).field == field


@pytest.mark.parametrize("url", [
    "http://localhost:3001/mcp", "http://my_backend:8080/mcp", "https://[::1]:8443/mcp",
    "http://10.0.0.7/mcp?x=1", "HTTP://Example.COM/mcp",
    "http://xn--bcher-kva.example/mcp", "http://XN--BCHER-KVA.example/mcp",
])
def test_ascii_backend_urls_are_kept_as_given(url: str) -> None:
    # Guards for the IDNA encoding (tests/security/test_backend_idna.py):
    # ASCII hosts, valid A-labels included, are stored exactly as given.
    assert parse_definition(body(backend=url)).backend == url


def test_keep_alive_of_zero_means_no_pooling_and_ca_file_for_https() -> None:
    definition = parse_definition(body(backend="https://x.example/mcp", backendCaFile="/etc/ca.pem",
                                       backendKeepAlive={"idleTimeoutSeconds": 0}))
    assert definition.backend_keep_alive.idle_timeout == 0.0
    assert definition.backend_ca_file == "/etc/ca.pem"
    assert parse_definition(body(backendCaFile="")).backend_ca_file is None


# --- stored definitions ----------------------------------------------------------------------------


def test_a_stored_definition_loads_back_equal() -> None:
    definition = parse_definition(body(
        plans=[dict(KEYLESS, rateLimit={"requests": 5, "periodSeconds": 10}),
               {"name": "Keys", "security": "API_KEY", "status": "STAGING"}],
        oauth={"relay": True}, pinning={"mode": "block", "approval": "required"}))
    stored = json.loads(json.dumps(definition.to_json()))
    assert definition_from_json(stored) == definition


def test_a_definition_stored_before_newer_fields_loads_with_their_defaults() -> None:
    definition = parse_definition(body())
    old = {key: value for key, value in definition.to_json().items()
           if key in ("name", "version", "contextPath", "backend", "plans")}
    assert definition_from_json(old) == definition
    relayed = parse_definition(body(oauth={"relay": True}, publicUrl="https://mcp.example.com"))
    assert definition_from_json(json.loads(json.dumps(relayed.to_json()))) == relayed


# --- whatever the body, a definition or InvalidField -------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=8)
_FIELD_NAMES = st.sampled_from(sorted(body()) + ["analytics", "publicUrl", "oauth", "acl",
                                                 "backendCaFile", "backendAuth",
                                                 "backendKeepAlive", "pinning", "id"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_FIELD_NAMES, _JSON, max_size=4))
def test_any_json_is_a_definition_or_names_a_field(changes: Dict[str, Any]) -> None:
    raw = body(**changes)
    try:
        definition = parse_definition(raw)
    except InvalidField as e:
        assert e.message
        assert e.field is None or e.field.split(".")[0].split("[")[0] in raw
    else:
        assert definition_from_json(json.loads(json.dumps(definition.to_json()))) == definition
