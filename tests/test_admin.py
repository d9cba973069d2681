"""
The admin HTTP API against a real daemon: CRUD, deploy/stop/start changing
the gateway's routing at once, edits of live APIs waiting for _deploy,
bearer-token auth, refused bodies, /health and /openapi.json.
"""

from __future__ import annotations

import json
import re
import socket
import stat
import uuid
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from mcpgated.admin.api import AdminAPI
from mcpgated.admin.openapi import openapi_document
from tests.daemon_helpers import (
    ACCEPT,
    INITIALIZE,
    UNREACHABLE,
    action,
    all_apis,
    assert_not_routed,
    assert_routed,
    create,
    definition,
    set_options,
)
from tests.support import Daemon, http


# --- CRUD ---------------------------------------------------------------------------


def test_create_read_update_delete(daemon):
    assert all_apis(daemon) == []
    status, headers, data = http(
        "POST", daemon.admin_url + "/apis",
        definition("/crud", description="first", name="Crud"),
        {"Authorization": f"Bearer {daemon.token}"})
    assert status == 201
    assert headers["Content-Type"] == "application/json"
    api = json.loads(data)
    assert headers["Location"] == f"/apis/{api['id']}"
    assert api["name"] == "Crud" and api["description"] == "first"
    assert api["contextPath"] == "/crud"
    assert api["plans"] == [{"name": "Keyless", "security": "KEY_LESS", "status": "PUBLISHED",
                             "description": ""}]
    assert (api["state"], api["deploymentState"], api["needsRedeploy"]) == \
        ("STOPPED", "NEVER_DEPLOYED", False)
    assert api["deployed"] is None and api["deployedAt"] is None

    assert daemon.admin("GET", f"/apis/{api['id']}") == (200, api)
    assert all_apis(daemon) == [api]

    # A GET body, edited, can be PUT back (read-only fields are ignored);
    # a trailing slash on the context path is dropped.
    edited = dict(api, name="Crud v2", contextPath="/crud-2/")
    status, updated = daemon.admin("PUT", f"/apis/{api['id']}", edited)
    assert status == 200, updated
    assert updated["name"] == "Crud v2" and updated["contextPath"] == "/crud-2"
    assert updated["id"] == api["id"] and updated["createdAt"] == api["createdAt"]
    assert daemon.admin("GET", f"/apis/{api['id']}") == (200, updated)

    other = create(daemon, definition("/other"))
    assert [a["id"] for a in all_apis(daemon)] == [api["id"], other["id"]]

    assert daemon.admin("DELETE", f"/apis/{api['id']}") == (204, None)
    assert daemon.admin("GET", f"/apis/{api['id']}")[0] == 404
    assert [a["id"] for a in all_apis(daemon)] == [other["id"]]


# --- deploy / stop / start change the routing at once ----------------------------------


def test_deploy_stop_start_route_at_once_and_survive_restart(tmp_path, everything):
    backend = f"http://127.0.0.1:{everything}/mcp"
    daemon = Daemon(tmp_path).start()
    try:
        api = create(daemon, definition("/live", backend))
        assert_not_routed(daemon, "/live")  # created, not deployed

        deployed = action(daemon, api["id"], "_deploy")
        assert (deployed["state"], deployed["deploymentState"]) == ("STARTED", "DEPLOYED")
        assert deployed["deployed"]["contextPath"] == "/live"
        assert_routed(daemon, "/live")
        assert_routed(daemon, "/live/")  # below the context path too
        assert_not_routed(daemon, "/live-not")  # whole segments only
        assert daemon.admin("GET", "/health")[1]["apisStarted"] == 1

        assert action(daemon, api["id"], "_stop")["state"] == "STOPPED"
        assert_not_routed(daemon, "/live")
        assert action(daemon, api["id"], "_start")["state"] == "STARTED"
        assert_routed(daemon, "/live")

        second = create(daemon, definition("/parked", backend))
        action(daemon, second["id"], "_deploy")
        action(daemon, second["id"], "_stop")
        assert_not_routed(daemon, "/parked")

        assert daemon.stop() == -15
        daemon.start()
        assert_routed(daemon, "/live")
        assert_not_routed(daemon, "/parked")
        status, body = daemon.admin("GET", f"/apis/{second['id']}")
        assert (body["state"], body["deploymentState"]) == ("STOPPED", "DEPLOYED")

        assert action(daemon, api["id"], "_stop")["state"] == "STOPPED"
        assert daemon.admin("DELETE", f"/apis/{api['id']}") == (204, None)
        assert_not_routed(daemon, "/live")
    finally:
        daemon.stop()


