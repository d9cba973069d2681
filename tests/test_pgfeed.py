"""
The PostgreSQL change feed (mcpgated.cluster.pgfeed) against a real server:
what a store's committed writes tell the other nodes, what they never tell
(rolled-back writes, reads, a node's own writes), garbage ignored, and a
lost connection or a restarted server followed by Change("all").
"""

from __future__ import annotations

import queue
import time
from typing import Any, Callable, Iterator, List

import psycopg
import pytest
from zope.interface.verify import verifyObject

from mcpgated.cluster.changes import ALL, API, KEYS, PINS, Change, IChangeFeed
from mcpgated.cluster.pgfeed import CHANNEL, PostgresFeed, notice, redacted
from mcpgated.definitions import InvalidField, parse_definition
from mcpgated.model import ApiDefinition
from mcpgated.policy.pinning import Observed, PinSettings
from mcpgated.store import Conflict, PostgresApiStore
from tests.engines import PostgresServer
from tests.test_subscriptions import PumpedReactor



def _definition(context_path: str) -> ApiDefinition:
    return parse_definition({"name": "Docs", "version": "1", "contextPath": context_path,
                             "backend": "http://127.0.0.1:1/mcp",
                             "plans": [{"name": "Keys", "security": "API_KEY"}]})


DEFINITION = _definition("/docs")


def pump_until(reactor: PumpedReactor, done: Callable[[], bool], timeout: float = 10.0) -> None:
    """
    Run what the threads hand the reactor until C{done()} (no event to wait
    on: the feed calls listeners, it returns nothing to wait for).
    """
    deadline = time.monotonic() + timeout
    while not done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("timed out")
        try:
            f, args, kwargs = reactor.calls.get(timeout=min(remaining, 0.1))
        except queue.Empty:
            continue
        f(*args, **kwargs)


class Node:
    """
    One node's store and feed on the test's reactor, and what it heard.
    """

    def __init__(self, reactor: PumpedReactor, url: str) -> None:
        self.reactor = reactor
        self.store = PostgresApiStore(reactor, url)
        reactor.wait(self.store.start())
        self.feed = PostgresFeed(reactor, url, origin=self.store.origin)
        self.heard: List[Change] = []
        self.feed.subscribe(self.heard.append)
        self.feed.start()
        pump_until(reactor, lambda: Change(ALL) in self.heard)  # listening
        self.heard.clear()

    def call(self, name: str, *args: Any) -> Any:
        return self.reactor.wait(getattr(self.store, name)(*args))

    def hear(self, change: Change, times: int = 1) -> None:
        pump_until(self.reactor, lambda: self.heard.count(change) >= times)

    def close(self) -> None:
        self.reactor.wait(self.feed.stop())
        self.reactor.wait(self.store.stop())


@pytest.fixture
def nodes(postgres: PostgresServer) -> Iterator[List[Node]]:
    url = postgres.new_database()
    reactor = PumpedReactor()
    pair = [Node(reactor, url), Node(reactor, url)]
    yield pair
    for node in pair:
        node.close()


def test_committed_writes_reach_the_other_node_not_this_one(nodes: List[Node]) -> None:
    a, b = nodes
    verifyObject(IChangeFeed, a.feed)
    api = a.call("create_api", DEFINITION, 1.0)
    b.hear(Change(API, api.id))
    a.call("deploy_api", api.id, 2.0)
    application = a.call("create_application", "App", "", 3.0)
    subscription = a.call("create_subscription", api.id, application.id, "Keys", 4.0)
    issued = a.call("issue_key", api.id, subscription.id, "f" * 64, "mcpk_ffff", 5.0)
    b.call("revoke_key", api.id, subscription.id, issued.key.id, 6.0)
    a.hear(Change(KEYS))  # B's write, heard by A
    item = Observed("echo", "sha256:1", '{"name":"echo"}')
    b.call("observe_pins", api.id, "tool", [item], PinSettings("warn"), True, True, None, 7.0)
    a.hear(Change(PINS, api.id))
    b.hear(Change(KEYS))
    assert b.heard.count(Change(API, api.id)) == 2  # created, deployed
    # a node never hears its own writes (its admin API has applied them)
    assert not any(change.kind == PINS for change in b.heard)
    assert Change(API, api.id) not in a.heard


def test_rolled_back_writes_and_reads_tell_nobody(nodes: List[Node]) -> None:
    a, b = nodes
    first = a.call("create_api", _definition("/docs"), 1.0)
    a.call("deploy_api", first.id, 2.0)
    b.hear(Change(API, first.id), times=2)  # created, deployed
    b.heard.clear()
    with pytest.raises(InvalidField):  # overlaps the deployed /docs: rolled back
        a.call("create_api", _definition("/docs/sub"), 3.0)
    with pytest.raises(Conflict):  # started: refused, rolled back
        a.call("delete_api", first.id)
    a.call("list_apis")
    a.call("usable_keys", 0.0)
    # pins that did not change: nothing written, nothing told
    a.call("observe_pins", first.id, "tool", [], PinSettings("warn"), True, True, None, 4.0)
    marker = a.call("create_api", _definition("/elsewhere"), 5.0)
    b.hear(Change(API, marker.id))  # notices arrive in commit order: the rest came first
    assert b.heard == [Change(API, marker.id)]


def test_garbage_notices_are_ignored(nodes: List[Node], postgres: PostgresServer) -> None:
    a, b = nodes
    with psycopg.connect(b.store.url, autocommit=True) as connection:
        for payload in ["garbage", '{"kind": "nope"}', "[]", '{"kind": "api", "api": 5}']:
            connection.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
        connection.execute("SELECT pg_notify(%s, %s)",
                           (CHANNEL, notice(Change(API, "x"), "someone else")))
    a.hear(Change(API, "x"))
    assert a.heard == [Change(API, "x")]


def test_a_killed_connection_is_followed_by_all(nodes: List[Node]) -> None:
    a, b = nodes
    with psycopg.connect(a.store.url, autocommit=True) as connection:
        killed = connection.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'mcpgated-feed' AND datname = current_database()"
        ).fetchone()
    assert killed == (2,)
    a.hear(Change(ALL))  # notices may have been missed: read everything again
    b.hear(Change(ALL))
    assert a.feed.listening
    api = b.call("create_api", DEFINITION, 1.0)
    a.hear(Change(API, api.id))


def test_notice_carries_origin_and_change() -> None:
    text = notice(Change(PINS, "a\"b"), "node-1")
    assert Change.from_json(text) == Change(PINS, 'a"b')
    assert '"origin":"node-1"' in text


def test_passwords_never_reach_log_lines() -> None:
    assert redacted("postgresql://u:secret@db:5432/x?sslmode=require") == \
        "postgresql://u:***@db:5432/x?sslmode=require"
    assert redacted("postgresql://u@db/x") == "postgresql://u@db/x"
    assert redacted("postgresql://u:s@[::1]:5/x") == "postgresql://u:***@[::1]:5/x"
    assert redacted("postgresql://db/x?user=u&password=s3&sslmode=require") == \
        "postgresql://db/x?user=u&password=***&sslmode=require"
