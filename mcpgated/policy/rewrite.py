"""
Response rewriting for access control: list results filtered (in a JSON
body or event by event in an SSE stream) and errors for denied elements of
a batch added to the backend's answer.

Only responses that need it are rewritten; everything else passes through
byte for byte.

Responses are matched to requests by id key (L{mcpgated.mcp.ids}: by value,
as a JavaScript or Go backend answers them). While lists are filtered, a
result whose id matches no request forwarded in the exchange is not passed
on (it is replaced by an error): the gateway fails closed rather than let an
answer it cannot place through unfiltered. Bodies and events are decoded as
a client decodes them (UTF-8, invalid bytes as U+FFFD).
"""

from __future__ import annotations

import json
from typing import AbstractSet, Any, Callable, Dict, List, Tuple

from mcpgated.mcp.ids import IdKey, id_key
from mcpgated.proxy.sse import EventFramer, Lines, event_data, raw, replace_data

# A list answer larger than this cannot be filtered; it is replaced by an
# error rather than passed through unfiltered.
MAX_FILTERED = 8 * 1024 * 1024

Filter = Callable[[str, Any], Any]  # (list method, result) -> filtered result


def _dump(message: Any) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


UNMATCHED = "The gateway could not match this answer to a request; it is withheld"


def _rewrite_message(message: Any, lists: Dict[IdKey, str], forwarded: AbstractSet[IdKey],
                     apply: Filter) -> Tuple[Any, bool]:
    if not isinstance(message, dict) or "result" not in message:
        return message, False
    key = id_key(message.get("id"))
    method = lists.get(key) if key is not None else None
    if method is None:
        if not lists or key in forwarded:
            return message, False
        # an answer to no request of this exchange, while lists are filtered
        return {"jsonrpc": "2.0", "id": message.get("id"),
                "error": {"code": -32603, "message": UNMATCHED}}, True
    filtered = dict(message)
    filtered["result"] = apply(method, message["result"])
    return filtered, True


def _loads(data: bytes) -> Any:
    # as a client reads it: UTF-8, invalid bytes replaced
    return json.loads(data.decode("utf-8", "replace"))


class JsonRewriter:
    """
    Holds a JSON body (bounded), then filters list results and appends
    denied batch errors.
    """

    def __init__(self, lists: Dict[IdKey, str], apply: Filter, extra: List[Any],
                 batch: bool, error_id: Any = None,
                 forwarded: AbstractSet[IdKey] = frozenset()) -> None:
        self._lists = lists
        self._forwarded = forwarded
        self._apply = apply
        self._extra = extra
        self._batch = batch
        self._error_id = error_id
        self._body = bytearray()
        self._over = False

    def feed(self, chunk: bytes) -> bytes:
        if not self._over:
            self._body += chunk
            if len(self._body) > MAX_FILTERED:
                self._over = True
                self._body = bytearray()
        return b""

    def flush(self) -> bytes:
        if self._over:
            return _dump({"jsonrpc": "2.0", "id": self._error_id, "error": {
                "code": -32603, "message": "The list result is too large for the gateway to filter"}})
        body = bytes(self._body)
        if not body.strip():
            if self._extra:
                return _dump(self._extra if self._batch else self._extra[0])
            return body
        try:
            decoded = _loads(body)
        except ValueError:
            return body  # no client reads it as JSON either
        if isinstance(decoded, list):
            out = [_rewrite_message(m, self._lists, self._forwarded, self._apply)[0]
                   for m in decoded]
            return _dump(out + self._extra)
        message, changed = _rewrite_message(decoded, self._lists, self._forwarded, self._apply)
        if self._extra:
            return _dump([message] + self._extra)
        return _dump(message) if changed else body


class EventRewriter:
    """
    For SSE responses: complete events are passed on at once; an event
    answering a list request is re-written with the filtered result;
    denied batch errors are sent as extra events at the end.
    """

    def __init__(self, lists: Dict[IdKey, str], apply: Filter, extra: List[Any],
                 forwarded: AbstractSet[IdKey] = frozenset()) -> None:
        self._lists = lists
        self._forwarded = forwarded
        self._apply = apply
        self._extra = extra
        self._framer = EventFramer(MAX_FILTERED)

    def feed(self, chunk: bytes) -> bytes:
        return self._framer.feed(chunk, self._event)

    def _event(self, lines: Lines) -> bytes:
        data, payload = event_data(lines)
        if payload:
            try:
                decoded = _loads(payload)
            except ValueError:
                decoded = None
            if decoded is not None:
                message, changed = _rewrite_message(decoded, self._lists, self._forwarded,
                                                    self._apply)
                if changed:
                    return replace_data(lines, data, _dump(message))
        return raw(lines)

    def flush(self) -> bytes:
        extra = b"".join(b"event: message\ndata: " + _dump(m) + b"\n\n" for m in self._extra)
        return self._framer.held() + extra
