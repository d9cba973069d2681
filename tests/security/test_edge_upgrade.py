"""
Issue #11 item 9: C{Upgrade} on a POST (C{curl --http2} sends
C{Upgrade: h2c}) lost the request body: llhttp stops at the end of an
upgrade's head, so the body was dropped, or worse, read as the next request.
The gateway ignores the upgrade (RFC 9110 section 7.8), keeps the body and
never sends the upgrade fields on.

Through the real daemon, on both HTTP servers, in front of a recording raw
backend; and with curl itself.
"""

from __future__ import annotations

import subprocess
from typing import Iterator

import pytest

from tests.security.edge_support import (
    CALL,
    SERVERS,
    Client,
    daemons,
)
from tests.support import Daemon, deploy

SMUGGLED = b"GET /admin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
H2C = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"


@pytest.fixture(scope="module", params=SERVERS)
def daemon(request, tmp_path_factory) -> Iterator[Daemon]:
    yield from daemons(tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def api(daemon, backend) -> str:
    deploy(daemon, "/up", backend.backend.url)
    return "/up"


def _head(method: bytes, path: str, upgrade: bytes, framing: bytes) -> bytes:
    return (method + b" " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            + upgrade + framing + b"\r\n")


def _chunks(body: bytes, size: int = 7) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
                    for i in range(0, len(body), size)) + b"0\r\n\r\n"


UPGRADES = {
    "h2c": H2C,
    "lower-case": b"connection: upgrade\r\nupgrade: h2c\r\n",
    "websocket": b"Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
}


@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize("upgrade", list(UPGRADES))
def test_upgrade_on_post_keeps_the_body(daemon, backend, api, upgrade, framing):
    """
    The body reaches the backend exactly, whatever it looks like (here a
    request line); no upgrade field goes on; the answer is the backend's,
    not a 101; the connection serves the next request.
    """
    before = len(backend.requests)
    body = CALL[:-1] + b',"params":{"text":"' + SMUGGLED.replace(b"\r\n", b" ") + b'"}}'
    client = Client(daemon)
    if framing == "length":
        client.send(_head(b"POST", api, UPGRADES[upgrade], b"Content-Length: %d\r\n" % len(body))
                    + body)
    else:
        client.send(_head(b"POST", api, UPGRADES[upgrade], b"Transfer-Encoding: chunked\r\n")
                    + _chunks(body))
    [response] = client.responses(1)
    assert response.code == 200
    [seen] = backend.requests[before:]
    assert seen.method == b"POST"
    assert seen.body == body
    for name in (b"upgrade", b"http2-settings", b"connection", b"sec-websocket-key"):
        if name == b"sec-websocket-key" and upgrade == "websocket":
            continue  # an end-to-end field for the gateway: not named by Connection
        assert name not in seen.headers, (name, seen.headers)
    client.send(_head(b"POST", api, b"", b"Content-Length: %d\r\n" % len(CALL)) + CALL)
    [_, second] = client.responses(2)
    assert second.code == 200
    assert [r.body for r in backend.requests[before:]] == [body, CALL]
    client.close()


def test_body_that_is_a_request_is_never_one(daemon, backend, api):
    """
    An upgrade POST whose body is a whole request (to /admin) gets one
    answer, for the POST (the gateway's own 400: the body is not JSON); no
    request for /admin is ever made or answered.
    """
    before = len(backend.requests)
    client = Client(daemon)
    client.send(_head(b"POST", api, H2C, b"Content-Length: %d\r\n" % len(SMUGGLED)) + SMUGGLED)
    [response] = client.responses(1)
    assert response.code == 400
    assert "not JSON" in response.body.decode()
    assert client.still_open_after(0.3)  # and no second answer follows
    assert client.data.count(b"HTTP/1.1 ") == 1
    assert [r.target for r in backend.requests[before:]] == []
    client.close()


def test_websocket_get_is_answered_as_http(daemon, backend, api):
    before = len(backend.requests)
    client = Client(daemon)
    client.send(_head(b"GET", api, UPGRADES["websocket"], b""))
    [response] = client.responses(1)
    assert response.code == 200
    [seen] = backend.requests[before:]
    assert b"upgrade" not in seen.headers
    client.close()


def test_curl_http2_post_keeps_the_body(daemon, backend, api):
    """
    C{curl --http2 -d ...} (which asks to upgrade to h2c) gets the backend's
    answer, and the backend the body.
    """
    before = len(backend.requests)
    body = CALL.decode()
    done = subprocess.run(
        ["curl", "--silent", "--show-error", "--http2", "--max-time", "10", "--data", body,
         "-H", "Content-Type: application/json", "-H", "Accept: application/json",
         "--write-out", "\n%{http_code} %{http_version}",
         f"http://127.0.0.1:{daemon.ports['gateway'][0]}{api}"],
        capture_output=True, timeout=20)
    out = done.stdout.decode()
    assert done.returncode == 0, (out, done.stderr)
    answer, _, status = out.rpartition("\n")
    assert status == "200 1.1", out
    assert answer == '{"jsonrpc":"2.0","id":1,"result":{}}'
    [seen] = backend.requests[before:]
    assert seen.body == CALL
    assert b"upgrade" not in seen.headers
