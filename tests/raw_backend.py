"""
A loopback HTTP/1.1 backend on plain sockets, one thread per connection, for
tests of what the gateway does with backend connections: which connection a
request arrives on, what exactly is written back (extra bytes, hints), and
when the gateway closes a connection.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable, Dict, List, Optional

Respond = Callable[["RawConnection", "RawRequest"], None]


class RawRequest:
    def __init__(self, head: bytes, body: bytes) -> None:
        lines = head.split(b"\r\n")
        self.method, self.target, _ = lines[0].split(b" ", 2)
        self.headers: Dict[bytes, List[bytes]] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            self.headers.setdefault(name.strip().lower(), []).append(value.strip())
        self.body = body

    def header(self, name: bytes) -> Optional[bytes]:
        values = self.headers.get(name.lower())
        return values[0] if values else None


class RawConnection:
    """
    One accepted connection. C{peer_closed} is set, and C{closed_at} noted,
    when the gateway closes it.
    """

    def __init__(self, backend: "RawBackend", sock: socket.socket, index: int) -> None:
        self.backend = backend
        self.sock = sock
        self.index = index
        self.requests: List[RawRequest] = []
        self.peer_closed = threading.Event()
        self.closed_at: Optional[float] = None
        self.answered_at: Optional[float] = None
        self.done = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.answered_at = time.monotonic()

    def close(self) -> None:
        self.done = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _serve(self) -> None:
        buffer = b""
        try:
            while not self.done:
                while b"\r\n\r\n" not in buffer:
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        self._peer_closed()
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                request = RawRequest(head, b"")
                length = int(request.header(b"content-length") or b"0")
                while len(buffer) < length:
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        self._peer_closed()
                        return
                    buffer += chunk
                request.body, buffer = buffer[:length], buffer[length:]
                self.requests.append(request)
                self.backend.respond(self, request)
        except OSError:
            self._peer_closed()
        finally:
            self.sock.close()

    def _peer_closed(self) -> None:
        if not self.done:
            self.closed_at = time.monotonic()
            self.peer_closed.set()


class RawBackend:
    """
    Listens on 127.0.0.1, port 0; C{respond(connection, request)} answers
    each request (or not) with C{connection.send} and C{connection.close}.
    """

    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.connections: List[RawConnection] = []
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                conn = RawConnection(self, sock, len(self.connections))
                self.connections.append(conn)
            threading.Thread(target=conn._serve, daemon=True).start()

    def stop(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        for conn in list(self.connections):
            conn.close()
