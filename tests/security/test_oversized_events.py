"""
An answer the gateway must judge (a list under access control) can never
pass unjudged by being too large to read. A JSON body over the limit is
replaced by an error; so is an SSE event, whatever makes it large: one long
data line, many data lines, comment or id lines before the data, either
line ending. What follows the replaced part is read as new events, as the
client reads it, and judged again. (Before: an event cut by the line
splitter, or spread over more than 8 MiB of data lines, failed to decode and
went out as it came, every tool with it; the "comments first" and "ids
first" variants, and the JSON body, were already judged: controls.)
"""

from __future__ import annotations

import json
from typing import Callable, Dict, Iterator

import pytest

from tests.raw_backend import RawBackend, RawConnection, RawRequest
from tests.security.judge_support import post, start_daemon, stop_daemon
from tests.support import Daemon, deploy

LIMIT = 8 * 1024 * 1024  # mcpgated.mcp.responses.MAX_JUDGED
ECHO_ONLY = {"rules": [{"tools": ["echo"]}]}
TOOLS = {"tools": [{"name": "echo", "inputSchema": {"type": "object"}},
                   {"name": "secret-tool", "inputSchema": {"type": "object"}}]}


def _answer() -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "result": TOOLS}).encode()


def _one_long_line(end: bytes) -> bytes:
    message = json.dumps({"jsonrpc": "2.0", "id": 1, "result": dict(TOOLS, pad="p" * (LIMIT + 4096))})
    return b"event: message" + end + b"data: " + message.encode() + end + end


def _many_lines(end: bytes) -> bytes:
    # JSON allows whitespace between tokens: the message spread over many data lines
    head, tail = _answer()[:-1], b"}"
    padding = (b"data:" + b" " * 1000 + end) * (LIMIT // 1000 + 8)
    return b"data: " + head + end + padding + b"data: " + tail + end + end


def _comments_first(end: bytes) -> bytes:
    padding = (b":" + b"c" * 1000 + end) * (LIMIT // 1000 + 8)
    return padding + b"data: " + _answer() + end + end


def _ids_first(end: bytes) -> bytes:
    padding = (b"id: " + b"7" * 1000 + end) * (LIMIT // 1000 + 8)
    return padding + b"data: " + _answer() + end + end


BODIES: Dict[str, Callable[[bytes], bytes]] = {
    "one long line": _one_long_line, "many data lines": _many_lines,
    "comments first": _comments_first, "ids first": _ids_first,
}


def _backend(kind: str, end: bytes) -> RawBackend:
    def respond(connection: RawConnection, request: RawRequest) -> None:
        body = BODIES[kind](end) if kind in BODIES else \
            json.dumps({"jsonrpc": "2.0", "id": 1, "result": dict(TOOLS, pad="p" * (LIMIT + 1))}).encode()
        content_type = b"application/json" if kind not in BODIES else b"text/event-stream"
        connection.send(b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
                        % (content_type, len(body), body))

    return RawBackend(respond)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[Daemon]:
    daemon = start_daemon(tmp_path_factory.mktemp("oversized"))
    yield daemon
    stop_daemon(daemon)


@pytest.mark.parametrize("end", [b"\n", b"\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("kind", [*BODIES, "json body"])
def test_a_list_too_large_to_judge_never_reaches_the_client_unjudged(daemon, kind, end) -> None:
    backend = _backend(kind, end)
    path = f"/big-{abs(hash((kind, end))) % 10**8}"
    try:
        deploy(daemon, path, backend.url + "/mcp", acl=ECHO_ONLY)
        status, _, body = post(daemon, path, b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}')
    finally:
        backend.stop()
    assert status == 200
    assert b"secret-tool" not in body
    if kind in ("one long line", "many data lines", "json body"):
        # the list was in the part too large to read: the client is told so
        assert b"too large for the gateway to filter" in body
    else:
        # the rest of the event was read as the client reads it, and judged
        assert b'"echo"' in body
