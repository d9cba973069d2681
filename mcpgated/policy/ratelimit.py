"""
Rate limits and quotas per plan or subscription: fixed windows counted in
memory on the reactor thread, with an injected clock.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Hashable, Iterable, List, Optional, Tuple

import attrs
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from mcpgated.policy.interfaces import ILimiter

_FIELDS = {"requests", "toolCalls", "perTool", "periodSeconds", "scope"}


class LimitError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@attrs.frozen
class RateLimit:
    """
    @ivar requests: JSON-RPC requests allowed per period (None: no limit).
    @ivar tool_calls: C{tools/call} requests per period.
    @ivar per_tool: C{tools/call} of one named tool per period.
    @ivar scope: C{"subscription"} (each consumer counted apart; keyless
        callers by client address) or C{"plan"} (one shared budget).
    """

    period: float = 60.0
    requests: Optional[int] = None
    tool_calls: Optional[int] = None
    per_tool: Tuple[Tuple[str, int], ...] = ()
    scope: str = "subscription"

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"periodSeconds": self.period, "scope": self.scope}
        if self.requests is not None:
            out["requests"] = self.requests
        if self.tool_calls is not None:
            out["toolCalls"] = self.tool_calls
        if self.per_tool:
            out["perTool"] = dict(self.per_tool)
        return out


def _count(value: Any, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise LimitError(field, f"{field} must be a whole number, 0 or more")
    return value


def parse_limit(raw: Any, field: str) -> Optional[RateLimit]:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise LimitError(field, f"{field} must be an object")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise LimitError(f"{field}.{unknown[0]}", f"{field}.{unknown[0]} is not a known field")
    period = raw.get("periodSeconds", 60)
    if not isinstance(period, (int, float)) or isinstance(period, bool) or not 0 < period <= 31 * 86400:
        raise LimitError(f"{field}.periodSeconds", f"{field}.periodSeconds must be from 1 to 2678400")
    scope = raw.get("scope", "subscription")
    if scope not in ("subscription", "plan"):
        raise LimitError(f"{field}.scope", f"{field}.scope must be subscription or plan")
    per_tool = raw.get("perTool", {})
    if not isinstance(per_tool, dict):
        raise LimitError(f"{field}.perTool", f"{field}.perTool must map tool names to counts")
    return RateLimit(
        period=float(period),
        requests=_count(raw["requests"], f"{field}.requests") if "requests" in raw else None,
        tool_calls=_count(raw["toolCalls"], f"{field}.toolCalls") if "toolCalls" in raw else None,
        per_tool=tuple(sorted((str(k), _count(v, f"{field}.perTool.{k}")) for k, v in per_tool.items())),
        scope=scope,
    )


class LimitUnavailable(Exception):
    """
    A shared limiter cannot reach its counters and fails closed: the gate
    refuses the request (503), counting nothing.
    """


# (who, period, budget kind, window number): one counter.
_Key = Tuple[Hashable, float, str, int]


@implementer(ILimiter)
@attrs.define
class Limiter:
    """
    Fixed-window counters: C{(key, window)} -> count. Old windows are
    dropped as time moves on, so memory stays bounded by active callers.

    C{who} is whatever identifies one budget; the gate makes it
    C{(API id, plan name, subject)}, so two APIs never share a counter even
    when their plans have the same name.
    """

    clock: IReactorTime
    _counts: Dict[_Key, int] = attrs.field(factory=dict)
    _window: Dict[float, int] = attrs.field(factory=dict)

    def check(self, limit: RateLimit, who: Hashable, method: str, tool: Optional[str]) -> Optional[float]:
        """
        Count one request. Returns L{None} when allowed, or the seconds
        until the window resets when over a limit (the request is not
        counted then).
        """
        return self.check_all(limit, who, [(method, tool)])

    def check_all(self, limit: RateLimit, who: Hashable,
                  calls: Iterable[Tuple[str, Optional[str]]]) -> Optional[float]:
        """
        Count several requests (a batch) as one decision: all of them fit
        in what is left of every budget they draw on, and are counted, or
        none is counted and the seconds until the window resets are
        returned. A refused batch spends nothing.
        """
        now = self.clock.seconds()
        window = math.floor(now / limit.period)
        self._expire(limit.period, window)
        needed: Dict[_Key, int] = {}
        allowed: Dict[_Key, int] = {}
        for method, tool in calls:
            for kind, count in self._budgets(limit, method, tool):
                key = (who, limit.period, kind, window)
                needed[key] = needed.get(key, 0) + 1
                allowed[key] = count
        for key, count in needed.items():
            if self._counts.get(key, 0) + count > allowed[key]:
                return max((window + 1) * limit.period - now, 0.001)
        for key, count in needed.items():
            self._counts[key] = self._counts.get(key, 0) + count
        return None

    @staticmethod
    def _budgets(limit: RateLimit, method: str, tool: Optional[str]) -> List[Tuple[str, int]]:
        """
        The budgets one request draws on: C{(kind, allowed per period)}.
        """
        budgets = []
        if limit.requests is not None:
            budgets.append(("requests", limit.requests))
        if method == "tools/call":
            if limit.tool_calls is not None:
                budgets.append(("tools", limit.tool_calls))
            for name, count in limit.per_tool:
                if name == tool:
                    budgets.append(("tool:" + name, count))
        return budgets

    def _expire(self, period: float, window: int) -> None:
        last = self._window.get(period)
        if last == window:
            return
        self._window[period] = window
        for key in [k for k in self._counts if k[1] == period and k[3] < window]:
            del self._counts[key]


def spending(limit: RateLimit, calls: Iterable[Tuple[str, Optional[str]]],
             ) -> Tuple[Dict[str, int], Dict[str, int]]:
    """
    What a batch of calls draws on C{limit}'s budgets: (budget kind -> calls
    counted, budget kind -> allowed per period), for the shared limiters.
    """
    needed: Dict[str, int] = {}
    allowed: Dict[str, int] = {}
    for method, tool in calls:
        for kind, count in Limiter._budgets(limit, method, tool):
            needed[kind] = needed.get(kind, 0) + 1
            allowed[kind] = count
    return needed, allowed