def test_editing_a_live_api_changes_nothing_until_deploy(tmp_path, everything):
    backend = f"http://127.0.0.1:{everything}/mcp"
    daemon = Daemon(tmp_path).start()
    try:
        api = action(daemon, create(daemon, definition("/v1", backend))["id"], "_deploy")
        status, edited = daemon.admin("PUT", f"/apis/{api['id']}",
                                      definition("/v2", UNREACHABLE, name="Moved"))
        assert status == 200, edited
        assert (edited["contextPath"], edited["backend"]) == ("/v2", UNREACHABLE)
        assert (edited["state"], edited["deploymentState"], edited["needsRedeploy"]) == \
            ("STARTED", "NEED_REDEPLOY", True)
        assert edited["deployed"]["contextPath"] == "/v1"
        assert edited["deployed"]["backend"] == backend

        # The gateway still serves the deployed definition, also after a restart.
        assert_routed(daemon, "/v1")
        assert_not_routed(daemon, "/v2")
        assert daemon.stop() == -15
        daemon.start()
        assert_routed(daemon, "/v1")
        assert_not_routed(daemon, "/v2")

        redeployed = action(daemon, api["id"], "_deploy")
        assert (redeployed["deploymentState"], redeployed["needsRedeploy"]) == ("DEPLOYED", False)
        assert_not_routed(daemon, "/v1")
        status, _, body = http("POST", daemon.gateway + "/v2", INITIALIZE, ACCEPT)
        assert status == 502, body  # now relayed to the new, unreachable backend
        assert "unreachable" in json.loads(body)["error"]["message"]
    finally:
        daemon.stop()


# --- authentication ----------------------------------------------------------------------


def _example_path(rule: str, api_id: str = "some-id") -> str:
    """
    A concrete path for a Klein route (or an OpenAPI path template).
    """
    path = re.sub(r"<int:\w+>|{log_id}", "1", rule)
    path = re.sub(r"<(?:\w+:)?api_id>|{api_id}", api_id, path)
    return re.sub(r"<(?:\w+:)?\w+>|{\w+}", "some-id", path)


def _authenticated_routes() -> List[Tuple[str, str]]:
    """
    Every Klein route but those documented as open (C{security: []}).
    """
    document = openapi_document()
    routes = []
    for rule in AdminAPI.app.url_map.iter_rules():
        template = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            operation = document["paths"].get(template, {}).get(method.lower(), {})
            if operation.get("security", document["security"]) != []:
                routes.append((method, rule.rule))
    return routes


def test_every_route_but_the_open_ones_needs_the_token(tmp_path):
    token = f"tok-{uuid.uuid4().hex}"
    daemon = Daemon(tmp_path, token=token)
    set_options(daemon, "logging", level="debug")
    daemon.start()
    try:
        api = create(daemon, definition("/guarded"))
        before = all_apis(daemon)
        wrong = f"wrong-{uuid.uuid4().hex}"
        routes = _authenticated_routes()
        assert {("GET", "/apis"), ("POST", "/apis"), ("GET", "/apis/<string:api_id>"),
                ("PUT", "/apis/<string:api_id>"), ("DELETE", "/apis/<string:api_id>"),
                ("POST", "/apis/<string:api_id>/_deploy"),
                ("POST", "/apis/<string:api_id>/_start"),
                ("POST", "/apis/<string:api_id>/_stop")} <= set(routes)
        assert not {path for _, path in routes} & {"/health", "/openapi.json"}
        for method, rule in routes:
            path = _example_path(rule, api["id"])
            body = definition("/changed") if method in ("POST", "PUT") else None
            for headers in ({}, {"Authorization": f"Bearer {wrong}"},
                            {"Authorization": f"Basic {token}"},
                            {"Authorization": "Bearer"},
                            {"Authorization": f"Bearer {token}x"}):
                status, response_headers, data = http(method, daemon.admin_url + path, body,
                                                      headers)
                assert status == 401, (method, path, headers, data)
                assert response_headers["WWW-Authenticate"].startswith("Bearer")
                assert json.loads(data)["error"].startswith("missing or wrong admin token")
        assert all_apis(daemon) == before  # nothing was changed

        for path in ("/health", "/openapi.json"):
            status, _, _ = http("GET", daemon.admin_url + path)
            assert status == 200
        # The token also works in lower case "bearer".
        status, _ = daemon.admin("GET", "/apis", headers={"Authorization": f"bearer {token}"})
        assert status == 200
    finally:
        daemon.stop()
    logged = "\n".join(daemon.proc.output)
    for path in (tmp_path / "log").iterdir():
        logged += path.read_text()
    assert "Received SIGTERM" in logged  # the logs were written ...
    assert token not in logged  # ... without the token
    assert wrong not in logged
    assert "Bearer" not in logged


