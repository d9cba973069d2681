"""
JSON-RPC 2.0 error bodies for the errors the gateway itself produces, so an
MCP client always gets something it can parse (never HTML, never a trace).
"""

from __future__ import annotations

import json
from typing import Any, Optional, Union

from mcpgated.mcp.body import BodyError, decode
from mcpgated.mcp.ids import canonical, id_key

JsonRpcId = Union[str, int, None]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# -32000..-32019 are implementation-defined server errors in every revision.
GATEWAY_ERROR = -32000


def error_body(code: int, message: str, id: JsonRpcId = None,
               data: Optional[Any] = None) -> bytes:
    error: dict = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return json.dumps({"jsonrpc": "2.0", "id": id, "error": error}).encode("utf-8")


def request_id(body: bytes) -> JsonRpcId:
    """
    The id of a single JSON-RPC request body, or L{None} when it cannot be
    read as the gateway reads bodies (L{mcpgated.mcp.body}: not JSON, a
    batch, a notification, an id that is not a string or a safe integer).
    A number is echoed as an integer (C{1.0} as C{1}), as JavaScript does.
    """
    if not body or body[:1] not in (b"{", b" ", b"\t", b"\r", b"\n"):
        return None
    try:
        message = decode(body)
    except BodyError:
        return None
    if isinstance(message, dict):
        key = id_key(message.get("id"))
        if key is not None:
            return canonical(key)
    return None
