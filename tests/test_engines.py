"""
The engines the cluster tests run on (tests/engines.py) start, hand out
fresh databases, and stop and start again on the same port.
"""

from __future__ import annotations

import socket

import psycopg
import pytest


def test_each_new_database_is_empty_and_separate(postgres):
    first, second = postgres.new_database(), postgres.new_database()
    assert first != second
    with psycopg.connect(first, autocommit=True) as c:
        c.execute("CREATE TABLE marker (x int)")
    with psycopg.connect(second) as c:
        assert c.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'marker'").fetchone() == (0,)


def _ping(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        return s.recv(16)


def test_redis_stops_and_starts_on_the_same_port(redis):
    assert _ping(redis.port) == b"+PONG\r\n"
    redis.stop()
    with pytest.raises(ConnectionRefusedError):
        _ping(redis.port)
    redis.start()
    assert _ping(redis.port) == b"+PONG\r\n"
