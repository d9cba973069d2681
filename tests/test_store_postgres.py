"""
What only the PostgreSQL store has (its contract with the SQLite store:
tests/test_store_contract.py): several processes on one database (schema
migrated once, writes serialized so the cross-API rules hold), connections
cut by the server (the server down and back: tests/test_store_postgres_nodes.py).
"""

from __future__ import annotations

from typing import Any, Iterator, List

import psycopg
import pytest

from mcpgated.cluster.pgfeed import PostgresFeed
from mcpgated.definitions import InvalidField, parse_definition
from mcpgated.model import ApiDefinition
from mcpgated.store import Conflict, PostgresApiStore
from mcpgated.store._postgres import migrations
from tests.engines import PostgresServer
from tests.test_subscriptions import PumpedReactor


def _definition(context_path: str) -> ApiDefinition:
    return parse_definition({"name": "Docs", "version": "1", "contextPath": context_path,
                             "backend": "http://127.0.0.1:1/mcp",
                             "plans": [{"name": "Keyless", "security": "KEY_LESS"}]})


def _wait_all(reactor: PumpedReactor, pending: List[Any]) -> List[Any]:
    """
    Each Deferred's result or the exception it failed with.
    """
    outcomes = []
    for d in pending:
        try:
            outcomes.append(reactor.wait(d))
        except Exception as e:  # noqa: BLE001 -- the outcome is what the test judges
            outcomes.append(e)
    return outcomes


@pytest.fixture
def stores(postgres: PostgresServer) -> Iterator[List[PostgresApiStore]]:
    """
    Two processes' stores on one new database, started at the same time.
    """
    url = postgres.new_database()
    reactor = PumpedReactor()
    pair = [PostgresApiStore(reactor, url), PostgresApiStore(reactor, url)]
    versions = _wait_all(reactor, [store.start() for store in pair])
    assert versions == [len(migrations())] * 2  # migrated once, under the lock
    yield pair
    _wait_all(reactor, [store.stop() for store in pair])


def test_migrations_are_numbered_like_sqlites() -> None:
    assert [number for number, _ in migrations()] == [1, 2, 3]


def test_schema_migrated_once(stores: List[PostgresApiStore]) -> None:
    with psycopg.connect(stores[0].url) as connection:
        rows = connection.execute("SELECT version FROM mcpgated_schema ORDER BY version").fetchall()
    assert rows == [(1,), (2,), (3,)]


def test_overlapping_deploys_on_two_nodes_one_wins(stores: List[PostgresApiStore]) -> None:
    a, b = stores
    reactor = a.reactor
    assert isinstance(reactor, PumpedReactor)
    for round_ in range(5):
        first = reactor.wait(a.create_api(_definition(f"/r{round_}"), 1.0))
        second = reactor.wait(b.create_api(_definition(f"/r{round_}/sub"), 1.0))
        outcomes = _wait_all(reactor, [a.deploy_api(first.id, 2.0), b.deploy_api(second.id, 2.0)])
        refused = [o for o in outcomes if isinstance(o, Conflict)]
        assert len(refused) == 1, outcomes
        assert refused[0].field == "contextPath"


def test_concurrent_creates_on_one_path_one_wins(stores: List[PostgresApiStore]) -> None:
    a, b = stores
    reactor = a.reactor
    assert isinstance(reactor, PumpedReactor)
    deployed = reactor.wait(a.create_api(_definition("/base"), 1.0))
    reactor.wait(a.deploy_api(deployed.id, 1.0))
    outcomes = _wait_all(reactor, [a.create_api(_definition("/base/x"), 2.0),
                                   b.create_api(_definition("/base/y"), 2.0)])
    assert all(isinstance(o, InvalidField) for o in outcomes)


def test_cut_connections_are_replaced(stores: List[PostgresApiStore]) -> None:
    a, _ = stores
    reactor = a.reactor
    assert isinstance(reactor, PumpedReactor)
    created = reactor.wait(a.create_api(_definition("/cut"), 1.0))
    with psycopg.connect(a.url, autocommit=True) as connection:
        connection.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                           " WHERE application_name = 'mcpgated' AND pid <> pg_backend_pid()"
                           " AND datname = current_database()")
    # the idle connections were cut: the calls go through on new ones
    assert reactor.wait(a.get_api(created.id)) == created
    updated = reactor.wait(a.update_api(created.id, _definition("/cut2"), 2.0))
    assert updated.definition.context_path == "/cut2"


def test_password_not_in_the_stores_name() -> None:
    store = PostgresApiStore(PumpedReactor(), "postgresql://gw:s3cret@db.example:5433/gateway")
    assert store.path == "postgresql://gw:***@db.example:5433/gateway"
    assert "s3cret" not in repr(store)
    feed = PostgresFeed(PumpedReactor(), store.url)
    assert "s3cret" not in repr(feed)
