"""
Helpers for the security tests of what the gateway reads of a request
(tests/security/test_charset.py, test_ids.py, test_methods.py,
test_paths.py, test_null_id.py): raw HTTP exchanges with the real daemon,
a recording raw backend, MCP sessions on both transports of
server-everything, and the exchange log.

Every read has a deadline; nothing sleeps.
"""

from __future__ import annotations

from http.client import HTTPConnection
import json
import socket
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from tests.contract.harness import Response, parse_responses
from tests.daemon_helpers import set_options
from tests.raw_backend import RawBackend, RawConnection, RawRequest
from tests.support import Daemon, http

ACCEPT = "application/json, text/event-stream"
INITIALIZE = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-03-26", "capabilities": {},
    "clientInfo": {"name": "security-tests", "version": "1"}}}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def start_daemon(folder: Any, server: str = "fast") -> Daemon:
    daemon = Daemon(folder)
    set_options(daemon, "gateway", http=server)
    return daemon.start()


def stop_daemon(daemon: Daemon) -> None:
    daemon.stop_if_running()


def raw_request(method: str, target: bytes, body: bytes = b"",
                headers: Optional[Dict[str, str]] = None, chunked: bool = False) -> bytes:
    """
    One request's bytes, closing the connection after it.
    """
    lines = [method.encode("latin-1") + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1",
             b"Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}".encode("latin-1"))
    if chunked:
        lines.append(b"Transfer-Encoding: chunked")
        framed = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    else:
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(b"Content-Length: %d" % len(body))
        framed = body
    return b"\r\n".join(lines) + b"\r\n\r\n" + framed


def exchange(daemon: Daemon, data: bytes, head: bool = False, timeout: float = 15.0) -> Response:
    """
    Send raw bytes to the gateway; the first response (the connection is
    read until that response is complete or the gateway closes).
    """
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", daemon.ports["gateway"][0]), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        closed = False
        while True:
            found = parse_responses(received, 1, (head,), closed)
            if found is not None:
                return found[0]
            if closed:
                raise AssertionError(f"the gateway closed without an answer: {received[:300]!r}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no answer in time: {received[:300]!r}")
            sock.settimeout(remaining)
            chunk = sock.recv(65536)
            closed = not chunk
            received += chunk


def refused(response: Response, status: int, code: Optional[int] = None) -> Dict[str, Any]:
    """
    The gateway's own JSON-RPC refusal with C{status} (and C{code}).
    """
    assert response.code == status, (response.code, response.body[:300])
    assert response.header("content-type") == "application/json"
    message = json.loads(response.body)
    assert message["jsonrpc"] == "2.0" and message["error"]["data"]["httpStatus"] == status
    if code is not None:
        assert message["error"]["code"] == code, message
    return message


class Recording:
    """
    A raw backend keeping every request it gets; C{answer(request)} gives
    the status and JSON body of each (default: an empty result for id 1).
    """

    def __init__(self, answer: Optional[Callable[[RawRequest], Tuple[int, bytes]]] = None) -> None:
        self.answer = answer or (lambda request: (200, b'{"jsonrpc":"2.0","id":1,"result":{}}'))
        self.backend = RawBackend(self._respond)

    def _respond(self, connection: RawConnection, request: RawRequest) -> None:
        status, body = self.answer(request)
        connection.send(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (status, len(body), body))

    @property
    def url(self) -> str:
        return self.backend.url

    @property
    def requests(self) -> List[RawRequest]:
        return [r for c in list(self.backend.connections) for r in c.requests]

    def stop(self) -> None:
        self.backend.stop()


# --- MCP sessions ---------------------------------------------------------------------


def post(daemon: Daemon, path: str, body: bytes,
         headers: Optional[Dict[str, str]] = None) -> Tuple[int, Any, bytes]:
    """
    One JSON POST, outside any session.
    """
    sent = {"Accept": ACCEPT, "Content-Type": "application/json"}
    sent.update(headers or {})
    return http("POST", daemon.gateway + path, raw=body, headers=sent)


class Streamable:
    """
    A streamable HTTP session (2025-03-26) through the gateway, with raw
    POST bodies.
    """

    def __init__(self, daemon: Daemon, path: str, headers: Optional[Dict[str, str]] = None) -> None:
        self.url = daemon.gateway + path
        self.headers = dict(headers or {})
        status, answer, body = self.post(json.dumps(INITIALIZE).encode())
        assert status == 200, body
        self.headers.update({"Mcp-Session-Id": answer["mcp-session-id"],
                             "MCP-Protocol-Version": "2025-03-26"})
        status, _, body = self.post(json.dumps(INITIALIZED).encode())
        assert status == 202, body

    def post(self, body: bytes, content_type: Optional[str] = "application/json",
             headers: Optional[Dict[str, str]] = None) -> Tuple[int, Any, bytes]:
        sent = dict(self.headers, Accept=ACCEPT, **(headers or {}))
        if content_type is not None:
            sent["Content-Type"] = content_type
        return http("POST", self.url, raw=body, headers=sent)


class Legacy:
    """
    A legacy HTTP+SSE session (2024-11-05) through the gateway: the GET
    stream, read event by event, and POSTs to the endpoint it names.
    """

    def __init__(self, daemon: Daemon, path: str, timeout: float = 15.0) -> None:
        self.daemon = daemon
        self.connection = HTTPConnection("127.0.0.1", daemon.ports["gateway"][0],
                                                     timeout=timeout)
        self.connection.request("GET", path + "/sse", headers={"Accept": "text/event-stream"})
        self.stream = self.connection.getresponse()
        assert self.stream.status == 200
        kind, data = self._event()
        assert kind == "endpoint", (kind, data)
        self.endpoint = data  # absolute URL at the gateway
        status, body = self.post(json.dumps(INITIALIZE).encode())
        assert status == 202, body
        assert self.until(0)[-1]["result"]["serverInfo"]
        status, body = self.post(json.dumps(INITIALIZED).encode())
        assert status == 202, body

    def _event(self) -> Tuple[str, str]:
        kind, data = "message", []
        while True:
            line = self.stream.readline()
            assert line, "the SSE stream ended"
            text = line.decode("utf-8").rstrip("\r\n")
            if not text:
                if data:
                    return kind, "\n".join(data)
                continue
            field, _, value = text.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                kind = value
            elif field == "data":
                data.append(value)

    def post(self, body: bytes, content_type: Optional[str] = "application/json",
             headers: Optional[Dict[str, str]] = None) -> Tuple[int, bytes]:
        sent = dict(headers or {})
        if content_type is not None:
            sent["Content-Type"] = content_type
        status, _, answer = http("POST", self.endpoint, raw=body, headers=sent)
        return status, answer

    def until(self, id: Any) -> List[Dict[str, Any]]:
        """
        The messages the stream carries up to the answer with C{id}.
        """
        seen = []
        while True:
            kind, data = self._event()
            if kind != "message":
                continue
            message = json.loads(data)
            seen.append(message)
            if message.get("id") == id and ("result" in message or "error" in message):
                return seen

    def close(self) -> None:
        self.connection.close()


def exchange_log(daemon: Daemon, api_id: str, query: str = "") -> List[Dict[str, Any]]:
    """
    The API's exchange log records (the daemon is restarted so every
    record is written).
    """
    daemon.stop()
    daemon.start()
    status, page = daemon.admin("GET", f"/apis/{api_id}/logs?limit=500{query}")
    assert status == 200, page
    return page["data"]

