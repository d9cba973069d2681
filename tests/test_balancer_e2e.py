"""
Load-balanced APIs end to end: the real daemon in front of two real MCP
servers per API (npm's server-everything over streamable HTTP and legacy
HTTP+SSE, and 2026-07-28 sessionless SDK servers), driven by the official
SDK client and by raw requests. Session ids are read back with the key the
daemon generated, to see which endpoint holds each session.
"""

from __future__ import annotations

import json
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import anyio
import pytest
from mcp import Client
from mcp.client.sse import sse_client

from tests.support import (
    NODE_BIN,
    Daemon,
    Proc,
    deploy,
    http,
    running,
    script_file,
    start_everything,
    start_python_server,
)

from mcpgated.sealing import Sealer, endpoint_id, load_key_file

MCP_ACCEPT = {"Accept": "application/json, text/event-stream"}
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "lb-test", "version": "1"}}}

WHOAMI_SERVER = '''
import sys
from mcp.server.mcpserver import MCPServer

server = MCPServer("whoami")

@server.tool()
def whoami() -> str:
    """The name this server was started with."""
    return sys.argv[1]

server.run(transport="streamable-http", host="127.0.0.1", port=0, stateless_http=True)
'''


def _backends(transport: str, count: int = 2) -> Iterator[List[int]]:
    started = [start_everything(transport) for _ in range(count)]
    yield [port for _, port in started]
    for proc, _ in started:
        proc.stop()


@pytest.fixture(scope="module")
def pair() -> Iterator[List[int]]:
    yield from _backends("streamableHttp")


@pytest.fixture(scope="module")
def sse_pair() -> Iterator[List[int]]:
    yield from _backends("sse")


@pytest.fixture(scope="module")
def modern_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[List[int]]:
    script = script_file(tmp_path_factory.mktemp("whoami"), "whoami.py", WHOAMI_SERVER)
    started = [start_python_server(script, name) for name in ("first", "second")]
    yield [port for _, port in started]
    for proc, _ in started:
        proc.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    yield from running(Daemon(tmp_path_factory.mktemp("lb")))


def endpoints_api(daemon: Daemon, context_path: str, urls: List[str], **fields: Any) -> str:
    api = deploy(daemon, context_path, None,  # type: ignore[arg-type]
                 endpoints=[{"url": url, "weight": 1} for url in urls], **fields)
    return str(api["id"])


def sealer_of(daemon: Daemon) -> Sealer:
    return Sealer(load_key_file(daemon.folder / "data" / "session.key", generate=False))


def initialize(url: str) -> Tuple[int, Any, bytes]:
    return http("POST", url, INIT, MCP_ACCEPT)


def session_call(url: str, session: str, method: str = "tools/list",
                 id: int = 2) -> Tuple[int, Any, bytes]:
    return http("POST", url, {"jsonrpc": "2.0", "id": id, "method": method},
                dict(MCP_ACCEPT, **{"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"}))


@pytest.fixture(scope="module")
def lb(gateway: Daemon, pair: List[int]) -> Tuple[str, List[str]]:
    urls = [f"http://127.0.0.1:{port}/mcp" for port in pair]
    return endpoints_api(gateway, "/lb", urls), urls


def test_new_sessions_alternate_and_ids_seal_the_endpoint_and_backend_session(gateway, lb):
    api_id, urls = lb
    sealer = sealer_of(gateway)
    holders = []
    for _ in range(4):
        status, headers, body = initialize(gateway.gateway + "/lb")
        assert status == 200, body
        sealed = headers["mcp-session-id"]
        opened = sealer.unseal(api_id, sealed)
        assert opened is not None
        endpoint, backend_session = opened
        assert backend_session not in sealed  # the backend's id is not what the client holds
        holders.append(endpoint)
        # the backend's own id works at the endpoint the seal names, directly
        direct = urls[[endpoint_id(u) for u in urls].index(endpoint)]
        status, _, _ = session_call(direct, backend_session)
        assert status == 200
    assert holders.count(endpoint_id(urls[0])) == 2 and holders.count(endpoint_id(urls[1])) == 2


