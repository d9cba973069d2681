"""
Issue #12, item 7 (admin API): every admin answer says
C{X-Content-Type-Options: nosniff} (JSON, errors, the metrics text), and
what a caller without the admin token learns is the liveness status only:
not the version (neither from C{/health} nor from C{/openapi.json}), not the
number of APIs.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from mcpgated import __version__
from tests.support import Daemon, http


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("admin-headers")).start()
    status, api = d.admin("POST", "/apis", {
        "name": "x", "version": "1", "contextPath": "/x", "backend": "http://127.0.0.1:1/mcp",
        "plans": [{"name": "Keyless", "security": "KEY_LESS"}]})
    assert status == 201
    d.api_id = api["id"]  # type: ignore[attr-defined]
    yield d
    d.stop()


def _answers(daemon: Daemon) -> List[Tuple[str, str, Optional[Dict[str, str]], Any, int]]:
    token = {"Authorization": f"Bearer {daemon.token}"}
    api_id = daemon.api_id  # type: ignore[attr-defined]
    return [
        ("GET", "/health", None, None, 200),
        ("GET", "/health", token, None, 200),
        ("GET", "/openapi.json", None, None, 200),
        ("GET", "/apis", token, None, 200),
        ("GET", f"/apis/{api_id}", token, None, 200),
        ("GET", "/apis", None, None, 401),
        ("GET", "/metrics", None, None, 401),
        ("GET", "/metrics", token, None, 200),
        ("GET", "/apis/nope", token, None, 404),
        ("GET", "/no-such-route", token, None, 404),
        ("PATCH", "/apis", token, None, 405),
        ("POST", "/apis", token, {"name": 3}, 400),
        ("POST", f"/apis/{api_id}/_start", token, None, 409),
        ("GET", "/logs?limit=0", token, None, 400),
        ("GET", "/gateway", token, None, 200),
    ]


def test_every_admin_answer_says_nosniff(daemon):
    for method, path, headers, body, expected in _answers(daemon):
        status, answer_headers, data = http(method, daemon.admin_url + path, body, headers)
        assert status == expected, (method, path, data[:200])
        assert answer_headers["X-Content-Type-Options"] == "nosniff", (method, path)
        if path != "/metrics" or status != 200:
            assert answer_headers["Content-Type"] == "application/json", (method, path)
            json.loads(data)


def test_health_without_the_token_is_the_status_only(daemon):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {daemon.token}"}):
        status, _, data = http("GET", daemon.admin_url + "/health", headers=headers)
        assert status == 200 and json.loads(data) == {"status": "ok"}, headers
    status, body = daemon.admin("GET", "/health")
    assert status == 200
    assert body == {"status": "ok", "version": __version__, "apisStarted": 0}


def test_the_public_openapi_document_does_not_tell_the_version(daemon):
    status, _, data = http("GET", daemon.admin_url + "/openapi.json")
    assert status == 200
    document = json.loads(data)
    assert document["info"]["version"] != __version__
    assert f'"{__version__}"' not in data.decode()
