"""
Pinning and access control on a GET event stream: the legacy (2024-11-05) HTTP+SSE transport
answers every POST there (the POST itself gets 202), so its list results
reach the client on the stream the client opened with GET, where no request
id of the exchange can say what they answer.

A message event whose result has the shape of a list result (a C{tools},
C{prompts} or C{resourceTemplates} array) is judged as the answers to
POSTs are (the admission's C{filter_result}: the pins, then the caller's
access control), as a page (whether the
request had a cursor is not known here: no item counts as removed); every
other event passes byte for byte.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional, Tuple

from mcpgated.policy.pinning import LISTS
from mcpgated.proxy.sse import EventFramer, Lines, event_data, raw, replace_data

MAX_EVENT = 8 * 1024 * 1024  # as the list rewriters (mcpgated.policy.rewrite)

# result key -> list method
_SHAPES = {key: method for method, (_, key, _, _) in LISTS.items()}
_MARKS = tuple(b'"' + key.encode("ascii") + b'"' for key in _SHAPES)


def _list_method(result: Any) -> Optional[str]:
    if not isinstance(result, dict):
        return None
    for key, method in _SHAPES.items():
        if isinstance(result.get(key), list):
            return method
    return None


Filter = Callable[[str, Any], Any]  # (list method, result) -> the result as the caller gets it


class StreamJudge:
    def __init__(self, filter_result: Filter) -> None:
        self._filter_result = filter_result
        self._framer = EventFramer(MAX_EVENT)

    def feed(self, chunk: bytes) -> bytes:
        return self._framer.feed(chunk, self._event)

    def flush(self) -> bytes:
        return self._framer.held()

    def _event(self, lines: Lines) -> bytes:
        data, payload = event_data(lines)
        if not payload or not any(mark in payload for mark in _MARKS):
            return raw(lines)
        try:
            message = json.loads(payload.decode("utf-8", "replace"))
        except ValueError:
            return raw(lines)
        if not isinstance(message, dict) or "id" not in message:
            return raw(lines)
        method = _list_method(message.get("result"))
        if method is None:
            return raw(lines)
        result = self._filter_result(method, message["result"])
        if result is message["result"]:
            return raw(lines)
        message = dict(message, result=result)
        encoded = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return replace_data(lines, data, encoded)


def judged(filter_result: Filter, feed: Optional[Callable[[bytes], bytes]],
           flush: Optional[Callable[[], bytes]]
           ) -> Tuple[Callable[[bytes], bytes], Callable[[], bytes]]:
    """
    A GET stream's transform (C{feed}, C{flush}: the endpoint rewriter's,
    or none) followed by a L{StreamJudge}.
    """
    judge = StreamJudge(filter_result)
    if feed is None or flush is None:
        return judge.feed, judge.flush

    def chained_feed(chunk: bytes) -> bytes:
        return judge.feed(feed(chunk))

    def chained_flush() -> bytes:
        return judge.feed(flush()) + judge.flush()

    return chained_feed, chained_flush
