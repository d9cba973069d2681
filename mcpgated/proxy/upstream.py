"""
The HTTP clients toward backends: the proxy's own L{BackendClient} (the hot
path) and a plain L{Agent} (no cookie jar, no redirects, no decoding) for
the gateway's other backend requests (OAuth metadata, JWKS, introspection),
both with cached endpoints, TCP_NODELAY, and certificate verification
through service-identity.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import attrs
from twisted.application.service import Service
from twisted.internet import ssl
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.threads import deferToThread
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.iweb import IAgent, IAgentEndpointFactory, IPolicyForHTTPS
from zope.interface import implementer

from mcpgated._twisted_compat import quiet_pool
from mcpgated.config import LimitsConfig
from mcpgated.model import DEFAULT_IDLE_TIMEOUT
from mcpgated.proxy.backend_client import BackendClient


class _NoDelayEndpoint:
    """
    Wraps a client endpoint to set TCP_NODELAY once connected: requests and
    SSE events are small writes that must not wait for Nagle.
    """

    def __init__(self, wrapped: Any) -> None:
        self._wrapped = wrapped

    def connect(self, factory: Any) -> Deferred[Any]:
        def connected(protocol: Any) -> Any:
            transport = getattr(protocol, "transport", None)
            while transport is not None and not hasattr(transport, "setTcpNoDelay"):
                transport = getattr(transport, "transport", None)
            if transport is not None:
                try:
                    transport.setTcpNoDelay(True)
                except OSError:
                    pass
            return protocol

        connecting: Deferred[Any] = self._wrapped.connect(factory)
        return connecting.addCallback(connected)


@implementer(IAgentEndpointFactory)
@attrs.define
class _CachingEndpointFactory:
    """
    Builds each backend's endpoint once (Agent rebuilds it, with IDNA
    checks, on every request otherwise).
    """

    reactor: Any
    connect_timeout: float
    policy: IPolicyForHTTPS
    _cache: Dict[Tuple[bytes, bytes, int], Any] = attrs.field(factory=dict)

    def endpointForURI(self, uri: Any) -> Any:
        key = (uri.scheme, uri.host, uri.port)
        endpoint = self._cache.get(key)
        if endpoint is None:
            host = uri.host.decode("ascii")
            endpoint = HostnameEndpoint(self.reactor, host, uri.port, timeout=self.connect_timeout)
            if uri.scheme == b"https":
                endpoint = wrapClientTLS(self.policy.creatorForNetloc(uri.host, uri.port), endpoint)
            endpoint = _NoDelayEndpoint(endpoint)
            if len(self._cache) < 10000:
                self._cache[key] = endpoint
        return endpoint


@attrs.define(slots=False)
class UpstreamPool(Service):
    """
    Owns the connection pool; closes idle backend connections on stop.

    @ivar limits: connect timeout and friends.
    """

    reactor: Any
    limits: LimitsConfig
    max_per_host: int = 256
    pool: HTTPConnectionPool = attrs.field(init=False)
    _agents: Dict[Optional[str], IAgent] = attrs.field(init=False, factory=dict)
    # one proxy client per (CA file, pool idle timeout): the per-API settings
    _clients: Dict[Tuple[Optional[str], float], BackendClient] = attrs.field(init=False,
                                                                            factory=dict)

    def __attrs_post_init__(self) -> None:
        self.pool = quiet_pool(self.reactor, persistent=True)  # no per-connection log lines
        self.pool.maxPersistentPerHost = self.max_per_host
        self.pool.cachedConnectionTimeout = 120
        self.pool.retryAutomatically = False

    def _build(self, policy: IPolicyForHTTPS) -> IAgent:
        factory = _CachingEndpointFactory(self.reactor, self.limits.connect_timeout, policy)
        agent: IAgent = Agent.usingEndpointFactory(self.reactor, factory, pool=self.pool)
        return agent

    async def _policy(self, ca_file: Optional[str]) -> IPolicyForHTTPS:
        """
        Verification against the system trust store, or against C{ca_file}
        (PEM, read off the reactor thread) when given.
        """
        if ca_file is None:
            return BrowserLikePolicyForHTTPS()
        pem = await deferToThread(_read, ca_file)
        return BrowserLikePolicyForHTTPS(trustRoot=ssl.Certificate.loadPEM(pem))

    async def agent(self, ca_file: Optional[str] = None) -> IAgent:
        """
        The agent for backends verified as L{_policy} says.
        """
        agent = self._agents.get(ca_file)
        if agent is None:
            policy = await self._policy(ca_file)
            agent = self._agents.setdefault(ca_file, self._build(policy))
        return agent

    def default_agent(self) -> IAgent:
        agent = self._agents.get(None)
        if agent is None:
            agent = self._agents[None] = self._build(BrowserLikePolicyForHTTPS())
        return agent

    def _build_client(self, policy: IPolicyForHTTPS, idle_timeout: float) -> BackendClient:
        endpoints = _CachingEndpointFactory(self.reactor, self.limits.connect_timeout, policy)
        return BackendClient(self.reactor, lambda scheme, host, port: endpoints.endpointForURI(
            _URI(scheme, host, port)), idle_timeout=idle_timeout,
            max_idle_per_host=self.max_per_host)

    async def client(self, ca_file: Optional[str] = None,
                     idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> BackendClient:
        """
        The proxy's client (L{BackendClient}) for backends verified as
        L{_policy} says, whose pool keeps idle connections for
        C{idle_timeout} seconds (an API's C{backendKeepAlive}).
        """
        key = (ca_file, idle_timeout)
        client = self._clients.get(key)
        if client is None:
            policy = await self._policy(ca_file)
            client = self._clients.setdefault(key, self._build_client(policy, idle_timeout))
        return client

    def default_client(self, idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> BackendClient:
        """
        The proxy's client for backends verified against the system trust
        store (the hot path: no Deferred).
        """
        key = (None, idle_timeout)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = self._build_client(BrowserLikePolicyForHTTPS(),
                                                             idle_timeout)
        return client

    def stopService(self) -> Deferred[Any]:
        Service.stopService(self)
        closing = [client.close_idle() for client in self._clients.values()]
        closing.append(self.pool.closeCachedConnections())
        return DeferredList(closing)


@attrs.frozen
class _URI:
    scheme: bytes
    host: bytes
    port: int


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
