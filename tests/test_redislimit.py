"""
Rate limits counted in Redis (mcpgated.policy.redislimit) against a real
redis-server: the in-memory limiter's semantics (fixed windows, batches all
or nothing, per-tool budgets), shared by limiters of several processes,
counters that expire with their window, a script cache Redis lost, and
fail-open / fail-closed while Redis is down, counted for /metrics.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.internet.task import Clock, deferLater
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from mcpgated.config import ConfigError, parse_text
from mcpgated.policy.ratelimit import Limiter, LimitUnavailable, RateLimit, parse_limit
from mcpgated.policy.redisclient import RedisAddress, RedisClient
from mcpgated.policy.redislimit import (
    PREFIX, RedisLimiter, RedisLimitMetrics, counter_tag, decided,
)
from tests.engines import RedisServer

PING = [("ping", None)]


def limit(**raw: Any) -> RateLimit:
    parsed = parse_limit(raw, "rateLimit")
    assert parsed is not None
    return parsed


class LimiterTests(TestCase):
    server: RedisServer

    @pytest.fixture(autouse=True)
    def _server(self, redis: RedisServer) -> None:
        self.server = redis

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000.5)  # windows numbered from this clock
        self.who = ("api", "plan", self.id())

    def limiter(self, failure: str = "open", clock: Optional[Clock] = None) -> RedisLimiter:
        client = RedisClient(reactor, RedisAddress.parse(self.server.url), timeout=2.0)
        client.startService()
        self.addCleanup(client.stopService)
        return RedisLimiter(client, clock or self.clock, failure=failure)

    async def check(self, limiter: RedisLimiter, rate: RateLimit,
                    calls: List[Tuple[str, Optional[str]]] = PING, who: Any = None) -> Optional[float]:
        return await decided(limiter.check_all(rate, who or self.who, calls))

    async def test_requests_are_counted_and_refused_past_the_budget(self) -> None:
        limiter = self.limiter()
        rate = limit(requests=3, periodSeconds=10)
        results = [await self.check(limiter, rate) for _ in range(4)]
        self.assertEqual(results[:3], [None, None, None])
        # refused with the seconds until the window ends, as in memory
        self.assertAlmostEqual(results[3], 9.5)
        self.clock.advance(9.5)  # the next window: a whole budget again
        self.assertIsNone(await self.check(limiter, rate))

    async def test_same_answers_as_the_in_memory_limiter(self) -> None:
        limiter = self.limiter()
        memory = Limiter(self.clock)
        rate = limit(requests=5, toolCalls=3, perTool={"echo": 2}, periodSeconds=60)
        sequence: List[List[Tuple[str, Optional[str]]]] = [
            [("tools/call", "echo")], [("tools/call", "echo"), ("ping", None)],
            [("tools/call", "echo")], [("tools/call", "add")], [("tools/list", None)],
            [("tools/call", "add"), ("tools/call", "add")], [("ping", None)], [("ping", None)],
        ]
        for calls in sequence:
            self.assertEqual(await self.check(limiter, rate, calls),
                             memory.check_all(rate, self.who, calls), calls)

    async def test_a_refused_batch_spends_nothing(self) -> None:
        limiter = self.limiter()
        rate = limit(requests=3, perTool={"echo": 1}, periodSeconds=60)
        batch = [("tools/call", "echo"), ("tools/call", "echo")]  # over echo's budget
        self.assertIsNotNone(await self.check(limiter, rate, batch))
        # nothing was spent: all three requests (one echo) still fit
        self.assertIsNone(await self.check(limiter, rate,
                                           [("tools/call", "echo"), ("ping", None), ("ping", None)]))
        self.assertIsNotNone(await self.check(limiter, rate))

    async def test_a_batch_larger_than_the_budget_is_refused_without_redis(self) -> None:
        limiter = self.limiter()
        limiter.client.stopService()  # nothing is asked
        self.assertIsNotNone(await self.check(limiter, limit(requests=1), PING * 2))

    async def test_limiters_of_several_processes_share_one_budget(self) -> None:
        first, second = self.limiter(), self.limiter()
        rate = limit(requests=10, scope="plan", periodSeconds=60)
        results = await gatherResults(
            [decided((first if n % 2 else second).check_all(rate, self.who, PING))
             for n in range(25)])
        self.assertEqual(sum(1 for r in results if r is None), 10)

    async def test_owners_do_not_share(self) -> None:
        limiter = self.limiter()
        rate = limit(requests=1)
        self.assertIsNone(await self.check(limiter, rate, who=("api-1", "p", "plan:p")))
        self.assertIsNone(await self.check(limiter, rate, who=("api-2", "p", "plan:p")))
        self.assertIsNotNone(await self.check(limiter, rate, who=("api-1", "p", "plan:p")))

    async def test_counters_expire_with_their_window(self) -> None:
        limiter = self.limiter()
        await self.check(limiter, limit(requests=5, toolCalls=5, perTool={"echo": 5},
                                        periodSeconds=30),
                         [("tools/call", "echo")])
        keys = await limiter.client.execute("KEYS", f"{PREFIX}{{{counter_tag(self.who)}}}:*")
        self.assertEqual(len(keys), 3)  # requests, tool calls, echo's
        mine = [await limiter.client.execute("PTTL", key) for key in keys]
        # what is left of the window (19.5 s: the clock is at 1,000,000.5),
        # plus a second
        self.assertTrue(all(19_500 < ttl <= 20_500 for ttl in mine), mine)

    async def test_a_restarted_redis_runs_the_script_again(self) -> None:
        limiter = self.limiter()
        rate = limit(requests=2)
        self.assertIsNone(await self.check(limiter, rate))
        await limiter.client.execute("SCRIPT", "FLUSH")  # as after a restart
        self.assertIsNone(await self.check(limiter, rate))
        self.assertIsNotNone(await self.check(limiter, rate))

    async def test_fail_open_and_closed_while_redis_is_down(self) -> None:
        opened = self.limiter("open")
        closed = self.limiter("closed")
        rate = limit(requests=1)
        self.assertIsNone(await self.check(opened, rate))
        self.server.stop()
        try:
            # open: allowed, uncounted, however many
            self.assertEqual([await self.check(opened, rate) for _ in range(3)], [None] * 3)
            for _ in range(3):
                with self.assertRaises(LimitUnavailable):
                    await self.check(closed, rate)
        finally:
            self.server.start()
        registry = CollectorRegistry()
        registry.register(RedisLimitMetrics(opened))
        text = generate_latest(registry).decode()
        self.assertIn('mcpgated_ratelimit_unchecked_total{result="allowed"} 3.0', text)
        self.assertIn("mcpgated_ratelimit_redis_outages_total 1.0", text)
        self.assertEqual(closed.unchecked, {"allowed": 0, "refused": 3})
        for _ in range(400):  # reconnected (with backoff)
            if opened.client.up and closed.client.up:
                break
            await deferLater(reactor, 0.01, lambda: None)
        self.assertIn("mcpgated_ratelimit_redis_up 1.0", generate_latest(registry).decode())
        self.server.flush()
        self.assertIsNone(await self.check(closed, rate))
        self.assertIsNotNone(await self.check(opened, rate))  # counted again, shared

    async def test_an_error_from_redis_is_decided_without_it_and_logged_once(self) -> None:
        lines: List[str] = []

        def observe(event: Any) -> None:
            if event.get("log_namespace") == "mcpgated.policy.redislimit":
                lines.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        opened, closed = self.limiter("open"), self.limiter("closed")
        rate = limit(requests=5, periodSeconds=60)
        # a counter that is not a number: the script fails (WRONGTYPE)
        window = int(self.clock.seconds() // 60)
        await opened.client.execute("HSET", f"{PREFIX}{{{counter_tag(self.who)}}}:60:{window}:requests",
                                    "not", "a counter")
        self.assertEqual([await self.check(opened, rate) for _ in range(3)], [None] * 3)
        with self.assertRaises(LimitUnavailable):
            await self.check(closed, rate)
        self.assertEqual(opened.unchecked["allowed"], 3)
        self.assertEqual(closed.unchecked["refused"], 1)
        self.assertEqual(len(lines), 2, lines)  # once per limiter, not per decision
        self.assertIn("WRONGTYPE", lines[0])
        self.assertEqual(opened.client.outages, 0)  # Redis answered: no outage


@pytest.mark.parametrize("url", ["http://cache:6379", "redis://", "redis://cache/one",
                                 "redis://:s3cret@cache:99999"])
def test_a_bad_redis_url_is_one_line_naming_the_key(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_text(f"[ratelimit]\nredis = {url}\n")
    assert str(caught.value).startswith("[ratelimit] redis: not a Redis URL")
    assert "s3cret" not in str(caught.value)


def test_ratelimit_settings() -> None:
    cfg = parse_text("[ratelimit]\nredis = redis://:pw@cache:6380/2\nredis_failure = closed\n"
                     "redis_timeout = 100ms\n").ratelimit
    assert (cfg.redis, cfg.redis_failure, cfg.redis_timeout) == ("redis://:pw@cache:6380/2", "closed", 0.1)
    assert "pw" not in repr(cfg)
    assert parse_text("").ratelimit.redis is None
    with pytest.raises(ConfigError, match=r"\[ratelimit\] redis_failure"):
        parse_text("[ratelimit]\nredis_failure = maybe\n")
