"""
Helpers shared by the admin, durability, log and TLS tests: API bodies,
admin calls that must succeed, and checks of what the gateway routes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Sequence

from tests.support import BIN, Daemon, http

ACCEPT = {"Accept": "application/json, text/event-stream"}
INITIALIZE = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "mcpgated-tests", "version": "1"}},
}
# Nothing listens on port 1: a gateway relaying there answers 502.
UNREACHABLE = "http://127.0.0.1:1/mcp"


def definition(context_path: str, backend: str = UNREACHABLE, name: str = "Everything",
               **extra: Any) -> Dict[str, Any]:
    body = {"name": name, "version": "1.0", "contextPath": context_path, "backend": backend,
            "plans": [{"name": "Keyless", "security": "KEY_LESS"}]}
    body.update(extra)
    return body


def create(daemon: Daemon, body: Dict[str, Any]) -> Dict[str, Any]:
    status, api = daemon.admin("POST", "/apis", body)
    assert status == 201, api
    return api


def action(daemon: Daemon, api_id: str, name: str) -> Dict[str, Any]:
    status, api = daemon.admin("POST", f"/apis/{api_id}/{name}")
    assert status == 200, api
    return api


def all_apis(daemon: Daemon) -> List[Dict[str, Any]]:
    status, body = daemon.admin("GET", "/apis")
    assert status == 200, body
    return body["data"]


def assert_routed(daemon: Daemon, path: str) -> None:
    """
    The gateway relays an MCP initialize at C{path} to server-everything.
    """
    status, _, body = http("POST", daemon.gateway + path, INITIALIZE, ACCEPT)
    assert status == 200, (status, body[:300])
    assert b"mcp-servers/everything" in body


def assert_not_routed(daemon: Daemon, path: str) -> None:
    """
    The gateway answers C{path} itself: a JSON-RPC error, HTTP 404.
    """
    status, _, body = http("POST", daemon.gateway + path, INITIALIZE, ACCEPT)
    assert status == 404, (status, body[:300])
    message = json.loads(body)
    assert message["id"] == 1
    assert message["error"]["message"] == f"No MCP API is deployed at {path}"


def set_options(daemon: Daemon, section: str, **options: str) -> None:
    """
    Add keys to a section of the daemon's INI file (before it starts).
    """
    text = daemon.ini.read_text()
    header = f"[{section}]\n"
    lines = "".join(f"{key} = {value}\n" for key, value in options.items())
    if header in text:
        text = text.replace(header, header + lines, 1)
    else:
        text += header + lines
    daemon.ini.write_text(text)


class TwistdDaemon(Daemon):
    """
    A L{Daemon} started with extra twistd options (before C{mcpgated}).
    """

    def __init__(self, folder: Path, twistd_options: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(folder, **kwargs)
        self.twistd_options = list(twistd_options)

    def command(self) -> List[str]:
        return [str(BIN / "twistd"), "-n", "--pidfile=", *self.twistd_options,
                "mcpgated", "-c", str(self.ini)]
