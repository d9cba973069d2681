"""
A worker's side of the channel against the parent's, in memory: rate
limits counted once for all workers, changes relayed to the others,
records, access lines and metrics going up.
"""

from __future__ import annotations

import json
from typing import Any, Callable, List, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.test.iosim import FakeTransport, IOPump, connect

from mcpgated.analytics.metrics import Metrics
from mcpgated.analytics.records import CallRecord
from mcpgated.cluster.changes import API, PINS, Change
from mcpgated.logs import AccessLog
from mcpgated.policy.ratelimit import Limiter, RateLimit
from mcpgated.workers.main import (
    RemoteLimiter,
    UpAccessLog,
    Uplink,
    WorkerControl,
    _idle,
    parse_listen,
)
from mcpgated.workers.pool import Worker, WorkerPool
from mcpgated.workers.protocol import LimitClient, LimitServer


class Lines:
    def __init__(self) -> None:
        self.text: List[str] = []

    def lines(self, text: str) -> None:
        self.text.append(text)


class Pipe:
    """
    One direction of a pipe, delivering at once.
    """

    def __init__(self, deliver: Callable[[bytes], None]) -> None:
        self.deliver = deliver
        self.written: List[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)
        self.deliver(data)


def loop_limits(client: LimitClient, pool: WorkerPool) -> None:
    """
    A worker's limits pipe pair to the parent's L{LimitServer}, in memory.
    """
    server = LimitServer(pool.check, client.dataReceived)
    client.makeConnection(Pipe(server.data))  # type: ignore[arg-type]


def setup(count: int = 2) -> Tuple[WorkerPool, List[WorkerControl], List[IOPump], List[CallRecord], Lines]:
    clock = MemoryReactorClock()
    records: List[CallRecord] = []
    access = Lines()
    pool = WorkerPool(count=count, sockets=[], reactor=clock, argv=[], limiter=Limiter(clock),
                      sink=records.append, access_log=access)
    controls, pumps = [], []
    for index in range(1, count + 1):
        worker = Worker(pool, index, 0.0)
        worker.serving = True
        pool.workers[index] = worker
        control = WorkerControl()
        pumps.append(connect(worker.control, FakeTransport(worker.control, True),
                             control, FakeTransport(control, False)))
        loop_limits(control.limits, pool)
        controls.append(control)
    return pool, controls, pumps, records, access


def flush(pumps: List[IOPump]) -> None:
    for _ in range(3):
        for pump in pumps:
            pump.flush()


def answer(d: "Deferred[Any]", pumps: List[IOPump], clock: Any = None) -> Any:
    if clock is not None:
        clock.advance(0)
    flush(pumps)
    got: List[Any] = []
    d.addBoth(got.append)
    assert got, "no answer"
    return got[0]


def test_a_parent_gone_fails_the_questions_waiting() -> None:
    client = LimitClient()
    client.makeConnection(Pipe(lambda data: None))  # type: ignore[arg-type]
    waiting = client.ask([["{}", "who", [["ping", None]]]])
    failures: List[Any] = []
    waiting.addErrback(failures.append)
    client.connectionLost(None)
    assert len(failures) == 1 and failures[0].check(ConnectionError)
    client.ask([]).addErrback(failures.append)
    assert len(failures) == 2


def test_a_limit_is_counted_once_for_all_workers() -> None:
    pool, controls, pumps, _, _ = setup()
    limit = RateLimit(period=60.0, requests=3, tool_calls=2, scope="plan")
    clock = pool.reactor
    one, two = RemoteLimiter(controls[0].limits, clock), RemoteLimiter(controls[1].limits, clock)
    who = ("api-1", "Gold", ("sub", "alice"))
    calls = [("tools/call", "echo")]
    assert answer(one.check_all(limit, who, calls), pumps, clock) is None
    assert answer(two.check_all(limit, who, calls), pumps, clock) is None
    # tool calls spent (2 of 2) across both workers: a third is refused on either
    wait = answer(one.check_all(limit, who, calls), pumps, clock)
    assert isinstance(wait, float) and 0 < wait <= 60
    assert answer(two.check_all(limit, who, [("tools/list", None)]), pumps, clock) is None
    # requests: 3 of 3 spent; a batch is all or nothing
    assert answer(two.check_all(limit, who, [("ping", None)]), pumps, clock) is not None
    # another subject has its own budget
    assert answer(one.check_all(limit, ("api-1", "Gold", ("sub", "bob")), calls), pumps, clock) is None