def test_a_session_stays_on_its_endpoint_and_keeps_its_id(gateway, lb):
    status, headers, _ = initialize(gateway.gateway + "/lb")
    session = headers["mcp-session-id"]
    for index in range(6):  # round-robin would alternate a request without a session
        status, answer_headers, body = session_call(gateway.gateway + "/lb", session, id=10 + index)
        assert status == 200, body
        assert b'"tools"' in body
        if answer_headers.get("mcp-session-id") is not None:
            assert answer_headers["mcp-session-id"] == session  # one session, one id
    status, _, _ = http("DELETE", gateway.gateway + "/lb",
                        headers={"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"})
    assert status == 200
    status, _, body = session_call(gateway.gateway + "/lb", session)
    assert status in (400, 404)  # ended at its backend, which says so


async def _sdk_sessions(url: str, count: int) -> List[str]:
    texts = []
    for index in range(count):
        async with Client(url) as client:
            for call in range(3):
                echo = await client.call_tool("echo", {"message": f"s{index}c{call}"})
                texts.append(echo.content[0].text)
            tools = await client.list_tools()
            assert "echo" in [t.name for t in tools.tools]
    return texts


def test_sdk_sessions_through_two_endpoints(gateway, lb):
    texts = anyio.run(_sdk_sessions, gateway.gateway + "/lb", 4)
    assert texts == [f"Echo: s{i}c{c}" for i in range(4) for c in range(3)]


async def _legacy(url: str) -> List[str]:
    out = []
    for index in range(4):
        async with Client(sse_client(url), mode="legacy") as client:
            echo = await client.call_tool("echo", {"message": f"legacy {index}"})
            out.append(echo.content[0].text)
            echo = await client.call_tool("echo", {"message": f"again {index}"})
            out.append(echo.content[0].text)
    return out


def test_legacy_sse_sessions_through_two_endpoints(gateway, sse_pair):
    api_id = endpoints_api(gateway, "/lb-sse", [f"http://127.0.0.1:{p}" for p in sse_pair])
    assert anyio.run(_legacy, gateway.gateway + "/lb-sse/sse") == [
        text for i in range(4) for text in (f"Echo: legacy {i}", f"Echo: again {i}")]
    # the endpoint event's session id is sealed, for this API, naming one of the two
    sealer = sealer_of(gateway)
    holders = set()
    for _ in range(2):
        url = _endpoint_event(gateway, "/lb-sse/sse")
        session = url.split("sessionId=", 1)[1]
        opened = sealer.unseal(api_id, session)
        assert opened is not None and opened[1] not in url
        holders.add(opened[0])
    assert holders == {endpoint_id(f"http://127.0.0.1:{p}") for p in sse_pair}


def _endpoint_event(daemon: Daemon, path: str) -> str:
    port = daemon.ports["gateway"][0]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     "Accept: text/event-stream\r\n\r\n".encode())
        received = b""
        while b"event: endpoint" not in received or \
                b"\n\n" not in received.split(b"event: endpoint", 1)[1]:
            chunk = sock.recv(4096)
            assert chunk, received
            received += chunk
    data = received.split(b"event: endpoint", 1)[1].split(b"\n\n", 1)[0]
    line = [x for x in data.splitlines() if x.startswith(b"data:")][0]
    return line[5:].strip().decode()


async def _whoami(url: str, count: int) -> List[str]:
    names = []
    async with Client(url) as client:
        assert client.protocol_version == "2026-07-28"
        for _ in range(count):
            result = await client.call_tool("whoami", {})
            names.append(result.content[0].text)
    return names


def test_sessionless_2026_requests_go_to_any_healthy_endpoint(gateway, modern_pair):
    endpoints_api(gateway, "/lb-modern", [f"http://127.0.0.1:{p}/mcp" for p in modern_pair])
    names = anyio.run(_whoami, gateway.gateway + "/lb-modern", 6)
    # one client, no session: its requests are spread over both servers
    assert sorted(set(names)) == ["first", "second"]


@pytest.fixture
def doomed_pair() -> Iterator[List[Tuple[Proc, int]]]:
    started = [start_everything("streamableHttp") for _ in range(2)]
    yield started
    for proc, _ in started:
        proc.stop()


