"""
The OpenAPI 3.1 description of the admin API (a test checks it against the
real Klein routes).
"""

from __future__ import annotations

from typing import Any, Dict

from mcpgated.admin import export as _export, pins as _pins, preview as _preview
from mcpgated.admin.analytics import LOG_OUTCOMES
from mcpgated.analytics.metrics import OUTCOMES

_ERROR = {"$ref": "#/components/responses/Error"}
_API = {"$ref": "#/components/schemas/Api"}
_ID = {"name": "api_id", "in": "path", "required": True, "schema": {"type": "string"}}
ADMIN_API_VERSION = "1"
_EFFECTIVE_AUDIENCE = {
    "type": "object", "readOnly": True,
    "description": "By token plan name (JWT, OAUTH2): the audiences its tokens must name (one of them). "
                   "source: plan (its audience), publicUrl or gateway.public_url (the API's public "
                   "resource URL, as its protected-resource metadata advertises), request (no public "
                   "URL is configured: the origin each client used, shown as {origin}, decides it; "
                   "set publicUrl or [gateway] public_url to pin it), anyAudience (no check; audience "
                   "null).",
    "additionalProperties": {"type": "object", "properties": {
        "audience": {"type": ["array", "null"], "items": {"type": "string"}},
        "source": {"enum": ["plan", "publicUrl", "gateway.public_url", "request", "anyAudience"]}}},
}


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
    {"name": "last", "in": "query", "schema": {"type": "number", "exclusiveMinimum": 0},
     "description": "Instead of `from`: the window in seconds ending at `to`, by the gateway's "
                    "clock (the web console's time ranges)"},
]


def _logs(summary: str, per_api: bool) -> Dict[str, Any]:
    filters = [
        ("method", "string", "JSON-RPC method, e.g. tools/call"),
        ("tool", "string", "Tool, prompt or resource name (params.name / params.uri)"),
        ("outcome", "string", ("An outcome of the records (see LogEntry.outcome), or errors (any "
                               "failure: error, tool_error, http_error, upstream_error and the "
                               "gateway's refusals)")),
        ("status", "integer", "HTTP status"),
        ("client", "string", "Client address or client name"),
        ("session", "string", "Hashed session id as shown in records"),
        ("node", "string", "The gateway node that handled the exchange ([gateway] node)"),
        ("q", "string", "Free text in method, name, error message, client name, id"),
        ("cursor", "string", "nextCursor of the previous page"),
        ("limit", "integer", "Page size, 1-500 (default 50)"),
    ]
    outcomes = {"enum": sorted(LOG_OUTCOMES)}
    parameters = ([_ID] if per_api else []) + _RANGE + [
        {"name": n, "in": "query", "schema": dict({"type": t}, **(outcomes if n == "outcome" else {})),
         "description": d} for n, t, d in filters]
    return {"summary": summary + " (newest first). Any other query parameter is a 400 naming it.",
            "parameters": parameters,
            "responses": {"200": _ok("A page of records", {"type": "object", "properties": {
                "data": {"type": "array", "items": {"$ref": "#/components/schemas/LogEntry"}},
                "nextCursor": {"type": ["string", "null"]}}}), "400": _ERROR, "401": _ERROR,
                "404": _ERROR}}


def _summary(summary: str, per_api: bool) -> Dict[str, Any]:
    return {"summary": summary + ". Any other query parameter is a 400 naming it.",
            "parameters": ([_ID] if per_api else []) + _RANGE + [
                {"name": "node", "in": "query", "schema": {"type": "string"},
                 "description": "Only the traffic of this gateway node ([gateway] node)"}],
            "responses": {"200": _ok("Totals, counts by method and by tool/resource/prompt, error "
                                     "rates, latency p50/p90/p99, a time series, top clients",
                                     {"$ref": "#/components/schemas/Analytics"}),
                          "400": _ERROR, "401": _ERROR, "404": _ERROR}}