def test_decisions_of_one_turn_go_in_one_question_answered_in_order() -> None:
    pool, controls, pumps, _, _ = setup(1)
    clock = pool.reactor
    limiter = RemoteLimiter(controls[0].limits, clock)
    limit = RateLimit(period=60.0, requests=3)
    asked = [limiter.check_all(limit, ("api-1", "Open", "127.0.0.1"), [("ping", None)]) for _ in range(5)]
    pipe = controls[0].limits.transport
    assert pipe is not None and pipe.written == []  # type: ignore[attr-defined]
    clock.advance(0)
    assert len(pipe.written) == 1  # type: ignore[attr-defined]  # one line for the five
    answers: List[Any] = []
    for d in asked:
        d.addCallback(answers.append)
    assert answers[:3] == [None, None, None] and all(isinstance(w, float) and w > 0 for w in answers[3:])


def test_changes_go_to_every_worker_and_a_workers_own_to_the_others() -> None:
    pool, controls, pumps, _, _ = setup(3)
    heard: List[List[Change]] = [[] for _ in controls]
    for control, seen in zip(controls, heard, strict=True):
        control.feed.subscribe(seen.append)
    parent: List[Change] = []
    pool.feed.subscribe(parent.append)

    pool.feed.publish(Change(API, "api-1"))
    flush(pumps)
    assert heard == [[Change(API, "api-1")]] * 3 and parent == []

    controls[1].feed.publish(Change(PINS, "api-2"))
    flush(pumps)
    assert parent == [Change(PINS, "api-2")]
    assert heard[0][-1] == Change(PINS, "api-2") and heard[2][-1] == Change(PINS, "api-2")
    assert heard[1] == [Change(API, "api-1")]  # not told its own change


def test_records_and_access_lines_go_up_in_batches() -> None:
    pool, controls, pumps, records, access = setup(1)
    clock = MemoryReactorClock()
    lines = UpAccessLog(clock, None)
    lines.control = controls[0]
    lines.logfile = True  # type: ignore[assignment]
    uplink = Uplink(controls[0], clock, access=lines)
    uplink.start()
    sent = [CallRecord(float(n), "api-1", "Weather", "Gold", "127.0.0.1", "tools/call", "request",
                       target="forecast", outcome="result", latency_ms=1.5, bytes_in=10,
                       request_payload="x" * 70000 if n == 2 else None, truncated=n == 1)
            for n in range(3)]
    for record in sent:
        uplink.record(record)
    lines.record({"path": "/mcp", "status": 200})
    flush(pumps)
    assert records == [] and access.text == []  # not before the flush interval
    clock.advance(0.1)
    flush(pumps)
    assert records == sent
    assert [json.loads(line) for line in "".join(access.text).splitlines()] == [
        {"path": "/mcp", "status": 200}]


def test_scrape_gathers_every_workers_metrics() -> None:
    pool, controls, pumps, _, _ = setup()
    for n, control in enumerate(controls, 1):
        control.metrics = Metrics()
        for _ in range(n):
            control.metrics.exchange("api-1", 200)
    got = answer(pool.scrape(), pumps)
    counts = []
    for payload in got:
        families = json.loads(payload)
        counts.append(next(s[2] for f in families for s in f[4] if s[0] == "mcpgated_http_requests_total"))
    assert sorted(counts) == [1.0, 2.0]


def test_listen_arguments_and_idle_channels() -> None:
    listening = parse_listen("5:2:ssl:0:interface=127.0.0.1:privateKey=k\\:x.pem")
    assert (listening.fd, listening.family, listening.description) == (
        5, 2, "ssl:0:interface=127.0.0.1:privateKey=k\\:x.pem")

    class Channel:
        def __init__(self) -> None:
            self.active: Optional[object] = None
            self.parsing: Optional[object] = None
            self.ready: List[object] = []

    channel = Channel()
    assert _idle(channel)
    channel.active = object()
    assert not _idle(channel)
    assert isinstance(AccessLog(MemoryReactorClock(), None), AccessLog)
