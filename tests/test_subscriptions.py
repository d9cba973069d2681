"""
Applications, subscriptions and API keys: the admin API against a real
daemon (keys shown once, stored hashed, revoked, rotated with a grace
period, closed with their subscription), the database file read after the
daemon stops, and the reactor-side KeyIndex rebuilt from that file
(KeyIndex itself: tests/test_keys.py).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import queue
import sqlite3
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from mcpgated.definitions import InvalidField, parse_definition
from mcpgated.keys import KeyGrant, KeyIndex
from mcpgated.routing import RouteTable
from mcpgated.store import IApiStore, SQLiteApiStore
from mcpgated.subscriptions import (
    DEFAULT_ROTATION_GRACE,
    MAX_ROTATION_GRACE,
    parse_application,
    parse_rotation,
    parse_subscription_request,
    subscribable_plan,
)
from mcpgated.tap import StoreService
from tests.support import Daemon, http

UNREACHABLE = "http://127.0.0.1:1/mcp"
PLANS = [
    {"name": "Keyless", "security": "KEY_LESS"},
    {"name": "Keys", "security": "API_KEY"},
    {"name": "Gold", "security": "API_KEY", "description": "more calls"},
    {"name": "Later", "security": "API_KEY", "status": "STAGING"},
    {"name": "Retired", "security": "API_KEY", "status": "CLOSED"},
]


def _api(daemon: Daemon, context_path: str, plans: List[Dict[str, Any]] = PLANS) -> str:
    status, api = daemon.admin("POST", "/apis", {
        "name": "Keyed", "version": "1.0", "contextPath": context_path, "backend": UNREACHABLE,
        "plans": plans})
    assert status == 201, api
    return api["id"]


def _ok(daemon: Daemon, method: str, path: str, body: Any = None, expected: int = 200) -> Any:
    status, answer = daemon.admin(method, path, body)
    assert status == expected, (method, path, status, answer)
    return answer


def _application(daemon: Daemon, name: str = "Claude Desktop") -> Dict[str, Any]:
    return _ok(daemon, "POST", "/applications", {"name": name}, 201)


def _subscribe(daemon: Daemon, api_id: str, application_id: str, plan: str = "Keys"
               ) -> Dict[str, Any]:
    return _ok(daemon, "POST", f"/apis/{api_id}/subscriptions",
               {"application": application_id, "plan": plan}, 201)


def _when(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _keys(daemon: Daemon, base: str) -> Dict[str, Dict[str, Any]]:
    return {key["id"]: key for key in _ok(daemon, "GET", f"{base}/keys")["data"]}


# --- the admin API ---------------------------------------------------------------------


def test_applications(daemon):
    assert _ok(daemon, "GET", "/applications") == {"data": []}
    status, headers, data = http("POST", daemon.admin_url + "/applications",
                                 {"name": " Cursor ", "description": "the IDE"},
                                 {"Authorization": f"Bearer {daemon.token}"})
    assert status == 201
    created = json.loads(data)
    assert headers["Location"] == f"/applications/{created['id']}"
    assert headers["Cache-Control"] == "no-store"
    assert set(created) == {"id", "name", "description", "createdAt"}
    assert (created["name"], created["description"]) == ("Cursor", "the IDE")
    other = _application(daemon, "Other")
    assert _ok(daemon, "GET", f"/applications/{created['id']}") == created
    assert _ok(daemon, "GET", "/applications") == {"data": [created, other]}

    for body, field in (({}, "name"), ({"name": ""}, "name"), ({"name": 3}, "name"),
                        ({"name": "x" * 101}, "name"), ({"name": "a", "owner": "b"}, "owner"),
                        ([], None)):
        status, answer = daemon.admin("POST", "/applications", body)
        assert (status, answer["field"]) == (400, field), (body, answer)
    status, answer = daemon.admin("POST", "/applications", raw=b"{nope")
    assert status == 400 and answer["error"].startswith("malformed JSON")

    assert daemon.admin("GET", "/applications/nope") == (
        404, {"error": "no application with this id", "field": "applicationId"})
    assert _ok(daemon, "DELETE", f"/applications/{other['id']}", expected=204) is None
    assert daemon.admin("DELETE", f"/applications/{other['id']}")[0] == 404
    assert _ok(daemon, "GET", "/applications") == {"data": [created]}


def test_subscriptions_refused(daemon):
    api_id = _api(daemon, "/refused")
    application = _application(daemon)
    path = f"/apis/{api_id}/subscriptions"
    for body, field, words in (
        ({"application": "nope", "plan": "Keys"}, "application", "no application"),
        ({"application": application["id"], "plan": "Bronze"}, "plan", "no plan named"),
        ({"application": application["id"], "plan": "keys"}, "plan", "no plan named"),
        ({"application": application["id"], "plan": "Keyless"}, "plan", "KEY_LESS"),
        ({"application": application["id"], "plan": "Later"}, "plan", "STAGING"),
        ({"application": application["id"], "plan": "Retired"}, "plan", "CLOSED"),
        ({"application": application["id"]}, "plan", "required"),
        ({"plan": "Keys"}, "application", "required"),
        ({"application": application["id"], "plan": "Keys", "status": "CLOSED"}, "status",
         "not a known field"),
        ("Keys", None, "JSON object"),
    ):
        status, answer = daemon.admin("POST", path, body)
        assert (status, answer["field"]) == (400, field), (body, answer)
        assert words in answer["error"], (body, answer)
    assert daemon.admin("POST", "/apis/nope/subscriptions",
                        {"application": application["id"], "plan": "Keys"}) == (
        404, {"error": "no API with this id", "field": "id"})
    assert daemon.admin("GET", "/apis/nope/subscriptions")[0] == 404
    assert _ok(daemon, "GET", path) == {"data": []}  # nothing was stored

    subscription = _subscribe(daemon, api_id, application["id"])
    status, answer = daemon.admin("POST", path, {"application": application["id"], "plan": "Keys"})
    assert (status, answer["field"]) == (409, "plan")  # one ACCEPTED subscription per plan
    # Another plan, and the same plan once the first subscription is closed, are fine.
    _subscribe(daemon, api_id, application["id"], "Gold")
    _ok(daemon, "POST", f"{path}/{subscription['id']}/_close")
    _subscribe(daemon, api_id, application["id"])

    # A subscription is found only under its own API.
    other_api = _api(daemon, "/other")
    assert daemon.admin("GET", f"/apis/{other_api}/subscriptions/{subscription['id']}") == (
        404, {"error": "no subscription with this id on this API", "field": "subscriptionId"})
    for method, suffix in (("GET", "/keys"), ("POST", "/keys"), ("POST", "/keys/_rotate"),
                           ("POST", "/_close")):
        status, answer = daemon.admin(method, f"/apis/{other_api}/subscriptions/"
                                              f"{subscription['id']}{suffix}")
        assert (status, answer["field"]) == (404, "subscriptionId"), (method, suffix)

    # Keys only for API_KEY plans: not once the stored plan is KEY_LESS, or gone.
    gold = _subscribe(daemon, other_api, application["id"], "Gold")
    definition = _ok(daemon, "GET", f"/apis/{other_api}")
    for plans in ([PLANS[0], {"name": "Gold", "security": "KEY_LESS"}], [PLANS[0]]):
        definition["plans"] = plans
        _ok(daemon, "PUT", f"/apis/{other_api}", definition)
        for suffix in ("/keys", "/keys/_rotate"):
            status, answer = daemon.admin("POST", f"/apis/{other_api}/subscriptions/"
                                                  f"{gold['id']}{suffix}")
            assert (status, answer["field"]) == (409, "plan"), (plans, answer)
            assert "API keys are for API_KEY plans" in answer["error"]

    # JWT and OAUTH2 plans take subscriptions, but not API keys.
    token_api = _api(daemon, "/tokens", [{"name": "Jwt", "security": "JWT", "configuration": {
        "issuer": "https://issuer.example", "jwksUrl": "https://issuer.example/jwks"}}])
    jwt = _subscribe(daemon, token_api, application["id"], "Jwt")
    assert (jwt["plan"], jwt["status"]) == ("Jwt", "ACCEPTED")
    status, answer = daemon.admin("POST", f"/apis/{token_api}/subscriptions/{jwt['id']}/keys")
    assert (status, answer["field"]) == (409, "plan") and "is JWT" in answer["error"]


def test_key_lifecycle(tmp_path):
    daemon = Daemon(tmp_path).start()
    issued: List[str] = []
    try:
        api_id = _api(daemon, "/keyed")
        application = _application(daemon, "Cursor")
        subscription = _subscribe(daemon, api_id, application["id"])
        assert set(subscription) == {"id", "api", "plan", "application", "applicationName",
                                     "status", "createdAt", "closedAt"}
        assert (subscription["api"], subscription["plan"], subscription["application"],
                subscription["applicationName"], subscription["status"],
                subscription["closedAt"]) == (api_id, "Keys", application["id"], "Cursor",
                                              "ACCEPTED", None)
        base = f"/apis/{api_id}/subscriptions/{subscription['id']}"
        assert _ok(daemon, "GET", base) == subscription
        assert _ok(daemon, "GET", f"/apis/{api_id}/subscriptions") == {"data": [subscription]}

        # Issued: the key is in this answer and nowhere else.
        status, headers, data = http("POST", daemon.admin_url + base + "/keys", None,
                                     {"Authorization": f"Bearer {daemon.token}"})
        assert status == 201 and headers["Cache-Control"] == "no-store"
        first = json.loads(data)
        assert set(first) == {"id", "key", "prefix", "createdAt", "expiresAt"}
        assert len(first["key"]) >= 43 and first["prefix"] == first["key"][:6]
        assert first["expiresAt"] is None
        issued.append(first["key"])
        second = _ok(daemon, "POST", f"{base}/keys", expected=201)
        issued.append(second["key"])
        assert second["key"] != first["key"]
        listing = _ok(daemon, "GET", f"{base}/keys")
        assert [k["id"] for k in listing["data"]] == [first["id"], second["id"]]
        for key in listing["data"]:
            assert set(key) == {"id", "subscription", "prefix", "status", "createdAt",
                                "expiresAt", "revokedAt"}
            assert key["status"] == "ACTIVE" and key["subscription"] == subscription["id"]
        text = json.dumps([listing, _ok(daemon, "GET", base),
                           _ok(daemon, "GET", f"/apis/{api_id}/subscriptions"),
                           _ok(daemon, "GET", f"/apis/{api_id}")])
        assert first["key"] not in text and second["key"] not in text

        # Revoked: at once, for good (revoking again changes nothing).
        assert _ok(daemon, "DELETE", f"{base}/keys/{first['id']}", expected=204) is None
        revoked = _keys(daemon, base)[first["id"]]
        assert revoked["status"] == "REVOKED" and revoked["revokedAt"] is not None
        _ok(daemon, "DELETE", f"{base}/keys/{first['id']}", expected=204)
        assert _keys(daemon, base)[first["id"]] == revoked
        assert daemon.admin("DELETE", f"{base}/keys/nope") == (
            404, {"error": "no key with this id on this subscription", "field": "keyId"})

        # Rotated: a new key; the current ones keep working for the grace period.
        third = _ok(daemon, "POST", f"{base}/keys/_rotate", {"expireOldAfter": 600}, 201)
        issued.append(third["key"])
        keys = _keys(daemon, base)
        assert keys[second["id"]]["status"] == "ACTIVE"
        assert _when(keys[second["id"]]["expiresAt"]) == pytest.approx(
            _when(third["createdAt"]) + 600, abs=2)
        assert keys[third["id"]]["expiresAt"] is None
        assert keys[first["id"]] == revoked  # a revoked key is not given an expiry
        # A longer grace never extends an expiry already set ...
        fourth = _ok(daemon, "POST", f"{base}/keys/_rotate", {"expireOldAfter": 3600}, 201)
        issued.append(fourth["key"])
        before, keys = keys, _keys(daemon, base)
        assert keys[second["id"]] == before[second["id"]]
        assert _when(keys[third["id"]]["expiresAt"]) == pytest.approx(
            _when(fourth["createdAt"]) + 3600, abs=2)
        # ... and 0 ends every current key at once.
        fifth = _ok(daemon, "POST", f"{base}/keys/_rotate", {"expireOldAfter": 0}, 201)
        issued.append(fifth["key"])
        keys = _keys(daemon, base)
        assert [keys[k["id"]]["status"] for k in (first, second, third, fourth, fifth)] == [
            "REVOKED", "EXPIRED", "EXPIRED", "EXPIRED", "ACTIVE"]
        assert _when(keys[fourth["id"]]["expiresAt"]) <= _when(fifth["createdAt"]) + 1
        # Without a body (or with {}), the grace is an hour.
        sixth = _ok(daemon, "POST", f"{base}/keys/_rotate", None, 201)
        issued.append(sixth["key"])
        keys = _keys(daemon, base)
        assert _when(keys[fifth["id"]]["expiresAt"]) == pytest.approx(
            _when(sixth["createdAt"]) + 3600, abs=2)
        issued.append(_ok(daemon, "POST", f"{base}/keys/_rotate", {}, 201)["key"])

        for body in ({"expireOldAfter": -1}, {"expireOldAfter": "60"},
                     {"expireOldAfter": True}, {"expireOldAfter": 1.5},
                     {"expireOldAfter": 10 ** 9}, {"grace": 5}, [60]):
            status, answer = daemon.admin("POST", f"{base}/keys/_rotate", body)
            assert status == 400, (body, answer)
        count = len(_keys(daemon, base))

        # Closed: every key is revoked, no new key, and the API can then be deleted.
        assert daemon.admin("DELETE", f"/apis/{api_id}") == (409, {
            "error": "the API has 1 ACCEPTED subscription(s): close them "
                     "(POST /apis/{id}/subscriptions/{sid}/_close) before deleting",
            "field": "subscriptions"})
        closed = _ok(daemon, "POST", f"{base}/_close")
        assert closed["status"] == "CLOSED" and closed["closedAt"] is not None
        assert {k["status"] for k in _keys(daemon, base).values()} == {"REVOKED"}
        for method, suffix in (("POST", "/_close"), ("POST", "/keys"),
                               ("POST", "/keys/_rotate")):
            status, answer = daemon.admin(method, base + suffix)
            assert (status, answer["field"]) == (409, "status"), (suffix, answer)
        assert len(_keys(daemon, base)) == count

        # A second API keeps its subscription and keys across a restart (below).
        kept_api = _api(daemon, "/kept")
        kept = _subscribe(daemon, kept_api, application["id"])
        kept_key = _ok(daemon, "POST", f"/apis/{kept_api}/subscriptions/{kept['id']}/keys",
                       expected=201)
        issued.append(kept_key["key"])

        _ok(daemon, "DELETE", f"/apis/{api_id}", expected=204)
        assert daemon.admin("GET", base)[0] == 404
    finally:
        daemon.stop()

    # The database never holds a key, only its SHA-256.
    files = sorted((tmp_path / "data").glob("mcpgated.db*"))
    assert files
    stored = b"".join(path.read_bytes() for path in files)
    for key in issued:
        assert key.encode() not in stored
    with sqlite3.connect(tmp_path / "data" / "mcpgated.db") as connection:
        rows = connection.execute("SELECT key_hash, prefix FROM api_keys").fetchall()
        # The deleted API's subscription and keys went with it.
        assert connection.execute("SELECT COUNT(*) FROM subscriptions").fetchone()[0] == 1
    assert rows == [(hashlib.sha256(kept_key["key"].encode()).hexdigest(),
                     kept_key["key"][:6])]

    daemon.start()
    try:
        assert _ok(daemon, "GET", f"/apis/{kept_api}/subscriptions/{kept['id']}") == kept
        assert _keys(daemon, f"/apis/{kept_api}/subscriptions/{kept['id']}")[
            kept_key["id"]]["status"] == "ACTIVE"
        # Deleting the application deletes its subscriptions and keys.
        _ok(daemon, "DELETE", f"/applications/{application['id']}", expected=204)
        assert _ok(daemon, "GET", f"/apis/{kept_api}/subscriptions") == {"data": []}
    finally:
        daemon.stop()


# --- the KeyIndex the store rebuilds at start ----------------------------------------------


class PumpedReactor:
    """
    Just enough of a reactor for the store: results come back from its
    thread through L{callFromThread} and are run by L{wait}.
    """

    def __init__(self) -> None:
        self.calls: "queue.Queue[Tuple[Callable[..., Any], Any, Any]]" = queue.Queue()

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.calls.put((f, args, kwargs))

    def seconds(self) -> float:
        return time.time()

    def stop(self) -> None:  # what StoreService does when the store cannot open
        self.calls.put((self._failed, (), {}))

    def _failed(self) -> None:
        raise AssertionError("the store failed to open")

    def wait(self, d: "Deferred[Any]", timeout: float = 10.0) -> Any:
        results: List[Any] = []
        d.addBoth(results.append)
        deadline = time.monotonic() + timeout
        while not results:
            f, args, kwargs = self.calls.get(timeout=max(0.0, deadline - time.monotonic()))
            f(*args, **kwargs)
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]


def test_key_index_rebuilt_from_the_database(tmp_path):
    daemon = Daemon(tmp_path).start()
    try:
        api_id = _api(daemon, "/keyed")
        other_api = _api(daemon, "/other")
        application = _application(daemon, "Cursor")
        subscription = _subscribe(daemon, api_id, application["id"], "Gold")
        base = f"/apis/{api_id}/subscriptions/{subscription['id']}"
        revoked = _ok(daemon, "POST", f"{base}/keys", expected=201)
        _ok(daemon, "DELETE", f"{base}/keys/{revoked['id']}", expected=204)
        expired = _ok(daemon, "POST", f"{base}/keys", expected=201)
        graced = _ok(daemon, "POST", f"{base}/keys/_rotate", {"expireOldAfter": 0}, 201)
        current = _ok(daemon, "POST", f"{base}/keys/_rotate", {"expireOldAfter": 900}, 201)
        closed = _subscribe(daemon, other_api, application["id"])
        closed_key = _ok(daemon, "POST", f"/apis/{other_api}/subscriptions/{closed['id']}/keys",
                         expected=201)
        _ok(daemon, "POST", f"/apis/{other_api}/subscriptions/{closed['id']}/_close")
    finally:
        daemon.stop()

    reactor = PumpedReactor()
    store = SQLiteApiStore(reactor, tmp_path / "data" / "mcpgated.db")
    verifyObject(IApiStore, store)
    keys = KeyIndex()
    ready: "Deferred[None]" = Deferred()
    service = StoreService(store, RouteTable(), reactor, lambda: ready.callback(None), keys=keys)
    service.startService()
    try:
        reactor.wait(ready)
    finally:
        reactor.wait(service.stopService())

    now = time.time()
    grant = keys.lookup(api_id, current["key"], now)
    assert grant == KeyGrant(api_id=api_id, plan="Gold", application_id=application["id"],
                             application_name="Cursor", subscription_id=subscription["id"],
                             expires_at=None)
    old = keys.lookup(api_id, graced["key"], now)  # in its 900 s grace period
    assert old is not None and old.expires_at == pytest.approx(
        _when(current["createdAt"]) + 900, abs=2)
    assert keys.lookup(api_id, graced["key"], old.expires_at) is None
    assert keys.lookup(other_api, current["key"], now) is None  # keys are per API
    for key in (revoked, expired):
        assert keys.lookup(api_id, key["key"], now) is None
    assert keys.lookup(other_api, closed_key["key"], now) is None
    assert keys.lookup(api_id, current["key"] + "x", now) is None


# --- the bodies, in process (mcpgated.subscriptions) -----------------------------------------


def test_bodies_of_applications_subscriptions_and_rotations() -> None:
    assert parse_application({"name": " Cursor ", "id": "ignored", "createdAt": None}) == \
        ("Cursor", "")
    assert parse_subscription_request({"application": "app-1", "plan": "Keys"}) == ("app-1", "Keys")
    assert parse_rotation(None) == parse_rotation({}) == DEFAULT_ROTATION_GRACE
    assert parse_rotation({"expireOldAfter": 0}) == 0
    assert parse_rotation({"expireOldAfter": MAX_ROTATION_GRACE}) == MAX_ROTATION_GRACE


@pytest.mark.parametrize("parse, body, field", [
    (parse_application, [], None),
    (parse_application, {}, "name"),
    (parse_application, {"name": "x", "owner": "y"}, "owner"),
    (parse_subscription_request, {"application": "a"}, "plan"),
    (parse_subscription_request, {"application": 1, "plan": "Keys"}, "application"),
    (parse_rotation, {"expireOldAfter": -1}, "expireOldAfter"),
    (parse_rotation, {"expireOldAfter": MAX_ROTATION_GRACE + 1}, "expireOldAfter"),
    (parse_rotation, {"expireOldAfter": 1.5}, "expireOldAfter"),
    (parse_rotation, {"expireOldAfter": True}, "expireOldAfter"),
    (parse_rotation, {"grace": 5}, "grace"),
])
def test_bad_bodies_name_the_field(parse: Callable[[Any], Any], body: Any,
                                   field: Optional[str]) -> None:
    with pytest.raises(InvalidField) as caught:
        parse(body)
    assert caught.value.field == field


def test_only_published_token_and_key_plans_take_subscriptions() -> None:
    definition = parse_definition({"name": "x", "version": "1", "contextPath": "/x",
                                   "backend": UNREACHABLE, "plans": PLANS})
    assert subscribable_plan("api-1", definition, "Gold").description == "more calls"
    for name, message in (("Keyless", "needs no subscription"), ("Later", "STAGING"),
                          ("Retired", "CLOSED"), ("keys", "no plan named 'keys'")):
        with pytest.raises(InvalidField) as caught:
            subscribable_plan("api-1", definition, name)
        assert caught.value.field == "plan" and message in caught.value.message