_LOG_ENTRY: Dict[str, Any] = {
    "type": "object",
    "properties": {name: {"type": ["string", "number", "integer", "boolean", "null"]} for name in (
        "id", "time", "apiId", "apiName", "plan", "consumer", "client", "session",
        "protocolVersion", "clientName", "clientVersion", "method", "kind", "target", "jsonrpcId",
        "outcome", "errorCode", "errorMessage", "httpStatus", "latencyMs", "ttfbMs", "bytesIn",
        "bytesOut", "notifications", "transport", "truncated")},
}
_LOG_ENTRY["properties"]["node"] = {
    "type": ["string", "null"],
    "description": "The gateway node that handled the exchange ([gateway] node, by default its host "
                   "name); null for records written before nodes were recorded"}
_LOG_ENTRY["properties"]["protocolVersion"] = {
    "type": ["string", "null"],
    "description": "The MCP version the client spoke (from initialize, or the request's _meta)"}
_LOG_ENTRY["properties"]["backendVersion"] = {
    "type": ["string", "null"],
    "description": "The MCP version the gateway spoke to the backend when the API's protocol "
                   "settings bridged versions; null when it did not bridge (the backend spoke "
                   "protocolVersion) and for records written before it was recorded"}
_LOG_ENTRY["properties"].update({name: {} for name in (
    "requestHeaders", "responseHeaders", "requestPayload", "responsePayload")})
_LOG_ENTRY["properties"]["outcome"] = {
    "type": ["string", "null"], "enum": [*sorted(o for o in OUTCOMES if o), None],
    "description": "result, error (JSON-RPC), tool_error (isError), http_error; the gateway's "
                   "refusals: denied (access control), rate_limited, unauthorized, forbidden, "
                   "bad_credentials, bad_request; accepted (a notification), no_response, "
                   "client_closed, upstream_error, unparsed (a body too large to read)"}

_ANALYTICS = {
    "type": "object",
    "properties": {
        "totals": {"type": "object"}, "statuses": {"type": "object"},
        "latencyMs": {"type": "object", "properties": {
            "p50": {"type": ["number", "null"]}, "p90": {"type": ["number", "null"]},
            "p99": {"type": ["number", "null"]}}},
        "byMethod": {"type": "array", "items": {"type": "object", "properties": {
            "method": {"type": "string"}, "count": {"type": "integer"}, "errors": {"type": "integer"},
            "errorRate": {"type": "number", "description": "errors over requests"},
            "latencyMs": {"type": "object"}}}},
        "byTarget": {"type": "array", "items": {"type": "object"}},
        "topClients": {"type": "array", "items": {"type": "object", "properties": {
            "application": {"type": ["string", "null"]}, "clientName": {"type": ["string", "null"]},
            "address": {"type": ["string", "null"]}, "client": {"type": "string"},
            "count": {"type": "integer"}},
            "description": "grouped by application, then client name and address"}},
        "timeSeries": {"type": "object"}, "droppedRecords": {"type": "integer"},
    },
}


# --- applications, subscriptions and API keys -------------------------------------------

_APPLICATION_ID = {"name": "application_id", "in": "path", "required": True,
                   "schema": {"type": "string"}}
_SUBSCRIPTION_ID = {"name": "subscription_id", "in": "path", "required": True,
                    "schema": {"type": "string"}}
