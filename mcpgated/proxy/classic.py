"""
A 2026-07-28 client in front of a handshake-era backend (an API whose
C{protocol.backendVersion} is 2025-11-25 or older and whose
C{clientVersions} name 2026-07-28).

The gateway keeps the backend sessions those clients need: one per
distinct client identity (client info, capabilities, log level) and
authorization, opened with C{initialize} when first needed, bounded (the
least recently used is closed with C{DELETE}), and opened anew when the
backend answers 404 (its session expired). Each request goes to its
session with the 2026-07-28 C{_meta} members removed; each answer comes back
in 2026-07-28's terms (L{mcpgated.mcp.classic}). C{server/discover} is
answered from the session's C{initialize} result; C{subscriptions/listen}
is the GET stream of a session of its own (with C{resources/subscribe} for
the URIs asked), acknowledged first and tagged with the subscription id.

The gateway is the 2026-07-28 server here, so it checks each request as one
(L{mcpgated.mcp.classic.check_request}) before anything reaches the backend.

A backend's request to the client on a call's stream (sampling, elicitation,
roots) that the client declared a capability for becomes an
C{input_required} result: the backend's answer waits, paused (a parked
L{mcpgated.proxy.relay.Relay}), for the client's retry, whose
C{inputResponses} go to the backend before the rest of the answer is relayed
under the retry's id. What cannot be bridged is answered, never left
hanging: a request the client did not declare gets the gateway's answer (an
error; roots: an empty list; ping), a C{requestState} the gateway does not
hold for this client gets C{-32602}, batches get C{-32600}. A client that
leaves a call has the backend told with C{notifications/cancelled}.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Dict, FrozenSet, List, Optional, Tuple, Union

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent

from mcpgated.jsonrpc import INVALID_PARAMS, INVALID_REQUEST, Refusal, error_body
from mcpgated.mcp.bridge import is_modern, rpc_result
from mcpgated.mcp.classic import (
    INPUT_METHODS,
    Identity,
    acknowledged,
    check_request,
    discover_result,
    initialize_request,
    listen_filter,
    modern_error,
    modern_result,
    notification,
    on_listen,
    request as rpc_request,
    to_classic,
)
from mcpgated.mcp.messages import NOTIFICATION, REQUEST, RESPONSE, Message, classify
from mcpgated.mcp.responses import DROP, dump
from mcpgated.model import ProtocolSettings
from mcpgated.proxy.bridge import GatewayAnswer, is_handshake, last_message, read_message
from mcpgated.webclient import fetch

log = Logger()

MAX_SESSIONS = 256  # backend sessions kept per process, all APIs together
MAX_INITIALIZE_BYTES = 1024 * 1024
_SESSION = b"mcp-session-id"
# headers of the client's request that mean nothing to a handshake-era backend
_MODERN_HEADERS = (b"mcp-method", b"mcp-name", b"last-event-id")
# the headers that make one authorization: requests with different ones never share a session
_AUTHORIZATION = (b"authorization", b"cookie", b"x-api-key", b"proxy-authorization")


@attrs.define
class BackendSession:
    """
    One session the gateway holds with a handshake-era backend.
    """

    id: Optional[str]  # its Mcp-Session-Id (a backend without sessions gives none)
    version: str  # what it negotiated
    initialized: Dict[str, Any]  # its initialize result

    @property
    def server_info(self) -> Optional[Dict[str, Any]]:
        info = self.initialized.get("serverInfo")
        return info if isinstance(info, dict) else None

    @property
    def capabilities(self) -> Dict[str, Any]:
        found = self.initialized.get("capabilities")
        return found if isinstance(found, dict) else {}


@attrs.define
class ClassicForward:
    """
    A 2026-07-28 request as its backend session is sent it, and how its
    answer comes back.
    """

    method: bytes  # POST, or GET for a listen stream
    body: bytes
    judge: "ClassicJudge"
    session: BackendSession
    key: Optional[str]  # the pool's key (None: a listen stream's own session)
    identity: Identity
    url: str  # the backend (the endpoint, for a load-balanced API)
    caller: str  # who the gate said was calling (caller_of)
    preamble: bytes = b""  # written to the client before the backend's answer
    renewed: bool = False
    closing: Optional[Callable[[], None]] = None  # when the exchange ends
    reader: Any = None  # the answer's ResponseReader (mcpgated.mcp.responses), once relayed

    def cancel(self) -> None:
        """
        The client left before the answer ended: 2026-07-28 calls that a
        cancellation, which an older backend is told of.
        """
        judge = self.judge
        if self.closing is None and judge.held is None:
            judge.answer_backend(notification("notifications/cancelled", {
                "requestId": judge.sent_id, "reason": "The client closed the request"}))


@attrs.frozen
class ClassicResume:
    """
    A client's retry that a parked answer goes on to.
    """

    relay: Any  # the parked L{mcpgated.proxy.relay.Relay}
    forward: ClassicForward
    client_id: Any


@attrs.frozen
class _Parked:
    relay: Any
    forward: ClassicForward
    timer: Any  # IDelayedCall


PARK_SECONDS = 600.0  # how long an answer waits for the client's input
# errors 2026-07-28 sends on another status than 200 (a handshake-era backend sends 200)
_ERROR_STATUS = {-32601: 404, -32020: 400, -32021: 400, -32022: 400}
# the input requests and the client capability each needs
_CAPABILITY = {"sampling/createMessage": "sampling", "elicitation/create": "elicitation",
               "roots/list": "roots"}


def _answerable(capabilities: Dict[str, Any]) -> FrozenSet[str]:
    return frozenset(m for m, c in _CAPABILITY.items() if c in capabilities)


@attrs.define
class ClassicJudge:
    """
    The backend's answer in 2026-07-28's terms (L{mcpgated.mcp.responses.Judge}).

    A backend's input request (sampling, elicitation, roots) that the client
    declared it can answer becomes an C{input_required} result: the judge
    then holds the backend's later messages (L{parking}) until the client's
    retry brings the answers (L{resume}).
    """

    method: Optional[str]  # the client's request (None: a listen stream)
    server_info: Optional[Dict[str, Any]]
    logs: bool  # the request asked for log messages
    answer_backend: Callable[[Dict[str, Any]], None]  # the gateway's reply to a backend request
    listen: Optional[Tuple[Any, Dict[str, Any]]] = None  # the listen id, the filter honoured
    client_id: Any = None  # the id of the client's request being answered
    sent_id: Any = None  # the id the backend knows the request by (the first one's)
    can_answer: FrozenSet[str] = frozenset()  # the input methods the client declared
    token: Optional[str] = None  # the requestState of a parked answer
    asked: Dict[str, Any] = attrs.field(factory=dict)  # inputRequests key -> backend's id
    held: Optional[List[Any]] = None  # parked: the backend's messages since
    asking: List[Message] = attrs.field(factory=list)  # the input requests, until sent
    status: Optional[int] = None  # the HTTP status 2026-07-28 gives the answer's error
    answered: Optional[Dict[str, Any]] = None  # the last input_required sent the client
    batch = False

    def parking(self) -> Optional[bytes]:
        """
        After each chunk of the backend's answer: the C{input_required}
        event that ends the client's answer (every input request the chunk
        brought in one), or L{None} to go on relaying.
        """
        if self.held is None or not self.asking:
            return None
        asking, self.asking = self.asking, []
        self.asked = {str(m.id): m.id for m in asking}
        self.token = secrets.token_urlsafe(24)
        requests: Dict[str, Any] = {}
        for message in asking:
            request: Dict[str, Any] = {"method": message.method}
            if message.params is not None:
                request["params"] = message.params
            requests[str(message.id)] = request
        result = {"resultType": "input_required", "inputRequests": requests,
                  "requestState": self.token}
        answer = self.answered = {"jsonrpc": "2.0", "id": self.client_id,
                                  "result": modern_result(None, result, self.server_info)}
        return b"event: message\ndata: " + dump(answer) + b"\n\n"

    def resume(self, client_id: Any) -> bytes:
        """
        The client came back (its retry's id): what was held, as events.
        """
        held, self.held = self.held or [], None
        self.client_id = client_id
        out = []
        for value in held:
            if self.held is not None:  # parked again
                self.held.append(value)
                continue
            replaced = self.judge(classify(value))
            if replaced is not DROP:
                out.append(b"event: message\ndata: " + dump(value if replaced is None else replaced)
                           + b"\n\n")
        return b"".join(out)

    def judge(self, message: Message) -> Any:
        held = self.held
        if held is not None:
            if self.asking and not held and message.kind == REQUEST \
                    and message.method in self.can_answer:
                self.asking.append(message)  # asked together: one input_required
            else:
                held.append(message.raw)
            return DROP
        if self.listen is not None:
            listen_id, honoured = self.listen
            tagged = on_listen(message.raw, honoured, listen_id) \
                if isinstance(message.raw, dict) else None
            return DROP if tagged is None else tagged
        kind = message.kind
        if kind == RESPONSE:
            raw = message.raw
            if self.client_id != self.sent_id and message.id == self.sent_id:
                raw = dict(raw, id=self.client_id)  # the answer to the client's retry
            if isinstance(message.result, dict):
                return dict(raw, result=modern_result(self.method, message.result,
                                                      self.server_info))
            if isinstance(message.error, dict):
                error = modern_error(message.error, self.method)
                if message.id == self.sent_id:
                    self.status = _ERROR_STATUS.get(error.get("code"))  # type: ignore[arg-type]
                return None if error is message.error and raw is message.raw \
                    else dict(raw, error=error)
            return None if raw is message.raw else raw
        if kind == REQUEST:
            if message.method in self.can_answer:  # the client answers it in its retry
                self.held = []
                self.asking = [message]
                return DROP
            self.answer_backend(_answer_for(message))  # answered by the gateway
            return DROP
        if kind == NOTIFICATION and message.method == "notifications/message" and not self.logs:
            return DROP  # 2026-07-28: no log messages unless the request set a level
        return None

    def extra(self) -> List[Any]:
        if self.listen is not None:  # the backend ended the stream: a graceful end
            listen_id, _ = self.listen
            return [{"jsonrpc": "2.0", "id": listen_id, "result": modern_result(
                None, {"_meta": {"io.modelcontextprotocol/subscriptionId": listen_id}},
                self.server_info)}]
        return []


def _answer_for(message: Message) -> Dict[str, Any]:
    """
    The gateway's answer to a backend's request to a 2026-07-28 client.
    """
    method = message.method
    if method == "ping":
        return {"jsonrpc": "2.0", "id": message.id, "result": {}}
    if method == "roots/list":
        return {"jsonrpc": "2.0", "id": message.id, "result": {"roots": []}}
    reason = (f"{method} cannot be bridged: the client speaks 2026-07-28 through a gateway "
              "that does not relay input requests" if method in INPUT_METHODS
              else f"{method} is not supported by this client")
    return {"jsonrpc": "2.0", "id": message.id, "error": {"code": -32601, "message": reason}}


def _modern_request(message: Any, headers: Any) -> bool:
    return not is_handshake(message, headers)


@attrs.define
class ClassicBackend:
    """
    The backend sessions of 2026-07-28 clients bridged to handshake-era
    backends, for every API of one process.
    """

    agents: Callable[[Optional[str]], Awaitable[IAgent]]  # by backend CA file
    clock: IReactorTime
    timeout: float = 30.0
    max_sessions: int = MAX_SESSIONS
    _sessions: "OrderedDict[str, _Entry]" = attrs.field(factory=OrderedDict)
    _parked: Dict[str, _Parked] = attrs.field(factory=dict)

    async def translate(self, api_id: str, settings: ProtocolSettings, request: Any, body: bytes,
                        url: bytes, headers: Any, ca_file: Optional[str] = None,
                        caller: str = ""
                        ) -> Union[bytes, GatewayAnswer, ClassicForward, "ClassicResume"]:
        """
        The body to forward unchanged (a handshake-era client), the
        gateway's answer, or the request as its backend session is sent it
        (C{headers} changed to match).

        @param caller: who the gate says is calling (L{caller_of}): callers
            never share a backend session, nor each other's parked answers.

        @raise Refusal: 400, or 502 (the backend's C{initialize} failed).
        """
        message = read_message(body)
        if not _modern_request(message, request.requestHeaders):
            return body  # a handshake-era client: passed through
        if not isinstance(message, dict):
            raise Refusal(400, "JSON-RPC batches are not part of MCP 2026-07-28",
                          outcome="bad_request", code=INVALID_REQUEST, id=None)
        name = message.get("method")
        if not isinstance(name, str):
            raise Refusal(400, "A 2026-07-28 client sends no responses over HTTP",
                          outcome="bad_request", code=INVALID_REQUEST, id=None)
        if "id" not in message:  # 2026-07-28 defines no client notifications over HTTP
            return GatewayAnswer(202, b"")
        invalid = check_request(message, request.requestHeaders)
        if invalid is not None:  # as a 2026-07-28 server would: the backend cannot
            return GatewayAnswer(invalid.status, error_body(invalid.code, invalid.message,
                                                            message["id"]))
        identity = Identity.of(message)
        target = url.decode("latin-1")
        params = message.get("params")
        if isinstance(params, dict) and "requestState" in params:
            return await self._retry(api_id, message, params, headers, identity, ca_file,
                                     caller)
        if isinstance(params, dict) and "inputResponses" in params:
            # answers nobody asked for: the call goes on without them (the backend may ask)
            message = dict(message, params={k: v for k, v in params.items()
                                            if k != "inputResponses"})
        key = self._key(api_id, target, headers, identity, caller)
        if name == "server/discover":
            session = await self._pooled(api_id, target, headers, identity, settings, ca_file,
                                         key)
            supported = [v for v in settings.client_versions if is_modern(v)]
            return GatewayAnswer(200, rpc_result(message["id"], discover_result(
                session.initialized, supported)))
        if name == "subscriptions/listen":
            return await self._listen(api_id, message, target, headers, identity, settings,
                                      ca_file)
        session = await self._pooled(api_id, target, headers, identity, settings, ca_file, key)
        judge = ClassicJudge(name, session.server_info, identity.log_level is not None,
                             self._replier(target, headers, session, ca_file),
                             client_id=message["id"], sent_id=message["id"],
                             can_answer=_answerable(identity.capabilities))
        forward = ClassicForward(b"POST", json.dumps(to_classic(message)).encode("utf-8"),
                                 judge, session, key, identity, target, caller)
        _session_headers(headers, session)
        return forward

    async def renew(self, api_id: str, settings: ProtocolSettings, forward: ClassicForward,
                    url: bytes, headers: Any, ca_file: Optional[str]) -> ClassicForward:
        """
        The backend answered 404 (its session expired): a new session for
        the same request, once.
        """
        key = forward.key
        assert key is not None
        entry = self._sessions.get(key)
        if entry is not None and entry.session is forward.session:
            del self._sessions[key]  # expired: not closed, the backend forgot it
        log.info("API {api_id}: a backend session expired; opening a new one", api_id=api_id)
        target = url.decode("latin-1")  # another endpoint's, when the first failed
        forward.key = key = self._key(api_id, target, headers, forward.identity, forward.caller)
        forward.url = target
        session = await self._pooled(api_id, target, headers, forward.identity, settings,
                                     ca_file, key)
        forward.session = session
        forward.renewed = True
        forward.judge.server_info = session.server_info
        forward.judge.answer_backend = self._replier(target, headers, session, ca_file)
        _session_headers(headers, session)
        return forward

    # --- input requests: parked answers ----------------------------------------------------

    def park(self, relay: Any, forward: ClassicForward) -> None:
        """
        The backend asked for input (L{ClassicJudge}): its answer waits,
        paused, for the client's retry, at most L{PARK_SECONDS}.
        """
        token = forward.judge.token
        assert token is not None
        timer = self.clock.callLater(PARK_SECONDS, self._expire, token)
        self._parked[token] = _Parked(relay, forward, timer)

    def stop(self) -> None:
        """
        Shutting down: the answers waiting for input are closed.
        """
        for token in list(self._parked):
            timer = self._parked[token].timer
            if timer.active():
                timer.cancel()
            self._expire(token)

    def _expire(self, token: str) -> None:
        parked = self._parked.pop(token, None)
        if parked is not None:
            log.info("an answer waiting for a client's input expired")
            parked.relay.expire()

    async def _retry(self, api_id: str, message: Dict[str, Any], params: Dict[str, Any],
                     headers: Any, identity: Identity, ca_file: Optional[str], caller: str
                     ) -> Union[GatewayAnswer, "ClassicResume"]:
        """
        A client's retry with the input the backend asked for: the answers
        sent to the backend, and its parked answer relayed to this request.
        """
        token = params.get("requestState")
        parked = self._parked.get(token) if isinstance(token, str) else None
        # the client's, whichever endpoint the retry would have gone to
        if not isinstance(token, str) or parked is None \
                or parked.forward.key != self._key(api_id, parked.forward.url, headers, identity,
                                                   caller):
            return GatewayAnswer(400, error_body(
                INVALID_PARAMS, "requestState unknown or expired: send the request again "
                                "without it", message["id"]))
        del self._parked[token]
        if parked.timer.active():
            parked.timer.cancel()
        forward = parked.forward
        url = forward.url
        responses = params.get("inputResponses")
        responses = responses if isinstance(responses, dict) else {}
        agent = await self.agents(ca_file)
        for key, backend_id in forward.judge.asked.items():
            answer = responses.get(key)
            reply: Dict[str, Any] = {"jsonrpc": "2.0", "id": backend_id}
            if isinstance(answer, dict):
                reply["result"] = answer
            else:
                reply["error"] = {"code": -32603, "message": "The client gave no answer"}
            await self._post(agent, url, headers, forward.session, reply)
        return ClassicResume(parked.relay, forward, message["id"])

    # --- sessions -------------------------------------------------------------------------

    def _key(self, api_id: str, url: str, headers: Any, identity: Identity, caller: str) -> str:
        digest = hashlib.sha256()
        for part in (api_id, url, identity.key(), caller):
            digest.update(part.encode("utf-8") + b"\0")
        for name in _AUTHORIZATION:
            for value in headers.getRawHeaders(name, ()):
                digest.update(name + b":" + value + b"\0")
        return digest.hexdigest()

    async def _pooled(self, api_id: str, url: str, headers: Any, identity: Identity,
                      settings: ProtocolSettings, ca_file: Optional[str], key: str
                      ) -> BackendSession:
        entry = self._sessions.get(key)
        if entry is not None:
            self._sessions.move_to_end(key)
            return await entry.wait()
        entry = self._sessions[key] = _Entry(url, _copy(headers), ca_file)
        while len(self._sessions) > self.max_sessions:
            _, old = self._sessions.popitem(last=False)
            old.closed = True
            if old.session is not None:
                self._close_soon(old, old.session)
        try:
            session = await self._open(api_id, url, headers, identity, settings, ca_file)
        except BaseException as e:
            if self._sessions.get(key) is entry:
                del self._sessions[key]
            entry.failed(e)
            raise
        entry.opened(session)
        if entry.closed:  # evicted while it opened
            self._close_soon(entry, session)
        return session

    def _close_soon(self, entry: "_Entry", session: BackendSession) -> None:
        Deferred.fromCoroutine(self._close(entry.url, entry.headers, session, entry.ca_file)
                               ).addErrback(lambda f: log.failure("closing a backend session", f))

    async def _open(self, api_id: str, url: str, headers: Any, identity: Identity,
                    settings: ProtocolSettings, ca_file: Optional[str]) -> BackendSession:
        version = settings.backend_version
        assert version is not None
        sent = _copy(headers)
        try:
            agent = await self.agents(ca_file)
            reply = await fetch(agent, self.clock, "POST", url, sent,
                                body=dump(initialize_request(identity, version)),
                                max_bytes=MAX_INITIALIZE_BYTES, timeout=self.timeout)
            answer = last_message(reply.body) if 200 <= reply.status < 300 else None
        except Exception as e:  # noqa: BLE001 -- any failure is the same 502
            log.warn("API {api_id}: initialize of a backend session failed: {error}",
                     api_id=api_id, error=repr(e))
            raise Refusal(502, "The backend did not answer initialize",
                          outcome="gateway_error") from None
        if answer is None or not isinstance(answer.get("result"), dict):
            detail = f"HTTP {reply.status}" if answer is None else \
                str((answer.get("error") or {}).get("message", "no result"))[:200]
            log.warn("API {api_id}: the backend refused initialize: {detail}",
                     api_id=api_id, detail=detail)
            raise Refusal(502, f"The backend refused initialize ({detail})",
                          outcome="gateway_error")
        result = answer["result"]
        ids = reply.headers.getRawHeaders(_SESSION)
        negotiated = result.get("protocolVersion")
        session = BackendSession(ids[0].decode("latin-1") if ids else None,
                                 negotiated if isinstance(negotiated, str) else version, result)
        await self._post(agent, url, headers, session, notification("notifications/initialized"))
        if identity.log_level is not None:
            await self._post(agent, url, headers, session,
                             rpc_request("logging/setLevel", {"level": identity.log_level}))
        return session

    async def _post(self, agent: IAgent, url: str, headers: Any, session: BackendSession,
                    message: Dict[str, Any]) -> int:
        """
        One message to a backend session, its answer read and dropped;
        returns the status (0: no answer).
        """
        sent = _copy(headers)
        _session_headers(sent, session)
        try:
            reply = await fetch(agent, self.clock, "POST", url, sent, body=dump(message),
                                max_bytes=MAX_INITIALIZE_BYTES, timeout=self.timeout)
        except Exception as e:  # noqa: BLE001 -- logged; the caller goes on
            log.info("backend session message {method} failed: {error}",
                     method=message.get("method", "response"), error=repr(e))
            return 0
        return reply.status

    def _replier(self, url: str, headers: Any, session: BackendSession, ca_file: Optional[str]
                 ) -> Callable[[Dict[str, Any]], None]:
        held = _copy(headers)

        def reply(message: Dict[str, Any]) -> None:
            async def send() -> None:
                agent = await self.agents(ca_file)
                await self._post(agent, url, held, session, message)
            Deferred.fromCoroutine(send()).addErrback(
                lambda f: log.failure("answering a backend request", f))
        return reply

    async def _close(self, url: str, headers: Headers, session: BackendSession,
                     ca_file: Optional[str]) -> None:
        if session.id is None:
            return
        sent = _copy(headers)
        _session_headers(sent, session)
        try:
            agent = await self.agents(ca_file)
            await fetch(agent, self.clock, "DELETE", url, sent, max_bytes=64 * 1024,
                        timeout=self.timeout)
        except Exception as e:  # noqa: BLE001 -- best effort: the backend expires it anyway
            log.debug("closing a backend session failed: {error}", error=repr(e))

    # --- listen streams -------------------------------------------------------------------

    async def _listen(self, api_id: str, message: Dict[str, Any], url: str, headers: Any,
                      identity: Identity, settings: ProtocolSettings, ca_file: Optional[str]
                      ) -> ClassicForward:
        """
        C{subscriptions/listen}: the GET stream of a session of its own.
        """
        session = await self._open(api_id, url, headers, identity, settings, ca_file)
        listen_id = message["id"]
        honoured, ack = acknowledged(listen_filter(message), session.capabilities, listen_id)
        agent = await self.agents(ca_file)
        for uri in honoured.get("resourceSubscriptions", ()):
            await self._post(agent, url, headers, session,
                             rpc_request("resources/subscribe", {"uri": uri}))
        judge = ClassicJudge(None, session.server_info, False,
                             self._replier(url, headers, session, ca_file),
                             listen=(listen_id, honoured))
        held = _copy(headers)

        def closing() -> None:
            Deferred.fromCoroutine(self._close(url, held, session, ca_file)).addErrback(
                lambda f: log.failure("closing a listen stream's session", f))

        _session_headers(headers, session)
        for name in (b"content-type", b"content-length"):
            headers.removeHeader(name)
        headers.setRawHeaders(b"accept", [b"text/event-stream"])
        return ClassicForward(b"GET", b"", judge, session, None, identity, url, "",
                              preamble=b"event: message\ndata: " + dump(ack) + b"\n\n",
                              closing=closing)


def caller_of(principal: Any, peer: Optional[str]) -> str:
    """
    Who is calling, for the backend sessions: the gate's principal (plan,
    application, subscription, token subject), or, where it knows nobody
    (keyless plans, no gate), the client's address.
    """
    if principal is not None and (principal.application_id or principal.subscription_id
                                  or principal.subject):
        return "\0".join((principal.plan.name, principal.application_id or "",
                          principal.subscription_id or "", principal.subject or ""))
    return f"address\0{peer}"


def _copy(headers: Any) -> Headers:
    """
    The headers of a message of the gateway's own to a backend session: the
    client's request's as the gate left them (the backend's credential,
    forwarding), without what belongs to one request or to 2026-07-28.
    """
    sent: Headers = headers.copy()
    for name in (_SESSION, b"content-length", b"mcp-protocol-version", *_MODERN_HEADERS):
        sent.removeHeader(name)
    sent.setRawHeaders(b"content-type", [b"application/json"])
    sent.setRawHeaders(b"accept", [b"application/json, text/event-stream"])
    return sent


def _session_headers(headers: Any, session: BackendSession) -> None:
    for name in _MODERN_HEADERS:
        headers.removeHeader(name)
    if session.id is not None:
        headers.setRawHeaders(_SESSION, [session.id.encode("latin-1")])
    else:
        headers.removeHeader(_SESSION)
    headers.setRawHeaders(b"mcp-protocol-version", [session.version.encode("ascii")])


@attrs.define
class _Entry:
    """
    A pooled backend session, being opened or open, and where it lives (to
    close it when it is evicted).
    """

    url: str
    headers: Headers
    ca_file: Optional[str]
    session: Optional[BackendSession] = None
    error: Optional[BaseException] = None
    closed: bool = False
    _waiters: List["Deferred[BackendSession]"] = attrs.field(factory=list)

    def wait(self) -> "Deferred[BackendSession]":
        if self.session is not None:
            return succeed(self.session)
        if self.error is not None:
            return fail(self.error)
        waiter: Deferred[BackendSession] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def opened(self, session: BackendSession) -> None:
        self.session = session
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(session)

    def failed(self, error: BaseException) -> None:
        self.error = error
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(error)


@attrs.frozen
class _Chained:
    """
    Two judges, one after the other: the gate's (access control, pins),
    then the bridge's.
    """

    first: Any
    second: Any

    @property
    def batch(self) -> bool:
        return bool(self.first.batch)

    def judge(self, message: Message) -> Any:
        replaced = self.first.judge(message)
        if replaced is DROP:
            return DROP
        again = self.second.judge(message if replaced is None else classify(replaced))
        return replaced if again is None else again

    def extra(self) -> List[Any]:
        return [*self.first.extra(), *self.second.extra()]


def chained(first: Any, second: Any) -> Any:
    return _Chained(first, second)
