"""
Issue #12, item 2: rate-limit counters belong to one API's plan. Two APIs
whose plans have the same name never share a budget, whatever the scope
(per client address, per token subject, or the plan's shared budget).
"""

from __future__ import annotations

import json
import time
from typing import Iterator

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
from twisted.internet.task import Clock

from mcpgated.policy.ratelimit import Limiter, parse_limit
from tests.support import Daemon, deploy, http, running

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _ping(url: str, n: int = 1, token: str = "") -> int:
    headers = dict(ACCEPT)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    status, _, _ = http("POST", url, raw=json.dumps(
        {"jsonrpc": "2.0", "id": n, "method": "ping"}).encode(), headers=headers)
    return status


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[Daemon]:
    yield from running(Daemon(tmp_path_factory.mktemp("ratelimit-scope")))


@pytest.mark.parametrize("scope", ["subscription", "plan"])
def test_same_plan_name_on_two_apis_two_budgets(daemon, peer, scope):
    plan = [{"name": "Keyless", "security": "KEY_LESS",
             "rateLimit": {"requests": 3, "periodSeconds": 3600, "scope": scope}}]
    first, second = f"/rl1-{scope}", f"/rl2-{scope}"
    deploy(daemon, first, peer.url + "/mcp", plan)
    deploy(daemon, second, peer.url + "/mcp", plan)
    assert [_ping(daemon.gateway + first, n) for n in range(3)] == [200, 200, 200]
    assert _ping(daemon.gateway + first, 4) == 429  # its own budget is spent
    # the other API's plan of the same name has its whole budget
    assert [_ping(daemon.gateway + second, n) for n in range(3)] == [200, 200, 200]
    assert _ping(daemon.gateway + second, 4) == 429


def test_same_subject_on_two_apis_two_budgets(daemon, peer):
    key = ECKey.generate_key("P-256")
    plans = lambda path: [{  # noqa: E731
        "name": "Tokens", "security": "JWT",
        "rateLimit": {"requests": 2, "periodSeconds": 3600},
        "configuration": {"issuer": "https://idp.example", "algorithms": ["ES256"],
                          "publicKey": key.as_pem(private=False).decode(),
                          "audience": [daemon.gateway + "/tok1", daemon.gateway + "/tok2"]}}]
    deploy(daemon, "/tok1", peer.url + "/mcp", plans("/tok1"))
    deploy(daemon, "/tok2", peer.url + "/mcp", plans("/tok2"))
    now = int(time.time())
    token = jwt.encode({"alg": "ES256"}, {
        "iss": "https://idp.example", "sub": "alice", "exp": now + 600,
        "aud": [daemon.gateway + "/tok1", daemon.gateway + "/tok2"]}, key)
    assert [_ping(daemon.gateway + "/tok1", n, token) for n in range(3)] == [200, 200, 429]
    assert [_ping(daemon.gateway + "/tok2", n, token) for n in range(3)] == [200, 200, 429]


def test_limiter_keeps_apart_what_the_gate_keeps_apart():
    clock = Clock()
    limiter = Limiter(clock)
    limit = parse_limit({"requests": 1, "scope": "plan"}, "rateLimit")
    assert limiter.check(limit, ("api-1", "Keyless", "plan:Keyless"), "ping", None) is None
    assert limiter.check(limit, ("api-1", "Keyless", "plan:Keyless"), "ping", None) is not None
    assert limiter.check(limit, ("api-2", "Keyless", "plan:Keyless"), "ping", None) is None
