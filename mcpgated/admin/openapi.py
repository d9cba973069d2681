"""
The OpenAPI 3.1 description of the admin API (a test checks it against the
real Klein routes).
"""

from __future__ import annotations

from typing import Any, Dict

from mcpgated import __version__

_ERROR = {"$ref": "#/components/responses/Error"}
_API = {"$ref": "#/components/schemas/Api"}
_ID = {"name": "api_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _ok(description: str, schema: Dict[str, Any]) -> Dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _action(summary: str) -> Dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": [_ID],
            "responses": {"200": _ok("The API after the change", _API), "401": _ERROR,
                          "404": _ERROR, "409": _ERROR},
        }
    }


_RANGE = [
    {"name": "from", "in": "query", "schema": {"type": ["number", "string"]},
     "description": "Start: epoch seconds or ISO 8601 (default: an hour before `to`)"},
    {"name": "to", "in": "query", "schema": {"type": ["number", "string"]},
     "description": "End: epoch seconds or ISO 8601 (default: now)"},
]


def _logs(summary: str, per_api: bool) -> Dict[str, Any]:
    filters = [
        ("method", "string", "JSON-RPC method, e.g. tools/call"),
        ("tool", "string", "Tool, prompt or resource name (params.name / params.uri)"),
        ("outcome", "string", "result, error, tool_error, http_error, no_response, accepted, "
                              "client_closed, upstream_error, unparsed; or errors (any failure)"),
        ("status", "integer", "HTTP status"),
        ("client", "string", "Client address or client name"),
        ("session", "string", "Hashed session id as shown in records"),
        ("q", "string", "Free text in method, name, error message, client name, id"),
        ("cursor", "string", "nextCursor of the previous page"),
        ("limit", "integer", "Page size, 1-500 (default 50)"),
    ]
    parameters = ([_ID] if per_api else []) + _RANGE + [
        {"name": n, "in": "query", "schema": {"type": t}, "description": d} for n, t, d in filters]
    return {"summary": summary + " (newest first)", "parameters": parameters,
            "responses": {"200": _ok("A page of records", {"type": "object", "properties": {
                "data": {"type": "array", "items": {"$ref": "#/components/schemas/LogEntry"}},
                "nextCursor": {"type": ["string", "null"]}}}), "400": _ERROR, "401": _ERROR,
                "404": _ERROR}}


def _summary(summary: str, per_api: bool) -> Dict[str, Any]:
    return {"summary": summary, "parameters": ([_ID] if per_api else []) + _RANGE,
            "responses": {"200": _ok("Totals, counts by method and by tool/resource/prompt, error "
                                     "rates, latency p50/p90/p99, a time series, top clients",
                                     {"$ref": "#/components/schemas/Analytics"}),
                          "400": _ERROR, "401": _ERROR, "404": _ERROR}}


_LOG_ENTRY = {
    "type": "object",
    "properties": {name: {"type": ["string", "number", "integer", "boolean", "null"]} for name in (
        "id", "time", "apiId", "apiName", "plan", "consumer", "client", "session",
        "protocolVersion", "clientName", "clientVersion", "method", "kind", "target", "jsonrpcId",
        "outcome", "errorCode", "errorMessage", "httpStatus", "latencyMs", "ttfbMs", "bytesIn",
        "bytesOut", "notifications", "transport", "truncated")},
}
_LOG_ENTRY["properties"].update({name: {} for name in (
    "requestHeaders", "responseHeaders", "requestPayload", "responsePayload")})

_ANALYTICS = {
    "type": "object",
    "properties": {
        "totals": {"type": "object"}, "statuses": {"type": "object"},
        "latencyMs": {"type": "object", "properties": {
            "p50": {"type": ["number", "null"]}, "p90": {"type": ["number", "null"]},
            "p99": {"type": ["number", "null"]}}},
        "byMethod": {"type": "array", "items": {"type": "object"}},
        "byTarget": {"type": "array", "items": {"type": "object"}},
        "topClients": {"type": "array", "items": {"type": "object"}},
        "timeSeries": {"type": "object"}, "droppedRecords": {"type": "integer"},
    },
}


