"""
Issue #11 item 7: the client side's timeouts. The connection timer was a
fixed 75 s from connect: [limits] did not change it, bytes did not reset it,
an upload still sending was cut and a slowloris head held a socket 75 s.
Now, as nginx: client_header_timeout is one deadline for a head from its
first byte, client_body_timeout the longest pause between two body reads,
keepalive_timeout the idle time between requests; a request or answer
whose bytes flow is never cut.

Through the real daemon, on both HTTP servers, with short timeouts; the
waits are on the server closing the socket or answering, with deadlines.
The slow clients pace their bytes by waiting for the server's silence.
"""

from __future__ import annotations

import threading
import time
from typing import Iterator

import pytest

from tests.contract.harness import parse_responses
from tests.raw_backend import RawBackend, RawConnection, RawRequest
from tests.security.edge_support import (
    SERVERS,
    Client,
    daemons,
    refusal,
)
from tests.support import Daemon, deploy

HEADER, BODY, KEEPALIVE = 1.0, 1.0, 2.0


@pytest.fixture(scope="module", params=SERVERS)
def daemon(request, tmp_path_factory) -> Iterator[Daemon]:
    yield from daemons(tmp_path_factory, request.param, client_header_timeout=f"{HEADER}s",
                       client_body_timeout=f"{BODY}s", keepalive_timeout=f"{KEEPALIVE}s")


@pytest.fixture(scope="module")
def api(daemon, backend) -> str:
    deploy(daemon, "/timed", backend.backend.url)
    return "/timed"


def _trickle_events(connection: RawConnection, request: RawRequest) -> None:
    """
    An event stream of 8 events, one every 0.4 s (3.2 s: longer than every
    client timeout), then its end.
    """
    def stream() -> None:
        connection.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n")
        ticks = threading.Event()
        for index in range(8):
            ticks.wait(0.4)  # the backend's pace, not a synchronisation
            event = b"data: %d\n\n" % index
            connection.send(b"%x\r\n%s\r\n" % (len(event), event))
        connection.send(b"0\r\n\r\n")

    threading.Thread(target=stream, daemon=True).start()


@pytest.fixture(scope="module")
def slow_stream(daemon) -> Iterator[str]:
    backend = RawBackend(_trickle_events)
    deploy(daemon, "/trickle", backend.url)
    yield "/trickle"
    backend.stop()


def test_slowloris_head_is_cut_at_the_header_timeout(daemon, api):
    """
    A head sent a line every 0.25 s is closed with 408 about one header
    timeout after its first byte, though its bytes never stopped.
    """
    client = Client(daemon)
    lines = [b"POST " + api.encode() + b" HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n"]
    lines += [b"X-Slow-%d: x\r\n" % i for i in range(40)]
    started = time.monotonic()
    sent = 0
    for line in lines:
        try:
            client.send(line)
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += 1
        if not client.still_open_after(0.25):
            break
    received = client.until_closed()
    elapsed = time.monotonic() - started
    assert sent > 3  # it kept sending after the timeout would have been reset
    assert HEADER * 0.9 <= elapsed < HEADER + 2, elapsed
    [response] = parse_responses(received, 1, closed=True) or [None]
    refusal(response, 408)


def test_connection_that_sends_nothing_is_closed_silently(daemon):
    client = Client(daemon)
    started = time.monotonic()
    assert client.until_closed(timeout=HEADER + 3) == b""
    assert time.monotonic() - started >= HEADER * 0.9


def test_keepalive_idle_is_its_own_timeout(daemon, api):
    """
    After an answer, the connection stays open past the header timeout and
    is closed, without a word, at the keep-alive timeout.
    """
    client = Client(daemon)
    request = (b"GET " + api.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Accept: text/event-stream\r\n\r\n")
    client.send(request)
    client.responses(1)
    answered = time.monotonic()
    size = len(client.data)
    assert client.still_open_after(HEADER + 0.3)
    client.until_closed(timeout=KEEPALIVE + 3)
    idle = time.monotonic() - answered
    assert KEEPALIVE * 0.9 <= idle < KEEPALIVE + 2, idle
    assert len(client.data) == size


def test_slow_upload_is_not_cut(daemon, backend, api):
    """
    A body arriving 4 bytes every 0.4 s for 4 s (past the header, body and
    keep-alive timeouts together) is received whole and relayed.
    """
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"' + b"p" * 7 + b'"}}'
    client = Client(daemon)
    client.send(b"POST " + api.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
    started = time.monotonic()
    for offset in range(0, len(body), 4):
        assert client.still_open_after(0.4)
        client.send(body[offset:offset + 4])
    [response] = client.responses(1)
    assert time.monotonic() - started > HEADER + BODY + KEEPALIVE * 0.5
    assert response.code == 200
    assert backend.requests[-1].body == body
    client.close()


def test_stalled_body_gets_408(daemon, backend, api):
    before = len(backend.requests)
    client = Client(daemon)
    client.send(b"POST " + api.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\"")
    started = time.monotonic()
    received = client.until_closed(timeout=BODY + 3)
    assert time.monotonic() - started >= BODY * 0.9
    [response] = parse_responses(received, 1, closed=True) or [None]
    assert "stalled" in refusal(response, 408)["error"]["message"]
    assert len(backend.requests) == before


def test_answer_longer_than_every_timeout_is_not_cut(daemon, slow_stream):
    """
    A stream whose events keep coming for 3.2 s reaches its end, and the
    connection then serves another request.
    """
    client = Client(daemon)
    request = (b"GET " + slow_stream.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Accept: text/event-stream\r\n\r\n")
    client.send(request)
    [response] = client.responses(1, timeout=15)
    assert response.body == b"".join(b"data: %d\n\n" % i for i in range(8))
    client.send(request)
    client.responses(2, timeout=15)
    client.close()
