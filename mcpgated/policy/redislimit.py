"""
Rate limits shared by every gateway process and node: the fixed-window
counters of L{mcpgated.policy.ratelimit.Limiter}, kept in Redis.

Each decision is one Lua script run atomically by Redis (one round trip on
the client's pipelined connection): every budget the request or batch draws
on is checked, and only if all of them fit are all of them spent, so a
limit of N is N across all nodes together. Counters are keyed by the
budget's owner, kind, period and window number, and expire with their
window.

Windows are numbered from the gateway's clock, like the in-memory limiter's
(nodes keep their clocks in step with NTP). When Redis cannot answer
(unreachable, too slow, an error), the decision is taken without it:
C{failure="open"} allows the call, C{"closed"} refuses it
(L{LimitUnavailable}); each such decision is counted, the outage logged
once by the client (L{mcpgated.policy.redisclient}).
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING, Any, Dict, Hashable, Iterable, List, Optional, Tuple, Union

import attrs
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mcpgated.policy.interfaces import ILimiter
from mcpgated.policy.ratelimit import spending, LimitUnavailable, RateLimit
from mcpgated.config import RateLimitConfig
from mcpgated.policy.redisclient import (
    RedisAddress, RedisClient, RedisError, RedisUnavailable, pack,
)

log = Logger()

# KEYS: one counter per budget. ARGV[1]: milliseconds a new counter lives
# (to its window's end, and a second more); ARGV[2i], ARGV[2i+1]: what this
# decision spends of KEYS[i], and the budget.
SCRIPT = """
for i = 1, #KEYS do
  local used = tonumber(redis.call('GET', KEYS[i]) or '0')
  if used + tonumber(ARGV[2 * i]) > tonumber(ARGV[2 * i + 1]) then
    return 0
  end
end
for i = 1, #KEYS do
  local spend = tonumber(ARGV[2 * i])
  if redis.call('INCRBY', KEYS[i], spend) == spend then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
  end
