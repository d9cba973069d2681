"""
The seams of the policy layer: what the data plane asks of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Coroutine, Hashable, Iterable, Optional, Tuple

from zope.interface import Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from mcpgated.policy.gate import Admission, AdmissionRequest
    from mcpgated.policy.ratelimit import RateLimit


class IAdmission(Interface):
    """
    Admission of a request to an API: its credential and plan, routing
    headers, rate limits, access control and pinning
    (L{mcpgated.policy.gate.Gate}).
    """

    def needed(definition: Any) -> bool:
        """
        Whether requests to an API with this definition need admission at
        all (an open, rule-less, limit-less keyless API does not).
        """

    def admit(request: AdmissionRequest) -> Coroutine[Any, Any, Admission]:
        """
        Judge an L{mcpgated.policy.gate.AdmissionRequest}.

        @return: an awaitable of its L{mcpgated.policy.gate.Admission}.
        @raise mcpgated.jsonrpc.Refusal: the request is refused as a whole.
        """


class ILimiter(Interface):
    """
    Rate-limit counters: in memory (L{mcpgated.policy.ratelimit.Limiter}),
    or shared by several processes or nodes.
    """

    def check_all(limit: RateLimit, who: Hashable,
                  calls: Iterable[Tuple[str, Optional[str]]],
                  ) -> "Optional[float] | Deferred[Optional[float]]":
        """
        Count several requests (a batch: C{(method, tool name)} each) as one
        decision against C{limit}'s budgets for C{who}: all fit and are
        counted, or none is.

        @return: L{None} when allowed, else the seconds until the window
            resets; or a L{Deferred} of either (a limiter that asks another
            process). The in-memory limiter answers at once, so the gate's
            common path makes no Deferred.
        """
