"""
Issue #12 item 3: C{"id": null} does not make a notification.

In JSON-RPC 2.0 only a missing C{id} makes a notification, but the gate
took C{{"id": null, "method": "tools/call", ...}} for one: a denied tool went
through, past the rate limit, five times out of five, to a backend that
answers null ids. Now a request with a null id is refused (400, -32600,
MCP ids are strings or integers) on every API, alone or in a batch, and
never reaches the backend or spends the rate limit.
"""

from __future__ import annotations

import json
from typing import Any, Iterator, Tuple

import pytest

from tests.raw_backend import RawRequest
from tests.security.judge_support import Recording, post, start_daemon, stop_daemon
from tests.support import Daemon, deploy

LIMITED = [{"name": "Keyless", "security": "KEY_LESS", "rateLimit": {"requests": 2, "periodSeconds": 3600},
            "acl": {"rules": [{"tools": ["echo"]}]}}]


def _null_answer(request: RawRequest) -> Tuple[int, bytes]:
    # a backend that answers whatever id it was given, null included
    decoded = json.loads(request.body)
    ident = decoded.get("id") if isinstance(decoded, dict) else None
    return 200, json.dumps({"jsonrpc": "2.0", "id": ident,
                            "result": {"content": [{"type": "text", "text": "ran"}]}}).encode()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[Tuple[Daemon, Recording]]:
    backend = Recording(_null_answer)
    daemon = start_daemon(tmp_path_factory.mktemp("null-id"))
    for path in ("/denied", "/limited", "/batch"):
        deploy(daemon, path, backend.url + "/mcp", plans=LIMITED)
    deploy(daemon, "/open", backend.url + "/mcp")
    yield daemon, backend
    stop_daemon(daemon)
    backend.stop()


def _call(tool: str, id: Any) -> dict:
    return {"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": {"message": "x"}}}


def _refused(status: int, body: bytes) -> None:
    assert status == 400, body
    message = json.loads(body)
    assert message["id"] is None and message["error"]["code"] == -32600
    assert "null" in message["error"]["message"]


def test_a_null_id_call_of_a_denied_tool_never_reaches_the_backend(gateway):
    daemon, backend = gateway
    before = len(backend.requests)
    for path in ("/denied", "/open"):
        for _ in range(5):
            status, _, body = post(daemon, path, json.dumps(_call("get-env", None)).encode())
            _refused(status, body)
    assert len(backend.requests) == before


def test_null_ids_neither_pass_nor_spend_the_rate_limit(gateway):
    daemon, backend = gateway
    before = len(backend.requests)
    for _ in range(5):
        status, _, body = post(daemon, "/limited", json.dumps(_call("echo", None)).encode())
        _refused(status, body)
    assert len(backend.requests) == before
    # the budget of 2 is whole: two calls pass, the third is 429
    for id in (1, 2):
        status, _, body = post(daemon, "/limited", json.dumps(_call("echo", id)).encode())
        assert status == 200 and json.loads(body)["id"] == id, body
    status, _, body = post(daemon, "/limited", json.dumps(_call("echo", 3)).encode())
    assert status == 429, body
    assert len(backend.requests) == before + 2


def test_a_null_id_inside_a_batch_refuses_the_batch(gateway):
    daemon, backend = gateway
    before = len(backend.requests)
    batches = [
        [_call("echo", 1), _call("get-env", None)],
        [_call("get-env", None), {"jsonrpc": "2.0", "method": "notifications/initialized"}],
        [_call("echo", None), _call("echo", None)],
    ]
    for path in ("/batch", "/open"):
        for batch in batches:
            status, _, body = post(daemon, path, json.dumps(batch).encode())
            _refused(status, body)
    assert len(backend.requests) == before
