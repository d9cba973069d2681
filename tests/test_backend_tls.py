"""
Backend TLS is verified (service-identity): an https backend with a
certificate from an unknown CA is refused with a JSON-RPC 502, and works
once the API names that CA in backendCaFile.
"""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support import http
from tests.test_tls import self_signed

ACCEPT = {"Accept": "application/json, text/event-stream"}


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer = json.dumps({"jsonrpc": "2.0", "id": body["id"], "result": {"tls": True}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def https_backend(tmp_path):
    key, cert = self_signed(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], cert
    server.shutdown()
    server.server_close()


def _api(port: int, path: str, ca_file=None) -> dict:
    api = {"name": "tls", "version": "1", "contextPath": path,
           "backend": f"https://localhost:{port}/mcp",
           "plans": [{"name": "Keyless", "security": "KEY_LESS"}]}
    if ca_file:
        api["backendCaFile"] = str(ca_file)
    return api


def test_unknown_ca_is_refused_and_backend_ca_file_trusts_it(daemon, https_backend):
    port, cert = https_backend
    for path, ca in (("/untrusted", None), ("/trusted", cert)):
        status, api = daemon.admin("POST", "/apis", _api(port, path, ca))
        assert status == 201, api
        assert daemon.admin("POST", f"/apis/{api['id']}/_deploy")[0] == 200
    call = {"jsonrpc": "2.0", "id": 11, "method": "ping"}

    status, headers, body = http("POST", daemon.gateway + "/untrusted", call, ACCEPT)
    assert status == 502
    message = json.loads(body)
    assert message["id"] == 11 and message["error"]["data"]["httpStatus"] == 502

    status, headers, body = http("POST", daemon.gateway + "/trusted", call, ACCEPT)
    assert status == 200
    assert json.loads(body) == {"jsonrpc": "2.0", "id": 11, "result": {"tls": True}}


def test_backend_ca_file_needs_https_and_an_absolute_path(daemon):
    status, error = daemon.admin("POST", "/apis", dict(_api(1, "/x", "relative.pem")))
    assert (status, error["field"]) == (400, "backendCaFile")
    plain = _api(1, "/y", "/etc/ca.pem")
    plain["backend"] = "http://localhost:1/mcp"
    status, error = daemon.admin("POST", "/apis", plain)
    assert (status, error["field"]) == (400, "backendCaFile")
