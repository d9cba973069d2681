"""
A process that hears of a change elsewhere reloads what it names
(L{mcpgated.cluster.follower}): routes, API keys, pins; a burst costs at
most two reads, and a failed read is logged, never raised into the feed.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from mcpgated.cluster.changes import ALL, API, KEYS, PINS, Change
from mcpgated.cluster.follower import StateFollower
from mcpgated.keys import KeyGrant, KeyIndex, hash_key
from mcpgated.model import STOPPED
from mcpgated.policy.pinbook import PinBook
from mcpgated.policy.pinning import PinState
from mcpgated.routing import RouteTable
from mcpgated.store import NotFound, Unavailable
from tests.test_routing import matched, record


class FakeStore:
    """
    Answers from dicts; with C{hold}, reads wait on Deferreds the test fires.
    """

    def __init__(self) -> None:
        self.apis: Dict[str, Any] = {}
        self.keys: List[Tuple[str, KeyGrant]] = []
        self.pins: List[Tuple[str, str, str, PinState]] = []
        self.reads: List[str] = []
        self.hold: Optional[List[Deferred[Any]]] = None
        self.broken = False

    def _answer(self, what: str, value: Any) -> "Deferred[Any]":
        self.reads.append(what)
        if self.broken:
            return fail(Unavailable("connection refused", False))
        if self.hold is not None:
            d: Deferred[Any] = Deferred()
            self.hold.append(d)
            d.addCallback(lambda _: value() if callable(value) else value)
            return d
        return succeed(value() if callable(value) else value)

    def get_api(self, api_id: str) -> "Deferred[Any]":
        def current() -> Any:
            if api_id not in self.apis:
                raise NotFound(api_id)
            return self.apis[api_id]
        return self._answer("api", current)

    def list_apis(self) -> "Deferred[Any]":
        return self._answer("routes", lambda: list(self.apis.values()))

    def usable_keys(self, now: float) -> "Deferred[Any]":
        return self._answer("keys", lambda: list(self.keys))

    def pin_states(self, api_id: Optional[str] = None) -> "Deferred[Any]":
        return self._answer("pins", lambda: [row for row in self.pins
                                             if api_id is None or row[0] == api_id])


def _follower() -> Tuple[StateFollower, FakeStore, RouteTable, KeyIndex, PinBook]:
    store, routes, keys, clock = FakeStore(), RouteTable(), KeyIndex(), Clock()
    pins = PinBook(None, clock)
    routes.load([])
    return StateFollower(store, routes, keys, pins, clock), store, routes, keys, pins


def _fired(d: "Deferred[Any]") -> bool:
    seen: List[object] = []
    d.addBoth(seen.append)
    return bool(seen) and seen[0] is None


def test_a_deploy_elsewhere_is_routed_and_a_stop_unrouted() -> None:
    follower, store, routes, _, _ = _follower()
    store.apis["a1"] = record("a1", "/weather")
    assert _fired(follower.changed(Change(API, "a1")))
    assert matched(routes, "/weather/mcp") == "a1:/mcp"
    store.apis["a1"] = record("a1", "/weather", state=STOPPED)
    assert _fired(follower.changed(Change(API, "a1")))
    assert matched(routes, "/weather/mcp") is None


def test_a_deleted_api_leaves_the_routes() -> None:
    follower, store, routes, _, _ = _follower()
    store.apis["a1"] = record("a1", "/weather")
    follower.changed(Change(API, "a1"))
    del store.apis["a1"]
    assert _fired(follower.changed(Change(API, "a1")))
    assert routes.routes() == []


def test_a_revoked_key_stops_working() -> None:
    follower, store, _, keys, _ = _follower()
    grant = KeyGrant("a1", "Keys", "app", "App", "sub", None)
    store.keys = [(hash_key("k-1"), grant)]
    follower.changed(Change(KEYS))
    assert keys.lookup("a1", "k-1", 0.0) == grant
    store.keys = []
    follower.changed(Change(KEYS))
    assert keys.lookup("a1", "k-1", 0.0) is None


def test_pins_of_one_api_are_replaced() -> None:
    follower, store, _, _, pins = _follower()
    state = PinState(approved="f1", status="approved", pending=None, seen="f1")
    store.pins = [("a1", "tool", "echo", state), ("a2", "tool", "add", state)]
    follower.changed(Change(PINS, "a1"))
    assert dict(pins.states("a1")) == {("tool", "echo"): state}
    assert dict(pins.states("a2")) == {}
    follower.changed(Change(ALL))
    assert dict(pins.states("a2")) == {("tool", "add"): state}


def test_a_burst_costs_two_reads_and_everyone_sees_the_last_state() -> None:
    follower, store, routes, _, _ = _follower()
    store.hold = []
    store.apis["a1"] = record("a1", "/v1")
    first = follower.changed(Change(API, "a1"))
    later = [follower.changed(Change(API, "a1")) for _ in range(5)]
    store.apis["a1"] = record("a1", "/v2")  # written while the first read runs
    store.hold.pop(0).callback(None)
    assert _fired(first) and not any(d.called for d in later)
    store.hold.pop(0).callback(None)
    assert all(_fired(d) for d in later)
    assert store.reads == ["api", "api"]
    assert matched(routes, "/v2/mcp") == "a1:/mcp"


def test_a_failed_read_is_logged_and_the_next_change_reads_again() -> None:
    follower, store, routes, _, _ = _follower()
    store.broken = True
    store.apis["a1"] = record("a1", "/weather")
    assert _fired(follower.changed(Change(ALL)))  # fires, without an error
    assert routes.routes() == []
    store.broken = False
    assert _fired(follower.changed(Change(ALL)))
    assert matched(routes, "/weather/mcp") == "a1:/mcp"
