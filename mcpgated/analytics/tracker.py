"""
Watching one HTTP exchange for JSON-RPC calls: the exchange log's observer
(L{IExchangeObserver}).

It reads nothing itself: the request body comes parsed once by the resource
(L{mcpgated.mcp.body.RequestBody}, the value the gate judged), and the
answer's messages from the one response reader (L{mcpgated.mcp.responses}),
after they were judged. Responses are matched to requests by id on the same
stream, or through the L{SessionBook} when they arrive on another stream of
the same session (the GET stream, the legacy SSE stream, a client POST
answering a server request).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple
from urllib.parse import parse_qs, urlsplit

import attrs
from twisted.logger import Logger
from zope.interface import implementer

from mcpgated.analytics.inspect import outcome as response_outcome, redact
from mcpgated.analytics.interfaces import IExchangeObserver
from mcpgated.analytics.records import SECRET_HEADERS, Capture, CallRecord
from mcpgated.analytics.sessions import SessionBook
from mcpgated.mcp.body import RequestBody
from mcpgated.mcp.ids import IdKey
from mcpgated.mcp.messages import NOTIFICATION, REQUEST, RESPONSE, ClientInfo, Message, client_info

log = Logger()

# How much of a target the exchange log keeps.
MAX_TARGET = 500


def _capture(record: CallRecord, raw: Any) -> None:
    if record.captured:
        record.captured.append(raw)  # type: ignore[attr-defined]
    else:
        record.captured = [raw]


# Refusals by the gateway itself, recorded as such for every call they stopped.
_REFUSALS = frozenset({"unauthorized", "forbidden", "rate_limited", "bad_request", "bad_credentials"})


def _headers_json(headers: Any) -> str:
    shown = {}
    for name, values in headers.getAllRawHeaders():
        lowered = name.lower()
        text = [b"[REDACTED]" if lowered in SECRET_HEADERS else v for v in values]
        shown[name.decode("latin-1")] = [v.decode("latin-1") for v in text]
    return json.dumps(shown)


def _legacy_session(url: str) -> Optional[str]:
    if "?" not in url:  # no query: what parse_qs would find
        return None
    query = parse_qs(urlsplit(url).query)
    for key in ("sessionId", "session_id"):
        if key in query:
            return query[key][0]
    return None


_NO_IDS: FrozenSet[IdKey] = frozenset()


@implementer(IExchangeObserver)
class ExchangeTracker:
    """
    Observes one exchange; calls C{emit} with each finished L{CallRecord},
    and keeps the exchange's metrics (L{mcpgated.analytics.metrics.Metrics}).

    One is made per exchange: a plain class, whose state that most
    exchanges never change defaults at class level.
    """

    session: Optional[str] = None
    status: Optional[int] = None
    ttfb_ms: Optional[float] = None
    bytes_in: int = 0
    stream: bool = False
    broken: bool = False
    denied: FrozenSet[IdKey] = _NO_IDS
    would_deny: FrozenSet[IdKey] = _NO_IDS
    _body_over: bool = False
    _info: Optional[ClientInfo] = None
    _initialize_key: Any = None
    _principal: Any = None
    _backend_version: Optional[str] = None

    def __init__(self, clock: Any, book: SessionBook, emit: Callable[[CallRecord], None],
                 metrics: Any, api_id: str, api_name: str,
                 plan: Optional[str], client: Optional[str], capture: Capture, started: float,
                 http_method: bytes = b"POST") -> None:
        self.clock = clock
        self.book = book
        self.emit = emit
        self.metrics = metrics
        self.api_id = api_id
        self.api_name = api_name
        self.plan = plan
        self.client = client
        self.capture = capture
        self.started = started
        self.http_method = http_method
        self.calls: Dict[Any, CallRecord] = {}  # by id key (mcpgated.mcp.ids)
        self.others: List[CallRecord] = []

    # Inspection must never break proxying: each entry point below catches
    # what fails in it, logs it once, and turns the tracker off for the rest
    # of its exchange.

    def _failed(self) -> None:
        self.broken = True
        log.failure("MCP inspection failed for API {api_id}; this exchange is not recorded",
                    api_id=self.api_id)

    def _open_records(self) -> List[CallRecord]:
        return list(self.calls.values()) + self.others

    # --- request ---------------------------------------------------------------------

    def request(self, headers: Any, uri: bytes, size: int,
                body: Optional[RequestBody]) -> None:
        """
        The client's request: its session, and the calls of its body.

        @param body: the body as the gateway read it (and the gate judged
            it), or L{None} when it was not read (no body, or too large).
        """
        if self.broken:
            return
        try:
            self.bytes_in = size
            raw_session = headers.getRawHeaders(b"mcp-session-id")
            if raw_session:
                self.session = self.book.session_id(self.api_id,
                                                    raw_session[0].decode("latin-1"))
            elif b"?" in uri:
                legacy = _legacy_session(uri.decode("latin-1"))
                if legacy:
                    self.session = self.book.session_id(self.api_id, legacy)
            if self.session is not None:
                self._info = self.book.client(self.session)
            if body is None or self.http_method != b"POST":
                return
            request_headers = None
            if self.capture.mode != "off":
                request_headers = _headers_json(headers)
            messages = body.messages
            each = 0 if body.batch else size
            for message in messages:
                kind = message.kind
                if kind == REQUEST or kind == NOTIFICATION:
                    self._open(message, each, request_headers, len(messages))
                elif kind == RESPONSE:
                    self._client_answer(message)
        except Exception:  # noqa: BLE001 -- inspection never breaks proxying
            self._failed()

    def _open(self, message: Message, size: int, request_headers: Optional[str],
              count: int) -> None:
        """
        A call (a request) or notification the client sends.
        """
        method = message.method
        assert method is not None
        params = message.params
        if type(params) is dict and (method == "initialize" or "_meta" in params):
            info = client_info(message)
            if info is not None:
                self._info = info
        record = CallRecord(self.started, self.api_id, self.api_name, self.plan, self.client,
                            method, message.kind)
        target = message.target
        record.target = target[:MAX_TARGET] if target is not None else None
        record.session = self.session
        if message.id is not None:
            record.jsonrpc_id = str(message.id)[:100]
        record.bytes_in = size or (self.bytes_in // max(count, 1))
        record.request_headers = request_headers
        if self._backend_version is not None:
            record.backend_version = self._backend_version
        key = record.id_key = message.id_key
        if self.capture.mode == "bodies":
            record.request_payload, cut = self._payload(message.raw)
            record.truncated |= cut
        if message.kind == REQUEST and key is not None:
            self.calls[key] = record
            if method == "initialize":
                self._initialize_key = key
        else:
            self.others.append(record)

    def admitted(self, principal: Any, denied: Any = (), would_deny: Any = ()) -> None:
        """
        The gate's verdict: who called, and which requests policy denied.
        """
        if self.broken:
            return
        try:
            self.plan = principal.plan.name
            self.denied = frozenset(denied)
            self.would_deny = frozenset(would_deny)
            for record in self._open_records():
                self._stamp(record, principal)
            self._principal = principal
        except Exception:  # noqa: BLE001 -- inspection never breaks proxying
            self._failed()

    def _stamp(self, record: CallRecord, principal: Any) -> None:
        record.plan = principal.plan.name
        record.consumer = principal.consumer
        record.application = principal.application_id
        record.subscription = principal.subscription_id
        if record.id_key in self.would_deny:
            record.policy = "would_deny"

    def bridged(self, backend_version: str) -> None:
        """
        The gateway spoke C{backend_version} to the backend: every record
        of this exchange, open or opened later, says so.
        """
        if self.broken:
            return
        try:
            self._backend_version = backend_version
            for record in self._open_records():
                record.backend_version = backend_version
        except Exception:  # noqa: BLE001 -- inspection never breaks proxying
            self._failed()

    def _client_answer(self, message: Message) -> None:
        """
        A client POST carrying the answer to a server->client request.
        """
        record = self.book.take_pending(self.session, message.id_key)
        if record is None:
            return
        self._complete(record, message.result, message.error, message.raw)
        record.http_status = record.http_status or 200
        self.emit(record)

    # --- response ----------------------------------------------------------------------

    def response(self, status: int, headers: Any, ttfb_ms: float, event_stream: bool) -> None:
        self.status = status
        self.ttfb_ms = ttfb_ms
        if event_stream and not self.stream:
            self.stream = True
            self.metrics.open_streams.inc()
        if self.broken:
            return
        try:
            if self._initialize_key is not None:
                raw_session = headers.getRawHeaders(b"mcp-session-id")
                if raw_session:
                    self.session = self.book.session_id(self.api_id,
                                                        raw_session[0].decode("latin-1"))
                    for record in self._open_records():
                        record.session = self.session
            if self.capture.mode != "off":
                shown = _headers_json(headers)
                for record in self._open_records():
                    record.response_headers = shown
        except Exception:  # noqa: BLE001 -- inspection never breaks proxying
            self._failed()

    def messages(self, messages: Sequence[Message], size: int, stream: bool) -> None:
        """
        Messages of the answer, as the client gets them (after judging):
        on a stream every kind; in a JSON body, its responses.
        """
        if self.broken:
            return
        try:
            for message in messages:
                if stream or message.kind == RESPONSE:
                    self._server_message(message, size)
        except Exception:  # noqa: BLE001 -- inspection never breaks proxying
            self._failed()

    def endpoint(self, url: str) -> None:
        """
        The legacy transport's endpoint event: it names the session.
        """
        if self.broken:
            return
        legacy = _legacy_session(url)
        if legacy:
            self.session = self.book.session_id(self.api_id, legacy)

    def unread(self, size: int) -> None:
        self._body_over = True

    def _response(self, key: Any, result: Any, error: Any, raw: Any, size: int) -> None:
        record = self.calls.pop(key, None) if key is not None else None
        if record is None:
            record = self.book.take_pending(self.session, key)
            if record is None:
                return
        record.bytes_out += size
        self._complete(record, result, error, raw)
        record.http_status = record.http_status or self.status
        self.emit(record)

    def _server_message(self, message: Message, size: int) -> None:
        kind = message.kind
        if kind == RESPONSE:
            self._response(message.id_key, message.result, message.error, message.raw, size)
        elif kind == NOTIFICATION:
            assert message.method is not None
            self.metrics.notification(self.api_id, message.method)
            for record in self.calls.values():
                record.notifications += 1
                if self.capture.mode == "bodies":
                    _capture(record, message.raw)
        elif kind == REQUEST:
            # server -> client (sampling, elicitation, roots, ping): answered by a client POST
            assert message.method is not None
            record = CallRecord(self.clock.seconds(), self.api_id, self.api_name, self.plan,
                                self.client, message.method, "server_request")
            record.session = self.session
            record.jsonrpc_id = str(message.id)[:100]
            record.bytes_out = size
            record.transport = "sse"
            record.id_key = message.id_key
            if self.capture.mode == "bodies":
                record.request_payload, record.truncated = self._payload(message.raw)
            if self._principal is not None:
                self._stamp(record, self._principal)
            if self._backend_version is not None:
                record.backend_version = self._backend_version
            key = message.id_key
            if self.session is not None and key is not None:
                self.book.add_pending(self.session, key, record)

    def _complete(self, record: CallRecord, result: Any, error: Any, raw: Any) -> None:
        record.outcome, record.error_code, record.error_message = response_outcome(result, error)
        if self.denied and record.id_key is not None and record.id_key in self.denied:
            record.outcome = "denied"
        record.latency_ms = round((self.clock.seconds() - record.time) * 1000, 3)
        record.ttfb_ms = self.ttfb_ms if record.kind != "server_request" else None
        record.transport = "sse" if self.stream else "json"
        info = self._info
        if record.method == "initialize" and isinstance(result, dict):
            version = result.get("protocolVersion")
            if info is not None:
                info = attrs.evolve(info, protocol_version=version if isinstance(version, str) else
                                    info.protocol_version)
                self._info = info
                if self.session is not None:
                    self.book.remember_client(self.session, info)
        if info is not None and record.kind != "server_request":
            record.client_name, record.client_version = info.name, info.version
            record.protocol_version = info.protocol_version
        if self.capture.mode == "bodies":
            _capture(record, raw)
            record.response_payload, cut = self._payload(record.captured)
            record.truncated |= cut
            record.captured = []

    def _payload(self, value: Any) -> Tuple[str, bool]:
        text = json.dumps(redact(value, self.capture.redact), separators=(",", ":"))
        if len(text) > self.capture.max_bytes:
            return text[: self.capture.max_bytes], True
        return text, False

    # --- end ---------------------------------------------------------------------------

    def finished(self, outcome: str, status: Optional[int] = None) -> None:
        """
        The exchange ended (C{outcome} as in the access log). Calls still
        open are emitted with what is known.
        """
        if status is not None:
            self.status = status
        if self.stream:
            self.metrics.open_streams.dec()
        self.metrics.exchange(self.api_id, self.status)
        if self.broken:
            return
        try:
            if self.calls:
                leftover = list(self.calls.values())
                self.calls = {}
                for record in leftover:
                    self._finish_open(record, outcome)
            if self.others:
                others, self.others = self.others, []
                for record in others:
                    self._finish_open(record, outcome)
            if self.http_method == b"DELETE" and self.session and self.status == 200:
                self.book.forget(self.session)
        except Exception:  # noqa: BLE001 -- inspection never breaks proxying
            self._failed()

    def _finish_open(self, record: CallRecord, outcome: str) -> None:
        record.http_status = self.status
        record.latency_ms = round((self.clock.seconds() - record.time) * 1000, 3)
        record.ttfb_ms = self.ttfb_ms
        record.transport = "sse" if self.stream else "json"
        info = self._info
        if info is not None:
            record.client_name, record.client_version = info.name, info.version
            record.protocol_version = info.protocol_version
        if outcome in _REFUSALS:
            record.outcome = outcome
        elif record.kind == "notification":
            record.outcome = "accepted" if self.status is not None and self.status < 400 else "http_error"
        elif self.status is not None and self.status >= 400:
            record.outcome = "http_error"
        elif self.status == 202:
            # legacy transport: the answer travels on the SSE stream
            if self.session is not None and record.id_key is not None:
                self.book.add_pending(self.session, record.id_key, record)
                return
            record.outcome = "no_response"
        elif outcome in ("client_closed", "upstream_error"):
            record.outcome = outcome
        elif self._body_over:
            record.outcome = "unparsed"
        else:
            record.outcome = "no_response"
        if self.capture.mode == "bodies" and record.captured:
            record.response_payload, cut = self._payload(record.captured)
            record.truncated |= cut
            record.captured = []
        self.emit(record)