def test_generated_token_is_private_and_not_logged(tmp_path):
    daemon = Daemon(tmp_path, token="")
    daemon.start()
    try:
        token_file = tmp_path / "data" / "admin.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 32
        assert daemon.admin("GET", "/apis", token=token) == (200, {"data": []})
        status, _ = daemon.admin("GET", "/apis", token="anything-else")
        assert status == 401
    finally:
        daemon.stop()
    output = "\n".join(daemon.proc.output)
    assert f"generated one in {token_file}" in output
    assert token not in output
    assert token not in (tmp_path / "log" / "mcpgated.log").read_text()
    # The same token is kept across restarts.
    daemon.start()
    try:
        assert daemon.admin("GET", "/apis", token=token)[0] == 200
    finally:
        daemon.stop()


# --- bad input -----------------------------------------------------------------------------

_PLAN = {"name": "Keyless", "security": "KEY_LESS"}


def _with(**changes: Any) -> Dict[str, Any]:
    body = definition("/fresh")
    for key, value in changes.items():
        if value is _MISSING:
            body.pop(key)
        else:
            body[key] = value
    return body


_MISSING = object()

# (label, JSON body or raw bytes, expected status, expected "field")
BAD_BODIES: List[Tuple[str, Any, int, Optional[str]]] = [
    ("malformed JSON", b'{"name": "x",', 400, None),
    ("not JSON at all", b"name=x&version=1", 400, None),
    ("empty body", b"", 400, None),
    ("not UTF-8", b'{"name": "\xff\xfe"}', 400, None),
    ("deeply nested", b"[" * 100_000, 400, None),
    ("JSON null", b"null", 400, None),
    ("JSON array", [definition("/fresh")], 400, None),
    ("JSON string", "hello", 400, None),
    ("empty object", {}, 400, "name"),
    ("unknown field", _with(colour="blue"), 400, "colour"),
    ("missing name", _with(name=_MISSING), 400, "name"),
    ("blank name", _with(name="   "), 400, "name"),
    ("name not a string", _with(name=42), 400, "name"),
    ("name too long", _with(name="n" * 101), 400, "name"),
    ("name with control characters", _with(name="a\x00b"), 400, "name"),
    ("missing version", _with(version=_MISSING), 400, "version"),
    ("description not a string", _with(description=["x"]), 400, "description"),
    ("missing contextPath", _with(contextPath=_MISSING), 400, "contextPath"),
    ("relative contextPath", _with(contextPath="mcp"), 400, "contextPath"),
    ("contextPath not a string", _with(contextPath=7), 400, "contextPath"),
    ("contextPath /", _with(contextPath="/"), 400, "contextPath"),
    ("contextPath with ..", _with(contextPath="/a/../b"), 400, "contextPath"),
    ("contextPath ending in ..", _with(contextPath="/a/.."), 400, "contextPath"),
    ("contextPath with encoded ..", _with(contextPath="/a/%2E%2e/b"), 400, "contextPath"),
    ("contextPath with .", _with(contextPath="/./a"), 400, "contextPath"),
    ("contextPath with query", _with(contextPath="/a?x=1"), 400, "contextPath"),
    ("contextPath with empty query", _with(contextPath="/a?"), 400, "contextPath"),
    ("contextPath with fragment", _with(contextPath="/a#top"), 400, "contextPath"),
    ("contextPath with //", _with(contextPath="//a"), 400, "contextPath"),
    ("contextPath with space", _with(contextPath="/a b"), 400, "contextPath"),
    ("contextPath .well-known", _with(contextPath="/.well-known/x"), 400, "contextPath"),
    ("contextPath equal to a deployed one", _with(contextPath="/taken/api"), 400,
     "contextPath"),
    ("contextPath equal after normalising", _with(contextPath="/taken/api/"), 400,
     "contextPath"),
    ("contextPath under a deployed one", _with(contextPath="/taken/api/v2"), 400,
     "contextPath"),
    ("contextPath above a deployed one", _with(contextPath="/taken"), 400, "contextPath"),
    ("contextPath above a stopped deployed one", _with(contextPath="/parked"), 400,
     "contextPath"),
    ("missing backend", _with(backend=_MISSING), 400, "backend"),
    ("backend not http", _with(backend="ftp://example.com/mcp"), 400, "backend"),
    ("backend without host", _with(backend="http:///mcp"), 400, "backend"),
    ("backend not a URL", _with(backend="localhost:3001"), 400, "backend"),
    ("backend with credentials", _with(backend="http://u:p@example.com/mcp"), 400, "backend"),
    ("backend with bad port", _with(backend="http://example.com:99999/mcp"), 400, "backend"),
    ("backend with fragment", _with(backend="http://example.com/mcp#x"), 400, "backend"),
    ("backend with ..", _with(backend="http://example.com/a/../mcp"), 400, "backend"),
    ("missing plans", _with(plans=_MISSING), 400, "plans"),
    ("no plans", _with(plans=[]), 400, "plans"),
    ("plans not a list", _with(plans=_PLAN), 400, "plans"),
    ("plan not an object", _with(plans=["Keyless"]), 400, "plans[0]"),
    ("plan without security", _with(plans=[{"name": "Keyless"}]), 400, "plans[0].security"),
    ("plan with unknown security", _with(plans=[{"name": "K", "security": "MAGIC"}]), 400,
     "plans[0].security"),
    ("JWT plan without an issuer", _with(plans=[{"name": "K", "security": "JWT"}]), 400,
     "plans[0].configuration.issuer"),
    ("plan with unknown field", _with(plans=[dict(_PLAN, rate=5)]), 400, "plans[0].rate"),
    ("plan with bad status", _with(plans=[dict(_PLAN, status="LIVE")]), 400,
     "plans[0].status"),
    ("duplicate plan names", _with(plans=[_PLAN, dict(_PLAN, name="keyless")]), 400,
     "plans[1].name"),
    ("no published plan", _with(plans=[dict(_PLAN, status="STAGING")]), 400, "plans"),
    ("wrong content type", b'{"name": "x"}', 415, None),
]


