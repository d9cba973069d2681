"""
The cyclic garbage collector, tuned for a long-running proxy.

The data plane makes no reference cycles per exchange (each exchange's
objects are freed by reference counting as it ends), so young collections
only walk live objects: with the default threshold (700 allocations) they
run every few requests and find nothing. Once the daemon has started, the
objects made at startup (modules, classes, the routing table) go to the
permanent generation (C{gc.freeze}), and young collections run every
L{YOUNG_THRESHOLD} allocations; older generations keep their defaults, so
garbage that does form (failed connections' tracebacks) is still collected.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000


def tune() -> None:
    """
    Collect once, freeze what survived startup, and raise the young
    generation's threshold.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
