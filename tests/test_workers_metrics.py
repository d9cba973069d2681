"""
/metrics over several processes: the parent's text is the sum of every
worker's series and its own.
"""

from __future__ import annotations

import json
import re
from prometheus_client.parser import text_string_to_metric_families

from mcpgated.analytics.metrics import Metrics
from mcpgated.analytics.records import CallRecord
from mcpgated.workers.metrics import PoolMetrics, merge, snapshot


def _record(latency: float) -> CallRecord:
    return CallRecord(1.0, "api-1", "Weather", None, None, "tools/call", "request",
                      target="forecast", outcome="result", latency_ms=latency)


def _values(text: bytes, name: str) -> dict:
    found = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _own(metrics: PoolMetrics) -> list:
    return json.loads(snapshot(metrics.registry))  # type: ignore[no-any-return]


def test_counters_histograms_and_gauges_add_up_over_workers() -> None:
    one, two = Metrics(), Metrics()
    one.call(_record(3.0))
    one.exchange("api-1", 200)
    two.call(_record(30.0))
    two.call(_record(300.0))
    two.exchange("api-1", 200)
    two.exchange("api-1", 429)
    one.open_streams.inc(2)
    two.open_streams.inc(1)
    parent = PoolMetrics(dropped=lambda: 4)
    text = merge([_own(parent), json.loads(snapshot(one.registry)), json.loads(snapshot(two.registry))])
    calls = _values(text, "mcpgated_mcp_calls_total")
    assert list(calls.values()) == [3.0]
    http = _values(text, "mcpgated_http_requests_total")
    assert {dict(k)["status"]: v for k, v in http.items()} == {"200": 2.0, "429": 1.0}
    assert list(_values(text, "mcpgated_mcp_call_latency_seconds_count").values()) == [3.0]
    buckets = {dict(k)["le"]: v for k, v in _values(text, "mcpgated_mcp_call_latency_seconds_bucket").items()}
    assert buckets["0.005"] == 1.0 and buckets["0.05"] == 2.0 and buckets["0.5"] == 3.0
    assert list(_values(text, "mcpgated_open_streams").values()) == [3.0]
    assert list(_values(text, "mcpgated_exchange_records_dropped").values()) == [4.0]  # the parent's
    # one HELP/TYPE per family, as a scraper requires
    heads = [line for line in text.decode().splitlines()
             if re.match(r"# TYPE mcpgated_mcp_calls(_total)? ", line)]
    assert len(heads) == 1


def test_created_is_the_earliest_and_snapshots_are_json() -> None:
    one = Metrics()
    one.call(_record(1.0))
    families = json.loads(snapshot(one.registry))
    created = [s for f in families for s in f[4] if s[0] == "mcpgated_mcp_calls_created"]
    assert len(created) == 1
    later = json.loads(json.dumps(families).replace(str(created[0][2]), str(created[0][2] + 100)))
    text = merge([_own(PoolMetrics()), later, families])
    values = list(_values(text, "mcpgated_mcp_calls_created").values())
    assert values == [created[0][2]]


def test_an_up_gauge_is_up_only_when_up_in_every_process() -> None:
    def up(value: float) -> list:
        return [["mcpgated_ratelimit_redis_up", "1 when connected", "gauge", "",
                 [["mcpgated_ratelimit_redis_up", {}, value]]]]

    assert list(_values(merge([up(1.0), up(1.0)]), "mcpgated_ratelimit_redis_up").values()) == [1.0]
    assert list(_values(merge([up(1.0), up(0.0)]), "mcpgated_ratelimit_redis_up").values()) == [0.0]
