"""
Issue #12, item 5: a 2025-03-26 batch is admitted or refused by the rate
limit as a whole, and a refused batch spends nothing: its requests are
checked against what is left of every budget they draw on (requests, tool
calls, per-tool) before any is counted.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from twisted.internet.task import Clock

from mcpgated.policy.ratelimit import Limiter, parse_limit
from tests.support import Daemon, deploy, http, running

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
          "MCP-Protocol-Version": "2025-03-26"}


def _request(n: int, method: str = "ping", tool: Optional[str] = None) -> Dict[str, Any]:
    message: Dict[str, Any] = {"jsonrpc": "2.0", "id": n, "method": method}
    if tool is not None:
        message["params"] = {"name": tool, "arguments": {}}
    return message


def _post(url: str, body: Any) -> Tuple[int, Any, Any]:
    status, headers, data = http("POST", url, raw=json.dumps(body).encode(), headers=ACCEPT)
    return status, headers, json.loads(data) if data else None


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[Daemon]:
    yield from running(Daemon(tmp_path_factory.mktemp("batch-budget")))


def _deploy(daemon: Daemon, path: str, backend: str, limit: Dict[str, Any]) -> None:
    deploy(daemon, path, backend, [{"name": "Keyless", "security": "KEY_LESS",
                                    "rateLimit": dict(limit, periodSeconds=3600)}])


def test_a_batch_over_the_limit_spends_nothing(daemon, peer):
    url = daemon.gateway + "/batch"
    _deploy(daemon, "/batch", peer.url + "/mcp", {"requests": 10})
    before = len(peer.targets)
    status, headers, body = _post(url, [_request(n) for n in range(11)])
    assert status == 429 and int(headers["Retry-After"]) >= 1
    assert body["error"]["message"].startswith("Rate limit exceeded") and body["id"] is None
    assert len(peer.targets) == before  # nothing reached the backend
    # the whole budget is left: ten single requests, then the eleventh is refused
    for n in range(10):
        status, _, body = _post(url, _request(100 + n))
        assert status == 200, (n, body)
    status, _, body = _post(url, _request(200))
    assert status == 429 and body["id"] == 200


def test_a_batch_that_fits_exactly_is_admitted_and_counted(daemon, peer):
    url = daemon.gateway + "/exact"
    _deploy(daemon, "/exact", peer.url + "/mcp", {"requests": 5})
    status, _, body = _post(url, [_request(n) for n in range(5)])
    assert status == 200 and sorted(m["id"] for m in body) == list(range(5))
    assert _post(url, _request(9))[0] == 429
    assert _post(url, [_request(10), _request(11)])[0] == 429


def test_a_batch_over_a_tool_budget_spends_no_other_budget(daemon, peer):
    url = daemon.gateway + "/tools"
    _deploy(daemon, "/tools", peer.url + "/mcp",
            {"requests": 6, "toolCalls": 3, "perTool": {"slow": 1}})
    # two calls of "slow" (1 allowed): refused, and neither requests nor toolCalls spent
    status, _, _ = _post(url, [_request(1, "tools/call", "slow"), _request(2, "tools/call", "slow"),
                              _request(3)])
    assert status == 429
    # four tool calls (3 allowed): refused too
    assert _post(url, [_request(n, "tools/call", "echo") for n in range(4)])[0] == 429
    # everything is still there: 1 slow + 2 echo tool calls + 3 other requests = 6
    status, _, body = _post(url, [_request(10, "tools/call", "slow"),
                                  _request(11, "tools/call", "echo"),
                                  _request(12, "tools/call", "echo"),
                                  _request(13), _request(14), _request(15)])
    assert status == 200 and len(body) == 6
    assert _post(url, _request(16))[0] == 429


def test_notifications_in_a_batch_count_for_nothing(daemon, peer):
    url = daemon.gateway + "/notes"
    _deploy(daemon, "/notes", peer.url + "/mcp", {"requests": 2})
    notification = {"jsonrpc": "2.0", "method": "notifications/cancelled",
                    "params": {"requestId": 1}}
    status, _, _ = _post(url, [notification] * 5 + [_request(1), _request(2)])
    assert status == 200
    assert _post(url, _request(3))[0] == 429


def test_limiter_check_all_is_all_or_nothing():
    clock = Clock()
    clock.advance(60)
    limiter = Limiter(clock)
    limit = parse_limit({"requests": 3, "toolCalls": 2, "perTool": {"slow": 1}}, "rateLimit")
    calls: List[Tuple[str, Optional[str]]] = [("tools/call", "slow"), ("tools/call", "slow")]
    assert limiter.check_all(limit, "who", calls) == pytest.approx(60.0)
    assert limiter._counts == {}  # refused: nothing counted
    assert limiter.check_all(limit, "who", [("tools/call", "slow"), ("ping", None)]) is None
    assert limiter.check_all(limit, "who", [("tools/call", "echo"), ("ping", None)]) is not None
    assert limiter.check_all(limit, "who", [("tools/call", "echo")]) is None
    assert limiter.check(limit, "who", "ping", None) is not None  # 3 requests spent
    assert limiter.check_all(limit, "who", []) is None
