"""
The reactor's Redis client (mcpgated.policy.redisclient) against a real
redis-server (the session's `redis` fixture): pipelined commands, errors,
reconnecting after an outage logged once, time-outs against a server that
never answers, AUTH and SELECT, and URL parsing.
"""

from __future__ import annotations

import socket
from typing import Any, List, Tuple

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from mcpgated.policy.redisclient import (
    RedisAddress, RedisClient, RedisError, RedisUnavailable, pack,
)
from tests.engines import RedisServer


async def until(condition: Any, turns: int = 2000) -> None:
    """
    Let the reactor run until C{condition()} holds (real I/O: a reconnect).
    """
    for _ in range(turns):
        if condition():
            return
        await deferLater(reactor, 0.005, lambda: None)
    raise AssertionError("condition not reached")


class ClientTests(TestCase):
    server: RedisServer

    @pytest.fixture(autouse=True)
    def _server(self, redis: RedisServer) -> None:
        self.server = redis

    def client(self, url: str = "", **kwargs: Any) -> RedisClient:
        client = RedisClient(reactor, RedisAddress.parse(url or self.server.url), **kwargs)
        client.startService()
        self.addCleanup(client.stopService)
        return client

    def log_lines(self) -> List[str]:
        lines: List[str] = []

        def observe(event: Any) -> None:
            if event.get("log_namespace") == "mcpgated.policy.redisclient":
                lines.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        return lines

    async def test_pipelined_commands_answer_in_order(self) -> None:
        client = self.client()
        key = self.id()
        # given before the connection is made: they wait for it
        replies = await gatherResults([client.execute("INCR", key) for _ in range(200)])
        self.assertEqual(replies, list(range(1, 201)))
        self.assertEqual(await client.send(pack(["GET", key])), b"200")
        self.assertTrue(client.up)

    async def test_an_error_reply_fails_only_its_command(self) -> None:
        client = self.client()
        key = self.id()
        await client.execute("SET", key, "text")
        bad = client.execute("INCR", key)
        good = client.execute("GET", key)
        with self.assertRaises(RedisError) as caught:
            await bad
        self.assertIn("not an integer", str(caught.exception))
        self.assertEqual(await good, b"text")

    async def test_an_outage_is_logged_once_and_commands_fail_fast(self) -> None:
        lines = self.log_lines()
        states: List[Tuple[bool, str]] = []
        client = self.client(on_state=lambda up, why: states.append((up, why)))
        await client.execute("PING")
        self.server.stop()
        try:
            await until(lambda: client.down)
            for _ in range(20):  # known down: each fails at once, none logged
                with self.assertRaises(RedisUnavailable):
                    await client.execute("PING")
        finally:
            self.server.start()
        await until(lambda: client.up)
        self.assertEqual(await client.execute("PING"), b"PONG")
        self.assertEqual(client.outages, 1)
        self.assertEqual([up for up, _ in states], [True, False, True])
        unreachable = [line for line in lines if "unreachable" in line]
        self.assertEqual(len(unreachable), 1, lines)
        self.assertEqual(len([line for line in lines if "reachable again" in line]), 1, lines)

    async def test_a_server_that_never_answers_times_out(self) -> None:
        # a listening socket nobody reads: the connection is made, PING
        # gets no answer
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        self.addCleanup(silent.close)
        port = silent.getsockname()[1]
        client = self.client(f"redis://127.0.0.1:{port}", timeout=0.1)
        started = reactor.seconds()
        with self.assertRaises(RedisUnavailable):
            await client.execute("PING")
        self.assertLess(reactor.seconds() - started, 2.0)
        self.assertTrue(client.down)
        self.assertEqual(client.outages, 1)

    async def test_a_busy_redis_times_out_then_recovers_once(self) -> None:
        client = self.client(timeout=0.1)
        await client.execute("PING")
        # a script spinning for a while, on the client's own connection (so
        # it is surely running before anything else is asked): no answer
        # within the time-out is an outage
        started = reactor.seconds()
        with self.assertRaises(RedisUnavailable):
            await client.execute("EVAL", "local n = 0 for i = 1, 60000000 do n = n + i end return 1", 0)
        self.assertLess(reactor.seconds() - started, 1.0)
        self.assertTrue(client.down)
        await until(lambda: client.up)
        self.assertEqual(await client.execute("PING"), b"PONG")
        self.assertEqual(client.outages, 1)  # reconnected after a backoff, not again and again

    async def test_auth_and_select(self) -> None:
        client = self.client()
        await client.execute("ACL", "SETUSER", "gw", "on", ">s3cret", "~*", "+@all")
        self.addCleanup(lambda: self.client().execute("ACL", "DELUSER", "gw"))
        await client.execute("SELECT", "0")
        other = self.client(f"redis://gw:s3cret@127.0.0.1:{self.server.port}/3")
        key = self.id()
        await other.execute("SET", key, "in-db-3")
        self.assertEqual(await other.execute("GET", key), b"in-db-3")
        self.assertIsNone(await client.execute("GET", key))  # db 0 has no such key
        self.assertEqual(await other.execute("ACL", "WHOAMI"), b"gw")

    async def test_a_refused_password_is_an_outage(self) -> None:
        lines = self.log_lines()
        client = self.client(f"redis://nobody:wrong@127.0.0.1:{self.server.port}")
        with self.assertRaises(RedisUnavailable):
            await client.execute("PING")
        await until(lambda: client.down)
        self.assertTrue(any("refused" in line for line in lines), lines)

    async def test_stopping_fails_what_waits(self) -> None:
        client = RedisClient(reactor, RedisAddress.parse(self.server.url))
        client.startService()
        waiting: Deferred[Any] = client.execute("PING")  # queued: not connected yet
        client.stopService()
        with self.assertRaises(RedisUnavailable):
            await waiting
        with self.assertRaises(RedisUnavailable):
            await client.execute("PING")


@pytest.mark.parametrize("url, expected", [
    ("redis://127.0.0.1", RedisAddress("127.0.0.1")),
    ("redis://h:6380/2", RedisAddress("h", port=6380, db=2)),
    ("redis://:pw@h", RedisAddress("h", password="pw")),
    ("redis://u:p%40ss@h/1", RedisAddress("h", db=1, username="u", password="p@ss")),
    ("unix:///run/redis.sock?db=4", RedisAddress(None, path="/run/redis.sock", db=4)),
])
def test_urls(url: str, expected: RedisAddress) -> None:
    assert RedisAddress.parse(url) == expected


@pytest.mark.parametrize("url", ["http://h", "redis://", "redis://h/x", "redis://h:99999",
                                 "redis://h?db=1", "unix://"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ValueError, match=r"Redis URL|names no socket|must be a number|query"):
        RedisAddress.parse(url)


def test_the_address_never_shows_its_password() -> None:
    address = RedisAddress.parse("redis://user:s3cret@h:1/2")
    assert "s3cret" not in repr(address)
    assert "s3cret" not in address.describe()
