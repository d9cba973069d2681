"""
Where finished exchanges go (L{mcpgated.analytics.recorder}): an observer
per exchange made with its API's deployed settings, and each finished call
counted in the Prometheus metrics and, when the API logs, written to the
analytics store and the exchange log file.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.web.http_headers import Headers

from mcpgated.analytics.metrics import Metrics
from mcpgated.analytics.records import DEFAULT_REDACT, CallRecord
from mcpgated.analytics.recorder import Recorder
from mcpgated.analytics.store import COLUMNS
from mcpgated.definitions import parse_definition
from mcpgated.model import ApiDefinition
from tests.exchange_driver import DrivenExchange
from tests.support import api_definition, make_headers


def metric(metrics: Metrics, name: str, **labels: str) -> float:
    """
    The value of the one series C{name} with (at least) C{labels}, as
    C{/metrics} shows it.
    """
    found = [sample.value for family in text_string_to_metric_families(metrics.render().decode())
             for sample in family.samples
             if sample.name == name and labels.items() <= sample.labels.items()]
    assert len(found) == 1, (name, labels, found)
    return found[0]


class Store:
    def __init__(self) -> None:
        self.records: List[CallRecord] = []

    def record(self, record: CallRecord) -> None:
        self.records.append(record)


class ExchangeLog:
    def __init__(self) -> None:
        self.lines: List[Dict[str, Any]] = []

    def record(self, fields: Dict[str, Any]) -> None:
        self.lines.append(fields)


def definition(name: str = "weather", **analytics: Any) -> ApiDefinition:
    plans = [{"name": "Staged", "security": "KEY_LESS", "status": "STAGING"},
             {"name": "Open", "security": "KEY_LESS"}]
    return parse_definition(api_definition("/weather", "http://backend.invalid/mcp", plans,
                                           name=name, analytics=analytics))


class Setup:
    def __init__(self, store: Optional[Store] = None, log: Optional[ExchangeLog] = None) -> None:
        self.clock = Clock()
        self.metrics = Metrics()
        self.store = store
        self.log = log
        self.recorder = Recorder(self.clock, store, self.metrics, log)  # type: ignore[arg-type]

    def call(self, api: ApiDefinition, tool: str = "forecast", arguments: Any = None,
             answer: Any = None) -> None:
        tracker = self.recorder.observer("api-1", api, "192.0.2.7", self.clock.seconds(), b"POST")
        exchange = DrivenExchange(tracker)
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": tool, "arguments": arguments or {}}}
        exchange.request(json.dumps(body).encode(), Headers(), b"/weather")
        self.clock.advance(0.02)
        exchange.response(200, make_headers(content_type="application/json"), 20.0, False)
        exchange.data(json.dumps({"jsonrpc": "2.0", "id": 1, "result": answer or {
            "content": [{"type": "text", "text": "sunny"}]}}).encode())
        exchange.finished("complete", 200)

    def calls(self, **labels: str) -> float:
        return metric(self.metrics, "mcpgated_mcp_calls_total", **labels)


def test_a_finished_call_goes_to_the_store_the_metrics_and_the_exchange_log() -> None:
    setup = Setup(Store(), ExchangeLog())
    setup.call(definition())
    [record] = setup.store.records  # type: ignore[union-attr]
    assert (record.api_id, record.api_name, record.method, record.target, record.outcome,
            record.client) == ("api-1", "weather", "tools/call", "forecast", "result", "192.0.2.7")
    assert record.plan == "Open"  # the published plan, not the staged one
    [line] = setup.log.lines  # type: ignore[union-attr]
    assert set(line) <= set(COLUMNS)
    assert None not in line.values()  # unset columns are left out
    assert (line["api_id"], line["method"], line["target"], line["outcome"], line["http_status"]) \
        == ("api-1", "tools/call", "forecast", "result", 200)
    assert setup.calls(api="api-1", api_name="weather", method="tools/call",
                       target="forecast", outcome="result") == 1


def test_an_api_that_does_not_log_is_only_counted() -> None:
    setup = Setup(Store(), ExchangeLog())
    setup.call(definition(logging=False))
    assert setup.store.records == [] and setup.log.lines == []  # type: ignore[union-attr]
    assert setup.calls(api="api-1", method="tools/call", outcome="result") == 1


def test_without_a_store_the_exchange_log_still_gets_the_call() -> None:
    setup = Setup(None, ExchangeLog())
    setup.call(definition())
    assert [line["method"] for line in setup.log.lines] == ["tools/call"]  # type: ignore[union-attr]


def test_each_deployed_definition_gets_its_own_settings() -> None:
    setup = Setup(Store())
    first = definition()
    tracker = setup.recorder.observer("api-1", first, None, 0.0, b"POST")
    assert tracker.capture.mode == "off" and tracker.plan == "Open"
    assert setup.recorder.observer("api-1", first, None, 0.0, b"POST").capture is tracker.capture
    # redeployed with capture on and a field of its own to redact
    second = definition(name="weather-v2", capture="bodies", maxPayloadBytes=64,
                        redactFields=["SSN"])
    tracker = setup.recorder.observer("api-1", second, None, 0.0, b"POST")
    assert (tracker.capture.mode, tracker.capture.max_bytes) == ("bodies", 64)
    assert tracker.capture.redact == DEFAULT_REDACT | {"ssn"}
    assert tracker.api_name == "weather-v2"


def test_captured_payloads_are_redacted_with_the_api_s_fields() -> None:
    setup = Setup(Store())
    setup.call(definition(capture="bodies", redactFields=["ssn"]),
               arguments={"ssn": "078-05-1120", "password": "hunter2", "city": "Oslo"})
    [record] = setup.store.records  # type: ignore[union-attr]
    assert record.request_payload is not None
    assert "078-05-1120" not in record.request_payload and "hunter2" not in record.request_payload
    assert "Oslo" in record.request_payload


def test_a_renamed_api_is_labelled_with_its_new_name() -> None:
    setup = Setup()
    setup.call(definition("weather"))
    setup.call(definition("forecasts"))
    assert setup.calls(api="api-1", api_name="weather", outcome="result") == 1
    assert setup.calls(api="api-1", api_name="forecasts", outcome="result") == 1


def test_requests_no_api_takes_are_counted_by_status() -> None:
    setup = Setup(Store())
    setup.recorder.unrouted(404)
    setup.recorder.unrouted(404)
    setup.recorder.unrouted(None)
    assert metric(setup.metrics, "mcpgated_http_requests_total", api="", status="404") == 2
    assert metric(setup.metrics, "mcpgated_http_requests_total", api="", status="None") == 1
    assert setup.store.records == []  # type: ignore[union-attr]
