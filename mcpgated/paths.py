"""
Request paths, normalised once before anything routes on them.

The gateway matches a context path, then a backend resolves the path it is
sent. Were they to read a path differently (C{/pa/../mcp-b}, C{/pa/%2e%2e/mcp-b},
C{/pa/..%2fmcp-b}: one API's prefix for the gateway, another API's path for a
backend that removes dot-segments), a request would be judged under one API
and served by another. So, as nginx does before it matches a location
(shared/reference/http-edge.md, section 1), a path is:

  - refused (L{BadPath}, 400) for C{#}, a byte at or below 0x20, 0x7f or above,
    a raw C{\\}, a C{%} without two hex digits, C{%2F}, C{%5C} or C{%00} (in
    either case: each has two readings), percent-escapes that do not decode to
    UTF-8 (overlong forms of C{.} and C{/});
  - normalised (RFC 3986 section 6.2.2): unreserved escapes decoded (C{%2E} is
    C{.}, C{%41} is C{A}), the others upper-cased, C{//} merged into C{/};
  - refused for any C{.} or C{..} segment left after that, C{..;x} and
    C{.;x} too (servlet containers read them as dot-segments): nothing a
    dot-segment could mean is left to a backend.

The normalised path is what routes and what the backend is sent; the query
is never decoded and goes on byte for byte.
"""

from __future__ import annotations

import re
from typing import Dict, Tuple

# Bytes a path may hold as they are (RFC 3986 pchar and "/", without "%").
_PLAIN = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=:@/]*")
# What a path may hold once escapes are checked: pchar, "/" and "%".
_ALLOWED = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*")
# A query: visible ASCII except "#".
_QUERY = re.compile(rb"[!\"$-~]*")
_ESCAPE = re.compile(rb"%(.?.?)")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_SLASHES = re.compile(rb"//+")
_HIGH_RUNS = re.compile(rb"(?:%[89A-F][0-9A-F])+")


class BadPath(ValueError):
    """
    A request target the gateway refuses (400); the message says why.
    """


def _escape(match: "re.Match[bytes]") -> bytes:
    digits = match.group(1)
    if len(digits) != 2 or digits[0] not in _HEX or digits[1] not in _HEX:
        raise BadPath("The request path has a '%' not followed by two hex digits")
    value = int(digits, 16)
    if value in (0x2F, 0x5C, 0x00):
        raise BadPath("The request path has an encoded '/', '\\' or NUL (%2F, %5C, %00)")
    if value in _UNRESERVED:
        return bytes((value,))
    return b"%" + digits.upper()


def _check_utf8(path: bytes) -> None:
    # Each run of escapes of bytes >= 0x80 must be UTF-8 (no overlong "." or "/").
    for run in _HIGH_RUNS.findall(path):
        try:
            bytes.fromhex(run.replace(b"%", b"").decode("ascii")).decode("utf-8")
        except UnicodeDecodeError:
            raise BadPath("The request path has percent-escapes that are not UTF-8") from None


def normalize_path(path: bytes) -> str:
    """
    The normalised form of a request path (the target before any C{?}).

    @raise BadPath: a path the gateway refuses.
    """
    if path[:1] != b"/":
        raise BadPath("The request target must be a path starting with '/'")
    if _PLAIN.fullmatch(path) is not None and b"//" not in path and b"/." not in path:
        return path.decode("ascii")  # the usual path: nothing to decode or merge
    if _ALLOWED.fullmatch(path) is None:
        if b"#" in path:
            raise BadPath("The request target must not have a fragment ('#')")
        if b"\\" in path:
            raise BadPath("The request path must not have a '\\'")
        raise BadPath("The request path has a byte that must be percent-encoded")
    if b"%" in path:
        path = _ESCAPE.sub(_escape, path)
        _check_utf8(path)
    if b"//" in path:
        path = _SLASHES.sub(b"/", path)
    if b"/." in path:
        for segment in path.split(b"/"):
            if segment[:1] == b".":
                name = segment.split(b";", 1)[0]
                if name == b"." or name == b"..":
                    raise BadPath("The request path must not have '.' or '..' segments")
    return path.decode("ascii")


def split_target(target: bytes) -> Tuple[str, bytes]:
    """
    The normalised path and the raw query (without its C{?}) of a request
    target.

    @raise BadPath: a target the gateway refuses.
    """
    path, mark, query = target.partition(b"?")
    if mark and _QUERY.fullmatch(query) is None:
        if b"#" in query:
            raise BadPath("The request target must not have a fragment ('#')")
        raise BadPath("The request query has a byte that must be percent-encoded")
    normal = _normal.get(path)
    if normal is None:
        normal = normalize_path(path)
        if len(_normal) < 4096 and len(path) <= 256:  # at most about 1 MB, whatever clients send
            _normal[path] = normal
    return normal, query


# Paths seen, normalised: a gateway serves few (the query, a session id say, varies).
_normal: Dict[bytes, str] = {}
