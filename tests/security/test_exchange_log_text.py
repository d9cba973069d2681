"""
One exchange's text must never cost the exchange log the records it is
written with. A client chooses its method, tool name, client name and
JSON-RPC id (and a backend its error message and code); JSON may escape a
lone surrogate (C{"\\ud800"}) or NUL (C{"\\u0000"}), which the decoder
gives as such, and a number past 64 bits. SQLite's driver refuses to encode
a lone surrogate or bind such a number, PostgreSQL refuses NUL in text:
before, the whole batch (every client's records of the last half second)
was dropped, so a client could hide its own calls and others'. Now the
batch is written again with that text escaped (C{\\ud800}, C{\\u0000}) and
such a number left out; the other records are written as given. Both
stores; the daemon too, from a real request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest
from twisted.internet.task import Clock

from mcpgated.analytics.pgstore import PostgresAnalyticsStore
from mcpgated.analytics.records import CallRecord
from mcpgated.analytics.store import AnalyticsStore, ExchangeStore, LogQuery
from tests.support import Daemon, http, running


class _NowReactor(Clock):
    """
    A clock whose thread calls run at once (with L{_NowPool}, a store's
    Deferreds fire before flush returns).
    """

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)


class _NowPool:
    """
    A thread pool that runs each call on the calling thread.
    """

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def callInThreadWithCallback(self, on_result: Callable[[bool, Any], None],
                                 f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            result = f(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 -- handed to the Deferred, as Twisted's pool does
            from twisted.python.failure import Failure

            on_result(False, Failure(e))
        else:
            on_result(True, result)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: Any, tmp_path: Path) -> Iterator[ExchangeStore]:
    reactor = _NowReactor()
    made: ExchangeStore
    if request.param == "postgres":
        url = request.getfixturevalue("postgres").new_database()
        made = PostgresAnalyticsStore(reactor, url, writer=_NowPool(), readers=_NowPool())
    else:
        made = AnalyticsStore(reactor, tmp_path / "analytics.db", pool=_NowPool())
    made.startService()
    assert made.opened.called
    yield made
    made.stopService()


def _call(n: int, **fields: Any) -> CallRecord:
    given = {"method": "tools/call", "target": f"tool-{n}", "outcome": "result", **fields}
    return CallRecord(time=float(n), api_id="api", api_name="API", plan=None,
                      client="127.0.0.1", kind="request", **given)


class _Per:
    """
    What each store shows.
    """

    def __init__(self, sqlite: Any, postgres: Any) -> None:
        self.sqlite, self.postgres = sqlite, postgres

    def shown_by(self, store: ExchangeStore) -> Any:
        return self.sqlite if isinstance(store, AnalyticsStore) else self.postgres


# (fields of the poisoned record, what the log shows for them)
VARIANTS: List[Tuple[Dict[str, Any], Dict[str, Any]]] = [
    ({"target": "a\ud800b"}, {"target": "a\\ud800b"}),
    ({"target": "\udfff"}, {"target": "\\udfff"}),
    ({"target": "\udc00\ud800"}, {"target": "\\udc00\\ud800"}),  # a pair the wrong way round
    # SQLite takes NUL (kept as given there), PostgreSQL does not
    ({"target": "a\x00b"}, {"target": _Per("a\x00b", "a\\u0000b")}),
    ({"client_name": "x\ud83d"}, {"clientName": "x\\ud83d"}),
    ({"jsonrpc_id": "\x00\ud800"}, {"jsonrpcId": "\\u0000\\ud800"}),  # cleaned: both escaped
    ({"error_message": "bad \udbff", "outcome": "error", "error_code": -32000},
     {"errorMessage": "bad \\udbff", "errorCode": -32000}),
    ({"error_code": 2 ** 64, "outcome": "error"}, {"errorCode": None, "outcome": "error"}),
    ({"error_code": -(2 ** 63) - 1, "outcome": "error"}, {"errorCode": None}),
    ({"method": "tools/\ud800call"}, {"method": "tools/\\ud800call"}),
]


@pytest.mark.parametrize(("fields", "shown"), VARIANTS)
def test_odd_text_never_costs_the_batch(store: ExchangeStore, fields: Dict[str, Any],
                                        shown: Dict[str, Any]) -> None:
    store.record(_call(1))
    store.record(_call(2, **fields))
    store.record(_call(3, target="ordinary \u00e9\U0001f600"))  # real non-ASCII kept as given
    store.flush()
    assert store.dropped == 0 and store.written == 3
    rows = store._logs(LogQuery())["data"]
    assert [r["time"] for r in rows] == [3.0, 2.0, 1.0]
    assert rows[0]["target"] == "ordinary \u00e9\U0001f600" and rows[2]["target"] == "tool-1"
    expected = {k: v.shown_by(store) if isinstance(v, _Per) else v for k, v in shown.items()}
    for key, value in expected.items():
        assert rows[1][key] == value, key
    entry = store._log_entry(None, rows[1]["id"])
    assert entry is not None and all(entry[k] == v for k, v in expected.items())


def test_a_batch_of_ordinary_text_is_written_once(store: ExchangeStore) -> None:
    # the fast path: rows written as given, no second attempt
    attempts: List[int] = []
    insert = store._insert

    def counting(rows: Any) -> None:
        attempts.append(len(rows))
        insert(rows)

    store._insert = counting  # type: ignore[method-assign]
    for n in range(5):
        store.record(_call(n))
    store.flush()
    assert attempts == [5] and store.written == 5


@pytest.fixture(scope="module")
def logged_daemon(tmp_path_factory: Any, everything: int) -> Iterator[Daemon]:
    yield from running(Daemon(tmp_path_factory.mktemp("odd-text")))


@pytest.mark.parametrize(("name", "context", "shown"), [
    ("\\ud800", "/high", "\\ud800"), ("a\\udfffb", "/low", "a\\udfffb"),
    ("\\ud800\\u0000", "/mixed", "\\ud800\\u0000"),  # cleaned: both escaped
    ("\\u0000", "/nul", "\x00"),  # SQLite takes NUL: kept as given
])
def test_a_request_with_odd_text_leaves_every_record(logged_daemon: Daemon, everything: int,
                                                     name: str, context: str, shown: str) -> None:
    daemon = logged_daemon
    api_id = daemon.deploy(f"http://127.0.0.1:{everything}/mcp", context_path=context)
    url = daemon.gateway + context
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2025-06-18"}
    # written as raw JSON: the escape reaches the gateway as the client sent it
    bodies = [
        b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}',
        ('{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "' + name
         + '", "arguments": {}}}').encode(),
        b'{"jsonrpc": "2.0", "id": 3, "method": "ping"}',
    ]
    for body in bodies:
        status, _, _ = http("POST", url, raw=body, headers=headers)
        assert status in (200, 400, 404), status
    daemon.stop()  # writes what is queued, in one batch
    daemon.start()
    status, page = daemon.admin("GET", f"/apis/{api_id}/logs")
    assert status == 200, page
    methods = [(r["method"], r["target"]) for r in reversed(page["data"])]
    assert methods == [("ping", None), ("tools/call", shown), ("ping", None)], methods
