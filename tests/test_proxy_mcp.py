"""
Real MCP clients through the real daemon to real MCP servers: the official
Python SDK against npm's server-everything (handshake era, streamable HTTP
and legacy HTTP+SSE) and against a 2026-07-28 (sessionless) SDK server.
"""

from __future__ import annotations

import json
import time
from typing import Any, List, Tuple

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.sse import sse_client

from tests.daemon_helpers import set_options
from tests.support import Daemon, http, script_file, start_python_server

MCP_ACCEPT = {"Accept": "application/json, text/event-stream"}


async def _sampling(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text="sampled through the gateway"),
        model="test-model",
        stopReason="endTurn",
    )


async def _elicitation(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={"name": "Ada"})


async def _session(url: str) -> dict:
    """
    One full handshake-era session; returns what the test asserts on.
    """
    seen: dict = {"progress": []}
    async with Client(url, sampling_callback=_sampling, elicitation_callback=_elicitation) as client:
        seen["protocol"] = client.protocol_version
        seen["server"] = client.server_info.name if client.server_info else None
        tools = await client.list_tools()
        seen["tools"] = sorted(tool.name for tool in tools.tools)
        echo = await client.call_tool("echo", {"message": "through mcpgated"})
        seen["echo"] = echo.content[0].text

        started = time.monotonic()

        async def progress(value: float, total: Any, message: Any) -> None:
            seen["progress"].append((time.monotonic() - started, value))

        done = await client.call_tool("trigger-long-running-operation", {"duration": 2, "steps": 4},
                                      progress_callback=progress)
        seen["long_done_at"] = time.monotonic() - started
        seen["long"] = done.content[0].text

        sampled = await client.call_tool("trigger-sampling-request", {"prompt": "hi", "maxTokens": 5})
        seen["sampled"] = json.dumps([c.model_dump() for c in sampled.content])
        elicited = await client.call_tool("trigger-elicitation-request", {})
        seen["elicited"] = json.dumps([c.model_dump() for c in elicited.content])
        resources = await client.list_resources()
        seen["resources"] = [r.uri for r in resources.resources]
        first = resources.resources[0]
        read = await client.read_resource(first.uri)
        seen["read_uri"] = str(read.contents[0].uri)
        await client.subscribe_resource(first.uri)
        await client.unsubscribe_resource(first.uri)
        prompts = await client.list_prompts()
        seen["prompts"] = sorted(p.name for p in prompts.prompts)
        prompt = await client.get_prompt("simple-prompt")
        seen["prompt_messages"] = len(prompt.messages)
        await client.send_ping()
        unknown = await client.call_tool("no-such-tool", {})
        seen["unknown_is_error"] = unknown.is_error
        seen["unknown_text"] = unknown.content[0].text if unknown.content else ""
    return seen


def test_sdk_session_through_gateway_matches_direct(daemon, everything):
    direct_url = f"http://127.0.0.1:{everything}/mcp"
    daemon.deploy(direct_url)
    via_gateway = anyio.run(_session, daemon.gateway + "/mcp-proxy")
    direct = anyio.run(_session, direct_url)

    assert via_gateway["protocol"] == direct["protocol"]
    assert via_gateway["tools"] == direct["tools"] and "echo" in via_gateway["tools"]
    assert via_gateway["echo"] == "Echo: through mcpgated"
    assert "Long running operation completed" in via_gateway["long"]
    assert "sampled through the gateway" in via_gateway["sampled"]
    assert "User provided the requested information" in via_gateway["elicited"]
    assert "Ada" in via_gateway["elicited"]
    assert via_gateway["resources"] == direct["resources"]
    assert via_gateway["read_uri"] == str(via_gateway["resources"][0])
    assert via_gateway["prompts"] == direct["prompts"]
    assert via_gateway["prompt_messages"] == 1
    assert via_gateway["unknown_is_error"] is True
    assert "no-such-tool" in via_gateway["unknown_text"]

    # Progress arrived event by event while the tool ran (0.5 s apart),
    # not bunched up when the result came.
    times = [t for t, _ in via_gateway["progress"]]
    assert [v for _, v in via_gateway["progress"]] == [1.0, 2.0, 3.0, 4.0]
    assert times[0] < via_gateway["long_done_at"] - 1.0
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(gap > 0.25 for gap in gaps), gaps


