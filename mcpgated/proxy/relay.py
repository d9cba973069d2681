"""
Streaming a backend response body to the client without buffering.

The backend connection is registered as the client response's producer, so
a client that stops reading pauses the backend socket, and a client that
leaves closes it. A truncated upstream body aborts the client connection,
so a cut stream never looks complete.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Optional

from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from zope.interface import implementer


@implementer(IPushProducer)
class WatchedProducer:
    """
    The backend transport as the client's producer, noting when the client
    last let data flow (for the stall watchdog).
    """

    def __init__(self, transport: Any, clock: IReactorTime, on_activity: Callable[[], None]) -> None:
        self._transport = transport
        self._clock = clock
        self._on_activity = on_activity
        self.paused = False

    def pauseProducing(self) -> None:
        self.paused = True
        self._transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        self._on_activity()
        self._transport.resumeProducing()

    def stopProducing(self) -> None:
        self._transport.stopProducing()


def _ignore(outcome: str, reason: Optional[Failure]) -> None:
    pass


_ABORT_GRACE = 10.0
# how a body ends normally (the type itself is the usual case: no walk of its bases)
_ENDED = (ResponseDone, PotentialDataLoss)


class Relay(Protocol):
    """
    Receives the backend body and writes it to the client request.

    @param transform: optional reading of chunks (the response reader of
        L{mcpgated.mcp.responses}): it may hold back an incomplete event or a
        judged body and returns what to send now.
    @param flush: returns whatever C{transform} still holds, at the end.
    @param done: called once with C{(outcome, reason)} where outcome is
        C{"complete"}, C{"upstream_error"} or C{"client_closed"}.
    @param parks: asked after each chunk whether the answer is to wait
        for another request of the client's (a 2026-07-28 client asked for
        input: L{mcpgated.proxy.classic}): the last bytes of the client's
        answer, or L{None} to go on.
    @param on_park: told of the relay, paused and its client answered;
        L{attach} gives it the next request.
    """

    # parking (mcpgated.proxy.classic), at class level: most relays never park
    _parks: Optional[Callable[[], Optional[bytes]]] = None
    _on_park: Optional[Callable[["Relay"], None]] = None
    parked = False
    _parked_end: Optional[Failure] = None

    def __init__(
        self,
        request: Any,
        clock: IReactorTime,
        done: Callable[[str, Optional[Failure]], None],
        on_data: Callable[[int], None],
        transform: Optional[Callable[[bytes], bytes]] = None,
        flush: Optional[Callable[[], bytes]] = None,
        parks: Optional[Callable[[], Optional[bytes]]] = None,
        on_park: Optional[Callable[["Relay"], None]] = None,
    ) -> None:
        self.request = request
        self.clock = clock
        self._done = done
        self._on_data = on_data
        self._transform = transform
        self._flush = flush
        self.client_gone = False
        self.producer: Optional[WatchedProducer] = None
        if parks is not None:
            self._parks, self._on_park = parks, on_park

    def connectionMade(self) -> None:
        self.producer = WatchedProducer(self.transport, self.clock, partial(self._on_data, 0))
        self.request.registerProducer(self.producer, True)

    def dataReceived(self, data: bytes) -> None:
        if self.client_gone:
            return
        if self._transform is not None:
            data = self._transform(data)
        if self._parks is not None:  # an answer that may wait for the client's input
            if self.parked:
                return  # held by the transform for the client's next request
            if data:
                self._on_data(len(data))
                self.request.write(data)
            self._park_if_asked()
        elif data:
            self._on_data(len(data))
            self.request.write(data)

    def _park_if_asked(self) -> bool:
        assert self._parks is not None
        last = self._parks()
        if last is None:
            return False
        if last:
            self._on_data(len(last))
            self.request.write(last)
        self._park()
        return True

    def _park(self) -> None:
        """
        The client's answer ends here; the backend's waits, paused.
        """
        self.parked = True
        transport: Any = self.transport
        transport.pauseProducing()
        self.request.unregisterProducer()
        self.request.finish()
        done, self._done = self._done, _ignore
        done("complete", None)
        assert self._on_park is not None
        self._on_park(self)

    def attach(self, request: Any, done: Callable[[str, Optional[Failure]], None],
               on_data: Callable[[int], None], first: bytes) -> None:
        """
        Go on relaying a parked answer to C{request}, C{first} before the
        rest.
        """
        self.request, self._done, self._on_data = request, done, on_data
        self.parked = False
        if first:
            self._on_data(len(first))
            request.write(first)
        if self._parks is not None and self._park_if_asked():  # it asks again at once
            return
        if self._parked_end is not None:
            reason, self._parked_end = self._parked_end, None
            self.connectionLost(reason)
            return
        self.producer = WatchedProducer(self.transport, self.clock, partial(self._on_data, 0))
        request.registerProducer(self.producer, True)
        transport: Any = self.transport
        transport.resumeProducing()

    def expire(self) -> None:
        """
        A parked answer nobody came back for: the backend connection closes.
        """
        self.parked = False
        self.client_gone = True
        if self._parked_end is not None:
            self._parked_end = None
            self.transport = self.producer = None
            self._transform = self._flush = None
        elif self.transport is not None:
            transport: Any = self.transport
            transport.stopProducing()

    def stop(self) -> None:
        """
        The client left: close the backend connection now.
        """
        self.client_gone = True
        if self.producer is not None:
            self.producer.stopProducing()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self.parked:  # ended while the client was away: told when it is back
            self._parked_end = reason
            return
        try:
            self._ended(reason)
        finally:
            # Nothing of this exchange stays reachable from a cycle: the
            # garbage collector never has to find it.
            self.transport = self.producer = None
            self._transform = self._flush = None

    def _ended(self, reason: Optional[Failure]) -> None:
        if self.client_gone:
            self._done("client_closed", reason)
            return
        try:
            self.request.unregisterProducer()
        except AttributeError:
            pass
        if reason is not None and (reason.type in _ENDED or reason.check(*_ENDED)):
            if self._flush is not None:
                rest = self._flush()
                if rest:
                    self._on_data(len(rest))
                    self.request.write(rest)
            self.request.finish()
            self._done("complete", None)
        else:
            # Send what arrived, then close without the final chunk, so the
            # client sees a truncated stream, never a complete one.
            transport = getattr(self.request.channel, "transport", None)
            if transport is not None:
                transport.loseConnection()
                # A client that does not read its last bytes is cut off.
                abort = self.clock.callLater(_ABORT_GRACE, transport.abortConnection)
                self.request.notifyFinish().addBoth(
                    lambda _: abort.cancel() if abort.active() else None)
            self._done("upstream_error", reason)
