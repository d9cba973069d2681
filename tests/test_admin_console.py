"""
The web console's files on the admin listener (L{mcpgated.admin.console}),
in process: the types and headers a browser needs to run them (with
C{nosniff}, a script of the wrong type is not run), revalidation, the
methods served, the rest of the listener left to the admin API, and the
gateway addresses the console shows. tests/test_console.py drives the
console itself in a browser over a real daemon.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, List, Optional

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from mcpgated.admin.console import (
    CSP,
    AdminRoot,
    ConsoleResource,
    content_type,
    gateway_addresses,
    load_files,
)

FILES = load_files()
UI = resources.files("mcpgated.admin") / "ui"


class Api(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: List[List[bytes]] = []

    def render(self, request: Any) -> bytes:
        self.seen.append(list(request.postpath))
        return b'{"api": true}'


def get(path: str, method: bytes = b"GET", if_none_match: Optional[bytes] = None,
        api: Optional[Api] = None) -> Any:
    request = DummyRequest(path.lstrip("/").encode().split(b"/"))
    request.method = method
    if if_none_match is not None:
        request.requestHeaders.setRawHeaders(b"if-none-match", [if_none_match])
    body = AdminRoot(api or Api(), ConsoleResource(FILES)).render(request)
    request.body = body
    request.code = request.responseCode or 200
    return request


def header(request: Any, name: bytes) -> Optional[bytes]:
    values = request.responseHeaders.getRawHeaders(name)
    return values[0] if values else None


def test_the_page_is_served_with_its_type_and_browser_protections() -> None:
    for path in ("/ui/", "/ui/index.html"):
        page = get(path)
        assert page.code == 200
        assert page.body == (UI / "index.html").read_bytes()
        assert header(page, b"content-type") == b"text/html; charset=utf-8"
        assert header(page, b"content-security-policy") == CSP
        assert header(page, b"x-content-type-options") == b"nosniff"
        assert header(page, b"x-frame-options") == b"DENY"
        assert header(page, b"referrer-policy") == b"no-referrer"
        assert header(page, b"cache-control") == b"no-cache"


def test_every_file_of_the_console_has_a_type_a_browser_accepts() -> None:
    assert {"index.html", "app.js", "style.css", "vendor/chart.umd.min.js"} <= set(FILES)
    for name, file in FILES.items():
        served = get("/ui/" + name)
        assert served.body == file.body, name
        kind = header(served, b"content-type")
        assert kind != b"application/octet-stream", name
        if name.endswith(".js") and "LICENSE" not in name:
            assert kind == b"text/javascript; charset=utf-8", name
        if name.endswith(".css"):
            assert kind == b"text/css; charset=utf-8", name
    assert not any(name.endswith((".py", ".pyc")) for name in FILES)


@pytest.mark.parametrize("name, expected", [
    ("vendor/LICENSE.chart.js", b"text/plain; charset=utf-8"),  # a licence, not a script
    ("a/b/ICON.PNG", b"image/png"),
    ("logo.svg", b"image/svg+xml"),
    ("data.json", b"application/json"),
    ("mod.mjs", b"text/javascript; charset=utf-8"),
    ("archive.tar", b"application/octet-stream"),
    ("README", b"application/octet-stream"),
])
def test_content_types_by_name(name: str, expected: bytes) -> None:
    assert content_type(name) == expected


def test_a_known_version_is_not_sent_again() -> None:
    first = get("/ui/app.js")
    etag = header(first, b"etag")
    assert etag is not None and etag.startswith(b'"') and etag.endswith(b'"')
    assert header(first, b"content-security-policy") is None  # the page's policy governs
    again = get("/ui/app.js", if_none_match=etag)
    assert (again.code, again.body) == (304, b"")
    listed = get("/ui/app.js", if_none_match=b'"other", ' + etag)
    assert listed.code == 304
    assert get("/ui/app.js", if_none_match=b'"other"').body == FILES["app.js"].body
    # one file's tag is not another's
    assert header(get("/ui/style.css"), b"etag") != etag


def test_head_answers_the_length_without_the_body() -> None:
    head = get("/ui/index.html", method=b"HEAD")
    assert head.code == 200 and head.body == b""
    assert header(head, b"content-length") == str(len(FILES["index.html"].body)).encode()


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE"])
def test_only_get_and_head_are_served(method: bytes) -> None:
    refused = get("/ui/index.html", method=method)
    assert refused.code == 405
    assert header(refused, b"allow") == b"GET, HEAD"
    assert header(refused, b"x-content-type-options") == b"nosniff"


def test_ui_without_a_slash_redirects_relatively_and_unknown_files_are_404() -> None:
    redirect = get("/ui")
    assert (redirect.code, header(redirect, b"location")) == (301, b"ui/")
    missing = get("/ui/nope.js")
    assert missing.code == 404
    assert header(missing, b"content-type") == b"text/plain; charset=utf-8"
    assert b"no such file" in missing.body
    assert get("/ui/../tap.py").code == 404


def test_everything_else_is_the_admin_api_s() -> None:
    api = Api()
    answer = get("/apis/x", api=api)
    assert answer.body == b'{"api": true}'
    assert api.seen == [[b"apis", b"x"]]
    assert header(answer, b"x-frame-options") is None  # the console's headers are its own
    get("/uix", api=api)
    assert api.seen[-1] == [b"uix"]


class Port:
    def __init__(self, address: Any) -> None:
        self.address = address

    def getHost(self) -> Any:
        return self.address


class Listener:
    def __init__(self, role: str, description: str, address: Any) -> None:
        self.role = role
        self.description = description
        self.port = Port(address) if address is not None else None


def test_the_gateway_addresses_the_console_shows() -> None:
    listeners = [
        Listener("gateway", "tcp:8080:interface=0.0.0.0", IPv4Address("TCP", "0.0.0.0", 8080)),
        Listener("gateway", "ssl:8443:privateKey=k.pem", IPv4Address("TCP", "192.0.2.1", 8443)),
        Listener("gateway", "TLS:8444", IPv6Address("TCP", "::", 8444)),
        Listener("gateway", "tcp:9000", None),  # not listening (yet)
        Listener("admin", "tcp:9090", IPv4Address("TCP", "127.0.0.1", 9090)),
    ]
    assert gateway_addresses(listeners, "https://mcp.example") == {
        "publicUrl": "https://mcp.example",
        "listeners": [
            {"scheme": "http", "host": None, "port": 8080},  # wildcard: the page's own host
            {"scheme": "https", "host": "192.0.2.1", "port": 8443},
            {"scheme": "https", "host": None, "port": 8444},
        ]}
    assert gateway_addresses([], None) == {"publicUrl": None, "listeners": []}
