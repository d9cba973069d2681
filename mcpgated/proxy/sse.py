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


class EndpointRewriter:
    """
    For legacy (2024-11-05) SSE streams: holds bytes back only until each
    event is complete, rewrites the data of C{endpoint} events with
    C{rewrite}, and becomes a pass-through after the first endpoint event or
    C{limit} bytes, whichever comes first.
    """

    def __init__(self, rewrite: Callable[[str], str], limit: int = 64 * 1024) -> None:
        self._rewrite = rewrite
        self._lines = LineSplitter(limit)
        self._event: List[Tuple[bytes, bytes]] = []
        self._seen = 0
        self._limit = limit
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        if self.done:
            return chunk
        self._seen += len(chunk)
        out = []
        lines = self._lines.feed(chunk)
        if self._lines.completed_crlf:
            if self._event:
                line, _ = self._event[-1]
                self._event[-1] = (line, b"\r\n")
            else:
                out.append(b"\n")
        for line, end in lines:
            if self.done:
                out.append(line + end)
                continue
            self._event.append((line, end))
            if line == b"":
                out.append(self._flush_event())
        if self.done or self._seen > self._limit:
            # Whatever is buffered goes out as it is.
            self.done = True
            out.extend(line + end for line, end in self._event)
            self._event = []
            out.append(self._lines.take_pending())
        return b"".join(out)

    def flush(self) -> bytes:
        """
        Everything still held back (the stream ended mid-event).
        """
        self.done = True
        held = b"".join(line + end for line, end in self._event)
        self._event = []
        return held + self._lines.take_pending()

    def _flush_event(self) -> bytes:
        lines, self._event = self._event, []
        is_endpoint = any(line.strip() in (b"event: endpoint", b"event:endpoint") for line, _ in lines)
        if not is_endpoint:
            return b"".join(line + end for line, end in lines)
        data = [line[5:].lstrip(b" ") if line.startswith(b"data:") else None for line, _ in lines]
        value = "\n".join(d.decode("utf-8", "replace") for d in data if d is not None)
        new = self._rewrite(value).encode("utf-8")
        out = []
        written = False
        for (line, end), d in zip(lines, data):
            if d is None:
                out.append(line + end)
            elif not written:
                out.append(b"data: " + new + end)
                written = True
        self.done = True
        return b"".join(out)
