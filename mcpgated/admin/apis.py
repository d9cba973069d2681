"""
The admin API's APIs: their definitions (create, read, edit, delete) and
their life on the gateway (deploy, start, stop), each change applied to the
routing table as soon as the store has committed it.
"""

from __future__ import annotations

from typing import Any, Dict

from twisted.logger import Logger
from twisted.web.iweb import IRequest

from mcpgated.admin.endpoint import AdminState, Answer, app, endpoint, read_json
from mcpgated.cluster.changes import API, KEYS
from mcpgated.definitions import InvalidField, parse_definition
from mcpgated.model import STARTED, STOPPED, ApiRecord
from mcpgated.oauth.terminating import effective_audiences

log = Logger()


class ApiRoutes(AdminState):
    def _api_json(self, record: ApiRecord) -> Dict[str, Any]:
        """
        An API as the admin API shows it: its record, plus the audiences its
        token plans accept (C{effectiveAudience}, for the stored and the
        deployed definition).
        """
        body = record.to_json()
        info = self.gateway_info() if self.gateway_info is not None else None
        public_url = (info or {}).get("publicUrl")
        body["effectiveAudience"] = effective_audiences(record.definition, public_url)
        if record.deployed is not None and body.get("deployed") is not None:
            body["deployed"]["effectiveAudience"] = effective_audiences(record.deployed, public_url)
        return body

    @app.route("/apis", methods=["GET"])
    @endpoint()
    async def list_apis(self, request: IRequest) -> Answer:
        records = await self.store.list_apis()
        return 200, {"data": [self._api_json(record) for record in records]}

    @app.route("/apis", methods=["POST"])
    @endpoint()
    async def create_api(self, request: IRequest) -> Answer:
        definition = parse_definition(read_json(request))
        record = await self.store.create_api(definition, self.clock.seconds())
        await self.tell(API, record.id)
        log.info("API {api_id} created at {context_path}", api_id=record.id,
                 context_path=definition.context_path)
        request.setHeader(b"location", f"/apis/{record.id}".encode("ascii"))
        return 201, self._api_json(record)

    @app.route("/apis/<string:api_id>", methods=["GET"])
    @endpoint()
    async def get_api(self, request: IRequest, api_id: str) -> Answer:
        return 200, self._api_json(await self.store.get_api(api_id))

    @app.route("/apis/<string:api_id>", methods=["PUT"])
    @endpoint()
    async def update_api(self, request: IRequest, api_id: str) -> Answer:
        body = read_json(request)
        # the stored definition keeps secrets the GET body shows masked
        previous = (await self.store.get_api(api_id)).definition
        definition = parse_definition(body, previous)
        if isinstance(body, dict) and body.get("id") not in (None, api_id):
            raise InvalidField("id", "id in the body does not match the URL")
        record = await self.store.update_api(api_id, definition, self.clock.seconds())
        await self.tell(API, api_id)
        return 200, self._api_json(record)

    @app.route("/apis/<string:api_id>", methods=["DELETE"])
    @endpoint()
    async def delete_api(self, request: IRequest, api_id: str) -> Answer:
        await self.store.delete_api(api_id)
        self.routes.remove(api_id)
        await self.tell(API, api_id)
        await self.tell(KEYS)  # its closed subscriptions' keys went with it
        log.info("API {api_id} deleted", api_id=api_id)
        return 204, None

    @app.route("/apis/<string:api_id>/_deploy", methods=["POST"])
    @endpoint()
    async def deploy_api(self, request: IRequest, api_id: str) -> Answer:
        record = await self.store.deploy_api(api_id, self.clock.seconds())
        self.routes.apply(record)
        await self.tell(API, api_id)
        log.info("API {api_id} deployed and started at {context_path}", api_id=api_id,
                 context_path=record.definition.context_path)
        return 200, self._api_json(record)

    @app.route("/apis/<string:api_id>/_start", methods=["POST"])
    @endpoint()
    async def start_api(self, request: IRequest, api_id: str) -> Answer:
        record = await self.store.set_state(api_id, STARTED, self.clock.seconds())
        self.routes.apply(record)
        await self.tell(API, api_id)
        log.info("API {api_id} started", api_id=api_id)
        return 200, self._api_json(record)

    @app.route("/apis/<string:api_id>/_stop", methods=["POST"])
    @endpoint()
    async def stop_api(self, request: IRequest, api_id: str) -> Answer:
        record = await self.store.set_state(api_id, STOPPED, self.clock.seconds())
        self.routes.apply(record)
        await self.tell(API, api_id)
        log.info("API {api_id} stopped", api_id=api_id)
        return 200, self._api_json(record)
