"""
Shared rate limits on real daemons (#15 item 3): two gateways with the
same APIs (node A fails open, node B fails closed) count in one real
redis-server, so a limit of N is N across both; while Redis is down, A
allows and B refuses (503), each logs the outage once and counts its
decisions in /metrics; when Redis is back, both count there again.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from mcpgated.policy.redislimit import counter_tag
from tests.engines import RedisServer
from tests.security.mcp_peer import McpPeer
from tests.daemon_helpers import set_options
from tests.support import Daemon, Proc, deploy, http, metric

# windows are numbered from the epoch: the longest one makes a test crossing
# a window's end (its counters new) all but impossible
MONTH = 2678400
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def plans(rate: Dict[str, Any]) -> List[Dict[str, Any]]:
    return [{"name": "Keyless", "security": "KEY_LESS", "rateLimit": rate}]


def call(daemon: Daemon, path: str, n: int, tool: str = "") -> Tuple[int, Any, Dict[str, Any]]:
    message: Dict[str, Any] = {"jsonrpc": "2.0", "id": n, "method": "ping"}
    if tool:
        message = {"jsonrpc": "2.0", "id": n, "method": "tools/call",
                   "params": {"name": tool, "arguments": {}}}
    status, headers, body = http("POST", daemon.gateway + path, raw=json.dumps(message).encode(),
                                 headers=HEADERS)
    return status, headers, json.loads(body) if body else {}


def ini(redis: RedisServer, failure: str) -> str:
    return f"[ratelimit]\nredis = {redis.url}\nredis_failure = {failure}\n"


@pytest.fixture(scope="module")
def peer() -> Iterator[McpPeer]:
    p = McpPeer()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: Any, redis: RedisServer, peer: McpPeer) -> Iterator[Dict[str, Daemon]]:
    """
    Node A (fail open), node B (fail closed) and node C (two worker
    processes, fail open) with the same APIs (same ids: B and C start from
    copies of A's database), one Redis.
    """
    first = Daemon(tmp_path_factory.mktemp("node-a"), extra=ini(redis, "open"))
    first.start()
    backend = peer.url + "/mcp"
    for path, rate in (("/shared", {"requests": 6}), ("/workers", {"requests": 6}),
                       ("/approx", {"requests": 6}),
                       ("/tools", {"toolCalls": 3, "perTool": {"echo": 2}}),
                       ("/outage", {"requests": 1000})):
        deploy(first, path, backend, plans({**rate, "scope": "plan", "periodSeconds": MONTH}))
    first.stop()
    found: Dict[str, Daemon] = {"a": first}
    for name, failure in (("b", "closed"), ("c", "open"), ("d", "open")):
        folder = tmp_path_factory.mktemp(f"node-{name}")
        shutil.copytree(first.folder / "data", folder / "data")
        found[name] = Daemon(folder, extra=ini(redis, failure))
    set_options(found["c"], "gateway", workers="2")
    set_options(found["d"], "ratelimit", mode="approximate")
    redis.flush()
    try:
        for daemon in found.values():  # started together, then waited for
            daemon.proc = Proc(daemon.command(), cwd=str(daemon.folder))
        for daemon in found.values():
            assert daemon.proc is not None
            daemon.ports = json.loads(daemon.proc.wait_for(r"mcpgated ready: (\{.*\})").group(1))
        yield found
    finally:
        for daemon in found.values():
            daemon.stop_if_running()


def test_a_limit_of_n_is_n_across_two_nodes(nodes: Dict[str, Daemon]) -> None:
    a, b = nodes["a"], nodes["b"]
    answers = [call(a if n % 2 else b, "/shared", n) for n in range(10)]
    statuses = [status for status, _, _ in answers]
    assert statuses.count(200) == 6, statuses
    assert statuses[:6] == [200] * 6
    for status, headers, body in answers[6:]:
        assert status == 429
        assert 1 <= int(headers["Retry-After"]) <= MONTH  # to the window's end
        assert body["error"]["message"].startswith("Rate limit exceeded")


def test_per_tool_budgets_across_two_nodes(nodes: Dict[str, Daemon]) -> None:
    a, b = nodes["a"], nodes["b"]
    assert call(a, "/tools", 1, "echo")[0] == 200
    assert call(b, "/tools", 2, "echo")[0] == 200
    assert call(a, "/tools", 3, "echo")[0] == 429  # echo's 2 spent, on both nodes
    assert call(b, "/tools", 4, "add")[0] == 200  # tool calls: 3rd of 3
    assert call(a, "/tools", 5, "add")[0] == 429
    assert call(b, "/tools", 6)[0] == 200  # a ping draws on no tool budget


def test_workers_count_in_redis_too(nodes: Dict[str, Daemon]) -> None:
    # each of node C's workers asks Redis itself: one budget with A's
    a, c = nodes["a"], nodes["c"]
    statuses = [call(c if n % 3 else a, "/workers", n)[0] for n in range(12)]
    assert statuses.count(200) == 6, statuses
    assert statuses[6:] == [429] * 6
    # the workers' Redis series reach the twistd process's /metrics
    assert metric(c, "mcpgated_ratelimit_redis_up") == 1
    assert metric(c, "mcpgated_ratelimit_redis_outages_total") == 0


def test_an_approximate_node_shares_the_budget(nodes: Dict[str, Daemon], redis: RedisServer) -> None:
    # node D decides from its view of the counters (as of its last sync,
    # every 10 ms after it spent) and sends what it spent; node A is exact
    a, d = nodes["a"], nodes["d"]
    _, apis = a.admin("GET", "/apis")
    api_id = next(api["id"] for api in apis["data"] if api["contextPath"] == "/approx")
    window = int(time.time() // MONTH)
    key = f"mcpgated:rl:{{{counter_tag((api_id, 'Keyless', 'plan:Keyless'))}}}:{MONTH}:{window}:requests"
    assert [call(a, "/approx", n)[0] for n in range(4)] == [200] * 4
    assert call(d, "/approx", 4)[0] == 200
    _wait_until(lambda: redis_count(redis, key) == 5)  # D's spending sent, A's 4 seen by D
    assert call(a, "/approx", 5)[0] == 200  # 6 of 6: A, exact, knows
    # D has not seen A's last call: it admits one more (the approximation:
    # overrun by what others admitted since its last sync), then knows
    assert call(d, "/approx", 6)[0] == 200
    # two syncs (after each of its calls): D has read the total of 7
    _wait_until(lambda: metric(d, "mcpgated_ratelimit_syncs_total") >= 2)
    assert redis_count(redis, key) == 7
    assert call(d, "/approx", 7)[0] == 429
    assert call(a, "/approx", 8)[0] == 429


def redis_count(redis: RedisServer, key: str) -> int:
    with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as s:
        s.sendall(f"*2\r\n$3\r\nGET\r\n${len(key)}\r\n{key}\r\n".encode())
        reply = s.recv(64)
    return 0 if reply.startswith(b"$-1") else int(reply.split(b"\r\n")[1])


def _log(daemon: Daemon) -> str:
    assert daemon.proc is not None
    return "\n".join(daemon.proc.output)


def _wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.05)  # polling a daemon's /metrics: no event to wait on


def test_redis_down_a_fails_open_b_fails_closed_then_both_recover(
        nodes: Dict[str, Daemon], redis: RedisServer) -> None:
    a, b = nodes["a"], nodes["b"]
    assert call(a, "/outage", 1)[0] == 200
    assert call(b, "/outage", 2)[0] == 200
    redis.stop()
    try:
        opened = [call(a, "/outage", n)[0] for n in range(8)]
        closed = [call(b, "/outage", n) for n in range(8)]
    finally:
        redis.start()
    assert opened == [200] * 8
    for status, headers, body in closed:
        assert status == 503
        assert headers["Retry-After"] == "1"
        assert body["error"]["message"] == "Rate limits cannot be checked now; retry later"
        assert "redis" not in json.dumps(body).lower()  # nothing about the inside
    # one outage each, logged once, decisions counted
    for node in (a, b):
        assert metric(node, "mcpgated_ratelimit_redis_outages_total") == 1
        assert _log(node).count("is unreachable") == 1, _log(node)
    assert metric(a, "mcpgated_ratelimit_unchecked_total", result="allowed") == 8
    assert metric(b, "mcpgated_ratelimit_unchecked_total", result="refused") == 8
    assert metric(b, "mcpgated_ratelimit_unchecked_total", result="allowed") == 0
    # back: reconnected by themselves, counting in Redis again
    for node in (a, b):
        _wait_until(lambda node=node: metric(node, "mcpgated_ratelimit_redis_up") == 1)
        assert "is reachable again" in _log(node)
    assert call(b, "/outage", 99)[0] == 200
    assert call(a, "/outage", 100)[0] == 200
    assert metric(a, "mcpgated_ratelimit_unchecked_total", result="allowed") == 8


def test_a_daemon_starts_with_redis_down_and_counts_once_it_is_up(
        tmp_path: Path, redis: RedisServer, peer: McpPeer) -> None:
    redis.stop()
    daemon = Daemon(tmp_path, extra=ini(redis, "open"))
    try:
        daemon.start()  # not held up by Redis
        deploy(daemon, "/late", peer.url + "/mcp", plans({"requests": 2, "periodSeconds": MONTH}))
        assert [call(daemon, "/late", n)[0] for n in range(3)] == [200, 200, 200]  # open
        redis.start()
        _wait_until(lambda: metric(daemon, "mcpgated_ratelimit_redis_up") == 1)
        assert [call(daemon, "/late", n)[0] for n in range(3)] == [200, 200, 429]
    finally:
        redis.start()
        daemon.stop_if_running()
