"""
Watching one HTTP exchange for JSON-RPC calls, as the bytes go by.

The relay forwards every chunk first and shows it to an L{ExchangeTracker}
afterwards; the tracker never holds data back. Responses are matched to
requests by id on the same stream, or through the L{SessionBook} when they
arrive on another stream of the same session (the GET stream, the legacy
SSE stream, a client POST answering a server request).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

import attrs

from mcpgated.analytics.inspect import (
    MAX_PARSE,
    ClientInfo,
    Message,
    client_info,
    outcome_of,
    parse_body,
    parse_text,
    redact,
)
from mcpgated.proxy.sse import EventParser
from twisted.logger import Logger

log = Logger()

SECRET_HEADERS = frozenset({
    b"authorization", b"proxy-authorization", b"cookie", b"set-cookie", b"dpop",
    b"x-api-key", b"x-gravitee-api-key", b"api-key", b"mcp-session-id",
})
DEFAULT_REDACT = frozenset({"access_token", "refresh_token", "id_token", "client_secret",
                            "password", "token", "api_key", "apikey", "authorization"})


@attrs.frozen
class Capture:
    """
    What an API records beyond metadata: C{"off"}, C{"headers"} or
    C{"bodies"} (headers and messages), each payload cut at C{max_bytes}.
    """

    mode: str = "off"
    max_bytes: int = 16384
    redact: frozenset = DEFAULT_REDACT


@attrs.define
class CallRecord:
    """
    One JSON-RPC call (or client notification) as the exchange log stores it.
    """

    time: float
    api_id: str
    api_name: str
    plan: Optional[str]
    client: Optional[str]
    method: str
    kind: str
    target: Optional[str] = None
    jsonrpc_id: Optional[str] = None
    session: Optional[str] = None
    protocol_version: Optional[str] = None
    client_name: Optional[str] = None
    client_version: Optional[str] = None
    consumer: Optional[str] = None
    outcome: Optional[str] = None
    error_code: Optional[int] = None
    error_message: Optional[str] = None
    http_status: Optional[int] = None
    latency_ms: Optional[float] = None
    ttfb_ms: Optional[float] = None
    bytes_in: int = 0
    bytes_out: int = 0
    notifications: int = 0
    transport: str = "json"
    request_headers: Optional[str] = None
    response_headers: Optional[str] = None
    request_payload: Optional[str] = None
    response_payload: Optional[str] = None
    truncated: bool = False
    application: Optional[str] = None
    subscription: Optional[str] = None
    policy: Optional[str] = None  # "would_deny" under a dry-run policy
    # not stored: the id's typed key, and response messages while capturing
    id_key: Optional[str] = None
    captured: List[Any] = attrs.field(factory=list)


# Refusals by the gateway itself, recorded as such for every call they stopped.
_REFUSALS = frozenset({"unauthorized", "forbidden", "rate_limited", "bad_request", "bad_credentials"})


def guarded(method: Callable[..., None]) -> Callable[..., None]:
    """
    Inspection must never break proxying: a failure is logged once and
    turns the tracker off for the rest of its exchange.
    """

    @functools.wraps(method)
    def wrapper(self: "ExchangeTracker", *args: Any, **kwargs: Any) -> None:
        if self.broken:
            return
        try:
            method(self, *args, **kwargs)
        except Exception:
            self.broken = True
            log.failure("MCP inspection failed for API {api_id}; this exchange is not recorded",
                        api_id=self.api_id)

    return wrapper


def session_hash(api_id: str, session: str) -> str:
    return hashlib.sha256(f"{api_id}\x00{session}".encode("utf-8", "replace")).hexdigest()[:16]


@attrs.define
class SessionBook:
    """
    Per-session state kept between exchanges, bounded in size (oldest
    sessions and pending calls are forgotten first).
    """

    max_sessions: int = 10000
    max_pending: int = 20000
    _clients: "OrderedDict[str, ClientInfo]" = attrs.field(factory=OrderedDict)
    _pending: "OrderedDict[Tuple[str, str], CallRecord]" = attrs.field(factory=OrderedDict)

    def remember_client(self, session: str, info: ClientInfo) -> None:
        self._clients[session] = info
        self._clients.move_to_end(session)
        while len(self._clients) > self.max_sessions:
            self._clients.popitem(last=False)

    def client(self, session: Optional[str]) -> Optional[ClientInfo]:
        if session is None:
            return None
        return self._clients.get(session)

    def forget(self, session: str) -> None:
        self._clients.pop(session, None)

    def add_pending(self, session: str, key: str, record: CallRecord) -> None:
        self._pending[(session, key)] = record
        while len(self._pending) > self.max_pending:
            self._pending.popitem(last=False)

    def take_pending(self, session: Optional[str], key: Optional[str]) -> Optional[CallRecord]:
        if session is None or key is None:
            return None
        return self._pending.pop((session, key), None)


def _headers_json(headers: Any) -> str:
    shown = {}
    for name, values in headers.getAllRawHeaders():
        lowered = name.lower()
        text = [b"[REDACTED]" if lowered in SECRET_HEADERS else v for v in values]
        shown[name.decode("latin-1")] = [v.decode("latin-1") for v in text]
    return json.dumps(shown)


def _legacy_session(url: str) -> Optional[str]:
    query = parse_qs(urlsplit(url).query)
    for key in ("sessionId", "session_id"):
        if key in query:
            return query[key][0]
    return None


@attrs.define
class ExchangeTracker:
    """
    Observes one exchange; calls C{emit} with each finished L{CallRecord}.
    """

    clock: Any
    book: SessionBook
    emit: Callable[[CallRecord], None]
    on_notification: Callable[[str, str], None]
    api_id: str
    api_name: str
    plan: Optional[str]
    client: Optional[str]
    capture: Capture
    started: float
    http_method: bytes = b"POST"
    session: Optional[str] = None
    calls: Dict[str, CallRecord] = attrs.field(factory=dict)
    others: List[CallRecord] = attrs.field(factory=list)
    status: Optional[int] = None
    ttfb_ms: Optional[float] = None
    bytes_in: int = 0
    bytes_out: int = 0
    stream: bool = False
    broken: bool = False
    denied: frozenset = frozenset()
    would_deny: frozenset = frozenset()
    _sse: Optional[EventParser] = attrs.field(init=False, default=None)
    _body: Optional[bytearray] = attrs.field(init=False, default=None)
    _body_over: bool = attrs.field(init=False, default=False)
    _info: Optional[ClientInfo] = attrs.field(init=False, default=None)
    _initialize_key: Optional[str] = attrs.field(init=False, default=None)
    _legacy_get: bool = attrs.field(init=False, default=False)
    _principal: Any = attrs.field(init=False, default=None)

    # --- request ---------------------------------------------------------------------

    @guarded
    def request(self, body: bytes, headers: Any, uri: bytes) -> None:
        self.bytes_in = len(body)
        raw_session = headers.getRawHeaders(b"mcp-session-id")
        if raw_session:
            self.session = session_hash(self.api_id, raw_session[0].decode("latin-1"))
        else:
            legacy = _legacy_session(uri.decode("latin-1"))
            if legacy:
                self.session = session_hash(self.api_id, legacy)
        self._info = self.book.client(self.session)
        messages, batch = parse_body(body) if self.http_method == b"POST" else ([], False)
        request_headers = None
        if self.capture.mode != "off":
            request_headers = _headers_json(headers)
        for message in messages:
            if message.kind in ("request", "notification"):
                self._open(message, request_headers, len(messages))
            elif message.kind == "response":
                self._client_answer(message)

    def _open(self, message: Message, request_headers: Optional[str], count: int) -> None:
        info = client_info(message)
        if info is not None:
            self._info = info
        assert message.method is not None
        record = CallRecord(
            time=self.started, api_id=self.api_id, api_name=self.api_name, plan=self.plan,
            client=self.client, method=message.method, kind=message.kind,
            target=message.target, session=self.session,
            jsonrpc_id=None if message.id is None else str(message.id)[:100],
            bytes_in=message.size or (self.bytes_in // max(count, 1)),
            request_headers=request_headers, id_key=message.id_key,
        )
        if self.capture.mode == "bodies":
            record.request_payload, cut = self._payload(message.raw)
            record.truncated |= cut
        key = message.id_key
        if message.kind == "request" and key is not None:
            self.calls[key] = record
            if message.method == "initialize":
                self._initialize_key = key
        else:
            self.others.append(record)

    @guarded
    def admitted(self, principal: Any, denied: Any = (), would_deny: Any = ()) -> None:
        """
        The gate's verdict: who called, and which requests policy denied.
        """
        self.plan = principal.plan.name
        self.denied = frozenset(denied)
        self.would_deny = frozenset(would_deny)
        for record in list(self.calls.values()) + self.others:
            self._stamp(record, principal)
        self._principal = principal

    def _stamp(self, record: CallRecord, principal: Any) -> None:
        record.plan = principal.plan.name
        record.consumer = principal.consumer
        record.application = principal.application_id
        record.subscription = principal.subscription_id
        if record.id_key in self.would_deny:
            record.policy = "would_deny"

    def _client_answer(self, message: Message) -> None:
        """
        A client POST carrying the answer to a server->client request.
        """
        record = self.book.take_pending(self.session, message.id_key)
        if record is None:
            return
        self._complete(record, message)
        record.http_status = record.http_status or 200
        self.emit(record)

    # --- response ----------------------------------------------------------------------

    @guarded
    def response(self, status: int, headers: Any, ttfb_ms: float, event_stream: bool) -> None:
        self.status = status
        self.ttfb_ms = ttfb_ms
        self.stream = event_stream
        if self._initialize_key is not None:
            raw_session = headers.getRawHeaders(b"mcp-session-id")
            if raw_session:
                self.session = session_hash(self.api_id, raw_session[0].decode("latin-1"))
                for record in list(self.calls.values()) + self.others:
                    record.session = self.session
        if event_stream:
            self._sse = EventParser(MAX_PARSE)
            self._legacy_get = self.http_method == b"GET"
        else:
            self._body = bytearray()
        if self.capture.mode != "off":
            shown = _headers_json(headers)
            for record in list(self.calls.values()) + self.others:
                record.response_headers = shown

    @guarded
    def data(self, chunk: bytes) -> None:
        self.bytes_out += len(chunk)
        if self._sse is not None:
            for event in self._sse.feed(chunk):
                if self._legacy_get and event.type == "endpoint":
                    legacy = _legacy_session(event.data)
                    if legacy:
                        self.session = session_hash(self.api_id, legacy)
                    continue
                for message in parse_text(event.data):
                    self._server_message(message, len(event.data))
        elif self._body is not None and not self._body_over:
            if len(self._body) + len(chunk) > MAX_PARSE:
                self._body_over = True
                self._body = None
            else:
                self._body += chunk

    def _server_message(self, message: Message, size: int) -> None:
        if message.kind == "response":
            key = message.id_key
            record = self.calls.pop(key, None) if key is not None else None
            if record is None:
                record = self.book.take_pending(self.session, key)
                if record is None:
                    return
            record.bytes_out += size
            self._complete(record, message)
            record.http_status = record.http_status or self.status
            self.emit(record)
        elif message.kind == "notification":
            assert message.method is not None
            self.on_notification(self.api_id, message.method)
            for record in self.calls.values():
                record.notifications += 1
                if self.capture.mode == "bodies":
                    record.captured.append(message.raw)
        elif message.kind == "request":
            # server -> client (sampling, elicitation, roots, ping): answered by a client POST
            assert message.method is not None
            record = CallRecord(
                time=self.clock.seconds(), api_id=self.api_id, api_name=self.api_name,
                plan=self.plan, client=self.client, method=message.method, kind="server_request",
                session=self.session, jsonrpc_id=str(message.id)[:100], bytes_out=size,
                transport="sse", id_key=message.id_key,
            )
            if self.capture.mode == "bodies":
                record.request_payload, record.truncated = self._payload(message.raw)
            if self._principal is not None:
                self._stamp(record, self._principal)
            key = message.id_key
            if self.session is not None and key is not None:
                self.book.add_pending(self.session, key, record)

    def _complete(self, record: CallRecord, message: Message) -> None:
        record.outcome, record.error_code, record.error_message = outcome_of(message)
        if record.id_key is not None and record.id_key in self.denied:
            record.outcome = "denied"
        record.latency_ms = round((self.clock.seconds() - record.time) * 1000, 3)
        record.ttfb_ms = self.ttfb_ms if record.kind != "server_request" else None
        record.transport = "sse" if self.stream else "json"
        info = self._info
        if record.method == "initialize" and isinstance(message.result, dict):
            version = message.result.get("protocolVersion")
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
            record.captured.append(message.raw)
            record.response_payload, cut = self._payload(record.captured)
            record.truncated |= cut
            record.captured = []

    def _payload(self, value: Any) -> Tuple[str, bool]:
        text = json.dumps(redact(value, self.capture.redact), separators=(",", ":"))
        if len(text) > self.capture.max_bytes:
            return text[: self.capture.max_bytes], True
        return text, False

    # --- end ---------------------------------------------------------------------------

    @guarded
    def finished(self, outcome: str, status: Optional[int] = None) -> None:
        """
        The exchange ended (C{outcome} as in the access log). Calls still
        open are emitted with what is known.
        """
        if status is not None:
            self.status = status
        if self._body is not None and self._body:
            messages, _ = parse_body(bytes(self._body))
            for message in messages:
                if message.kind == "response":
                    self._server_message(message, message.size or len(self._body))
        self._body = None
        leftover = list(self.calls.values())
        self.calls = {}
        for record in leftover + self.others:
            self._finish_open(record, outcome)
        self.others = []
        if self.http_method == b"DELETE" and self.session and self.status == 200:
            self.book.forget(self.session)

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

