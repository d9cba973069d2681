"""
The gateway's in-memory pin book (mcpgated.policy.pinbook), in the reactor
with a fake clock and a recording store: what reaches the store, what comes
back, refreshes that carry another node's decisions, metrics.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.web.http_headers import Headers

from mcpgated.policy.pinbook import PinBook, session_id
from mcpgated.policy.pinning import (
    APPROVED,
    PENDING,
    EventRecord,
    PinSettings,
    PinState,
    fingerprint,
)
from mcpgated.store import Closed

BLOCK = PinSettings("block")


class Store:
    def __init__(self) -> None:
        self.observed: List[Tuple[Any, ...]] = []
        self.answers: List[Deferred] = []
        self.states: List[Tuple[str, str, str, PinState]] = []
        self.reads = 0
        self.pending_reads: List[Tuple[str, Deferred]] = []

    def observe_pins(self, *args: Any) -> Deferred:
        self.observed.append(args)
        d: Deferred = Deferred()
        self.answers.append(d)
        return d

    def pin_states(self, api_id: str) -> Deferred:
        """
        Answered when the test says (L{read}), as the store thread would.
        """
        self.reads += 1
        d: Deferred = Deferred()
        self.pending_reads.append((api_id, d))
        return d

    def read(self) -> None:
        reads, self.pending_reads = self.pending_reads, []
        for api_id, d in reads:
            d.callback([row for row in self.states if row[0] == api_id])


class Metrics:
    def __init__(self) -> None:
        self.events: List[Tuple[str, str, str]] = []
        self.blocked: Dict[Tuple[str, str], int] = {}

    def pin_event(self, api_id: str, kind: str, type: str) -> None:
        self.events.append((api_id, kind, type))

    def pin_blocked(self, api_id: str, what: str, count: int) -> None:
        self.blocked[(api_id, what)] = self.blocked.get((api_id, what), 0) + count


def _result(description: str) -> Dict[str, Any]:
    return {"tools": [{"name": "add", "description": description}, {"name": "echo"}]}


def _book() -> Tuple[PinBook, Store, Metrics, Clock]:
    clock, store, metrics = Clock(), Store(), Metrics()
    clock.advance(1000)
    book = PinBook(store, clock, metrics)
    book.load([])
    return book, store, metrics, clock


def _list(book: PinBook, description: str, session: bytes = b"s-1") -> List[str]:
    check = book.check("api", BLOCK, Headers({b"mcp-session-id": [session]}))
    check.decide({"method": "tools/list", "params": {}})
    return [t["name"] for t in check.filter_result("tools/list", _result(description))["tools"]]


def test_only_changes_reach_the_store_and_its_answer_is_the_truth() -> None:
    book, store, metrics, clock = _book()
    assert _list(book, "Add.") == ["add", "echo"]
    assert len(store.observed) == 1  # first use: two new pins
    api, kind, items, settings, complete, initial, session, now = store.observed[0]
    assert (api, kind, complete, initial, session) == ("api", "tool", True, True,
                                                       session_id("api", "s-1"))
    _list(book, "Add.")
    assert len(store.observed) == 1  # nothing changed: no write
    # the store (the authority) answers: another node had pinned add differently
    other = fingerprint("tools/list", {"name": "add", "description": "Add (node B)."})
    echo = fingerprint("tools/list", {"name": "echo"})
    store.answers[0].callback(({("tool", "add"): PinState(other, PENDING, None, None),
                                ("tool", "echo"): PinState(echo, APPROVED, None, echo)}, [
        EventRecord(1, "api", "p", "tool", "add", "changed", other, "x", "", None, now)]))
    assert metrics.events == [("api", "tool", "changed")]
    assert _list(book, "Add.") == ["echo"]  # judged against the stored pin now
    assert metrics.blocked[("api", "list_item")] == 1


def test_a_refresh_brings_another_nodes_approval() -> None:
    book, store, metrics, clock = _book()
    _list(book, "Add.")
    _list(book, "Add, and more.")
    for d in store.answers:  # stored as judged here
        d.callback((dict(book.states("api")), []))
    check = book.check("api", BLOCK, Headers())
    assert not check.decide({"method": "tools/call", "params": {"name": "add"}}).allowed
    # an operator approved the new definition on another node
    new = fingerprint("tools/list", {"name": "add", "description": "Add, and more."})
    store.states = [("api", "tool", "add", PinState(new, APPROVED, None, new))]
    assert store.reads == 1  # read at the first request: it had no pin at start
    store.read()
    clock.advance(5)
    book.check("api", BLOCK, Headers())
    assert store.reads == 1  # read at most every refresh_after seconds
    clock.advance(6)
    book.check("api", BLOCK, Headers())
    assert store.reads == 2
    store.read()
    check = book.check("api", BLOCK, Headers())
    assert check.decide({"method": "tools/call", "params": {"name": "add"}}).allowed
    assert metrics.blocked[("api", "call")] == 1


def test_a_refresh_never_undoes_a_change_being_stored() -> None:
    book, store, metrics, clock = _book()
    _list(book, "Add.")
    store.read()  # (empty: read before the first pins were stored)
    store.answers[0].callback((dict(book.states("api")), []))
    store.states = [("api", k, n, state) for (k, n), state in book.states("api").items()]
    clock.advance(11)
    _list(book, "Add, and more.")  # a refresh read asked, then a drift being stored
    assert store.reads == 2 and len(store.observed) == 2
    store.read()  # the read answers first, with the pins as they were
    check = book.check("api", BLOCK, Headers())
    assert not check.decide({"method": "tools/call", "params": {"name": "add"}}).allowed


def test_a_closing_store_is_not_an_error() -> None:
    book, store, metrics, clock = _book()
    store.observe_pins = lambda *args: fail(Closed())  # type: ignore[method-assign]
    assert _list(book, "Add.") == ["add", "echo"]  # served from the copy all the same


def test_pages_are_judged_as_pages() -> None:
    book, store, metrics, clock = _book()
    check = book.check("api", BLOCK, Headers())
    check.decide({"method": "tools/list", "params": {"cursor": "2"}})
    assert check.judges("tools/list") and not check.judges("resources/list")
    check.filter_result("tools/list", {"tools": [{"name": "a"}], "nextCursor": "3"})
    (observed,) = store.observed
    assert observed[4] is False  # not complete: nothing is "removed" by a page