_KEY_ID = {"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}
_SUB = [_ID, _SUBSCRIPTION_ID]


def _ref(name: str) -> Dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list(name: str) -> Dict[str, Any]:
    return {"type": "object", "properties": {"data": {"type": "array", "items": _ref(name)}}}


def _body(name: str, required: bool = True) -> Dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": _ref(name)}}}


_TIME = {"type": "string", "format": "date-time"}
_MAYBE_TIME = {"type": ["string", "null"], "format": "date-time"}

_SUBSCRIPTION_SCHEMAS: Dict[str, Any] = {
    "ApplicationInput": {
        "type": "object", "required": ["name"], "additionalProperties": False,
        "properties": {"name": {"type": "string", "maxLength": 100},
                       "description": {"type": "string", "maxLength": 2000}}},
    "Application": {"type": "object", "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "description": {"type": "string"},
        "createdAt": _TIME}},
    "SubscriptionInput": {
        "type": "object", "required": ["application", "plan"], "additionalProperties": False,
        "properties": {
            "application": {"type": "string", "description": "An application id"},
            "plan": {"type": "string", "description": "The name of a PUBLISHED API_KEY, JWT or "
                                                      "OAUTH2 plan of the API's stored "
                                                      "definition (KEY_LESS plans need no "
                                                      "subscription)"}}},
    "Subscription": {"type": "object", "properties": {
        "id": {"type": "string"}, "api": {"type": "string"}, "plan": {"type": "string"},
        "application": {"type": "string"}, "applicationName": {"type": "string"},
        "status": {"enum": ["ACCEPTED", "CLOSED"]}, "createdAt": _TIME, "closedAt": _MAYBE_TIME}},
    "ApiKey": {"type": "object", "description": "A key as listed: never the key itself",
               "properties": {
                   "id": {"type": "string"}, "subscription": {"type": "string"},
                   "prefix": {"type": "string", "description": "The key's first 6 characters"},
                   "status": {"enum": ["ACTIVE", "EXPIRED", "REVOKED"]},
                   "createdAt": _TIME, "expiresAt": _MAYBE_TIME, "revokedAt": _MAYBE_TIME}},
    "IssuedApiKey": {"type": "object", "description": "The only answer that shows the key: "
                                                      "the gateway keeps its SHA-256 only",
                     "properties": {
                         "id": {"type": "string"}, "key": {"type": "string"},
                         "prefix": {"type": "string"}, "createdAt": _TIME,
                         "expiresAt": _MAYBE_TIME}},
    "Rotation": {"type": "object", "additionalProperties": False, "properties": {
        "expireOldAfter": {"type": "integer", "minimum": 0, "maximum": 2592000, "default": 3600,
                           "description": "Seconds the subscription's current keys keep working "
                                          "(0: they stop at once)"}}},
}


def _subscription_paths() -> Dict[str, Any]:
    errors = {"401": _ERROR, "404": _ERROR}
    return {
        "/applications": {
            "get": {"summary": "List applications (API consumers)",
                    "responses": {"200": _ok("All applications", _list("Application")),
                                  "401": _ERROR}},
            "post": {"summary": "Create an application", "requestBody": _body("ApplicationInput"),
                     "responses": {"201": _ok("Created", _ref("Application")), "400": _ERROR,
                                   "401": _ERROR}},
        },
        "/applications/{application_id}": {
            "get": {"summary": "Get an application", "parameters": [_APPLICATION_ID],
                    "responses": {"200": _ok("The application", _ref("Application")), **errors}},
            "delete": {"summary": "Delete an application with its subscriptions and keys (the "
                                  "keys stop working at once)", "parameters": [_APPLICATION_ID],
                       "responses": {"204": {"description": "Deleted"}, **errors}},
        },
        "/apis/{api_id}/subscriptions": {
            "get": {"summary": "List the API's subscriptions", "parameters": [_ID],
                    "responses": {"200": _ok("All subscriptions", _list("Subscription")),
                                  **errors}},
            "post": {"summary": "Subscribe an application to a plan (ACCEPTED at once)",
                     "parameters": [_ID], "requestBody": _body("SubscriptionInput"),
                     "responses": {"201": _ok("Created", _ref("Subscription")), "400": _ERROR,
                                   "409": _ERROR, **errors}},
        },
        "/apis/{api_id}/subscriptions/{subscription_id}": {
            "get": {"summary": "Get a subscription", "parameters": _SUB,
                    "responses": {"200": _ok("The subscription", _ref("Subscription")),
                                  **errors}},
        },
        "/apis/{api_id}/subscriptions/{subscription_id}/_close": {
            "post": {"summary": "Close a subscription and revoke its keys", "parameters": _SUB,
                     "responses": {"200": _ok("Closed", _ref("Subscription")), "409": _ERROR,
                                   **errors}},
        },
        "/apis/{api_id}/subscriptions/{subscription_id}/keys": {
            "get": {"summary": "List the subscription's API keys (never the keys)",
                    "parameters": _SUB,
                    "responses": {"200": _ok("All keys", _list("ApiKey")), **errors}},
            "post": {"summary": "Issue an API key (API_KEY plans; shown once, in this answer)",
                     "parameters": _SUB,
                     "responses": {"201": _ok("The new key", _ref("IssuedApiKey")),
                                   "409": _ERROR, **errors}},
        },
        "/apis/{api_id}/subscriptions/{subscription_id}/keys/_rotate": {
            "post": {"summary": "Issue a new key; the subscription's current keys expire after "
                                "expireOldAfter seconds (default 3600)",
                     "parameters": _SUB, "requestBody": _body("Rotation", required=False),
                     "responses": {"201": _ok("The new key", _ref("IssuedApiKey")),
                                   "400": _ERROR, "409": _ERROR, **errors}},
        },
        "/apis/{api_id}/subscriptions/{subscription_id}/keys/{key_id}": {
            "delete": {"summary": "Revoke an API key (it stops working at once)",
                       "parameters": [*_SUB, _KEY_ID],
                       "responses": {"204": {"description": "Revoked"}, **errors}},
        },
    }


