"""
The seam between the data plane and analytics: what the resource tells an
exchange's observer, in order.
"""

from __future__ import annotations

from zope.interface import Interface


class IExchangeObserver(Interface):
    """
    Watches one exchange for the exchange log and the metrics
    (L{mcpgated.analytics.tracker.ExchangeTracker}). Never raises, never
    holds data back.
    """

    def request(headers: object, uri: bytes, size: int, body: object) -> None:
        """
        The client's request: its headers, target, body size, and body as
        the gateway read it (an L{mcpgated.mcp.body.RequestBody}, or L{None}).
        """

    def admitted(principal: object, denied: object, would_deny: object) -> None:
        """
        The gate's verdict: who called, which requests policy denied, which
        a dry-run policy would have.
        """

    def response(status: int, headers: object, ttfb_ms: float, event_stream: bool) -> None:
        """
        The answer's status and headers (the backend's, or the gateway's own).
        """

    def messages(messages: object, size: int, stream: bool) -> None:
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

    def finished(outcome: str, status: object) -> None:
        """
        The exchange ended; C{outcome} as in the access log.
        """


class IRecorder(Interface):
    """
    Makes each exchange's observer (L{mcpgated.analytics.recorder.Recorder}).
    """

    def observer(api_id: str, definition: object, client: object, started: float,
                 http_method: bytes) -> IExchangeObserver:
        """
        The observer of an exchange routed to an API.
        """

    def unrouted(status: object) -> None:
        """
        An exchange that reached no API (refused or not found): counted.
        """
