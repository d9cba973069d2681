"""
A reference reading of C{text/event-stream} (WHATWG HTML, "event stream
interpretation"), line by line and field by field as the specification
words it: the oracle the gateway's framing (L{mcpgated.mcp.sse}) and its
response reader (L{mcpgated.mcp.responses}) are checked against.
"""

from __future__ import annotations

import json
from typing import Any, List, Optional

import attrs

from mcpgated.mcp.sse import LineSplitter


@attrs.frozen
class Event:
    type: str
    data: str
    id: Optional[str]
    retry: Optional[int] = None


class EventParser:
    """
    Turns lines into dispatched L{Event}s (comments and empty-data events
    are not dispatched; C{id} persists as the last event id).
    """

    def __init__(self, max_line: int = 16 * 1024 * 1024) -> None:
        self._lines = LineSplitter(max_line)
        self._data: List[str] = []
        self._type = ""
        self._last_id: Optional[str] = None
        self._retry: Optional[int] = None

    def feed(self, chunk: bytes) -> List[Event]:
        events = []
        for raw, _ in self._lines.feed(chunk):
            event = self._line(raw.decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> Optional[Event]:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._type = value
        elif field == "id":
            if "\x00" not in value:
                self._last_id = value
        elif field == "retry":
            if value.isdigit():
                self._retry = int(value)
        return None

    def _dispatch(self) -> Optional[Event]:
        data, kind, retry = self._data, self._type, self._retry
        self._data, self._type, self._retry = [], "", None
        if not data:
            return None
        return Event(type=kind or "message", data="\n".join(data), id=self._last_id, retry=retry)


def chunks_at(data: bytes, cuts: List[int]) -> List[bytes]:
    """
    C{data} cut at the given offsets (modulo its length), every piece kept.
    """
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, start = [], 0
    for point in points:
        out.append(data[start:point])
        start = point
    out.append(data[start:])
    return out


def oracle_messages(chunks: List[bytes], max_line: int = 16 * 1024 * 1024) -> List[Any]:
    """
    The JSON of each event's data, as this reference reads the stream.
    """
    parser = EventParser(max_line)
    values: List[Any] = []
    for chunk in chunks:
        for event in parser.feed(chunk):
            try:
                value = json.loads(event.data)
            except ValueError:
                continue
            values.extend(value if isinstance(value, list) else [value])
    return values
