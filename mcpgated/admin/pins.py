"""
The admin API of tool-definition pinning (L{mcpgated.policy.pinning}): an
API's pins with their history, its drift events with their diffs, and the
operator's decisions (approve, which re-pins, and reject).

Also the OpenAPI description of these routes, merged by
L{mcpgated.admin.openapi}.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Optional, Tuple

from twisted.logger import Logger
from twisted.web.iweb import IRequest

from mcpgated.cluster.changes import PINS
from mcpgated.admin.endpoint import AdminState, Answer, HTTPError, app, endpoint, read_optional_json
from mcpgated.definitions import InvalidField
from mcpgated.model import ApiRecord
from mcpgated.policy.pinning import PinSettings

log = Logger()

_FINGERPRINT = re.compile(r"sha256:[0-9a-f]{64}")


class PinRoutes(AdminState):
    """
    Handlers keep the gateway's L{mcpgated.policy.pinbook.PinBook}
    (C{self.pins}) in step with each decision.
    """

    @app.route("/apis/<string:api_id>/pins", methods=["GET"])
    @endpoint()
    async def list_pins(self, request: IRequest, api_id: str) -> Answer:
        record = await self.store.get_api(api_id)
        settings = _settings(record)
        pins = await self.store.list_pins(api_id)
        return 200, {"pinning": settings.to_json(),
                     "data": [pin.to_json(settings) for pin in pins]}

    @app.route("/apis/<string:api_id>/pins/events", methods=["GET"])
    @endpoint()
    async def pin_events(self, request: IRequest, api_id: str) -> Answer:
        limit, cursor = page(request)
        events, next_cursor = await self.store.list_pin_events(api_id, limit, cursor)
        return 200, {"data": [event.to_json() for event in events],
                     "nextCursor": str(next_cursor) if next_cursor is not None else None}

    @app.route("/apis/<string:api_id>/pins/<string:pin_id>", methods=["GET"])
    @endpoint()
    async def get_pin(self, request: IRequest, api_id: str, pin_id: str) -> Answer:
        record = await self.store.get_api(api_id)
        pin, history = await self.store.get_pin(api_id, pin_id)
        body: Dict[str, Any] = pin.to_json(_settings(record))
        body["history"] = history
        return 200, body

    async def _decide(self, request: IRequest, api_id: str, pin_id: str, approve: bool) -> Answer:
        fingerprint = decision_body(read_optional_json(request))
        record = await self.store.get_api(api_id)
        pin = await self.store.decide_pin(api_id, pin_id, approve, fingerprint,
                                          self.clock.seconds())
        if self.pins is not None:
            self.pins.put(api_id, (pin.kind, pin.name), pin.state)
        await self.tell(PINS, api_id)
        log.info("API {api_id}: {kind} {name} {action} by the operator ({fingerprint})",
                 api_id=api_id, kind=pin.kind, name=pin.name,
                 action="approved" if approve else "rejected",
                 fingerprint=pin.state.approved if approve else pin.state.pending)
        return 200, pin.to_json(_settings(record))

    @app.route("/apis/<string:api_id>/pins/<string:pin_id>/_approve", methods=["POST"])
    @endpoint()
    async def approve_pin(self, request: IRequest, api_id: str, pin_id: str) -> Answer:
        return await self._decide(request, api_id, pin_id, True)

    @app.route("/apis/<string:api_id>/pins/<string:pin_id>/_reject", methods=["POST"])
    @endpoint()
    async def reject_pin(self, request: IRequest, api_id: str, pin_id: str) -> Answer:
        return await self._decide(request, api_id, pin_id, False)


def _settings(record: ApiRecord) -> PinSettings:
    """
    The pinning the gateway applies to an API: its deployed definition's,
    else (never deployed) its stored one's.
    """
    definition = record.deployed if record.deployed is not None else record.definition
    return definition.pinning


def decision_body(body: Any) -> Optional[str]:
    """
    The fingerprint an operator decides on (optional: the pending one).

    @raise InvalidField: naming the field that is wrong.
    """
    if body is None:
        return None
    if not isinstance(body, dict):
        raise InvalidField(None, "the body must be a JSON object, e.g. "
                                 '{"fingerprint": "sha256:..."}')
    unknown = sorted(set(body) - {"fingerprint"})
    if unknown:
        raise InvalidField(unknown[0], f"{unknown[0]} is not a known field")
    fingerprint = body.get("fingerprint")
    if fingerprint is not None and (not isinstance(fingerprint, str)
                                    or not _FINGERPRINT.fullmatch(fingerprint)):
        raise InvalidField("fingerprint", "fingerprint must be a pin fingerprint "
                                          "(sha256: and 64 hex digits)")
    return fingerprint


def page(request: IRequest) -> Tuple[int, Optional[int]]:
    """
    C{limit} (1 to 500, default 50) and C{cursor} of a page of drift events.

    @raise HTTPError: 400 naming the argument that is wrong.
    """
    def arg(name: str) -> Optional[str]:
        values = request.args.get(name.encode("ascii"))
        return values[0].decode("utf-8", "replace") if values else None

    limit_raw = arg("limit") or "50"
    if not (limit_raw.isascii() and limit_raw.isdigit()) or not 1 <= int(limit_raw) <= 500:
        raise HTTPError(400, "limit must be a whole number from 1 to 500", "limit")
    cursor_raw = arg("cursor")
    if cursor_raw is not None and (not (cursor_raw.isascii() and cursor_raw.isdigit())
                                   or len(cursor_raw) > 18):
        raise HTTPError(400, "cursor must be a value returned as nextCursor", "cursor")
    return int(limit_raw), int(cursor_raw) if cursor_raw else None


# --- the OpenAPI description of these routes (merged by mcpgated.admin.openapi) -------------

_TIME = {"type": ["string", "null"], "format": "date-time"}
_FP = {"type": ["string", "null"], "pattern": "^sha256:[0-9a-f]{64}$"}
_ERROR = {"$ref": "#/components/responses/Error"}
_API_ID = {"name": "api_id", "in": "path", "required": True, "schema": {"type": "string"}}
_PIN_ID = {"name": "pin_id", "in": "path", "required": True, "schema": {"type": "string"}}

PINNING_SETTINGS: Dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "description": "Tool-definition pinning: the gateway fingerprints each tool, prompt and resource "
                   "template in list results (RFC 8785 canonical JSON of name, title, description, "
                   "input and output schema, annotations; prompts: arguments; templates: uriTemplate, "
                   "mimeType) and reports definitions that differ from their pin.",
    "properties": {
        "mode": {"enum": ["off", "warn", "block"], "default": "off",
                 "description": "warn: pin, record and report; traffic unchanged. block: also filter "
                                "changed (or new, unapproved) items out of list results and refuse "
                                "calls to them (-32602) until an operator approves."},
        "approval": {"enum": ["first-use", "required"], "default": "first-use",
                     "description": "first-use: the first definition seen is pinned; required: "
                                    "nothing new is trusted until approved."}}}

_DEFINITION = {"type": ["object", "null"], "description": "The pinned fields of the definition"}

SCHEMAS: Dict[str, Any] = {
    "PinningSettings": PINNING_SETTINGS,
    "Pin": {"type": "object", "properties": {
        "id": {"type": "string"}, "api": {"type": "string"},
        "kind": {"enum": ["tool", "prompt", "resourceTemplate"]},
        "name": {"type": "string", "description": "The tool or prompt name, the template's uriTemplate"},
        "status": {"enum": ["approved", "pending", "rejected"],
                   "description": "pending: a definition other than the pinned one awaits a decision; "
                                  "rejected: the operator refused it"},
        "fingerprint": _FP, "definition": _DEFINITION, "approvedAt": _TIME,
        "approvedBy": {"type": ["string", "null"], "enum": ["first-use", "admin", None]},
        "pending": {"type": ["object", "null"], "properties": {
            "fingerprint": _FP, "definition": _DEFINITION, "seenAt": _TIME,
            "diff": {"type": "string", "description": "Unified diff from the pinned definition"}}},
        "present": {"type": "boolean", "description": "In the last list result (false once a "
                                                      "complete list lacked it)"},
        "seenFingerprint": _FP, "seenAt": _TIME,
        "trusted": {"type": "boolean", "description": "Its last listed definition is the pinned one"},
        "blocked": {"type": "boolean", "description": "Filtered out and its calls refused (block mode)"},
        "createdAt": _TIME, "updatedAt": _TIME}},
    "PinEvent": {"type": "object", "properties": {
        "id": {"type": "integer"}, "api": {"type": "string"}, "pin": {"type": ["string", "null"]},
        "kind": {"enum": ["tool", "prompt", "resourceTemplate"]}, "name": {"type": "string"},
        "type": {"enum": ["new", "changed", "removed"]},
        "oldFingerprint": _FP, "newFingerprint": _FP,
        "diff": {"type": "string", "description": "Unified diff of the canonical definitions"},
        "session": {"type": ["string", "null"],
                    "description": "The session whose list showed it, hashed as in the exchange log"},
        "at": _TIME}},
    "PinDecision": {"type": "object", "additionalProperties": False, "properties": {
        "fingerprint": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$",
                        "description": "The definition reviewed (default: the pending one); a "
                                       "different pending definition answers 409"}}},
}


def openapi_paths() -> Dict[str, Any]:
    errors = {"401": _ERROR, "404": _ERROR}
    pin = {"application/json": {"schema": {"$ref": "#/components/schemas/Pin"}}}
    decision = {"required": False, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/PinDecision"}}}}
    return {
        "/apis/{api_id}/pins": {"get": {
            "summary": "The API's pins (tool-definition pinning) and its pinning settings",
            "parameters": [_API_ID],
            "responses": {"200": {"description": "Pins", "content": {"application/json": {
                "schema": {"type": "object", "properties": {
                    "pinning": {"$ref": "#/components/schemas/PinningSettings"},
                    "data": {"type": "array", "items": {"$ref": "#/components/schemas/Pin"}}}}}}},
                **errors}}},
        "/apis/{api_id}/pins/events": {"get": {
            "summary": "Drift events (changed, new, removed definitions) with their diffs, newest "
                       "first (the newest 1000 per API are kept)",
            "parameters": [_API_ID,
                           {"name": "limit", "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                           {"name": "cursor", "in": "query", "schema": {"type": "string"},
                            "description": "nextCursor of the previous page"}],
            "responses": {"200": {"description": "Events", "content": {"application/json": {
                "schema": {"type": "object", "properties": {
                    "data": {"type": "array", "items": {"$ref": "#/components/schemas/PinEvent"}},
                    "nextCursor": {"type": ["string", "null"]}}}}}},
                "400": _ERROR, **errors}}},
        "/apis/{api_id}/pins/{pin_id}": {"get": {
            "summary": "One pin with its history (every definition pinned, approved or rejected)",
            "parameters": [_API_ID, _PIN_ID],
            "responses": {"200": {"description": "The pin and its history", "content": pin},
                          **errors}}},
        "/apis/{api_id}/pins/{pin_id}/_approve": {"post": {
            "summary": "Approve the pending definition: it becomes the pin, at once on the gateway",
            "parameters": [_API_ID, _PIN_ID], "requestBody": decision,
            "responses": {"200": {"description": "The pin", "content": pin}, "400": _ERROR,
                          "409": _ERROR, **errors}}},
        "/apis/{api_id}/pins/{pin_id}/_reject": {"post": {
            "summary": "Reject the pending definition: the pin stays, the item stays blocked in block "
                       "mode",
            "parameters": [_API_ID, _PIN_ID], "requestBody": decision,
            "responses": {"200": {"description": "The pin", "content": pin}, "400": _ERROR,
                          "409": _ERROR, **errors}}},
    }
