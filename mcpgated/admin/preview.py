"""
"What does this consumer see": the admin API lists the backend's tools,
resources and prompts (one MCP session of its own, through the gateway's HTTP
client, off the hot path) and judges each with the access-control code the
gateway applies (L{mcpgated.policy.acl.combine}, C{filter_result}) for a plan,
an application and scopes.

Also the OpenAPI description of the route, merged by L{mcpgated.admin.openapi}.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IRequest

from mcpgated import __version__
from mcpgated.admin.endpoint import AdminState, Answer, HTTPError, app, endpoint, read_json
from mcpgated.definitions import InvalidField, read_object
from mcpgated.mcp.sse import EventFramer, event_data
from mcpgated.model import ApiDefinition
from mcpgated.store import NotFound
from mcpgated.policy.acl import Caller, combine
from mcpgated.webclient import BodyTooLarge, fetch

log = Logger()

PROTOCOL_VERSION = "2025-06-18"
MAX_BYTES = 4 * 1024 * 1024  # one list page
MAX_PAGES = 50  # per list
TIMEOUT = 10.0  # seconds per exchange
# what is listed: (result key, the field each item is named by, the capability)
LISTS: Dict[str, Tuple[str, str, str]] = {
    "tools/list": ("tools", "name", "tools"),
    "resources/list": ("resources", "uri", "resources"),
    "resources/templates/list": ("resourceTemplates", "uriTemplate", "resources"),
    "prompts/list": ("prompts", "name", "prompts"),
}
_SHOWN = ("name", "title", "description", "uri", "uriTemplate", "mimeType")

AgentFor = Callable[[Optional[str]], Awaitable[IAgent]]


class BackendError(Exception):
    """
    The backend could not be listed (message safe to show).
    """


@attrs.define
class BackendSession:
    """
    One Streamable HTTP session with a backend: initialize, list, end.
    """

    agent: IAgent
    clock: IReactorTime
    definition: ApiDefinition
    session_id: Optional[bytes] = None
    version: str = PROTOCOL_VERSION
    capabilities: Dict[str, Any] = attrs.field(factory=dict)
    _next_id: int = 0

    def _headers(self) -> Headers:
        headers = Headers({b"content-type": [b"application/json"],
                           b"accept": [b"application/json, text/event-stream"]})
        auth = self.definition.backend_auth
        if auth and auth.get("header") and auth.get("value"):
            headers.setRawHeaders(auth["header"].encode("latin-1"), [auth["value"].encode("latin-1")])
        if self.session_id is not None:
            headers.setRawHeaders(b"mcp-session-id", [self.session_id])
            headers.setRawHeaders(b"mcp-protocol-version", [self.version.encode("ascii")])
        return headers

    async def _post(self, message: Dict[str, Any]) -> Any:
        try:
            reply = await fetch(self.agent, self.clock, "POST", self.definition.backend,
                                self._headers(), body=json.dumps(message).encode("utf-8"),
                                max_bytes=MAX_BYTES, timeout=TIMEOUT)
        except BodyTooLarge as e:
            raise BackendError(f"the backend's answer to {message['method']} is {e}") from e
        except Exception as e:
            raise BackendError(f"the backend did not answer {message['method']} "
                               f"({e.__class__.__name__}: {e})") from e
        if "id" not in message:
            return None
        if reply.status != 200:
            raise BackendError(f"the backend answered {message['method']} with HTTP {reply.status}")
        if self.session_id is None:
            self.session_id = reply.headers.getRawHeaders(b"mcp-session-id", [None])[0]
        content_type = (reply.headers.getRawHeaders(b"content-type", [b""])[0] or b"").lower()
        for value in _messages(reply.body, content_type.startswith(b"text/event-stream")):
            if isinstance(value, dict) and value.get("id") == message["id"]:
                if "error" in value:
                    error = value["error"] if isinstance(value["error"], dict) else {}
                    raise BackendError(f"the backend refused {message['method']}: "
                                       f"{error.get('message', value['error'])}")
                return value.get("result")
        raise BackendError(f"the backend's answer to {message['method']} has no result")

    async def request(self, method: str, params: Dict[str, Any]) -> Any:
        self._next_id += 1
        return await self._post({"jsonrpc": "2.0", "id": self._next_id, "method": method,
                                 "params": params})

    async def open(self) -> None:
        result = await self.request("initialize", {
            "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": {"name": "mcpgated-admin-preview", "version": __version__}})
        if not isinstance(result, dict):
            raise BackendError("the backend's initialize result is not an object")
        if isinstance(result.get("protocolVersion"), str):
            self.version = result["protocolVersion"]
        if isinstance(result.get("capabilities"), dict):
            self.capabilities = result["capabilities"]
        await self._post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def list_all(self, method: str) -> List[Any]:
        """
        Every item of a list, page after page.
        """
        key = LISTS[method][0]
        items: List[Any] = []
        cursor: Optional[str] = None
        for _ in range(MAX_PAGES):
            result = await self.request(method, {"cursor": cursor} if cursor else {})
            if not isinstance(result, dict) or not isinstance(result.get(key), list):
                raise BackendError(f"the backend's {method} result has no {key} list")
            items.extend(result[key])
            cursor = result.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                break
        return items

    async def close(self) -> None:
        if self.session_id is None:
            return
        try:
            await fetch(self.agent, self.clock, "DELETE", self.definition.backend, self._headers(),
                        max_bytes=65536, timeout=TIMEOUT)
        except Exception as e:  # noqa: BLE001 -- the session then ends by the backend's own timeout
            log.debug("preview: ending the backend session failed: {error}", error=e)


def _messages(body: bytes, event_stream: bool) -> List[Any]:
    if not event_stream:
        try:
            value = json.loads(body)
        except ValueError as e:
            raise BackendError(f"the backend's answer is not JSON: {e}") from e
        return value if isinstance(value, list) else [value]
    out: List[Any] = []

    def on_event(lines: Any) -> bytes:
        data = event_data(lines)[1]
        if data:
            try:
                out.append(json.loads(data))
            except ValueError:
                pass  # not a message (the gateway relays such events as they are)
        return b""

    framer = EventFramer(MAX_BYTES)
    framer.feed(body, on_event)
    framer.feed(b"\n\n", on_event)
    return out


def parse_preview(body: Any) -> Tuple[str, Optional[str], Tuple[str, ...]]:
    """
    C{{"plan", "application", "scopes"}} of a preview.

    @raise InvalidField: naming the field that is wrong.
    """
    body = read_object(body, {"plan", "application", "scopes"})
    plan = body.get("plan")
    if not isinstance(plan, str) or not plan:
        raise InvalidField("plan", "plan is required: the name of one of the API's plans")
    application = body.get("application")
    if application is not None and (not isinstance(application, str) or not application):
        raise InvalidField("application", "application must be an application id or null")
    scopes = body.get("scopes", [])
    if not isinstance(scopes, list) or not all(isinstance(s, str) and s for s in scopes):
        raise InvalidField("scopes", "scopes must be a list of OAuth scopes")
    return plan, application, tuple(scopes)


def _item(raw: Any, name_field: str, allowed: bool) -> Dict[str, Any]:
    shown = {k: raw[k] for k in _SHOWN if isinstance(raw, dict) and isinstance(raw.get(k), str)}
    shown["name"] = raw.get(name_field) if isinstance(raw, dict) else None
    shown["allowed"] = allowed
    return shown


class PreviewRoutes(AdminState):
    """
    @ivar backend_agent: the gateway's agent for backends (trusting a CA
        file, or the system's: L{mcpgated.proxy.upstream.UpstreamPool.agent}),
        set by the tap; without it previews answer 503.
    """

    backend_agent: Optional[AgentFor] = None

    @app.route("/apis/<string:api_id>/_preview", methods=["POST"])
    @endpoint()
    async def preview(self, request: IRequest, api_id: str) -> Answer:
        plan_name, application_id, scopes = parse_preview(read_json(request))
        definition = (await self.store.get_api(api_id)).definition
        plan = next((p for p in definition.plans if p.name == plan_name), None)
        if plan is None:
            raise InvalidField("plan", f"the API has no plan named {plan_name!r}; its plans: "
                                       f"{', '.join(p.name for p in definition.plans)}")
        application = None
        if application_id is not None:
            try:
                application = await self.store.get_application(application_id)
            except NotFound as e:
                raise HTTPError(404, e.message, "application") from e
        if self.backend_agent is None:
            raise HTTPError(503, "this admin API has no HTTP client for backends")
        policy = combine(definition.acl, plan.acl)
        caller = Caller(plan.name, application_id, frozenset(scopes))
        session = BackendSession(await self.backend_agent(definition.backend_ca_file), self.clock,
                                 definition)
        body: Dict[str, Any] = {
            "api": api_id, "plan": plan.name, "application": application_id,
            "applicationName": application.name if application is not None else None,
            "scopes": list(scopes), "rules": len(policy.rules), "dryRun": policy.dry_run}
        try:
            await session.open()
            for method, (key, name_field, capability) in LISTS.items():
                if capability not in session.capabilities:
                    body[key] = None  # the backend does not offer them
                    continue
                items = await session.list_all(method)
                kept, _ = policy.filter_result(method, {key: items}, caller)
                kept_ids = {id(item) for item in kept[key]}
                body[key] = [_item(item, name_field, id(item) in kept_ids) for item in items]
        except BackendError as e:
            raise HTTPError(502, f"cannot list the backend {definition.backend}: {e}",
                            "backend") from e
        finally:
            await session.close()
        return 200, body


# --- the OpenAPI description (merged by mcpgated.admin.openapi) ----------------------------

_ITEMS = {"type": ["array", "null"], "description": "null when the backend does not offer them",
          "items": {"$ref": "#/components/schemas/PreviewItem"}}

SCHEMAS: Dict[str, Any] = {
    "PreviewRequest": {"type": "object", "additionalProperties": False, "required": ["plan"],
                       "properties": {
                           "plan": {"type": "string", "description": "A plan's name"},
                           "application": {"type": ["string", "null"],
                                           "description": "An application's id (for rules "
                                                          "naming applications)"},
                           "scopes": {"type": "array", "items": {"type": "string"},
                                      "description": "OAuth scopes of the token (for rules "
                                                     "naming scopes)"}}},
    "PreviewItem": {"type": "object", "properties": {
        "name": {"type": "string", "description": "The tool or prompt name, the resource's uri, "
                                                  "the template's uriTemplate"},
        "title": {"type": "string"}, "description": {"type": "string"},
        "mimeType": {"type": "string"},
        "allowed": {"type": "boolean", "description": "The rules let this consumer list and use it"}}},
    "Preview": {"type": "object", "properties": {
        "api": {"type": "string"}, "plan": {"type": "string"},
        "application": {"type": ["string", "null"]},
        "applicationName": {"type": ["string", "null"]},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "rules": {"type": "integer", "description": "How many rules (the API's and the plan's) "
                                                    "apply; 0: everything is allowed"},
        "dryRun": {"type": "boolean", "description": "The rules only mark what they would deny"},
        "tools": _ITEMS, "resources": _ITEMS, "resourceTemplates": _ITEMS, "prompts": _ITEMS}},
}


def openapi_paths() -> Dict[str, Any]:
    error = {"$ref": "#/components/responses/Error"}
    return {"/apis/{api_id}/_preview": {"post": {
        "summary": "What a consumer sees: the backend's tools, resources, resource templates and "
                   "prompts (listed in an MCP session of the admin API's own), each marked allowed "
                   "or not by the stored definition's access-control rules for a plan, an "
                   "application and scopes",
        "parameters": [{"name": "api_id", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/PreviewRequest"}}}},
        "responses": {
            "200": {"description": "The backend's items, judged", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Preview"}}}},
            "400": error, "401": error, "404": error,
            "502": error, "503": error}}}}