def _two_sessions(daemon: Daemon, path: str, api_id: str) -> Dict[bytes, str]:
    """
    A session on each endpoint of the API at C{path}, by the endpoint id.
    """
    sealer = sealer_of(daemon)
    sessions: Dict[bytes, str] = {}
    while len(sessions) < 2:
        _, headers, _ = initialize(daemon.gateway + path)
        opened = sealer.unseal(api_id, headers["mcp-session-id"])
        assert opened is not None
        sessions[opened[0]] = headers["mcp-session-id"]
    return sessions


def _assert_not_found(status: int, headers: Any, body: bytes) -> None:
    assert status == 404, body
    assert headers["Content-Type"] == "application/json"
    error = json.loads(body)
    assert error["error"]["code"] == -32001 and error["error"]["message"] == "Session not found"
    assert error["id"] == 2


def test_a_dead_endpoint_s_sessions_get_404_and_new_sessions_go_elsewhere(gateway, doomed_pair):
    urls = [f"http://127.0.0.1:{port}/mcp" for _, port in doomed_pair]
    # two APIs on the same endpoints: each pool learns of the death on its own
    first = endpoints_api(gateway, "/lb-doomed", urls)
    second = endpoints_api(gateway, "/lb-doomed-2", urls)
    first_sessions = _two_sessions(gateway, "/lb-doomed", first)
    second_sessions = _two_sessions(gateway, "/lb-doomed-2", second)
    doomed_pair[0][0].kill()
    dead, live = endpoint_id(urls[0]), endpoint_id(urls[1])
    sealer = sealer_of(gateway)

    # New sessions, before anything was sent to the dead endpoint: the one
    # round-robin gives it cannot connect and goes to the live one; none refused.
    for _ in range(4):
        status, headers, _ = initialize(gateway.gateway + "/lb-doomed")
        assert status == 200
        opened = sealer.unseal(first, headers["mcp-session-id"])
        assert opened is not None and opened[0] == live
    # the dead endpoint's session: 404 (the endpoint is known down by now)
    _assert_not_found(*session_call(gateway.gateway + "/lb-doomed", first_sessions[dead]))
    # on the other API, the first news of the death is the session's own request: 404 too
    _assert_not_found(*session_call(gateway.gateway + "/lb-doomed-2", second_sessions[dead]))
    # the live endpoint's sessions go on
    for path, sessions in (("/lb-doomed", first_sessions), ("/lb-doomed-2", second_sessions)):
        status, _, _ = session_call(gateway.gateway + path, sessions[live])
        assert status == 200
    # and the SDK client, starting over after the 404, works
    texts = anyio.run(_sdk_sessions, gateway.gateway + "/lb-doomed-2", 2)
    assert len(texts) == 6


def test_a_single_backend_api_passes_session_ids_through(gateway, pair):
    deploy(gateway, "/single", f"http://127.0.0.1:{pair[0]}/mcp")
    _, headers, _ = initialize(gateway.gateway + "/single")
    session = headers["mcp-session-id"]
    status, _, _ = session_call(f"http://127.0.0.1:{pair[0]}/mcp", session)
    assert status == 200  # the backend's own id, as it gave it


def test_definitions_take_endpoints_or_backend_naming_the_field(gateway, pair):
    url = f"http://127.0.0.1:{pair[0]}/mcp"
    base = {"name": "x", "version": "1", "contextPath": "/x",
            "plans": [{"name": "Keyless", "security": "KEY_LESS"}]}
    cases = [
        (dict(base, backend=url, endpoints=[{"url": url}]), "endpoints"),
        (dict(base, endpoints=[]), "endpoints"),
        (dict(base, endpoints=[{"url": "ftp://x"}]), "endpoints[0].url"),
        (dict(base, endpoints=[{"url": url}, {"url": url}]), "endpoints[1].url"),
        (dict(base, endpoints=[{"url": url, "weight": 0}]), "endpoints[0].weight"),
        (dict(base, endpoints=[{"url": url, "port": 1}]), "endpoints[0].port"),
        (dict(base, endpoints=[{"url": url}], loadBalancing={"algorithm": "random"}),
         "loadBalancing.algorithm"),
        (dict(base, backend=url, loadBalancing={}), "loadBalancing"),
        (dict(base, endpoints=[{"url": url}],
              loadBalancing={"healthCheck": {"intervalSeconds": 0}}),
         "loadBalancing.healthCheck.intervalSeconds"),
    ]
    for body, field in cases:
        status, answer = gateway.admin("POST", "/apis", body)
        assert status == 400, (body, answer)
        assert answer["field"] == field, (body, answer)
    status, created = gateway.admin("POST", "/apis", dict(
        base, contextPath="/x-ok", endpoints=[{"url": url, "weight": 3}],
        loadBalancing={"algorithm": "least-connections",
                       "healthCheck": {"intervalSeconds": 5, "path": "/health"}}))
    assert status == 201, created
    assert created["backend"] is None
    assert created["endpoints"] == [{"url": url, "weight": 3}]
    assert created["loadBalancing"]["algorithm"] == "least-connections"
    # what GET gives can be PUT back
    status, again = gateway.admin("PUT", f"/apis/{created['id']}", created)
    assert status == 200, again


