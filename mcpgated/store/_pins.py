"""
The SQLite side of tool-definition pinning (mixed into
L{mcpgated.store.SQLiteApiStore}): pins, their history and drift events.

Each public method is one transaction on the store thread. The decisions
are L{mcpgated.policy.pinning}'s, run here against the stored pins: the
store is the authority every node of a shared store agrees on, and the only
writer of events (a change is one event, however many lists show it).
"""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from mcpgated.model import ApiRecord
from mcpgated.policy.pinning import (
    APPROVED,
    REJECTED,
    EventRecord,
    Key,
    Observed,
    PinRecord,
    PinSettings,
    PinState,
    diff,
    history_json,
    observe,
)
from mcpgated.store._interface import Conflict, NotFound

log = Logger()

MAX_PINS = 10000  # per API
MAX_EVENTS = 1000  # kept per API

_PIN = ("SELECT id, api_id, kind, name, approved, status, pending, seen, definition, approved_at,"
        " approved_by, pending_definition, pending_at, seen_at, created_at, updated_at FROM pins")
_EVENT = ("SELECT id, api_id, pin_id, kind, name, type, old_fingerprint, new_fingerprint, diff,"
          " session, at FROM pin_events")


def _record(row: Tuple[Any, ...]) -> PinRecord:
    return PinRecord(row[0], row[1], row[2], row[3], PinState(*row[4:8]), *row[8:])


def _event(row: Tuple[Any, ...]) -> EventRecord:
    return EventRecord(*row)


