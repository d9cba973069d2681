"""
The gateway's resource: each request through a short pipeline of named
stages, and the backend's answer relayed, streaming.

    rebinding   Host and Origin (L{mcpgated.proxy.origin})
    target      the path, normalised (L{mcpgated.paths}); OAuth discovery
                documents (L{mcpgated.oauth.relay})
    route       the API (L{mcpgated.routing})
    read        the body, parsed once (L{mcpgated.mcp.body}): the value the
                gate judges and the observer records
    admission   credential, plan, routing headers, limits, access control,
                pinning (L{mcpgated.policy.interfaces.IAdmission})
    backend     the backend client (L{mcpgated.proxy.interfaces.IBackendClient})
    relay       the answer, through one response reader
                (L{mcpgated.mcp.responses}) that feeds the judge and the
                observer (L{mcpgated.analytics.interfaces.IExchangeObserver})

Every stage refuses by raising a L{Refusal}; L{GatewayResource._refuse}
answers them all, as JSON-RPC errors.
"""

from __future__ import annotations

import secrets
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Tuple
from urllib.parse import unquote_plus, urljoin, urlsplit

import attrs
from twisted.internet import error as neterror
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseFailed, ResponseNeverReceived
from twisted.web.iweb import UNKNOWN_LENGTH
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from mcpgated._twisted_compat import canonical_name, raw_headers
from mcpgated.analytics.interfaces import IExchangeObserver, IRecorder
from mcpgated.config import LimitsConfig
from mcpgated.forwarding import public_base_path, public_origin
from mcpgated.jsonrpc import (
    GATEWAY_ERROR,
    INVALID_REQUEST,
    REQUEST_ID,
    Refusal,
    error_body,
    refused_body,
    request_id,
)
from mcpgated.logs import AccessLog
from mcpgated.mcp.body import BodyError, RequestBody, check_bytes, check_headers, parse
from mcpgated.mcp.ids import canonical
from mcpgated.mcp.responses import MAX_READ, Judge, ResponseReader
from mcpgated.oauth.metadata import well_known_url
from mcpgated.oauth.relay import OAuthRelay
from mcpgated.oauth.wellknown import public_resource
from mcpgated.paths import BadPath, split_target
from mcpgated.policy.gate import Admission, AdmissionRequest
from mcpgated.policy.interfaces import IAdmission
from mcpgated.policy.pinstream import ShapeJudge
from mcpgated.proxy.headers import (
    copy_response_headers,
    is_event_stream,
    upstream_request_headers,
)
from mcpgated.proxy.balancer import Backend, Balancer, Member, Pool
from mcpgated.proxy.bridge import GatewayAnswer, ModernAnswerJudge, ModernBackend, admit_version
from mcpgated.proxy.classic import (
    ClassicBackend,
    ClassicForward,
    ClassicResume,
    caller_of,
    chained,
)
from mcpgated.proxy.interfaces import IBackendClient
from mcpgated.proxy.origin import host_allowed, is_loopback_address, origin_allowed
from mcpgated.proxy.relay import Relay
from mcpgated.proxy.upstream import UpstreamPool
from mcpgated.routing import Route, RouteTable
from mcpgated.sealing import KEY_BYTES, Sealer

if TYPE_CHECKING:
    from mcpgated.analytics.tracing import ExchangeSpan, Tracing

log = Logger()

_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})
# What MCP uses: POST for messages, GET for the SSE stream, DELETE to end a
# session, and HEAD and OPTIONS (CORS preflights); only POST has a body.
_MCP_METHODS = frozenset({b"GET", b"POST", b"DELETE", b"HEAD", b"OPTIONS"})
_ALLOW = b"GET, POST, DELETE, HEAD, OPTIONS"
_HOST = canonical_name(b"host")
_CONTENT_LENGTH = canonical_name(b"content-length")
_SESSION_HEADER = canonical_name(b"mcp-session-id")
_SESSION_PARAMS = frozenset({"sessionId", "session_id"})  # the legacy transport's POST URL
# MCP's "session not found" (the TypeScript SDK's code): the client starts a new session
SESSION_NOT_FOUND = -32001


class Exchange:
    """
    One client request through the gateway: what its stages found, for the
    access log, the backend header timeout and the idle watchdog.

    Made once per request: a plain class whose state most exchanges never
    change defaults at class level.
    """

    api: Optional[Route] = None
    bytes_in = 0
    bytes_out = 0
    last_activity = 0.0
    relay: Optional[Relay] = None
    work: Optional[Deferred[None]] = None
    pending: Optional[Deferred[Any]] = None  # the backend request, until its headers
    deadline = 0.0  # when the backend must have sent its headers
    client_gone = False
    timed_out = False
    logged = False
    observer: Optional[IExchangeObserver] = None
    trace: Optional[ExchangeSpan] = None  # [tracing] on: the exchange's spans
    body: Optional[RequestBody] = None  # the body, parsed once
    peer: Optional[str] = None
    origin = ""  # the origin the client used (its Host, or a trusted proxy's word)
    # load-balanced APIs: the pool, the endpoint serving the exchange, and the
    # client's sealed session id and the backend's id it unsealed to
    pool: Optional[Pool] = None
    member: Optional[Member] = None
    sealed: Optional[str] = None
    session: Optional[str] = None
    tried: Tuple[Member, ...] = ()  # endpoints that could not be reached
    classic: Optional[ClassicForward] = None  # a 2026-07-28 client's request to an older backend
    backend_version: Optional[str] = None  # bridged: the version the backend is spoken to in
    rest = ""  # the path after the context path, and the query, for another endpoint
    query = b""

    def __init__(self, request: Any, started: float, status: Optional[int] = None) -> None:
        self.request = request
        self.started = started
        self.status = status


