"""
The SQLite side of applications, subscriptions and API keys (mixed into
L{mcpgated.store.SQLiteApiStore}).

Each public method is one transaction on the store thread. Keys arrive
already hashed: the plain key never reaches the store.
"""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any, Callable, List, Optional, Tuple, TypeVar

from twisted.internet.defer import Deferred

from mcpgated.definitions import InvalidField
from mcpgated.keys import KeyGrant
from mcpgated.model import ApiRecord
from mcpgated.store._interface import Conflict, NotFound
from mcpgated.subscriptions import (
    ACCEPTED,
    CLOSED,
    KEY_SECURITY,
    ApiKey,
    Application,
    IssuedKey,
    Subscription,
    subscribable_plan,
)

T = TypeVar("T")

_APPLICATION = "SELECT id, name, description, created_at FROM applications"
_SUBSCRIPTION = (
    "SELECT s.id, s.api_id, s.plan, s.application_id, a.name, s.status, s.created_at,"
    " s.closed_at FROM subscriptions s JOIN applications a ON a.id = s.application_id"
)
_KEY = "SELECT id, subscription_id, prefix, created_at, expires_at, revoked_at FROM api_keys"


def _application(row: Tuple[Any, ...]) -> Application:
    return Application(*row)


def _subscription(row: Tuple[Any, ...]) -> Subscription:
    return Subscription(*row)


def _key(row: Tuple[Any, ...]) -> ApiKey:
    return ApiKey(*row)


def _grant(subscription: Subscription, expires_at: Optional[float]) -> KeyGrant:
    return KeyGrant(
        api_id=subscription.api_id,
        plan=subscription.plan,
        application_id=subscription.application_id,
        application_name=subscription.application_name,
        subscription_id=subscription.id,
        expires_at=expires_at,
    )