class PinStore:
    """
    Mixin: needs C{_transaction(work, *args)} and C{_fetch(connection, api_id)}.
    """

    _transaction: Callable[..., "Deferred[Any]"]
    _fetch: Callable[[sqlite3.Connection, str], ApiRecord]

    def pin_states(self, api_id: Optional[str] = None
                   ) -> "Deferred[List[Tuple[str, str, str, PinState]]]":
        """
        (API id, kind, name, state) of every pin, or of one API's.
        """
        def work(connection: sqlite3.Connection) -> List[Tuple[str, str, str, PinState]]:
            sql = "SELECT api_id, kind, name, approved, status, pending, seen FROM pins"
            rows = (connection.execute(sql + " WHERE api_id = ?", (api_id,)) if api_id
                    else connection.execute(sql))
            return [(row[0], row[1], row[2], PinState(*row[3:])) for row in rows]

        return self._transaction(work)

    def observe_pins(self, api_id: str, kind: str, items: Sequence[Observed],
                     settings: PinSettings, complete: bool, initial: bool,
                     session: Optional[str], now: float
                     ) -> "Deferred[Tuple[Dict[Key, PinState], List[EventRecord]]]":
        """
        Judge one list result against the stored pins of its kind, store
        what changed and record the events.

        @return: the pins of that kind as stored now, and the events
            recorded (none for a definition already awaiting a decision).
        """
        def work(connection: sqlite3.Connection
                 ) -> Tuple[Dict[Key, PinState], List[EventRecord]]:
            if connection.execute("SELECT 1 FROM apis WHERE id = ?", (api_id,)).fetchone() is None:
                return {}, []  # deleted meanwhile
            rows = {(row[2], row[3]): _record(row) for row in connection.execute(
                _PIN + " WHERE api_id = ? AND kind = ?", (api_id, kind))}
            verdict = observe(kind, {key: r.state for key, r in rows.items()}, items, settings,
                              complete, initial)
            texts = {(kind, item.name, item.fingerprint): item.text for item in items
                     if item.name is not None}
            count = None
            ids: Dict[Key, str] = {key: r.id for key, r in rows.items()}
            for key, state in verdict.states.items():
                old = rows.get(key)
                if old is not None and old.state == state:
                    continue
                if old is None:
                    if count is None:
                        count = connection.execute("SELECT COUNT(*) FROM pins WHERE api_id = ?",
                                                   (api_id,)).fetchone()[0]
                    if count >= MAX_PINS:
                        log.warn("API {api_id}: more than {max} pins; {kind} {name} not pinned",
                                 api_id=api_id, max=MAX_PINS, kind=kind, name=key[1])
                        continue
                    count += 1
                    ids[key] = self._insert_pin(connection, api_id, key, state, texts, now)
                else:
                    self._update_pin(connection, old, state, texts, now)
            events = []
            for event in verdict.events:
                pin_id = ids.get((kind, event.name))
                if pin_id is None:
                    continue
                old_text = self._text_of(rows.get((kind, event.name)), event.old, texts,
                                         (kind, event.name))
                new_text = texts.get((kind, event.name, event.new)) if event.new else None
                cursor = connection.execute(
                    "INSERT INTO pin_events (api_id, pin_id, kind, name, type, old_fingerprint,"
                    " new_fingerprint, diff, session, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (api_id, pin_id, kind, event.name, event.type, event.old, event.new,
                     diff(event.name, old_text, new_text, event.old, event.new), session, now))
                events.append(_event(connection.execute(_EVENT + " WHERE id = ?",
                                                        (cursor.lastrowid,)).fetchone()))
            if events:
                connection.execute(
                    "DELETE FROM pin_events WHERE api_id = ? AND id <= (SELECT id FROM pin_events"
                    " WHERE api_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (api_id, api_id, MAX_EVENTS))
            stored = {(row[0], row[1]): PinState(*row[2:]) for row in connection.execute(
                "SELECT kind, name, approved, status, pending, seen FROM pins"
                " WHERE api_id = ? AND kind = ?", (api_id, kind))}
            return stored, events

        return self._transaction(work)

    @staticmethod
    def _text_of(record: Optional[PinRecord], fingerprint: Optional[str],
                 texts: Dict[Tuple[str, str, str], str], key: Key) -> Optional[str]:
        """
        The canonical definition behind a fingerprint a pin knew.
        """
        if fingerprint is None:
            return None
        if record is not None:
            if record.state.approved == fingerprint:
                return record.definition
            if record.state.pending == fingerprint:
                return record.pending_definition
        return texts.get((key[0], key[1], fingerprint))

    def _insert_pin(self, connection: sqlite3.Connection, api_id: str, key: Key,
                    state: PinState, texts: Dict[Tuple[str, str, str], str], now: float) -> str:
        pin_id = str(uuid.uuid4())
        approved_text = texts.get((key[0], key[1], state.approved)) if state.approved else None
        pending_text = texts.get((key[0], key[1], state.pending)) if state.pending else None
        connection.execute(
            "INSERT INTO pins (id, api_id, kind, name, approved, definition, approved_at,"
            " approved_by, status, pending, pending_definition, pending_at, seen, seen_at,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (pin_id, api_id, key[0], key[1], state.approved, approved_text,
             now if state.approved else None, "first-use" if state.approved else None,
             state.status, state.pending, pending_text, now if state.pending else None,
             state.seen, now, now, now))
        if state.approved is not None and approved_text is not None:
            connection.execute(
                "INSERT INTO pin_history (pin_id, action, fingerprint, definition, actor, at)"
                " VALUES (?, 'pinned', ?, ?, 'first-use', ?)",
                (pin_id, state.approved, approved_text, now))
        return pin_id

    def _update_pin(self, connection: sqlite3.Connection, old: PinRecord, state: PinState,
                    texts: Dict[Tuple[str, str, str], str], now: float) -> None:
        pending_text, pending_at = old.pending_definition, old.pending_at
        if state.pending != old.state.pending:
            pending_text = texts.get((old.kind, old.name, state.pending)) if state.pending else None
            pending_at = now if state.pending else None
        connection.execute(
            "UPDATE pins SET status = ?, pending = ?, pending_definition = ?, pending_at = ?,"
            " seen = ?, seen_at = ?, updated_at = ? WHERE id = ?",
            (state.status, state.pending, pending_text, pending_at, state.seen,
             now if state.seen is not None else old.seen_at, now, old.id))

    # --- the admin API --------------------------------------------------------------------

    def _fetch_pin(self, connection: sqlite3.Connection, api_id: str, pin_id: str) -> PinRecord:
        self._fetch(connection, api_id)
        row = connection.execute(_PIN + " WHERE id = ? AND api_id = ?", (pin_id, api_id)).fetchone()
        if row is None:
            raise NotFound(pin_id, "no pin with this id on this API", "pinId")
        return _record(row)

    def list_pins(self, api_id: str) -> "Deferred[List[PinRecord]]":
        def work(connection: sqlite3.Connection) -> List[PinRecord]:
            self._fetch(connection, api_id)
            rows = connection.execute(_PIN + " WHERE api_id = ? ORDER BY kind, name", (api_id,))
            return [_record(row) for row in rows]

        return self._transaction(work)

    def get_pin(self, api_id: str, pin_id: str
                ) -> "Deferred[Tuple[PinRecord, List[Dict[str, Any]]]]":
        def work(connection: sqlite3.Connection) -> Tuple[PinRecord, List[Dict[str, Any]]]:
            record = self._fetch_pin(connection, api_id, pin_id)
            history = [history_json(row) for row in connection.execute(
                "SELECT action, fingerprint, definition, actor, at FROM pin_history"
                " WHERE pin_id = ? ORDER BY id DESC", (pin_id,))]
            return record, history

        return self._transaction(work)

    def decide_pin(self, api_id: str, pin_id: str, approve: bool, fingerprint: Optional[str],
                   now: float) -> "Deferred[PinRecord]":
        """
        Approve (re-pin) or reject the definition awaiting a decision.
        C{fingerprint}, when given, must be that definition's: an operator
        decides on what they reviewed, never on a later change.

        @raise Conflict: nothing awaits a decision, or another definition
            does.
        """
        def work(connection: sqlite3.Connection) -> PinRecord:
            record = self._fetch_pin(connection, api_id, pin_id)
            state = record.state
            if state.pending is None or (not approve and state.status == REJECTED
                                         and fingerprint in (None, state.pending)):
                if state.pending is None:
                    raise Conflict(f"no definition of {record.kind} {record.name} awaits a "
                                   "decision", "status")
                return record  # rejecting twice changes nothing
            if fingerprint is not None and fingerprint != state.pending:
                raise Conflict(f"the definition awaiting a decision is {state.pending}, not "
                               f"{fingerprint}: review it", "fingerprint")
            if approve:
                connection.execute(
                    "UPDATE pins SET approved = pending, definition = pending_definition,"
                    " approved_at = ?, approved_by = 'admin', status = ?, pending = NULL,"
                    " pending_definition = NULL, pending_at = NULL, updated_at = ? WHERE id = ?",
                    (now, APPROVED, now, pin_id))
            else:
                connection.execute("UPDATE pins SET status = ?, updated_at = ? WHERE id = ?",
                                   (REJECTED, now, pin_id))
            connection.execute(
                "INSERT INTO pin_history (pin_id, action, fingerprint, definition, actor, at)"
                " VALUES (?, ?, ?, ?, 'admin', ?)",
                (pin_id, "approved" if approve else "rejected", state.pending,
                 record.pending_definition or "null", now))
            return self._fetch_pin(connection, api_id, pin_id)

        return self._transaction(work)

    def list_pin_events(self, api_id: str, limit: int, before: Optional[int]
                        ) -> "Deferred[Tuple[List[EventRecord], Optional[int]]]":
        """
        An API's drift events, newest first; the cursor for the next page.
        """
        def work(connection: sqlite3.Connection) -> Tuple[List[EventRecord], Optional[int]]:
            self._fetch(connection, api_id)
            sql = _EVENT + " WHERE api_id = ?"
            args: List[Any] = [api_id]
            if before is not None:
                sql += " AND id < ?"
                args.append(before)
            rows = connection.execute(sql + " ORDER BY id DESC LIMIT ?",
                                      (*args, limit + 1)).fetchall()
            events = [_event(row) for row in rows[:limit]]
            return events, (events[-1].id if len(rows) > limit else None)

        return self._transaction(work)
