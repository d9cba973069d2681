"""
Helpers for the edge security tests (tests/security/test_edge_*.py): a real
daemon per HTTP server (C{[gateway] http = fast | twisted}) in front of a
recording raw backend, and a blocking raw client with deadlines.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

from tests.contract.harness import Response, parse_head, parse_responses
from tests.daemon_helpers import set_options
from tests.raw_backend import RawBackend, RawConnection, RawRequest
from tests.support import Daemon

SERVERS = ("fast", "twisted")
JSON_OK = b'{"jsonrpc":"2.0","id":1,"result":{}}'
CALL = b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}'


def start_daemon(folder: Path, server: str, **limits: str) -> Daemon:
    """
    A daemon whose gateway listener runs on C{server}, with C{[limits]} keys.
    """
    daemon = Daemon(folder)
    set_options(daemon, "gateway", http=server)
    if limits:
        set_options(daemon, "limits", **limits)
    return daemon.start()


def daemons(tmp_path_factory: Any, server: str, **limits: str) -> Iterator[Daemon]:
    daemon = start_daemon(tmp_path_factory.mktemp(f"edge-{server}"), server, **limits)
    yield daemon
    daemon.stop_if_running()


def answer_json(connection: RawConnection, request: RawRequest) -> None:
    connection.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(JSON_OK), JSON_OK))


class Recording:
    """
    A raw backend answering every request with a small JSON body, keeping
    the requests it got.
    """

    def __init__(self) -> None:
        self.backend = RawBackend(answer_json)

    @property
    def requests(self) -> List[RawRequest]:
        return [r for c in list(self.backend.connections) for r in c.requests]

    def stop(self) -> None:
        self.backend.stop()


class Client:
    """
    A blocking raw TCP client to the gateway; every read has a deadline.
    """

    def __init__(self, daemon: Daemon) -> None:
        self.sock = socket.create_connection(("127.0.0.1", daemon.ports["gateway"][0]), timeout=10)
        self.data = b""
        self.closed = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.data += chunk
        return True

    def responses(self, count: int, timeout: float = 10.0,
                  no_body: Tuple[bool, ...] = ()) -> List[Response]:
        deadline = time.monotonic() + timeout
        while True:
            found = parse_responses(self.data, count, no_body, self.closed)
            if found is not None:
                return found
            if self.closed or not self._read(deadline):
                raise AssertionError(f"no {count} responses in time (closed={self.closed}): "
                                     f"{self.data[:600]!r}")

    def head(self, timeout: float = 10.0) -> Tuple[int, Dict[str, List[str]], bytes]:
        """
        The first response head, and what came after it so far.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = parse_head(self.data)
            if found is not None:
                return found
            if self.closed or not self._read(deadline):
                raise AssertionError(f"no response head in time (closed={self.closed}): "
                                     f"{self.data[:600]!r}")

    def until_closed(self, timeout: float = 10.0) -> bytes:
        """
        Everything the server sent until it closed; fails past C{timeout}.
        """
        deadline = time.monotonic() + timeout
        while not self.closed:
            if not self._read(deadline) and not self.closed:
                raise AssertionError(f"still open after {timeout} s: {self.data[:600]!r}")
        return self.data

    def still_open_after(self, seconds: float) -> bool:
        """
        Whether the server neither sent anything nor closed for C{seconds}.
        """
        before = len(self.data)
        self._read(time.monotonic() + seconds)
        return not self.closed and len(self.data) == before

    def close(self) -> None:
        self.sock.close()


def refusal(response: Response, status: int) -> Dict[str, Any]:
    """
    Checks C{response} is the gateway's JSON-RPC refusal with C{status}.
    """
    assert response.code == status, (response.code, response.body[:300])
    message = json.loads(response.body)
    assert message["jsonrpc"] == "2.0"
    assert message["error"]["data"]["httpStatus"] == status
    return message
