"""
The order of the writes to a copy the data plane serves from (the routing
table, the API key index, the pins) when a reload from the store races with
other writes to it.

A reload's answer is the store as it was when the read began; by the time it
arrives, the admin API may have applied a write it committed since, or
another reload that began later may have applied a newer answer. Applied as
it comes, the older answer would undo them: an acknowledged deploy gone from
the routes until the next change. So each read takes a ticket when it
begins, and its answer replaces only the entries that nothing has written
since that ticket was taken. A write that is not a read's answer (an admin
write's committed result) is the newest there is: it takes its ticket when
it is applied.

Entries written meanwhile are remembered only while a read is running.
"""

from __future__ import annotations

from typing import Dict, Generic, Hashable, Optional, Set, TypeVar

import attrs

K = TypeVar("K", bound=Hashable)  # what names an entry: an API id, a key hash


@attrs.define
class WriteOrder(Generic[K]):
    """
    The tickets of one copy's writes: a copy asks L{entry} before writing one
    entry and L{whole} before replacing everything; a reader calls L{begin}
    before reading the store and L{end} once its answer is applied or lost.
    """

    _last: int = 0  # the last ticket given
    _floor: int = 0  # the ticket of the newest whole-copy write
    _written: Dict[K, int] = attrs.field(factory=dict)  # entry -> ticket, above the floor
    _reading: int = 0  # reads begun and not ended

    def begin(self) -> int:
        """
        A read of the store begins: its ticket, for the writes of its answer.
        """
        self._reading += 1
        self._last += 1
        return self._last

    def end(self) -> None:
        """
        A read's answer was applied, or the read failed.
        """
        self._reading = max(0, self._reading - 1)
        if not self._reading:
            self._written.clear()  # every later read's ticket is above them

    def entry(self, key: K, ticket: Optional[int] = None) -> bool:
        """
        Whether one entry may be written with C{ticket} (L{None}: a write
        that is no read's answer, applied now); if so, it is recorded.
        """
        if ticket is None:
            self._last += 1
            ticket = self._last
        elif ticket < max(self._floor, self._written.get(key, 0)):
            return False  # written since this read began: this answer is older
        if self._reading:
            self._written[key] = ticket
        return True

    def whole(self, ticket: Optional[int] = None) -> Optional[Set[K]]:
        """
        A write of the whole copy with C{ticket} (L{None}: now).

        @return: L{None} if a newer whole-copy write was applied (drop this
            one), else the entries to keep as they are: written since the
            read began.
        """
        if ticket is None:
            self._last += 1
            ticket = self._last
        elif ticket < self._floor:
            return None
        keep = {key for key, written in self._written.items() if written > ticket}
        self._floor = ticket
        self._written = {key: self._written[key] for key in keep}
        return keep