def test_a_configured_session_key_file_that_is_missing_stops_the_daemon(tmp_path: Path):
    daemon = Daemon(tmp_path, extra="")
    text = daemon.ini.read_text().replace(
        "[gateway]\n", "[gateway]\nsession_key_file = /nonexistent/session.key\n")
    daemon.ini.write_text(text)
    proc = Proc(daemon.command(), cwd=str(tmp_path))
    proc.wait_for(r"\[gateway\] session_key_file: cannot read")
    assert proc.popen.wait(30) != 0


def test_active_checks_take_an_endpoint_out_and_bring_it_back(gateway, pair):
    with socket.socket() as sock:  # a port nobody listens on, for now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    late = f"http://127.0.0.1:{port}/mcp"
    endpoints_api(gateway, "/lb-checked", [late, f"http://127.0.0.1:{pair[0]}/mcp"],
                  loadBalancing={"healthCheck": {"intervalSeconds": 0.2, "timeoutSeconds": 2}})
    assert gateway.proc is not None
    gateway.proc.wait_for(rf"endpoint {late} fails its health check: taken out")
    server = Proc([str(NODE_BIN / "mcp-server-everything"), "streamableHttp"],
                  env={"PORT": str(port)})
    try:
        server.wait_for(r"listening on port|running on port")
        gateway.proc.wait_for(rf"endpoint {late} passes its health check again")
    finally:
        server.stop()


def test_the_exchange_log_sees_one_session_per_client_across_endpoints(gateway, pair):
    """
    The exchange log names a session by the id the client holds (sealed),
    so a session's calls are one session, its client known from its
    initialize, whichever endpoint served it.
    """
    api_id = endpoints_api(gateway, "/lb-logged", [f"http://127.0.0.1:{p}/mcp" for p in pair])
    anyio.run(_sdk_sessions, gateway.gateway + "/lb-logged", 2)
    deadline = time.monotonic() + 10
    records: List[Dict[str, Any]] = []
    while len(records) < 6 and time.monotonic() < deadline:  # records are written in batches
        status, page = gateway.admin("GET", f"/apis/{api_id}/logs?method=tools/call&tool=echo")
        assert status == 200
        records = page["data"]
    assert len(records) == 6
    sessions = Counter(record["session"] for record in records)
    assert len(sessions) == 2 and set(sessions.values()) == {3}
    assert {record["clientName"] for record in records} == {"mcp"}


def test_an_endpoint_answering_5xx_is_taken_out_after_max_failures(gateway, pair):
    from tests.raw_backend import RawBackend

    failing: List[bytes] = []

    def unavailable(connection: Any, request: Any) -> None:
        failing.append(request.target)
        body = b'{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"overloaded"}}'
        connection.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    backend = RawBackend(unavailable)
    try:
        endpoints_api(gateway, "/lb-5xx", [backend.url + "/mcp", f"http://127.0.0.1:{pair[0]}/mcp"],
                      loadBalancing={"passive": {"maxFailures": 2, "ejectSeconds": 600}})
        statuses = [initialize(gateway.gateway + "/lb-5xx")[0] for _ in range(8)]
        # round-robin: the failing endpoint's answers pass through until it
        # has failed twice in a row, then it gets nothing more
        assert statuses.count(503) == 2 and len(failing) == 2
        last = max(index for index, status in enumerate(statuses) if status == 503)
        assert last <= 3 and set(statuses[last + 1:]) == {200}
    finally:
        backend.stop()
