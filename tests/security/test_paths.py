"""
Issue #11 item 4: a path is normalised before it routes, and what routes
is what the backend gets.

The attack: two APIs on one backend host, C{/pa} (keyless) to
C{http://b/mcp-a} and C{/pb} (API key) to C{http://b/mcp-b}. C{GET /pb} is
401, but C{/pa/../mcp-b}, C{/pa/%2e%2e/mcp-b} and C{/pa/..%2fmcp-b} routed on
the raw prefix C{/pa} and went to the backend as C{/mcp-a/../mcp-b}, which a
normalising backend serves as C{/mcp-b}: the keyed API without a key. Now
(L{mcpgated.paths}, before OAuth discovery and routing, on both HTTP
servers) dot-segments in any spelling, encoded C{/}, C{\\} or NUL, bad
escapes and fragments are refused with 400 and a JSON-RPC error;
unreserved escapes are decoded and C{//} merged; the backend gets the
normalised path and never a dot-segment; the query goes on byte for byte.
"""

from __future__ import annotations

from typing import Iterator, Tuple
from urllib.parse import unquote_to_bytes

import pytest

from tests.security.judge_support import (
    Recording,
    exchange,
    raw_request,
    refused,
    start_daemon,
    stop_daemon,
)
from tests.support import Daemon, deploy

# every spelling of a way out of /pa, and the other targets no reading agrees on
REFUSED = [
    b"/pa/../mcp-b", b"/pa/%2e%2e/mcp-b", b"/pa/..%2fmcp-b", b"/pa/%2E%2E/mcp-b", b"/pa/.%2e/mcp-b",
    b"/pa/%2e./mcp-b", b"/pa/%2E%2e/mcp-b", b"/pa/./x", b"/pa/%2e/x", b"/pa/..", b"/pa/.",
    b"/pa/x/../../mcp-b", b"/pa/x/%2e%2e/%2e%2e/pb", b"/pa/..;/mcp-b", b"/pa/.;x/y",
    b"/pa/..%5cmcp-b", b"/pa/..%5Cmcp-b", b"/pa/%5c..%5cmcp-b", b"/pa%2f..%2fmcp-b",
    b"/pa/%2F../mcp-b", b"/pa/x%00", b"/pa/%00/../mcp-b", b"/pa/%zz", b"/pa/%4", b"/pa/%",
    b"/pa/%C0%AE%C0%AE/mcp-b", b"/pa/%e0%80%ae%e0%80%ae/mcp-b", b"/pa/..\\mcp-b",
    b"/pa/x#/../../mcp-b", b"/pa/x?y=1#frag",
    b"/.well-known/oauth-protected-resource/pa/../pb",
    b"/.well-known/oauth-protected-resource/pa/%2e%2e/pb",
]


@pytest.fixture(scope="module", params=["fast", "twisted"])
def gateway(request, tmp_path_factory) -> Iterator[Tuple[Daemon, Recording]]:
    backend = Recording()
    daemon = start_daemon(tmp_path_factory.mktemp(f"paths-{request.param}"), request.param)
    deploy(daemon, "/pa", backend.url + "/mcp-a")
    deploy(daemon, "/pb", backend.url + "/mcp-b",
           plans=[{"name": "Keys", "security": "API_KEY"}])
    yield daemon, backend
    stop_daemon(daemon)
    backend.stop()


def test_no_spelling_of_a_dot_segment_or_an_encoded_slash_passes(gateway):
    daemon, backend = gateway
    assert exchange(daemon, raw_request("GET", b"/pb")).code == 401
    before = len(backend.requests)
    for target in REFUSED:
        for method, body in (("GET", b""), ("POST", b'{"jsonrpc":"2.0","id":1,"method":"ping"}')):
            response = exchange(daemon, raw_request(method, target, body,
                                                    {"Content-Type": "application/json"}))
            refused(response, 400)  # by the gateway, with a JSON-RPC body
    assert len(backend.requests) == before
    for request in backend.requests:  # (of any test) no dot-segment, never the keyed API's path
        path = unquote_to_bytes(request.target.partition(b"?")[0])
        assert not any(s in (b".", b"..") for s in path.split(b"/")), request.target
        assert b"\\" not in path and not path.startswith(b"/mcp-b"), request.target


NORMALISED = [
    (b"/pa//x", b"/mcp-a/x"), (b"//pa", b"/mcp-a"), (b"//pa///x//y/", b"/mcp-a/x/y/"),
    (b"/p%61/x", b"/mcp-a/x"), (b"/pa/%41%7e%2D", b"/mcp-a/A~-"),
    (b"/pa/%c3%a9%3f%25%20", b"/mcp-a/%C3%A9%3F%25%20"), (b"/pa/a..b/...", b"/mcp-a/a..b/..."),
    (b"/pa//x?a=../b&c=%2F&d=%2e%2e", b"/mcp-a/x?a=../b&c=%2F&d=%2e%2e"),
]


def test_the_backend_gets_the_normalised_path_and_the_raw_query(gateway):
    daemon, backend = gateway
    for target, upstream in NORMALISED:
        before = len(backend.requests)
        response = exchange(daemon, raw_request("GET", target,
                                                headers={"Accept": "text/event-stream"}))
        assert response.code == 200, (target, response.body[:200])
        (seen,) = backend.requests[before:]
        assert seen.target == upstream, target