def openapi_document() -> Dict[str, Any]:
    plan = {
        "type": "object",
        "required": ["name", "security"],
        "properties": {
            "name": {"type": "string"},
            "security": {"enum": ["KEY_LESS", "API_KEY", "JWT", "OAUTH2"],
                         "description": "Only KEY_LESS is enforced by this version; others are refused."},
            "status": {"enum": ["STAGING", "PUBLISHED", "CLOSED"], "default": "PUBLISHED"},
            "description": {"type": "string"},
        },
        "additionalProperties": False,
    }
    definition = {
        "type": "object",
        "required": ["name", "version", "contextPath", "backend", "plans"],
        "properties": {
            "name": {"type": "string", "maxLength": 100},
            "version": {"type": "string", "maxLength": 50},
            "description": {"type": "string"},
            "contextPath": {"type": "string", "example": "/mcp-proxy",
                            "description": "Absolute path; no '..', query or fragment; "
                                           "must not overlap a deployed API's path."},
            "backend": {"type": "string", "format": "uri", "example": "http://localhost:3001/mcp"},
            "plans": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Plan"}},
            "analytics": {"type": "object", "description": "Exchange log capture for this API",
                          "properties": {
                              "capture": {"enum": ["off", "headers", "bodies"], "default": "off"},
                              "maxPayloadBytes": {"type": "integer", "default": 16384,
                                                  "minimum": 1, "maximum": 1048576},
                              "redactFields": {"type": "array", "items": {"type": "string"}},
                          }, "additionalProperties": False},
        },
    }
    api = {
        "allOf": [
            {"$ref": "#/components/schemas/ApiDefinition"},
            {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "state": {"enum": ["STOPPED", "STARTED"]},
                    "deploymentState": {"enum": ["NEVER_DEPLOYED", "DEPLOYED", "NEED_REDEPLOY"]},
                    "needsRedeploy": {"type": "boolean",
                                      "description": "The deployed definition is behind the stored one."},
                    "createdAt": {"type": "string", "format": "date-time"},
                    "updatedAt": {"type": "string", "format": "date-time"},
                    "deployedAt": {"type": ["string", "null"], "format": "date-time"},
                    "deployed": {"oneOf": [{"$ref": "#/components/schemas/ApiDefinition"},
                                           {"type": "null"}]},
                },
            },
        ]
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "mcpgated admin API", "version": __version__},
        "security": [{"bearer": []}],
        "paths": {
            "/health": {"get": {"summary": "Liveness", "security": [],
                                "responses": {"200": _ok("Up", {"type": "object"})}}},
            "/openapi.json": {"get": {"summary": "This document", "security": [],
                                      "responses": {"200": _ok("OpenAPI 3.1", {"type": "object"})}}},
            "/apis": {
                "get": {"summary": "List APIs",
                        "responses": {"200": _ok("All APIs", {"type": "object", "properties": {
                            "data": {"type": "array", "items": _API}}}), "401": _ERROR}},
                "post": {"summary": "Create an API (STOPPED, not deployed)",
                         "requestBody": {"required": True, "content": {"application/json": {
                             "schema": {"$ref": "#/components/schemas/ApiDefinition"}}}},
                         "responses": {"201": _ok("Created", _API), "400": _ERROR, "401": _ERROR}},
            },
            "/apis/{api_id}": {
                "get": {"summary": "Get an API", "parameters": [_ID],
                        "responses": {"200": _ok("The API", _API), "401": _ERROR, "404": _ERROR}},
                "put": {"summary": "Replace the stored definition (live after _deploy)",
                        "parameters": [_ID],
                        "requestBody": {"required": True, "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/ApiDefinition"}}}},
                        "responses": {"200": _ok("Updated", _API), "400": _ERROR, "401": _ERROR,
                                      "404": _ERROR}},
                "delete": {"summary": "Delete a STOPPED API", "parameters": [_ID],
                           "responses": {"204": {"description": "Deleted"}, "401": _ERROR,
                                         "404": _ERROR, "409": _ERROR}},
            },
            "/apis/{api_id}/_deploy": _action("Deploy the stored definition and start the API"),
            "/apis/{api_id}/_start": _action("Start a deployed API"),
            "/apis/{api_id}/_stop": _action("Stop serving an API"),
            "/apis/{api_id}/logs": {"get": _logs("Exchange log of one API", True)},
            "/logs": {"get": _logs("Exchange log of every API", False)},
            "/apis/{api_id}/logs/{log_id}": {"get": {
                "summary": "One exchange record, with captured headers and payloads",
                "parameters": [_ID, {"name": "log_id", "in": "path", "required": True,
                                     "schema": {"type": "integer"}}],
                "responses": {"200": _ok("The record", {"$ref": "#/components/schemas/LogEntry"}),
                              "401": _ERROR, "404": _ERROR}}},
            "/apis/{api_id}/analytics": {"get": _summary("Usage analytics of one API", True)},
            "/analytics": {"get": _summary("Usage analytics across every API", False)},
            "/metrics": {"get": {
                "summary": "Prometheus metrics (text exposition format)",
                "responses": {"200": {"description": "Metrics", "content": {
                    "text/plain": {"schema": {"type": "string"}}}}, "401": _ERROR}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Plan": plan, "ApiDefinition": definition, "Api": api,
                        "LogEntry": _LOG_ENTRY, "Analytics": _ANALYTICS,
                        "Error": {"type": "object", "required": ["error"], "properties": {
                            "error": {"type": "string"}, "field": {"type": ["string", "null"]}}}},
            "responses": {"Error": {"description": "Error",
                                    "content": {"application/json": {
                                        "schema": {"$ref": "#/components/schemas/Error"}}}}},
        },
    }