@pytest.fixture(scope="module")
def crowded(tmp_path_factory) -> Iterator[Daemon]:
    """
    One daemon for the tests that change nothing (or only add APIs away
    from the others): a started API at /taken/api, a stopped deployed one
    at /parked/api and a never-deployed one at /draft, named "Draft".
    """
    daemon = Daemon(tmp_path_factory.mktemp("crowded")).start()
    taken = create(daemon, definition("/taken/api"))
    action(daemon, taken["id"], "_deploy")
    parked = create(daemon, definition("/parked/api"))
    action(daemon, parked["id"], "_deploy")
    action(daemon, parked["id"], "_stop")
    create(daemon, definition("/draft", name="Draft"))
    yield daemon
    daemon.stop()


def _draft(daemon: Daemon) -> Dict[str, Any]:
    (draft,) = [api for api in all_apis(daemon) if api["name"] == "Draft"]
    return draft


def _send(daemon: Daemon, method: str, path: str, body: Any, label: str) -> Tuple[int, Any]:
    headers = {"Content-Type": "text/plain"} if label == "wrong content type" else None
    if isinstance(body, bytes):
        return daemon.admin(method, path, raw=body, headers=headers)
    return daemon.admin(method, path, raw=json.dumps(body).encode(), headers=headers)


def test_bad_bodies_are_refused_and_change_nothing(crowded):
    daemon = crowded
    before = all_apis(daemon)
    draft = _draft(daemon)["id"]
    answers = {}
    for label, body, _, _ in BAD_BODIES:
        answers[label, "POST"] = _send(daemon, "POST", "/apis", body, label)
        answers[label, "PUT"] = _send(daemon, "PUT", f"/apis/{draft}", body, label)
    wrong = []
    for label, _, status, field in BAD_BODIES:
        for method in ("POST", "PUT"):
            got_status, got = answers[label, method]
            if (got_status, sorted(got or {}), (got or {}).get("field")) != \
                    (status, ["error", "field"], field) or not got["error"]:
                wrong.append((method, label, got_status, got))
    assert wrong == []
    assert all_apis(daemon) == before


def test_bodies_over_1_mb_are_refused_unread(crowded):
    """
    The declared length alone is enough to refuse (413) and close; the
    body is never sent, let alone buffered.
    """
    daemon = crowded
    before = all_apis(daemon)
    for method, path in (("POST", "/apis"), ("PUT", "/apis/some-id")):
        with socket.create_connection(("127.0.0.1", daemon.ports["admin"][0]), 30) as s:
            s.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Authorization: Bearer {daemon.token}\r\n"
                      "Content-Type: application/json\r\n"
                      f"Content-Length: {1024 * 1024 + 1}\r\n\r\n".encode())
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413 "), answer
        assert json.loads(body) == {"error": "request body is larger than 1 MB", "field": None}
    assert all_apis(daemon) == before


