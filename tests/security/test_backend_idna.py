"""
Backend URLs with a non-ASCII host (issue #11, item 11) used to pass
validation and then fail on every request. The host is now stored in its
IDNA form (UTS 46 mapping, IDNA 2008 per label), which is what the gateway
connects to, verifies TLS against and sends as C{Host}; a host that is not
valid IDNA is refused with a JSON error naming C{backend}. A non-ASCII path
or query is percent-encoded as UTF-8.
"""

from __future__ import annotations

import json
from typing import Iterator

import pytest

from mcpgated.definitions import InvalidField, definition_from_json, parse_definition
from mcpgated.proxy.backend_client import BackendClient
from mcpgated.proxy.resource import Backend
from tests.raw_backend import RawBackend, RawConnection, RawRequest
from tests.support import http
from tests.test_backend_client import ok

PLANS = [{"name": "Keyless", "security": "KEY_LESS"}]


def _body(backend: str, path: str = "/idna") -> dict:
    return {"name": "idna", "version": "1", "contextPath": path, "backend": backend,
            "plans": PLANS}


ENCODED = [
    ("http://bücher.example/mcp", "http://xn--bcher-kva.example/mcp"),
    ("http://BÜCHER.Example/mcp", "http://xn--bcher-kva.example/mcp"),
    ("https://bücher.example:8443/mcp", "https://xn--bcher-kva.example:8443/mcp"),
    ("http://bücher。example/mcp", "http://xn--bcher-kva.example/mcp"),  # ideographic full stop
    ("http://bücher．example/mcp", "http://xn--bcher-kva.example/mcp"),  # fullwidth full stop
    ("http://bücher｡example/mcp", "http://xn--bcher-kva.example/mcp"),  # halfwidth ideographic
    ("http://bücher.example./mcp", "http://xn--bcher-kva.example./mcp"),  # trailing root dot
    ("http://mcp.bücher.example/", "http://mcp.xn--bcher-kva.example/"),
    ("http://my_svc.bücher.example/", "http://my_svc.xn--bcher-kva.example/"),
    ("http://faß.de/mcp", "http://xn--fa-hia.de/mcp"),  # IDNA 2008: ß is kept, not "ss"
    ("http://例え.jp/mcp", "http://xn--r8jz45g.jp/mcp"),
    ("http://ｌｏｃａｌｈｏｓｔ:3001/mcp", "http://localhost:3001/mcp"),  # fullwidth Latin
    ("http://bücher.example/mcp/ü?q=é", "http://xn--bcher-kva.example/mcp/%C3%BC?q=%C3%A9"),
    ("http://localhost:3001/mcp/ü", "http://localhost:3001/mcp/%C3%BC"),
]

REFUSED = [
    "http://a\u200db.example/mcp",  # ZERO WIDTH JOINER outside its context
    "http://bü--cher.example/mcp",  # hyphens in 3rd and 4th position
    "http://-bücher.example/mcp",
    "http://bücher-.example/mcp",
    "http://💩.example/mcp",  # not allowed in IDNA 2008
    "http://xn--a.example/mcp",  # an A-label that does not decode
    "http://xn--.example/mcp",
    "http://XN--A.example/mcp",
    "http://bücher..example/mcp",
    "http://" + "ü" * 64 + ".example/mcp",  # label too long
    "http://١٢a.bücher.example/mcp",  # bidi rule
    "http://b%C3%BCcher.example/mcp",  # percent-encoded host
    "http://b%c3%bccher.example/mcp",
    "http://bücher.example/\ud800",  # not Unicode
]


@pytest.mark.parametrize("given, stored", ENCODED)
def test_encoded_at_validation(given: str, stored: str) -> None:
    assert parse_definition(_body(given)).backend == stored


@pytest.mark.parametrize("given", REFUSED)
def test_refused_at_validation(given: str) -> None:
    with pytest.raises(InvalidField) as caught:
        parse_definition(_body(given))
    assert caught.value.field == "backend"


def test_wire_form() -> None:
    # What the gateway derives from the stored URL: the Host it sends and
    # the host it connects to.
    backend = parse_definition(_body("http://BÜCHER.example:8080/mcp")).backend
    assert Backend.parse(backend).authority == b"xn--bcher-kva.example:8080"
    client = BackendClient(None, lambda scheme, host, port: None)  # type: ignore[arg-type]
    target, path = client._split(Backend.parse(backend).target("", b""))
    assert (target.host, target.port, target.host_line, path) == (
        b"xn--bcher-kva.example", 8080, b"host: xn--bcher-kva.example:8080", b"/mcp")


def test_stored_before_encoding_is_encoded_on_load() -> None:
    stored = parse_definition(_body("http://localhost:1/mcp")).to_json()
    stored["backend"] = "http://bücher.example/mcp"
    assert definition_from_json(stored).backend == "http://xn--bcher-kva.example/mcp"


# -- through the daemon ------------------------------------------------------------------


@pytest.fixture
def backend() -> Iterator[RawBackend]:
    def respond(conn: RawConnection, request: RawRequest) -> None:
        ident = json.loads(request.body)["id"]
        conn.send(ok(json.dumps({"jsonrpc": "2.0", "id": ident, "result": {}}).encode()))

    server = RawBackend(respond)
    yield server
    server.stop()


def test_admin_stores_the_idna_form(daemon) -> None:
    status, api = daemon.admin("POST", "/apis", _body("http://Bücher。example:8080/mcp/ü"))
    assert status == 201, api
    assert api["backend"] == "http://xn--bcher-kva.example:8080/mcp/%C3%BC"
    status, shown = daemon.admin("GET", f"/apis/{api['id']}")
    assert shown["backend"] == api["backend"]


@pytest.mark.parametrize("given", ["http://a\u200db.example/mcp", "http://bü--cher.example/mcp",
                                   "http://xn--a.example/mcp", "http://b%C3%BCcher.example/mcp"])
def test_admin_refuses_invalid_idna(daemon, given: str) -> None:
    status, error = daemon.admin("POST", "/apis", _body(given))
    assert status == 400 and error["field"] == "backend", error
    status, api = daemon.admin("POST", "/apis", _body("http://localhost:1/mcp"))
    assert status == 201
    status, error = daemon.admin("PUT", f"/apis/{api['id']}", _body(given))
    assert status == 400 and error["field"] == "backend", error


def test_gateway_reaches_an_idna_backend(daemon, backend: RawBackend) -> None:
    # Fullwidth "localhost" maps (UTS 46) to localhost: a non-ASCII host that
    # resolves here. The backend gets the ASCII Host and a UTF-8 path.
    given = f"http://ｌｏｃａｌｈｏｓｔ:{backend.port}/mcp/ü"
    status, api = daemon.admin("POST", "/apis", _body(given))
    assert status == 201, api
    assert api["backend"] == f"http://localhost:{backend.port}/mcp/%C3%BC"
    assert daemon.admin("POST", f"/apis/{api['id']}/_deploy")[0] == 200
    call = {"jsonrpc": "2.0", "id": 7, "method": "ping"}
    status, _, body = http("POST", daemon.gateway + "/idna", call,
                           {"Accept": "application/json, text/event-stream"})
    assert status == 200, body
    assert json.loads(body) == {"jsonrpc": "2.0", "id": 7, "result": {}}
    [request] = [r for c in backend.connections for r in c.requests]
    assert request.header(b"host") == f"localhost:{backend.port}".encode()
    assert request.target == b"/mcp/%C3%BC"
