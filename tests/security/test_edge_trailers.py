"""
Issue #11 item 5: trailers of a chunked request body are dropped (as nginx
does) and count toward the 64 KB head cap. They never authenticate, never
reach the backend, and a huge one is refused before it is read.

Through the real daemon, on both HTTP servers, in front of a recording raw
backend.
"""

from __future__ import annotations

import time
from typing import Iterator

import pytest

from tests.security.edge_support import (
    CALL,
    SERVERS,
    Client,
    daemons,
    refusal,
)
from tests.support import Daemon, deploy, subscribe_key


@pytest.fixture(scope="module", params=SERVERS)
def daemon(request, tmp_path_factory) -> Iterator[Daemon]:
    yield from daemons(tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def keyed(daemon, backend):
    """
    An API whose only plan takes an API key, and a valid key for it.
    """
    api = deploy(daemon, "/keyed", backend.backend.url, [{"name": "Gold", "security": "API_KEY"}],
                 name="Keyed")
    _, key = subscribe_key(daemon, api["id"], "Gold", "trailer-tests")
    return key["key"]


@pytest.fixture(scope="module")
def open_api(daemon, backend) -> str:
    deploy(daemon, "/open", backend.backend.url)
    return "/open"


def _chunked_post(path: str, body: bytes, trailers: bytes, headers: bytes = b"") -> bytes:
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n" + headers + b"\r\n"
            + b"%x\r\n%s\r\n0\r\n" % (len(body), body) + trailers + b"\r\n")


@pytest.mark.parametrize("name", [b"X-Gravitee-Api-Key", b"x-gravitee-api-key",
                                  b"X-GRAVITEE-API-KEY"])
def test_key_in_a_trailer_does_not_authenticate(daemon, backend, keyed, name):
    """
    The API key sent as a trailer is not an API key: 401, and the backend
    sees nothing; the same key as a header is let through.
    """
    before = len(backend.requests)
    client = Client(daemon)
    client.send(_chunked_post("/keyed", CALL, name + b": " + keyed.encode() + b"\r\n"))
    [response] = client.responses(1)
    assert response.code == 401, response
    assert len(backend.requests) == before
    client.send(_chunked_post("/keyed", CALL, b"", b"X-Gravitee-Api-Key: " + keyed.encode()
                              + b"\r\n"))
    [_, response] = client.responses(2)
    assert response.code == 200, response
    assert len(backend.requests) == before + 1
    client.close()


def test_trailers_never_reach_the_backend(daemon, backend, open_api):
    """
    Trailer fields, whatever they name (Host, Authorization, a session, an
    8 KB field), are not forwarded as headers; the body is.
    """
    before = len(backend.requests)
    client = Client(daemon)
    trailers = (b"Host: evil.example\r\nAuthorization: Bearer stolen\r\n"
                b"Mcp-Session-Id: hijacked\r\nX-Trailer: " + b"t" * 8192 + b"\r\n")
    client.send(_chunked_post(open_api, CALL, trailers))
    [response] = client.responses(1)
    assert response.code == 200
    [seen] = backend.requests[before:]
    assert seen.body == CALL
    for name in (b"authorization", b"mcp-session-id", b"x-trailer"):
        assert name not in seen.headers, seen.headers
    assert seen.headers[b"host"] == [backend.backend.url.split("//")[1].encode()]
    assert seen.headers[b"x-forwarded-host"] == [b"127.0.0.1"]
    client.close()


def test_framing_fields_in_trailers_never_frame(daemon, backend, open_api):
    """
    A Content-Length or Transfer-Encoding trailer is refused (llhttp) or
    dropped (twisted.web); either way the backend never gets it, and the
    body it saw is the one framed by the chunks.
    """
    for trailer in (b"Content-Length: 999\r\n", b"Transfer-Encoding: chunked\r\n"):
        before = len(backend.requests)
        client = Client(daemon)
        client.send(_chunked_post(open_api, CALL, trailer))
        [response] = client.responses(1)
        if response.code == 200:
            [seen] = backend.requests[before:]
            assert seen.body == CALL
            assert seen.headers[b"content-length"] == [b"%d" % len(CALL)]
            assert b"transfer-encoding" not in seen.headers
        else:
            refusal(response, 400)
            client.until_closed()
            assert len(backend.requests) == before
        client.close()


@pytest.mark.parametrize("size", [70_000, 8 * 1024 * 1024])
def test_large_trailer_is_refused(daemon, backend, open_api, size):
    """
    A trailer over the head cap gets 431 and never reaches the backend, in
    one write or in pieces.
    """
    before = len(backend.requests)
    client = Client(daemon)
    request = _chunked_post(open_api, CALL, b"X-Big: " + b"b" * size + b"\r\n")
    try:
        client.send(request)
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused while still sending
    [response] = client.responses(1)
    refusal(response, 431)
    client.until_closed()
    assert len(backend.requests) == before


def test_huge_trailer_is_cut_early_and_others_are_served(daemon, backend, open_api):
    """
    A 60 MB trailer is refused after a few hundred KB, not read whole (it
    cost 25 s of CPU), and the gateway keeps answering another client
    meanwhile.
    """
    client = Client(daemon)
    head = _chunked_post(open_api, CALL, b"")[:-2] + b"X-Huge: "
    client.send(head)
    sent = len(head)
    piece = b"h" * 65536
    started = time.monotonic()
    try:
        while sent < 60 * 1024 * 1024:
            client.send(piece)
            sent += len(piece)
    except (TimeoutError, BrokenPipeError, ConnectionResetError):
        pass
    elapsed = time.monotonic() - started
    # What the kernel buffers took before the gateway closed: a few MB at most.
    assert sent < 16 * 1024 * 1024, sent
    assert elapsed < 10, elapsed
    other = Client(daemon)
    other.send(b"POST " + open_api.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
               % (len(CALL), CALL))
    [answer] = other.responses(1)
    assert answer.code == 200
    other.close()
    client.close()
