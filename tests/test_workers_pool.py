"""
The supervisor in memory: what it spawns, how it restarts dead workers
(backoff doubling, reset after a long life), that stopping drains and
never restarts, the worker count setting.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Dict, List, Tuple

import pytest
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from mcpgated.config import ConfigError, parse_text
from mcpgated.policy.ratelimit import Limiter
from mcpgated.workers.pool import (
    BACKOFF_MAX,
    CONTROL_IN,
    CONTROL_OUT,
    LIMITS_IN,
    LIMITS_OUT,
    Shared,
    Worker,
    WorkerPool,
    worker_argv,
)


class Process:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: List[str] = []
        self.written: List[bytes] = []

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)

    def writeToChild(self, fd: int, data: bytes) -> None:
        self.written.append(data)

    def closeChildFD(self, fd: int) -> None:
        pass


class Reactor(MemoryReactorClock):
    def __init__(self) -> None:
        super().__init__()
        self.spawned: List[Tuple[Worker, List[str], Dict[int, Any]]] = []

    def spawnProcess(self, protocol: Worker, executable: str, args: List[str], env: Any = None,
                     path: Any = None, childFDs: Any = None, **kwargs: Any) -> Process:
        process = Process(1000 + len(self.spawned))
        protocol.makeConnection(process)  # type: ignore[arg-type]
        self.spawned.append((protocol, args, childFDs))
        return process


def make_pool(count: int = 2) -> Tuple[WorkerPool, Reactor]:
    reactor = Reactor()
    pool = WorkerPool(count=count, reactor=reactor, argv=worker_argv("/etc/mcpgated.ini"),
                      limiter=Limiter(reactor),
                      sockets=[Shared(7, socket.AF_INET, "tcp:8082"),
                               Shared(9, socket.AF_INET6, "ssl:8443:privateKey=k.pem")])
    return pool, reactor


def killed(signal: int = 9) -> Failure:
    return Failure(ProcessTerminated(signal=signal))


def test_workers_get_the_sockets_and_the_channel() -> None:
    pool, reactor = make_pool()
    ready = pool.start()
    assert [w.index for w, _, _ in reactor.spawned] == [1, 2]
    worker, args, fds = reactor.spawned[0]
    assert fds == {CONTROL_IN: "w", 1: "r", 2: "r", CONTROL_OUT: "r", LIMITS_OUT: "r", LIMITS_IN: "w",
                   6: 7, 7: 9}
    assert args[1:] == ["-m", "mcpgated.workers.main", "--config", "/etc/mcpgated.ini", "--index", "1",
                        "--listen", f"6:{int(socket.AF_INET)}:tcp:8082",
                        "--listen", f"7:{int(socket.AF_INET6)}:ssl:8443:privateKey=k.pem"]
    fired: List[object] = []
    ready.addCallback(fired.append)
    worker.ready(1000)
    assert fired == []  # ready once every worker serves
    reactor.spawned[1][0].ready(1001)
    assert fired == [None]


def test_a_dead_worker_is_restarted_with_a_growing_backoff_reset_by_a_long_life() -> None:
    pool, reactor = make_pool(1)
    pool.start()
    delays = []
    for _ in range(8):
        worker = pool.workers[1]
        worker.processEnded(killed())
        before = len(reactor.spawned)
        call = reactor.getDelayedCalls()[0]
        delays.append(round(call.getTime() - reactor.seconds(), 3))
        reactor.advance(call.getTime() - reactor.seconds())
        assert len(reactor.spawned) == before + 1
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, BACKOFF_MAX]
    reactor.advance(60)  # a long life: the next death restarts at once again
    pool.workers[1].processEnded(Failure(ProcessDone(0)))
    assert round(reactor.getDelayedCalls()[0].getTime() - reactor.seconds(), 3) == 0.1


def test_stopping_signals_every_worker_waits_and_never_restarts() -> None:
    pool, reactor = make_pool()
    pool.start()
    processes = [w.transport for w, _, _ in reactor.spawned]
    stopped: List[object] = []
    pool.stopService().addCallback(stopped.append)
    assert [p.signals for p in processes] == [["TERM"], ["TERM"]]  # type: ignore[union-attr]
    reactor.spawned[0][0].processEnded(Failure(ProcessDone(0)))
    assert stopped == []
    reactor.spawned[1][0].processEnded(Failure(ProcessDone(0)))
    assert stopped == [None]
    assert pool.workers == {} and len(reactor.spawned) == 2
    reactor.advance(100)
    assert len(reactor.spawned) == 2


def test_a_worker_that_does_not_drain_in_time_is_killed() -> None:
    pool, reactor = make_pool(1)
    pool.start()
    process = reactor.spawned[0][0].transport
    pool.stopService()
    reactor.advance(36)
    assert process.signals == ["TERM", "KILL"]  # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "expected"), [("", 1), ("workers = 3", 3), ("workers = auto", None)])
def test_the_workers_setting(text: str, expected: Any) -> None:
    cfg = parse_text(f"[gateway]\n{text}\n[admin]\ntoken = x\n")
    assert cfg.gateway.workers == (expected if expected is not None else max(1, os.cpu_count() or 1))


@pytest.mark.parametrize("value", ["0", "-1", "two", "257"])
def test_a_bad_workers_setting_names_section_and_key(value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_text(f"[gateway]\nworkers = {value}\n[admin]\ntoken = x\n")
    assert str(raised.value).startswith("[gateway] workers: ")
