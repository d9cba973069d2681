"""
The gateway listener's factory, on the HTTP/1.1 server C{[gateway] http}
names: C{fast} (L{mcpgated.proxy.http11}) or C{twisted} (twisted.web's,
L{mcpgated.proxy.twisted_server}). Both keep the rules of
L{mcpgated.proxy.edge}; tests/contract holds them to one suite.
"""

from __future__ import annotations

from typing import Any, Union

from twisted.internet.interfaces import IProtocolFactory, IReactorTime

from mcpgated.config import LimitsConfig
from mcpgated.proxy.edge import ClientTimeouts
from mcpgated.proxy.http11 import GatewayHTTPFactory
from mcpgated.proxy.twisted_server import TwistedGatewaySite
from mcpgated.site import jsonrpc_too_large

SERVERS = ("fast", "twisted")


def gateway_factory(server: str, resource: Any, clock: IReactorTime, limits: LimitsConfig) -> IProtocolFactory:
    """
    The listener factory answering with C{resource.render(request)}, its
    caps and client timeouts from C{limits}; a 413 is reported to
    C{resource.log_too_large} when the resource has one.
    """
    timeouts = ClientTimeouts.from_limits(limits)
    factory: Union[TwistedGatewaySite, GatewayHTTPFactory]
    if server == "twisted":
        factory = TwistedGatewaySite(resource, clock, limits.max_body, jsonrpc_too_large, timeouts)
    elif server == "fast":
        factory = GatewayHTTPFactory(resource, clock, limits.max_body, jsonrpc_too_large, timeouts)
    else:
        raise ValueError(f"unknown HTTP server {server!r} (known: {', '.join(SERVERS)})")
    hook = getattr(resource, "log_too_large", None)
    if hook is not None:
        factory.rejected_too_large = hook
    return factory
