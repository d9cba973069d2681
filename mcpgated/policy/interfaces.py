"""
The seams of the policy layer: what the data plane asks of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Coroutine

from zope.interface import Interface

if TYPE_CHECKING:
    from mcpgated.policy.gate import Admission, AdmissionRequest


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
