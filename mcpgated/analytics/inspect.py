"""
JSON-RPC inspection of MCP messages: what a request calls, what a response
says, who the client is. Pure functions over decoded JSON, and the JSON
decoding itself.
"""

from __future__ import annotations

import json
from json.decoder import WHITESPACE
from typing import Any, List, Optional, Tuple

import attrs

from mcpgated.mcp.ids import id_key

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


class Message:
    """
    One JSON-RPC message, classified.

    @ivar kind: C{"request"}, C{"notification"}, C{"response"} or C{"invalid"}.
    @ivar id_key: the id's key (L{mcpgated.mcp.ids.id_key}: 1, 1.0 and 1e0
        are one id, "1" another), or L{None}.
    """

    # A plain slotted class: one is made per message, on the request path.
    __slots__ = ("kind", "id", "method", "target", "params", "result", "error", "raw", "size",
                 "id_key")

    def __init__(self, kind: str, id: Any = None, method: Optional[str] = None,
                 target: Optional[str] = None, params: Any = None, result: Any = None,
                 error: Any = None, raw: Any = None, size: int = 0) -> None:
        self.kind = kind
        self.id = id
        self.method = method
        self.target = target
        self.params = params
        self.result = result
        self.error = error
        self.raw = raw
        self.size = size
        self.id_key = id_key(id)

    def __repr__(self) -> str:
        return (f"Message(kind={self.kind!r}, id={self.id!r}, method={self.method!r}, "
                f"target={self.target!r})")


def target_of(method: str, params: Any) -> Optional[str]:
    """
    What a request names (a tool, a prompt, a resource), cut at 500 characters.
    """
    key = _TARGET_PARAM.get(method)
    if key and isinstance(params, dict):
        value = params.get(key)
        if isinstance(value, str):
            return value[:500]
    return None


def classify(message: Any, size: int = 0) -> Message:
    if not isinstance(message, dict):
        return Message("invalid", raw=message, size=size)
    method = message.get("method")
    if isinstance(method, str):
        params = message.get("params")
        target = target_of(method, params)
        ident = message.get("id")
        if ident is not None:
            return Message("request", ident, method, target, params, None, None, message, size)
        return Message("notification", None, method, target, params, None, None, message, size)
    if "result" in message or "error" in message:
        return Message("response", message.get("id"), None, None, None, message.get("result"),
                       message.get("error"), message, size)
    return Message("invalid", raw=message, size=size)


# json.loads, without its per-call setup, for the usual body: one object.
_DECODER = json.JSONDecoder()
_SCAN = _DECODER.scan_once
_SPACE = WHITESPACE.match


def _object(text: str) -> Any:
    # JSONDecoder.decode(text) for a text that starts with "{"
    try:
        value, end = _SCAN(text, 0)
    except StopIteration as e:
        raise json.JSONDecodeError("Expecting value", text, e.value) from None
    if end != len(text):
        end = _SPACE(text, end).end()
        if end != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
    return value


def loads(body: bytes) -> Any:
    """
    C{json.loads(body)}: the same value or the same exception.
    """
    # A body that starts with "{" (and no NUL next) is one json.loads
    # decodes as UTF-8.
    if body[:1] == b"{" and (len(body) == 1 or body[1]):
        return _object(body.decode("utf-8", "surrogatepass"))
    return json.loads(body)


def loads_text(text: str) -> Any:
    """
    C{json.loads(text)}: the same value or the same exception.
    """
    if text[:1] == "{":
        return _object(text)
    return json.loads(text)


def parse_body(body: bytes) -> Tuple[List[Message], bool]:
    """
    The messages of a JSON body (one object or a batch array).

    @return: the messages and whether the body was a batch. Unparseable or
        oversized bodies give no messages.
    """
    if not body or len(body) > MAX_PARSE:
        return [], False
    try:
        decoded = loads(body)
    except (ValueError, UnicodeDecodeError):
        return [], False
    if isinstance(decoded, list):
        return [classify(item) for item in decoded], True
    return [classify(decoded, len(body))], False


def parse_text(text: str) -> List[Message]:
    if not text or len(text) > MAX_PARSE:
        return []
    try:
        decoded = loads_text(text)
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
    return outcome(response.result, response.error)


_RESULT = ("result", None, None)


def outcome(result: Any, error: Any) -> Tuple[str, Optional[int], Optional[str]]:
    """
    L{outcome_of} a response's C{result} and C{error} members.
    """
    if error is not None:
        error = error if isinstance(error, dict) else {}
        code = error.get("code")
        return ("error", code if isinstance(code, int) else None,
                _text(error.get("message"), 500))
    if isinstance(result, dict) and result.get("isError") is True:
        content = result.get("content")
        text = None
        if isinstance(content, list) and content and isinstance(content[0], dict):
            text = _text(content[0].get("text"), 500)
        return "tool_error", None, text
    return _RESULT


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
