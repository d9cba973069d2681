"""
The control channel's framing in memory: payloads larger than an AMP value
arrive whole and in order; a closed channel sends nothing.
"""

from __future__ import annotations

from typing import List, Tuple

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, IOPump, connect

from mcpgated.workers.protocol import PART_SIZE, Control


def pair() -> Tuple[Control, Control, IOPump, List[Tuple[str, bytes]]]:
    parent, worker = Control(), Control()
    received: List[Tuple[str, bytes]] = []
    parent.on_part = lambda kind, payload: received.append((kind, payload))
    pump = connect(parent, FakeTransport(parent, True), worker, FakeTransport(worker, False))
    return parent, worker, pump, received


def test_payloads_of_any_size_arrive_whole_and_in_order() -> None:
    _, worker, pump, received = pair()
    big = bytes(range(256)) * (PART_SIZE // 64)  # four parts and a bit
    worker.send("records", b"")
    worker.send("records", big)
    worker.send("access", b"line\n")
    worker.send("records", b"[1]")
    pump.flush()
    assert received == [("records", b""), ("records", big), ("access", b"line\n"), ("records", b"[1]")]


def test_parts_of_two_kinds_interleaved_are_kept_apart() -> None:
    _, worker, pump, received = pair()
    first = b"a" * (PART_SIZE + 10)
    worker.send("records", first)
    worker.send("access", b"b" * (PART_SIZE * 2))
    pump.flush()
    assert [kind for kind, _ in received] == ["records", "access"]
    assert received[0][1] == first and received[1][1] == b"b" * (PART_SIZE * 2)


def test_a_closed_channel_sends_nothing_and_says_so() -> None:
    _, worker, pump, received = pair()
    lost: List[bool] = []
    worker.on_lost = lambda: lost.append(True)
    worker.connectionLost(Failure(ConnectionDone()))
    worker.send("records", b"[1]")
    pump.flush()
    assert received == [] and lost == [True]
