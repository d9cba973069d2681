"""
JSON-RPC inspection of MCP messages: what a request calls, what a response
says, who the client is. Pure functions over already-decoded JSON.
"""

from __future__ import annotations

import json
from typing import Any, List, Optional, Tuple

import attrs

META_PREFIX = "io.modelcontextprotocol/"
# Largest message body parsed for analytics; bigger ones are counted, not read.
MAX_PARSE = 1024 * 1024

_TARGET_PARAM = {
    "tools/call": "name",
    "prompts/get": "name",
    "resources/read": "uri",
    "resources/subscribe": "uri",
    "resources/unsubscribe": "uri",
}


@attrs.define
class Message:
    """
    One JSON-RPC message, classified.

    @ivar kind: C{"request"}, C{"notification"}, C{"response"} or C{"invalid"}.
    """

    kind: str
    id: Any = None
    method: Optional[str] = None
    target: Optional[str] = None
    params: Any = None
    result: Any = None
    error: Any = None
    raw: Any = None
    size: int = 0

    @property
    def id_key(self) -> Optional[str]:
        """
        A hashable, type-preserving key for the id (1 and "1" differ).
        """
        if self.id is None or isinstance(self.id, bool):
            return None
        return f"{type(self.id).__name__}:{self.id}"


def classify(message: Any, size: int = 0) -> Message:
    if not isinstance(message, dict):
        return Message("invalid", raw=message, size=size)
    method = message.get("method")
    if isinstance(method, str):
        params = message.get("params")
        target = None
        key = _TARGET_PARAM.get(method)
        if key and isinstance(params, dict):
            value = params.get(key)
            if isinstance(value, str):
                target = value[:500]
        if "id" in message and message["id"] is not None:
            return Message("request", message["id"], method, target, params, raw=message, size=size)
        return Message("notification", None, method, target, params, raw=message, size=size)
    if "result" in message or "error" in message:
        return Message("response", message.get("id"), result=message.get("result"),
                       error=message.get("error"), raw=message, size=size)
    return Message("invalid", raw=message, size=size)


def parse_body(body: bytes) -> Tuple[List[Message], bool]:
    """
    The messages of a JSON body (one object or a batch array).

    @return: the messages and whether the body was a batch. Unparseable or
        oversized bodies give no messages.
    """
    if not body or len(body) > MAX_PARSE:
        return [], False
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return [], False
    if isinstance(decoded, list):
        return [classify(item) for item in decoded], True
    return [classify(decoded, len(body))], False


def parse_text(text: str) -> List[Message]:
    if not text or len(text) > MAX_PARSE:
        return []
    try:
        decoded = json.loads(text)
    except ValueError:
        return []
    if isinstance(decoded, list):
        return [classify(item) for item in decoded]
    return [classify(decoded, len(text))]


@attrs.frozen
class ClientInfo:
    name: Optional[str] = None
    version: Optional[str] = None
    protocol_version: Optional[str] = None


def _text(value: Any, limit: int = 200) -> Optional[str]:
    return value[:limit] if isinstance(value, str) else None


def client_info(message: Message) -> Optional[ClientInfo]:
    """
    Client name/version and protocol version carried by a request: the
    C{initialize} params (handshake era) or C{params._meta} (2026-07-28).
    """
    params = message.params if isinstance(message.params, dict) else None
    if params is None:
        return None
    if message.method == "initialize":
        info = params.get("clientInfo") if isinstance(params.get("clientInfo"), dict) else {}
        return ClientInfo(_text(info.get("name")), _text(info.get("version")),
                          _text(params.get("protocolVersion")))
    meta = params.get("_meta")
    if isinstance(meta, dict):
        version = meta.get(META_PREFIX + "protocolVersion")
        info = meta.get(META_PREFIX + "clientInfo")
        if version is not None or isinstance(info, dict):
            info = info if isinstance(info, dict) else {}
            return ClientInfo(_text(info.get("name")), _text(info.get("version")), _text(version))
    return None


def outcome_of(response: Message) -> Tuple[str, Optional[int], Optional[str]]:
    """
    C{(outcome, error code, error message)} of a response: C{"result"},
    C{"error"} (JSON-RPC error) or C{"tool_error"} (a tool result with
    C{isError: true}).
    """
    if response.error is not None:
        error = response.error if isinstance(response.error, dict) else {}
        code = error.get("code")
        return ("error", code if isinstance(code, int) else None,
                _text(error.get("message"), 500))
    result = response.result
    if isinstance(result, dict) and result.get("isError") is True:
        content = result.get("content")
        text = None
        if isinstance(content, list) and content and isinstance(content[0], dict):
            text = _text(content[0].get("text"), 500)
        return "tool_error", None, text
    return "result", None, None


def redact(value: Any, fields: frozenset) -> Any:
    """
    A copy of decoded JSON with the values of the named keys replaced.
    """
    if isinstance(value, dict):
        return {k: ("[REDACTED]" if k.lower() in fields else redact(v, fields))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, fields) for v in value]
    return value
