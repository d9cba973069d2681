"""
The gateway's own HTTP requests through treq (L{mcpgated.webclient}):
whole answers of any status, the body limit and the deadline (both close
the connection: the server sees its request end), and no redirects,
cookies or content coding. In memory: treq's L{RequestTraversalAgent}
runs a twisted.web site over a fake connection, with real HTTP parsing.
"""

from __future__ import annotations

import gc
import gzip
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest
from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from mcpgated.webclient import BodyTooLarge, Reply, fetch

URL = "http://metadata.example/.well-known/oauth-protected-resource"


@pytest.fixture(autouse=True)
def no_lost_failures() -> Iterator[None]:
    """
    No Deferred is left with a failure nobody handled (a second errback
    after a cancel, an error lost in a callback).
    """
    failures: List[Dict[str, Any]] = []

    def observe(event: Dict[str, Any]) -> None:
        if "log_failure" in event:
            failures.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        yield
        gc.collect()
    finally:
        globalLogPublisher.removeObserver(observe)
    assert failures == []


class Script(Resource):
    """
    Answers every request with C{answer(request)}; records what came.
    """

    isLeaf = True

    def __init__(self, answer: Callable[[Request], Any]) -> None:
        super().__init__()
        self.answer = answer
        self.seen: List[Request] = []
        self.bodies: List[bytes] = []
        self.ended: List[Optional[Failure]] = []

    def render(self, request: Request) -> Any:
        self.seen.append(request)
        self.bodies.append(request.content.read())
        request.notifyFinish().addBoth(self.ended.append)
        return self.answer(request)


def _run(agent: RequestTraversalAgent, clock: Clock, method: str = "GET", url: str = URL,
         headers: Optional[Headers] = None, body: Optional[bytes] = None,
         max_bytes: int = 1024, timeout: float = 10) -> "Deferred[Reply]":
    d = Deferred.fromCoroutine(fetch(agent, clock, method, url, headers or Headers(), body=body,
                                     max_bytes=max_bytes, timeout=timeout))
    agent.flush()
    return d


def _result(d: Deferred) -> Any:
    results: List[Any] = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    return results[0]


def _answer(status: int, body: bytes, **headers: str) -> Callable[[Request], bytes]:
    def answer(request: Request) -> bytes:
        request.setResponseCode(status)
        for name, value in headers.items():
            request.setHeader(name.replace("_", "-"), value)
        return body

    return answer


@pytest.mark.parametrize("status", [200, 404, 429, 503])
def test_a_whole_answer_of_any_status(status: int):
    clock = Clock()
    script = Script(_answer(status, b'{"resource": "x"}', cache_control="max-age=60"))
    agent = RequestTraversalAgent(script)
    reply = _result(_run(agent, clock, headers=Headers({b"accept": [b"application/json"]})))
    assert isinstance(reply, Reply)
    assert reply.status == status and reply.body == b'{"resource": "x"}'
    assert reply.headers.getRawHeaders(b"cache-control") == [b"max-age=60"]
    [request] = script.seen
    assert request.method == b"GET" and request.uri == b"/.well-known/oauth-protected-resource"
    assert request.requestHeaders.getRawHeaders(b"user-agent") == [b"mcpgated"]
    assert request.requestHeaders.getRawHeaders(b"accept") == [b"application/json"]
    assert clock.getDelayedCalls() == []  # the deadline is gone with the answer


def test_a_post_body_goes_with_its_length():
    clock = Clock()
    script = Script(_answer(200, b"{}"))
    agent = RequestTraversalAgent(script)
    form = b"token=abc&token_type_hint=access_token"
    headers = Headers({b"content-type": [b"application/x-www-form-urlencoded"]})
    assert _result(_run(agent, clock, "POST", "http://as.example/introspect", headers, form)).status == 200
    [request] = script.seen
    assert request.method == b"POST" and script.bodies == [form]
    assert request.requestHeaders.getRawHeaders(b"content-length") == [str(len(form)).encode()]
    assert request.requestHeaders.getRawHeaders(b"content-type") == [b"application/x-www-form-urlencoded"]


def test_redirects_are_answers_not_followed():
    clock = Clock()
    script = Script(_answer(302, b"", location="http://169.254.169.254/latest/meta-data"))
    agent = RequestTraversalAgent(script)
    reply = _result(_run(agent, clock))
    assert reply.status == 302 and len(script.seen) == 1


def test_cookies_are_neither_kept_nor_sent():
    clock = Clock()
    script = Script(_answer(200, b"{}", set_cookie="session=s1; Path=/"))
    agent = RequestTraversalAgent(script)
    _result(_run(agent, clock))
    _result(_run(agent, clock))
    assert [r.requestHeaders.getRawHeaders(b"cookie") for r in script.seen] == [None, None]


def test_no_content_coding_is_asked_for_or_undone():
    clock = Clock()
    coded = gzip.compress(b'{"resource": "x"}' + b" " * 100_000)
    script = Script(_answer(200, coded, content_encoding="gzip"))
    agent = RequestTraversalAgent(script)
    reply = _result(_run(agent, clock, max_bytes=len(coded)))
    assert reply.body == coded  # as it came: never inflated past the limit
    assert script.seen[0].requestHeaders.getRawHeaders(b"accept-encoding") is None


@pytest.mark.parametrize("size, fits", [(1024, True), (1025, False)])
def test_the_body_limit(size: int, fits: bool):
    clock = Clock()
    agent = RequestTraversalAgent(Script(_answer(200, b"x" * size)))
    result = _result(_run(agent, clock, max_bytes=1024))
    if fits:
        assert result.body == b"x" * size
    else:
        assert isinstance(result, Failure) and result.check(BodyTooLarge)
        assert "larger than 1024 bytes" in result.getErrorMessage()
    assert clock.getDelayedCalls() == []


def test_past_the_limit_the_download_stops_and_the_connection_closes():
    clock = Clock()

    def endless(request: Request) -> Any:
        request.write(b"x" * 4096)  # and more would follow: the request never finishes
        return NOT_DONE_YET

    script = Script(endless)
    agent = RequestTraversalAgent(script)
    d = _run(agent, clock, max_bytes=1024)
    agent.flush()
    assert _result(d).check(BodyTooLarge)
    assert len(script.ended) == 1 and isinstance(script.ended[0], Failure)  # the server saw it go


def test_a_silent_server_times_out_and_is_hung_up_on():
    clock = Clock()
    script = Script(lambda request: NOT_DONE_YET)
    agent = RequestTraversalAgent(script)
    d = _run(agent, clock, timeout=10)
    clock.advance(9.9)
    assert not d.called
    clock.advance(0.1)
    agent.flush()
    failure = _result(d)
    assert isinstance(failure, Failure) and failure.check(TimeoutError)
    assert failure.getErrorMessage() == "timed out"
    assert len(script.ended) == 1 and isinstance(script.ended[0], Failure)


def test_the_deadline_covers_the_body_too():
    clock = Clock()

    def trickle(request: Request) -> Any:
        request.write(b'{"resource": ')  # the rest never comes
        return NOT_DONE_YET

    script = Script(trickle)
    agent = RequestTraversalAgent(script)
    d = _run(agent, clock, timeout=10)
    agent.flush()
    assert not d.called  # the head came, the body is being read
    clock.advance(10)
    agent.flush()
    assert _result(d).check(TimeoutError)
    assert len(script.ended) == 1 and isinstance(script.ended[0], Failure)
    assert clock.getDelayedCalls() == []
