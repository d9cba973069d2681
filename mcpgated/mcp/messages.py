"""
The JSON-RPC message model: one L{Message} per message, classified once,
for a request body (single or batch) and for every message a response
carries (a JSON body, an SSE event).

Everything that judges or records a message (access control, pinning, rate
limits, list rewriting, the exchange log) reads these values, so what the
policy judged and what the log records are the same thing.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import attrs

from mcpgated.mcp.ids import IdKey, id_key
from mcpgated.mcp.methods import target_of

REQUEST = "request"
NOTIFICATION = "notification"
RESPONSE = "response"
INVALID = "invalid"

META_PREFIX = "io.modelcontextprotocol/"


class Message:
    """
    One JSON-RPC message.

    @ivar kind: L{REQUEST}, L{NOTIFICATION}, L{RESPONSE} or L{INVALID}.
    @ivar id: the id as sent (a request's, a response's), or L{None}.
    @ivar id_key: the id's key (L{mcpgated.mcp.ids}: 1, 1.0 and 1e0 are one
        id, "1" another), or L{None}.
    @ivar method: a request's or notification's method.
    @ivar target: what a request names (L{mcpgated.mcp.methods.target_of}).
    @ivar raw: the decoded JSON value, as sent.
    """

    # A plain slotted class: one is made per message, on the request path.
    __slots__ = ("kind", "id", "id_key", "method", "target", "params", "result", "error", "raw")

    def __init__(self, kind: str, raw: Any, id: Any = None, key: Optional[IdKey] = None,
                 method: Optional[str] = None, params: Any = None, result: Any = None,
                 error: Any = None) -> None:
        self.kind = kind
        self.raw = raw
        self.id = id
        self.id_key = key
        self.method = method
        self.params = params
        self.target = target_of(method, params) if method is not None else None
        self.result = result
        self.error = error

    @property
    def is_request(self) -> bool:
        return self.kind == REQUEST

    def __repr__(self) -> str:
        return (f"Message(kind={self.kind!r}, id={self.id!r}, method={self.method!r}, "
                f"target={self.target!r})")


def classify(value: Any) -> Message:
    """
    A decoded JSON value as a L{Message}. Ids are keyed leniently here (an
    id that cannot be keyed has no key); request bodies are checked strictly
    by L{mcpgated.mcp.body}.
    """
    if type(value) is not dict:
        return Message(INVALID, value)
    method = value.get("method")
    if type(method) is str:
        if "id" in value and value["id"] is not None:
            ident = value["id"]
            return Message(REQUEST, value, ident, id_key(ident), method, value.get("params"))
        return Message(NOTIFICATION, value, None, None, method, value.get("params"))
    if "result" in value or "error" in value:
        ident = value.get("id")
        return Message(RESPONSE, value, ident, id_key(ident), None, None, value.get("result"),
                       value.get("error"))
    return Message(INVALID, value)


@attrs.frozen
class ClientInfo:
    name: Optional[str] = None
    version: Optional[str] = None
    protocol_version: Optional[str] = None


def _text(value: Any, limit: int = 200) -> Optional[str]:
    return value[:limit] if isinstance(value, str) else None


def client_info(message: Message) -> Optional[ClientInfo]:
    """
    Client name and version, and protocol version, carried by a request: the
    C{initialize} params (handshake era) or C{params._meta} (2026-07-28).
    """
    params = message.params
    if type(params) is not dict:
        return None
    if message.method == "initialize":
        found = params.get("clientInfo")
        info: Dict[str, Any] = found if isinstance(found, dict) else {}
        return ClientInfo(_text(info.get("name")), _text(info.get("version")),
                          _text(params.get("protocolVersion")))
    meta = params.get("_meta")
    if isinstance(meta, dict):
        version = meta.get(META_PREFIX + "protocolVersion")
        found = meta.get(META_PREFIX + "clientInfo")
        if version is not None or isinstance(found, dict):
            info = found if isinstance(found, dict) else {}
            return ClientInfo(_text(info.get("name")), _text(info.get("version")), _text(version))
    return None
