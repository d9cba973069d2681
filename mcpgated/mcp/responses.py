"""
One incremental reader of a response body, JSON or C{text/event-stream}:
it frames the bytes as the backend writes them, decodes each message once,
and hands the same L{Message}s to the judge that may rewrite them (list
filtering, pinning) and to the observer that records them (the exchange
log).

Without a judge, bytes pass through as they come and the reader only
watches; with one, a JSON body is held (bounded) and an event stream is held
only until each event is complete.
"""

from __future__ import annotations

import json
from typing import Any, Callable, List, Optional, Protocol, Sequence

from mcpgated.mcp.jsonfast import object_reader
from mcpgated.mcp.messages import Message, classify
from mcpgated.mcp.sse import (
    CUT,
    EventFramer,
    Lines,
    event_data,
    event_payload,
    event_type,
    is_cut,
    raw,
    replace_data,
)

# Largest message read for the exchange log; bigger ones are counted, not read.
MAX_READ = 1024 * 1024
# A held answer larger than this cannot be judged; it is replaced by an error
# rather than passed through unjudged.
MAX_JUDGED = 8 * 1024 * 1024
# The legacy endpoint event comes first; past this many bytes, none is looked for.
ENDPOINT_WITHIN = 64 * 1024

TOO_LARGE = "The list result is too large for the gateway to filter"
# what a judge returns for a message the client must not get (an event is left out)
DROP = object()


class Judge(Protocol):
    """
    Rewrites the messages of an answer (L{mcpgated.policy}).
    """

    def judge(self, message: Message) -> Optional[Any]:
        """
        The JSON value to send instead of C{message}, L{None} to send it
        as it is, or L{DROP} to leave an event stream's message out.
        """

    def extra(self) -> List[Any]:
        """
        Messages to add at the end of the answer.
        """

    @property
    def batch(self) -> bool:
        """
        Whether the request was a batch (an answer of added messages alone
        is then an array).
        """


class Observer(Protocol):
    """
    Watches the messages of an answer (L{mcpgated.analytics}).
    """

    def messages(self, messages: Sequence[Message], size: int, stream: bool) -> None:
        """
        Messages as the client gets them, C{size} bytes of JSON in all.
        """

    def endpoint(self, url: str) -> None:
        """
        The legacy transport's C{endpoint} event, as the client gets it.
        """

    def unread(self, size: int) -> None:
        """
        A JSON answer too large to read (over L{MAX_READ}).
        """


def dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


_object = object_reader(json.JSONDecoder())


def loads(data: bytes) -> Any:
    """
    JSON as a client reads an answer: UTF-8 with invalid bytes replaced.

    @raise ValueError: not JSON.
    """
    text = data.decode("utf-8", "replace")
    if text[:1] == "{":  # the usual message
        return _object(text)
    return json.loads(text)


def _messages(value: Any) -> List[Message]:
    if type(value) is list:
        return [classify(item) for item in value]
    return [classify(value)]


