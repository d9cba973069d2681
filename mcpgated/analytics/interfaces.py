"""
The seam between the data plane and analytics: what the resource tells an
exchange's observer, in order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence

from zope.interface import Interface

if TYPE_CHECKING:
    from mcpgated.mcp.body import RequestBody
    from mcpgated.mcp.messages import Message


class IExchangeObserver(Interface):
    """
    Watches one exchange for the exchange log and the metrics
    (L{mcpgated.analytics.tracker.ExchangeTracker}). Never raises, never
    holds data back.
    """

    def request(headers: Any, uri: bytes, size: int, body: Optional[RequestBody]) -> None:
        """
        The client's request: its headers, target, body size, and body as
        the gateway read it (an L{mcpgated.mcp.body.RequestBody}, or L{None}).
        """

    def admitted(principal: Any, denied: Any, would_deny: Any) -> None:
        """
        The gate's verdict: who called, which requests policy denied, which
        a dry-run policy would have.
        """

    def bridged(backend_version: str) -> None:
        """
        The gateway spoke C{backend_version} to the backend for this
        exchange (an API's C{"protocol"} settings bridged the client's MCP
        version to the backend's): each record of the exchange says so.
        Never told when the backend spoke what the client spoke.
        """

    def response(status: int, headers: Any, ttfb_ms: float, event_stream: bool) -> None:
        """
        The answer's status and headers (the backend's, or the gateway's own).
        """

    def messages(messages: Sequence[Message], size: int, stream: bool) -> None:
        """
        Messages of the answer as the client gets them
        (L{mcpgated.mcp.responses.Observer}).
        """

    def endpoint(url: str) -> None:
        """
        The legacy transport's endpoint event, as the client gets it.
        """

    def unread(size: int) -> None:
        """
        An answer too large to read.
        """

    def finished(outcome: str, status: Optional[int] = None) -> None:
        """
        The exchange ended; C{outcome} as in the access log.
        """


class IRecorder(Interface):
    """
    Makes each exchange's observer (L{mcpgated.analytics.recorder.Recorder}).
    """

    def observer(api_id: str, definition: Any, client: Optional[str], started: float,
                 http_method: bytes) -> IExchangeObserver:
        """
        The observer of an exchange routed to an API.
        """

    def unrouted(status: Optional[int]) -> None:
        """
        An exchange that reached no API (refused or not found): counted.
        """
