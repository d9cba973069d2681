"""
The admin API's consumers (L{mcpgated.admin.applications}) in process: an
API key works at the gateway (its L{KeyIndex}) from the answer that issues
it, stops at once when revoked, its subscription closed or its application
deleted, and keeps working for the grace of a rotation only. The store sees
only hashes. The same routes run over a real daemon in tests/test_admin.py
and tests/test_subscriptions.py.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

from mcpgated.admin.apis import ApiRoutes
from mcpgated.admin.applications import ApplicationRoutes
from mcpgated.keys import hash_key
from tests.admin_handlers import StoreCase, answer, inline
from tests.support import ADMIN_TOKEN, api_definition

PLANS = [{"name": "Keys", "security": "API_KEY"}, {"name": "Open", "security": "KEY_LESS"}]


class ApplicationRoutesTests(StoreCase):
    def state(self) -> ApplicationRoutes:
        return ApplicationRoutes(self.store, self.routes, self.clock, ADMIN_TOKEN, keys=self.keys)

    async def subscribed(self, name: str = "billing") -> Tuple[ApplicationRoutes, str, str, str]:
        """
        An API with a key plan, an application subscribed to it: the
        routes, the API id, the application id and the subscription id.
        """
        apis = ApiRoutes(self.store, self.routes, self.clock, ADMIN_TOKEN)
        _, api = await answer(apis.create_api, b"POST", "/apis",
                              body=api_definition("/paid", "http://127.0.0.1:1/mcp", PLANS))
        await answer(apis.deploy_api, b"POST", "/", api["id"])
        consumers = self.state()
        status, app = await answer(consumers.create_application, b"POST", "/applications",
                                   body={"name": name, "description": "the billing team"})
        self.assertEqual(status, 201, app)
        status, subscription = await answer(consumers.create_subscription, b"POST", "/",
                                            api["id"], body={"application": app["id"],
                                                             "plan": "Keys"})
        self.assertEqual((status, subscription["status"]), (201, "ACCEPTED"), subscription)
        return consumers, api["id"], app["id"], subscription["id"]

    async def issue(self, consumers: ApplicationRoutes, api_id: str,
                    subscription_id: str) -> Dict[str, Any]:
        status, key = await answer(consumers.issue_key, b"POST", "/", api_id, subscription_id)
        self.assertEqual(status, 201, key)
        return key  # type: ignore[no-any-return]

    def works(self, api_id: str, key: str, later: float = 0) -> bool:
        return self.keys.lookup(api_id, key, self.clock.seconds() + later) is not None

    @inline
    async def test_an_issued_key_works_at_once_and_is_shown_only_once(self) -> None:
        consumers, api_id, app_id, sub_id = await self.subscribed()
        issued = await self.issue(consumers, api_id, sub_id)
        key = issued["key"]
        self.assertTrue(key.startswith(issued["prefix"]))
        self.assertTrue(self.works(api_id, key))
        self.assertFalse(self.works("another-api", key))
        grant = self.keys.lookup(api_id, key, self.clock.seconds())
        assert grant is not None
        self.assertEqual((grant.plan, grant.application_id, grant.subscription_id),
                         ("Keys", app_id, sub_id))
        status, listed = await answer(consumers.list_keys, b"GET", "/", api_id, sub_id)
        self.assertEqual([k["id"] for k in listed["data"]], [issued["id"]])
        self.assertNotIn(key, repr(listed))
        self.assertEqual(listed["data"][0]["status"], "ACTIVE")
        # the store keeps the hash, never the key
        [(stored_hash, _)] = await self.store.usable_keys(self.clock.seconds())
        self.assertEqual(stored_hash, hash_key(key))

    @inline
    async def test_a_revoked_key_stops_at_once(self) -> None:
        consumers, api_id, _, sub_id = await self.subscribed()
        kept = (await self.issue(consumers, api_id, sub_id))["key"]
        issued = await self.issue(consumers, api_id, sub_id)
        status, body = await answer(consumers.revoke_key, b"DELETE", "/", api_id, sub_id,
                                    issued["id"])
        self.assertEqual((status, body), (204, None))
        self.assertFalse(self.works(api_id, issued["key"]))
        self.assertTrue(self.works(api_id, kept))  # only that key
        status, body = await answer(consumers.revoke_key, b"DELETE", "/", api_id, sub_id, "nope")
        self.assertEqual(status, 404, body)

    @inline
    async def test_a_rotation_keeps_the_old_key_for_its_grace_only(self) -> None:
        consumers, api_id, _, sub_id = await self.subscribed()
        old = (await self.issue(consumers, api_id, sub_id))["key"]
        status, new = await answer(consumers.rotate_keys, b"POST", "/", api_id, sub_id,
                                   body={"expireOldAfter": 60})
        self.assertEqual(status, 201, new)
        self.assertTrue(self.works(api_id, new["key"]) and self.works(api_id, old))
        self.assertTrue(self.works(api_id, old, later=59))
        self.assertFalse(self.works(api_id, old, later=60))
        self.assertTrue(self.works(api_id, new["key"], later=10_000))
        # no grace: the replaced key stops now
        status, newest = await answer(consumers.rotate_keys, b"POST", "/", api_id, sub_id,
                                      body={"expireOldAfter": 0})
        self.assertEqual(status, 201, newest)
        self.assertFalse(self.works(api_id, new["key"]))
        self.assertTrue(self.works(api_id, newest["key"]))

    @inline
    async def test_a_bad_rotation_grace_is_refused_and_rotates_nothing(self) -> None:
        consumers, api_id, _, sub_id = await self.subscribed()
        old = (await self.issue(consumers, api_id, sub_id))["key"]
        for grace in (-1, "60", True, 10 ** 9):
            status, body = await answer(consumers.rotate_keys, b"POST", "/", api_id, sub_id,
                                        body={"expireOldAfter": grace})
            self.assertEqual((status, body["field"]), (400, "expireOldAfter"), grace)
        self.assertTrue(self.works(api_id, old, later=10_000))
        status, listed = await answer(consumers.list_keys, b"GET", "/", api_id, sub_id)
        self.assertEqual(len(listed["data"]), 1)

    @inline
    async def test_closing_a_subscription_revokes_its_keys(self) -> None:
        consumers, api_id, _, sub_id = await self.subscribed()
        keys = [(await self.issue(consumers, api_id, sub_id))["key"] for _ in range(2)]
        status, closed = await answer(consumers.close_subscription, b"POST", "/", api_id, sub_id)
        self.assertEqual((status, closed["status"]), (200, "CLOSED"), closed)
        self.assertFalse(any(self.works(api_id, key) for key in keys))
        status, body = await answer(consumers.issue_key, b"POST", "/", api_id, sub_id)
        self.assertGreaterEqual(status, 400, body)  # no new key on a closed subscription

    @inline
    async def test_deleting_an_application_revokes_its_keys(self) -> None:
        consumers, api_id, app_id, sub_id = await self.subscribed()
        key = (await self.issue(consumers, api_id, sub_id))["key"]
        status, body = await answer(consumers.delete_application, b"DELETE", "/", app_id)
        self.assertEqual((status, body), (204, None))
        self.assertFalse(self.works(api_id, key))
        status, body = await answer(consumers.get_application, b"GET", "/", app_id)
        self.assertEqual(status, 404, body)
        status, listed = await answer(consumers.list_subscriptions, b"GET", "/", api_id)
        self.assertEqual(listed, {"data": []})

    @inline
    async def test_a_subscription_needs_a_key_plan_and_an_application(self) -> None:
        consumers, api_id, app_id, _ = await self.subscribed()
        for body, field in (({"application": app_id, "plan": "Open"}, "plan"),
                            ({"application": app_id, "plan": "Missing"}, "plan"),
                            ({"application": "nope", "plan": "Keys"}, "application"),
                            ({"plan": "Keys"}, "application")):
            status, answered = await answer(consumers.create_subscription, b"POST", "/", api_id,
                                            body=body)
            self.assertIn(status, (400, 404, 409), answered)
            self.assertEqual(answered["field"], field, body)
