"""
The news of a committed write (L{mcpgated.cluster.changes}): what travels
between processes and nodes is small, exact and refused when garbled.
"""

from __future__ import annotations

import pytest
from zope.interface.verify import verifyObject

from mcpgated.cluster.changes import (ALL, API, KEYS, PINS, BadChange, Change, FanOut,
                                      IChangeFeed, LocalFeed)


@pytest.mark.parametrize("change", [Change(API, "a1"), Change(KEYS), Change(PINS, "é/🙂"),
                                    Change(ALL)])
def test_a_change_survives_the_wire(change: Change) -> None:
    assert Change.from_json(change.to_json()) == change
    assert Change.from_json(change.to_json().encode("utf-8")) == change


@pytest.mark.parametrize("text", ["", "{", "[]", '{"kind": "apis"}', '{"api": "a"}',
                                  '{"kind": "api", "api": 7}', "null"])
def test_a_garbled_notice_is_refused(text: str) -> None:
    with pytest.raises(BadChange):
        Change.from_json(text)


def test_an_unknown_kind_cannot_be_made() -> None:
    with pytest.raises(ValueError):
        Change("routes")


class _Recording:
    def __init__(self) -> None:
        self.published: list[Change] = []
        self.listeners: list[object] = []

    def publish(self, change: Change) -> None:
        self.published.append(change)

    def subscribe(self, listener: object) -> None:
        self.listeners.append(listener)


def test_fan_out_tells_and_hears_every_feed() -> None:
    first, second = _Recording(), _Recording()
    feed = FanOut([first, second])
    verifyObject(IChangeFeed, feed)
    verifyObject(IChangeFeed, LocalFeed())
    feed.publish(Change(KEYS))
    feed.subscribe(print)
    assert first.published == second.published == [Change(KEYS)]
    assert first.listeners == second.listeners == [print]
