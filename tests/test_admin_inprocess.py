"""
The admin API in process: the Klein application tap.py serves, built the
way tap.py builds it, over a SQLite store in a temporary folder, and asked
through treq's L{StubTreq} (HTTP requests and responses in memory, no
socket). The real-daemon tests (test_admin.py, security/test_admin_*.py)
ask the same things over loopback; these show a failure without a daemon
in the way.

The store answers from its own thread, so the reactor runs (trial's
TestCase) and the in-memory connection is flushed when each request
finishes (L{FlushingRoot}): no polling.
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, Optional, Tuple

from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.trial.unittest import TestCase

from mcpgated.admin.api import AdminAPI
from mcpgated.analytics.metrics import Metrics
from mcpgated.keys import KeyIndex
from mcpgated.policy.pinbook import PinBook
from mcpgated.routing import RouteTable
from mcpgated.store import SQLiteApiStore
from tests.support import ADMIN_TOKEN, api_definition

BASE = "http://admin.invalid"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
UNREACHABLE = "http://127.0.0.1:1/mcp"


class FlushingRoot(Resource):
    """
    The admin root, with a hook: once a request is finished, the stub's
    in-memory connection is flushed so the client reads the answer.
    """

    isLeaf = True

    def __init__(self, inner: IResource) -> None:
        super().__init__()
        self.inner = inner
        self.flush: Callable[[], None] = lambda: None

    def render(self, request: IRequest) -> Any:
        request.notifyFinish().addBoth(lambda _: reactor.callLater(0, self.flush))
        return self.inner.render(request)


def inline(test: Callable[..., Awaitable[None]]) -> Callable[..., "Deferred[None]"]:
    @functools.wraps(test)
    def run(self: Any) -> "Deferred[None]":
        return Deferred.fromCoroutine(test(self))  # type: ignore[arg-type]
    return run


class AdminInProcessTests(TestCase):
    timeout = 30

    def setUp(self) -> "Deferred[Any]":
        # a temporary folder outside the working tree (trial's mktemp is relative to it)
        folder = Path(tempfile.mkdtemp(prefix="admin-inprocess-"))
        self.addCleanup(shutil.rmtree, folder, True)
        self.store = SQLiteApiStore(reactor, folder / "data" / "mcpgated.db")
        self.routes = RouteTable()
        self.metrics = Metrics(dropped=lambda: 0)
        # as tap.py builds it (the token is set when the service starts)
        self.admin = AdminAPI(self.store, self.routes, reactor, token="",
                              analytics=None, metrics=self.metrics, keys=KeyIndex(),
                              pins=PinBook(self.store, reactor))
        self.admin.token = ADMIN_TOKEN
        root = FlushingRoot(self.admin.resource())
        self.stub = StubTreq(root)
        root.flush = self.stub.flush
        self.addCleanup(self.store.stop)
        return Deferred.fromCoroutine(self._load())

    async def _load(self) -> None:
        # as tap.py's StoreService does: the admin API waits for the routes
        await self.store.start()
        self.routes.load(await self.store.list_apis())

    async def ask(self, method: str, path: str, body: Any = None,
                  headers: Optional[Dict[str, str]] = None) -> Tuple[int, Any, Any]:
        """
        One admin request: status, response headers and the JSON body.
        """
        sent = dict(AUTH if headers is None else headers)
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        response = await self.stub.request(method, BASE + path, headers=sent, data=data)
        content = await response.content()
        return response.code, response.headers, json.loads(content) if content else None

    @inline
    async def test_every_endpoint_but_health_needs_the_token(self) -> None:
        for headers in ({}, {"Authorization": "Bearer not-the-token"},
                        {"Authorization": f"Basic {ADMIN_TOKEN}"}):
            status, response_headers, body = await self.ask("GET", "/apis", headers=headers)
            self.assertEqual(status, 401, body)
            self.assertTrue(response_headers.getRawHeaders("www-authenticate"))
            self.assertIn("error", body)
            status, _, body = await self.ask("POST", "/apis", api_definition("/x", UNREACHABLE),
                                             headers=headers)
            self.assertEqual(status, 401, body)
        self.assertEqual((await self.ask("GET", "/apis"))[2], {"data": []})  # nothing was created
        status, _, health = await self.ask("GET", "/health", headers={})
        self.assertEqual((status, health), (200, {"status": "ok"}))

    @inline
    async def test_health_says_starting_until_the_routes_are_loaded(self) -> None:
        unloaded = self.admin.routes = RouteTable()  # as before StoreService has read the store
        for headers in ({}, None):  # anyone, and the admin
            status, _, health = await self.ask("GET", "/health", headers=headers)
            self.assertEqual((status, health), (503, {"status": "starting"}))
        unloaded.load([])
        status, _, health = await self.ask("GET", "/health", headers={})
        self.assertEqual((status, health), (200, {"status": "ok"}))

    @inline
    async def test_a_bad_field_is_a_400_naming_it(self) -> None:
        cases = [
            (api_definition("no-slash", UNREACHABLE), "contextPath"),
            (api_definition("/x", "ftp://example/mcp"), "backend"),
            (api_definition("/x", UNREACHABLE, name=3), "name"),
            (api_definition("/x", UNREACHABLE, plans=[{"name": "P", "security": "MAGIC"}]),
             "plans[0].security"),
        ]
        for definition, field in cases:
            status, _, body = await self.ask("POST", "/apis", definition)
            self.assertEqual((status, body.get("field")), (400, field), body)
            self.assertTrue(body.get("error") or body.get("message"), body)
        status, _, body = await self.ask("POST", "/apis", b"{not json")
        self.assertEqual(status, 400, body)
        self.assertEqual((await self.ask("GET", "/apis"))[2], {"data": []})

    @inline
    async def test_create_then_deploy_routes_the_path(self) -> None:
        status, headers, api = await self.ask("POST", "/apis",
                                              api_definition("/inproc", UNREACHABLE))
        self.assertEqual(status, 201, api)
        self.assertEqual(headers.getRawHeaders("location"), [f"/apis/{api['id']}"])
        self.assertEqual(api["contextPath"], "/inproc")
        self.assertIsNone(self.routes.match("/inproc"))  # created, not deployed
        status, _, deployed = await self.ask("POST", f"/apis/{api['id']}/_deploy")
        self.assertEqual(status, 200, deployed)
        self.assertEqual(deployed["id"], api["id"])
        self.assertEqual(deployed["deployed"]["contextPath"], "/inproc")
        self.assertIsNotNone(self.routes.match("/inproc"))
        status, _, listed = await self.ask("GET", "/apis")
        self.assertEqual([a["id"] for a in listed["data"]], [api["id"]])
        status, _, stopped = await self.ask("POST", f"/apis/{api['id']}/_stop")
        self.assertEqual(status, 200, stopped)
        self.assertIsNone(self.routes.match("/inproc"))

    @inline
    async def test_unknown_things_are_json_404s(self) -> None:
        for method, path in (("GET", "/apis/nope"), ("POST", "/apis/nope/_deploy"),
                             ("GET", "/no-such-endpoint"), ("DELETE", "/apis/nope")):
            status, headers, body = await self.ask(method, path)
            self.assertEqual(status, 404, (method, path, body))
            self.assertEqual(headers.getRawHeaders("content-type")[0].split(";")[0],
                             "application/json")
            self.assertIsInstance(body.get("error"), str, body)
