"""
Small, bounded HTTP bodies for the gateway's own requests (OAuth metadata,
key sets, token introspection) and in-memory request bodies.

Proxied bodies never come here: they stream (L{mcpgated.proxy.relay}).
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer


class BodyTooLarge(Exception):
    pass


@implementer(IBodyProducer)
class BytesProducer:
    """
    A request body already in memory, written at once.
    """

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> "Deferred[None]":
        if self._body:
            consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _Collector(Protocol):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: List[bytes] = []
        self.size = 0
        self.done: "Deferred[bytes]" = Deferred(self._cancel)

    def _cancel(self, d: Deferred) -> None:
        if self.transport is not None:
            self.transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.transport.stopProducing()
            self.done.errback(BodyTooLarge(f"larger than {self.limit} bytes"))
            return
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self.done.called:
            return
        if reason is not None and reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(reason)


def read_body(response: Any, limit: int) -> "Deferred[bytes]":
    """
    The whole body of C{response}, failing with L{BodyTooLarge} (and closing
    the connection) past C{limit} bytes. Cancelling stops the download.
    """
    collector = _Collector(limit)
    response.deliverBody(collector)
    return collector.done