# --- end of applications, subscriptions and API keys ------------------------------------


_NAMES = {"type": "array", "items": {"type": "string"}}
_ACCESS_POLICY = {
    "type": "object",
    "description": "MCP access control. A rule allows, or with deny: true denies; deny wins. A kind "
                   "(tools, resources, prompts, other methods) an allow rule names is an allow-list: "
                   "what no allow rule allows is denied (JSON-RPC error, HTTP 200) and list results "
                   "are filtered; kinds no allow rule names stay open, minus what deny rules name "
                   "(deny globs match case-folded and NFKC-normalised).",
    "properties": {
        "dryRun": {"type": "boolean", "default": False},
        "rules": {"type": "array", "items": {"type": "object", "properties": {
            "methods": dict(_NAMES, description="Methods the rule covers (default: all)"),
            "tools": dict(_NAMES, description="Tool names or globs"),
            "resources": dict(_NAMES, description="Resource URI globs"),
            "prompts": dict(_NAMES, description="Prompt names or globs"),
            "plans": _NAMES, "applications": _NAMES, "scopes": _NAMES,
            "claims": {"type": "object"}, "description": {"type": "string"},
            "deny": {"type": "boolean", "default": False,
                     "description": "Deny what the rule names instead of allowing it"}},
            "additionalProperties": False}},
    },
}
_RATE_LIMIT = {
    "type": "object",
    "description": "Fixed windows counted per API and plan: scope subscription (each subscription, "
                   "token subject or client address apart) or plan (one budget for the plan of this "
                   "API). A batch is admitted or refused (429) as a whole; a refused batch spends "
                   "nothing.",
    "properties": {
        "periodSeconds": {"type": "number", "default": 60},
        "requests": {"type": "integer"}, "toolCalls": {"type": "integer"},
        "perTool": {"type": "object", "additionalProperties": {"type": "integer"}},
        "scope": {"enum": ["subscription", "plan"], "default": "subscription"},
    },
}


