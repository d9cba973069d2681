"""
/metrics over several processes: each worker sends a snapshot of its
registry when the parent is scraped, and the parent exports the sum of
its own series and theirs (counters, histograms and gauges add up; a
series' C{_created} time is its earliest; an C{_up} gauge is 1 only when
it is 1 in every process).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, Iterable, List, Tuple

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThread

from mcpgated.analytics.metrics import Metrics

# [name, documentation, type, unit, [[sample name, labels, value], ...]]
Family = List[Any]


def snapshot(registry: Any) -> bytes:
    """
    The registry's families as JSON (collected on the calling thread: the
    reactor's, which settles the pending counts first).
    """
    families = []
    for metric in registry.collect():
        families.append([metric.name, metric.documentation, metric.type, metric.unit,
                         [[s.name, s.labels, s.value] for s in metric.samples]])
    return json.dumps(families, separators=(",", ":")).encode()


class _Merged:
    """
    A registry-like collection: the sum of several snapshots.
    """

    def __init__(self, snapshots: Iterable[List[Family]]) -> None:
        self._snapshots = list(snapshots)

    def collect(self) -> List[Metric]:
        heads: Dict[str, Tuple[str, str, str]] = {}
        values: Dict[str, Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]] = {}
        for families in self._snapshots:
            for name, documentation, kind, unit, samples in families:
                if name not in heads:
                    heads[name] = (documentation, kind, unit)
                    values[name] = {}
                series = values[name]
                for sample_name, labels, value in samples:
                    key = (sample_name, tuple(sorted(labels.items())))
                    old = series.get(key)
                    if old is None:
                        series[key] = value
                    elif sample_name.endswith("_created") or (kind == "gauge" and name.endswith("_up")):
                        series[key] = min(old, value)  # the earliest; up only if up everywhere
                    else:
                        series[key] = old + value
        out = []
        for name, (documentation, kind, unit) in heads.items():
            metric = Metric(name, documentation, kind, unit)
            metric.samples = [Sample(sample_name, dict(labels), value)
                              for (sample_name, labels), value in values[name].items()]
            out.append(metric)
        return out


def merge(snapshots: List[List[Family]]) -> bytes:
    """
    The exposition text of the sum of C{snapshots} (any thread).
    """
    return generate_latest(_Merged(snapshots))


class PoolMetrics(Metrics):
    """
    The parent's metrics: its own registry (stores, log files, admin-side
    counters) plus every worker's, gathered at each scrape by C{gather}
    (a Deferred of the workers' snapshots, JSON).
    """

    def __init__(self, dropped: Callable[[], int] = lambda: 0) -> None:
        super().__init__(dropped)
        self.gather: Callable[[], "Deferred[List[bytes]]"] = lambda: succeed([])

    def _own(self) -> List[Family]:
        return json.loads(snapshot(self.registry))  # type: ignore[no-any-return]

    def render(self) -> bytes:
        # without the workers' (no waiting here); /metrics uses render_in_thread
        return generate_latest(self.registry)

    def render_in_thread(self) -> "Deferred[bytes]":
        own = self._own()
        return self.gather().addCallback(self._render, own)

    def _render(self, payloads: List[bytes], own: List[Family]) -> "Deferred[bytes]":
        snapshots = [own] + [json.loads(p) for p in payloads]
        return deferToThread(merge, snapshots)
