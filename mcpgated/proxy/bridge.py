"""
The protocol stage of an API with C{protocol} settings: the request's MCP
version judged by L{mcpgated.mcp.bridge}, refused with the spec's error or
an C{initialize} renegotiated. APIs without the settings never reach it.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from twisted.logger import Logger

from mcpgated.jsonrpc import REQUEST_ID, Refusal
from mcpgated.mcp.body import parse
from mcpgated.mcp.bridge import Renegotiated, VersionRefusal, check_version
from mcpgated.model import ProtocolSettings

log = Logger()


def admit_version(request: Any, exchange: Any, settings: ProtocolSettings, body: bytes) -> bytes:
    """
    The body to forward: C{body}, or an C{initialize} that proposes a
    version the API accepts.

    @raise Refusal: 400 with the spec's error and the C{supported} versions.
    """
    message: Any = None
    if body:
        try:
            message = json.loads(body)
        except ValueError:
            return body  # not JSON: the backend answers it as it would
    raw = request.getHeader(b"mcp-protocol-version")
    header: Optional[str] = raw.decode("latin-1").strip() if raw else None
    verdict = check_version(message, header, settings.client_versions)
    if verdict is None:
        return body
    if isinstance(verdict, VersionRefusal):
        raise Refusal(verdict.status, verdict.message, outcome="bad_request", code=verdict.code,
                      id=REQUEST_ID, data=verdict.data)
    assert isinstance(verdict, Renegotiated)
    log.debug("initialize proposing {requested} offered {offered}",
              requested=verdict.requested, offered=verdict.offered)
    body = json.dumps(verdict.message).encode("utf-8")
    if exchange.body is not None:
        exchange.body = parse(body)
    return body
