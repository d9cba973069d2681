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
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import attrs

HANDSHAKE_VERSIONS: Tuple[str, ...] = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
MODERN_VERSIONS: Tuple[str, ...] = ("2026-07-28",)
KNOWN_VERSIONS: Tuple[str, ...] = HANDSHAKE_VERSIONS + MODERN_VERSIONS
# what a handshake-era request without the header speaks (2025-06-18 transports)
DEFAULT_HEADER_VERSION = "2025-03-26"
META_VERSION = "io.modelcontextprotocol/protocolVersion"

UNSUPPORTED_PROTOCOL_VERSION = -32022
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


def _meta_version(message: Any) -> Optional[str]:
    if not isinstance(message, dict):
        return None
    params = message.get("params")
    if not isinstance(params, dict):
        return None
    meta = params.get("_meta")
    if not isinstance(meta, dict):
        return None
    version = meta.get(META_VERSION)
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
    if isinstance(message, dict) and message.get("method") == "initialize":
        return _initialize(message, accepted)
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
