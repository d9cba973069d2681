"""
A reload's answer never undoes a newer write (L{mcpgated.writeorder}): the
follower (L{mcpgated.cluster.follower}) reads the store as it was when its
read began; an admin write committed and applied meanwhile, or a later
read's answer applied first, is newer and stays.

The race the real daemon hit (tests/test_analytics_postgres_daemon.py, with
C{[storage] url}): the change feed connects just after the store is read and
reloads everything; a deploy acknowledged while that read ran was wiped by
its older answer, and the gateway answered "No MCP API is deployed" after
the admin API's 200.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web.http_headers import Headers

from mcpgated.admin.api import AdminAPI
from mcpgated.analytics.metrics import Metrics
from mcpgated.cluster.changes import ALL, API, KEYS, PINS, Change
from mcpgated.cluster.follower import StateFollower
from mcpgated.keys import KeyGrant, KeyIndex, hash_key
from mcpgated.model import STOPPED
from mcpgated.policy.pinbook import PinBook
from mcpgated.policy.pinning import PinState
from mcpgated.routing import RouteTable
from mcpgated.store import SQLiteApiStore
from mcpgated.tap import StoreService
from tests.support import ADMIN_TOKEN, api_definition
from tests.test_admin_inprocess import FlushingRoot, inline
from tests.test_follower import FakeStore
from tests.test_pinbook import BLOCK
from tests.test_pinbook import Store as PinStore
from tests.test_routing import matched, record


class SnapshotStore(FakeStore):
    """
    As PostgreSQL answers (READ COMMITTED): a read sees the store as it is
    when it runs; the answer reaches the reactor when the test says
    (L{answer}), whatever was written since.
    """

    def __init__(self) -> None:
        super().__init__()
        self.held: List[Tuple[str, "Deferred[Any]", Any]] = []

    def _answer(self, what: str, value: Any) -> "Deferred[Any]":
        self.reads.append(what)
        try:
            seen = value() if callable(value) else value
        except Exception as e:  # noqa: BLE001 -- NotFound, delivered with the answer
            seen = e
        d: "Deferred[Any]" = Deferred()
        self.held.append((what, d, seen))
        return d

    def answer(self, what: str) -> None:
        """
        Deliver the oldest held answer of C{what} ("api", "routes", "keys", "pins").
        """
        index = next(i for i, (kind, _, _) in enumerate(self.held) if kind == what)
        _, d, seen = self.held.pop(index)
        if isinstance(seen, Exception):
            d.errback(seen)
        else:
            d.callback(seen)

    def start(self) -> "Deferred[int]":
        return succeed(3)

    path = "snapshot"


def _follower() -> Tuple[StateFollower, SnapshotStore, RouteTable, KeyIndex, PinBook]:
    store, routes, keys, clock = SnapshotStore(), RouteTable(), KeyIndex(), Clock()
    pins = PinBook(None, clock)
    routes.load([])
    return StateFollower(store, routes, keys, pins, clock), store, routes, keys, pins


def _read_everything(store: SnapshotStore) -> None:
    """
    Deliver the answers of a L{Change}(ALL): routes, keys, pins.
    """
    for what in ("routes", "keys", "pins"):
        store.answer(what)


def _fired(d: "Deferred[Any]") -> bool:
    seen: List[object] = []
    d.addBoth(seen.append)
    return bool(seen) and seen[0] is None


GRANT = KeyGrant("a1", "Keys", "app", "App", "sub", None)
APPROVED = PinState(approved="f2", status="approved", pending=None, seen="f2")
PENDING = PinState(approved="f1", status="pending", pending="f2", seen="f2")


def test_a_deploy_applied_while_everything_is_read_again_stays_routed() -> None:
    follower, store, routes, _, _ = _follower()
    store.apis["a1"] = record("a1", "/weather", state=STOPPED)  # created, not started
    done = follower.changed(Change(ALL))  # the feed (re)connected: the read sees a1 stopped
    # the admin API deploys a1: committed, applied, answered 200
    store.apis["a1"] = deployed = record("a1", "/weather")
    routes.apply(deployed)
    store.apis["a2"] = record("a2", "/news")  # another node's, committed after the read
    _read_everything(store)
    assert _fired(done)
    assert matched(routes, "/weather/mcp") == "a1:/mcp"
    assert matched(routes, "/news/mcp") is None  # its own notice will bring it
    heard = follower.changed(Change(API, "a2"))
    store.answer("api")
    assert _fired(heard)
    assert matched(routes, "/news/mcp") == "a2:/mcp"


def test_a_stop_or_delete_applied_while_an_api_is_read_again_stays_unrouted() -> None:
    follower, store, routes, _, _ = _follower()
    store.apis["a1"] = record("a1", "/weather")
    store.apis["a2"] = record("a2", "/news")
    routes.load(store.apis.values())
    changed = [follower.changed(Change(API, "a1")), follower.changed(Change(API, "a2"))]
    store.apis["a1"] = stopped = record("a1", "/weather", state=STOPPED)
    routes.apply(stopped)  # the admin API stopped a1
    del store.apis["a2"]
    routes.remove("a2")  # and deleted a2
    store.answer("api")
    store.answer("api")
    assert all(_fired(d) for d in changed)
    assert routes.routes() == []


def test_an_older_read_of_everything_does_not_undo_a_newer_read_of_one_api() -> None:
    follower, store, routes, _, _ = _follower()
    store.apis["a1"] = record("a1", "/v1")
    everything = follower.changed(Change(ALL))  # reads a1 at /v1
    store.apis["a1"] = record("a1", "/v2")  # another node moves it, and says so
    one = follower.changed(Change(API, "a1"))
    store.answer("api")  # the newer answer comes first
    assert _fired(one) and matched(routes, "/v2/mcp") == "a1:/mcp"
    _read_everything(store)
    assert _fired(everything)
    assert matched(routes, "/v2/mcp") == "a1:/mcp" and matched(routes, "/v1/mcp") is None


def test_a_later_read_answering_later_is_applied() -> None:
    follower, store, routes, _, _ = _follower()
    store.apis["a1"] = record("a1", "/v1")
    everything = follower.changed(Change(ALL))
    store.apis["a1"] = record("a1", "/v2")
    one = follower.changed(Change(API, "a1"))
    _read_everything(store)  # the older answer first: applied...
    assert _fired(everything) and matched(routes, "/v1/mcp") == "a1:/mcp"
    store.answer("api")  # ...then the newer one over it
    assert _fired(one) and matched(routes, "/v2/mcp") == "a1:/mcp"


def test_a_key_issued_or_revoked_while_the_keys_are_read_again_stays_so() -> None:
    follower, store, _, keys, _ = _follower()
    revoked = hash_key("k-old")
    store.keys = [(revoked, GRANT), (hash_key("k-other"), GRANT)]
    keys.load(store.keys)
    done = follower.changed(Change(KEYS))  # reads both keys, not the one issued next
    keys.put(hash_key("k-new"), GRANT)  # the admin API issued a key
    keys.remove(revoked)  # and revoked one
    store.answer("keys")
    assert _fired(done)
    assert keys.lookup("a1", "k-new", 0.0) == GRANT
    assert keys.lookup("a1", "k-old", 0.0) is None
    assert keys.lookup("a1", "k-other", 0.0) == GRANT


def test_an_approval_applied_while_the_pins_are_read_again_stays() -> None:
    follower, store, _, _, pins = _follower()
    store.pins = [("a1", "tool", "echo", PENDING)]
    pins.load(store.pins)
    everything = follower.changed(Change(ALL))
    one = follower.changed(Change(PINS, "a1"))
    pins.put("a1", ("tool", "echo"), APPROVED)  # the operator approved: committed, applied
    _read_everything(store)
    store.answer("pins")
    assert _fired(everything) and _fired(one)
    assert dict(pins.states("a1")) == {("tool", "echo"): APPROVED}


def test_a_change_applied_before_the_first_load_lands_stays() -> None:
    # a worker hears its parent's deploy while it still reads the store
    store, routes, keys, clock = SnapshotStore(), RouteTable(), KeyIndex(), Clock()
    pins = PinBook(None, clock)
    follower = StateFollower(store, routes, keys, pins, clock)
    ready: List[None] = []
    StoreService(store, routes, clock, lambda: ready.append(None), keys=keys,
                 pins=pins).startService()
    store.apis["a1"] = record("a1", "/weather")  # deployed after the first read ran
    changed = follower.changed(Change(API, "a1"))
    store.answer("api")
    assert _fired(changed)
    _read_everything(store)  # the first load's answers: older
    assert ready == [None] and routes.ready
    assert matched(routes, "/weather/mcp") == "a1:/mcp"


class HeldStore:
    """
    A real store whose C{list_apis} answers are held: read when asked, given
    to the reactor when the test says, as a slow PostgreSQL pool would.
    """

    def __init__(self, store: SQLiteApiStore) -> None:
        self.store = store
        self.read: "Deferred[None]" = Deferred()
        self.answers: List[Tuple["Deferred[Any]", Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def list_apis(self) -> "Deferred[Any]":
        held: "Deferred[Any]" = Deferred()

        def seen(records: Any) -> None:
            self.answers.append((held, records))
            self.read.callback(None)

        self.store.list_apis().addCallback(seen)
        return held

    def release(self) -> None:
        for held, records in self.answers:
            held.callback(records)


class AdminDeployTests(TestCase):
    """
    Through the admin API, as the daemon serves it (tap.py's wiring of the
    follower and the admin on one routing table), over a real store.
    """

    timeout = 30

    def setUp(self) -> "Deferred[Any]":
        folder = Path(tempfile.mkdtemp(prefix="follower-order-"))
        self.addCleanup(shutil.rmtree, folder, True)
        self.store = SQLiteApiStore(reactor, folder / "data" / "mcpgated.db")
        self.routes = RouteTable()
        self.keys = KeyIndex()
        self.admin = AdminAPI(self.store, self.routes, reactor, token="", analytics=None,
                              metrics=Metrics(dropped=lambda: 0), keys=self.keys, pins=None)
        self.admin.token = ADMIN_TOKEN
        self.held = HeldStore(self.store)
        self.follower = StateFollower(self.held, self.routes, self.keys, None, reactor)
        root = FlushingRoot(self.admin.resource())
        self.stub = StubTreq(root)
        root.flush = self.stub.flush
        self.addCleanup(self.store.stop)
        return Deferred.fromCoroutine(self._load())

    async def _load(self) -> None:
        await self.store.start()
        self.routes.load(await self.store.list_apis())

    async def ask(self, method: str, path: str, body: Optional[Dict[str, Any]] = None
                  ) -> Tuple[int, Any]:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        response = await self.stub.request(method, "http://admin.invalid" + path,
                                           headers=headers, data=data)
        content = await response.content()
        return response.code, json.loads(content) if content else None

    @inline
    async def test_a_deploy_answered_200_is_routed_though_an_older_reload_lands_after(
            self) -> None:
        status, api = await self.ask("POST", "/apis",
                                     api_definition("/mcp-proxy", "http://127.0.0.1:1/mcp"))
        self.assertEqual(status, 201, api)
        reloaded = self.follower.changed(Change(ALL))  # the feed connected: read everything
        await self.held.read  # it has read: the API created, not deployed
        status, deployed = await self.ask("POST", f"/apis/{api['id']}/_deploy")
        self.assertEqual((status, deployed["state"]), (200, "STARTED"), deployed)
        self.held.release()  # the older answer lands after the admin's 200
        await reloaded
        self.assertEqual(matched(self.routes, "/mcp-proxy"), f"{api['id']}:")


def test_an_approval_applied_while_the_gateway_refreshes_an_apis_pins_stays() -> None:
    store, clock = PinStore(), Clock()
    pins = PinBook(store, clock)
    store.states = [("a1", "tool", "echo", PENDING)]
    pins.load(store.states)
    clock.advance(pins.refresh_after + 1)
    pins.check("a1", BLOCK, Headers())  # an old copy: read again
    assert store.reads == 1
    pins.put("a1", ("tool", "echo"), APPROVED)  # the operator approved meanwhile
    store.read()  # the read's answer: from before the approval
    assert dict(pins.states("a1")) == {("tool", "echo"): APPROVED}
