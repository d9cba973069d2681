"""
The protocol versions an API accepts from its clients (its C{protocol}
settings), as pure functions of the message and the C{MCP-Protocol-Version}
header: which version a request speaks, and what the gateway answers when
that version is not one the API accepts.

Two eras: the handshake revisions (C{initialize}, sessions) up to
2025-11-25, and 2026-07-28 (no handshake; each request carries the version
in C{params._meta} and the header). Each era has the spec's own refusal:

 - a 2026-07-28 request: HTTP 400 and C{-32022} UnsupportedProtocolVersion,
   whose C{data} lists the C{supported} versions (a dual-era client then
   falls back to C{initialize} when the list names handshake versions);
 - C{initialize}: version negotiation. A version the API does not accept is
   replaced by the newest handshake version it does accept (the server's
   answer then names it, and the client decides), or, with none, the
   initialize error C{-32602} "Unsupported protocol version" with
   C{supported} and C{requested};
 - any later handshake-era message: its C{MCP-Protocol-Version} header (absent:
   2025-03-26, as the spec says) must be accepted, else HTTP 400.

A 2026-07-28 request whose header and C{_meta} versions differ gets 400 and
C{-32020} (HeaderMismatch) before either is judged, and one calling
C{initialize} gets 404 and C{-32601}: that revision has none.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Dict, List, Optional, Tuple

import attrs

HANDSHAKE_VERSIONS: Tuple[str, ...] = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
MODERN_VERSIONS: Tuple[str, ...] = ("2026-07-28",)
KNOWN_VERSIONS: Tuple[str, ...] = HANDSHAKE_VERSIONS + MODERN_VERSIONS
# what a handshake-era request without the header speaks (2025-06-18 transports)
DEFAULT_HEADER_VERSION = "2025-03-26"
META_VERSION = "io.modelcontextprotocol/protocolVersion"

UNSUPPORTED_PROTOCOL_VERSION = -32022
HEADER_MISMATCH = -32020
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INVALID_REQUEST = -32600


def is_modern(version: str) -> bool:
    """
    Whether C{version} is of the sessionless era (a date from 2026-07-28).
    """
    return version[:1].isdigit() and version >= MODERN_VERSIONS[0]


@attrs.frozen
class VersionRefusal:
    """
    The gateway's answer to a version the API does not accept.
    """

    status: int
    code: int
    message: str
    data: Dict[str, Any]


@attrs.frozen
class Renegotiated:
    """
    An C{initialize} whose proposed version was replaced: the message to
    forward instead.
    """

    message: Dict[str, Any]
    requested: str
    offered: str


Verdict = Optional[Any]  # None (accepted), a VersionRefusal or a Renegotiated


def request_meta(message: Any) -> Dict[str, Any]:
    """
    A request's C{params._meta} (empty when it has none).
    """
    params = message.get("params") if isinstance(message, dict) else None
    meta = params.get("_meta") if isinstance(params, dict) else None
    return meta if isinstance(meta, dict) else {}


def _meta_version(message: Any) -> Optional[str]:
    version = request_meta(message).get(META_VERSION)
    return version if isinstance(version, str) else None


def spoken_version(message: Any, header: Optional[str]) -> str:
    """
    The version a message speaks: C{initialize}'s proposal, the request's
    C{_meta} version, else the header (absent: 2025-03-26).
    """
    if isinstance(message, dict) and message.get("method") == "initialize":
        params = message.get("params")
        proposed = params.get("protocolVersion") if isinstance(params, dict) else None
        return proposed if isinstance(proposed, str) else ""
    return _meta_version(message) or header or DEFAULT_HEADER_VERSION


def check_version(message: Any, header: Optional[str], accepted: Tuple[str, ...]) -> Verdict:
    """
    Judge one message (the decoded body, L{None} for a GET or DELETE)
    against the versions the API accepts; see the module's docstring.
    """
    declared = _meta_version(message)
    if isinstance(message, dict) and message.get("method") == "initialize":
        if declared is not None or (header is not None and is_modern(header)):
            # a request of 2026-07-28, which has no initialize
            return VersionRefusal(404, METHOD_NOT_FOUND, "Method not found: initialize", {})
        return _initialize(message, accepted)
    if declared is not None and header is not None and declared != header:
        return VersionRefusal(400, HEADER_MISMATCH,
                              "The MCP-Protocol-Version header does not match params._meta", {})
    requested = spoken_version(message, header)
    if requested in accepted:
        return None
    supported = list(accepted)
    if is_modern(requested) or _meta_version(message) is not None:
        return VersionRefusal(400, UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version",
                              {"supported": supported, "requested": requested})
    return VersionRefusal(400, INVALID_REQUEST,
                          f"Unsupported protocol version {requested!r} (MCP-Protocol-Version): "
                          f"this API accepts {', '.join(supported)}",
                          {"supported": supported, "requested": requested})


def _initialize(message: Dict[str, Any], accepted: Tuple[str, ...]) -> Verdict:
    requested = spoken_version(message, None)
    if requested in accepted:
        return None
    handshake = [v for v in accepted if not is_modern(v)]
    if not handshake:
        return VersionRefusal(400, INVALID_PARAMS, "Unsupported protocol version",
                              {"supported": list(accepted), "requested": requested})
    offered = max(handshake)
    params = message.get("params")
    params = dict(params if isinstance(params, dict) else {}, protocolVersion=offered)
    return Renegotiated(dict(message, params=params), requested, offered)


# --- a handshake-era client in front of a 2026-07-28 backend ------------------------------

CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
SERVER_INFO = "io.modelcontextprotocol/serverInfo"
CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
SESSION_NOT_FOUND = -32001
# what the handshake era has and 2026-07-28 removed, and why it is refused
UNBRIDGED = {
    "logging/setLevel": "logging/setLevel cannot be bridged: the backend speaks 2026-07-28",
    "resources/subscribe": "resources/subscribe cannot be bridged: the backend speaks 2026-07-28",
    "resources/unsubscribe": "resources/unsubscribe cannot be bridged: the backend speaks 2026-07-28",
}
_NAMED = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


@attrs.frozen
class ClientState:
    """
    What a handshake-era client said in its C{initialize}, kept in the
    session id the gateway gives it (sealed), and sent to a 2026-07-28
    backend in each request's C{_meta}.
    """

    version: str
    client_info: Dict[str, Any]
    capabilities: Dict[str, Any]

    def dumps(self) -> str:
        return json.dumps([self.version, self.client_info, self.capabilities],
                          separators=(",", ":"), ensure_ascii=True)

    @classmethod
    def loads(cls, text: str) -> Optional["ClientState"]:
        try:
            version, info, capabilities = json.loads(text)
        except ValueError:
            return None
        if not (isinstance(version, str) and isinstance(info, dict)
                and isinstance(capabilities, dict)):
            return None
        return cls(version, info, capabilities)

    @classmethod
    def of(cls, initialize: Dict[str, Any], version: str) -> "ClientState":
        params = initialize.get("params")
        params = params if isinstance(params, dict) else {}
        info = params.get("clientInfo")
        capabilities = params.get("capabilities")
        return cls(version, info if isinstance(info, dict) else {},
                   capabilities if isinstance(capabilities, dict) else {})


def meta(state: ClientState, version: str) -> Dict[str, Any]:
    """
    The 2026-07-28 C{_meta} of a request on behalf of C{state}'s client.
    """
    return {META_VERSION: version, CLIENT_INFO: state.client_info,
            CLIENT_CAPABILITIES: state.capabilities}


def discover_request(state: ClientState, version: str, id: Any = 0) -> Dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "method": "server/discover",
            "params": {"_meta": meta(state, version)}}


def negotiated(requested: str, accepted: Tuple[str, ...]) -> Optional[str]:
    """
    The handshake version answered to an C{initialize} proposing
    C{requested}: that one if accepted, else the newest accepted.
    """
    handshake = [v for v in accepted if not is_modern(v)]
    if requested in handshake:
        return requested
    return max(handshake) if handshake else None


def initialize_result(discovered: Dict[str, Any], version: str) -> Dict[str, Any]:
    """
    An C{InitializeResult} made of a C{server/discover} result (the server's
    info from its C{_meta}).
    """
    meta = discovered.get("_meta")
    info = (meta.get(SERVER_INFO) if isinstance(meta, dict) else None) or discovered.get("serverInfo")
    result: Dict[str, Any] = {"protocolVersion": version,
                              "capabilities": discovered.get("capabilities") or {},
                              "serverInfo": info if isinstance(info, dict)
                              else {"name": "mcp-server", "version": "0"}}
    if discovered.get("instructions"):
        result["instructions"] = discovered["instructions"]
    return result


def to_modern(message: Dict[str, Any], state: ClientState, version: str
              ) -> Tuple[Dict[str, Any], List[Tuple[bytes, bytes]]]:
    """
    A handshake-era request as a 2026-07-28 one: C{_meta} added to its
    params (the client's own C{_meta} members kept), and the routing headers.
    """
    params = message.get("params")
    params = dict(params) if isinstance(params, dict) else {}
    own = params.get("_meta")
    params["_meta"] = dict(own if isinstance(own, dict) else {}, **meta(state, version))
    method = message.get("method")
    headers = [(b"mcp-protocol-version", version.encode("ascii")),
               (b"mcp-method", str(method).encode("utf-8"))]
    key = _NAMED.get(str(method))
    if key is not None and isinstance(params.get(key), str):
        headers.append((b"mcp-name", header_value(params[key])))
    return dict(message, params=params), headers


def header_value(value: str) -> bytes:
    """
    A header value for C{Mcp-Name}: plain visible ASCII, else the
    C{=?base64?...?=} form.
    """
    if value.isascii() and value.isprintable() and value.strip() == value:
        return value.encode("ascii")
    return b"=?base64?" + base64.b64encode(value.encode("utf-8")) + b"?="


def rpc_result(id: Any, result: Dict[str, Any]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": id, "result": result}).encode("utf-8")
