"""
Watching one HTTP exchange for JSON-RPC calls, as the bytes go by.

The relay forwards every chunk first and shows it to an L{ExchangeTracker}
afterwards; the tracker never holds data back. Responses are matched to
requests by id on the same stream, or through the L{SessionBook} when they
arrive on another stream of the same session (the GET stream, the legacy
SSE stream, a client POST answering a server request).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import parse_qs, urlsplit

import attrs

from mcpgated.analytics.inspect import (
    MAX_PARSE,
    ClientInfo,
    Message,
    classify,
    client_info,
    id_key,
    loads,
    loads_text,
    outcome as response_outcome,
    redact,
    target_of,
)
from mcpgated.mcp.body import BodyError, Parsed, parse as parse_request
from mcpgated.proxy.sse import LineSplitter
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


# The stored fields of a CallRecord, in the exchange table's column order.
RECORD_FIELDS = (
    "time", "api_id", "api_name", "plan", "consumer", "client", "session", "protocol_version",
    "client_name", "client_version", "method", "kind", "target", "jsonrpc_id", "outcome",
    "error_code", "error_message", "http_status", "latency_ms", "ttfb_ms", "bytes_in",
    "bytes_out", "notifications", "transport", "request_headers", "response_headers",
    "request_payload", "response_payload", "truncated", "application", "subscription", "policy",
)
# ... and the ones never stored: the id's typed key, response messages while capturing.
_PRIVATE_FIELDS = ("id_key", "captured")
_REQUIRED = ("time", "api_id", "api_name", "plan", "client", "method", "kind")
_OPTIONAL = frozenset(RECORD_FIELDS + _PRIVATE_FIELDS) - frozenset(_REQUIRED)


class CallRecord:
    """
    One JSON-RPC call (or client notification) as the exchange log stores it.

    Made once per call on the request path: a plain class whose optional
    fields default at class level, so a record holds only what was set.
    C{time}, C{api_id}, C{api_name}, C{plan}, C{client}, C{method} and
    C{kind} are required; any other field of L{RECORD_FIELDS} (and
    C{id_key}) may be given by keyword.
    """

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
    # not stored: the id's key (mcpgated.mcp.ids), and response messages while capturing
    id_key: Any = None
    captured: Sequence[Any] = ()

    def __init__(self, time: float, api_id: str, api_name: str, plan: Optional[str],
                 client: Optional[str], method: str, kind: str, **fields: Any) -> None:
        self.time = time
        self.api_id = api_id
        self.api_name = api_name
        self.plan = plan
        self.client = client
        self.method = method
        self.kind = kind
        if fields:
            unknown = set(fields) - _OPTIONAL
            if unknown:
                raise TypeError(f"CallRecord has no field {sorted(unknown)[0]!r}")
            for name, value in fields.items():
                setattr(self, name, value)

    def _values(self) -> Tuple[Any, ...]:
        return tuple(getattr(self, name) for name in RECORD_FIELDS + _PRIVATE_FIELDS)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in RECORD_FIELDS)
        return f"CallRecord({shown})"


def _capture(record: CallRecord, raw: Any) -> None:
    if record.captured:
        record.captured.append(raw)  # type: ignore[attr-defined]
    else:
        record.captured = [raw]


# Refusals by the gateway itself, recorded as such for every call they stopped.
_REFUSALS = frozenset({"unauthorized", "forbidden", "rate_limited", "bad_request", "bad_credentials"})


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
    _pending: "OrderedDict[Tuple[str, Any], CallRecord]" = attrs.field(factory=OrderedDict)
    # session_hash by (API, session id): a session sends many requests
    _hashes: Dict[Tuple[str, str], str] = attrs.field(factory=dict)

    def session_id(self, api_id: str, session: str) -> str:
        """
        L{session_hash}, remembered for the most recent sessions.
        """
        key = (api_id, session)
        found = self._hashes.get(key)
        if found is None:
            if len(self._hashes) >= self.max_sessions:
                self._hashes.clear()
            found = self._hashes[key] = session_hash(api_id, session)
        return found

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

    def add_pending(self, session: str, key: Any, record: CallRecord) -> None:
        self._pending[(session, key)] = record
        while len(self._pending) > self.max_pending:
            self._pending.popitem(last=False)

    def take_pending(self, session: Optional[str], key: Any) -> Optional[CallRecord]:
        if session is None or key is None or not self._pending:
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
    if "?" not in url:  # no query: what parse_qs would find
        return None
    query = parse_qs(urlsplit(url).query)
    for key in ("sessionId", "session_id"):
        if key in query:
            return query[key][0]
    return None


class _EventReader:
    """
    The C{(type, data)} of each event of a C{text/event-stream}, fed chunk
    by chunk: the line framing of L{mcpgated.proxy.sse.LineSplitter}, reading
    only the fields inspection uses.
    """

    __slots__ = ("_lines", "_data", "_type")

    def __init__(self, max_line: int) -> None:
        self._lines = LineSplitter(max_line)
        self._data: List[str] = []
        self._type = ""

    def feed(self, chunk: bytes) -> List[Tuple[str, str]]:
        events = []
        for raw, _ in self._lines.feed(chunk):
            if not raw:
                data = self._data
                if data:
                    events.append((self._type or "message", "\n".join(data)))
                    self._data = []
                self._type = ""
                continue
            # Split before decoding: ":" and " " are single bytes in UTF-8, so
            # decoding the parts gives the parts of the decoded line. A comment
            # (":" first) has an empty field name.
            field, _, value = raw.partition(b":")
            if field == b"data":
                if value[:1] == b" ":
                    value = value[1:]
                self._data.append(value.decode("utf-8", "replace"))
            elif field == b"event":
                if value[:1] == b" ":
                    value = value[1:]
                self._type = value.decode("utf-8", "replace")
        return events


_NO_IDS: frozenset = frozenset()


class ExchangeTracker:
    """
    Observes one exchange; calls C{emit} with each finished L{CallRecord}.

    One is made per exchange: a plain class, whose state that most
    exchanges never change defaults at class level.
    """

    session: Optional[str] = None
    status: Optional[int] = None
    ttfb_ms: Optional[float] = None
    bytes_in: int = 0
    bytes_out: int = 0
    stream: bool = False
    broken: bool = False
    denied: frozenset = _NO_IDS
    would_deny: frozenset = _NO_IDS
    _sse: Optional[_EventReader] = None
    _body: Optional[List[bytes]] = None  # the JSON answer's chunks, parsed at the end
    _body_size: int = 0
    _body_over: bool = False
    _info: Optional[ClientInfo] = None
    _initialize_key: Any = None
    _legacy_get: bool = False
    _principal: Any = None

    def __init__(self, clock: Any, book: SessionBook, emit: Callable[[CallRecord], None],
                 on_notification: Callable[[str, str], None], api_id: str, api_name: str,
                 plan: Optional[str], client: Optional[str], capture: Capture, started: float,
                 http_method: bytes = b"POST") -> None:
        self.clock = clock
        self.book = book
        self.emit = emit
        self.on_notification = on_notification
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

    def request(self, body: bytes, headers: Any, uri: bytes,
                parsed: Optional[Parsed] = None) -> None:
        """
        The client's request: its session, and the calls of its body.

        @param parsed: the body as the gateway read it (L{mcpgated.mcp.body}),
            when it was; else it is read here, the same way (a body that
            cannot be read so is not recorded: the gateway refuses it).
        """
        if self.broken:
            return
        try:
            self.bytes_in = len(body)
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
            if self.http_method != b"POST" or not body or len(body) > MAX_PARSE:
                return
            if parsed is None:
                try:
                    parsed = parse_request(body)
                except BodyError:
                    return
            decoded = parsed.value
            request_headers = None
            if self.capture.mode != "off":
                request_headers = _headers_json(headers)
            if type(decoded) is dict:
                method = decoded.get("method")
                if isinstance(method, str):  # classify(), for the usual single call
                    ident = decoded.get("id")
                    self._open(method, "notification" if ident is None else "request", ident,
                               decoded.get("params"), decoded, len(body), request_headers, 1)
                    return
                messages = [classify(decoded, len(body))]
            elif isinstance(decoded, list):
                messages = [classify(item) for item in decoded]
            else:
                messages = [classify(decoded, len(body))]
            for message in messages:
                kind = message.kind
                if kind == "request" or kind == "notification":
                    assert message.method is not None
                    self._open(message.method, kind, message.id, message.params, message.raw,
                               message.size, request_headers, len(messages))
                elif kind == "response":
                    self._client_answer(message)
        except Exception:
            self._failed()

    def _open(self, method: str, kind: str, ident: Any, params: Any, raw: Any, size: int,
              request_headers: Optional[str], count: int) -> None:
        """
        A call (C{kind} C{"request"}) or notification the client sends.
        """
        if isinstance(params, dict) and (method == "initialize" or "_meta" in params):
            info = client_info(Message(kind, ident, method, None, params))
            if info is not None:
                self._info = info
        record = CallRecord(self.started, self.api_id, self.api_name, self.plan, self.client,
                            method, kind)
        record.target = target_of(method, params)
        record.session = self.session
        if ident is not None:
            record.jsonrpc_id = str(ident)[:100]
        record.bytes_in = size or (self.bytes_in // max(count, 1))
        record.request_headers = request_headers
        key = record.id_key = id_key(ident)
        if self.capture.mode == "bodies":
            record.request_payload, cut = self._payload(raw)
            record.truncated |= cut
        if kind == "request" and key is not None:
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
        except Exception:
            self._failed()

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
        self._complete(record, message.result, message.error, message.raw)
        record.http_status = record.http_status or 200
        self.emit(record)

    # --- response ----------------------------------------------------------------------

    def response(self, status: int, headers: Any, ttfb_ms: float, event_stream: bool) -> None:
        if self.broken:
            return
        try:
            self.status = status
            self.ttfb_ms = ttfb_ms
            self.stream = event_stream
            if self._initialize_key is not None:
                raw_session = headers.getRawHeaders(b"mcp-session-id")
                if raw_session:
                    self.session = self.book.session_id(self.api_id,
                                                        raw_session[0].decode("latin-1"))
                    for record in self._open_records():
                        record.session = self.session
            if event_stream:
                self._sse = _EventReader(MAX_PARSE)
                self._legacy_get = self.http_method == b"GET"
            else:
                self._body = []
            if self.capture.mode != "off":
                shown = _headers_json(headers)
                for record in self._open_records():
                    record.response_headers = shown
        except Exception:
            self._failed()

    def data(self, chunk: bytes) -> None:
        if self.broken:
            return
        try:
            size = len(chunk)
            self.bytes_out += size
            if self._sse is not None:
                for kind, text in self._sse.feed(chunk):
                    if self._legacy_get and kind == "endpoint":
                        legacy = _legacy_session(text)
                        if legacy:
                            self.session = self.book.session_id(self.api_id, legacy)
                        continue
                    if text and len(text) <= MAX_PARSE:
                        try:
                            decoded = loads_text(text)
                        except ValueError:
                            continue
                        self._server_json(decoded, len(text))
            elif self._body is not None:
                size += self._body_size
                if size > MAX_PARSE:
                    self._body_over = True
                    self._body = None
                else:
                    self._body.append(chunk)
                    self._body_size = size
        except Exception:
            self._failed()

    def _server_json(self, decoded: Any, size: int) -> None:
        """
        A decoded message (or batch) from the server, C{size} long.
        """
        if type(decoded) is dict and not isinstance(decoded.get("method"), str):
            # classify(), for the usual answer
            if "result" in decoded or "error" in decoded:
                self._response(decoded.get("id"), decoded.get("result"), decoded.get("error"),
                               decoded, size)
            return
        if isinstance(decoded, list):
            for item in decoded:
                self._server_message(classify(item), size)
        else:
            self._server_message(classify(decoded, size), size)

    def _response(self, ident: Any, result: Any, error: Any, raw: Any, size: int) -> None:
        key = id_key(ident)
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
        if kind == "response":
            self._response(message.id, message.result, message.error, message.raw, size)
        elif kind == "notification":
            assert message.method is not None
            self.on_notification(self.api_id, message.method)
            for record in self.calls.values():
                record.notifications += 1
                if self.capture.mode == "bodies":
                    _capture(record, message.raw)
        elif kind == "request":
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
        if self.broken:
            return
        try:
            if status is not None:
                self.status = status
            chunks = self._body
            if chunks:
                self._body = None
                body = b"".join(chunks)
                if body:
                    self._answer(body)
            self._body = None
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
        except Exception:
            self._failed()

    def _answer(self, body: bytes) -> None:
        """
        The JSON body of the answer: the responses it holds (what
        L{parse_body} gives, whose other messages are ignored).
        """
        try:
            decoded = loads(body)
        except (ValueError, UnicodeDecodeError):
            return
        if type(decoded) is dict or not isinstance(decoded, list):
            if type(decoded) is dict and not isinstance(decoded.get("method"), str):
                if "result" in decoded or "error" in decoded:
                    self._response(decoded.get("id"), decoded.get("result"),
                                   decoded.get("error"), decoded, len(body))
            return
        for message in [classify(item) for item in decoded]:
            if message.kind == "response":
                self._server_message(message, len(body))

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
