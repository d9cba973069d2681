"""
The protocol stage of an API with C{protocol} settings: the request's MCP
version judged by L{mcpgated.mcp.bridge}, refused with the spec's error or
an C{initialize} renegotiated. APIs without the settings never reach it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple, Union

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IAgent

from twisted.logger import Logger

from mcpgated.jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    REQUEST_ID,
    Refusal,
    error_body,
    refused_body,
)
from mcpgated.mcp.body import BodyError, decode, parse
from mcpgated.mcp.messages import RESPONSE, Message
from mcpgated.mcp.bridge import (
    META_VERSION,
    SESSION_NOT_FOUND,
    UNBRIDGED,
    ClientState,
    Renegotiated,
    VersionRefusal,
    check_version,
    discover_request,
    initialize_result,
    is_modern,
    negotiated,
    rpc_result,
    to_modern,
)
from mcpgated.model import ProtocolSettings
from mcpgated.sealing import MAX_TOKEN, Sealer, endpoint_id
from mcpgated.webclient import fetch

log = Logger()


def admit_version(request: Any, exchange: Any, settings: ProtocolSettings, body: bytes) -> bytes:
    """
    The body to forward: C{body}, or an C{initialize} that proposes a
    version the API accepts.

    @raise Refusal: 400 with the spec's error and the C{supported} versions.
    """
    message: Any = None
    if body:
        try:
            message = decode(body)
        except BodyError:
            return body  # not JSON: the backend answers it as it would
    raw = request.getHeader(b"mcp-protocol-version")
    header: Optional[str] = raw.decode("latin-1").strip() if raw else None
    verdict = check_version(message, header, settings.client_versions)
    if verdict is None:
        return body
    if isinstance(verdict, VersionRefusal):
        raise Refusal(verdict.status, verdict.message, outcome="bad_request", code=verdict.code,
                      id=REQUEST_ID, data=verdict.data or None)
    assert isinstance(verdict, Renegotiated)
    log.debug("initialize proposing {requested} offered {offered}",
              requested=verdict.requested, offered=verdict.offered)
    body = json.dumps(verdict.message).encode("utf-8")
    if exchange.body is not None:
        exchange.body = parse(body)
    return body


@attrs.frozen
class GatewayAnswer:
    """
    What the gateway answers itself on behalf of a bridged backend.
    """

    status: int
    payload: bytes
    headers: Tuple[Tuple[bytes, bytes], ...] = ()


BRIDGE_ENDPOINT = endpoint_id("mcpgated:bridge")
MAX_DISCOVER_BYTES = 1024 * 1024
MAX_DISCOVER_CACHE = 60.0  # seconds, whatever ttlMs says
MAX_ENDED = 100_000  # session ids ended with DELETE, remembered
# the legacy implementation-defined range: a handshake-era client's error
INPUT_REQUIRED_NOT_BRIDGED = -32000
_SESSION = b"mcp-session-id"
# what a handshake-era GET stream carries: the list changes (resources/subscribe
# is not bridged, so no resource updates)
LISTEN = {"jsonrpc": "2.0", "id": "mcpgated-listen", "method": "subscriptions/listen",
          "params": {"notifications": {"toolsListChanged": True, "promptsListChanged": True,
                                       "resourcesListChanged": True}}}


def read_message(body: bytes) -> Any:
    """
    The request a bridge translates, read as the gate reads bodies
    (L{mcpgated.mcp.body.decode}: UTF-8, no key twice, no NaN), so what it
    forwards is what was judged; L{None} for no body.

    @raise Refusal: 400, the body is not such JSON.
    """
    if not body:
        return None
    try:
        return decode(body)
    except BodyError as e:
        raise refused_body(e) from None


def is_handshake(message: Any, headers: Any) -> bool:
    """
    Whether a request is of the handshake era (what a 2026-07-28 backend
    needs translated): no C{_meta} version and no 2026 header.
    """
    if isinstance(message, dict):
        params = message.get("params")
        if isinstance(params, dict) and isinstance(params.get("_meta"), dict) \
                and META_VERSION in params["_meta"]:
            return False
    raw = headers.getRawHeaders(b"mcp-protocol-version")
    return not (raw and is_modern(raw[0].decode("latin-1").strip()))


@attrs.define
class ModernBackend:
    """
    A handshake-era client in front of a 2026-07-28 backend: C{initialize}
    answered from the backend's C{server/discover} (cached per API when its
    C{cacheScope} is C{public}), a
    session id of the gateway's own (the client's C{initialize} sealed in
    it, so any node serves it), each request sent with C{_meta} and the
    routing headers, the GET stream sent as C{subscriptions/listen}, C{ping}
    and C{DELETE} answered, what 2026-07-28 removed refused with a JSON-RPC
    error.
    """

    sealer: Sealer
    agents: Callable[[Optional[str]], Awaitable[IAgent]]  # by backend CA file
    clock: IReactorTime
    timeout: float = 30.0
    _discovered: Dict[Tuple[str, str], Tuple[float, Dict[str, Any]]] = attrs.field(factory=dict)
    # session ids ended with DELETE (by this process: other processes and nodes
    # serve them until the client stops using them)
    _ended: "OrderedDict[bytes, None]" = attrs.field(factory=OrderedDict)

    async def translate(self, api_id: str, settings: ProtocolSettings, request: Any, body: bytes,
                        url: bytes, headers: Any, ca_file: Optional[str] = None
                        ) -> Union[bytes, GatewayAnswer]:
        """
        The body to forward (C{headers} changed to match), or the gateway's
        answer.

        @raise Refusal: 400, 404 (session not found) or 502 (no
            C{server/discover} answer).
        """
        version = settings.backend_version
        assert version is not None
        message = read_message(body)
        if not is_handshake(message, request.requestHeaders):
            return body  # a 2026-07-28 client: passed through
        method = request.method
        if method == b"GET":  # the GET stream: a subscriptions/listen stream, relayed as it comes
            listen, extra = to_modern(LISTEN, self._session(api_id, request), version)
            headers.removeHeader(_SESSION)
            headers.removeHeader(b"last-event-id")  # 2026-07-28 streams do not resume
            for key, value in [*extra, (b"content-type", b"application/json"),
                               (b"accept", b"application/json, text/event-stream")]:
                headers.setRawHeaders(key, [value])
            return json.dumps(listen).encode("utf-8")
        if method == b"POST" and isinstance(message, dict) and message.get("method") == "initialize":
            return await self._initialize(api_id, settings, message, url, headers, version, ca_file)
        state = self._session(api_id, request)
        if method == b"DELETE":
            self._ended[request.getHeader(_SESSION)] = None
            while len(self._ended) > MAX_ENDED:
                self._ended.popitem(last=False)
            return GatewayAnswer(200, b"")
        if not isinstance(message, dict):
            raise Refusal(400, "JSON-RPC batches cannot be bridged to a 2026-07-28 backend",
                          outcome="bad_request", code=INVALID_REQUEST, id=None)
        name = message.get("method")
        if not isinstance(name, str):  # a client's response: 2026-07-28 has no server requests
            return GatewayAnswer(202, b"")
        if "id" not in message:  # notifications: 2026-07-28 defines none from clients over HTTP
            return GatewayAnswer(202, b"")
        if name == "ping":
            return GatewayAnswer(200, rpc_result(message["id"], {}))
        if name in UNBRIDGED:
            return GatewayAnswer(200, error_body(METHOD_NOT_FOUND, UNBRIDGED[name], message["id"]))
        modern, extra = to_modern(message, state, version)
        headers.removeHeader(_SESSION)
        for key, value in extra:
            headers.setRawHeaders(key, [value])
        return json.dumps(modern).encode("utf-8")

    def _session(self, api_id: str, request: Any) -> ClientState:
        raw = request.getHeader(_SESSION)
        if not raw:
            raise Refusal(400, "Mcp-Session-Id header is required (initialize first)",
                          outcome="bad_request", code=INVALID_REQUEST, id=None)
        opened = self.sealer.unseal(api_id, raw.decode("latin-1")) if raw not in self._ended \
            else None
        state = ClientState.loads(opened[1]) if opened and opened[0] == BRIDGE_ENDPOINT else None
        if state is None:
            raise Refusal(404, "Session not found", outcome="bad_request",
                          code=SESSION_NOT_FOUND)
        return state

    async def _initialize(self, api_id: str, settings: ProtocolSettings, message: Dict[str, Any],
                          url: bytes, headers: Any, version: str, ca_file: Optional[str]
                          ) -> GatewayAnswer:
        params = message.get("params")
        requested = params.get("protocolVersion") if isinstance(params, dict) else None
        answered = negotiated(str(requested), settings.client_versions)
        assert answered is not None  # admit_version refused initialize otherwise
        state = ClientState.of(message, answered)
        session = self.sealer.seal(api_id, BRIDGE_ENDPOINT, state.dumps())
        if len(session) > MAX_TOKEN:  # it would not unseal: refused now, not 404 later
            raise Refusal(400, "The client's info and capabilities are too large to bridge "
                               "to a 2026-07-28 backend", outcome="bad_request", code=INVALID_PARAMS)
        discovered = await self._discover(api_id, state, url, headers, version, ca_file)
        return GatewayAnswer(200, rpc_result(message.get("id"), initialize_result(discovered, answered)),
                             ((_SESSION, session.encode("ascii")),))

    async def _discover(self, api_id: str, state: ClientState, url: bytes, headers: Any,
                        version: str, ca_file: Optional[str]) -> Dict[str, Any]:
        key = (api_id, url.decode("latin-1"))
        now = self.clock.seconds()
        cached = self._discovered.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        sent = headers.copy()  # as the gate left them: the backend's credential, forwarding
        for name in (_SESSION, b"content-length", b"mcp-name", b"last-event-id"):
            sent.removeHeader(name)
        for name, value in ((b"content-type", b"application/json"),
                            (b"accept", b"application/json, text/event-stream"),
                            (b"mcp-protocol-version", version.encode("ascii")),
                            (b"mcp-method", b"server/discover")):
            sent.setRawHeaders(name, [value])
        try:
            agent = await self.agents(ca_file)
            reply = await fetch(agent, self.clock, "POST", key[1], sent,
                                body=json.dumps(discover_request(state, version)).encode("utf-8"),
                                max_bytes=MAX_DISCOVER_BYTES, timeout=self.timeout)
            result = last_message(reply.body)["result"]
            assert isinstance(result, dict)
        except Exception as e:  # noqa: BLE001 -- any failure is the same 502
            log.warn("API {api_id}: server/discover failed: {error}", api_id=api_id, error=repr(e))
            raise Refusal(502, "The backend did not answer server/discover",
                          outcome="gateway_error") from None
        ttl = result.get("ttlMs")
        seconds = min(ttl / 1000.0, MAX_DISCOVER_CACHE) if isinstance(ttl, (int, float)) else 0.0
        if seconds > 0 and result.get("cacheScope") == "public":  # private: per client, not kept
            if len(self._discovered) > 1000:
                self._discovered.clear()
            self._discovered[key] = (now + seconds, result)
        return result


def last_message(body: bytes) -> Dict[str, Any]:
    """
    The JSON-RPC message of a JSON answer, or the last of an SSE one.
    """
    text = body.decode("utf-8").strip()
    if text.startswith("{"):
        value = json.loads(text)
    else:
        datas = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
        value = json.loads([d for d in datas if d][-1])
    if not isinstance(value, dict):
        raise ValueError("not a JSON-RPC message")
    return value


@attrs.frozen
class ModernAnswerJudge:
    """
    A 2026-07-28 backend's answer to a handshake-era client
    (L{mcpgated.mcp.responses.Judge}): an C{input_required} result, which
    that client would read as an empty result, becomes a JSON-RPC error
    naming what the backend asked for (the gateway does not turn it into
    requests to the client).
    """

    batch = False

    def judge(self, message: Message) -> Any:
        result = message.result
        if message.kind != RESPONSE or not isinstance(result, dict) \
                or result.get("resultType") != "input_required":
            return None
        asked = result.get("inputRequests")
        methods = sorted({str(r.get("method")) for r in asked.values() if isinstance(r, dict)}) \
            if isinstance(asked, dict) else []
        return {"jsonrpc": "2.0", "id": message.id, "error": {
            "code": INPUT_REQUIRED_NOT_BRIDGED,
            "message": "The backend asked for input (" + (", ".join(methods) or "input_required")
                       + "), which the gateway does not relay to a client of an older MCP "
                         "version"}}

    def extra(self) -> List[Any]:
        return []
