"""
Issue #11 item 3: every method's body is judged, or refused.

The gateway's policy read only POST bodies, so a JSON-RPC body on PUT,
PATCH, DELETE or GET reached the backend unjudged. MCP sends messages with
POST only (GET opens the SSE stream, DELETE ends a session, OPTIONS is a
CORS preflight, none with a body). Now, on every API (policy or not), on
both HTTP servers: any other method gets 405 with C{Allow} and a JSON-RPC
error; a body on GET, DELETE, HEAD or OPTIONS (Content-Length or chunked)
gets 400; and none of it reaches the backend.
"""

from __future__ import annotations

import json
from typing import Iterator, Tuple

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

DENIED_CALL = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": "get-env", "arguments": {}}}).encode()
JSON = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


@pytest.fixture(scope="module", params=["fast", "twisted"])
def gateway(request, tmp_path_factory) -> Iterator[Tuple[Daemon, Recording]]:
    backend = Recording()
    daemon = start_daemon(tmp_path_factory.mktemp(f"methods-{request.param}"), request.param)
    deploy(daemon, "/open", backend.url + "/mcp")
    deploy(daemon, "/acl", backend.url + "/mcp", acl={"rules": [{"tools": ["echo"]}]})
    yield daemon, backend
    stop_daemon(daemon)
    backend.stop()


def test_methods_mcp_does_not_use_are_405(gateway):
    daemon, backend = gateway
    before = len(backend.requests)
    for path in (b"/open", b"/acl"):
        for method in ("PUT", "PATCH", "PROPFIND", "PURGE", "SEARCH", "TRACE", "REPORT"):
            for body in (DENIED_CALL, b""):
                response = exchange(daemon, raw_request(method, path, body, JSON))
                message = refused(response, 405, -32600)
                assert response.header("allow") == "GET, POST, DELETE, HEAD, OPTIONS", method
                assert message["id"] is None
    assert len(backend.requests) == before


def test_a_body_on_get_delete_head_or_options_is_400_and_without_one_they_pass(gateway):
    daemon, backend = gateway
    before = len(backend.requests)
    for path in (b"/open", b"/acl"):
        for method in ("GET", "DELETE", "OPTIONS", "HEAD"):
            for chunked in (False, True):
                data = raw_request(method, path, DENIED_CALL, JSON, chunked=chunked)
                response = exchange(daemon, data, head=method == "HEAD")
                if method == "HEAD":
                    assert response.code == 400, (method, chunked)
                else:
                    refused(response, 400, -32600)
    assert len(backend.requests) == before
    # what MCP sends still reaches the backend
    for path in (b"/open", b"/acl"):
        before = len(backend.requests)
        accept = {"Accept": "text/event-stream"}
        assert exchange(daemon, raw_request("GET", path, headers=accept)).code == 200
        assert exchange(daemon, raw_request("GET", path, headers=accept, chunked=True)).code == 200
        assert exchange(daemon, raw_request("DELETE", path)).code == 200
        assert exchange(daemon, raw_request("OPTIONS", path)).code == 200
        assert exchange(daemon, raw_request("HEAD", path), head=True).code == 200
        ping = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
        assert exchange(daemon, raw_request("POST", path, ping, JSON)).code == 200
        seen = backend.requests[before:]
        assert [r.method for r in seen] == [b"GET", b"GET", b"DELETE", b"OPTIONS", b"HEAD", b"POST"]
        assert [r.body for r in seen] == [b""] * 5 + [ping]
    # and the policy still judges the POST body
    response = exchange(daemon, raw_request("POST", b"/acl", DENIED_CALL, JSON))
    assert response.code == 200 and json.loads(response.body)["error"]["message"] == \
        "Unknown tool: get-env"
