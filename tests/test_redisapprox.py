"""
Approximate shared rate limits (mcpgated.policy.redisapprox) against a real
redis-server: decisions at once (no Deferred), spending sent every interval,
the other processes' spending seen after a sync, how far a burst between
two syncs can overrun a budget, counters shared with the exact mode, and
Redis down (open: held locally and sent later; closed: refused).
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import TestCase

from mcpgated.config import parse_text
from mcpgated.policy.ratelimit import LimitUnavailable, RateLimit, parse_limit
from mcpgated.policy.redisapprox import ApproximateLimiter
from mcpgated.policy.redisclient import RedisAddress, RedisClient
from mcpgated.policy.redislimit import PREFIX, RedisLimiter, counter_tag, decided, redis_limiter
from tests.engines import RedisServer

PING = [("ping", None)]


def limit(**raw: Any) -> RateLimit:
    parsed = parse_limit(raw, "rateLimit")
    assert parsed is not None
    return parsed


async def until(condition: Callable[[], bool], turns: int = 2000) -> None:
    for _ in range(turns):
        if condition():
            return
        await deferLater(reactor, 0.005, lambda: None)
    raise AssertionError("condition not reached")


class ApproximateTests(TestCase):
    server: RedisServer

    @pytest.fixture(autouse=True)
    def _server(self, redis: RedisServer) -> None:
        self.server = redis

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(2_000_000.25)
        self.who = ("api", "plan", self.id())

    def client(self) -> RedisClient:
        client = RedisClient(reactor, RedisAddress.parse(self.server.url), timeout=2.0)
        client.startService()
        self.addCleanup(client.stopService)
        return client

    async def limiter(self, failure: str = "open") -> ApproximateLimiter:
        client = self.client()
        await client.execute("PING")  # connected
        limiter = ApproximateLimiter(client, self.clock, reactor, interval=0.005, failure=failure)
        self.addCleanup(limiter.stop)
        return limiter

    def decide(self, limiter: ApproximateLimiter, rate: RateLimit,
               calls: List[Tuple[str, Optional[str]]] = PING) -> Optional[float]:
        result = limiter.check_all(rate, self.who, calls)
        assert not isinstance(result, Deferred)  # at once
        return result

    async def synced(self, *limiters: ApproximateLimiter) -> None:
        marks = [limiter.syncs for limiter in limiters]
        await until(lambda: all(limiter.syncs > mark and not limiter._pending
                                for limiter, mark in zip(limiters, marks, strict=True)))

    async def counter(self, client: RedisClient, period: int, kind: str) -> int:
        window = int(self.clock.seconds() // period)
        value = await client.execute("GET", f"{PREFIX}{{{counter_tag(self.who)}}}:{period}:{window}:{kind}")
        return int(value or 0)

    async def test_decided_at_once_and_sent_to_redis(self) -> None:
        limiter = await self.limiter()
        rate = limit(requests=4, periodSeconds=60)
        results = [self.decide(limiter, rate) for _ in range(5)]
        self.assertEqual(results[:4], [None] * 4)
        self.assertAlmostEqual(results[4], 60 - 20.25)  # 2,000,000.25 is 20.25 s into its minute
        await self.synced(limiter)
        self.assertEqual(await self.counter(limiter.client, 60, "requests"), 4)

    async def test_other_processes_spending_is_seen_after_a_sync(self) -> None:
        first, second = await self.limiter(), await self.limiter()
        rate = limit(requests=6, periodSeconds=60)
        for _ in range(4):
            self.assertIsNone(self.decide(first, rate))
        await self.synced(first)
        self.assertIsNone(self.decide(second, rate))  # its first look: a stale view, allowed
        await self.synced(second)  # now it knows the 4 of the other
        self.assertIsNone(self.decide(second, rate))
        self.assertIsNotNone(self.decide(second, rate))  # 6 spent in all
        await self.synced(second)
        self.decide(first, rate)  # first looks again (over budget either way)
        await self.synced(first)
        self.assertIsNotNone(self.decide(first, rate))
        self.assertEqual(await self.counter(first.client, 60, "requests"), 7)

    async def test_a_burst_between_syncs_overruns_by_what_the_others_admitted(self) -> None:
        first, second = await self.limiter(), await self.limiter()
        rate = limit(requests=5, periodSeconds=60)
        # both decide within one interval, neither has seen the other
        burst = [self.decide(first, rate) for _ in range(7)] + [self.decide(second, rate) for _ in range(7)]
        self.assertEqual(sum(1 for r in burst if r is None), 10)  # 5 each: never more than N alone
        await self.synced(first, second)
        self.assertIsNotNone(self.decide(first, rate))
        self.assertIsNotNone(self.decide(second, rate))

    async def test_shares_counters_with_the_exact_mode(self) -> None:
        client = self.client()
        exact = RedisLimiter(client, self.clock)
        approximate = await self.limiter()
        rate = limit(requests=5, toolCalls=5, perTool={"echo": 3}, periodSeconds=60)
        echo = [("tools/call", "echo")]
        for _ in range(2):
            self.assertIsNone(await decided(exact.check_all(rate, self.who, echo)))
        self.assertIsNone(self.decide(approximate, rate, echo))  # echo: 3rd of 3
        await self.synced(approximate)  # sent, and the exact mode's 2 seen
        self.assertIsNotNone(self.decide(approximate, rate, echo))
        await self.synced(approximate)
        self.assertIsNotNone(await decided(exact.check_all(rate, self.who, echo)))
        self.assertEqual(await self.counter(client, 60, "tool:echo"), 3)

    async def test_redis_down_open_holds_the_limit_locally_and_sends_later(self) -> None:
        limiter = await self.limiter("open")
        rate = limit(requests=3, periodSeconds=60)
        self.server.stop()
        try:
            limiter.client.execute("PING").addErrback(lambda _: None)  # it notices
            await until(lambda: limiter.client.down)
            results = [self.decide(limiter, rate) for _ in range(4)]
            self.assertEqual(results[:3], [None] * 3)
            self.assertIsNotNone(results[3])  # the limit, held on this process's traffic
            self.assertEqual(limiter.unchecked["allowed"], 3)
        finally:
            self.server.start()
        await until(lambda: limiter.client.up and not limiter._pending)
        self.assertEqual(await self.counter(limiter.client, 60, "requests"), 3)  # sent once back

    async def test_redis_down_closed_refuses(self) -> None:
        limiter = await self.limiter("closed")
        self.server.stop()
        try:
            limiter.client.execute("PING").addErrback(lambda _: None)  # it notices
            await until(lambda: limiter.client.down)
            with self.assertRaises(LimitUnavailable):
                await decided(limiter.check_all(limit(requests=3), self.who, PING))
            self.assertEqual(limiter.unchecked["refused"], 1)
        finally:
            self.server.start()

    async def test_windows_end_and_are_forgotten(self) -> None:
        limiter = await self.limiter()
        rate = limit(requests=1, periodSeconds=10)
        self.assertIsNone(self.decide(limiter, rate))
        self.assertIsNotNone(self.decide(limiter, rate))
        self.clock.advance(10)  # the next window
        self.assertIsNone(self.decide(limiter, rate))
        self.clock.advance(2)  # past the prune interval
        await self.synced(limiter)
        self.assertEqual(len(limiter._ends), 1)  # the ended window's counter is gone


class StoppedTests(TestCase):
    def test_no_syncs_once_the_client_has_stopped(self) -> None:
        scheduler = Clock()
        client = RedisClient(scheduler, RedisAddress.parse("redis://127.0.0.1:1"))
        limiter = ApproximateLimiter(client, scheduler, scheduler, interval=0.01)
        self.assertIsNone(limiter.check_all(limit(requests=2), ("a", "p", "x"), PING))
        scheduler.advance(0.01)  # a sync: refused at once, the client is not running
        self.assertEqual(scheduler.getDelayedCalls(), [])  # and not tried again and again
        self.assertEqual(sum(limiter._pending.values()), 1)  # the spending kept


def test_the_config_picks_the_mode() -> None:
    for mode, kind in (("exact", RedisLimiter), ("approximate", ApproximateLimiter)):
        cfg = parse_text(f"[ratelimit]\nredis = redis://127.0.0.1:1\nmode = {mode}\n"
                         "sync_interval = 20ms\n").ratelimit
        limiter = redis_limiter(cfg, reactor)
        assert isinstance(limiter, kind)
        if isinstance(limiter, ApproximateLimiter):
            assert limiter.interval == 0.02
    assert redis_limiter(parse_text("").ratelimit, reactor) is None
