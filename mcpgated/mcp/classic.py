"""
A 2026-07-28 client in front of a handshake-era backend, as pure functions
of the messages: what identifies the backend session a request needs, the
request in the backend session's terms, and the backend's answers in
2026-07-28's.

The backend session is keyed by what a handshake-era server learns at
C{initialize} and a 2026-07-28 client sends with every request: its client
info, capabilities and log level (C{_meta}). The gateway strips those from
each request (the session carries them) and adds what 2026-07-28 results
must have: C{resultType}, the server's info in C{_meta}, and the cache hints
(C{ttlMs} 0 and C{cacheScope} C{private}: the backend gave none) on lists,
C{resources/read} and C{server/discover}.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple

import attrs

from mcpgated.mcp.headers import HEADER_MISMATCH, decode_header_value
from mcpgated.mcp.bridge import (
    CLIENT_CAPABILITIES,
    CLIENT_INFO,
    META_VERSION,
    SERVER_INFO,
    request_meta,
)

LOG_LEVEL = "io.modelcontextprotocol/logLevel"
SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"
_STRIPPED = (META_VERSION, CLIENT_INFO, CLIENT_CAPABILITIES, LOG_LEVEL)
# results 2026-07-28 makes carry cache hints
CACHEABLE = frozenset({"server/discover", "tools/list", "prompts/list", "resources/list",
                       "resources/templates/list", "resources/read"})
# resource not found: -32002 before 2026-07-28, -32602 since
_OLD_NOT_FOUND = -32002
# the listen filter's flags and the notification each lets through
LIST_CHANGES = {"toolsListChanged": "notifications/tools/list_changed",
                "promptsListChanged": "notifications/prompts/list_changed",
                "resourcesListChanged": "notifications/resources/list_changed"}
_CAPABILITY_OF = {"toolsListChanged": "tools", "promptsListChanged": "prompts",
                  "resourcesListChanged": "resources"}
# what a 2026-07-28 client may ask that a handshake-era backend session cannot carry
INPUT_METHODS = frozenset({"sampling/createMessage", "elicitation/create", "roots/list"})


@attrs.frozen
class Identity:
    """
    What a handshake-era backend learns at C{initialize}: one backend
    session serves every request of the same identity (and authorization,
    which the caller adds to the key).
    """

    client_info: Dict[str, Any]
    capabilities: Dict[str, Any]
    log_level: Optional[str]

    def key(self) -> str:
        return json.dumps([self.client_info, self.capabilities, self.log_level],
                          sort_keys=True, separators=(",", ":"))

    @classmethod
    def of(cls, message: Any) -> "Identity":
        meta = request_meta(message)
        info = meta.get(CLIENT_INFO)
        capabilities = meta.get(CLIENT_CAPABILITIES)
        level = meta.get(LOG_LEVEL)
        return cls(info if isinstance(info, dict) else {"name": "mcp-client", "version": "0"},
                   capabilities if isinstance(capabilities, dict) else {},
                   level if isinstance(level, str) else None)


def initialize_request(identity: Identity, version: str, id: Any = 0) -> Dict[str, Any]:
    """
    The C{initialize} that opens a backend session for C{identity}.
    """
    return {"jsonrpc": "2.0", "id": id, "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": identity.capabilities,
                       "clientInfo": identity.client_info}}


def notification(method: str, params: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    message: Dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return message


def request(method: str, params: Dict[str, Any], id: Any = 0) -> Dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "method": method, "params": params}


def to_classic(message: Dict[str, Any]) -> Dict[str, Any]:
    """
    A 2026-07-28 request as a handshake-era one: the C{_meta} members the
    backend session carries removed (the client's others kept).
    """
    params = message.get("params")
    if not isinstance(params, dict):
        return message
    meta = params.get("_meta")
    if not isinstance(meta, dict):
        return message
    kept = {k: v for k, v in meta.items() if k not in _STRIPPED}
    params = dict(params)
    if kept:
        params["_meta"] = kept
    else:
        del params["_meta"]
    return dict(message, params=params)


def discover_result(initialized: Dict[str, Any], supported: List[str]) -> Dict[str, Any]:
    """
    A C{server/discover} result made of a backend's C{initialize} result.
    """
    result: Dict[str, Any] = {
        "resultType": "complete",
        "supportedVersions": supported,
        "capabilities": _capabilities(initialized.get("capabilities")),
        "ttlMs": 0,
        "cacheScope": "private",
    }
    if isinstance(initialized.get("instructions"), str):
        result["instructions"] = initialized["instructions"]
    info = initialized.get("serverInfo")
    if isinstance(info, dict):
        result["_meta"] = {SERVER_INFO: info}
    return result


def _capabilities(value: Any) -> Dict[str, Any]:
    """
    A handshake-era server's capabilities as a 2026-07-28 one's: C{logging}
    (set per request now) and C{subscribe} (the listen filter) are kept, as
    the gateway carries both.
    """
    return dict(value) if isinstance(value, dict) else {}


def modern_result(method: Optional[str], result: Dict[str, Any],
                  server_info: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """
    A backend's result as a 2026-07-28 one.
    """
    out = dict(result)
    out.setdefault("resultType", "complete")
    if server_info is not None:
        meta = out.get("_meta")
        meta = dict(meta) if isinstance(meta, dict) else {}
        meta.setdefault(SERVER_INFO, server_info)
        out["_meta"] = meta
    if method in CACHEABLE:
        out.setdefault("ttlMs", 0)
        out.setdefault("cacheScope", "private")
    return out


def modern_error(error: Dict[str, Any], method: Optional[str]) -> Dict[str, Any]:
    """
    A backend's error as a 2026-07-28 one: resource not found is C{-32602}.
    """
    if method == "resources/read" and error.get("code") == _OLD_NOT_FOUND:
        return dict(error, code=-32602)
    return error


def listen_filter(message: Dict[str, Any]) -> Dict[str, Any]:
    params = message.get("params")
    wanted = params.get("notifications") if isinstance(params, dict) else None
    return wanted if isinstance(wanted, dict) else {}


def acknowledged(wanted: Dict[str, Any], capabilities: Dict[str, Any], listen_id: Any
                 ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """
    The filter the gateway honours of C{wanted} (what the backend can
    send), and the C{notifications/subscriptions/acknowledged} that says so.
    """
    honoured: Dict[str, Any] = {}
    for flag, capability in _CAPABILITY_OF.items():
        offered = capabilities.get(capability)
        if wanted.get(flag) is True and isinstance(offered, dict) and offered.get("listChanged"):
            honoured[flag] = True
    uris = wanted.get("resourceSubscriptions")
    resources = capabilities.get("resources")
    if isinstance(uris, list) and uris and isinstance(resources, dict) \
            and resources.get("subscribe"):
        honoured["resourceSubscriptions"] = [u for u in uris if isinstance(u, str)]
    ack = notification("notifications/subscriptions/acknowledged",
                       {"notifications": honoured, "_meta": {SUBSCRIPTION_ID: listen_id}})
    return honoured, ack


def on_listen(message: Dict[str, Any], honoured: Dict[str, Any], listen_id: Any
              ) -> Optional[Dict[str, Any]]:
    """
    A backend's GET-stream message as the listen stream carries it (tagged
    with the subscription id), or L{None} when the client did not ask for
    it.
    """
    method = message.get("method")
    if "id" in message or not isinstance(method, str):
        return None  # requests and responses have no place on a listen stream
    if method == "notifications/resources/updated":
        uri = (message.get("params") or {}).get("uri")
        if uri not in honoured.get("resourceSubscriptions", ()):
            return None
    elif method not in {LIST_CHANGES[f] for f in honoured if f in LIST_CHANGES}:
        return None
    params = message.get("params")
    params = dict(params) if isinstance(params, dict) else {}
    meta = params.get("_meta")
    params["_meta"] = dict(meta if isinstance(meta, dict) else {}, **{SUBSCRIPTION_ID: listen_id})
    return dict(message, params=params)


# --- what a 2026-07-28 server checks of each request (the gateway is that server here) ---

METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
# the client-to-server requests of 2026-07-28 (and its tasks extension's, by prefix)
MODERN_METHODS = frozenset({
    "server/discover", "subscriptions/listen", "tools/list", "tools/call", "prompts/list",
    "prompts/get", "resources/list", "resources/templates/list", "resources/read",
    "completion/complete"})
_NAMED = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


@attrs.frozen
class Invalid:
    """
    A 2026-07-28 request the gateway refuses as that revision's server
    would: the HTTP status, the JSON-RPC code and message.
    """

    status: int
    code: int
    message: str


def check_request(message: Dict[str, Any], headers: Any) -> Optional[Invalid]:
    """
    What 2026-07-28 requires of a request's C{_meta} and routing headers,
    and of its method, checked as its server would (L{None}: it passes).
    """
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    if not isinstance(meta, dict):
        return Invalid(400, INVALID_PARAMS, "params._meta is required")
    for required in (META_VERSION, CLIENT_CAPABILITIES):
        if required not in meta:
            return Invalid(400, INVALID_PARAMS, f"params._meta is missing {required}")
    if not isinstance(meta[CLIENT_CAPABILITIES], dict):
        return Invalid(400, INVALID_PARAMS, f"params._meta {CLIENT_CAPABILITIES} must be an object")
    method = message.get("method")

    def header(name: bytes) -> Optional[str]:
        values = headers.getRawHeaders(name)
        return values[0].decode("latin-1") if values else None

    if header(b"mcp-protocol-version") != meta[META_VERSION]:
        return Invalid(400, HEADER_MISMATCH,
                       "The MCP-Protocol-Version header does not match params._meta")
    if header(b"mcp-method") != method:
        return Invalid(400, HEADER_MISMATCH, "The Mcp-Method header does not match the method")
    key = _NAMED.get(str(method))
    if key is not None:
        named = header(b"mcp-name")
        try:
            decoded = decode_header_value(named) if named is not None else None
        except ValueError:
            decoded = None
        if decoded is None or decoded != (params or {}).get(key):
            return Invalid(400, HEADER_MISMATCH,
                           f"The Mcp-Name header does not match params.{key}")
    if method not in MODERN_METHODS and not str(method).startswith("tasks/"):
        return Invalid(404, METHOD_NOT_FOUND, f"Method not found: {method}")
    return None