end
return 1
"""
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()  # noqa: S324 -- Redis names scripts so
PREFIX = "mcpgated:rl:"
FAILURES = ("open", "closed")
UNAVAILABLE = "rate limits cannot be checked: Redis is unreachable"
ERROR_LOG_INTERVAL = 60.0  # seconds between two log lines of the same script error
TAGS_KEPT = 10000  # owners' digests kept (then forgotten all at once)


def period_text(period: float) -> str:
    """
    A period in a counter's key: C{60}, C{2678400}, C{0.5}.
    """
    return str(int(period)) if period == int(period) else repr(period)


def counter_tag(who: Hashable) -> str:
    """
    The part of a counter's key naming its owner: a digest of C{who}, so
    any API id, plan name or subject gives a key of the same shape (and
    one Redis Cluster hash tag: all budgets of one owner in one slot).
    """
    return hashlib.blake2b(repr(who).encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


@implementer(ILimiter)
@attrs.define(eq=False)
class RedisLimiter:
    """
    L{ILimiter} on Redis: C{check_all} answers a L{Deferred} (or at once,
    without Redis, while it is known to be down).

    @ivar failure: C{"open"} (allow) or C{"closed"} (refuse) when Redis
        cannot answer.
    @ivar unchecked: decisions taken without Redis, by result
        (C{"allowed"}, C{"refused"}).
    """

    client: RedisClient
    clock: IReactorTime
    failure: str = "open"
    prefix: str = PREFIX
    unchecked: Dict[str, int] = attrs.field(factory=lambda: {"allowed": 0, "refused": 0})
    _last_error: Tuple[str, float] = ("", -math.inf)
    _tags: Dict[Hashable, str] = attrs.field(factory=dict)  # who -> counter_tag(who)

    def check_all(self, limit: RateLimit, who: Hashable,
                  calls: Iterable[Tuple[str, Optional[str]]],
                  ) -> "Optional[float] | Deferred[Optional[float]]":
        now = self.clock.seconds()
        period = limit.period
        window = math.floor(now / period)
        wait = max((window + 1) * period - now, 0.001)
        needed, allowed = spending(limit, calls)
        if not needed:
            return None
        for kind, count in needed.items():
            if count > allowed[kind]:
                return wait  # more than the whole budget: no need to ask
        if self.client.down:  # known down: decided at once, no round trip
            if self.failure == "open":
                self.unchecked["allowed"] += 1
                return None
            self.unchecked["refused"] += 1
            return fail(LimitUnavailable(UNAVAILABLE))
        tag = self._tags.get(who)
        if tag is None:
            if len(self._tags) >= TAGS_KEPT:
                self._tags.clear()
            tag = self._tags[who] = counter_tag(who)
        base = f"{self.prefix}{{{tag}}}:{period_text(period)}:{window}:"
        args: List[Union[str, int]] = ["EVALSHA", SCRIPT_SHA, len(needed)]
        args.extend(base + kind for kind in needed)
        args.append(int(wait * 1000) + 1000)
        for kind, count in needed.items():
            args.append(count)
            args.append(allowed[kind])
        d = self.client.send(pack(args))
        d.addCallbacks(_decided, self._failed, callbackArgs=(wait,), errbackArgs=(args, wait))
        return d

    def _failed(self, failure: Failure, args: List[Union[str, int]], wait: float) -> Any:
        error = failure.value
        if isinstance(error, RedisError) and args[0] == "EVALSHA" and \
                str(error).startswith("NOSCRIPT"):
            # Redis restarted (or flushed its scripts): run the script's
            # text once, which caches it again
            retry: List[Union[str, int]] = ["EVAL", SCRIPT, *args[2:]]
            d = self.client.send(pack(retry))
            d.addCallbacks(_decided, self._failed, callbackArgs=(wait,), errbackArgs=(retry, wait))
            return d
        if isinstance(error, RedisError):
            self._log_error(str(error))
        elif not isinstance(error, RedisUnavailable):
            return failure
        if self.failure == "open":
            self.unchecked["allowed"] += 1
            return None
        self.unchecked["refused"] += 1
        raise LimitUnavailable(UNAVAILABLE)

    def _log_error(self, text: str) -> None:
        last, when = self._last_error
        now = self.clock.seconds()
        if text != last or now - when >= ERROR_LOG_INTERVAL:
            self._last_error = (text, now)
            log.error("Redis refused a rate-limit decision ({error}); deciding without it "
                      "(fail {mode})", error=text, mode=self.failure)


def redis_limiter(cfg: RateLimitConfig, reactor: Any) -> "Optional[SharedLimiter]":
    """
    The limiter C{[ratelimit]} asks for when it names a Redis (else
    L{None}: counting in memory): exact or approximate (C{mode}). Its
    client is a service: give it a parent
    (C{limiter.client.setServiceParent}).
    """
    if cfg.redis is None:
        return None
    client = RedisClient(reactor, RedisAddress.parse(cfg.redis), timeout=cfg.redis_timeout)
    if cfg.mode == "approximate":
        from mcpgated.policy.redisapprox import ApproximateLimiter  # it imports this module

        return ApproximateLimiter(client, reactor, reactor, interval=cfg.sync_interval,
                                  failure=cfg.redis_failure)
    return RedisLimiter(client, reactor, failure=cfg.redis_failure)


def _decided(answer: Any, wait: float) -> Optional[float]:
    return None if answer == 1 else wait


if TYPE_CHECKING:
    from mcpgated.policy.redisapprox import ApproximateLimiter

SharedLimiter = Union[RedisLimiter, "ApproximateLimiter"]


class RedisLimitMetrics:
    """
    A Prometheus collector for the shared limits: whether Redis is
    reachable, its outages, and the decisions taken without it.
    """

    def __init__(self, limiter: "SharedLimiter") -> None:
        self._limiter = limiter

    def describe(self) -> List[Metric]:
        return self._families()

    def collect(self) -> List[Metric]:
        return self._families()

    def _families(self) -> List[Metric]:
        limiter = self._limiter
        up = GaugeMetricFamily("mcpgated_ratelimit_redis_up",
                               "1 when the rate limits' Redis is connected, else 0",
                               value=1.0 if limiter.client.up else 0.0)
        outages = CounterMetricFamily("mcpgated_ratelimit_redis_outages",
                                      "Times the rate limits' Redis became unreachable",
                                      value=limiter.client.outages)
        unchecked = CounterMetricFamily(
            "mcpgated_ratelimit_unchecked",
            "Rate-limit decisions taken without Redis (it could not answer), by result",
            labels=["result"])
        for result, count in sorted(limiter.unchecked.items()):
            unchecked.add_metric([result], count)
        families: List[Metric] = [up, outages, unchecked]
        syncs = getattr(limiter, "syncs", None)
        if syncs is not None:  # the approximate mode
            families.append(CounterMetricFamily(
                "mcpgated_ratelimit_syncs", "Spending sent to Redis and totals read (approximate mode)",
                value=syncs))
        return families


def decided(value: "Optional[float] | Deferred[Optional[float]]") -> "Deferred[Optional[float]]":
    """
    A decision as a Deferred, whether it was taken at once or not (tests,
    tools).
    """
    if isinstance(value, Deferred):
        return value
    return succeed(value)
