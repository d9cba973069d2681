"""
The gateway's own HTTP requests, off the hot path: OAuth metadata
(L{mcpgated.oauth.metadata}), JWK sets and token introspection
(L{mcpgated.policy.tokens}).

treq over the gateway's own L{IAgent} (L{mcpgated.proxy.upstream.UpstreamPool.agent}:
its connection pool, CA files and certificate verification), with:

 - one deadline for the whole exchange, head and body;
 - a body limit: past it the download stops and the connection is closed,
   and nothing more is kept;
 - no redirects, no cookies and no content coding: C{Accept-Encoding} is
   not sent and a coded body is handed on as it came (a gzip body is then
   no JSON document), so a small response can never inflate to a large
   one in memory.

Proxied traffic never comes here: it streams (L{mcpgated.proxy.relay}).
"""

from __future__ import annotations

from http.cookiejar import CookieJar
from typing import Any, List, Optional, cast

import attrs
import treq
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IConsumer, IProtocol, IReactorTime
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from zope.interface import implementer

USER_AGENT = b"mcpgated"


class BodyTooLarge(Exception):
    """
    The response body went past the limit; the download was stopped.
    """


@attrs.frozen
class Reply:
    """
    A whole response: its status, headers and body.
    """

    status: int
    headers: Headers
    body: bytes


async def fetch(agent: IAgent, clock: IReactorTime, method: str, url: str, headers: Headers, *,
                body: Optional[bytes] = None, max_bytes: int, timeout: float) -> Reply:
    """
    Send one request through C{agent} and read the whole answer.

    @param headers: the request's headers (C{User-Agent} is set here).
    @param body: a request body, sent with its C{Content-Length}.
    @param max_bytes: the largest body read; past it, L{BodyTooLarge}.
    @param timeout: seconds for the whole exchange; past them the request
        or the download is cancelled, and L{TimeoutError}.

    @raise BodyTooLarge: the body is larger than C{max_bytes}.
    @raise TimeoutError: no whole answer within C{timeout} seconds.
    """
    headers.setRawHeaders(b"user-agent", [USER_AGENT])
    work = Deferred.fromCoroutine(_exchange(agent, method, url, headers, body, max_bytes))
    timer = clock.callLater(timeout, work.cancel)
    try:
        return await work
    except Exception:  # any failure after the deadline is the deadline's
        if not timer.active():
            raise TimeoutError("timed out") from None
        raise
    finally:
        if timer.active():
            timer.cancel()


async def _exchange(agent: IAgent, method: str, url: str, headers: Headers,
                    body: Optional[bytes], max_bytes: int) -> Reply:
    client = HTTPClient(_Identity(agent), cookiejar=cast(Any, _NoCookies()),
                        data_to_body_producer=_InMemory)
    response = await client.request(method, url, headers=headers, data=body,
                                    allow_redirects=False, unbuffered=True)
    chunks: List[bytes] = []
    size = 0

    def collect(data: bytes) -> None:
        nonlocal size
        size += len(data)
        if size > max_bytes:
            # (treq then closes the connection)
            raise BodyTooLarge(f"larger than {max_bytes} bytes")
        chunks.append(data)

    download = _Download(response)
    done: "Deferred[None]" = Deferred(download.stop)

    def settle(result: object) -> None:
        # (after a cancel, treq's own Deferred still fires: that is dropped)
        if not done.called:
            if isinstance(result, Failure):
                done.errback(result)
            else:
                done.callback(None)

    treq.collect(cast(IResponse, download), collect).addBoth(settle)
    await done
    return Reply(response.code, response.headers, b"".join(chunks))


class _Download:
    """
    What L{treq.collect} reads of a response, keeping the body's transport
    so that a cancelled download (the deadline) stops it: treq's own
    L{Deferred} has no canceller, and a silent server would hold the
    connection forever.
    """

    def __init__(self, response: IResponse) -> None:
        self.length = response.length
        self._response = response
        self._protocol: Optional[IProtocol] = None

    def deliverBody(self, protocol: IProtocol) -> None:
        self._protocol = protocol
        self._response.deliverBody(protocol)

    def stop(self, _: object) -> None:
        transport = getattr(self._protocol, "transport", None)
        if transport is not None:
            transport.stopProducing()


@implementer(IAgent)
@attrs.frozen
class _Identity:
    """
    Below treq's content decoding: asks for no content coding, and hands
    every body on as it came.
    """

    agent: IAgent

    def request(self, method: bytes, uri: bytes, headers: Optional[Headers] = None,
                bodyProducer: Optional[IBodyProducer] = None) -> "Deferred[IResponse]":
        if headers is not None and headers.hasHeader(b"accept-encoding"):
            headers = headers.copy()
            headers.removeHeader(b"accept-encoding")
        return self.agent.request(method, uri, headers, bodyProducer).addCallback(_uncoded)


def _uncoded(response: IResponse) -> IResponse:
    response.headers.removeHeader(b"content-encoding")
    return response


class _NoCookies(CookieJar):
    """
    A jar that neither sends nor keeps a cookie: each request stands alone.
    """

    def add_cookie_header(self, request: Any) -> None:
        pass

    def extract_cookies(self, response: Any, request: Any) -> None:
        pass


@implementer(IBodyProducer)
class _InMemory:
    """
    A request body already in memory, written at once (treq's default
    producer reads it through the global cooperator, a reactor turn per
    64 KB).
    """

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> "Deferred[None]":
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass
