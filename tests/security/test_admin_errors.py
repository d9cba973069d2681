"""
The admin API answers what it cannot do with a JSON error naming the
cause, never a bare 500: paths that only match with their slashes merged
are 404s (not redirects), query values that are not numbers or do not fit
(a cursor past SQLite's 64-bit ids, Unicode digits, inf/nan) are 400s naming
the parameter, and a write the disk refuses is a 507 ("disk full"; 503 for
other storage failures) that changed nothing.

The full disk is real: the database lives on a small tmpfs the test mounts
(the suite runs as root) and fills. Other storage failures are injected.
"""

from __future__ import annotations

import errno
import json
import subprocess
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

import pytest
from treq.testing import StubTreq
from twisted.internet.defer import fail
from twisted.internet.task import Clock

from mcpgated.admin.api import AdminAPI
from mcpgated.routing import RouteTable
from mcpgated.store import Unavailable

from tests.daemon_helpers import (
    ACCEPT,
    INITIALIZE,
    UNREACHABLE,
    action,
    all_apis,
    create,
    definition,
)
from tests.support import Daemon, http


def _get(daemon: Daemon, path: str, method: str = "GET") -> Tuple[int, Any, Any]:
    status, headers, data = http(method, daemon.admin_url + path,
                                 headers={"Authorization": f"Bearer {daemon.token}"})
    return status, headers, json.loads(data) if data else None


def _assert_json_error(status: int, headers: Any, body: Any, expected: int,
                       field: Optional[str]) -> None:
    assert status == expected, (status, body)
    assert headers["Content-Type"] == "application/json"
    assert headers.get("Location") is None
    assert set(body) == {"error", "field"} and body["field"] == field, body
    assert body["error"] and "Traceback" not in body["error"]


@pytest.fixture(scope="module")
def admin(tmp_path_factory) -> Iterator[Tuple[Daemon, str]]:
    daemon = Daemon(tmp_path_factory.mktemp("admin-errors")).start()
    api = create(daemon, definition("/errors", backend=UNREACHABLE))
    yield daemon, api["id"]
    daemon.stop()


@pytest.mark.parametrize("path, method", [
    ("/apis//{id}", "GET"),
    ("/apis//{id}", "PUT"),
    ("/apis//{id}", "DELETE"),
    ("/apis/{id}//logs", "GET"),
    ("/apis//{id}/_deploy", "POST"),
    ("/apis/{id}//_stop", "POST"),
    ("/apis/{id}/subscriptions//x", "GET"),
    ("/applications//x", "DELETE"),
    ("/apis///{id}", "GET"),
    ("/logs//", "GET"),
])
def test_merged_slashes_are_not_found(admin, path, method):
    daemon, api_id = admin
    status, headers, body = _get(daemon, path.format(id=api_id), method)
    _assert_json_error(status, headers, body, 404, None)


@pytest.mark.parametrize("query, field", [
    ("cursor=99999999999999999999999", "cursor"),
    ("cursor=9223372036854775808", "cursor"),  # 2**63: one past SQLite's INTEGER
    ("cursor=-1", "cursor"),
    ("cursor=abc", "cursor"),
    ("cursor=1e3", "cursor"),
    ("cursor=1_0", "cursor"),
    ("cursor=%C2%B2", "cursor"),  # superscript two: isdigit(), but int() refuses it
    ("cursor=%D9%A3", "cursor"),  # an Arabic-Indic digit
    ("cursor=", "cursor"),
    ("limit=99999999999999999999999", "limit"),
    ("limit=%C2%B2", "limit"),
    ("limit=0", "limit"),
    ("limit=501", "limit"),
    ("status=99999999999999999999999", "status"),
    ("status=%C2%B2", "status"),
    ("status=99", "status"),
    ("status=600", "status"),
    ("from=inf", "from"),
    ("from=nan", "from"),
    ("to=1e999", "to"),
    ("to=-inf", "to"),
    ("last=nan", "last"),
])
@pytest.mark.parametrize("where", ["/logs", "/apis/{id}/logs"])
def test_query_values_that_do_not_fit_are_400_naming_them(admin, query, field, where):
    daemon, api_id = admin
    status, headers, body = _get(daemon, where.format(id=api_id) + "?" + query)
    _assert_json_error(status, headers, body, 400, field)


@pytest.mark.parametrize("query, field", [("from=nan", "from"), ("to=inf", "to"),
                                          ("from=-inf", "from")])
@pytest.mark.parametrize("where", ["/analytics", "/apis/{id}/analytics"])
def test_analytics_ranges_that_are_not_times_are_400(admin, query, field, where):
    daemon, api_id = admin
    status, headers, body = _get(daemon, where.format(id=api_id) + "?" + query)
    _assert_json_error(status, headers, body, 400, field)