def test_put_refuses_an_id_that_is_not_the_urls(crowded):
    before = all_apis(crowded)
    draft = _draft(crowded)
    status, body = crowded.admin("PUT", f"/apis/{draft['id']}", dict(draft, id="other"))
    assert (status, body["field"]) == (400, "id")
    assert all_apis(crowded) == before


def test_paths_that_only_look_alike_do_not_collide(crowded):
    for path in ("/taken/api-2", "/taken-api", "/parked/apis", "/draft"):
        status, body = crowded.admin("POST", "/apis", definition(path))
        assert status == 201, (path, body)


def test_unknown_ids_are_404(crowded):
    daemon = crowded
    before = all_apis(daemon)
    missing = str(uuid.uuid4())
    for method, path, body in [
        ("GET", f"/apis/{missing}", None),
        ("PUT", f"/apis/{missing}", definition("/x")),
        ("DELETE", f"/apis/{missing}", None),
        ("POST", f"/apis/{missing}/_deploy", None),
        ("POST", f"/apis/{missing}/_start", None),
        ("POST", f"/apis/{missing}/_stop", None),
    ]:
        assert daemon.admin(method, path, body) == \
            (404, {"error": "no API with this id", "field": "id"}), (method, path)
    status, body = daemon.admin("GET", "/nothing-here")
    assert status == 404 and "openapi.json" in body["error"]
    status, body = daemon.admin("PATCH", "/apis")
    assert status == 405 and body["error"]
    assert all_apis(daemon) == before


def test_conflicts_are_409_and_change_nothing(daemon):
    live = create(daemon, definition("/live"))
    never = create(daemon, definition("/live"))  # allowed while neither is deployed
    action(daemon, live["id"], "_deploy")
    before = all_apis(daemon)

    cases = [
        ("DELETE", f"/apis/{live['id']}", "state"),  # STARTED: stop it first
        ("POST", f"/apis/{never['id']}/_deploy", "contextPath"),  # /live is taken
        ("POST", f"/apis/{never['id']}/_start", "state"),  # never deployed
        ("POST", f"/apis/{never['id']}/_stop", "state"),  # never deployed
    ]
    for method, path, field in cases:
        status, body = daemon.admin(method, path)
        assert (status, body["field"]) == (409, field), (method, path, body)
        assert body["error"]
    assert all_apis(daemon) == before

    # Stopped, /live still belongs to the first API until it is deleted.
    action(daemon, live["id"], "_stop")
    status, body = daemon.admin("POST", f"/apis/{never['id']}/_deploy")
    assert (status, body["field"]) == (409, "contextPath")
    assert daemon.admin("DELETE", f"/apis/{live['id']}") == (204, None)
    assert action(daemon, never["id"], "_deploy")["state"] == "STARTED"


# --- /health and /openapi.json -------------------------------------------------------------


def test_health_needs_no_token(crowded):
    # without the token: the status only (no version or APIs for strangers)
    status, headers, data = http("GET", crowded.admin_url + "/health")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(data) == {"status": "ok"}
    # with it: what runs
    status, body = crowded.admin("GET", "/health")
    assert status == 200 and body["status"] == "ok" and body["apisStarted"] == 1
    from mcpgated import __version__
    assert body["version"] == __version__


def _klein_routes() -> set:
    routes = set()
    for rule in AdminAPI.app.url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((method.lower(), path))
    return routes


def _resolve(document: Dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_openapi_document_matches_the_routes(crowded):
    daemon = crowded
    status, headers, data = http("GET", daemon.admin_url + "/openapi.json")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    document = json.loads(data)
    assert document["openapi"].startswith("3.1")
    assert document["info"]["title"] and document["info"]["version"]

    documented = {(method, path) for path, item in document["paths"].items()
                  for method in item if method in ("get", "put", "post", "delete", "patch")}
    assert documented == _klein_routes()

    refs: List[str] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(document)
    for ref in refs:
        assert _resolve(document, ref) is not None

    public = {"/health", "/openapi.json"}
    for method, path in sorted(documented):
        operation = document["paths"][path][method]
        # Path parameters are declared.
        names = set(re.findall(r"{(\w+)}", path))
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == names, (method, path)
        # Security as documented is security as enforced.
        open_route = operation.get("security", document["security"]) == []
        assert open_route == (path in public), (method, path)
        responses = set(operation["responses"])
        if not open_route:
            assert "401" in responses, (method, path)
        if "{api_id}" in path:
            assert "404" in responses, (method, path)
        url = daemon.admin_url + _example_path(path)
        status, _, _ = http(method.upper(), url,
                            definition("/x") if method in ("post", "put") else None)
        assert (status == 401) == (not open_route), (method, path, status)