def test_session_lifecycle_and_status_codes_pass_through(daemon, everything):
    daemon.deploy(f"http://127.0.0.1:{everything}/mcp")
    url = daemon.gateway + "/mcp-proxy"
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw-test", "version": "1"}}}

    # A POST accepting only JSON reaches the backend, whose 406 comes back.
    status, _, _ = http("POST", url, init, {"Accept": "application/json"})
    assert status == 406

    status, headers, body = http("POST", url, init, MCP_ACCEPT)
    assert status == 200
    session = headers["mcp-session-id"]
    assert headers["Content-Type"].startswith("text/event-stream")
    assert headers.get("Cache-Control") == "no-cache"
    assert headers.get("X-Accel-Buffering") == "no"
    assert "Connection" not in headers or headers["Connection"].lower() != "keep-alive, upgrade"
    assert b'"serverInfo"' in body

    common = dict(MCP_ACCEPT, **{"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"})
    status, _, body = http("POST", url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, common)
    assert (status, body) == (202, b"")

    status, _, _ = http("POST", url, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                        dict(common, **{"Mcp-Session-Id": "not-a-session"}))
    assert status in (400, 404)  # the backend's own answer for an unknown session

    status, _, _ = http("DELETE", url, headers=common)
    assert status == 200
    status, _, _ = http("POST", url, {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, common)
    assert status in (400, 404)  # the session is gone at the backend


async def _legacy_session(url: str) -> Tuple[str, List[str]]:
    async with Client(sse_client(url), mode="legacy") as client:
        tools = await client.list_tools()
        echo = await client.call_tool("echo", {"message": "legacy"})
        return echo.content[0].text, sorted(t.name for t in tools.tools)


def test_legacy_sse_transport_through_gateway(daemon, everything_sse):
    daemon.deploy(f"http://127.0.0.1:{everything_sse}", context_path="/legacy")
    text, tools = anyio.run(_legacy_session, daemon.gateway + "/legacy/sse")
    assert text == "Echo: legacy"
    assert "echo" in tools


def test_legacy_endpoint_event_points_at_the_gateway(tmp_path, everything_sse):
    """
    The backend's relative endpoint is rewritten to the gateway's origin and
    context path, the query (session id) kept.
    """
    daemon = Daemon(tmp_path)
    set_options(daemon, "gateway", allowed_hosts="gw.example")
    daemon.start()
    try:
        _check_endpoint_event(daemon, everything_sse)
    finally:
        daemon.stop()


def _check_endpoint_event(daemon: Daemon, everything_sse: int) -> None:
    import socket

    daemon.deploy(f"http://127.0.0.1:{everything_sse}", context_path="/legacy")
    port = daemon.ports["gateway"][0]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /legacy/sse HTTP/1.1\r\nHost: gw.example:8082\r\n"
                     b"Accept: text/event-stream\r\n\r\n")
        received = b""
        while b"event: endpoint" not in received or b"\n\n" not in received.split(b"event: endpoint", 1)[1]:
            chunk = sock.recv(4096)
            assert chunk, received
            received += chunk
    data = received.split(b"event: endpoint", 1)[1].split(b"\n\n", 1)[0]
    line = [x for x in data.splitlines() if x.startswith(b"data:")][0]
    assert line.startswith(b"data: http://gw.example:8082/legacy/message?sessionId="), line


MODERN_SERVER = '''
import sys
from mcp.server.mcpserver import MCPServer

server = MCPServer("modern-test-server")

@server.tool()
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b

server.run(transport="streamable-http", host="127.0.0.1", port=0, stateless_http=True)
'''


@pytest.fixture
def modern_backend(tmp_path):
    proc, port = start_python_server(script_file(tmp_path, "modern_server.py", MODERN_SERVER))
    yield port
    proc.stop()


async def _modern_session(url: str) -> Tuple[str, str, List[str]]:
    async with Client(url) as client:
        tools = await client.list_tools()
        result = await client.call_tool("add", {"a": 2, "b": 3})
        return client.protocol_version, result.content[0].text, [t.name for t in tools.tools]


def test_sessionless_2026_revision_through_gateway(daemon, modern_backend):
    daemon.deploy(f"http://127.0.0.1:{modern_backend}/mcp", context_path="/modern")
    protocol, text, tools = anyio.run(_modern_session, daemon.gateway + "/modern")
    assert protocol == "2026-07-28"
    assert text == "5"
    assert tools == ["add"]
