"""
The admin API's handlers called in process, resource module by resource
module (tests/test_admin_apis.py, tests/test_admin_applications.py): a
SQLite store in a temporary folder (it answers from its own thread, so the
reactor runs: trial's L{TestCase}), the gateway's routing table and key
index the handlers keep in step, an injected clock for timestamps, and
L{AdminRequest}s.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Awaitable, Callable, Tuple

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from mcpgated.keys import KeyIndex
from mcpgated.routing import RouteTable
from mcpgated.store import SQLiteApiStore
from tests.admin_requests import AdminRequest
from tests.support import ADMIN_TOKEN

AUTH = b"Bearer " + ADMIN_TOKEN.encode()


class StoreCase(TestCase):
    """
    A started store with the routing table loaded from it, as tap.py's
    StoreService leaves them.
    """

    timeout = 30

    def setUp(self) -> "Deferred[None]":
        folder = tempfile.mkdtemp(prefix="mcpgated-admin-")
        self.addCleanup(shutil.rmtree, folder, True)
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = SQLiteApiStore(reactor, Path(folder) / "mcpgated.db")
        self.routes = RouteTable()
        self.keys = KeyIndex()
        self.addCleanup(self.store.stop)
        return Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        await self.store.start()
        self.routes.load(await self.store.list_apis())


def request(method: bytes, path: str, body: Any = None) -> AdminRequest:
    raw = b"" if body is None else json.dumps(body).encode()
    return AdminRequest(raw, method=method, path=path.encode(), authorization=AUTH)


async def answer(handler: Callable[..., Awaitable[bytes]], method: bytes, path: str,
                 *args: str, body: Any = None) -> Tuple[int, Any]:
    """
    A handler's answer to one request: the status and the JSON body.
    """
    req = request(method, path, body)
    raw = await handler(req, *args)
    return req.responseCode or 200, json.loads(raw) if raw else None


def inline(test: Callable[..., Awaitable[None]]) -> Callable[..., "Deferred[None]"]:
    """
    An C{async def} test method as trial runs it.
    """
    def run(self: Any) -> "Deferred[None]":
        return Deferred.fromCoroutine(test(self))  # type: ignore[arg-type]
    run.__name__ = test.__name__
    run.__doc__ = test.__doc__
    return run
