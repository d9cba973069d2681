"""
L{mcpgated.writeorder}: a reload's answer never undoes what was written to
the copy after its read began (the follower's use of it is in
tests/test_follower_order.py).
"""

from __future__ import annotations

from mcpgated.writeorder import WriteOrder


def test_an_older_read_does_not_overwrite_an_entry_written_since():
    order: WriteOrder[str] = WriteOrder()
    ticket = order.begin()
    assert order.entry("api-1")  # the admin's committed write, applied now
    assert not order.entry("api-1", ticket)  # the read began before it: older
    assert order.entry("api-2", ticket)  # nothing wrote api-2 since
    order.end()


def test_a_whole_copy_keeps_what_was_written_since_its_read_began():
    order: WriteOrder[str] = WriteOrder()
    ticket = order.begin()
    assert order.entry("deployed")
    assert order.whole(ticket) == {"deployed"}  # replace the rest, keep this one
    order.end()
    # a read that began before the newest whole write is dropped whole
    older = order.begin()
    newer = order.begin()
    assert order.whole(newer) == set()
    assert order.whole(older) is None
    assert not order.entry("any", older)
    order.end()
    order.end()


def test_nothing_is_remembered_when_no_read_runs():
    order: WriteOrder[str] = WriteOrder()
    for key in ("a", "b", "c"):
        assert order.entry(key)
    ticket = order.begin()
    assert order.entry("a", ticket)  # written before the read began: the answer is newer
    order.end()