class ResponseReader:
    """
    Feed it the backend's chunks (L{feed}) and the end (L{flush}); each
    returns the bytes to send the client now.

    @param endpoint: rewrites the legacy C{endpoint} event's URL (a GET
        event stream), or L{None}.
    """

    def __init__(self, event_stream: bool, judge: Optional[Judge] = None,
                 observer: Optional[Observer] = None,
                 endpoint: Optional[Callable[[str], str]] = None,
                 endpoint_within: int = ENDPOINT_WITHIN) -> None:
        self._judge = judge
        self._endpoint_within = endpoint_within
        self._observer = observer
        self._endpoint = endpoint
        self._stream = event_stream
        self._seen = 0
        self._released = False
        if event_stream:
            limit = MAX_JUDGED if judge else MAX_READ
            self._framer: Optional[EventFramer] = EventFramer(limit, max_event=limit)
            self._body: Optional[bytearray] = None
        else:
            self._framer = None
            self._body = bytearray()
        self._over = False

    # --- JSON ---------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> bytes:
        if self._framer is not None:
            return self._feed_events(chunk)
        body = self._body
        if body is not None:
            body += chunk
            if len(body) > (MAX_JUDGED if self._judge is not None else MAX_READ):
                self._over = True
                self._body = None
        elif self._judge is None:
            self._seen += len(chunk)
        return b"" if self._judge is not None else chunk

    def flush(self) -> bytes:
        if self._framer is not None:
            return self._flush_events()
        judge = self._judge
        if self._over:
            if self._observer is not None:
                self._observer.unread(self._seen)
            if judge is None:
                return b""
            error = {"jsonrpc": "2.0", "id": None,
                     "error": {"code": -32603, "message": TOO_LARGE}}
            out = dump(error)
            self._observe([classify(error)], len(out))
            return out
        body = bytes(self._body or b"")
        self._body = None
        if not body.strip():
            extra = judge.extra() if judge is not None else []
            if not extra:
                return body if judge is not None else b""  # watched only: already sent
            assert judge is not None
            return self._json_out(extra, not judge.batch)
        try:
            value = loads(body)
        except ValueError:
            return body if judge is not None else b""  # no client reads it as JSON either
        if judge is None:
            self._observe(_messages(value), len(body))
            return b""
        if type(value) is list:
            sent = [v for v in (self._judged(classify(item)) for item in value) if v is not DROP]
            return self._json_out(sent + judge.extra(), False)
        message = classify(value)
        replaced = judge.judge(message)
        if replaced is DROP:  # a JSON answer is one response: it is sent
            replaced = None
        extra = judge.extra()
        if extra:
            return self._json_out([message.raw if replaced is None else replaced, *extra], False)
        if replaced is None:
            self._observe([message], len(body))
            return body
        return self._json_out([replaced], True)

    def observe_with(self, observer: Optional[Observer]) -> None:
        """
        The messages from now on are another exchange's (an answer that
        waited for the client's next request goes on to it).
        """
        self._observer = observer

    def added(self, value: Any, size: int) -> None:
        """
        A message the gateway sent the client in the answer's place (the
        exchange log records it as the answer).
        """
        self._observe([classify(value)], size)

    def _too_large(self) -> bytes:
        error = {"jsonrpc": "2.0", "id": None, "error": {"code": -32603, "message": TOO_LARGE}}
        encoded = dump(error)
        self._observe([classify(error)], len(encoded))
        return b"event: message\ndata: " + encoded + b"\n\n"

    def _judged(self, message: Message) -> Any:
        assert self._judge is not None
        replaced = self._judge.judge(message)
        return message.raw if replaced is None else replaced

    def _json_out(self, values: List[Any], single: bool) -> bytes:
        out = dump(values[0] if single else values)
        self._observe([classify(v) for v in values], len(out))
        return out

    def _observe(self, messages: List[Message], size: int) -> None:
        if self._observer is not None:
            self._observer.messages(messages, size, self._stream)

    # --- event streams -----------------------------------------------------------------

    def _feed_events(self, chunk: bytes) -> bytes:
        assert self._framer is not None
        if self._judge is None and self._endpoint is None:
            # watch only: the bytes go out as they came (the events' bytes are not rebuilt)
            self._framer.feed(chunk, self._watch)
            return chunk
        if self._endpoint is not None:
            self._seen += len(chunk)
        out = self._framer.feed(chunk, self._event)
        if self._endpoint is not None and self._seen > self._endpoint_within:
            self._endpoint = None  # no endpoint event where it must be: none is rewritten
        if self._endpoint is None and self._judge is None and not self._released:
            # the endpoint is done: what is held goes out now, and the framer
            # goes on watching the event in progress
            self._released = True
            out += self._framer.peek()
        return out

    def _flush_events(self) -> bytes:
        assert self._framer is not None
        held = self._framer.held() if (self._judge is not None or self._endpoint is not None) \
            and not self._released else b""
        if self._judge is None:
            return held
        extra = self._judge.extra()
        if extra:
            self._observe([classify(m) for m in extra], 0)
        return held + b"".join(b"event: message\ndata: " + dump(m) + b"\n\n" for m in extra)

    def _watch(self, lines: Lines) -> bytes:
        """
        An event of a stream only watched: its messages observed, nothing
        to send (the bytes went out as they came).
        """
        if lines[-1] is CUT:
            return b""
        payload = event_payload(lines)
        if not payload or len(payload) > MAX_READ:
            return b""
        try:
            value = loads(payload)
        except ValueError:
            return b""
        self._observe(_messages(value), len(payload))
        return b""

    def _event(self, lines: Lines) -> bytes:
        if is_cut(lines):
            # too large to read: judged answers fail closed, watched ones go unread
            return self._too_large() if self._judge is not None else raw(lines)
        data, payload = event_data(lines)
        if self._endpoint is not None and event_type(lines) == b"endpoint":
            rewrite, self._endpoint = self._endpoint, None
            url = rewrite(payload.decode("utf-8", "replace"))
            if self._observer is not None:
                self._observer.endpoint(url)
            return replace_data(lines, data, url.encode("utf-8"))
        if not payload or (self._judge is None and len(payload) > MAX_READ):
            return raw(lines)
        try:
            value = loads(payload)
        except ValueError:
            return raw(lines)
        messages = _messages(value)
        judge = self._judge
        if judge is not None:
            if type(value) is list:
                changed = False
                sent = []
                for message in messages:
                    replaced = judge.judge(message)
                    if replaced is not None:
                        changed = True
                        if replaced is not DROP:
                            sent.append(replaced)
                    else:
                        sent.append(message.raw)
                if changed:
                    if not sent:
                        return b""
                    encoded = dump(sent)
                    self._observe([classify(v) for v in sent], len(encoded))
                    return replace_data(lines, data, encoded)
            else:
                replaced = judge.judge(messages[0])
                if replaced is DROP:
                    return b""
                if replaced is not None:
                    encoded = dump(replaced)
                    self._observe([classify(replaced)], len(encoded))
                    return replace_data(lines, data, encoded)
        self._observe(messages, len(payload))
        return raw(lines)
