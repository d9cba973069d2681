"""
The twisted.web plumbing shared by the gateway and admin listeners: a
request-body cap that answers 413 before the body is buffered, and sites
that never render tracebacks.
"""

from __future__ import annotations

import io
import json
from typing import Callable, Optional

from twisted.web import http
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from mcpgated.jsonrpc import INVALID_REQUEST, error_body


def _size(n: int) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} bytes"


class CappedRequest(Request):
    """
    A request whose body may not exceed C{site.max_body} bytes.

    twisted.web buffers the whole body before C{render}; this stops reading
    as soon as the declared or received length is over the cap, answers 413
    with the site's error body and closes the connection.
    """

    _received = 0
    _rejected = False

    @property
    def capped_site(self) -> CappedSite:
        """
        The site whose channel this request arrived on: C{Site.buildProtocol}
        sets C{channel.site}, an attribute L{http.HTTPChannel} does not declare
        (and C{self.site} is set only once the body is in).
        """
        site: CappedSite = getattr(self.channel, "site")  # noqa: B009 -- undeclared attribute
        return site

    def gotLength(self, length: Optional[int]) -> None:
        # Always in memory: the cap bounds it, and a temporary file would
        # put disk I/O on the reactor thread.
        self.content = io.BytesIO()
        if length is not None and length > self.capped_site.max_body:
            self._reject()

    def handleContentChunk(self, data: bytes) -> None:
        if self._rejected:
            return
        self._received += len(data)
        if self._received > self.capped_site.max_body:
            self._reject()
            return
        Request.handleContentChunk(self, data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._rejected:
            return
        Request.requestReceived(self, command, path, version)

    def _reject(self) -> None:
        self._rejected = True
        site = self.capped_site
        body = site.too_large_body(site.max_body)
        head = (
            b"HTTP/1.1 413 Payload Too Large\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode("ascii") + b"\r\n"
            b"Connection: close\r\n\r\n"
        )
        site.rejected_too_large(self)
        transport = self.channel.transport
        if transport is not None:  # None once the connection is gone
            transport.write(head + body)
            transport.loseConnection()


class CappedSite(Site):
    """
    A L{Site} with a request body cap.

    @ivar max_body: the largest accepted request body, in bytes.
    """

    requestFactory = CappedRequest
    displayTracebacks = False
    noisy = False

    def __init__(self, resource: IResource, max_body: int,
                 too_large_body: Callable[[int], bytes]) -> None:
        # Never an HTML form body to read: no form parsing, which also
        # skips parsing Content-Type on every POST (Twisted 25.5+).
        Site.__init__(self, resource, parsePOSTFormSubmission=False)
        self.max_body = max_body
        self.too_large_body = too_large_body
        # Hook: a request was refused with 413 (for the access log).
        self.rejected_too_large: Callable[[CappedRequest], None] = _no_hook

    def log(self, request: http.Request) -> None:
        """
        No combined-format access log: callers record their own, with the
        fields they choose (never request headers such as Authorization).
        """


def _no_hook(request: CappedRequest) -> None:
    pass


def jsonrpc_too_large(limit: int) -> bytes:
    return error_body(
        INVALID_REQUEST,
        f"Request body is larger than the gateway's limit of {_size(limit)}",
        None,
        {"httpStatus": 413},
    )


def json_too_large(limit: int) -> bytes:
    return json.dumps(
        {"error": f"request body is larger than {_size(limit)}", "field": None}
    ).encode("utf-8")
