"""
The API records (L{mcpgated.model}): their JSON for the admin API and the
store, secrets masked where shown, deployment state, context-path overlap.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import attrs
import pytest

from mcpgated import model
from mcpgated.model import (
    STARTED,
    STOPPED,
    AnalyticsSettings,
    ApiDefinition,
    ApiRecord,
    KeepAliveSettings,
    OAuthSettings,
    Plan,
    iso_time,
    paths_overlap,
)
from mcpgated.policy.ratelimit import RateLimit

SECRET = "s3cret"


def definition(**changes: Any) -> ApiDefinition:
    base = ApiDefinition(
        name="Weather", version="1", description="", context_path="/weather",
        backend="http://127.0.0.1:3001/mcp",
        plans=(Plan("Keyless"),
               Plan("Tokens", security="OAUTH2",
                    configuration={"introspectionUrl": "https://idp.example/introspect",
                                   "clientId": "gw", "clientSecret": SECRET},
                    rate_limit=RateLimit(requests=5))),
        backend_auth={"header": "X-Api-Key", "value": SECRET, "forwardClientToken": False})
    return attrs.evolve(base, **changes)


def test_iso_time_is_utc_to_the_millisecond() -> None:
    assert iso_time(None) is None
    assert iso_time(0) == "1970-01-01T00:00:00.000Z"
    assert iso_time(1764771234.5678) == "2025-12-03T14:13:54.567Z"


@pytest.mark.parametrize("a, b, overlap", [
    ("/mcp", "/mcp", True),
    ("/mcp", "/mcp/x", True),
    ("/mcp/x/y", "/mcp", True),
    ("/mcp", "/mcp-proxy", False),
    ("/mcp/x", "/mcp/y", False),
    ("/a", "/ab/c", False),
])
def test_context_paths_overlap_on_whole_segments(a: str, b: str, overlap: bool) -> None:
    assert paths_overlap(a, b) is overlap
    assert paths_overlap(b, a) is overlap


def test_secrets_are_shown_to_the_store_and_masked_for_the_admin() -> None:
    stored = definition().to_json()
    shown = definition().to_json(secrets=False)
    assert stored["backendAuth"]["value"] == SECRET
    assert stored["plans"][1]["configuration"]["clientSecret"] == SECRET
    assert SECRET not in json.dumps(shown)
    assert shown["backendAuth"] == {"header": "X-Api-Key", "value": "********",
                                    "forwardClientToken": False}
    assert shown["plans"][1]["configuration"]["clientSecret"] == "********"
    # an auth with no value (forwarding the client's token) has nothing to mask
    forward = {"forwardClientToken": True}
    assert definition(backend_auth=forward).to_json(secrets=False)["backendAuth"] == forward


def test_plans_show_only_what_they_have() -> None:
    assert Plan("Keyless").to_json() == {"name": "Keyless", "security": "KEY_LESS",
                                         "status": "PUBLISHED", "description": ""}
    tokens = definition().plans[1]
    assert tokens.to_json()["rateLimit"] == RateLimit(requests=5).to_json()
    assert Plan.from_json(json.loads(json.dumps(tokens.to_json()))) == tokens


def test_a_definition_round_trips_through_its_stored_json() -> None:
    original = definition(analytics=AnalyticsSettings("bodies", 512, ("ssn",), False),
                          oauth=OAuthSettings(relay=True),
                          backend_keep_alive=KeepAliveSettings(1.5),
                          public_url="https://mcp.example.com")
    assert ApiDefinition.from_json(json.loads(json.dumps(original.to_json()))) == original


def test_keep_alive_seconds_are_whole_when_they_can_be() -> None:
    assert KeepAliveSettings(2.0).to_json() == {"idleTimeoutSeconds": 2}
    assert KeepAliveSettings(1.5).to_json() == {"idleTimeoutSeconds": 1.5}
    assert KeepAliveSettings.from_json(None) == KeepAliveSettings(model.DEFAULT_IDLE_TIMEOUT)


def record(deployed: Optional[ApiDefinition], state: str = STARTED) -> ApiRecord:
    return ApiRecord(id="a1", definition=definition(), deployed=deployed,
                     state=state, created_at=0.0, updated_at=1.0, deployed_at=None)


def test_deployment_state_and_what_the_gateway_serves() -> None:
    never = record(None, STOPPED)
    assert (never.to_json()["deploymentState"], never.needs_redeploy, never.live) == \
        ("NEVER_DEPLOYED", False, None)
    current = record(definition())
    assert (current.to_json()["deploymentState"], current.needs_redeploy) == ("DEPLOYED", False)
    assert current.live == definition()
    edited = record(definition(version="0.9"))
    assert (edited.to_json()["deploymentState"], edited.needs_redeploy) == ("NEED_REDEPLOY", True)
    assert edited.live == definition(version="0.9")  # the deployed one, not the edit
    assert record(definition(), STOPPED).live is None


def test_a_record_as_the_admin_api_answers() -> None:
    answer = record(definition(version="0.9")).to_json()
    assert answer["id"] == "a1" and answer["version"] == "1"
    assert answer["deployed"]["version"] == "0.9"
    assert (answer["createdAt"], answer["updatedAt"], answer["deployedAt"]) == \
        ("1970-01-01T00:00:00.000Z", "1970-01-01T00:00:01.000Z", None)
    assert SECRET not in json.dumps(answer)