def openapi_document() -> Dict[str, Any]:
    plan = {
        "type": "object",
        "required": ["name", "security"],
        "properties": {
            "name": {"type": "string"},
            "security": {"enum": ["KEY_LESS", "API_KEY", "JWT", "OAUTH2"],
                         "description": "Selected by the credential a request carries: an API key "
                                        "(API_KEY), a bearer token (JWT, OAUTH2) or none (KEY_LESS). "
                                        "A KEY_LESS API with oauth.relay lets the backend enforce its own OAuth."},
            "status": {"enum": ["STAGING", "PUBLISHED", "CLOSED"], "default": "PUBLISHED"},
            "description": {"type": "string"},
            "configuration": {"type": "object", "description":
                              "API_KEY: header, queryParam. JWT: issuer, audience | anyAudience, "
                              "jwksUrl | publicKey, algorithms, requiredScopes, scopesSupported, "
                              "scopeClaim, authorizationServers. OAUTH2: introspectionUrl, clientId, "
                              "clientSecret (shown masked), issuer, audience | anyAudience, "
                              "cacheSeconds, requiredScopes, scopesSupported, authorizationServers. "
                              "audience (a URL or a list): the token's aud must name one; without it, "
                              "the API's public resource URL (the resource of its protected-resource "
                              "metadata). anyAudience: true accepts tokens for any audience (explicit "
                              "opt-out; not with audience). See effectiveAudience on the API."},
            "rateLimit": {"$ref": "#/components/schemas/RateLimit"},
            "acl": {"$ref": "#/components/schemas/AccessPolicy"},
        },
        "additionalProperties": False,
    }
    definition = {
        "type": "object",
        "required": ["name", "version", "contextPath", "plans"],
        "description": "Give backend (one MCP server) or endpoints (several replicas of it), "
                       "not both.",
        "properties": {
            "name": {"type": "string", "maxLength": 100},
            "version": {"type": "string", "maxLength": 50},
            "description": {"type": "string"},
            "contextPath": {"type": "string", "example": "/mcp-proxy",
                            "description": "Absolute path; no '..', query or fragment; "
                                           "must not overlap a deployed API's path."},
            "backend": {"type": ["string", "null"], "format": "uri",
                        "example": "http://localhost:3001/mcp",
                        "description": "http(s) URL; an internationalised host is stored in its IDNA "
                                       "(xn--) form and a non-ASCII path or query percent-encoded; a "
                                       "host that is not valid IDNA 2008 is refused. null for an API "
                                       "with endpoints."},
            "endpoints": {
                "type": ["array", "null"], "minItems": 1, "maxItems": 64,
                "description": "Replicas of one MCP server, instead of backend. A stateful session "
                               "stays on the endpoint that created it: the client's Mcp-Session-Id "
                               "(and the legacy transport's sessionId) is the endpoint and the "
                               "backend's session id sealed with [gateway] session_key_file "
                               "(AES-GCM); an id the gateway did not seal for this API, or whose "
                               "endpoint is gone or down, is answered 404 -32001 \"Session not "
                               "found\". Requests without a session (2026-07-28) go to any healthy "
                               "endpoint.",
                "items": {"type": "object", "additionalProperties": False, "required": ["url"],
                          "properties": {
                              "url": {"type": "string", "format": "uri",
                                      "example": "http://10.0.0.1:3001/mcp"},
                              "weight": {"type": "integer", "minimum": 1, "maximum": 1000,
                                         "default": 1}}}},
            "loadBalancing": {
                "type": ["object", "null"], "additionalProperties": False,
                "description": "How requests without a session are spread over endpoints, and when "
                               "an endpoint is taken out (only with endpoints).",
                "properties": {
                    "algorithm": {"enum": ["round-robin", "least-connections"],
                                  "default": "round-robin",
                                  "description": "Smooth weighted round-robin, or the fewest "
                                                 "requests in flight per weight."},
                    "passive": {"type": "object", "additionalProperties": False, "properties": {
                        "maxFailures": {"type": "integer", "minimum": 1, "maximum": 100,
                                        "default": 3,
                                        "description": "5xx answers or failed connections in a "
                                                       "row that take an endpoint out (a refused "
                                                       "connection: at once)"},
                        "ejectSeconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600,
                                         "default": 10,
                                         "description": "How long it stays out before it is "
                                                        "tried again"}}},
                    "healthCheck": {
                        "type": ["object", "null"], "additionalProperties": False,
                        "description": "Active checks: a GET of path on each endpoint's origin "
                                       "(empty: the endpoint's URL); an answer below 500 within "
                                       "timeoutSeconds is healthy, anything else takes the "
                                       "endpoint out until a check passes.",
                        "properties": {
                            "intervalSeconds": {"type": "number", "exclusiveMinimum": 0,
                                                "maximum": 3600, "default": 10},
                            "timeoutSeconds": {"type": "number", "exclusiveMinimum": 0,
                                               "maximum": 60, "default": 2},
                            "path": {"type": "string", "example": "/health", "default": ""}}},
                }},
            "backendKeepAlive": {
                "type": "object", "additionalProperties": False,
                "description": "The keep-alive pool toward the backend.",
                "properties": {
                    "idleTimeoutSeconds": {
                        "type": "number", "minimum": 0, "maximum": 600, "default": 4,
                        "description": "Seconds an idle backend connection is kept for the next "
                                       "request (0: a new connection per request). Keep it below the "
                                       "backend's keep-alive timeout (gunicorn: 2 s). A response's "
                                       "Keep-Alive: timeout=N shortens it to N - 2 s."},
                }},
            "plans": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Plan"}},
            "acl": {"$ref": "#/components/schemas/AccessPolicy"},
            "pinning": {"$ref": "#/components/schemas/PinningSettings"},
            "protocol": {
                "type": ["object", "null"], "additionalProperties": False,
                "required": ["clientVersions"],
                "description": "The MCP protocol versions this API accepts from its clients "
                               "(absent or null: any, passed through). A 2026-07-28 request of "
                               "another version gets 400 and -32022 with the supported list; an "
                               "initialize proposing another version is offered the newest "
                               "accepted handshake version (or gets -32602 with the supported "
                               "list); a later request whose MCP-Protocol-Version is not "
                               "accepted gets 400.",
                "properties": {
                    "clientVersions": {
                        "type": "array", "minItems": 1, "uniqueItems": True,
                        "items": {"enum": ["2024-11-05", "2025-03-26", "2025-06-18",
                                           "2025-11-25", "2026-07-28"]},
                        "example": ["2025-06-18", "2025-11-25"]},
                    "backendVersion": {
                        "type": ["string", "null"],
                        "enum": ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25",
                                 "2026-07-28", None],
                        "description": "The version the backend speaks. 2026-07-28 with "
                                       "handshake-era client versions: the gateway bridges them "
                                       "(initialize answered from server/discover, a sealed "
                                       "session id of its own, _meta and routing headers added, "
                                       "the GET stream from subscriptions/listen). An older "
                                       "version with 2026-07-28 among the client versions: the "
                                       "gateway bridges 2026-07-28 clients (it checks their "
                                       "requests as a 2026-07-28 server, keeps the backend "
                                       "sessions they need, answers server/discover, maps "
                                       "subscriptions/listen to the GET stream and the backend's "
                                       "input requests to input_required results). Both work "
                                       "with backend or endpoints; see the README."}}},
            "backendAuth": {"type": ["object", "null"], "properties": {
                "header": {"type": "string"}, "value": {"type": "string", "description": "shown masked"},
                "forwardClientToken": {"type": "boolean", "default": False}},
                "description": "Credential sent to the backend; the client's bearer token is "
                               "stripped unless forwardClientToken."},
            "backendCaFile": {"type": ["string", "null"],
                              "description": "PEM CA file trusted for an https backend"},
            "analytics": {"type": "object", "description": "Exchange log capture for this API",
                          "properties": {
                              "logging": {"type": "boolean", "default": True,
                                          "description": "Keep exchange log records (logs and "
                                                         "dashboard); metrics and the access "
                                                         "log stay when off"},
                              "capture": {"enum": ["off", "headers", "bodies"], "default": "off"},
                              "maxPayloadBytes": {"type": "integer", "default": 16384,
                                                  "minimum": 1, "maximum": 1048576},
                              "redactFields": {"type": "array", "items": {"type": "string"}},
                          }, "additionalProperties": False},
            "publicUrl": {
                "type": ["string", "null"], "format": "uri", "default": None,
                "example": "https://mcp.example.com",
                "description": "Where clients reach the gateway for this API (scheme, host, optional "
                               "path prefix; the context path is appended). Overrides the gateway's "
                               "[gateway] public_url; without either, the URL comes from the request "
                               "(X-Forwarded-*/Forwarded believed only from trusted_proxies). Used "
                               "for the OAuth resource and metadata URLs.",
            },
            "oauth": {
                "type": "object", "description": "A backend that runs its own OAuth (the plan stays "
                                                 "KEY_LESS: the backend checks the tokens).",
                "properties": {
                    "relay": {
                        "type": "boolean", "default": False,
                        "description": "The gateway's URL for this API (publicUrl + contextPath) is "
                                       "the protected resource: 401/403 WWW-Authenticate "
                                       "resource_metadata points at the gateway's "
                                       "/.well-known/oauth-protected-resource/<path>, which serves "
                                       "the backend's RFC 9728 metadata with resource rewritten to "
                                       "the gateway's URL (only when it named the backend's URL). "
                                       "Authorization and DPoP reach the backend untouched. The "
                                       "backend MUST accept tokens whose audience is the gateway's "
                                       "URL for this API.",
                    },
                    "proxyAuthorizationServerDiscovery": {
                        "type": "boolean", "default": False,
                        "description": "Needs relay. Also serve the backend's authorization server "
                                       "metadata, unchanged, at /.well-known/oauth-authorization-server "
                                       "on the gateway's origin (2025-03-26 clients); the root form "
                                       "only when this API owns the host or is the only one asking.",
                    },
                },
                "additionalProperties": False,
            },
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
                                           {"type": "null"}],
                                 "description": "The live definition, with its own effectiveAudience."},
                    "effectiveAudience": _EFFECTIVE_AUDIENCE,
                },
            },
        ]
    }
    document = {
        "openapi": "3.1.0",
        # the document's version, not the daemon's: /openapi.json needs no token
        "info": {"title": "mcpgated admin API", "version": ADMIN_API_VERSION},
        "security": [{"bearer": []}],
        "paths": {
            "/health": {"get": {
                "summary": "Readiness: {\"status\": \"ok\"}; with the admin token also version and "
                           "apisStarted (not shown without it); 503 {\"status\": \"starting\"} while "
                           "the API store opens",
                "security": [],
                "responses": {"200": _ok("Up", {"type": "object", "properties": {
                    "status": {"const": "ok"}, "version": {"type": "string"},
                    "apisStarted": {"type": "integer"}}, "required": ["status"]}),
                    "503": _ok("Starting: nothing is routed yet", {
                        "type": "object", "properties": {"status": {"const": "starting"}},
                        "required": ["status"]})}}},
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
            "/gateway": {"get": {
                "summary": "Where MCP clients reach the gateway: [gateway] public_url and the bound "
                           "gateway listeners (host null for a wildcard address); the web console "
                           "builds its client URLs from it",
                "responses": {"200": _ok("Gateway addresses", {"type": "object", "properties": {
                    "publicUrl": {"type": ["string", "null"]},
                    "listeners": {"type": "array", "items": {"type": "object", "properties": {
                        "scheme": {"enum": ["http", "https"]},
                        "host": {"type": ["string", "null"]},
                        "port": {"type": ["integer", "null"]}}}}}}), "401": _ERROR}}},
            **_subscription_paths(),
            **_pins.openapi_paths(),
            **_preview.openapi_paths(),
            **_export.openapi_paths(),
            "/metrics": {"get": {
                "summary": "Prometheus metrics (text exposition format). Labels come from bounded "
                           "sets: method (the MCP specification's methods, else other), target "
                           "(tools/call and prompts/get names of admitted calls, at most 100 per API "
                           "and 64 characters, else other), outcome (refusals by reason)",
                "responses": {"200": {"description": "Metrics", "content": {
                    "text/plain": {"schema": {"type": "string"}}}}, "401": _ERROR}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Plan": plan, "ApiDefinition": definition, "Api": api,
                        "LogEntry": _LOG_ENTRY, "Analytics": _ANALYTICS,
                        "AccessPolicy": _ACCESS_POLICY, "RateLimit": _RATE_LIMIT, **_SUBSCRIPTION_SCHEMAS,
                        **_pins.SCHEMAS, **_preview.SCHEMAS,
                        "Error": {"type": "object", "required": ["error"], "properties": {
                            "error": {"type": "string"}, "field": {"type": ["string", "null"]}}}},
            "responses": {"Error": {"description": "Error",
                                    "content": {"application/json": {
                                        "schema": {"$ref": "#/components/schemas/Error"}}}}},
        },
    }
    # Every write may find the store unable to write: 507 for a full disk,
    # 503 for another storage failure; nothing was changed either way.
    for operations in document["paths"].values():  # type: ignore[attr-defined]
        for method, operation in operations.items():
            if method in ("post", "put", "delete"):
                operation["responses"].setdefault("503", _ERROR)
                operation["responses"].setdefault("507", _ERROR)
    return document
