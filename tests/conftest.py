from __future__ import annotations

from typing import Iterator

import pytest

from tests.engines import PostgresServer, RedisServer
from tests.support import Daemon, running, start_everything


@pytest.fixture
def daemon(tmp_path) -> Iterator[Daemon]:
    yield from running(Daemon(tmp_path))


@pytest.fixture(scope="session")
def everything() -> Iterator[int]:
    """
    The port of a server-everything (streamable HTTP) shared by the session.
    """
    proc, port = start_everything("streamableHttp")
    yield port
    proc.stop()


@pytest.fixture(scope="session")
def everything_sse() -> Iterator[int]:
    proc, port = start_everything("sse")
    yield port
    proc.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """
    A PostgreSQL server in a temporary folder (tests/engines.py): .url and
    .new_database() (one fresh database per test module).
    """
    server = PostgresServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    """
    A redis-server in a temporary folder: .url, .flush(), .stop(), .start().
    """
    server = RedisServer()
    yield server
    server.close()
