"""
Issue #11 item 8: through the gateway, a streamed answer's status line and
headers waited for its first body byte; the standalone GET SSE stream of a
session (server-everything, after initialize) sends no event for a long
time, so a client waiting for the headers, as the official Python SDK's GET
stream does, timed out. Status and headers now go out as soon as the
backend's arrive, for every streamed answer (event streams and bodies of
unknown length).

Through the real daemon, on both HTTP servers: a raw backend that sends its
head and holds the body until the test says, and server-everything.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Dict, Iterator, List

import pytest

from tests.raw_backend import RawBackend, RawConnection, RawRequest
from tests.security.edge_support import SERVERS, Client, daemons
from tests.support import Daemon, deploy, http

HEADS = {
    b"/sse": b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n",
    b"/sse-close": b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n",
    b"/octets": b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n",
}


class HeldStreams:
    """
    Sends the head for the request's path at once, then one body piece and
    the end only when C{release()} is called.
    """

    def __init__(self) -> None:
        self.release_event = threading.Event()
        self.backend = RawBackend(self._respond)

    def _respond(self, connection: RawConnection, request: RawRequest) -> None:
        target = request.target.split(b"?")[0]
        head = HEADS[target[target.rindex(b"/"):]]
        connection.send(head)

        def rest() -> None:
            self.release_event.wait(30)
            body = b"data: {\"late\":true}\n\n"
            if b"chunked" in head:
                connection.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
            else:
                connection.send(body)
                connection.close()

        threading.Thread(target=rest, daemon=True).start()

    def release(self) -> None:
        self.release_event.set()


@pytest.fixture(scope="module", params=SERVERS)
def daemon(request, tmp_path_factory) -> Iterator[Daemon]:
    yield from daemons(tmp_path_factory, request.param)


@pytest.fixture
def held(daemon) -> Iterator[HeldStreams]:
    streams = HeldStreams()
    deploy(daemon, "/held-" + str(streams.backend.port), streams.backend.url)
    yield streams
    streams.release()
    streams.backend.stop()


@pytest.mark.parametrize("method", [b"GET", b"POST"])
@pytest.mark.parametrize("path", list(HEADS))
def test_head_arrives_before_the_first_byte(daemon, held, path, method):
    """
    The client has the backend's status and headers while the backend still
    holds the body; the body follows when the backend sends it.
    """
    client = Client(daemon)
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping"}' if method == b"POST" else b""
    client.send(method + b" /held-%d" % held.backend.port + path + b" HTTP/1.1\r\n"
                b"Host: 127.0.0.1\r\nAccept: application/json, text/event-stream\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body))
    code, headers, rest = client.head(timeout=10)
    assert code == 200
    assert headers["content-type"] == [HEADS[path].split(b"Content-Type: ")[1].split(b"\r\n")[0]
                                       .decode()]
    assert headers["transfer-encoding"] == ["chunked"]
    assert rest == b""
    held.release()
    [response] = client.responses(1)
    assert response.body == b"data: {\"late\":true}\n\n"
    client.close()


def _post(url: str, message: Dict, headers: Dict[str, str]) -> tuple:
    return http("POST", url, message, headers)


def test_everything_get_stream_headers_before_any_event(daemon, everything):
    """
    server-everything through the gateway: after initialize, the session's
    GET stream answers with its status and headers at once, though no event
    comes; an event the session later causes (simulated logging) follows on
    it.
    """
    deploy(daemon, "/everything-get", f"http://127.0.0.1:{everything}/mcp")
    url = daemon.gateway + "/everything-get"
    accept = {"Accept": "application/json, text/event-stream"}
    status, headers, _ = _post(url, {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "edge-tests", "version": "1"}}}, accept)
    assert status == 200
    common = dict(accept, **{"Mcp-Session-Id": headers["mcp-session-id"],
                             "MCP-Protocol-Version": "2025-06-18"})
    status, _, _ = _post(url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, common)
    assert status == 202

    client = Client(daemon)
    client.send(b"GET /everything-get HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                + b"".join(f"{k}: {v}\r\n".encode() for k, v in common.items())
                + b"Accept: text/event-stream\r\n\r\n")
    code, stream_headers, rest = client.head(timeout=10)
    assert code == 200
    assert stream_headers["content-type"][0].startswith("text/event-stream")
    assert rest == b""

    status, _, _ = _post(url, {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                               "params": {"name": "toggle-simulated-logging", "arguments": {}}},
                         common)
    assert status == 200
    deadline = time.monotonic() + 15
    events: List[bytes] = []
    while not any(b"notifications/message" in e for e in events):
        if not client._read(deadline):
            pytest.fail(f"no logging event on the GET stream: {client.data[-400:]!r}")
        events = client.data.split(b"\n\n")
    message = next(e for e in events if b"notifications/message" in e)
    payload = json.loads(message.split(b"data: ", 1)[1].split(b"\r\n")[0])
    assert payload["method"] == "notifications/message"
    _post(url, {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                "params": {"name": "toggle-simulated-logging", "arguments": {}}}, common)
    client.close()
