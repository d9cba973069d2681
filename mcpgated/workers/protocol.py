"""
The control channel between the twistd process and each gateway worker:
Twisted AMP over the worker's standard input (parent to worker) and its
file descriptor 3 (worker to parent).

- L{Changed}, both ways: news of a committed write (L{Change} JSON).
- L{Part}, both ways: a piece of a payload larger than one AMP value may
  carry (64 KiB): exchange records and access-log lines going up, metric
  snapshots answering L{Scrape}.
- L{Scrape}, parent to worker: send your metrics (as L{Part}s) now.
- L{Ready}, worker to parent: serving (the listening sockets adopted).

Rate-limit decisions (counted in the parent: exact across workers without
Redis) have a pipe pair of their own with plainer framing than AMP's, as
they are asked on the request path: the worker writes a JSON line per
batch (the decisions of one reactor turn: L{LimitClient}), the parent
answers each line with one (L{answer_checks}), in order.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any, Callable, ClassVar, Deque, Dict, List, Optional, Tuple

from twisted.internet.address import UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.protocols import amp

# an AMP value holds at most 65535 bytes
PART_SIZE = 60000

RECORDS = "records"  # exchange records: JSON [[column values...], ...]
ACCESS = "access"  # access-log lines, as written
METRICS = "metrics"  # a metrics snapshot (mcpgated.workers.metrics)


class Changed(amp.Command):
    arguments: ClassVar[List[Tuple[bytes, Any]]] = [(b"change", amp.Unicode())]
    response: ClassVar[List[Tuple[bytes, Any]]] = []


class Part(amp.Command):
    arguments: ClassVar[List[Tuple[bytes, Any]]] = [
        (b"kind", amp.Unicode()), (b"data", amp.String()), (b"final", amp.Boolean())]
    requiresAnswer = False


class Scrape(amp.Command):
    arguments: ClassVar[List[Tuple[bytes, Any]]] = []
    response: ClassVar[List[Tuple[bytes, Any]]] = []


class Ready(amp.Command):
    arguments: ClassVar[List[Tuple[bytes, Any]]] = [(b"pid", amp.Integer())]
    response: ClassVar[List[Tuple[bytes, Any]]] = []


class Control(amp.AMP):
    """
    One end of the channel. C{on_part(kind, payload)} is called with each
    whole payload sent by L{send}; C{on_lost()} when the channel closes.
    """

    def __init__(self, locator: Any = None) -> None:
        amp.AMP.__init__(self, locator=locator)
        self._parts: Dict[str, List[bytes]] = {}
        self.on_part: Callable[[str, bytes], None] = lambda kind, payload: None
        self.on_lost: Callable[[], None] = lambda: None

    # AMP logs each connection made and lost: these are pipes to a child
    def makeConnection(self, transport: Any) -> None:
        amp.BinaryBoxProtocol.makeConnection(self, transport)

    def connectionLost(self, reason: Optional[Any] = None) -> None:
        amp.BinaryBoxProtocol.connectionLost(self, reason)
        self.transport = None
        self.on_lost()

    def send(self, kind: str, payload: bytes) -> None:
        """
        Send C{payload} as one or more L{Part}s (AMP keeps their order).
        """
        if self.transport is None:
            return
        size = len(payload)
        start = 0
        while True:
            end = start + PART_SIZE
            self.callRemote(Part, kind=kind, data=payload[start:end], final=end >= size)
            if end >= size:
                return
            start = end

    @Part.responder
    def _part(self, kind: str, data: bytes, final: bool) -> Dict[str, Any]:
        if not final:
            self._parts.setdefault(kind, []).append(data)
            return {}
        pieces = self._parts.pop(kind, None)
        if pieces is not None:
            pieces.append(data)
            data = b"".join(pieces)
        self.on_part(kind, data)
        return {}


class PipeTransport:
    """
    The parent's end: writes go to the child's standard input through its
    process transport; what the child writes on fd 3 is given to the
    protocol by the process protocol.
    """

    def __init__(self, process: Any, fd: int = 0) -> None:
        self.process = process
        self.fd = fd
        self.disconnecting = False

    def write(self, data: bytes) -> None:
        if not self.disconnecting:
            self.process.writeToChild(self.fd, data)

    def writeSequence(self, data: List[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        if not self.disconnecting:
            self.disconnecting = True
            self.process.closeChildFD(self.fd)

    def getPeer(self) -> UNIXAddress:
        return UNIXAddress(None)

    def getHost(self) -> UNIXAddress:
        return UNIXAddress(None)


class LimitClient(Protocol):
    """
    The worker's end of the limits pipe: C{ask(checks)} sends one batch
    (C{[[limit JSON, who, [[method, tool], ...]], ...]}) and fires with
    its answers (L{None} or seconds to wait, one per check) once the
    parent's line for it comes.
    """

    def __init__(self) -> None:
        self._waiting: Deque["Deferred[List[Optional[float]]]"] = deque()
        self._rest = b""

    def ask(self, checks: List[Any]) -> "Deferred[List[Optional[float]]]":
        d: Deferred[List[Optional[float]]] = Deferred()
        if self.transport is None:
            d.errback(ConnectionError("the parent is gone"))
            return d
        self._waiting.append(d)
        self.transport.write(json.dumps(checks, separators=(",", ":")).encode() + b"\n")
        return d

    def dataReceived(self, data: bytes) -> None:
        lines = (self._rest + data).split(b"\n")
        self._rest = lines.pop()
        for line in lines:
            self._waiting.popleft().callback(json.loads(line))

    def connectionLost(self, reason: Any = None) -> None:
        self.transport = None
        waiting, self._waiting = self._waiting, deque()
        for d in waiting:
            d.errback(ConnectionError("the parent is gone"))


class LimitServer:
    """
    The parent's end: each whole line is a batch, answered by a line of
    C{decide(limit JSON, who, calls)}'s results, in order.
    """

    def __init__(self, decide: Callable[[str, Any, List[List[Any]]], Optional[float]],
                 write: Callable[[bytes], None]) -> None:
        self._decide = decide
        self._write = write
        self._rest = b""

    def data(self, data: bytes) -> None:
        lines = (self._rest + data).split(b"\n")
        self._rest = lines.pop()
        if not lines:
            return
        decide = self._decide
        out = []
        for line in lines:
            out.append(json.dumps([decide(limit, who, calls) for limit, who, calls in json.loads(line)],
                                  separators=(",", ":")).encode())
        self._write(b"\n".join(out) + b"\n")
