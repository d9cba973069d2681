"""
The admin API's APIs resource (L{mcpgated.admin.apis}) in process: what
reaches the gateway's routing table and when, a secret kept through an
edited GET body, and the audiences each token plan accepts. The same routes
run over a real daemon in tests/test_admin.py.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from mcpgated.admin.apis import ApiRoutes
from mcpgated.policy.plans import SECRET_MASK
from tests.admin_handlers import StoreCase, answer, inline
from tests.support import ADMIN_TOKEN, api_definition

BACKEND = "http://127.0.0.1:1/mcp"
AS = "https://as.example"


def oauth_plan() -> Dict[str, Any]:
    return {"name": "Tokens", "security": "OAUTH2", "configuration": {
        "introspectionUrl": f"{AS}/introspect", "clientId": "gw", "clientSecret": "s3cret",
        "authorizationServers": [AS]}}


def jwt_plan(**configuration: Any) -> Dict[str, Any]:
    return {"name": "Jwt", "security": "JWT",
            "configuration": {"issuer": AS, "jwksUrl": f"{AS}/jwks", **configuration}}


class ApiRoutesTests(StoreCase):
    def state(self, public_url: Optional[str] = None) -> ApiRoutes:
        return ApiRoutes(self.store, self.routes, self.clock, ADMIN_TOKEN,
                         gateway_info=lambda: {"publicUrl": public_url, "listeners": []})

    async def create(self, api: ApiRoutes, path: str, **fields: Any) -> Dict[str, Any]:
        status, body = await answer(api.create_api, b"POST", "/apis",
                                    body=api_definition(path, BACKEND, **fields))
        self.assertEqual(status, 201, body)
        return body  # type: ignore[no-any-return]

    def routed(self, path: str) -> Optional[str]:
        found = self.routes.match(path)
        return None if found is None else found[0].definition.context_path

    @inline
    async def test_only_a_deployed_version_is_routed(self) -> None:
        api = self.state()
        created = await self.create(api, "/weather")
        api_id = created["id"]
        self.assertIsNone(self.routed("/weather"))  # created is not deployed
        status, deployed = await answer(api.deploy_api, b"POST", "/", api_id)
        self.assertEqual((status, deployed["state"]), (200, "STARTED"), deployed)
        self.assertEqual(self.routed("/weather/mcp"), "/weather")
        # an edit is stored, but the gateway serves the deployed version until redeployed
        edited = dict(created, contextPath="/forecast")
        status, body = await answer(api.update_api, b"PUT", "/", api_id, body=edited)
        self.assertEqual((status, body["contextPath"]), (200, "/forecast"), body)
        self.assertEqual(self.routed("/weather"), "/weather")
        self.assertIsNone(self.routed("/forecast"))
        await answer(api.deploy_api, b"POST", "/", api_id)
        self.assertEqual(self.routed("/forecast"), "/forecast")
        self.assertIsNone(self.routed("/weather"))

    @inline
    async def test_stop_start_and_delete_take_effect_at_once(self) -> None:
        api = self.state()
        api_id = (await self.create(api, "/tools"))["id"]
        await answer(api.deploy_api, b"POST", "/", api_id)
        status, stopped = await answer(api.stop_api, b"POST", "/", api_id)
        self.assertEqual((status, stopped["state"]), (200, "STOPPED"))
        self.assertIsNone(self.routed("/tools"))
        status, started = await answer(api.start_api, b"POST", "/", api_id)
        self.assertEqual((status, started["state"]), (200, "STARTED"))
        self.assertEqual(self.routed("/tools"), "/tools")
        # a started API is not deleted from under its clients
        status, body = await answer(api.delete_api, b"DELETE", "/", api_id)
        self.assertEqual((status, body["field"]), (409, "state"), body)
        self.assertEqual(self.routed("/tools"), "/tools")
        await answer(api.stop_api, b"POST", "/", api_id)
        status, body = await answer(api.delete_api, b"DELETE", "/", api_id)
        self.assertEqual((status, body), (204, None))
        self.assertIsNone(self.routed("/tools"))
        status, body = await answer(api.get_api, b"GET", "/", api_id)
        self.assertEqual(status, 404, body)
        status, listed = await answer(api.list_apis, b"GET", "/apis")
        self.assertEqual(listed, {"data": []})

    @inline
    async def test_an_edited_get_body_keeps_the_stored_secret(self) -> None:
        api = self.state()
        created = await self.create(api, "/secure", plans=[oauth_plan()])
        api_id = created["id"]
        status, shown = await answer(api.get_api, b"GET", "/", api_id)
        configuration = shown["plans"][0]["configuration"]
        self.assertEqual(configuration["clientSecret"], SECRET_MASK)  # never shown
        shown["description"] = "edited"
        status, body = await answer(api.update_api, b"PUT", "/", api_id, body=shown)
        self.assertEqual(status, 200, body)
        stored = (await self.store.get_api(api_id)).definition
        self.assertEqual(stored.description, "edited")
        self.assertEqual(stored.plans[0].configuration["clientSecret"], "s3cret")

    @inline
    async def test_an_edit_naming_another_id_changes_nothing(self) -> None:
        api = self.state()
        created = await self.create(api, "/one")
        other = dict(created, id="not-this-one", description="changed")
        status, body = await answer(api.update_api, b"PUT", "/", created["id"], body=other)
        self.assertEqual((status, body["field"]), (400, "id"), body)
        status, body = await answer(api.get_api, b"GET", "/", created["id"])
        self.assertEqual(body["description"], created["description"])

    @inline
    async def test_the_audience_each_token_plan_accepts_is_shown(self) -> None:
        plans = [{"name": "Open", "security": "KEY_LESS"}, jwt_plan(),
                 dict(jwt_plan(audience="https://aud.example"), name="Pinned"),
                 dict(jwt_plan(anyAudience=True), name="Any")]
        created = await self.create(self.state(), "/aud", plans=plans)
        api = self.state(public_url="https://gw.example/")
        status, body = await answer(api.get_api, b"GET", "/", created["id"])
        self.assertEqual(body["effectiveAudience"], {
            "Jwt": {"audience": ["https://gw.example/aud"], "source": "gateway.public_url"},
            "Pinned": {"audience": ["https://aud.example"], "source": "plan"},
            "Any": {"audience": None, "source": "anyAudience"}})
        self.assertIsNone(body.get("deployed"))
        await answer(api.deploy_api, b"POST", "/", created["id"])
        status, body = await answer(api.get_api, b"GET", "/", created["id"])
        self.assertEqual(body["deployed"]["effectiveAudience"]["Jwt"]["audience"],
                         ["https://gw.example/aud"])
        # without a public URL, the origin each client uses decides
        status, body = await answer(self.state().get_api, b"GET", "/", created["id"])
        self.assertEqual(body["effectiveAudience"]["Jwt"]["source"], "request")

    @inline
    async def test_a_bad_definition_is_refused_naming_the_field(self) -> None:
        api = self.state()
        status, body = await answer(api.create_api, b"POST", "/apis",
                                    body=api_definition("/x", BACKEND, plans=[jwt_plan(
                                        algorithms=["HS256"])]))
        self.assertEqual((status, body["field"]), (400, "plans[0].configuration.algorithms"))
        status, listed = await answer(api.list_apis, b"GET", "/apis")
        self.assertEqual(listed, {"data": []})
