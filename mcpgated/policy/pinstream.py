"""
Pinning and access control on a GET event stream: the legacy (2024-11-05)
HTTP+SSE transport answers every POST there (the POST itself gets 202), so
its list results reach the client on the stream the client opened with GET,
where no request id of the exchange can say what they answer.

A message whose result has the shape of a list result (a C{tools},
C{prompts}, C{resources} or C{resourceTemplates} array) is judged as the
answers to POSTs are (the admission's C{filter_result}: the pins, then the
caller's access control), as a page (whether the request had a cursor is
not known here: no item counts as removed); every other message passes
byte for byte.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional

from mcpgated.mcp.messages import Message
from mcpgated.mcp.methods import list_method_of_result

Filter = Callable[[str, Any], Any]  # (list method, result) -> the result as the caller gets it


class ShapeJudge:
    """
    The judge of a GET stream's messages (L{mcpgated.mcp.responses.Judge}).
    """

    batch = False

    def __init__(self, filter_result: Filter) -> None:
        self._filter_result = filter_result

    def extra(self) -> List[Any]:
        return []

    def judge(self, message: Message) -> Optional[Any]:
        raw = message.raw
        if type(raw) is not dict or "id" not in raw:
            return None
        result = raw.get("result")
        method = list_method_of_result(result)
        if method is None:
            return None
        filtered = self._filter_result(method, result)
        if filtered is result:
            return None
        return dict(raw, result=filtered)
