"""
The balancer (mcpgated.proxy.balancer) in memory: weighted round-robin,
least-connections, passive health (ejection and return), pools rebuilt on a
redeploy keeping what they knew, active health checks on a clock against a
real HTTP server. The daemon end to end: tests/test_balancer_e2e.py.
"""

from __future__ import annotations

from collections import Counter
import socket
from typing import Any, Dict, List

import attrs
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import Site

from mcpgated.model import ApiDefinition, ApiRecord, Endpoint, HealthCheck, LoadBalancing, Plan
from mcpgated.proxy.balancer import Balancer, HealthChecks, Member, Pool
from mcpgated.routing import Route, RouteTable
from mcpgated.sealing import endpoint_id


def _definition(urls: Dict[str, int], algorithm: str = "round-robin",
                **settings: Any) -> ApiDefinition:
    endpoints = tuple(Endpoint(url, weight) for url, weight in urls.items())
    return ApiDefinition(name="lb", version="1", description="", context_path="/lb",
                         backend=endpoints[0].url, plans=(Plan("Keyless"),), endpoints=endpoints,
                         load_balancing=LoadBalancing(algorithm, **settings))


def _picks(pool: Pool, count: int, now: float = 0.0) -> List[str]:
    return [pool.pick(now).url for _ in range(count)]  # type: ignore[union-attr]


def test_round_robin_follows_the_weights_smoothly():
    pool = Pool(_definition({"http://a": 3, "http://b": 1}))
    picks = _picks(pool, 8)
    assert Counter(picks) == {"http://a": 6, "http://b": 2}
    # smooth: b is not starved to the end of a cycle
    assert picks[:4].count("http://b") == 1


def test_round_robin_equal_weights_alternate():
    pool = Pool(_definition({"http://a": 1, "http://b": 1, "http://c": 1}))
    assert sorted(_picks(pool, 3)) == ["http://a", "http://b", "http://c"]


def test_least_connections_takes_the_endpoint_with_fewest_in_flight():
    pool = Pool(_definition({"http://a": 1, "http://b": 1}, "least-connections"))
    a, b = pool.members
    a.active = 5
    assert _picks(pool, 3) == ["http://b"] * 3
    b.active = 5
    assert set(_picks(pool, 4)) == {"http://a", "http://b"}  # ties taken in turn


def test_least_connections_weighs_connections_by_weight():
    pool = Pool(_definition({"http://a": 4, "http://b": 1}, "least-connections"))
    a, b = pool.members
    a.active, b.active = 3, 1  # 0.75 per weight against 1.0
    assert pool.pick(0.0) is a


def test_a_refused_endpoint_is_taken_out_then_tried_again():
    pool = Pool(_definition({"http://a": 1, "http://b": 1}, eject_seconds=10.0))
    a, b = pool.members
    pool.failed(a, now=100.0, refused=True)
    assert _picks(pool, 4, now=105.0) == ["http://b"] * 4
    assert "http://a" in _picks(pool, 4, now=110.0)  # its time out is over


def test_5xx_answers_eject_after_max_failures_in_a_row():
    pool = Pool(_definition({"http://a": 1, "http://b": 1}, max_failures=3))
    a, _ = pool.members
    pool.failed(a, 0.0, refused=False)
    pool.failed(a, 0.0, refused=False)
    pool.succeeded(a)  # the run is broken
    pool.failed(a, 0.0, refused=False)
    pool.failed(a, 0.0, refused=False)
    assert a.healthy(1.0)
    pool.failed(a, 0.0, refused=False)
    assert not a.healthy(1.0)


def test_when_every_endpoint_is_down_the_pool_still_answers():
    pool = Pool(_definition({"http://a": 1, "http://b": 1}))
    for member in pool.members:
        pool.failed(member, 0.0, refused=True)
    assert pool.pick(1.0) is not None
    a, b = pool.members
    assert pool.pick(1.0, exclude=[a]) is b
    assert pool.pick(1.0, exclude=[a, b]) is None


def test_members_are_found_by_their_sealed_id():
    pool = Pool(_definition({"http://a": 1, "http://b": 1}))
    assert pool.by_id(endpoint_id("http://b")) is pool.members[1]
    assert pool.by_id(endpoint_id("http://c")) is None


def test_a_redeploy_keeps_what_is_known_of_the_endpoints_that_stay():
    balancer = Balancer(Clock())
    first = Route("api", _definition({"http://a": 1, "http://b": 1}))
    pool = balancer.pool(first)
    assert balancer.pool(first) is pool  # same definition: same pool
    pool.failed(pool.members[0], 0.0, refused=True)
    second = Route("api", _definition({"http://a": 2, "http://c": 1}))
    rebuilt = balancer.pool(second)
    assert rebuilt is not pool
    assert [m.url for m in rebuilt.members] == ["http://a", "http://c"]
    assert rebuilt.members[0] is pool.members[0] and rebuilt.members[0].weight == 2
    assert not rebuilt.members[0].healthy(1.0)


@attrs.define(slots=False)
class _Status(Resource):
    code: int = 200
    hits: List[bytes] = attrs.field(factory=list)
    isLeaf = True

    def __attrs_post_init__(self) -> None:
        Resource.__init__(self)

    def render_GET(self, request: Any) -> bytes:
        self.hits.append(request.path)
        request.setResponseCode(self.code)
        return b"ok"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ActiveCheckTests(TestCase):
    """
    Active checks against a real HTTP server on loopback, on a clock.
    """

    def setUp(self) -> None:
        self.server = _Status()
        port = reactor.listenTCP(0, Site(self.server), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.pool_http = HTTPConnectionPool(reactor, persistent=False)
        self.clock = Clock()
        definition = _definition(
            {f"http://127.0.0.1:{port.getHost().port}/mcp": 1,
             f"http://127.0.0.1:{_closed_port()}/mcp": 1},
            health_check=HealthCheck(interval=5.0, timeout=2.0, path="/health"))
        self.routes = RouteTable()
        self.routes.load([ApiRecord("api", definition, definition, "STARTED", 0.0, 0.0, 0.0)])
        self.balancer = Balancer(self.clock)
        self.checks = HealthChecks(self.balancer, self.routes, self.clock,
                                   Agent(reactor, pool=self.pool_http))

    def _members(self) -> List[Member]:
        return list(self.balancer.pool(self.routes.routes()[0]).members)

    async def test_a_failing_check_takes_an_endpoint_out_a_passing_one_brings_it_back(self) -> None:
        self.server.code = 503
        await self.checks.tick()
        live, dead = self._members()
        assert self.server.hits == [b"/health"]  # the check's path on the endpoint's origin
        assert not live.healthy(0.0) and not dead.healthy(0.0)  # 503, and refused
        await self.checks.tick()  # not due yet: nothing sent
        assert self.server.hits == [b"/health"]
        self.server.code = 200
        self.clock.advance(5.0)
        await self.checks.tick()
        assert len(self.server.hits) == 2
        assert live.healthy(self.clock.seconds()) and not dead.healthy(self.clock.seconds())
        assert self.balancer.pool(self.routes.routes()[0]).pick(self.clock.seconds()) is live

    async def test_a_4xx_answer_is_healthy(self) -> None:
        self.server.code = 404  # an MCP endpoint's GET without a session: an answer all the same
        await self.checks.tick()
        assert self._members()[0].healthy(0.0)
