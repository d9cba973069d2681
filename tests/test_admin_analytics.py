"""
The query arguments of the admin API's exchange log and dashboard
(L{mcpgated.admin.analytics}), in process. The routes themselves run against
a real daemon in tests/test_logs.py and tests/test_analytics_e2e.py.
"""

from __future__ import annotations

from typing import Dict, Optional

import pytest

from mcpgated.admin.analytics import (
    MAX_ROW_ID,
    log_query,
    parse_time,
    time_range,
    whole,
    with_payloads,
)
from mcpgated.admin.endpoint import HTTPError
from tests.admin_requests import AdminRequest

NOW = 1_800_000_000.0


def request(**args: str) -> AdminRequest:
    return AdminRequest(method=b"GET", path=b"/logs", args=args)


def refusal(call: object, **args: str) -> HTTPError:
    with pytest.raises(HTTPError) as caught:
        if call is time_range:
            time_range(request(**args), NOW)
        else:
            log_query(request(**args), None, NOW)
    assert caught.value.status == 400
    return caught.value


@pytest.mark.parametrize("raw, value", [
    ("0", 0), ("42", 42), (str(MAX_ROW_ID), MAX_ROW_ID), (str(MAX_ROW_ID + 1), None),
    ("\u0663", None), ("1_0", None), ("-1", None), ("+1", None), (" 1", None), ("", None),
    ("1" * 20, None),
])
def test_whole_numbers_are_ascii_digits_that_fit_sqlite(raw: str, value: Optional[int]) -> None:
    assert whole(raw) == value


@pytest.mark.parametrize("raw, seconds", [
    ("1800000000", 1_800_000_000.0),
    ("1800000000.25", 1_800_000_000.25),
    ("2027-01-15T08:00:00Z", 1_800_000_000.0),
    ("2027-01-15T08:00:00+00:00", 1_800_000_000.0),
    ("2027-01-15T08:00:00", 1_800_000_000.0),  # no zone: UTC
    ("2027-01-15T09:00:00+01:00", 1_800_000_000.0),
])
def test_times_are_epoch_seconds_or_iso_8601(raw: str, seconds: float) -> None:
    assert parse_time(raw) == seconds


def test_the_default_window_is_the_last_hour() -> None:
    assert time_range(request(), NOW) == (NOW - 3600, NOW)
    assert time_range(request(last="60"), NOW) == (NOW - 60, NOW)
    assert time_range(request(**{"from": "100", "to": "200"}), NOW) == (100.0, 200.0)
    assert time_range(request(to="200", last="50"), NOW) == (150.0, 200.0)


@pytest.mark.parametrize("args, field", [
    ({"from": "200", "to": "100"}, "from"),
    ({"from": "100", "to": "100"}, "from"),
    ({"from": "yesterday"}, "from"),
    ({"to": "nan"}, "to"),
    ({"to": "inf"}, "to"),
    ({"to": "1e400"}, "to"),
    ({"last": "0"}, "last"),
    ({"last": "-5"}, "last"),
    ({"last": "a week"}, "last"),
    ({"last": str(366 * 86400 + 1)}, "last"),
])
def test_bad_windows_name_the_argument(args: Dict[str, str], field: str) -> None:
    assert refusal(time_range, **args).field == field


def test_a_log_query_of_every_filter() -> None:
    query = log_query(request(method="tools/call", tool="add", outcome="error", status="502",
                              client="c1", session="s1", q="boom", cursor="77", limit="10",
                              **{"from": "100", "to": "200"}), "api-1", NOW)
    assert (query.api_id, query.since, query.until, query.method, query.target, query.outcome,
            query.status, query.client, query.session, query.text, query.cursor, query.limit) == \
        ("api-1", 100.0, 200.0, "tools/call", "add", "error", 502, "c1", "s1", "boom", 77, 10)


def test_log_query_defaults_and_last() -> None:
    query = log_query(request(), None, NOW)
    assert (query.since, query.until, query.limit, query.cursor, query.status) == \
        (None, None, 50, None, None)
    assert log_query(request(last="60"), None, NOW).since == NOW - 60
    assert log_query(request(last="60", to="1000"), None, NOW).since == 940.0
    assert log_query(request(target="t"), None, NOW).target == "t"


@pytest.mark.parametrize("args, field", [
    ({"limit": "0"}, "limit"),
    ({"limit": "501"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"cursor": "abc"}, "cursor"),
    ({"cursor": str(MAX_ROW_ID + 1)}, "cursor"),
    ({"status": "99"}, "status"),
    ({"status": "600"}, "status"),
    ({"status": "2xx"}, "status"),
    ({"last": "60", "from": "100"}, "last"),
    ({"last": "0"}, "last"),
    ({"to": "soon"}, "to"),
])
def test_bad_log_queries_name_the_argument(args: Dict[str, str], field: str) -> None:
    assert refusal(log_query, **args).field == field


def test_captured_payloads_are_json_unless_cut() -> None:
    entry = with_payloads({"id": 1, "requestHeaders": '{"accept": "x"}', "responseHeaders": None,
                           "requestPayload": '{"jsonrpc": "2.0"}', "responsePayload": '{"cut'})
    assert entry == {"id": 1, "requestHeaders": {"accept": "x"}, "responseHeaders": None,
                     "requestPayload": {"jsonrpc": "2.0"}, "responsePayload": '{"cut'}
