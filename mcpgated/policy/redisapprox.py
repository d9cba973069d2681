"""
Approximate shared rate limits (C{[ratelimit] mode = approximate}): each
process decides at once from its own view of the counters, the Redis
counters' totals as of the last sync plus what it spent since, and sends
what it spent to Redis every C{interval} (one script for every counter
touched since the last sync, which answers their new totals: the other
processes' spending).

No Redis round trip in the request's path, and no Deferred: a decision
costs about what the in-memory limiter's does. The price is exactness: in
one sync interval each process may admit up to what its stale view allows,
so a budget can be overrun by what the other processes admitted in the
last interval (a few milliseconds of traffic); it is never overrun by one
process alone. Counters are the exact mode's (same keys), so processes in
either mode may share them.

While Redis is down, C{failure="open"} keeps deciding locally from what is
known (each process then holds the limit on its own traffic, spending kept
and sent once Redis is back); C{"closed"} refuses (L{LimitUnavailable}).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Hashable, Iterable, List, Optional, Set, Tuple, Union

import attrs
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mcpgated.policy.interfaces import ILimiter
from mcpgated.policy.ratelimit import spending, LimitUnavailable, RateLimit
from mcpgated.policy.redisclient import RedisClient, RedisError, RedisUnavailable, pack
from mcpgated.policy.redislimit import PREFIX, TAGS_KEPT, UNAVAILABLE, counter_tag, period_text

log = Logger()

# KEYS: counters; ARGV[2i-1]: what this process spent of KEYS[i] since its
# last sync (0: only read it); ARGV[2i]: milliseconds a new counter lives.
# Answers every counter's total.
SYNC = """
local totals = {}
for i = 1, #KEYS do
  local spend = tonumber(ARGV[2 * i - 1])
  local total = redis.call('INCRBY', KEYS[i], spend)
  if total == spend then
    redis.call('PEXPIRE', KEYS[i], ARGV[2 * i])
  end
  totals[i] = total
end
return totals
"""
PRUNE_INTERVAL = 1.0  # seconds between two sweeps of ended windows' counters


@implementer(ILimiter)
@attrs.define(eq=False)
class ApproximateLimiter:
    """
    L{ILimiter} counted locally and synced with Redis every C{interval}
    seconds; C{check_all} answers at once.

    @ivar scheduler: what runs the syncs (the reactor; C{clock} numbers the
        windows, as in the other limiters).
    """

    client: RedisClient
    clock: IReactorTime
    scheduler: IReactorTime
    interval: float = 0.01
    failure: str = "open"
    prefix: str = PREFIX
    unchecked: Dict[str, int] = attrs.field(factory=lambda: {"allowed": 0, "refused": 0})
    syncs: int = 0
    _known: Dict[str, int] = attrs.field(factory=dict)  # counter -> its total at the last sync
    _pending: Dict[str, int] = attrs.field(factory=dict)  # counter -> spent here, not sent yet
    _ends: Dict[str, float] = attrs.field(factory=dict)  # counter -> when its window ends
    _touched: Set[str] = attrs.field(factory=set)  # counters to send or read at the next sync
    _timer: Optional[IDelayedCall] = None
    _syncing: bool = False
    _pruned: float = 0.0
    _tags: Dict[Hashable, str] = attrs.field(factory=dict)

    def check_all(self, limit: RateLimit, who: Hashable,
                  calls: Iterable[Tuple[str, Optional[str]]],
                  ) -> "Optional[float] | Deferred[Optional[float]]":
        now = self.clock.seconds()
        period = limit.period
        window = math.floor(now / period)
        end = (window + 1) * period
        wait = max(end - now, 0.001)
        needed, allowed = spending(limit, calls)
        if not needed:
            return None
        down = self.client.down
        if down and self.failure == "closed":
            self.unchecked["refused"] += 1
            return fail(LimitUnavailable(UNAVAILABLE))
        tag = self._tags.get(who)
        if tag is None:
            if len(self._tags) >= TAGS_KEPT:
                self._tags.clear()
            tag = self._tags[who] = counter_tag(who)
        base = f"{self.prefix}{{{tag}}}:{period_text(period)}:{window}:"
        known, pending = self._known, self._pending
        keys = [(base + kind, count, allowed[kind]) for kind, count in needed.items()]
        refused = False
        for key, count, budget in keys:
            if known.get(key, 0) + pending.get(key, 0) + count > budget:
                refused = True
        touched = self._touched
        for key, _, _ in keys:
            if key not in self._ends:
                self._ends[key] = end
            touched.add(key)  # refused too: its next view comes at the next sync
        if self._timer is None and not self._syncing:
            self._timer = self.scheduler.callLater(self.interval, self._sync)
        if refused:
            return wait
        for key, count, _ in keys:
            pending[key] = pending.get(key, 0) + count
        if down:
            self.unchecked["allowed"] += 1
        return None

    # -- syncing ---------------------------------------------------------

    def _sync(self) -> None:
        self._timer = None
        now = self.clock.seconds()
        if now - self._pruned >= PRUNE_INTERVAL:
            self._prune(now)
        touched, self._touched = self._touched, set()
        keys = [key for key in touched if key in self._ends]
        if not keys:
            return
        pending = self._pending
        sent = [pending.pop(key, 0) for key in keys]
        args: List[Union[str, int]] = ["EVAL", SYNC, len(keys), *keys]
        for key, spend in zip(keys, sent, strict=True):
            args.append(spend)
            args.append(int(max(self._ends[key] - now, 0.001) * 1000) + 1000)
        self._syncing = True
        d = self.client.send(pack(args))
        d.addCallbacks(self._synced, self._not_synced, callbackArgs=(keys,),
                       errbackArgs=(keys, sent))
        d.addBoth(self._next)

    def _synced(self, totals: Any, keys: List[str]) -> None:
        self.syncs += 1
        known = self._known
        for key, total in zip(keys, totals, strict=True):
            if key in self._ends:
                known[key] = int(total)

    def _not_synced(self, failure: Failure, keys: List[str], sent: List[int]) -> None:
        error = failure.value
        if isinstance(error, RedisError):
            log.error("Redis refused a rate-limit sync ({error})", error=str(error))
        elif not isinstance(error, RedisUnavailable):
            log.failure("rate-limit sync failed", failure)
        # kept, to send at the next sync: counted twice at worst (the
        # script ran, its answer was lost), never lost
        pending = self._pending
        for key, spend in zip(keys, sent, strict=True):
            if spend and key in self._ends:
                pending[key] = pending.get(key, 0) + spend
            self._touched.add(key)

    def _next(self, _: Any) -> None:
        self._syncing = False
        if self._touched and self._timer is None and self.client.running:
            # while Redis is down, no faster than its client reconnects
            delay = self.interval if not self.client.down else max(self.interval, 0.1)
            self._timer = self.scheduler.callLater(delay, self._sync)

    def _prune(self, now: float) -> None:
        """
        Forget the counters whose window has ended (Redis expires them).
        """
        self._pruned = now
        for key in [k for k, end in self._ends.items() if end <= now]:
            del self._ends[key]
            self._known.pop(key, None)
            self._pending.pop(key, None)
            self._touched.discard(key)

    def stop(self) -> None:
        """
        No more syncs (the daemon stops).
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
