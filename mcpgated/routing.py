"""
The routing table: which deployed, started API serves a request path.

The admin side replaces entries after each committed store write, the
follower (L{mcpgated.cluster.follower}) after reading what another process
changed, in the order L{WriteOrder} keeps; the gateway side only reads.
Lookups are longest-prefix on whole path segments, of paths normalised by
L{mcpgated.paths} (a context path too: C{/a%41} is matched as C{/aA}, as
the request path is).
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Tuple

import attrs
from twisted.internet.defer import Deferred

from mcpgated.model import ApiDefinition, ApiRecord
from mcpgated.paths import BadPath, normalize_path
from mcpgated.writeorder import WriteOrder


@attrs.frozen
class Route:
    api_id: str
    definition: ApiDefinition

    @property
    def context_path(self) -> str:
        return self.definition.context_path


@attrs.define
class RouteTable:
    """
    Context path -> live API. Starts unloaded: L{when_ready} lets early
    requests wait for the store instead of seeing a spurious 404.
    """

    _by_id: Dict[str, Route] = attrs.field(factory=dict)
    _ordered: List[Route] = attrs.field(factory=list)
    _prefixes: List[Tuple[str, Route]] = attrs.field(factory=list)  # normalised, longest first
    _ready: bool = False
    _waiting: List["Deferred[None]"] = attrs.field(factory=list)
    # a reader's ticket (order.begin()) before it reads the store for load/apply/remove
    order: "WriteOrder[str]" = attrs.field(factory=WriteOrder)

    # --- writes (admin side) ----------------------------------------------------

    def load(self, records: Iterable[ApiRecord], ticket: Optional[int] = None) -> None:
        """
        Every API's state, as read with C{ticket} (L{None}: now); APIs
        written since that read began keep their newer state.
        """
        keep = self.order.whole(ticket)
        if keep is not None:
            by_id = {api_id: route for api_id, route in self._by_id.items() if api_id in keep}
            self._by_id = by_id
            for record in records:
                if record.id not in keep:
                    self._set(record)
            self._reorder()
        self._ready = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def apply(self, record: ApiRecord, ticket: Optional[int] = None) -> None:
        """
        Reflect one API's committed state (read with C{ticket}: unless
        written since; L{None}: a committed write's own result, now).
        """
        if not self.order.entry(record.id, ticket):
            return
        self._by_id.pop(record.id, None)
        self._set(record)
        self._reorder()

    def remove(self, api_id: str, ticket: Optional[int] = None) -> None:
        if not self.order.entry(api_id, ticket):
            return
        if self._by_id.pop(api_id, None) is not None:
            self._reorder()

    def _set(self, record: ApiRecord) -> None:
        live = record.live
        if live is not None:
            self._by_id[record.id] = Route(record.id, live)

    def _reorder(self) -> None:
        self._ordered = sorted(
            self._by_id.values(), key=lambda route: len(route.context_path), reverse=True
        )
        prefixes = [(_prefix(route.context_path), route) for route in self._ordered]
        self._prefixes = sorted(prefixes, key=lambda pair: len(pair[0]), reverse=True)

    # --- reads (gateway side) -----------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready

    def when_ready(self) -> "Deferred[None]":
        d: "Deferred[None]" = Deferred()
        if self._ready:
            d.callback(None)
        else:
            self._waiting.append(d)
        return d

    def match(self, path: str) -> Optional[Tuple[Route, str]]:
        """
        Find the route for a request path (without query), normalised by
        L{mcpgated.paths.normalize_path}.

        @return: the route and the rest of the path after the context path
            (C{""} or starting with C{"/"}), or L{None}.
        """
        for prefix, route in self._prefixes:
            if path == prefix:
                return route, ""
            if path.startswith(prefix) and path[len(prefix)] == "/":
                return route, path[len(prefix):]
        return None

    def routes(self) -> List[Route]:
        return list(self._ordered)


def _prefix(context_path: str) -> str:
    """
    A context path as request paths are compared with it: normalised (one
    the normalisation refuses, with C{%2F} say, can match no request path,
    which is refused before it is matched).
    """
    try:
        return normalize_path(context_path.encode("latin-1"))
    except BadPath:
        return context_path
