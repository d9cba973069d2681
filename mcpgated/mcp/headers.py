"""
The 2026-07-28 routing headers: C{Mcp-Method} and C{Mcp-Name} repeat what
the body says so that an intermediary can route without reading it. The
gateway reads the body, and holds the headers to it, so a header can never
smuggle a different method or name past a rule.
"""

from __future__ import annotations

import base64
import binascii
from typing import List, Optional

from mcpgated.mcp.messages import Message

HEADER_MISMATCH = -32020


def decode_header_value(raw: str) -> str:
    """
    The value of an C{Mcp-Name}/C{Mcp-Param-*} header: plain, or the
    case-sensitive C{=?base64?...?=} form.

    @raise ValueError: malformed base64 or UTF-8.
    """
    if len(raw) >= 11 and raw.startswith("=?base64?") and raw.endswith("?="):  # no overlap
        try:
            return base64.b64decode(raw[9:-2], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError("malformed base64 header value") from None
    return raw


def routing_header_problem(method_values: Optional[List[bytes]],
                           name_values: Optional[List[bytes]],
                           message: Message) -> Optional[str]:
    """
    Why the routing headers of a single-message body disagree with it, or
    L{None} when they agree (or are absent).
    """
    if type(message.raw) is not dict:
        return None
    if method_values is not None and method_values[0].decode("latin-1") != message.method:
        return "Mcp-Method header does not match the request body"
    if name_values is not None:
        try:
            name = decode_header_value(name_values[0].decode("latin-1"))
        except ValueError:
            return "Mcp-Name header is malformed"
        if name != message.target:
            return "Mcp-Name header does not match the request body"
    return None
