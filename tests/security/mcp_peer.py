"""
A small MCP-ish backend for the security tests, on an ephemeral loopback
port, in a thread: it records each request's raw target (path and query as
sent) and headers, answers every JSON-RPC request (single or batch) with an
empty result, notifications with 202, and serves an RFC 7662 introspection
endpoint (C{POST /introspect}) from C{tokens}. C{challenge}, when set, makes
C{POST /mcp} answer 401 with that C{WWW-Authenticate} value instead.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional
from urllib.parse import parse_qs


class McpPeer:
    def __init__(self) -> None:
        self.targets: List[str] = []
        self.headers: List[Dict[str, str]] = []
        self.tokens: Dict[str, Dict[str, Any]] = {}
        self.challenge: Optional[List[str]] = None
        self.lock = threading.Lock()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, headers: Any = ()) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._send(404, b'{"error":"none"}')

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/introspect":
                    token = parse_qs(data.decode()).get("token", [""])[0]
                    with peer.lock:
                        answer = peer.tokens.get(token, {"active": False})
                    self._send(200, json.dumps(answer).encode())
                    return
                with peer.lock:
                    peer.targets.append(self.path)
                    peer.headers.append({k.lower(): v for k, v in self.headers.items()})
                    challenge = peer.challenge
                if challenge is not None:
                    self._send(401, b'{"error":"unauthorized"}',
                               [("WWW-Authenticate", value) for value in challenge])
                    return
                try:
                    message = json.loads(data)
                except ValueError:
                    self._send(400, b'{"error":"not json"}')
                    return
                messages = message if isinstance(message, list) else [message]
                answers = [{"jsonrpc": "2.0", "id": m["id"], "result": {}} for m in messages
                           if isinstance(m, dict) and m.get("id") is not None and "method" in m]
                if not answers:
                    self.send_response(202)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = answers if isinstance(message, list) else answers[0]
                self._send(200, json.dumps(body).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def last_target(self) -> str:
        with self.lock:
            return self.targets[-1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
