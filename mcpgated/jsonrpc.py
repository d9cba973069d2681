"""
JSON-RPC 2.0 error bodies for the errors the gateway itself produces, so an
MCP client always gets something it can parse (never HTML, never a trace).
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple, Union

import attrs

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


class _RequestId:
    def __repr__(self) -> str:
        return "REQUEST_ID"


# A refusal's id when it is the id of the request refused (if it can be read).
REQUEST_ID: Any = _RequestId()


@attrs.define(eq=False)
class Refusal(Exception):
    """
    A request the gateway answers itself, without the backend: the HTTP
    status, the JSON-RPC error (code, message, id) and the headers that go
    with it. Every stage refuses by raising one; the resource answers them
    in one place.

    @ivar challenge: a C{WWW-Authenticate} value, or L{None}.
    @ivar outcome: the access log's and the exchange log's word for it.
    @ivar id: the JSON-RPC id to answer with, or L{REQUEST_ID} for the
        request's own.
    @ivar retry_after: seconds, for C{Retry-After}.
    @ivar accept_encoding: whether to answer C{Accept-Encoding: identity}.
    """

    status: int
    message: str
    challenge: Optional[str] = None
    outcome: str = "unauthorized"
    code: int = GATEWAY_ERROR
    id: Any = REQUEST_ID
    retry_after: Optional[int] = None
    accept_encoding: bool = False
    extra_headers: Tuple[Tuple[bytes, bytes], ...] = ()
    # more members of the error's data (besides httpStatus)
    data: Optional[Dict[str, Any]] = None

    def __str__(self) -> str:
        return self.message

    def headers(self) -> List[Tuple[bytes, bytes]]:
        """
        The response headers the refusal adds.
        """
        headers = []
        if self.challenge:
            headers.append((b"www-authenticate", self.challenge.encode("latin-1")))
        if self.retry_after is not None:
            headers.append((b"retry-after", b"%d" % self.retry_after))
        if self.accept_encoding:
            headers.append((b"accept-encoding", b"identity"))
        headers.extend(self.extra_headers)
        return headers


def refused_body(error: BodyError) -> Refusal:
    """
    The refusal of a body the gateway does not read as the backend would.
    """
    return Refusal(error.status, error.message, outcome="bad_request", code=error.code,
                   id=error.id, accept_encoding=error.accept_encoding)


def error_body(code: int, message: str, id: JsonRpcId = None,
               data: Optional[Any] = None) -> bytes:
    error: Dict[str, Any] = {"code": code, "message": message}
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
