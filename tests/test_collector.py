"""
L{mcpgated.collector}: what tuning the collector changes, and that cyclic
garbage is still collected after it.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any, Iterator

import pytest

from mcpgated import collector


@pytest.fixture
def restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.set_threshold(*threshold)
    gc.unfreeze()


class _Node:
    other: Any = None


def test_startup_objects_are_frozen_and_young_collections_rarer(restored) -> None:
    _, middle, old = gc.get_threshold()
    collector.tune()
    assert gc.get_threshold() == (collector.YOUNG_THRESHOLD, middle, old)
    assert gc.get_freeze_count() > 0


def test_cycles_made_after_tuning_are_still_collected(restored) -> None:
    collector.tune()
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    assert gone() is None
