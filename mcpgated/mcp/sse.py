"""
Incremental C{text/event-stream} framing (WHATWG HTML, "event stream
interpretation"), fed chunk by chunk as the backend writes.

L{EventFramer} holds a stream's bytes only until each event is complete;
L{mcpgated.mcp.responses} reads the events' messages from it, and rewrites
the legacy (2024-11-05) C{endpoint} event.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple


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

    @property
    def pending(self) -> bytes:
        return self._pending

    def take_pending(self) -> bytes:
        pending, self._pending = self._pending, b""
        return pending


Lines = List[Tuple[bytes, bytes]]


class EventFramer:
    """
    Holds a stream's bytes only until each event is complete, so a rewriter
    can replace whole events; everything else comes out byte for byte.

    An event that grows past C{max_event} bytes (or holds a line cut at
    C{max_line}) is handed over at once, ending with the L{CUT} marker, so
    memory stays bounded; what follows it is framed as a new event, as a
    client that is sent a replacement for the first part reads it.
    """

    def __init__(self, max_line: int, max_event: Optional[int] = None) -> None:
        self._lines = LineSplitter(max_line)
        self._event: Lines = []
        self._size = 0
        self._max_event = max_event

    def feed(self, chunk: bytes, on_event: Callable[[Lines], bytes]) -> bytes:
        out = []
        splitter = self._lines
        lines = splitter.feed(chunk)
        event = self._event
        if splitter.completed_crlf:
            if event:
                line, _ = event[-1]
                event[-1] = (line, b"\r\n")
            else:
                out.append(b"\n")
        size = self._size
        limit = self._max_event
        for line, end in lines:
            event.append((line, end))
            if not line:  # the blank line: the event is complete
                self._event = []
                out.append(on_event(event))
                event = self._event
                size = 0
                continue
            size += len(line) + len(end)
            if not end or (limit is not None and size > limit):
                event.append(CUT)
                self._event = []
                out.append(on_event(event))
                event = self._event
                size = 0
        self._size = size
        return b"".join(out) if out else b""

    def peek(self) -> bytes:
        """
        Whatever is held back (an incomplete event), still held.
        """
        return b"".join(line + end for line, end in self._event) + self._lines.pending

    def held(self) -> bytes:
        """
        Whatever is held back (an incomplete event), released.
        """
        held = b"".join(line + end for line, end in self._event)
        self._event = []
        self._size = 0
        return held + self._lines.take_pending()


# Ends an event handed over before its end (L{EventFramer}): no bytes.
CUT = (b"", b"")


def is_cut(lines: Lines) -> bool:
    """
    Whether an event was handed over before its end (too large).
    """
    return bool(lines) and lines[-1] is CUT


def event_payload(lines: Lines) -> bytes:
    """
    An event's joined data (what L{event_data} gives second), alone.
    """
    parts = [line[5:].lstrip(b" ") for line, _ in lines if line[:5] == b"data:"]
    return parts[0] if len(parts) == 1 else b"\n".join(parts)


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
    for (line, end), value in zip(lines, data, strict=True):
        if value is None:
            out.append(line + end)
        elif not written:
            out.append(b"data: " + new + end)
            written = True
    return b"".join(out)


def event_type(lines: Lines) -> bytes:
    """
    The value of an event's (last) C{event:} field, or C{b""}.
    """
    kind = b""
    for line, _ in lines:
        if line.startswith(b"event:"):
            kind = line[6:]
            if kind[:1] == b" ":
                kind = kind[1:]
    return kind


def raw(lines: Lines) -> bytes:
    return b"".join(line + end for line, end in lines)
