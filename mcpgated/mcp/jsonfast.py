"""
C{JSONDecoder.decode} for a text that starts with C{"{"}, without its
per-call setup: most messages are one object, and this is on every request.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Tuple

# json.decoder's own whitespace (RFC 8259: space, tab, LF, CR)
_SPACE = re.compile(r"[ \t\n\r]*").match


def object_reader(decoder: json.JSONDecoder) -> Callable[[str], Any]:
    """
    A function reading one JSON text that starts with C{"{"}, as
    C{decoder.decode} would: the same value, or L{ValueError}.
    """
    # scan_once is set by JSONDecoder.__init__ (the C scanner); typeshed omits it
    scan: Callable[[str, int], Tuple[Any, int]] = decoder.scan_once  # type: ignore[attr-defined]

    def read(text: str) -> Any:
        try:
            value, end = scan(text, 0)
        except StopIteration:
            raise ValueError("not JSON") from None
        if end != len(text):
            space = _SPACE(text, end)
            if space is None or space.end() != len(text):
                raise ValueError("extra data")
        return value

    return read