@attrs.define(slots=False)
class GatewayResource(Resource):
    """
    The data plane. Every path is routed through L{RouteTable}.
    """

    routes: RouteTable
    upstreams: UpstreamPool
    clock: IReactorTime
    access_log: AccessLog
    limits: LimitsConfig
    public_url: Optional[str] = None
    trusted_proxies: Iterable[Any] = ()
    recorder: Optional[IRecorder] = None
    allowed_hosts: Tuple[str, ...] = ()
    allowed_origins: Tuple[str, ...] = ()
    gate: Optional[IAdmission] = None
    _backends: Dict[str, Backend] = attrs.field(factory=dict)
    _bridge: Optional[ModernBackend] = None
    _classic: Optional[ClassicBackend] = None
    oauth: Optional[OAuthRelay] = None  # secured backends; built from the above when None
    # Timeouts: one sweep for all exchanges instead of timers per request.
    _awaiting: Dict[Exchange, None] = attrs.field(factory=dict)  # backend headers due
    _relaying: Dict[Exchange, None] = attrs.field(factory=dict)  # bodies being relayed
    _sweeper: Optional[LoopingCall] = None
    _public_origin: str = ""
    # load-balanced APIs ("endpoints"): their pools, and the session ids' seal
    # (the tap's from [gateway] session_key_file; by default a key of this
    # process's own, which no other process opens)
    balancer: Balancer = attrs.field(
        default=attrs.Factory(lambda self: Balancer(self.clock), takes_self=True))
    sealer: Sealer = attrs.field(factory=lambda: Sealer([secrets.token_bytes(KEY_BYTES)]))
    tracing: Optional[Tracing] = None  # [tracing] otlp_endpoint (mcpgated.analytics.tracing)

    isLeaf = True

    def __attrs_post_init__(self) -> None:
        Resource.__init__(self)
        if self.public_url:
            parts = urlsplit(self.public_url)
            self._public_origin = f"{parts.scheme}://{parts.netloc}"
        if self.oauth is None:
            self.oauth = OAuthRelay(self.upstreams.agent, self.clock,
                                    self.public_url, self.trusted_proxies)

    # --- entry -----------------------------------------------------------------------

    def render(self, request: Any) -> Any:
        exchange = Exchange(request=request, started=self.clock.seconds())
        notify_gone = getattr(request, "notify_gone", None)  # the fast listener's
        finished = request.notifyFinish() if notify_gone is None else None
        work = Deferred.fromCoroutine(self._proxy(request, exchange))
        if not exchange.logged:  # still running (answered at once otherwise)
            exchange.work = work
        if notify_gone is not None:
            notify_gone(self._client_gone, exchange)
        elif finished is not None:
            finished.addErrback(self._client_gone, exchange)
        return NOT_DONE_YET

    def _client_gone(self, reason: Failure, exchange: Exchange) -> None:
        exchange.client_gone = True
        classic = exchange.classic
        if classic is not None and not exchange.logged:
            # to 2026-07-28 clients, leaving is cancelling; older backends are told
            classic.cancel()
        if exchange.relay is not None:
            exchange.relay.stop()
        elif exchange.work is not None and not exchange.work.called:
            exchange.work.cancel()

    # --- the pipeline ----------------------------------------------------------------------

    async def _proxy(self, request: Any, exchange: Exchange) -> None:
        """
        The exchange, its refusals answered; nothing escapes it (so its
        Deferred needs no errback).
        """
        if self.tracing is not None:
            exchange.trace = self.tracing.exchange(request.requestHeaders)
        try:
            await self._stages(request, exchange)
        except Refusal as refusal:
            self._refuse(exchange, refusal)
        except CancelledError:
            if not exchange.client_gone:
                log.failure("gateway request cancelled")
                self._error(exchange, 502, "The gateway failed to relay this request")
            else:
                self._log(exchange, "client_closed")
        except Exception:  # noqa: BLE001 -- a bug: logged, answered 502, the gateway goes on
            log.failure("gateway request failed")
            self._error(exchange, 502, "The gateway failed to relay this request")

    async def _stages(self, request: Any, exchange: Exchange) -> None:
        self._rebinding(request)
        routes = self.routes
        if not routes.ready:
            await routes.when_ready()
        path, query = self._target(request)
        headers_in = request.requestHeaders
        exchange.peer = peer = _peer(request)
        exchange.origin = client_origin = public_origin(headers_in, request.isSecure(), peer,
                                                        None, self.trusted_proxies)
        # the gateway's public origin: [gateway] public_url's, else the client's
        origin = self._public_origin or client_origin
        assert self.oauth is not None
        discovery = self.oauth.discovery(path, routes, request, origin=client_origin)
        if discovery is not None:  # OAuth documents the gateway answers itself
            await self._discovery(request, exchange, discovery)
            return
        route, rest = self._route(path)
        exchange.api = route
        definition = route.definition
        gate = self.gate
        gated = gate is not None and gate.needed(definition)
        body = self._read(request, exchange, gated)
        method = request.method
        recorder = self.recorder
        if recorder is not None:
            observer = exchange.observer = recorder.observer(
                route.api_id, definition, peer, exchange.started, method)
            observer.request(headers_in, request.uri, len(body), exchange.body)
        trace = exchange.trace
        if trace is not None:
            trace.read(exchange.body, route.api_id, definition.name, method)
            trace.inner = exchange.observer
        if definition.protocol is not None:  # the versions accepted (mcpgated.proxy.bridge)
            body = admit_version(request, exchange, definition.protocol, body)
        headers = upstream_request_headers(headers_in, peer, origin, self.trusted_proxies)
        if definition.endpoints:  # load-balanced: the endpoint, and the session unsealed
            backend, query = self._balance(request, exchange, route, rest, query, headers)
        else:
            backend = self._backend(definition.backend)
        url = backend.target(rest, query)
        # set here, or the client computes it (with IDNA checks) on every request;
        # into the dictionary: the authority of a backend URL that was validated
        if backend.authority is not None:
            raw_headers(headers)[_HOST] = [backend.authority]
        admission = None
        if gated:
            admission = await self._admission(request, exchange, route, query, body)
            if admission is None:
                return  # answered by the gateway (every call denied)
            body = admission.body
            if admission.query != query:
                url = backend.target(rest, admission.query)
                exchange.query = admission.query
            for name in admission.strip_headers:
                headers.removeHeader(name)
            for name, value in admission.set_headers:
                headers.setRawHeaders(name, [value])
        protocol = definition.protocol
        if protocol is not None and protocol.to_modern:  # a 2026-07-28 backend (proxy.bridge)
            bridged = await self._modern_backend().translate(
                route.api_id, protocol, request, body, url, headers, definition.backend_ca_file)
            if bridged is not body:  # a handshake-era client's (a 2026-07-28 one's is passed)
                _bridged(exchange, protocol.backend_version)
            if isinstance(bridged, GatewayAnswer):
                self._answer(exchange, bridged.payload, bridged.status, bridged.headers, "complete")
                return
            body = bridged
            if body and method != b"POST":  # the GET stream, sent as subscriptions/listen
                method = b"POST"
        classic = None
        if protocol is not None and protocol.to_classic:  # an older backend (proxy.classic)
            translated = await self._classic_backend().translate(
                route.api_id, protocol, request, body, url, headers, definition.backend_ca_file,
                caller_of(admission.principal if admission is not None else None, exchange.peer))
            if translated is not body:  # a 2026-07-28 client's (an older one's is passed)
                _bridged(exchange, translated.session.version if isinstance(
                    translated, ClassicForward) else translated.forward.session.version
                    if isinstance(translated, ClassicResume) else protocol.backend_version)
            if isinstance(translated, GatewayAnswer):
                self._answer(exchange, translated.payload, translated.status, translated.headers,
                             "complete")
                return
            if isinstance(translated, ClassicResume):  # the client's input: a parked answer
                self._resume(exchange, translated)
                return
            if isinstance(translated, ClassicForward):
                classic = exchange.classic = translated
                body, method = translated.body, translated.method
            else:
                body = translated
        if trace is not None:  # the backend call's span, in its traceparent
            trace.backend(headers, url)
        client = self.upstreams.default_client(definition.backend_keep_alive.idle_timeout) \
            if definition.backend_ca_file is None else await self._client(route)
        send = body if body or method in _BODY_METHODS else None
        sent = self.clock.seconds()
        response = await self._send(exchange, client, method, url, headers, send)
        if response is None:
            return
        if classic is not None:
            response = await self._classic_answer(exchange, route, classic, client, url, headers,
                                                  response)
            if response is None:
                return
        self._relay(request, exchange, route, backend, url, admission, response, sent)

    # --- the stages ----------------------------------------------------------------------

    def _rebinding(self, request: Any) -> None:
        """
        @raise Refusal: 403 naming the key that would allow it, the
            request's Host or Origin is not allowed; logged once per value.
        """
        on_loopback = is_loopback_address(getattr(request.getHost(), "host", None))
        raw = request.getHeader(b"host")
        host = raw.decode("latin-1") if raw else None
        if not host_allowed(host, on_loopback, self.allowed_hosts, self.public_url):
            from mcpgated.proxy.origin import refusal_log  # refusals only: off the hot path

            refusal_log(self).refused("Host", host, "allowed_hosts", _peer(request))
            raise Refusal(403, "Host header not allowed by this gateway ([gateway] allowed_hosts)",
                          outcome="gateway_error")
        raw = request.getHeader(b"origin")
        origin = raw.decode("latin-1") if raw else None
        if not origin_allowed(origin, on_loopback, self.allowed_origins, self.public_url):
            from mcpgated.proxy.origin import refusal_log  # refusals only: off the hot path

            refusal_log(self).refused("Origin", origin, "allowed_origins", _peer(request))
            raise Refusal(403, "Origin not allowed by this gateway ([gateway] allowed_origins)",
                          outcome="gateway_error")

    def _target(self, request: Any) -> Tuple[str, bytes]:
        """
        The normalised path (what routes is what the backend is sent) and query.

        @raise Refusal: 400, a path the gateway does not take.
        """
        try:
            return split_target(request.uri)
        except BadPath as e:
            raise Refusal(400, str(e), outcome="bad_request", code=INVALID_REQUEST,
                          id=None) from None

    def _route(self, path: str) -> Tuple[Route, str]:
        match = self.routes.match(path)
        if match is None:
            raise Refusal(404, f"No MCP API is deployed at {path}", outcome="gateway_error")
        return match

    def _read(self, request: Any, exchange: Exchange, gated: bool) -> bytes:
        """
        The body, read as the backend reads it, or refused
        (L{mcpgated.mcp.body}); parsed once into C{exchange.body} when the
        gate or the exchange log reads it.

        @raise Refusal: 405, 415 or 400.
        """
        method = request.method
        body: bytes = request.content.getvalue()
        exchange.bytes_in = len(body)
        try:
            if method == b"POST":
                if body:
                    headers_in = raw_headers(request.requestHeaders)
                    check_headers(headers_in.get(b"Content-Type"),
                                  headers_in.get(b"Content-Encoding"))
                    if gated or ((self.recorder is not None or self.tracing is not None)
                                 and len(body) <= MAX_READ):
                        exchange.body = parse(body)
                    else:
                        check_bytes(body)
            elif method not in _MCP_METHODS:
                raise Refusal(405, "MCP messages are sent with POST", outcome="bad_request",
                              code=INVALID_REQUEST, id=None, extra_headers=((b"allow", _ALLOW),))
            elif body:
                raise Refusal(400, f"A {method.decode('latin-1')} request must not have a body",
                              outcome="bad_request", code=INVALID_REQUEST, id=None)
        except BodyError as e:
            raise refused_body(e) from None
        return body

    async def _admission(self, request: Any, exchange: Exchange, route: Route, query: bytes,
                         body: bytes) -> Optional[Admission]:
        """
        Run the gate. Returns the admission, or L{None} when the gateway
        answered (every call denied).

        @raise Refusal: the gate refused the request.
        """
        assert self.gate is not None
        resource = public_resource(route, self.public_url, exchange.origin)  # the tokens' audience
        challenge = f'Bearer resource_metadata="{well_known_url(resource)}"'
        scopes = sorted({s for p in route.definition.plans if p.status == "PUBLISHED"
                         for s in p.configuration.get("requiredScopes", ())})
        if scopes:
            challenge += f', scope="{" ".join(scopes)}"'
        admission: Admission = await self.gate.admit(AdmissionRequest(
            route.api_id, route.definition, request.method, request.requestHeaders, query,
            request.args, body, exchange.body, exchange.peer, challenge, resource))
        if exchange.observer is not None:
            exchange.observer.admitted(admission.principal, admission.denied, admission.would_deny)
        if exchange.trace is not None:
            exchange.trace.principal(admission.principal)
        if admission.answer is not None:
            self._answer(exchange, admission.answer)
            return None
        return admission

    async def _client(self, route: Route) -> IBackendClient:
        """
        The client of a backend verified with the API's own CA file (the
        others use the default client, without a coroutine).

        @raise Refusal: 502, the API's backend CA file cannot be loaded.
        """
        ca_file = route.definition.backend_ca_file
        assert ca_file is not None
        idle_timeout = route.definition.backend_keep_alive.idle_timeout
        try:
            return await self.upstreams.client(ca_file, idle_timeout)
        except Exception as e:  # noqa: BLE001 -- any failure to load it is the same 502
            log.error("API {api_id}: cannot load backendCaFile {path}: {error}",
                      api_id=route.api_id, path=ca_file, error=str(e))
            raise Refusal(502, "The gateway cannot load the backend's CA file",
                          outcome="gateway_error") from None

    async def _send(self, exchange: Exchange, client: IBackendClient, method: bytes, url: bytes,
                    headers: Any, body: Optional[bytes]) -> Any:
        """
        The backend's response (its status and headers), or L{None} when the
        request failed (answered) or the client left.
        """
        pending = exchange.pending = client.request(method, url, headers, body)
        exchange.deadline = self.clock.seconds() + self.limits.header_timeout
        self._awaiting[exchange] = None
        if self._sweeper is None:
            self._sweep_soon()
        try:
            response = await pending
        except Exception as e:
            if exchange.client_gone:
                raise CancelledError() from e
            member = exchange.member
            if member is not None and self._endpoint_failed(exchange, e):
                # another endpoint: the failed one never saw the request
                other = exchange.member
                assert other is not None
                backend = other.backend
                if backend.authority is not None:
                    raw_headers(headers)[_HOST] = [backend.authority]
                return await self._send(exchange, client, method,
                                        backend.target(exchange.rest, exchange.query), headers,
                                        body)
            self._upstream_failed(exchange, e)
            return None
        finally:
            self._awaiting.pop(exchange, None)
            exchange.pending = None
        if exchange.client_gone:
            response.deliverBody(_Discard())
            return None
        return response

    def _relay(self, request: Any, exchange: Exchange, route: Route, backend: Backend,
               url: bytes, admission: Optional[Admission], response: Any, sent: float) -> None:
        """
        Relay the backend's answer: headers now, the body as it comes,
        through one response reader when the answer is judged or watched.
        """
        code = exchange.status = response.code
        headers_up = response.headers
        event_stream = is_event_stream(headers_up)
        observer = exchange.observer if exchange.trace is None else exchange.trace
        now = self.clock.seconds()
        member = exchange.member
        if member is not None:  # load-balanced: passive health, the session id sealed
            self._answered(exchange, route, member, code, headers_up)
            if exchange.tried:  # sent on to another endpoint
                backend = member.backend
                url = backend.target(exchange.rest, exchange.query)
        classic = exchange.classic
        if exchange.backend_version is not None and classic is None \
                and (code == 400 or code == 404) and not event_stream:
            # a 2026-07-28 backend's JSON-RPC error, to a handshake-era client: on a 200
            code = exchange.status = 200
        if observer is not None:
            observer.response(code, headers_up, round((now - sent) * 1000, 3), event_stream)
        request.setResponseCode(code, response.phrase if code == response.code else b"OK")
        if code == 401 or code == 403:
            # A challenge names the gateway's OAuth metadata (mcpgated.oauth).
            assert self.oauth is not None
            headers_up = self.oauth.response_headers(route, request, response, url,
                                                     origin=exchange.origin)
        copy_response_headers(headers_up, request.responseHeaders)
        if response.length is not UNKNOWN_LENGTH and request.method != b"HEAD":
            # The client parser consumes Content-Length; keep the framing.
            raw_headers(request.responseHeaders)[_CONTENT_LENGTH] = [b"%d" % response.length]
        judge: Optional[Judge] = None
        endpoint: Optional[Callable[[str], str]] = None
        if event_stream:
            request.responseHeaders.setRawHeaders(b"cache-control", [b"no-cache"])
            request.responseHeaders.setRawHeaders(b"x-accel-buffering", [b"no"])
            if request.method == b"GET":
                origin = self._public_origin or exchange.origin
                endpoint = lambda value: self._rewrite_endpoint(  # noqa: E731
                    value, backend, url, route, origin, member)
        if admission is not None and 200 <= response.code < 300:
            if event_stream and request.method == b"GET":
                if admission.judges_streams:
                    # the legacy transport answers lists here: judged by shape, as
                    # pages, by the pins and this caller's access control
                    if admission.pinning is not None:
                        admission.pinning.paged = True
                    judge = ShapeJudge(admission.filter_result)
            elif admission.rewrites:
                judge = admission.judge()
                # the body changes length: let the server chunk it
                request.responseHeaders.removeHeader(b"content-length")
                if not event_stream and response.code == 202 and admission.extra:
                    request.setResponseCode(200)
                    request.responseHeaders.setRawHeaders(b"content-type",
                                                          [b"application/json"])
        if classic is not None:  # in 2026-07-28's terms, after the gate's judging
            request.responseHeaders.removeHeader(b"content-length")
            request.responseHeaders.removeHeader(b"mcp-session-id")
            judge = classic.judge if judge is None else chained(judge, classic.judge)
            endpoint = None
        elif exchange.backend_version is not None:  # a 2026-07-28 backend's, to an older client
            request.responseHeaders.removeHeader(b"content-length")
            judge = _MODERN_ANSWER if judge is None else chained(judge, _MODERN_ANSWER)
            endpoint = None
        reader = None
        if judge is not None or endpoint is not None or observer is not None:
            reader = ResponseReader(event_stream, judge, observer, endpoint)
        exchange.last_activity = now
        if classic is None:
            relay = Relay(
                request,
                self.clock,
                done=lambda outcome, reason: self._finished(exchange, outcome, reason),
                on_data=lambda n: self._activity(exchange, n),
                transform=reader.feed if reader is not None else None,
                flush=reader.flush if reader is not None else None,
            )
        else:
            assert reader is not None
            relay = self._classic_relay(exchange, classic, reader, event_stream, response)
        exchange.relay = relay
        self._relaying[exchange] = None
        if self._sweeper is None:
            self._sweep_soon()
        if event_stream or response.length is UNKNOWN_LENGTH:
            # A stream's status and headers go out now, not with its first
            # event, which may be minutes away (a client waits for them).
            request.write(classic.preamble if classic is not None else b"")
        response.deliverBody(relay)

    # --- answers the gateway gives itself ---------------------------------------------------

    def _answer(self, exchange: Exchange, payload: bytes, status: int = 200,
                headers: Tuple[Tuple[bytes, bytes], ...] = (), outcome: str = "denied") -> None:
        """
        A JSON-RPC answer the gateway gives itself (denied calls, bridged
        sessions): HTTP 200 by default.
        """
        request = exchange.request
        exchange.status = status
        request.setResponseCode(status)
        if payload:
            request.responseHeaders.setRawHeaders(b"content-type", [b"application/json"])
        request.responseHeaders.setRawHeaders(b"content-length", [b"%d" % len(payload)])
        for name, value in headers:
            request.responseHeaders.setRawHeaders(name, [value])
        observer = exchange.observer if exchange.trace is None else exchange.trace
        if observer is not None:
            observer.response(status, request.responseHeaders, 0.0, False)
            reader = ResponseReader(False, observer=observer)
            reader.feed(payload)
            reader.flush()
        request.write(payload)
        request.finish()
        exchange.bytes_out += len(payload)
        self._log(exchange, outcome)

    def _classic_relay(self, exchange: Exchange, classic: ClassicForward, reader: ResponseReader,
                       event_stream: bool, response: Any) -> Relay:
        """
        The relay of a bridged 2026-07-28 call's answer: a JSON error on
        2026-07-28's status, and parked when the backend asks for input.
        """
        flush = reader.flush
        if not event_stream and response.length is not UNKNOWN_LENGTH:
            flush = partial(self._classic_flush, exchange, reader, classic)
        parks = on_park = None
        if classic.closing is None:  # input requests park the answer (not a listen stream's)
            classic.reader = reader
            parks = partial(_parking, classic.judge, reader)
            on_park = partial(self._classic_backend().park, forward=classic)
        return Relay(
            exchange.request,
            self.clock,
            done=lambda outcome, reason: self._finished(exchange, outcome, reason),
            on_data=lambda n: self._activity(exchange, n),
            transform=reader.feed,
            flush=flush,
            parks=parks,
            on_park=on_park,
        )

    def _classic_flush(self, exchange: Exchange, reader: Any, classic: ClassicForward) -> bytes:
        """
        The held JSON answer of a bridged 2026-07-28 call, on the status
        2026-07-28 gives its error (a handshake-era backend sends 200).
        """
        out: bytes = reader.flush()
        status = classic.judge.status
        if status is not None and exchange.status == 200:
            exchange.status = status
            exchange.request.setResponseCode(status)
        return out

    def _resume(self, exchange: Exchange, resume: ClassicResume) -> None:
        """
        Relay a parked answer (its backend asked for input) to the client's
        retry that brought the input.
        """
        request = exchange.request
        exchange.status = 200
        request.setResponseCode(200)
        for name, value in ((b"content-type", b"text/event-stream"),
                            (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")):
            request.responseHeaders.setRawHeaders(name, [value])
        observer = exchange.observer if exchange.trace is None else exchange.trace
        if observer is not None:
            observer.response(200, request.responseHeaders, 0.0, True)
        exchange.classic = forward = resume.forward
        if forward.reader is not None:  # the rest of the answer is this exchange's
            forward.reader.observe_with(observer)
        exchange.last_activity = self.clock.seconds()
        relay = exchange.relay = resume.relay
        self._relaying[exchange] = None
        if self._sweeper is None:
            self._sweep_soon()
        request.write(b"")
        relay.attach(request, lambda outcome, reason: self._finished(exchange, outcome, reason),
                     lambda n: self._activity(exchange, n), resume.forward.judge.resume(
                         resume.client_id))

    def _classic_backend(self) -> ClassicBackend:
        bridge = self._classic
        if bridge is None:
            bridge = self._classic = ClassicBackend(self.upstreams.agent, self.clock,
                                                    self.limits.header_timeout)
        return bridge

    async def _classic_answer(self, exchange: Exchange, route: Route, classic: ClassicForward,
                              client: IBackendClient, url: bytes, headers: Any, response: Any
                              ) -> Any:
        """
        The backend's answer to a bridged 2026-07-28 request: sent again
        through a new backend session when the old one expired (404), and a
        listen stream the backend cannot open answered with an error.
        """
        definition = route.definition
        protocol = definition.protocol
        assert protocol is not None
        if exchange.tried and exchange.member is not None:  # sent on to another endpoint
            url = exchange.member.backend.target(exchange.rest, exchange.query)
        if response.code == 404 and classic.key is not None and not classic.renewed:
            response.deliverBody(_Discard())
            await self._classic_backend().renew(route.api_id, protocol, classic, url, headers,
                                                definition.backend_ca_file)
            response = await self._send(exchange, client, classic.method, url, headers,
                                        classic.body)
            if response is None:
                return None
        if classic.closing is not None and not (response.code == 200
                                                and is_event_stream(response.headers)):
            response.deliverBody(_Discard())
            listen_id = classic.judge.listen[0] if classic.judge.listen else None
            self._answer(exchange, error_body(
                GATEWAY_ERROR, f"The backend has no notification stream (HTTP {response.code})",
                listen_id), 200, outcome="gateway_error")
            return None
        return response

    def _modern_backend(self) -> ModernBackend:
        bridge = self._bridge
        if bridge is None:
            bridge = self._bridge = ModernBackend(self.sealer, self.upstreams.agent, self.clock,
                                                  self.limits.header_timeout)
        return bridge

    async def _discovery(self, request: Any, exchange: Exchange, discovery: Any) -> None:
        """
        Answer an OAuth discovery request (L{mcpgated.oauth.relay}).
        """
        exchange.api = discovery.route
        assert self.oauth is not None
        answer = await self.oauth.answer(discovery, request, origin=exchange.origin)
        for name, value in answer.headers:
            request.responseHeaders.setRawHeaders(name, [value])
        if answer.message is not None:
            self._error(exchange, answer.status, answer.message)
            return
        exchange.status = answer.status
        request.setResponseCode(answer.status)
        if answer.status != 204:
            request.responseHeaders.setRawHeaders(b"content-length", [b"%d" % len(answer.body)])
        if answer.body and request.method != b"HEAD":
            request.write(answer.body)
            exchange.bytes_out = len(answer.body)
        request.finish()
        self._log(exchange, "complete")

    def _upstream_failed(self, exchange: Exchange, e: Exception) -> None:
        if exchange.timed_out:
            self._error(exchange, 504, "The backend did not send response headers in time")
        elif isinstance(e, (neterror.TimeoutError, neterror.TCPTimedOutError)):
            self._error(exchange, 504, "Connecting to the backend timed out")
        elif isinstance(e, (neterror.ConnectError, neterror.DNSLookupError)):
            self._error(exchange, 502, f"The backend is unreachable: {_reason(e)}")
        elif isinstance(e, (ResponseNeverReceived, ResponseFailed)):
            self._error(exchange, 502, f"The backend closed the connection: {_reason(e)}")
        else:
            log.failure("backend request failed", Failure(e))
            self._error(exchange, 502, "The backend request failed")

    def _activity(self, exchange: Exchange, count: int) -> None:
        exchange.bytes_out += count
        exchange.last_activity = self.clock.seconds()

    def _sweep_soon(self) -> None:
        if self._sweeper is None:
            limits = self.limits
            interval = max(0.01, min(1.0, limits.header_timeout / 4, limits.idle_timeout / 4))
            self._sweeper = LoopingCall(self._sweep)
            self._sweeper.clock = self.clock
            self._sweeper.start(interval, now=False)

    def stop(self) -> None:
        """
        Stop the timeout sweep (at shutdown; it stops by itself when idle).
        """
        if self._sweeper is not None:
            self._sweeper.stop()
            self._sweeper = None
        if self._classic is not None:
            self._classic.stop()

    def _sweep(self) -> None:
        """
        Fail backend requests past their header deadline and close streams
        idle or stalled for C{idle_timeout}; stop sweeping when nothing is
        left to watch.
        """
        now = self.clock.seconds()
        if self._awaiting:
            for exchange in [e for e in self._awaiting if now >= e.deadline]:
                del self._awaiting[exchange]
                exchange.timed_out = True
                if exchange.pending is not None:
                    exchange.pending.cancel()
        if self._relaying:
            idle_timeout = self.limits.idle_timeout
            for exchange in [e for e in self._relaying if now - e.last_activity >= idle_timeout]:
                del self._relaying[exchange]
                self._idle(exchange, now - exchange.last_activity)
        if not self._awaiting and not self._relaying and self._sweeper is not None:
            self._sweeper.stop()
            self._sweeper = None

    def _idle(self, exchange: Exchange, idle: float) -> None:
        log.info("closing a stream idle or stalled for {seconds:.0f}s on {path}",
                 seconds=idle, path=exchange.request.path)
        relay = exchange.relay
        if relay is not None:
            relay.stop()
        transport = getattr(exchange.request.channel, "transport", None)
        if transport is not None:
            transport.abortConnection()

    def _finished(self, exchange: Exchange, outcome: str, reason: Optional[Failure]) -> None:
        self._relaying.pop(exchange, None)
        if outcome == "upstream_error" and reason is not None:
            log.info("backend stream for {path} ended abnormally: {reason}",
                     path=exchange.request.path, reason=reason.getErrorMessage())
        self._log(exchange, outcome)
        exchange.relay = None  # no cycle left for the garbage collector

    # --- load-balanced APIs ------------------------------------------------------------

    def _balance(self, request: Any, exchange: Exchange, route: Route, rest: str,
                 query: bytes, headers: Any) -> Tuple[Backend, bytes]:
        """
        The endpoint of a load-balanced API for this request: the one its
        sealed session id names (the backend's id put in the upstream
        C{headers}, or in the query for the legacy transport's POSTs), else
        one the pool picks.

        @raise Refusal: 404 "session not found", a session id this gateway
            did not seal for this API, or whose endpoint is gone or down.
        """
        pool = exchange.pool = self.balancer.pool(route)
        # every session id the request carries: the header's values, and the
        # query's session parameters however spelt (a backend reads the last,
        # or an escaped name): each must open to the same session
        tokens = [value.decode("latin-1") for value in
                  raw_headers(request.requestHeaders).get(_SESSION_HEADER) or ()]
        in_query = b"ession" in query or b"%" in query
        if in_query:
            tokens.extend(_session_params(query.decode("latin-1")))
        protocol = route.definition.protocol
        if protocol is not None and protocol.to_modern:
            tokens = []  # the gateway's own session ids; the backend has none (any endpoint)
        now = self.clock.seconds()
        if not tokens:
            member = pool.pick(now)
            assert member is not None  # a pool has members and excludes none here
        else:
            unseal = self.sealer.unseal
            opened = unseal(route.api_id, tokens[0])
            found_member = pool.by_id(opened[0]) if opened is not None else None
            if (opened is None or found_member is None or not found_member.healthy(now)
                    or any(unseal(route.api_id, other) != opened for other in tokens[1:])):
                raise Refusal(404, "Session not found", outcome="bad_request",
                              code=SESSION_NOT_FOUND)
            member = found_member
            exchange.sealed, exchange.session = tokens[0], opened[1]
            session = opened[1]
            if in_query:
                query = _replace_session_params(query.decode("latin-1"),
                                                lambda _: session).encode("latin-1")
            if _SESSION_HEADER in raw_headers(headers):
                raw_headers(headers)[_SESSION_HEADER] = [session.encode("latin-1")]
        member.active += 1
        exchange.member = member
        exchange.rest, exchange.query = rest, query
        return member.backend, query

    def _endpoint_failed(self, exchange: Exchange, e: Exception) -> bool:
        """
        A load-balanced request failed before any answer: the endpoint's
        health noted. Whether to try another endpoint: only when the failed
        one never got the request (no connection) and no session ties the
        request to it.

        @raise Refusal: 404 "session not found", the session's endpoint
            cannot be reached (its sessions are gone: the client starts anew).
        """
        member, pool = exchange.member, exchange.pool
        assert member is not None and pool is not None
        unreachable = not exchange.timed_out and isinstance(
            e, (neterror.ConnectError, neterror.DNSLookupError, neterror.TimeoutError))
        pool.failed(member, self.clock.seconds(), refused=unreachable)
        if not unreachable:
            return False
        if exchange.session is not None:
            raise Refusal(404, "Session not found", outcome="bad_request",
                          code=SESSION_NOT_FOUND)
        tried = exchange.tried = (*exchange.tried, member)
        other = pool.pick(self.clock.seconds(), exclude=tried)
        if other is None:
            return False
        member.active -= 1
        other.active += 1
        exchange.member = other
        return True

    def _answered(self, exchange: Exchange, route: Route, member: Member, code: int,
                  headers_up: Any) -> None:
        """
        A load-balanced endpoint answered: its health noted, and the session
        id it gives sealed (the client's own sealed id kept when it names
        the same session, so one session has one id).
        """
        pool = exchange.pool
        assert pool is not None
        if code >= 500:
            pool.failed(member, self.clock.seconds(), refused=False)
        elif member.failures:
            pool.succeeded(member)
        raw_up = raw_headers(headers_up)
        raw = raw_up.get(_SESSION_HEADER)
        if raw:
            session = raw[0].decode("latin-1")
            if session == exchange.session and exchange.sealed is not None:
                sealed = exchange.sealed
            else:
                sealed = self.sealer.seal(route.api_id, member.id, session)
            raw_up[_SESSION_HEADER] = [sealed.encode("ascii")]

    def _rewrite_endpoint(self, value: str, backend: Backend, url: bytes, route: Route,
                          origin: str, member: Optional[Member] = None) -> str:
        absolute = urljoin(url.decode("latin-1"), value.strip())
        rest = backend.public_path(absolute)
        if rest is None:
            log.warn("legacy endpoint {value} of API {api} is outside its backend URL {backend};"
                     " set the backend to the server's base URL", value=value,
                     api=route.api_id, backend=backend.url)
            rest = urlsplit(absolute).path
        query = urlsplit(absolute).query
        if member is not None:  # the session it names, sealed
            sealer = self.sealer
            query = _replace_session_params(
                query, lambda session: sealer.seal(route.api_id, member.id, session))
        public = origin + public_base_path(self.public_url) + route.context_path + rest
        return public + ("?" + query if query else "")

    def _backend(self, url: str) -> Backend:
        backend = self._backends.get(url)
        if backend is None:
            if len(self._backends) > 10000:
                self._backends.clear()
            backend = self._backends[url] = Backend.parse(url)
        return backend

    # --- errors and the access log -------------------------------------------------------

    def _refuse(self, exchange: Exchange, refusal: Refusal) -> None:
        """
        Answer a refusal: its headers, and its JSON-RPC error.
        """
        for name, value in refusal.headers():
            exchange.request.responseHeaders.setRawHeaders(name, [value])
        if exchange.trace is not None:
            exchange.trace.refused(refusal.status, refusal.code, refusal.message, refusal.outcome)
        self._error(exchange, refusal.status, refusal.message, code=refusal.code,
                    id=refusal.id, outcome=refusal.outcome, data=refusal.data)

    def _error(self, exchange: Exchange, status: int, message: str, code: int = GATEWAY_ERROR,
               id: Any = REQUEST_ID, outcome: str = "gateway_error",
               data: Optional[Dict[str, Any]] = None) -> None:
        """
        Answer with a JSON-RPC error: C{id} as given (L{None}: null), or by
        default the id of the request body, when it is a request the gateway
        can read.
        """
        request = exchange.request
        exchange.status = status
        if exchange.client_gone:
            self._log(exchange, "client_closed")
            return
        if id is REQUEST_ID:
            id = _request_id(exchange)
        payload = error_body(code, message, id, {"httpStatus": status} if data is None
                             else dict(data, httpStatus=status))
        request.setResponseCode(status)
        request.responseHeaders.setRawHeaders(b"content-type", [b"application/json"])
        request.responseHeaders.setRawHeaders(b"content-length", [str(len(payload)).encode()])
        request.write(payload)
        request.finish()
        exchange.bytes_out += len(payload)
        self._log(exchange, outcome)

    def log_too_large(self, request: Any) -> None:
        exchange = Exchange(request=request, started=self.clock.seconds(), status=413)
        self._log(exchange, "too_large")

    def _log(self, exchange: Exchange, outcome: str) -> None:
        if exchange.logged:
            return
        exchange.logged = True
        exchange.work = None  # its callbacks hold the exchange: no cycle left
        if exchange.classic is not None and exchange.classic.closing is not None:
            exchange.classic.closing()  # a listen stream's backend session
        if exchange.member is not None:
            exchange.member.active -= 1
        if exchange.trace is not None:
            exchange.trace.close(outcome, exchange.status)
        if exchange.observer is not None:
            exchange.observer.finished(outcome, exchange.status)
        elif self.recorder is not None:
            self.recorder.unrouted(exchange.status)
        request = exchange.request
        route = exchange.api
        self.access_log.exchange(
            round(exchange.started, 3),
            route.definition.name if route else None,
            route.api_id if route else None,
            request.method.decode("latin-1") if request.method else None,
            request.path.decode("latin-1") if request.path else None,
            exchange.status,
            outcome,
            exchange.bytes_in,
            exchange.bytes_out,
            round((self.clock.seconds() - exchange.started) * 1000, 3),
            _peer(request),
        )


_MODERN_ANSWER = ModernAnswerJudge()


def _parking(judge: Any, reader: ResponseReader) -> Optional[bytes]:
    """
    The C{input_required} event that ends a bridged call's answer, if the
    backend asked for input, recorded as the answer (L{ClassicJudge.parking}).
    """
    last: Optional[bytes] = judge.parking()
    if last:
        reader.added(judge.answered, len(last))
    return last


def _bridged(exchange: Exchange, backend_version: Optional[str]) -> None:
    """
    The exchange log and the trace learn the version the backend was spoken
    to in (the client's own they read from its messages).
    """
    exchange.backend_version = backend_version
    observer = exchange.trace if exchange.trace is not None else exchange.observer
    if observer is not None and backend_version is not None:
        observer.bridged(backend_version)


def _request_id(exchange: Exchange) -> Any:
    """
    The id of the exchange's single request, as the gateway read it (an
    error answers it), or L{None}.
    """
    body = exchange.body
    if body is not None:
        message = body.single
        if message is not None and message.is_request and message.id_key is not None:
            return canonical(message.id_key)
        return None
    request = exchange.request
    content = request.content.getvalue() if request.content is not None else b""
    return request_id(content)


def _session_name(name: str) -> Optional[str]:
    """
    The session parameter a query parameter's raw name is, as a backend
    decodes it (C{%5F}, C{+}), or L{None}.
    """
    if "%" in name or "+" in name:
        name = unquote_plus(name)
    return name if name in _SESSION_PARAMS else None


def _session_params(query: str) -> List[str]:
    """
    The values of every session parameter in a query (C{sessionId},
    C{session_id}, however escaped), decoded.
    """
    values = []
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if _session_name(name) is not None:
            values.append(unquote_plus(value) if "%" in value or "+" in value else value)
    return values


def _replace_session_params(query: str, replace: Callable[[str], str]) -> str:
    """
    C{query} with every session parameter's value replaced by
    C{replace(value)} (its name written plainly), the rest as it was.
    """
    parts = query.split("&")
    for index, part in enumerate(parts):
        raw_name, _, value = part.partition("=")
        name = _session_name(raw_name)
        if name is not None:
            parts[index] = f"{name}={replace(value)}"
    return "&".join(parts)


class _Discard:
    def makeConnection(self, transport: Any) -> None:
        transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Any) -> None:
        pass


def _peer(request: Any) -> Optional[str]:
    client = request.getClientAddress()
    return getattr(client, "host", None)


def _reason(e: BaseException) -> str:
    reasons = getattr(e, "reasons", None)
    if reasons:
        return "; ".join(r.getErrorMessage() for r in reasons)
    return str(e) or e.__class__.__name__
