"""
The admin HTTP API (Klein): manage and deploy MCP proxy APIs.

JSON in and out; every route except C{/health} and C{/openapi.json} needs
C{Authorization: Bearer <token>}. Errors are C{{"error": ..., "field": ...}}.

L{AdminAPI} is the whole API: its resources are mixins with their own
modules (APIs, applications and subscriptions, analytics, pins), routed on
the one Klein app of L{mcpgated.admin.endpoint}; this module adds what
concerns the service itself (health, the OpenAPI document, where the gateway
listens) and the answer to anything else.
"""

from __future__ import annotations

from typing import Any, Dict

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from werkzeug.exceptions import MethodNotAllowed, NotFound as RouteNotFound
from werkzeug.routing import RequestRedirect

from mcpgated import __version__
from mcpgated.admin.analytics import AnalyticsRoutes
from mcpgated.admin.apis import ApiRoutes
from mcpgated.admin.applications import ApplicationRoutes
from mcpgated.admin.console import AdminRoot
from mcpgated.admin.endpoint import Answer, app, endpoint, error_answer
from mcpgated.admin.export import ExportRoutes
from mcpgated.admin.openapi import openapi_document
from mcpgated.admin.pins import PinRoutes
from mcpgated.admin.preview import PreviewRoutes

log = Logger()


class AdminAPI(ApiRoutes, ApplicationRoutes, AnalyticsRoutes, PinRoutes, ExportRoutes,
               PreviewRoutes):
    """
    The admin API over the store, the gateway's routing table and key
    index, the exchange log and the metrics (see L{AdminState}).
    """

    def resource(self) -> IResource:
        return AdminRoot(self.app.resource())  # /ui/... is the web console, the rest this API

    # --- unauthenticated -----------------------------------------------------------

    @app.route("/health", methods=["GET"])
    @endpoint(authenticated=False)
    async def health(self, request: IRequest) -> Answer:
        # Readiness for anyone; what runs (version, APIs) only for the admin.
        if not self.routes.ready:  # the API store is still opening: nothing is routed yet
            return 503, {"status": "starting"}
        if not self.authorized(request):
            return 200, {"status": "ok"}
        return 200, {"status": "ok", "version": __version__,
                     "apisStarted": len(self.routes.routes())}

    @app.route("/openapi.json", methods=["GET"])
    @endpoint(authenticated=False)
    async def openapi(self, request: IRequest) -> Answer:
        return 200, openapi_document()

    # --- web console (mcpgated/admin/console.py serves the /ui/ files) ------------------

    @app.route("/gateway", methods=["GET"])
    @endpoint()
    async def gateway(self, request: IRequest) -> Answer:
        info: Dict[str, Any] = self.gateway_info() if self.gateway_info is not None else {}
        return 200, info or {"publicUrl": None, "listeners": []}

    # --- anything else ------------------------------------------------------------------

    @app.handle_errors(Exception)
    def unexpected(self, request: IRequest, failure: Failure) -> bytes:
        # A path that only matches with its slashes merged (/apis//x) is not
        # redirected: the admin API has no such endpoint.
        if failure.check(RouteNotFound, RequestRedirect):
            return error_answer(request, 404, "no such admin endpoint; see /openapi.json")
        if failure.check(MethodNotAllowed):
            return error_answer(request, 405, "method not allowed on this endpoint")
        log.failure("admin API request failed", failure)
        return error_answer(request, 500, "internal error; see the daemon log")
