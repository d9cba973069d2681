"""
In-process requests for the admin API's handlers and parsers
(tests/test_admin_*.py): a L{DummyRequest} with a body, a path and query
arguments, typed as the L{IRequest} the admin code takes.
"""

from __future__ import annotations

import io
from typing import Dict, Optional

from twisted.web.iweb import IRequest
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer


# DummyRequest lacks the cookie, user and URL methods of IRequest: the admin
# code uses none of them.
@implementer(IRequest)
class AdminRequest(DummyRequest):  # type: ignore[misc]
    def __init__(self, body: bytes = b"", *, method: bytes = b"POST", path: bytes = b"/apis",
                 content_type: Optional[bytes] = b"application/json",
                 authorization: Optional[bytes] = None,
                 args: Optional[Dict[str, str]] = None) -> None:
        super().__init__(path.lstrip(b"/").split(b"/"))
        self.method = method
        self.path = path
        self.content = io.BytesIO(body)
        self.args = {key.encode(): [value.encode()] for key, value in (args or {}).items()}
        if content_type is not None:
            self.requestHeaders.setRawHeaders(b"content-type", [content_type])
        if authorization is not None:
            self.requestHeaders.setRawHeaders(b"authorization", [authorization])
