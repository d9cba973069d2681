"""
The relay of a backend body to the client (L{mcpgated.proxy.relay}), in
memory: a fake client request, the backend connection a
L{StringTransport}, the clock a L{Clock}.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss

from mcpgated.proxy.relay import Relay


class ClientTransport:
    def __init__(self) -> None:
        self.lost = False
        self.aborted = False

    def loseConnection(self) -> None:
        self.lost = True

    def abortConnection(self) -> None:
        self.aborted = True


class Channel:
    def __init__(self) -> None:
        self.transport = ClientTransport()


class ClientRequest:
    """
    What the relay uses of a gateway request.
    """

    def __init__(self) -> None:
        self.channel = Channel()
        self.written: List[bytes] = []
        self.finished = False
        self.producer: Any = None
        self.streaming: Optional[bool] = None
        self._finish: List["Deferred[None]"] = []

    def write(self, data: bytes) -> None:
        assert not self.finished
        self.written.append(data)

    def finish(self) -> None:
        self.finished = True

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer, self.streaming = producer, streaming

    def unregisterProducer(self) -> None:
        self.producer = None

    def notifyFinish(self) -> "Deferred[None]":
        d: "Deferred[None]" = Deferred()
        self._finish.append(d)
        return d

    def client_done(self) -> None:
        for d in self._finish:
            d.callback(None)


class Exchange:
    def __init__(self, transform: Any = None, flush: Any = None) -> None:
        self.clock = Clock()
        self.request = ClientRequest()
        self.ends: List[Tuple[str, Optional[Failure]]] = []
        self.activity: List[int] = []
        self.relay = Relay(self.request, self.clock, lambda outcome, reason:
                           self.ends.append((outcome, reason)),
                           self.activity.append, transform, flush)
        self.backend = StringTransport()
        self.relay.makeConnection(self.backend)


def test_the_backend_connection_is_the_client_s_streaming_producer() -> None:
    ex = Exchange()
    assert ex.request.streaming is True and ex.request.producer is ex.relay.producer
    ex.request.producer.pauseProducing()
    assert ex.backend.producerState == "paused"
    ex.request.producer.resumeProducing()
    assert ex.backend.producerState == "producing"
    assert ex.activity == [0]  # the client let data flow: activity for the stall watchdog


def test_chunks_go_to_the_client_as_they_come_and_the_end_finishes_it() -> None:
    ex = Exchange()
    ex.relay.dataReceived(b"event: message\n")
    ex.relay.dataReceived(b"data: {}\n\n")
    assert ex.request.written == [b"event: message\n", b"data: {}\n\n"]
    assert not ex.request.finished
    ex.relay.connectionLost(Failure(ResponseDone()))
    assert ex.request.finished and ex.request.producer is None
    assert ex.ends == [("complete", None)]
    assert ex.activity == [15, 10]


def test_chunks_go_through_the_transform_and_what_it_holds_is_flushed_at_the_end() -> None:
    held: List[bytes] = []

    def transform(data: bytes) -> bytes:
        held.append(data)
        return b"" if data.startswith(b"hold") else data.upper()

    def flush() -> bytes:
        return b"[" + b"".join(d for d in held if d.startswith(b"hold")) + b"]"

    ex = Exchange(transform, flush)
    for chunk in (b"abc", b"hold-1", b"def"):
        ex.relay.dataReceived(chunk)
    assert ex.request.written == [b"ABC", b"DEF"]  # nothing written for a held chunk
    ex.relay.connectionLost(Failure(PotentialDataLoss()))  # a close-delimited body is complete
    assert ex.request.written == [b"ABC", b"DEF", b"[hold-1]"]
    assert ex.request.finished and ex.ends == [("complete", None)]
    assert ex.activity == [3, 3, 8]


def test_a_cut_upstream_body_cuts_the_client_connection_never_finishing_it() -> None:
    ex = Exchange(flush=lambda: b"must not be sent")
    ex.relay.dataReceived(b"partial")
    reason = Failure(ConnectionLost("backend went away"))
    ex.relay.connectionLost(reason)
    assert ex.request.written == [b"partial"]
    assert not ex.request.finished  # no final chunk: the client sees a truncated body
    assert ex.request.channel.transport.lost
    assert ex.ends == [("upstream_error", reason)]
    # a client that does not read its last bytes is cut off
    ex.clock.advance(9.9)
    assert not ex.request.channel.transport.aborted
    ex.clock.advance(0.2)
    assert ex.request.channel.transport.aborted


def test_a_client_that_reads_its_last_bytes_is_not_aborted() -> None:
    ex = Exchange()
    ex.relay.connectionLost(Failure(ConnectionLost()))
    ex.request.client_done()
    assert ex.clock.getDelayedCalls() == []
    ex.clock.advance(60)
    assert not ex.request.channel.transport.aborted


def test_a_client_that_leaves_closes_the_backend_and_gets_nothing_more() -> None:
    ex = Exchange()
    ex.relay.dataReceived(b"one")
    ex.relay.stop()
    assert ex.backend.producerState == "stopped"
    ex.relay.dataReceived(b"two")
    ex.relay.connectionLost(Failure(ResponseDone()))
    assert ex.request.written == [b"one"] and not ex.request.finished
    assert [outcome for outcome, _ in ex.ends] == ["client_closed"]


# --- parking: an answer that waits for the client's next request (mcpgated.proxy.classic) ----

class Parking:
    """
    A transform that holds everything after a chunk containing "ask", and
    the C{parks} that ends the client's answer there.
    """

    def __init__(self) -> None:
        self.asking = False
        self.held: List[bytes] = []
        self.parked: List[Relay] = []

    def transform(self, data: bytes) -> bytes:
        if self.asking or b"ask" in data:
            self.asking = True
            self.held.append(data)
            return b""
        return data

    def parks(self) -> Optional[bytes]:
        if not self.asking or not self.held:
            return None
        return b"<input required>"

    def resume(self) -> bytes:
        held, self.held, self.asking = self.held, [], False
        return b"".join(held)


def _parking_exchange() -> Tuple[Exchange, Parking]:
    parking = Parking()
    ex = Exchange()
    ex.relay = Relay(ex.request, ex.clock, lambda outcome, reason: ex.ends.append((outcome, reason)),
                     ex.activity.append, parking.transform, None, parking.parks,
                     parking.parked.append)
    ex.relay.makeConnection(ex.backend)
    return ex, parking


def test_an_answer_that_asks_ends_the_client_answer_and_waits_paused() -> None:
    ex, parking = _parking_exchange()
    ex.relay.dataReceived(b"progress;")
    ex.relay.dataReceived(b"ask;")
    assert ex.request.written == [b"progress;", b"<input required>"]
    assert ex.request.finished and ex.request.producer is None
    assert ex.ends == [("complete", None)]  # the first exchange is over
    assert ex.backend.producerState == "paused"  # the backend waits
    assert parking.parked == [ex.relay]
    ex.relay.dataReceived(b"more;")  # what still comes is held, not written
    assert ex.request.written == [b"progress;", b"<input required>"]

    # the client's next request takes the rest
    retry = ClientRequest()
    ends: List[Tuple[str, Optional[Failure]]] = []
    ex.relay.attach(retry, lambda outcome, reason: ends.append((outcome, reason)),
                    ex.activity.append, parking.resume())
    assert retry.written == [b"ask;more;"]
    assert retry.producer is ex.relay.producer and ex.backend.producerState == "producing"
    ex.relay.dataReceived(b"result")
    ex.relay.connectionLost(Failure(ResponseDone()))
    assert retry.written == [b"ask;more;", b"result"] and retry.finished
    assert ends == [("complete", None)] and ex.ends == [("complete", None)]


def test_a_backend_that_ends_while_parked_ends_the_next_request_at_once() -> None:
    ex, parking = _parking_exchange()
    ex.relay.dataReceived(b"ask;")
    ex.relay.dataReceived(b"result")
    ex.relay.connectionLost(Failure(ResponseDone()))
    assert ex.ends == [("complete", None)]
    retry = ClientRequest()
    ends: List[Tuple[str, Optional[Failure]]] = []
    ex.relay.attach(retry, lambda outcome, reason: ends.append((outcome, reason)),
                    ex.activity.append, parking.resume())
    assert retry.written == [b"ask;result"] and retry.finished
    assert ends == [("complete", None)]


def test_a_parked_answer_nobody_comes_back_for_closes_the_backend() -> None:
    ex, parking = _parking_exchange()
    ex.relay.dataReceived(b"ask;")
    ex.relay.expire()
    assert ex.backend.disconnecting or ex.backend.producerState == "stopped"
    ex.relay.connectionLost(Failure(ConnectionLost()))
    assert ex.ends == [("complete", None)]  # the first exchange's end, told once
