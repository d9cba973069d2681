"""
Start mcpgated under twistd (``twistd -n --pidfile= mcpgated -c INI``) from
any interpreter, optionally from another copy of the source tree.

Usage: python launch_mcpgated.py [--src DIR] INI

--src DIR puts DIR first on sys.path (to measure a patched copy without
touching the working tree). Under PyPy, sqlite3 cursors are closed as soon
as they are used: PyPy frees them only at garbage collection, and an open
statement makes SQLite refuse COMMIT ("SQL statements in progress").
"""
import os
import platform
import sys


def _pypy_sqlite_compat():
    import sqlite3

    class Done:
        def __init__(self, rows, rowcount, lastrowid):
            self._rows, self.rowcount, self.lastrowid = rows, rowcount, lastrowid

        def fetchone(self):
            return self._rows.pop(0) if self._rows else None

        def fetchall(self):
            rows, self._rows = self._rows, []
            return rows

        def __iter__(self):
            return iter(self.fetchall())

    class Closing(sqlite3.Connection):
        def execute(self, sql, params=()):
            cursor = self.cursor()
            try:
                cursor.execute(sql, params)
                rows = cursor.fetchall() if cursor.description else []
                return Done(rows, cursor.rowcount, cursor.lastrowid)
            finally:
                cursor.close()

    connect = sqlite3.connect

    def closing_connect(*args, **kwargs):
        kwargs.setdefault("factory", Closing)
        return connect(*args, **kwargs)

    sqlite3.connect = closing_connect


def _print_cycle(gc, starts):
    """A shortest reference path from one object back to itself."""
    for start in starts[:3]:
        inside = {id(o) for o in gc.garbage}
        paths = {id(start): [start]}
        queue = [start]
        found = None
        while queue and found is None:
            obj = queue.pop(0)
            for ref in gc.get_referents(obj):
                if ref is start:
                    found = paths[id(obj)] + [start]
                    break
                if id(ref) in inside and id(ref) not in paths:
                    paths[id(ref)] = paths[id(obj)] + [ref]
                    queue.append(ref)
        if found:
            print("bench-gc cycle:", " -> ".join(
                type(o).__qualname__ + (f"({getattr(o, '__qualname__', '')})" if callable(o) else "")
                for o in found), flush=True)


def _gc_experiment(spec):
    """
    BENCH_GC=stats: log the time spent in the cyclic GC every 10 s.
    BENCH_GC=tuned: gc.freeze() once started, gen0 threshold 50,000 (+ stats).
    """
    import gc
    import time

    from twisted.internet import reactor

    spent = {"s": 0.0, "n": 0, "t0": 0.0, "collected": 0}

    def timing(phase, info):
        if phase == "start":
            spent["t0"] = time.perf_counter()
        else:
            spent["s"] += time.perf_counter() - spent["t0"]
            spent["n"] += 1
            spent["collected"] += info["collected"]

    def report():
        print(f"bench-gc: {spent['n']} collections, {spent['s'] * 1000:.0f} ms, "
              f"{spent['collected']} objects collected", flush=True)
        reactor.callLater(10, report)

    gc.callbacks.append(timing)
    reactor.callLater(10, report)
    if spec == "garbage":
        def save():
            gc.collect()
            gc.set_debug(gc.DEBUG_SAVEALL)

        def dump():
            import collections

            gc.collect()
            kinds = collections.Counter(type(o).__qualname__ for o in gc.garbage)
            print("bench-gc garbage:", kinds.most_common(40), flush=True)
            types = collections.Counter(f"{o.__module__}.{o.__qualname__}" for o in gc.garbage
                                        if isinstance(o, type))
            print("bench-gc garbage types:", types.most_common(10), flush=True)
            if os.environ.get("BENCH_GC_CYCLE"):
                _print_cycle(gc, [o for o in gc.garbage
                                  if type(o).__qualname__ == os.environ["BENCH_GC_CYCLE"]])
            gc.set_debug(0)
            del gc.garbage[:]
        reactor.callLater(5, save)
        reactor.callLater(7, dump)
    if spec == "tuned":
        def tune():
            gc.collect()
            gc.freeze()
            gc.set_threshold(50000, 20, 100)
        reactor.callLater(3, tune)


def main(argv):
    if argv[:1] == ["--src"]:
        sys.path.insert(0, argv[1])
        argv = argv[2:]

    if os.environ.get("BENCH_GC"):
        _gc_experiment(os.environ["BENCH_GC"])
    if platform.python_implementation() == "PyPy":
        _pypy_sqlite_compat()
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", "-n", "--pidfile=", "mcpgated", "-c", argv[0]] + argv[1:]
    run()


if __name__ == "__main__":
    main(sys.argv[1:])
