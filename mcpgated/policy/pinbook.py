"""
The gateway's copy of the pins (L{mcpgated.policy.pinning}) and what a
request does with them.

The store holds the pins; L{PinBook} keeps their states in memory so a list
result is judged, and a call checked, without waiting on the disk. A list
result is judged on the copy at once (what it serves follows), and whatever
it changed goes to the store, which judges it again in a transaction (the
authority: it records the events) and sends back the stored states. An
API's copy is read again from the store when it is older than
C{refresh_after} seconds, so nodes sharing a store follow each other's
approvals and pins.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Set, Tuple

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers

from mcpgated.policy.acl import ALLOW, Decision
from mcpgated.policy.pinning import (
    CALLS,
    LISTS,
    FingerprintCache,
    Key,
    PinSettings,
    PinState,
    filtered,
    observe,
    read_items,
    refusal,
)
from mcpgated.writeorder import WriteOrder

log = Logger()

# The error of a refused call: as the backend answers an unknown tool, with
# the reason in the message.
BLOCKED = -32602


def session_id(api_id: str, session: str) -> str:
    """
    A session as the exchange log names it (the same hash as
    L{mcpgated.analytics.tracker.session_hash}), never the id itself.
    """
    return hashlib.sha256(f"{api_id}\x00{session}".encode("utf-8", "replace")).hexdigest()[:16]


@attrs.define
class PinBook:
    """
    @ivar store: an L{mcpgated.store.IApiStore} (its pin methods), or
        L{None} to keep pins in memory only.
    @ivar clock: for timestamps and refreshes.
    @ivar metrics: L{mcpgated.analytics.metrics.Metrics}, or L{None}.
    """

    store: Any
    clock: IReactorTime
    metrics: Any = None
    refresh_after: float = 10.0
    # called with the API id once a data-plane pin write is stored (the
    # other processes and nodes hear of it: mcpgated.cluster)
    on_change: Optional[Callable[[str], object]] = None
    _pins: Dict[str, Dict[Key, PinState]] = attrs.field(factory=dict)
    _read_at: Dict[str, float] = attrs.field(factory=dict)
    _refreshing: Set[str] = attrs.field(factory=set)
    _writing: Dict[str, int] = attrs.field(factory=dict)  # observations being stored
    # (API, kind) whose first list is being read page by page
    _first_walks: Set[Tuple[str, str]] = attrs.field(factory=set)
    _fingerprints: FingerprintCache = attrs.field(factory=FingerprintCache)
    # by API: a reader's ticket (order.begin()) before it reads the store for load/replace
    order: "WriteOrder[str]" = attrs.field(factory=WriteOrder)

    # --- the copy ---------------------------------------------------------------------

    def load(self, rows: Iterable[Tuple[str, str, str, PinState]],
             ticket: Optional[int] = None) -> None:
        """
        Replace the whole copy (at start, from L{IApiStore.pin_states}), as
        read with C{ticket} (L{None}: now); APIs whose pins were written
        since that read began keep theirs (L{mcpgated.writeorder}).
        """
        keep = self.order.whole(ticket)
        if keep is None:
            return
        now = self.clock.seconds()
        pins: Dict[str, Dict[Key, PinState]] = {}
        for api_id, kind, name, state in rows:
            if api_id not in keep:
                pins.setdefault(api_id, {})[(kind, name)] = state
        read_at = dict.fromkeys(pins, now)
        for api_id in keep:
            if api_id in self._pins:
                pins[api_id] = self._pins[api_id]
                read_at[api_id] = self._read_at.get(api_id, now)
        self._pins = pins
        self._read_at = read_at

    def replace(self, api_id: str, rows: Iterable[Tuple[str, str, str, PinState]],
                ticket: Optional[int] = None) -> None:
        """
        Replace one API's copy (as read again after a change elsewhere, with
        C{ticket}: unless written since).
        """
        if not self.order.entry(api_id, ticket):
            return
        self._pins[api_id] = {(kind, name): state for _, kind, name, state in rows}
        self._read_at[api_id] = self.clock.seconds()

    def states(self, api_id: str) -> Mapping[Key, PinState]:
        return self._pins.get(api_id, {})

    def put(self, api_id: str, key: Key, state: PinState) -> None:
        """
        One pin as the store has it now (after an operator's decision).
        """
        self.order.entry(api_id)
        self._pins.setdefault(api_id, {})[key] = state

    def _replace_kind(self, api_id: str, kind: str, states: Mapping[Key, PinState]) -> None:
        self.order.entry(api_id)
        pins = self._pins.setdefault(api_id, {})
        for key in [key for key in pins if key[0] == kind and key not in states]:
            del pins[key]
        pins.update(states)

    def _refresh(self, api_id: str) -> None:
        """
        Read an API's pins again when the copy is old (another node may have
        pinned or an operator approved there).
        """
        if self.store is None or api_id in self._refreshing:
            return
        if self.clock.seconds() - self._read_at.get(api_id, 0.0) < self.refresh_after:
            return
        self._refreshing.add(api_id)
        ticket = self.order.begin()

        def read(rows: Any) -> None:
            self._read_at[api_id] = self.clock.seconds()
            if self._writing.get(api_id):
                return  # older than the change being stored, whose answer will follow
            if self.order.entry(api_id, ticket):  # else older than a write applied since
                self._pins[api_id] = {(kind, name): state for _, kind, name, state in rows}

        def done(_: object) -> None:
            self._refreshing.discard(api_id)
            self.order.end()

        d = self.store.pin_states(api_id)
        d.addCallback(read)
        d.addErrback(self._store_failed, api_id)
        d.addBoth(done)

    # --- per request --------------------------------------------------------------------

    def check(self, api_id: str, settings: PinSettings, headers: Headers) -> "PinCheck":
        """
        What one request (a message or a batch) does with the pins.
        """
        self._refresh(api_id)
        return PinCheck(self, api_id, settings, headers)

    def judge(self, api_id: str, settings: PinSettings, list_method: str, result: Any,
              first_page: bool, session: Optional[str]) -> Any:
        """
        Judge a list result: the result to serve (in C{block} mode without
        the items that are not trusted), changes sent to the store.

        @param first_page: the request asked for the first page (no cursor).
        """
        items = read_items(list_method, result, self._fingerprints)
        if items is None:
            return result
        kind = LISTS[list_method][0]
        pins = self._pins.setdefault(api_id, {})
        last_page = result.get("nextCursor") is None
        walk = (api_id, kind)
        if first_page and not any(key[0] == kind for key in pins):
            self._first_walks.add(walk)  # the first inventory, maybe over several pages
        initial = walk in self._first_walks
        if last_page:
            self._first_walks.discard(walk)
        complete = first_page and last_page
        verdict = observe(kind, pins, items, settings, complete, initial)
        pins.update(verdict.states)
        if verdict.states and self.store is not None:
            self._writing[api_id] = self._writing.get(api_id, 0) + 1
            d = self.store.observe_pins(api_id, kind, items, settings, complete, initial, session,
                                        self.clock.seconds())
            d.addCallback(self._stored, api_id, kind)
            d.addErrback(self._store_failed, api_id)
            d.addBoth(self._written, api_id)
        for key in verdict.first_use:
            log.info("API {api_id}: {kind} {name} pinned on first use", api_id=api_id,
                     kind=key[0], name=key[1])
        blocked = len(verdict.keep) - sum(verdict.keep)
        if blocked:
            if self.metrics is not None:
                self.metrics.pin_blocked(api_id, "list_item", blocked)
            return filtered(list_method, result, verdict.keep)
        return result

    def _stored(self, outcome: Tuple[Mapping[Key, PinState], Any], api_id: str,
                kind: str) -> None:
        states, events = outcome
        before = {key: state for key, state in self._pins.get(api_id, {}).items() if key[0] == kind}
        self._replace_kind(api_id, kind, states)
        if self.on_change is not None and (events or before != dict(states)):
            self.on_change(api_id)
        for event in events:
            log.warn("API {api_id}: {kind} {name} {type} (pin {old} -> {new}, session "
                     "{session}); see GET /apis/{api_id}/pins/events",
                     api_id=api_id, kind=event.kind, name=event.name, type=event.type,
                     old=event.old, new=event.new, session=event.session)
            if self.metrics is not None:
                self.metrics.pin_event(api_id, event.kind, event.type)

    def _written(self, result: object, api_id: str) -> None:
        left = self._writing.get(api_id, 1) - 1
        if left:
            self._writing[api_id] = left
        else:
            self._writing.pop(api_id, None)

    def _store_failed(self, failure: Failure, api_id: str) -> None:
        # the store's interface and errors sit in the policy layer; its
        # implementations above (tests/test_layers.py)
        from mcpgated.store._interface import Closed

        if failure.check(Closed):
            return
        log.failure("API {api_id}: cannot store pins", failure, api_id=api_id)

    def refuses(self, api_id: str, settings: PinSettings, method: str, name: Any) -> Decision:
        """
        Whether a call may go on (L{mcpgated.policy.pinning.refusal}).
        """
        kind = CALLS.get(method)
        if kind is None or not settings.blocks:
            return ALLOW
        pins = self._pins.get(api_id, {})
        pin = pins.get((kind, name)) if isinstance(name, str) else None
        # an unknown name: is it unknown among pins of its kind? (rare: scanned)
        listed = pin is None and any(key[0] == kind for key in pins)
        reason = refusal(kind, name, pin, settings, listed)
        if reason is None:
            return ALLOW
        if self.metrics is not None:
            self.metrics.pin_blocked(api_id, "call", 1)
        return Decision(False, BLOCKED, reason)


@attrs.define
class PinCheck:
    """
    One request's view of the pins: calls checked, list results judged.

    @ivar paged: a list request of this message asked for a later page (its
        answer then says nothing of the items it lacks).
    """

    book: PinBook
    api_id: str
    settings: PinSettings
    headers: Headers  # the request's: its session is read only when a list is judged
    paged: bool = False

    @property
    def session(self) -> Optional[str]:
        """
        The request's session, hashed as the exchange log hashes it.
        """
        session = self.headers.getRawHeaders(b"mcp-session-id")
        return session_id(self.api_id, session[0].decode("latin-1")) if session else None

    def decide(self, message: Mapping[str, Any]) -> Decision:
        """
        The decision on one request of the message (C{method}, C{params}).
        """
        method = message.get("method")
        params = message.get("params")
        if method in LISTS:
            if isinstance(params, dict) and params.get("cursor") is not None:
                self.paged = True
            return ALLOW
        if method not in CALLS or not isinstance(params, dict):
            return ALLOW  # no params: nothing named, the server refuses it
        return self.book.refuses(self.api_id, self.settings, method, params.get("name"))

    def judges(self, method: str) -> bool:
        """
        Whether answers to this method are judged (tools, prompts and
        resource templates lists).
        """
        return method in LISTS

    def filter_result(self, list_method: str, result: Any) -> Any:
        if list_method not in LISTS or not isinstance(result, dict):
            return result
        return self.book.judge(self.api_id, self.settings, list_method, result, not self.paged,
                               self.session)
