"""
The twisted.web fallback of the gateway listener
(L{mcpgated.proxy.twisted_server}) in memory, for what its own code adds
to twisted.web and the loopback suites (tests/contract, which both servers
pass, and security/test_edge_differential.py) reach only by chance: line
endings checked across every read boundary, one refusal per connection,
and a late answer to a client that left.
"""

from __future__ import annotations

import json
from typing import Any, List, Tuple

import pytest
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from mcpgated.proxy.twisted_server import TwistedGatewayChannel, TwistedGatewaySite


class Echo(Resource):
    isLeaf = True

    def __init__(self, late: bool = False) -> None:
        super().__init__()
        self.late = late
        self.requests: List[Any] = []

    def render(self, request: Any) -> Any:
        self.requests.append(request)
        if self.late:
            return NOT_DONE_YET
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"uri": request.uri.decode(),
                           "body": request.content.read().decode()}).encode()


def too_large(limit: int) -> bytes:
    return b'{"error": "too large"}'


def connect(resource: Resource) -> Tuple[TwistedGatewayChannel, StringTransport]:
    site = TwistedGatewaySite(resource, Clock(), 1024, too_large)
    channel = site.buildProtocol(None)
    assert isinstance(channel, TwistedGatewayChannel)
    transport = StringTransport()
    channel.makeConnection(transport)
    return channel, transport


def status(transport: StringTransport) -> bytes:
    return transport.value().split(b"\r\n", 1)[0]


GOOD = b"POST /mcp?x=1 HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 2\r\n\r\n{}"
LF_ALONE = b"POST /mcp HTTP/1.1\r\nHost: gw.test\nContent-Length: 2\r\n\r\n{}"
BARE_CR = b"POST /mcp HTTP/1.1\r\nHost: gw.test\rX: 1\r\nContent-Length: 2\r\n\r\n{}"


def send_split(data: bytes, cut: int, second: int) -> Tuple[Echo, StringTransport]:
    resource = Echo()
    channel, transport = connect(resource)
    for piece in (data[:cut], data[cut:second], data[second:]):
        if piece and not channel.refused:
            channel.dataReceived(piece)
    return resource, transport


def cuts(data: bytes) -> List[Tuple[int, int]]:
    head = data.index(b"\r\n\r\n") + 4
    return [(a, b) for a in range(head + 1) for b in (a + 1, a + 2, head)]


def test_a_crlf_head_is_read_however_it_is_split() -> None:
    for cut, second in cuts(GOOD):
        resource, transport = send_split(GOOD, cut, second)
        assert status(transport) == b"HTTP/1.1 200 OK", (cut, second)
        assert [r.uri for r in resource.requests] == [b"/mcp?x=1"], (cut, second)


@pytest.mark.parametrize("data", [LF_ALONE, BARE_CR], ids=["lf-alone", "bare-cr"])
def test_a_head_line_not_ending_in_crlf_is_refused_however_it_is_split(data: bytes) -> None:
    for cut, second in cuts(data):
        resource, transport = send_split(data, cut, second)
        assert status(transport) == b"HTTP/1.1 400 Bad Request", (cut, second)
        assert b"LF alone" in transport.value() or b"bare CR" in transport.value()
        assert transport.disconnecting and resource.requests == [], (cut, second)


def test_one_refusal_per_connection_and_nothing_read_after_it() -> None:
    resource = Echo()
    channel, transport = connect(resource)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: gw.test\nX: 1\r\n")
    channel.dataReceived(b"\r\n" + GOOD + GOOD)
    assert transport.value().count(b"HTTP/1.1 ") == 1
    [error] = [line for line in transport.value().split(b"\r\n") if line.startswith(b"{")]
    assert json.loads(error)["error"]["data"] == {"httpStatus": 400}
    assert resource.requests == []


def test_a_late_answer_to_a_client_that_left_is_dropped() -> None:
    resource = Echo(late=True)
    channel, transport = connect(resource)
    channel.dataReceived(GOOD)
    [request] = resource.requests
    gone: List[Any] = []
    request.notifyFinish().addErrback(gone.append)
    channel.connectionLost(Failure(ConnectionLost()))
    assert len(gone) == 1
    written = transport.value()
    request.setResponseCode(200)
    request.write(b'{"late": true}')  # neither raises nor writes
    request.finish()
    assert transport.value() == written


def test_no_content_length_on_204_and_304() -> None:
    class NoContent(Resource):
        isLeaf = True

        def render(self, request: Any) -> bytes:
            request.setResponseCode(int(request.uri.strip(b"/")))
            request.setHeader(b"content-length", b"0")
            return b""

    for code in (b"204", b"304"):
        channel, transport = connect(NoContent())
        channel.dataReceived(b"GET /" + code + b" HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        head = transport.value().split(b"\r\n\r\n", 1)[0].lower()
        assert head.startswith(b"http/1.1 " + code)
        assert b"content-length" not in head and b"content-type" not in head
