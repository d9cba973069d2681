"""
Issue #12, item 1: the Prometheus series are not the client's to create.
Thousands of made-up methods, tool and prompt names, admitted and refused
(no token, a wrong key, rate-limited, denied by access control), leave the
number of series under the documented bound (README, "Metrics labels"),
while the exchange log keeps the exact names.
"""

from __future__ import annotations

import json
import re
import threading
from collections import defaultdict
from typing import Any, Dict, Iterator, List, Optional, Set

import pytest
from joserfc.jwk import ECKey
from prometheus_client import generate_latest

from mcpgated.analytics.metrics import (
    MAX_LABEL,
    MAX_TARGETS,
    MCP_METHODS,
    OTHER,
    REFUSED,
    Metrics,
    series_bound,
)
from mcpgated.analytics.records import CallRecord
from tests.support import Daemon, http, running

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
          "MCP-Protocol-Version": "2025-03-26"}
SERIES = re.compile(r'^mcpgated_mcp_calls_total\{api="([^"]*)",api_name="[^"]*",method="([^"]*)",'
                    r'outcome="([^"]*)",target="((?:[^"\\]|\\.)*)"\} ', re.M)
# every series of an API: its id and its name, one per API
API_LABELS = re.compile(r'^mcpgated_\w+\{api="([^"]*)",api_name="([^"]*)"', re.M)
BATCH = 500
LONG = "x" * 180


def _batch(start: int, count: int, kind: str) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []
    for n in range(start, start + count):
        if kind == "methods":
            out.append({"jsonrpc": "2.0", "id": n, "method": f"made/up-{n}"})
        elif kind == "notifications":
            out.append({"jsonrpc": "2.0", "method": f"notifications/made-up-{n}"})
        elif kind == "tools":
            out.append({"jsonrpc": "2.0", "id": n, "method": "tools/call",
                        "params": {"name": f"tool-{n}-{LONG}", "arguments": {}}})
        else:
            out.append({"jsonrpc": "2.0", "id": n, "method": "prompts/get",
                        "params": {"name": f"prompt-{n}"}})
    return out


def _send(url: str, kinds: Dict[str, int], headers: Optional[Dict[str, str]] = None) -> Set[int]:
    statuses = set()
    start = 0
    for kind, total in kinds.items():
        for offset in range(0, total, BATCH):
            body = _batch(start + offset, min(BATCH, total - offset), kind)
            status, _, _ = http("POST", url, raw=json.dumps(body).encode(),
                                headers=dict(ACCEPT, **(headers or {})))
            statuses.add(status)
        start += total
    return statuses


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[Daemon]:
    yield from running(Daemon(tmp_path_factory.mktemp("cardinality")))


def _deploy(daemon: Daemon, path: str, backend: str, plans: List[Dict[str, Any]],
            **extra: Any) -> str:
    body = {"name": path.strip("/"), "version": "1", "contextPath": path, "backend": backend,
            "plans": plans}
    body.update(extra)
    status, api = daemon.admin("POST", "/apis", body)
    assert status == 201, api
    assert daemon.admin("POST", f"/apis/{api['id']}/_deploy")[0] == 200
    return api["id"]


