"""
What the exchange log stores: one L{CallRecord} per JSON-RPC call (or
client notification), and what an API captures beyond metadata.
"""

from __future__ import annotations

import hashlib
from typing import Any, FrozenSet, Optional, Sequence, Tuple

import attrs

SECRET_HEADERS = frozenset({
    b"authorization", b"proxy-authorization", b"cookie", b"set-cookie", b"dpop",
    b"x-api-key", b"x-gravitee-api-key", b"api-key", b"mcp-session-id",
})
DEFAULT_REDACT = frozenset({"access_token", "refresh_token", "id_token", "client_secret",
                            "password", "token", "api_key", "apikey", "authorization"})


@attrs.frozen
class Capture:
    """
    What an API records beyond metadata: C{"off"}, C{"headers"} or
    C{"bodies"} (headers and messages), each payload cut at C{max_bytes}.
    """

    mode: str = "off"
    max_bytes: int = 16384
    redact: FrozenSet[str] = DEFAULT_REDACT


# The stored fields of a CallRecord, in the exchange table's column order.
RECORD_FIELDS = (
    "time", "api_id", "api_name", "plan", "consumer", "client", "session", "protocol_version",
    "client_name", "client_version", "method", "kind", "target", "jsonrpc_id", "outcome",
    "error_code", "error_message", "http_status", "latency_ms", "ttfb_ms", "bytes_in",
    "bytes_out", "notifications", "transport", "request_headers", "response_headers",
    "request_payload", "response_payload", "truncated", "application", "subscription", "policy",
    "backend_version",
)
# ... and the ones never stored: the id's typed key, response messages while capturing.
_PRIVATE_FIELDS = ("id_key", "captured")
_REQUIRED = ("time", "api_id", "api_name", "plan", "client", "method", "kind")
_OPTIONAL = frozenset(RECORD_FIELDS + _PRIVATE_FIELDS) - frozenset(_REQUIRED)


class CallRecord:
    """
    One JSON-RPC call (or client notification) as the exchange log stores it.

    Made once per call on the request path: a plain class whose optional
    fields default at class level, so a record holds only what was set.
    C{time}, C{api_id}, C{api_name}, C{plan}, C{client}, C{method} and
    C{kind} are required; any other field of L{RECORD_FIELDS} (and
    C{id_key}) may be given by keyword.
    """

    target: Optional[str] = None
    jsonrpc_id: Optional[str] = None
    session: Optional[str] = None
    protocol_version: Optional[str] = None
    client_name: Optional[str] = None
    client_version: Optional[str] = None
    consumer: Optional[str] = None
    outcome: Optional[str] = None
    error_code: Optional[int] = None
    error_message: Optional[str] = None
    http_status: Optional[int] = None
    latency_ms: Optional[float] = None
    ttfb_ms: Optional[float] = None
    bytes_in: int = 0
    bytes_out: int = 0
    notifications: int = 0
    transport: str = "json"
    request_headers: Optional[str] = None
    response_headers: Optional[str] = None
    request_payload: Optional[str] = None
    response_payload: Optional[str] = None
    truncated: bool = False
    application: Optional[str] = None
    subscription: Optional[str] = None
    policy: Optional[str] = None  # "would_deny" under a dry-run policy
    # the MCP version the gateway spoke to the backend when it bridged versions
    # (protocol_version is the client's); None when it did not bridge
    backend_version: Optional[str] = None
    # not stored: the id's key (mcpgated.mcp.ids), and response messages while capturing
    id_key: Any = None
    captured: Sequence[Any] = ()

    def __init__(self, time: float, api_id: str, api_name: str, plan: Optional[str],
                 client: Optional[str], method: str, kind: str, **fields: Any) -> None:
        self.time = time
        self.api_id = api_id
        self.api_name = api_name
        self.plan = plan
        self.client = client
        self.method = method
        self.kind = kind
        if fields:
            unknown = set(fields) - _OPTIONAL
            if unknown:
                raise TypeError(f"CallRecord has no field {sorted(unknown)[0]!r}")
            for name, value in fields.items():
                setattr(self, name, value)

    def _values(self) -> Tuple[Any, ...]:
        return tuple(getattr(self, name) for name in RECORD_FIELDS + _PRIVATE_FIELDS)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CallRecord) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in RECORD_FIELDS)
        return f"CallRecord({shown})"


def session_hash(api_id: str, session: str) -> str:
    return hashlib.sha256(f"{api_id}\x00{session}".encode("utf-8", "replace")).hexdigest()[:16]