def test_valid_bounds_still_work(admin):
    daemon, api_id = admin
    for query in ("cursor=9223372036854775807", "cursor=0", "limit=500&status=599",
                  "limit=1&status=100", "from=0&to=1e12"):
        status, _, body = _get(daemon, "/logs?" + query)
        assert status == 200 and body["data"] == [], (query, body)


@pytest.mark.parametrize("log_id", ["99999999999999999999999", "9223372036854775808"])
def test_log_ids_past_the_largest_are_404(admin, log_id):
    daemon, api_id = admin
    status, headers, body = _get(daemon, f"/apis/{api_id}/logs/{log_id}")
    _assert_json_error(status, headers, body, 404, "logId")


# --- a full disk ----------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """
    A 1 MB tmpfs at C{tmp_path/data}, where the daemon keeps its database.
    """
    mount = tmp_path / "data"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount)],
                   check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def _fill(folder: Path) -> Path:
    """
    Fill the file system of C{folder} up (ENOSPC for real).
    """
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        chunk = b"\0" * 4096
        while True:
            try:
                f.write(chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC
                break
    return filler


def test_writes_on_a_full_disk_are_507_and_change_nothing(small_disk, tmp_path, everything):
    daemon = Daemon(tmp_path, extra="[analytics]\npath = data/analytics.db\n").start()
    try:
        kept = create(daemon, definition("/kept", backend=f"http://127.0.0.1:{everything}/mcp"))
        before = all_apis(daemon)
        filler = _fill(small_disk)

        writes = [
            ("POST", "/apis", definition("/refused")),
            ("PUT", f"/apis/{kept['id']}", dict(kept, name="renamed")),
            ("POST", f"/apis/{kept['id']}/_deploy", None),
            ("POST", "/applications", {"name": "app"}),
            ("DELETE", f"/apis/{kept['id']}", None),
        ]
        for method, path, body in writes:
            status, answer = daemon.admin(method, path, body)
            assert status == 507, (method, path, status, answer)
            assert "disk full" in answer["error"] and "nothing was changed" in answer["error"]
            assert answer["field"] is None
        # Reads still work, and show nothing changed; nothing is routed.
        assert all_apis(daemon) == before
        status, _, _ = http("POST", daemon.gateway + "/kept", INITIALIZE, ACCEPT)
        assert status == 404

        # Space again: the same writes go through (no transaction left open).
        filler.unlink()
        created = create(daemon, definition("/after"))
        action(daemon, kept["id"], "_deploy")
        status, _, _ = http("POST", daemon.gateway + "/kept", INITIALIZE, ACCEPT)
        assert status == 200
    finally:
        daemon.stop()
    output = "\n".join(daemon.proc.output)
    assert "database or disk is full" in output and "Traceback" not in output

    # What was acknowledged is there after a restart, and nothing else.
    daemon.start()
    try:
        paths = sorted(api["contextPath"] for api in all_apis(daemon))
        assert paths == ["/after", "/kept"]
        assert [a["state"] for a in all_apis(daemon) if a["id"] == kept["id"]] == ["STARTED"]
        assert created["id"] in {a["id"] for a in all_apis(daemon)}
    finally:
        daemon.stop()


class _RefusingStore:
    """
    A store whose writes fail as SQLite does when it cannot write (injected:
    a read-only or failing disk cannot be made without taking the file
    system away from a running daemon).
    """

    def __init__(self, error: Unavailable) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: fail(self.error)


@pytest.mark.parametrize("reason, full, expected", [
    ("attempt to write a readonly database", False, 503),
    ("disk I/O error", False, 503),
    ("database or disk is full", True, 507),
])
def test_store_failures_name_their_reason(reason, full, expected):
    routes = RouteTable()
    routes.load([])
    api = AdminAPI(_RefusingStore(Unavailable(reason, full)), routes, Clock(), token="t")
    stub = StubTreq(api.resource())
    answers: List[Any] = []
    for method, path, body in [("POST", "/apis", definition("/refused")),
                               ("DELETE", "/apis/some-id", None),
                               ("POST", "/applications", {"name": "app"})]:
        d = stub.request(method, "http://admin" + path,
                         data=json.dumps(body).encode() if body is not None else None,
                         headers={"Authorization": "Bearer t",
                                  "Content-Type": "application/json"})
        d.addCallback(lambda response: stub.json_content(response).addCallback(
            lambda parsed, code=response.code: answers.append((code, parsed))))
        stub.flush()
    assert len(answers) == 3
    for code, answer in answers:
        assert code == expected and answer["field"] is None, answer
        assert "nothing was changed" in answer["error"]
        assert ("disk full" in answer["error"]) if full else (reason in answer["error"])
