"""
Issue #14 item 12: what the admin API's traffic routes take, and what the
README and the OpenAPI document say about them.

C{/logs?errors=true} used to answer an unfiltered page as if the filter
applied; now a query parameter a route does not read is a 400 naming it (the
admin API's JSON error with C{field}), and so is an outcome no record can
have. The outcome lists of the OpenAPI document and the README are the
tracker's, complete; the README's configuration section documents every
section and key of C{[analytics]} and C{[daemon]}, and C{backendCaFile}.
"""

from __future__ import annotations

import re
from typing import Iterator, Tuple

import pytest

from mcpgated.admin.analytics import LOG_OUTCOMES, log_query, time_range
from mcpgated.admin.endpoint import HTTPError
from mcpgated.admin.openapi import openapi_document
from mcpgated.analytics.metrics import OUTCOMES
from mcpgated.config import _SCHEMA
from tests.admin_requests import AdminRequest
from tests.support import REPO, Daemon

NOW = 1_800_000_000.0
TRACKER_OUTCOMES = {o for o in OUTCOMES if o}


def _refused(call: object, **args: str) -> HTTPError:
    request = AdminRequest(method=b"GET", path=b"/logs", args=args)
    with pytest.raises(HTTPError) as caught:
        if call is time_range:
            time_range(request, NOW)
        else:
            log_query(request, None, NOW)
    assert caught.value.status == 400
    return caught.value


@pytest.mark.parametrize("args, field", [
    ({"errors": "true"}, "errors"),
    ({"outcome": "errors", "Limit": "5"}, "Limit"),  # names are case-sensitive, as the filters are
    ({"tools": "echo"}, "tools"),
    ({"method": "tools/call", "from ": "1"}, "from "),
    ({"api": "x"}, "api"),
    ({"outcome": "denyed"}, "outcome"),
    ({"outcome": "ERROR"}, "outcome"),
])
def test_logs_refuse_parameters_they_do_not_take(args, field) -> None:
    error = _refused(log_query, **args)
    assert error.field == field
    assert repr(field) in error.message or "outcome must be one of" in error.message


@pytest.mark.parametrize("args, field", [
    ({"errors": "true"}, "errors"), ({"outcome": "errors"}, "outcome"), ({"limit": "5"}, "limit"),
    ({"api": "x"}, "api"),
])
def test_analytics_take_the_time_range_only(args, field) -> None:
    assert _refused(time_range, **args).field == field


def test_every_outcome_and_every_known_parameter_is_taken() -> None:
    for outcome in sorted(LOG_OUTCOMES):
        query = log_query(AdminRequest(method=b"GET", path=b"/logs", args={
            "outcome": outcome, "method": "m", "tool": "t", "status": "200", "client": "c", "session": "s",
            "q": "x", "limit": "5", "cursor": "9", "from": "1", "to": "2"}), None, NOW)
        assert query.outcome == outcome
    assert time_range(AdminRequest(method=b"GET", path=b"/analytics", args={"last": "60"}), NOW) == (
        NOW - 60, NOW)


def test_openapi_and_readme_list_every_outcome() -> None:
    assert {"denied", "rate_limited", "unauthorized", "accepted", "forbidden", "bad_credentials",
            "bad_request", "unparsed"} <= TRACKER_OUTCOMES
    document = openapi_document()
    assert set(document["components"]["schemas"]["LogEntry"]["properties"]["outcome"]["enum"]) == (
        TRACKER_OUTCOMES | {None})
    for path in ("/logs", "/apis/{api_id}/logs"):
        (outcome,) = [p for p in document["paths"][path]["get"]["parameters"] if p["name"] == "outcome"]
        assert set(outcome["schema"]["enum"]) == TRACKER_OUTCOMES | {"errors"}
    readme = (REPO / "README.md").read_text()
    listed = re.search(r"tool/resource/prompt name, outcome \((.*?)\), HTTP status", readme, re.S)
    assert listed, "the README's exchange log paragraph lists the outcomes"
    assert set(re.findall(r"`([a-z_]+)`", listed.group(1))) == TRACKER_OUTCOMES


def test_readme_configuration_documents_analytics_daemon_and_backend_ca_file() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    for name in _SCHEMA:
        assert f"`[{name}]`" in section, name
    for name in ("analytics", "daemon"):
        for key in _SCHEMA[name]:
            assert f"`[{name}] {key}`" in section, (name, key)
    assert '"backendCaFile"' in section and "private CA" in section


@pytest.fixture(scope="module")
def daemon_with_api(tmp_path_factory) -> Iterator[Tuple[Daemon, str]]:
    daemon = Daemon(tmp_path_factory.mktemp("params")).start()
    status, api = daemon.admin("POST", "/apis", {
        "name": "P", "version": "1", "contextPath": "/p", "backend": "http://127.0.0.1:1/mcp",
        "plans": [{"name": "Keyless", "security": "KEY_LESS"}]})
    assert status == 201, api
    yield daemon, api["id"]
    daemon.stop()


def test_a_real_daemon_answers_400_naming_the_parameter(daemon_with_api) -> None:
    daemon, api_id = daemon_with_api
    for path, field in [("/logs?errors=true", "errors"), (f"/apis/{api_id}/logs?errors=true", "errors"),
                        ("/analytics?outcome=errors", "outcome"), (f"/apis/{api_id}/analytics?tool=x", "tool"),
                        ("/logs?outcome=denyed", "outcome"), (f"/apis/{api_id}/logs/1?full=1", "full")]:
        status, body = daemon.admin("GET", path)
        assert (status, body["field"]) == (400, field), (path, body)
        assert isinstance(body["error"], str) and field in body["error"]
    for path in ("/logs?outcome=errors&limit=5", f"/apis/{api_id}/logs?outcome=denied",
                 "/analytics?last=60", f"/apis/{api_id}/analytics?from=1&to=2"):
        status, body = daemon.admin("GET", path)
        assert status == 200, (path, body)
