"""
The seams of the data plane.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred
from zope.interface import Interface


class IBackendClient(Interface):
    """
    Sends a request to a backend and gives its response as soon as its
    status and headers arrive; the body is then delivered to a protocol
    (L{twisted.web.iweb.IResponse.deliverBody}), streaming
    (L{mcpgated.proxy.backend_client.BackendClient}).
    """

    def request(method: bytes, url: bytes, headers: Any,
                body: Optional[bytes]) -> Deferred[Any]:
        """
        @return: a L{Deferred} of the L{twisted.web.iweb.IResponse}.
        """
