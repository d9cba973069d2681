"""
The daemon as an operator runs it: twistd -n, port-0 listeners, the admin
API over HTTP, restarts.
"""

from __future__ import annotations

import json

from tests.support import Daemon, http


def test_create_deploy_restart_keeps_api_live(tmp_path, everything):
    daemon = Daemon(tmp_path).start()
    api_id = daemon.deploy(f"http://127.0.0.1:{everything}/mcp")
    status, _, body = http("POST", daemon.gateway + "/mcp-proxy",
                           {"jsonrpc": "2.0", "id": 1, "method": "ping"},
                           {"Accept": "application/json, text/event-stream"})
    assert status in (200, 400), body  # reached the backend (its answer, not ours)
    assert b"No MCP API" not in body
    assert daemon.stop() == -15  # twistd re-raises SIGTERM after a clean shutdown
    assert any("Main loop terminated" in line for line in daemon.proc.output)

    daemon.start()
    status, api = daemon.admin("GET", f"/apis/{api_id}")
    assert status == 200
    assert api["state"] == "STARTED"
    assert api["deploymentState"] == "DEPLOYED"
    status, _, body = http("POST", daemon.gateway + "/mcp-proxy",
                           {"jsonrpc": "2.0", "id": 1, "method": "ping"},
                           {"Accept": "application/json, text/event-stream"})
    assert b"No MCP API" not in body
    daemon.stop()


def test_unknown_path_is_jsonrpc_404(daemon):
    status, headers, body = http("POST", daemon.gateway + "/nowhere",
                                 {"jsonrpc": "2.0", "id": 42, "method": "tools/list"})
    assert status == 404
    assert headers["Content-Type"] == "application/json"
    message = json.loads(body)
    assert message["jsonrpc"] == "2.0" and message["id"] == 42
    assert "/nowhere" in message["error"]["message"]
