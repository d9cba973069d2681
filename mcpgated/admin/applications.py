"""
The admin API's consumers (L{mcpgated.subscriptions}): applications, their
subscriptions to plans, and the subscriptions' API keys (issue, rotate,
revoke).

Each write updates the gateway's L{mcpgated.keys.KeyIndex} as soon as the store has
committed it. A key is shown once, in the answer that issues it; the store
only ever sees its hash.
"""

from __future__ import annotations

from typing import Optional

from twisted.logger import Logger
from twisted.web.iweb import IRequest

from mcpgated.admin.endpoint import (
    AdminState,
    Answer,
    app,
    endpoint,
    read_json,
    read_optional_json,
)
from mcpgated.cluster.changes import KEYS
from mcpgated.keys import hash_key, key_prefix, new_key
from mcpgated.subscriptions import parse_application, parse_rotation, parse_subscription_request

log = Logger()


class ApplicationRoutes(AdminState):
    @app.route("/applications", methods=["GET"])
    @endpoint()
    async def list_applications(self, request: IRequest) -> Answer:
        applications = await self.store.list_applications()
        return 200, {"data": [application.to_json() for application in applications]}

    @app.route("/applications", methods=["POST"])
    @endpoint()
    async def create_application(self, request: IRequest) -> Answer:
        name, description = parse_application(read_json(request))
        application = await self.store.create_application(name, description, self.clock.seconds())
        log.info("application {application_id} created", application_id=application.id)
        request.setHeader(b"location", f"/applications/{application.id}".encode("ascii"))
        return 201, application.to_json()

    @app.route("/applications/<string:application_id>", methods=["GET"])
    @endpoint()
    async def get_application(self, request: IRequest, application_id: str) -> Answer:
        return 200, (await self.store.get_application(application_id)).to_json()

    @app.route("/applications/<string:application_id>", methods=["DELETE"])
    @endpoint()
    async def delete_application(self, request: IRequest, application_id: str) -> Answer:
        for key_hash in await self.store.delete_application(application_id):
            self.keys.remove(key_hash)
        await self.tell(KEYS)
        log.info("application {application_id} deleted with its subscriptions and keys",
                 application_id=application_id)
        return 204, None

    @app.route("/apis/<string:api_id>/subscriptions", methods=["POST"])
    @endpoint()
    async def create_subscription(self, request: IRequest, api_id: str) -> Answer:
        application_id, plan = parse_subscription_request(read_json(request))
        subscription = await self.store.create_subscription(api_id, application_id, plan,
                                                            self.clock.seconds())
        await self.tell(KEYS)
        log.info("application {application_id} subscribed to plan {plan} of API {api_id}: "
                 "{subscription_id}", application_id=application_id, plan=plan, api_id=api_id,
                 subscription_id=subscription.id)
        request.setHeader(b"location", f"/apis/{api_id}/subscriptions/{subscription.id}"
                          .encode("ascii"))
        return 201, subscription.to_json()

    @app.route("/apis/<string:api_id>/subscriptions", methods=["GET"])
    @endpoint()
    async def list_subscriptions(self, request: IRequest, api_id: str) -> Answer:
        subscriptions = await self.store.list_subscriptions(api_id)
        return 200, {"data": [subscription.to_json() for subscription in subscriptions]}

    @app.route("/apis/<string:api_id>/subscriptions/<string:subscription_id>", methods=["GET"])
    @endpoint()
    async def get_subscription(self, request: IRequest, api_id: str,
                               subscription_id: str) -> Answer:
        return 200, (await self.store.get_subscription(api_id, subscription_id)).to_json()

    @app.route("/apis/<string:api_id>/subscriptions/<string:subscription_id>/_close",
               methods=["POST"])
    @endpoint()
    async def close_subscription(self, request: IRequest, api_id: str,
                                 subscription_id: str) -> Answer:
        subscription, revoked = await self.store.close_subscription(api_id, subscription_id,
                                                                    self.clock.seconds())
        for key_hash in revoked:
            self.keys.remove(key_hash)
        await self.tell(KEYS)
        log.info("subscription {subscription_id} of API {api_id} closed ({count} keys revoked)",
                 subscription_id=subscription_id, api_id=api_id, count=len(revoked))
        return 200, subscription.to_json()

    @app.route("/apis/<string:api_id>/subscriptions/<string:subscription_id>/keys",
               methods=["GET"])
    @endpoint()
    async def list_keys(self, request: IRequest, api_id: str, subscription_id: str) -> Answer:
        keys = await self.store.list_keys(api_id, subscription_id)
        now = self.clock.seconds()
        return 200, {"data": [key.to_json(now) for key in keys]}

    async def _issue_key(self, api_id: str, subscription_id: str,
                         replace_after: Optional[int]) -> Answer:
        key = new_key()
        issued = await self.store.issue_key(api_id, subscription_id, hash_key(key),
                                            key_prefix(key), self.clock.seconds(), replace_after)
        now = self.clock.seconds()
        for old_hash, grant in issued.replaced:
            if grant.expires_at is not None and grant.expires_at <= now:
                self.keys.remove(old_hash)
            else:
                self.keys.put(old_hash, grant)
        self.keys.put(issued.key_hash, issued.grant)
        await self.tell(KEYS)
        log.info("API key {key_id} ({prefix}...) issued for subscription {subscription_id}"
                 "{rotation}", key_id=issued.key.id, prefix=issued.key.prefix,
                 subscription_id=subscription_id,
                 rotation="" if replace_after is None else
                 f", replacing {len(issued.replaced)} keys in {replace_after} s")
        return 201, issued.key.issued_json(key)

    @app.route("/apis/<string:api_id>/subscriptions/<string:subscription_id>/keys",
               methods=["POST"])
    @endpoint()
    async def issue_key(self, request: IRequest, api_id: str, subscription_id: str) -> Answer:
        return await self._issue_key(api_id, subscription_id, None)

    @app.route("/apis/<string:api_id>/subscriptions/<string:subscription_id>/keys/_rotate",
               methods=["POST"])
    @endpoint()
    async def rotate_keys(self, request: IRequest, api_id: str, subscription_id: str) -> Answer:
        grace = parse_rotation(read_optional_json(request))
        return await self._issue_key(api_id, subscription_id, grace)

    @app.route("/apis/<string:api_id>/subscriptions/<string:subscription_id>/keys/"
               "<string:key_id>", methods=["DELETE"])
    @endpoint()
    async def revoke_key(self, request: IRequest, api_id: str, subscription_id: str,
                         key_id: str) -> Answer:
        _, key_hash = await self.store.revoke_key(api_id, subscription_id, key_id,
                                                  self.clock.seconds())
        self.keys.remove(key_hash)
        await self.tell(KEYS)
        log.info("API key {key_id} of subscription {subscription_id} revoked", key_id=key_id,
                 subscription_id=subscription_id)
        return 204, None