def test_made_up_names_leave_the_series_bounded(daemon, peer):
    backend = peer.url + "/mcp"
    keyless = [{"name": "Keyless", "security": "KEY_LESS"}]
    apis = {
        "open": _deploy(daemon, "/open", backend, keyless),
        "jwt": _deploy(daemon, "/jwt", backend, [{
            "name": "Tokens", "security": "JWT", "configuration": {
                "issuer": "https://idp.example", "algorithms": ["ES256"],
                "publicKey": ECKey.generate_key("P-256").as_pem(private=False).decode()}}]),
        "keyed": _deploy(daemon, "/keyed", backend, [{"name": "Keys", "security": "API_KEY"}]),
        "limited": _deploy(daemon, "/limited", backend, [{
            "name": "Keyless", "security": "KEY_LESS",
            "rateLimit": {"requests": 1, "periodSeconds": 3600}}]),
        "acl": _deploy(daemon, "/acl", backend, keyless,
                       acl={"rules": [{"tools": ["echo"]}, {"prompts": ["greeting"]}]}),
    }
    everything = {"methods": 3000, "notifications": 1000, "tools": 3000, "prompts": 1000}
    assert _send(daemon.gateway + "/open", everything) == {200, 202}  # 202: notifications only
    assert _send(daemon.gateway + "/jwt", everything) == {401}
    assert _send(daemon.gateway + "/keyed", everything, {"X-Gravitee-Api-Key": "wrong"}) == {401}
    assert _send(daemon.gateway + "/limited", {"tools": 2000, "methods": 1000}) == {429}
    assert _send(daemon.gateway + "/acl", {"tools": 2000, "prompts": 1000}) == {200}

    status, headers, data = http("GET", daemon.admin_url + "/metrics",
                                 headers={"Authorization": f"Bearer {daemon.token}"})
    assert status == 200
    text = data.decode()
    series = SERIES.findall(text)
    assert series
    by_api: Dict[str, list] = defaultdict(list)
    for api, method, outcome, target in series:
        by_api[api].append((method, outcome, target))
    assert set(by_api) <= set(apis.values())
    names: Dict[str, set] = defaultdict(set)
    for api_id, api_name in API_LABELS.findall(text):
        names[api_id].add(api_name)
    assert {api_id: names[api_id] for api_id in apis.values()} == {
        api_id: {name} for name, api_id in apis.items()}  # e.g. api_name="open", nothing else
    for name, api_id in apis.items():
        rows = by_api[api_id]
        assert len(rows) <= series_bound(), name
        assert {method for method, _, _ in rows} <= MCP_METHODS | {OTHER}, name
        targets = {(m, t) for m, _, t in rows if t and t != OTHER}
        assert len(targets) <= MAX_TARGETS, name
        assert all(len(t) <= MAX_LABEL for _, _, t in rows), name
        assert all(t == "" for _, outcome, t in rows if outcome in REFUSED), name
    # what each API shows
    assert {o for _, o, _ in by_api[apis["jwt"]]} == {"unauthorized"}
    assert {o for _, o, _ in by_api[apis["keyed"]]} == {"unauthorized"}
    assert {o for _, o, _ in by_api[apis["limited"]]} == {"rate_limited"}
    assert {o for _, o, _ in by_api[apis["acl"]]} == {"denied"}
    assert {t for _, _, t in by_api[apis["acl"]]} == {""}
    opened = by_api[apis["open"]]
    assert ("other", "result", "") in opened and ("other", "accepted", "") in opened
    assert ("tools/call", "result", OTHER) in opened
    assert len({t for m, _, t in opened if m == "tools/call"} - {OTHER}) == MAX_TARGETS
    # every call counted, under bounded labels
    calls = {name: 0.0 for name in apis}
    for line in text.splitlines():
        match = re.match(r'^mcpgated_mcp_calls_total\{api="([^"]*)".*\} (\S+)$', line)
        if match:
            for name, api_id in apis.items():
                if api_id == match.group(1):
                    calls[name] += float(match.group(2))
    assert calls == {"open": 8000, "jwt": 8000, "keyed": 8000, "limited": 3000, "acl": 3000}
    # the whole exposition stays small
    assert len(data) < 1_500_000, len(data)
    assert sum(1 for line in text.splitlines() if not line.startswith("#")) < 20_000

    # the exchange log keeps the exact names
    daemon.stop()  # flushes the batched writer
    daemon.start()
    name = f"tool-6999-{LONG}"  # admitted long after the label cap, and longer than a label
    status, page = daemon.admin("GET", f"/apis/{apis['open']}/logs?tool={name}")
    assert status == 200 and [r["target"] for r in page["data"]] == [name]
    status, page = daemon.admin("GET", f"/apis/{apis['jwt']}/logs?method=made/up-2999")
    assert [(r["method"], r["outcome"]) for r in page["data"]] == [("made/up-2999", "unauthorized")]
    status, page = daemon.admin("GET", f"/apis/{apis['acl']}/logs?tool=prompt-2500")
    assert [(r["target"], r["outcome"]) for r in page["data"]] == [("prompt-2500", "denied")]


def _record(api: str, method: str, target: Optional[str], outcome: str) -> CallRecord:
    record = CallRecord(0.0, api, api, None, None, method, "request")
    record.target = target
    record.outcome = outcome
    record.latency_ms = 1.0
    return record


def test_labels_are_bounded_in_memory():
    metrics = Metrics()
    for n in range(5000):
        metrics.call(_record("a", "tools/call", f"t{n}" + "y" * 100, "result"))
        metrics.call(_record("a", f"made/up/{n}", None, "error"))
        metrics.call(_record("b", "tools/call", f"t{n}", "unauthorized"))
        metrics.call(_record("b", "prompts/get", f"p{n}", "denied"))
        metrics.notification("a", f"notifications/made-up/{n}")
        metrics.call(_record("c", "tools/call", f"t{n}", f"strange-{n}"))
    text = metrics.render().decode()
    rows = SERIES.findall(text)
    assert len([r for r in rows if r[0] == "a"]) == MAX_TARGETS + 2  # names, other, other method
    assert {(m, o, t) for a, m, o, t in rows if a == "b"} == {
        ("tools/call", "unauthorized", ""), ("prompts/get", "denied", "")}
    assert {o for a, _, o, _ in rows if a == "c"} == {OTHER}
    assert 'mcpgated_mcp_notifications_total{api="a",api_name="",method="other"} 5000.0' in text
    assert len(metrics._counts) < 400  # the pending counts are keyed by labels, not names


def test_a_collection_on_another_thread_leaves_pending_counts_alone():
    # render_in_thread settles on the reactor thread, then collects on a
    # thread of the pool: that collection must not race the counting thread.
    metrics = Metrics()
    metrics.call(_record("a", "ping", None, "result"))
    metrics._settle()
    metrics.call(_record("a", "ping", None, "result"))
    seen: List[bytes] = []
    worker = threading.Thread(target=lambda: seen.append(generate_latest(metrics.registry)))
    worker.start()
    worker.join()
    assert 'outcome="result",target=""} 1.0' in seen[0].decode()  # what was settled
    assert 'outcome="result",target=""} 2.0' in metrics.render().decode()  # nothing lost
