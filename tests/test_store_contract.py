"""
The IApiStore contract, run against both stores: the embedded SQLite file
and PostgreSQL (a real server, tests/engines.py). Each test gets a fresh
store (a new file, a new database) and calls it as the daemon does, from
a reactor that runs what the store threads hand back.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional

import pytest
from twisted.internet.defer import Deferred
from zope.interface.verify import verifyObject

from mcpgated.cluster.changes import ALL, Change
from mcpgated.cluster.follower import StateFollower
from mcpgated.definitions import InvalidField, parse_definition
from mcpgated.keys import KeyIndex, hash_key
from mcpgated.model import STARTED, STOPPED, ApiDefinition
from mcpgated.policy.pinning import (
    APPROVED,
    CHANGED,
    NEW,
    PENDING,
    REJECTED,
    REMOVED,
    Observed,
    PinSettings,
    PinState,
    canonical,
    fingerprint_of,
)
from mcpgated.policy.pinbook import PinBook
from mcpgated.routing import RouteTable
from mcpgated.store import Closed, Conflict, IApiStore, NotFound, PostgresApiStore, SQLiteApiStore
from mcpgated.subscriptions import ACCEPTED, CLOSED
from mcpgated.tap import StoreService
from tests.engines import PostgresServer
from tests.test_subscriptions import PumpedReactor

PLANS = [
    {"name": "Keyless", "security": "KEY_LESS"},
    {"name": "Keys", "security": "API_KEY"},
    {"name": "Gold", "security": "API_KEY"},
    {"name": "Later", "security": "API_KEY", "status": "STAGING"},
]
FIRST_USE = PinSettings("warn")
REQUIRED = PinSettings("block", "required")


class Store:
    """
    A store and the reactor it answers on: C{store.call("name", ...)}
    returns what the Deferred fired with, or raises what it failed with.
    """

    def __init__(self, make: Callable[[PumpedReactor], Any], opened: List["Store"]) -> None:
        self.make = make
        self.opened = opened
        self.reactor = PumpedReactor()
        self.store = make(self.reactor)
        self.version = self.reactor.wait(self.store.start())
        opened.append(self)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.store, name)
        return lambda *args: self.reactor.wait(method(*args))

    def reopen(self) -> "Store":
        self.reactor.wait(self.store.stop())
        return Store(self.make, self.opened)

    def close(self) -> None:
        self.reactor.wait(self.store.stop())


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened: List[Store] = []
    if request.param == "sqlite":
        path = tmp_path / "data" / "mcpgated.db"
        yield Store(lambda reactor: SQLiteApiStore(reactor, path), opened)
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        url = server.new_database()
        yield Store(lambda reactor: PostgresApiStore(reactor, url), opened)
    for each in opened:
        if not each.store._closing:
            each.close()


def _definition(context_path: str, name: str = "Docs", plans: Optional[List[Any]] = None,
                ) -> ApiDefinition:
    return parse_definition({"name": name, "version": "1.0", "contextPath": context_path,
                             "backend": "http://127.0.0.1:1/mcp", "plans": plans or PLANS})


def _item(name: str, description: str) -> Observed:
    text = canonical({"name": name, "description": description})
    return Observed(name, fingerprint_of(text), text)


# --- API definitions ----------------------------------------------------------------------


def test_opens_migrated_and_empty(store: Store) -> None:
    verifyObject(IApiStore, store.store)
    assert store.version == 3
    assert store.list_apis() == []
    assert store.list_applications() == []
    assert store.usable_keys(0.0) == []
    assert store.pin_states() == []


def test_api_lifecycle(store: Store) -> None:
    created = store.create_api(_definition("/docs"), 100.5)
    assert created.state == STOPPED and created.deployed is None
    assert (created.created_at, created.updated_at, created.deployed_at) == (100.5, 100.5, None)
    assert store.get_api(created.id) == created
    updated = store.update_api(created.id, _definition("/docs", name="Docs 2"), 101.0)
    assert updated.definition.name == "Docs 2" and updated.created_at == 100.5
    deployed = store.deploy_api(created.id, 102.0)
    assert deployed.state == STARTED and deployed.deployed == updated.definition
    assert deployed.deployed_at == 102.0
    # an edit after the deploy leaves the deployed definition alone
    edited = store.update_api(created.id, _definition("/docs", name="Docs 3"), 103.0)
    assert edited.deployed is not None and edited.deployed.name == "Docs 2"
    assert store.set_state(created.id, STOPPED, 104.0).state == STOPPED
    assert store.set_state(created.id, STARTED, 105.0).state == STARTED
    with pytest.raises(Conflict) as refused:
        store.delete_api(created.id)
    assert refused.value.field == "state"
    store.set_state(created.id, STOPPED, 106.0)
    assert store.delete_api(created.id) is None
    with pytest.raises(NotFound):
        store.get_api(created.id)


def test_unknown_ids_are_not_found(store: Store) -> None:
    for call, args in [("get_api", ("nope",)), ("delete_api", ("nope",)),
                       ("deploy_api", ("nope", 1.0)), ("set_state", ("nope", STARTED, 1.0)),
                       ("update_api", ("nope", _definition("/x"), 1.0)),
                       ("list_subscriptions", ("nope",)), ("list_pins", ("nope",)),
                       ("get_application", ("nope",)), ("delete_application", ("nope",))]:
        with pytest.raises(NotFound):
            getattr(store, call)(*args)


def test_oldest_first_whatever_the_ids(store: Store) -> None:
    ids = [store.create_api(_definition(f"/p{i}"), float(t)).id
           for i, t in enumerate([5, 1, 3, 3])]
    listed = [record.id for record in store.list_apis()]
    assert listed == [ids[1], *sorted(ids[2:]), ids[0]]


def test_context_paths_of_deployed_apis_never_overlap(store: Store) -> None:
    first = store.create_api(_definition("/tools"), 1.0)
    store.deploy_api(first.id, 2.0)
    with pytest.raises(InvalidField) as refused:
        store.create_api(_definition("/tools/sub"), 3.0)
    assert refused.value.field == "contextPath"
    other = store.create_api(_definition("/other"), 3.0)
    with pytest.raises(InvalidField):
        store.update_api(other.id, _definition("/tools"), 4.0)
    # a stored-only path may overlap until it is deployed... then the deploy refuses
    store.set_state(first.id, STOPPED, 5.0)
    with pytest.raises(InvalidField):  # deployed (even stopped) paths are reserved
        store.create_api(_definition("/tools"), 6.0)
    assert store.get_api(other.id).definition.context_path == "/other"
    never = store.create_api(_definition("/never"), 7.0)
    with pytest.raises(Conflict) as refused_state:
        store.set_state(never.id, STARTED, 8.0)
    assert refused_state.value.field == "state"


def test_stopped_api_deleted_with_its_closed_subscriptions(store: Store) -> None:
    api = store.create_api(_definition("/gone"), 1.0)
    application = store.create_application("App", "", 1.0)
    subscription = store.create_subscription(api.id, application.id, "Keys", 2.0)
    store.issue_key(api.id, subscription.id, "a" * 64, "mcpk_aaaa", 3.0)
    with pytest.raises(Conflict) as refused:
        store.delete_api(api.id)
    assert refused.value.field == "subscriptions"
    closed, hashes = store.close_subscription(api.id, subscription.id, 4.0)
    assert closed.status == CLOSED and closed.closed_at == 4.0 and hashes == ["a" * 64]
    store.delete_api(api.id)
    assert store.get_application(application.id) == application
    assert store.usable_keys(5.0) == []


# --- applications, subscriptions, keys -------------------------------------------------------


def test_subscriptions_and_their_refusals(store: Store) -> None:
    api = store.create_api(_definition("/subs"), 1.0)
    application = store.create_application("Claude Desktop", "desktop app", 1.0)
    assert store.list_applications() == [application]
    assert application.description == "desktop app"
    subscription = store.create_subscription(api.id, application.id, "Gold", 2.0)
    assert (subscription.status, subscription.plan, subscription.application_name) == \
        (ACCEPTED, "Gold", "Claude Desktop")
    assert store.get_subscription(api.id, subscription.id) == subscription
    assert store.list_subscriptions(api.id) == [subscription]
    with pytest.raises(Conflict):
        store.create_subscription(api.id, application.id, "Gold", 3.0)
    with pytest.raises(InvalidField) as unknown_application:
        store.create_subscription(api.id, "nope", "Gold", 3.0)
    assert unknown_application.value.field == "application"
    for plan in ("Later", "Missing", "Keyless"):
        with pytest.raises(InvalidField) as bad_plan:
            store.create_subscription(api.id, application.id, plan, 3.0)
        assert bad_plan.value.field == "plan"
    other_api = store.create_api(_definition("/elsewhere"), 1.0)
    with pytest.raises(NotFound):
        store.get_subscription(other_api.id, subscription.id)
    store.update_api(api.id, _definition("/subs", plans=PLANS[:2]), 4.0)  # Gold is gone
    with pytest.raises(Conflict) as no_keys:
        store.issue_key(api.id, subscription.id, "b" * 64, "mcpk_bbbb", 5.0)
    assert no_keys.value.field == "plan"
    store.close_subscription(api.id, subscription.id, 6.0)
    with pytest.raises(Conflict):
        store.close_subscription(api.id, subscription.id, 7.0)
    with pytest.raises(Conflict) as closed:
        store.issue_key(api.id, subscription.id, "c" * 64, "mcpk_cccc", 8.0)
    assert closed.value.field == "status"


def test_keys_issued_revoked_rotated_and_usable(store: Store) -> None:
    api = store.create_api(_definition("/keys"), 1.0)
    application = store.create_application("Cursor", "", 1.0)
    subscription = store.create_subscription(api.id, application.id, "Keys", 2.0)
    first = store.issue_key(api.id, subscription.id, "1" * 64, "mcpk_1111", 10.0)
    assert first.key_hash == "1" * 64 and first.key.prefix == "mcpk_1111"
    assert first.grant.api_id == api.id and first.grant.expires_at is None
    second = store.issue_key(api.id, subscription.id, "2" * 64, "mcpk_2222", 11.0)
    revoked, revoked_hash = store.revoke_key(api.id, subscription.id, first.key.id, 12.0)
    assert revoked.revoked_at == 12.0 and revoked_hash == "1" * 64
    again, _ = store.revoke_key(api.id, subscription.id, first.key.id, 13.0)
    assert again.revoked_at == 12.0  # revoking twice changes nothing
    rotated = store.issue_key(api.id, subscription.id, "3" * 64, "mcpk_3333", 20.0, 60.0)
    assert [(h, g.expires_at) for h, g in rotated.replaced] == [("2" * 64, 80.0)]
    listed = store.list_keys(api.id, subscription.id)
    assert [k.id for k in listed] == [first.key.id, second.key.id, rotated.key.id]
    assert [k.expires_at for k in listed] == [None, 80.0, None]
    usable = dict(store.usable_keys(50.0))
    assert set(usable) == {"2" * 64, "3" * 64}
    assert usable["3" * 64].application_name == "Cursor"
    assert set(dict(store.usable_keys(80.0))) == {"3" * 64}  # expired at 80
    with pytest.raises(NotFound) as unknown:
        store.revoke_key(api.id, subscription.id, "nope", 1.0)
    assert unknown.value.field == "keyId"
    hashes = store.delete_application(application.id)
    assert sorted(hashes) == ["1" * 64, "2" * 64, "3" * 64]
    assert store.usable_keys(50.0) == []
    assert store.list_subscriptions(api.id) == []


# --- pins -------------------------------------------------------------------------------------


def test_pins_first_use_drift_and_decisions(store: Store) -> None:
    api = store.create_api(_definition("/pinned"), 1.0)
    echo, add = _item("echo", "Echoes"), _item("add", "Adds")
    states, events = store.observe_pins(api.id, "tool", [echo, add], FIRST_USE, True, True,
                                        "s1", 2.0)
    assert events == []  # the first inventory
    assert states[("tool", "echo")] == PinState(echo.fingerprint, APPROVED, None,
                                                echo.fingerprint)
    changed = _item("echo", "Echoes, differently")
    states, events = store.observe_pins(api.id, "tool", [changed], FIRST_USE, True, False,
                                        "s2", 3.0)
    assert sorted((e.name, e.type) for e in events) == [("add", REMOVED), ("echo", CHANGED)]
    assert states[("tool", "echo")].status == PENDING
    changed_event = next(e for e in events if e.type == CHANGED)
    assert changed_event.session == "s2" and "differently" in changed_event.diff
    # the same drift again is no new event
    assert store.observe_pins(api.id, "tool", [changed], FIRST_USE, True, False, "s3", 4.0)[1] \
        == []
    pins = {p.name: p for p in store.list_pins(api.id)}
    assert list(pins) == ["add", "echo"]
    echo_pin = pins["echo"]
    with pytest.raises(Conflict) as stale:
        store.decide_pin(api.id, echo_pin.id, True, echo.fingerprint, 5.0)
    assert stale.value.field == "fingerprint"
    rejected = store.decide_pin(api.id, echo_pin.id, False, None, 5.0)
    assert rejected.state.status == REJECTED
    approved = store.decide_pin(api.id, echo_pin.id, True, changed.fingerprint, 6.0)
    assert approved.state == PinState(changed.fingerprint, APPROVED, None, changed.fingerprint)
    assert approved.approved_by == "admin"
    with pytest.raises(Conflict):
        store.decide_pin(api.id, echo_pin.id, True, None, 7.0)
    record, history = store.get_pin(api.id, echo_pin.id)
    assert record == approved
    assert [h["action"] for h in history] == ["approved", "rejected", "pinned"]
    with pytest.raises(NotFound):
        store.get_pin(api.id, "nope")
    assert sorted((row[1], row[2]) for row in store.pin_states(api.id)) == \
        [("tool", "add"), ("tool", "echo")]
    assert store.pin_states("other") == []


def test_pin_events_paged_newest_first(store: Store) -> None:
    api = store.create_api(_definition("/events"), 1.0)
    for i in range(5):
        store.observe_pins(api.id, "prompt", [_item(f"p{i}", "x")], REQUIRED, False, False,
                           None, 2.0 + i)
    page, cursor = store.list_pin_events(api.id, 2, None)
    assert [e.name for e in page] == ["p4", "p3"] and all(e.type == NEW for e in page)
    assert cursor == page[-1].id
    rest, end = store.list_pin_events(api.id, 10, cursor)
    assert [e.name for e in rest] == ["p2", "p1", "p0"] and end is None
    assert all(isinstance(e.id, int) for e in page + rest)
    assert page[0].at == 6.0


def test_pins_of_a_deleted_api_are_ignored(store: Store) -> None:
    assert store.observe_pins("gone", "tool", [_item("x", "y")], FIRST_USE, True, True, None,
                              1.0) == ({}, [])


# --- durability and stopping -------------------------------------------------------------------


def test_acknowledged_writes_survive_a_reopen(store: Store) -> None:
    api = store.create_api(_definition("/durable", name="Dürable ✓"), 1.25)
    store.deploy_api(api.id, 2.0)
    application = store.create_application("Ünïcode app", "d", 3.0)
    again = store.reopen()
    record = again.get_api(api.id)
    assert record.definition.name == "Dürable ✓" and record.state == STARTED
    assert record.created_at == 1.25 and not math.isnan(record.updated_at)
    assert again.get_application(application.id) == application
    assert again.version == 3


def test_calls_after_stop_are_refused(store: Store) -> None:
    store.close()
    with pytest.raises(Closed):
        store.list_apis()
    with pytest.raises(Closed):
        store.create_application("late", "", 1.0)


def test_concurrent_calls_all_answer(store: Store) -> None:
    reactor, raw = store.reactor, store.store
    pending = [raw.create_application(f"app {i}", "", float(i)) for i in range(20)]
    pending += [raw.list_apis() for _ in range(5)]
    results: List[Any] = [reactor.wait(d) for d in pending]
    assert sorted(a.name for a in results[:20]) == sorted(f"app {i}" for i in range(20))
    assert len(store.list_applications()) == 20


# --- what the daemon reads from it (mcpgated.tap.StoreService, mcpgated.cluster.follower) --------


def test_the_daemon_loads_routes_keys_and_pins(store: Store) -> None:
    started = store.create_api(_definition("/live"), 1.0)
    store.deploy_api(started.id, 2.0)
    stopped = store.create_api(_definition("/off"), 1.0)
    store.deploy_api(stopped.id, 2.0)
    store.set_state(stopped.id, STOPPED, 3.0)
    application = store.create_application("Agent", "", 1.0)
    subscription = store.create_subscription(started.id, application.id, "Keys", 2.0)
    store.issue_key(started.id, subscription.id, hash_key("mcpk_secret"), "mcpk_sec", 3.0)
    echo = _item("echo", "Echoes")
    store.observe_pins(started.id, "tool", [echo], FIRST_USE, True, True, None, 4.0)
    again = store.reopen()

    routes, keys = RouteTable(), KeyIndex()
    pins = PinBook(again.store, again.reactor)
    ready: "Deferred[None]" = Deferred()
    service = StoreService(again.store, routes, again.reactor, lambda: ready.callback(None),
                           keys=keys, pins=pins)
    service.startService()
    again.reactor.wait(ready)
    assert [route.api_id for route in routes.routes()] == [started.id]
    grant = keys.lookup(started.id, "mcpk_secret", 5.0)
    assert grant is not None and grant.application_name == "Agent"
    assert pins.states(started.id)[("tool", "echo")].approved == echo.fingerprint

    # another process changes the store; the follower brings the copies up to date
    again.set_state(stopped.id, STARTED, 6.0)
    again.close_subscription(started.id, subscription.id, 7.0)
    follower = StateFollower(again.store, routes, keys, pins, again.reactor)
    again.reactor.wait(follower.changed(Change(ALL)))
    assert sorted(route.api_id for route in routes.routes()) == sorted([started.id, stopped.id])
    assert keys.lookup(started.id, "mcpk_secret", 8.0) is None


def test_sqlite_reads_are_not_held_up_by_another_processs_write(tmp_path: Path) -> None:
    # Workers (and the twistd process) share one SQLite file: the reads a
    # change triggers in every process take no lock, so a write held open
    # elsewhere (another process's pins, an admin call) delays none of them.
    import sqlite3

    path = tmp_path / "data" / "mcpgated.db"
    opened: List[Store] = []
    store = Store(lambda reactor: SQLiteApiStore(reactor, path), opened)
    created = store.create_api(_definition("/docs"), 1.0)
    other = sqlite3.connect(str(path), isolation_level=None, timeout=0.1)
    other.execute("BEGIN IMMEDIATE")  # another process's write, in flight
    try:
        reactor = store.reactor
        assert reactor.wait(store.store.get_api(created.id), timeout=2) == created
        assert [r.id for r in reactor.wait(store.store.list_apis(), timeout=2)] == [created.id]
        assert reactor.wait(store.store.usable_keys(0.0), timeout=2) == []
        assert reactor.wait(store.store.pin_states(), timeout=2) == []
    finally:
        other.execute("ROLLBACK")
        other.close()
        store.close()