class SubscriptionStore:
    """
    Mixin: needs C{_transaction(work, *args)} and C{_fetch(connection, api_id)}
    from the store it is mixed into.
    """

    _transaction: Callable[..., "Deferred[Any]"]
    _fetch: Callable[[sqlite3.Connection, str], ApiRecord]

    # --- helpers (store thread) ----------------------------------------------------

    @staticmethod
    def _fetch_application(connection: sqlite3.Connection, application_id: str) -> Application:
        row = connection.execute(f"{_APPLICATION} WHERE id = ?", (application_id,)).fetchone()
        if row is None:
            raise NotFound(application_id, "no application with this id", "applicationId")
        return _application(row)

    def _fetch_subscription(self, connection: sqlite3.Connection, api_id: str,
                            subscription_id: str) -> Subscription:
        self._fetch(connection, api_id)
        row = connection.execute(f"{_SUBSCRIPTION} WHERE s.id = ? AND s.api_id = ?",
                                 (subscription_id, api_id)).fetchone()
        if row is None:
            raise NotFound(subscription_id, "no subscription with this id on this API",
                           "subscriptionId")
        return _subscription(row)

    def _key_subscription(self, connection: sqlite3.Connection, api_id: str,
                          subscription_id: str) -> Subscription:
        """
        A subscription that may hold new keys: ACCEPTED, on an API_KEY plan.
        """
        subscription = self._fetch_subscription(connection, api_id, subscription_id)
        if subscription.status != ACCEPTED:
            raise Conflict(f"the subscription is {subscription.status}: it takes no new keys",
                           "status")
        record = self._fetch(connection, api_id)
        plan = next((p for p in record.definition.plans if p.name == subscription.plan), None)
        if plan is None or plan.security != KEY_SECURITY:
            what = "no longer on the API" if plan is None else plan.security
            raise Conflict(f"plan {subscription.plan!r} is {what}: API keys are for "
                           f"{KEY_SECURITY} plans", "plan")
        return subscription

    # --- applications ----------------------------------------------------------------

    def list_applications(self) -> "Deferred[List[Application]]":
        def work(connection: sqlite3.Connection) -> List[Application]:
            rows = connection.execute(f"{_APPLICATION} ORDER BY created_at, id").fetchall()
            return [_application(row) for row in rows]

        return self._transaction(work)

    def get_application(self, application_id: str) -> "Deferred[Application]":
        return self._transaction(self._fetch_application, application_id)

    def create_application(self, name: str, description: str,
                           now: float) -> "Deferred[Application]":
        def work(connection: sqlite3.Connection) -> Application:
            application_id = str(uuid.uuid4())
            connection.execute(
                "INSERT INTO applications (id, name, description, created_at) VALUES (?, ?, ?, ?)",
                (application_id, name, description, now))
            return self._fetch_application(connection, application_id)

        return self._transaction(work)

    def delete_application(self, application_id: str) -> "Deferred[List[str]]":
        def work(connection: sqlite3.Connection) -> List[str]:
            self._fetch_application(connection, application_id)
            hashes = [row[0] for row in connection.execute(
                "SELECT k.key_hash FROM api_keys k JOIN subscriptions s"
                " ON s.id = k.subscription_id WHERE s.application_id = ?",
                (application_id,))]
            # Its subscriptions and their keys go too (ON DELETE CASCADE).
            connection.execute("DELETE FROM applications WHERE id = ?", (application_id,))
            return hashes

        return self._transaction(work)

    # --- subscriptions -------------------------------------------------------------------

    def create_subscription(self, api_id: str, application_id: str, plan: str,
                            now: float) -> "Deferred[Subscription]":
        def work(connection: sqlite3.Connection) -> Subscription:
            record = self._fetch(connection, api_id)
            subscribable_plan(api_id, record.definition, plan)
            row = connection.execute(f"{_APPLICATION} WHERE id = ?",
                                     (application_id,)).fetchone()
            if row is None:
                raise InvalidField("application", f"no application with id {application_id!r}")
            existing = connection.execute(
                "SELECT id FROM subscriptions WHERE api_id = ? AND application_id = ?"
                " AND plan = ? AND status = ?", (api_id, application_id, plan, ACCEPTED),
            ).fetchone()
            if existing is not None:
                raise Conflict(f"the application already has an ACCEPTED subscription to plan "
                               f"{plan!r}: {existing[0]}", "plan")
            subscription_id = str(uuid.uuid4())
            connection.execute(
                "INSERT INTO subscriptions (id, api_id, plan, application_id, status, created_at,"
                " closed_at) VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (subscription_id, api_id, plan, application_id, ACCEPTED, now))
            return self._fetch_subscription(connection, api_id, subscription_id)

        return self._transaction(work)

    def list_subscriptions(self, api_id: str) -> "Deferred[List[Subscription]]":
        def work(connection: sqlite3.Connection) -> List[Subscription]:
            self._fetch(connection, api_id)
            rows = connection.execute(f"{_SUBSCRIPTION} WHERE s.api_id = ?"
                                      " ORDER BY s.created_at, s.id", (api_id,)).fetchall()
            return [_subscription(row) for row in rows]

        return self._transaction(work)

    def get_subscription(self, api_id: str, subscription_id: str) -> "Deferred[Subscription]":
        return self._transaction(self._fetch_subscription, api_id, subscription_id)

    def close_subscription(self, api_id: str, subscription_id: str,
                           now: float) -> "Deferred[Tuple[Subscription, List[str]]]":
        def work(connection: sqlite3.Connection) -> Tuple[Subscription, List[str]]:
            subscription = self._fetch_subscription(connection, api_id, subscription_id)
            if subscription.status != ACCEPTED:
                raise Conflict(f"the subscription is already {subscription.status}", "status")
            hashes = [row[0] for row in connection.execute(
                "SELECT key_hash FROM api_keys WHERE subscription_id = ? AND revoked_at IS NULL",
                (subscription_id,))]
            connection.execute("UPDATE api_keys SET revoked_at = ? WHERE subscription_id = ?"
                               " AND revoked_at IS NULL", (now, subscription_id))
            connection.execute("UPDATE subscriptions SET status = ?, closed_at = ? WHERE id = ?",
                               (CLOSED, now, subscription_id))
            return self._fetch_subscription(connection, api_id, subscription_id), hashes

        return self._transaction(work)

    # --- keys ----------------------------------------------------------------------------

    def list_keys(self, api_id: str, subscription_id: str) -> "Deferred[List[ApiKey]]":
        def work(connection: sqlite3.Connection) -> List[ApiKey]:
            self._fetch_subscription(connection, api_id, subscription_id)
            rows = connection.execute(f"{_KEY} WHERE subscription_id = ?"
                                      " ORDER BY created_at, id", (subscription_id,)).fetchall()
            return [_key(row) for row in rows]

        return self._transaction(work)

    def issue_key(self, api_id: str, subscription_id: str, key_hash: str, prefix: str,
                  now: float, replace_after: Optional[float] = None) -> "Deferred[IssuedKey]":
        def work(connection: sqlite3.Connection) -> IssuedKey:
            subscription = self._key_subscription(connection, api_id, subscription_id)
            replaced: List[Tuple[str, KeyGrant]] = []
            if replace_after is not None:
                expires_at = now + replace_after
                rows = connection.execute(
                    "SELECT id, key_hash, expires_at FROM api_keys WHERE subscription_id = ?"
                    " AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)",
                    (subscription_id, now)).fetchall()
                for old_id, old_hash, old_expiry in rows:
                    new_expiry = expires_at if old_expiry is None else min(old_expiry, expires_at)
                    connection.execute("UPDATE api_keys SET expires_at = ? WHERE id = ?",
                                       (new_expiry, old_id))
                    replaced.append((old_hash, _grant(subscription, new_expiry)))
            key_id = str(uuid.uuid4())
            connection.execute(
                "INSERT INTO api_keys (id, subscription_id, key_hash, prefix, created_at,"
                " expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, NULL, NULL)",
                (key_id, subscription_id, key_hash, prefix, now))
            row = connection.execute(f"{_KEY} WHERE id = ?", (key_id,)).fetchone()
            return IssuedKey(_key(row), key_hash, _grant(subscription, None), tuple(replaced))

        return self._transaction(work)

    def revoke_key(self, api_id: str, subscription_id: str, key_id: str,
                   now: float) -> "Deferred[Tuple[ApiKey, str]]":
        def work(connection: sqlite3.Connection) -> Tuple[ApiKey, str]:
            self._fetch_subscription(connection, api_id, subscription_id)
            row = connection.execute("SELECT key_hash FROM api_keys WHERE id = ?"
                                     " AND subscription_id = ?",
                                     (key_id, subscription_id)).fetchone()
            if row is None:
                raise NotFound(key_id, "no key with this id on this subscription", "keyId")
            connection.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?"
                               " AND revoked_at IS NULL", (now, key_id))
            key = _key(connection.execute(f"{_KEY} WHERE id = ?", (key_id,)).fetchone())
            return key, row[0]

        return self._transaction(work)

    def usable_keys(self, now: float) -> "Deferred[List[Tuple[str, KeyGrant]]]":
        def work(connection: sqlite3.Connection) -> List[Tuple[str, KeyGrant]]:
            rows = connection.execute(
                "SELECT k.key_hash, k.expires_at, s.id, s.api_id, s.plan, s.application_id,"
                " a.name, s.status, s.created_at, s.closed_at FROM api_keys k"
                " JOIN subscriptions s ON s.id = k.subscription_id"
                " JOIN applications a ON a.id = s.application_id"
                " WHERE s.status = ? AND k.revoked_at IS NULL"
                " AND (k.expires_at IS NULL OR k.expires_at > ?)", (ACCEPTED, now)).fetchall()
            return [(row[0], _grant(_subscription(row[2:]), row[1])) for row in rows]

        return self._transaction(work)
