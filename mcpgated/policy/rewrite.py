"""
Judging answers for access control and pinning: list results filtered, by
the id of the request they answer, and errors for the denied elements of a
batch added at the end. The messages come from the one response reader
(L{mcpgated.mcp.responses}); everything else passes through byte for byte.

Answers are matched to requests by id key (L{mcpgated.mcp.ids}: by value,
as a JavaScript or Go backend answers them). While lists are filtered, a
result whose id matches no request forwarded in the exchange is not passed
on (it is replaced by an error): the gateway fails closed rather than let an
answer it cannot place through unfiltered. A message is judged as a result
whenever it has a C{result} member, whatever else it has: that is how an MCP
client reads it.
"""

from __future__ import annotations

from typing import AbstractSet, Any, Callable, Dict, List, Optional

from mcpgated.mcp.ids import IdKey
from mcpgated.mcp.messages import Message

Filter = Callable[[str, Any], Any]  # (list method, result) -> filtered result

UNMATCHED = "The gateway could not match this answer to a request; it is withheld"


class ListJudge:
    """
    The judge of the answers to one request body (L{mcpgated.mcp.responses.Judge}).

    @param lists: id key -> list method, for results to filter.
    @param forwarded: the id keys of the other requests forwarded.
    @param apply: filters a list result.
    @param extra: error messages for denied batch elements.
    """

    def __init__(self, lists: Dict[IdKey, str], apply: Filter, extra: List[Any],
                 batch: bool, forwarded: AbstractSet[IdKey] = frozenset()) -> None:
        self._lists = lists
        self._forwarded = forwarded
        self._apply = apply
        self._extra = extra
        self._batch = batch

    @property
    def batch(self) -> bool:
        return self._batch

    def extra(self) -> List[Any]:
        extra, self._extra = self._extra, []
        return extra

    def judge(self, message: Message) -> Optional[Any]:
        raw = message.raw
        if type(raw) is not dict or "result" not in raw:
            return None
        key = message.id_key
        method = self._lists.get(key) if key is not None else None
        if method is None:
            if not self._lists or key in self._forwarded:
                return None
            # an answer to no request of this exchange, while lists are filtered
            return {"jsonrpc": "2.0", "id": raw.get("id"),
                    "error": {"code": -32603, "message": UNMATCHED}}
        filtered = dict(raw)
        filtered["result"] = self._apply(method, raw["result"])
        return filtered
