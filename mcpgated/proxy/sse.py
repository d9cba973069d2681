"""
Incremental C{text/event-stream} framing (WHATWG HTML, "event stream
interpretation"), fed chunk by chunk as the backend writes.

The relay forwards bytes before parsing; this module only observes, except
for the legacy C{endpoint} event, which L{EndpointRewriter} rewrites.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import attrs


@attrs.frozen
class Event:
    type: str
    data: str
    id: Optional[str]
    retry: Optional[int] = None


class LineSplitter:
    """
    Splits bytes into lines ending in CRLF, LF or CR, across chunk borders.

    @ivar max_line: a line longer than this (no terminator seen) is cut and
        reported as a line, so memory stays bounded on hostile streams.
    """

    def __init__(self, max_line: int = 16 * 1024 * 1024) -> None:
        self._pending = b""
        self._skip_lf = False
        self.completed_crlf = False
        self.max_line = max_line

    def feed(self, chunk: bytes) -> List[Tuple[bytes, bytes]]:
        """
        @return: complete C{(line, terminator)} pairs.
        """
        # True when this chunk began with the LF of a CRLF whose CR ended
        # the previous chunk (that line was already reported with "\r").
        if not self._pending and not self._skip_lf and b"\r" not in chunk:
            # The usual chunk: whole LF-terminated lines.
            self.completed_crlf = False
            parts = chunk.split(b"\n")
            pending = parts.pop()
            lines = [(part, b"\n") for part in parts]
            if len(pending) > self.max_line:
                lines.append((pending, b""))
                pending = b""
            self._pending = pending
            return lines
        self.completed_crlf = self._skip_lf and chunk[:1] == b"\n"
        if self.completed_crlf:
            chunk = chunk[1:]
        self._skip_lf = False
        data = self._pending + chunk if self._pending else chunk
        lines = []
        start = 0
        length = len(data)
        while start < length:
            lf = data.find(b"\n", start)
            cr = data.find(b"\r", start, lf if lf != -1 else length)
            if cr != -1:
                if cr + 1 < length:
                    if data[cr + 1 : cr + 2] == b"\n":
                        lines.append((data[start:cr], b"\r\n"))
                        start = cr + 2
                    else:
                        lines.append((data[start:cr], b"\r"))
                        start = cr + 1
                else:
                    # CR at the end: a line end; an LF may follow in the next chunk.
                    lines.append((data[start:cr], b"\r"))
                    start = cr + 1
                    self._skip_lf = True
                continue
            if lf == -1:
                break
            lines.append((data[start:lf], b"\n"))
            start = lf + 1
        self._pending = data[start:]
        if len(self._pending) > self.max_line:
            lines.append((self._pending, b""))
            self._pending = b""
        return lines

    def take_pending(self) -> bytes:
        pending, self._pending = self._pending, b""
        return pending


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


Lines = List[Tuple[bytes, bytes]]


class EventFramer:
    """
    Holds a stream's bytes only until each event is complete, so a rewriter
    can replace whole events; everything else comes out byte for byte.
    """

    def __init__(self, max_line: int) -> None:
        self._lines = LineSplitter(max_line)
        self._event: Lines = []

    def feed(self, chunk: bytes, on_event: Callable[[Lines], bytes]) -> bytes:
        out = []
        lines = self._lines.feed(chunk)
        if self._lines.completed_crlf:
            if self._event:
                line, _ = self._event[-1]
                self._event[-1] = (line, b"\r\n")
            else:
                out.append(b"\n")
        for line, end in lines:
            self._event.append((line, end))
            if line == b"":
                event, self._event = self._event, []
                out.append(on_event(event))
        return b"".join(out)

    def held(self) -> bytes:
        """
        Whatever is held back (an incomplete event), released.
        """
        held = b"".join(line + end for line, end in self._event)
        self._event = []
        return held + self._lines.take_pending()


def event_data(lines: Lines) -> Tuple[List[Optional[bytes]], bytes]:
    """
    Each line's C{data:} value (or L{None}) and the event's joined data.
    """
    data = [line[5:].lstrip(b" ") if line.startswith(b"data:") else None for line, _ in lines]
    return data, b"\n".join(d for d in data if d is not None)


def replace_data(lines: Lines, data: List[Optional[bytes]], new: bytes) -> bytes:
    """
    The event with its data lines replaced by one line carrying C{new};
    every other field (id, event, retry, comments) kept as it was.
    """
    out = []
    written = False
    for (line, end), value in zip(lines, data):
        if value is None:
            out.append(line + end)
        elif not written:
            out.append(b"data: " + new + end)
            written = True
    return b"".join(out)


def raw(lines: Lines) -> bytes:
    return b"".join(line + end for line, end in lines)


class EndpointRewriter:
    """
    For legacy (2024-11-05) SSE streams: rewrites the data of C{endpoint}
    events with C{rewrite}, and becomes a pass-through after the first
    endpoint event or C{limit} bytes, whichever comes first.
    """

    def __init__(self, rewrite: Callable[[str], str], limit: int = 64 * 1024) -> None:
        self._rewrite = rewrite
        self._framer = EventFramer(limit)
        self._seen = 0
        self._limit = limit
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        if self.done:
            return chunk
        self._seen += len(chunk)
        out = self._framer.feed(chunk, self._event)
        if self.done or self._seen > self._limit:
            # Whatever is held goes out as it is, and so does all that follows.
            self.done = True
            out += self._framer.held()
        return out

    def flush(self) -> bytes:
        """
        Everything still held back (the stream ended mid-event).
        """
        self.done = True
        return self._framer.held()

    def _event(self, lines: Lines) -> bytes:
        if self.done or not any(line.strip() in (b"event: endpoint", b"event:endpoint")
                                for line, _ in lines):
            return raw(lines)
        data, value = event_data(lines)
        self.done = True
        return replace_data(lines, data, self._rewrite(value.decode("utf-8", "replace")).encode("utf-8"))
