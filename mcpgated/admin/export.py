"""
The admin API's export of one API's stored definition with its secrets in
clear (an OAUTH2 plan's C{clientSecret}, C{backendAuth.value}), which every
other answer shows masked: for C{mcpgatedctl export --with-secrets}, and for
C{mcpgatedctl apply} to compare a file's secrets with the stored ones without
printing them.

The admin token already allows replacing every definition, so this adds no
power; it is logged. API keys are never exported: only their hashes are
stored.

Also the OpenAPI description of this route, merged by
L{mcpgated.admin.openapi}.
"""

from __future__ import annotations

from typing import Any, Dict

from twisted.logger import Logger
from twisted.web.iweb import IRequest

from mcpgated.admin.endpoint import AdminState, Answer, app, endpoint

log = Logger()


class ExportRoutes(AdminState):
    @app.route("/apis/<string:api_id>/_export", methods=["GET"])
    @endpoint()
    async def export_api(self, request: IRequest, api_id: str) -> Answer:
        record = await self.store.get_api(api_id)
        log.info("API {api_id}'s definition exported with its secrets", api_id=api_id)
        return 200, {"id": record.id, "state": record.state,
                     "definition": record.definition.to_json(secrets=True)}


_ERROR = {"$ref": "#/components/responses/Error"}


def openapi_paths() -> Dict[str, Any]:
    return {
        "/apis/{api_id}/_export": {"get": {
            "summary": "The stored definition with its secrets in clear (clientSecret, "
                       "backendAuth.value), for mcpgatedctl; API keys are never exported",
            "parameters": [{"name": "api_id", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "The definition", "content": {"application/json": {
                    "schema": {"type": "object", "properties": {
                        "id": {"type": "string"},
                        "state": {"enum": ["STARTED", "STOPPED"]},
                        "definition": {"$ref": "#/components/schemas/ApiDefinition"}}}}}},
                "401": _ERROR, "404": _ERROR}}},
    }
