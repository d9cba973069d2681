"""
Issue #11 item 6: an HTTP/1.1 request has exactly one valid Host (RFC 9112
section 3.2), so the DNS-rebinding check and the URLs the gateway builds
(X-Forwarded-Host, OAuth metadata, the legacy endpoint) read the same one.
Two Host headers (evil.example, then 127.0.0.1) passed the rebinding check
on the last one while URLs were built from the first.

Through the real daemon on a loopback listener, on both HTTP servers.
"""

from __future__ import annotations

import json
from typing import Iterator

import pytest

from tests.security.edge_support import (
    CALL,
    SERVERS,
    Client,
    daemons,
    refusal,
)
from tests.support import Daemon, deploy


@pytest.fixture(scope="module", params=SERVERS)
def daemon(request, tmp_path_factory) -> Iterator[Daemon]:
    yield from daemons(tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def api(daemon, backend) -> str:
    deploy(daemon, "/hosted", backend.backend.url)
    return "/hosted"


def _post(path: str, hosts: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    return (b"POST " + path.encode() + b" " + version + b"\r\n" + hosts
            + b"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(CALL), CALL))


@pytest.mark.parametrize("hosts", [
    b"Host: evil.example\r\nHost: 127.0.0.1\r\n",
    b"Host: 127.0.0.1\r\nHost: evil.example\r\n",
    b"Host: 127.0.0.1\r\nhost: 127.0.0.1\r\n",
    b"HOST: localhost\r\nHost: evil.example\r\nhost: 127.0.0.1\r\n",
], ids=["evil-first", "evil-last", "identical", "three"])
def test_more_than_one_host_is_refused(daemon, backend, api, hosts):
    before = len(backend.requests)
    client = Client(daemon)
    client.send(_post(api, hosts))
    [response] = client.responses(1)
    message = refusal(response, 400)
    assert "more than one Host" in message["error"]["message"]
    client.until_closed()
    assert len(backend.requests) == before


@pytest.mark.parametrize("host", [
    b"127.0.0.1,evil.example", b"evil.example, 127.0.0.1", b"127.0.0.1 evil.example",
    b"127.0.0.1/evil", b"127.0.0.1\\evil", b"user@127.0.0.1", b"127.0.0.1:99999",
    b"localhost..", b"[::1", b"127.0.0.1:80:80", b"",
])
def test_invalid_host_is_refused(daemon, backend, api, host):
    before = len(backend.requests)
    client = Client(daemon)
    client.send(_post(api, b"Host: " + host + b"\r\n"))
    [response] = client.responses(1)
    refusal(response, 400)
    client.until_closed()
    assert len(backend.requests) == before


def test_http11_without_host_is_refused(daemon, backend, api):
    before = len(backend.requests)
    client = Client(daemon)
    client.send(_post(api, b""))
    [response] = client.responses(1)
    assert "no Host" in refusal(response, 400)["error"]["message"]
    assert len(backend.requests) == before


def test_http10_without_host_meets_the_rebinding_check(daemon, backend, api):
    """
    HTTP/1.0 may omit Host; on a loopback listener the rebinding check then
    refuses it (403), as it does any non-loopback host.
    """
    before = len(backend.requests)
    client = Client(daemon)
    client.send(_post(api, b"", b"HTTP/1.0"))
    [response] = client.responses(1)
    assert response.code == 403
    assert len(backend.requests) == before


@pytest.mark.parametrize("host", [b"127.0.0.1", b"localhost", b"LOCALHOST", b"[::1]"])
def test_the_one_host_is_the_one_forwarded(daemon, backend, api, host):
    """
    With one Host, the rebinding check passes on it and the backend's
    X-Forwarded-Host is that same Host, port included.
    """
    port = daemon.ports["gateway"][0]
    value = host + b":%d" % port
    client = Client(daemon)
    client.send(_post(api, b"Host: " + value + b"\r\n"))
    [response] = client.responses(1)
    assert response.code == 200, response.body
    seen = backend.requests[-1]
    assert seen.headers[b"x-forwarded-host"] == [value]
    assert json.loads(response.body)["result"] == {}
    client.close()
