"""
A minimal twisted.web streaming relay: the runtime's ceiling for mcpgated.
Same Twisted tuning as mcpgated (keep-alive pool, 256 per host; endpoints
built once, TCP_NODELAY; no form parsing; no access log; the backend as the
client's push producer), nothing else: no routing table, no header rules
beyond hop-by-hop, no logging, no timeouts.

Usage: python minirelay.py PORTFILE /prefix/=http://127.0.0.1:PORT ...
"""
import os
import sys

from twisted.internet import defer, reactor
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Protocol
from twisted.web import client, http, resource, server
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

HOP = frozenset([b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding",
                 b"upgrade", b"proxy-connection", b"host", b"content-length"])
RESPONSE_HOP = HOP - {b"content-length"}


@implementer(IBodyProducer)
class Body:
    def __init__(self, data):
        self.data, self.length = data, len(data)

    def startProducing(self, consumer):
        consumer.write(self.data)
        return defer.succeed(None)

    pauseProducing = resumeProducing = stopProducing = lambda self: None


@implementer(IAgentEndpointFactory)
class Endpoints:
    def __init__(self):
        self.cache = {}

    def endpointForURI(self, uri):
        if (uri.host, uri.port) not in self.cache:
            endpoint = HostnameEndpoint(reactor, uri.host.decode(), uri.port)
            self.cache[uri.host, uri.port] = NoDelay(endpoint)
        return self.cache[uri.host, uri.port]


class NoDelay:
    def __init__(self, endpoint):
        self.endpoint = endpoint

    def connect(self, factory):
        def nodelay(protocol):
            protocol.transport.setTcpNoDelay(True)
            return protocol
        return self.endpoint.connect(factory).addCallback(nodelay)


class Pipe(Protocol):
    def __init__(self, request):
        self.request, self.gone = request, False

    def connectionMade(self):
        self.request.registerProducer(self.transport, True)

    def dataReceived(self, data):
        if not self.gone:
            self.request.write(data)

    def connectionLost(self, reason):
        if self.gone:
            return
        self.request.unregisterProducer()
        if reason.check(client.ResponseDone, http.PotentialDataLoss):
            self.request.finish()
        else:
            self.request.channel.transport.abortConnection()


class Relay(resource.Resource):
    isLeaf = True

    def __init__(self, agent, routes):
        resource.Resource.__init__(self)
        self.agent, self.routes = agent, routes

    def render(self, request):
        origin = next(o for p, o in self.routes if request.uri.startswith(p))
        headers = Headers()
        for name, values in request.requestHeaders.getAllRawHeaders():
            if name.lower() not in HOP:
                headers.setRawHeaders(name, values)
        body = request.content.read()
        d = self.agent.request(request.method, origin + request.uri, headers,
                               Body(body) if body or request.method == b"POST" else None)
        state = {}

        def respond(response):
            request.setResponseCode(response.code, response.phrase)
            for name, values in response.headers.getAllRawHeaders():
                if name.lower() not in RESPONSE_HOP:
                    request.responseHeaders.setRawHeaders(name, values)
            if response.length is not client.UNKNOWN_LENGTH:  # consumed by the parser
                request.responseHeaders.setRawHeaders(b"content-length", [b"%d" % response.length])
            state["pipe"] = Pipe(request)
            response.deliverBody(state["pipe"])

        def failed(reason):
            if not state.get("gone"):
                request.setResponseCode(502)
                request.finish()

        def gone(reason):
            state["gone"] = True
            if "pipe" not in state:
                d.cancel()
            elif state["pipe"].transport is not None:
                state["pipe"].gone = True
                state["pipe"].transport.stopProducing()

        d.addCallback(respond).addErrback(failed)
        request.notifyFinish().addErrback(gone)
        return server.NOT_DONE_YET


def main(portfile, *mappings):
    pool = client.HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost, pool.cachedConnectionTimeout, pool.retryAutomatically = 256, 120, False
    agent = client.Agent.usingEndpointFactory(reactor, Endpoints(), pool=pool)
    routes = [(p.encode(), o.encode()) for p, _, o in (m.partition("=") for m in mappings)]
    site = server.Site(Relay(agent, routes))
    site._parsePOSTFormSubmission, site.noisy, site.log = False, False, lambda request: None
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    with open(portfile + ".tmp", "w") as f:
        f.write(str(port.getHost().port))
    os.replace(portfile + ".tmp", portfile)
    reactor.run()


if __name__ == "__main__":
    main(*sys.argv[1:])
