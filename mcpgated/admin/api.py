"""
The admin HTTP API (Klein): manage and deploy MCP proxy APIs.

JSON in and out; every route except C{/health} and C{/openapi.json} needs
C{Authorization: Bearer <token>}. Errors are C{{"error": ..., "field": ...}}.
"""

from __future__ import annotations

import functools
import hmac
import json
import math
from typing import Any, Awaitable, Callable, Optional

import attrs
from klein import Klein
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from mcpgated import __version__
from mcpgated.admin.openapi import openapi_document
from mcpgated.definitions import InvalidField, parse_definition
from mcpgated.model import STARTED, STOPPED
from mcpgated.keys import KeyIndex, hash_key, key_prefix, new_key
from mcpgated.oauth.terminating import effective_audiences
from mcpgated.routing import RouteTable
from mcpgated.store import Closed, Conflict, IApiStore, NotFound, Unavailable
from mcpgated.subscriptions import parse_application, parse_rotation, parse_subscription_request

log = Logger()

Handler = Callable[..., Awaitable[Any]]


class HTTPError(Exception):
    def __init__(self, status: int, message: str, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def _json(request: IRequest, status: int, body: Any) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"x-content-type-options", b"nosniff")
    return json.dumps(body, indent=None).encode("utf-8")


def _error(request: IRequest, status: int, message: str, field: Optional[str] = None) -> bytes:
    return _json(request, status, {"error": message, "field": field})


def endpoint(authenticated: bool = True) -> Callable[[Handler], Handler]:
    """
    Wrap a handler: check the token, turn domain errors into JSON answers.
    """

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(self: "AdminAPI", request: IRequest, *args: Any, **kwargs: Any) -> Any:
            if authenticated and not self.authorized(request):
                request.setHeader(b"www-authenticate", b'Bearer realm="mcpgated-admin"')
                return _error(request, 401, "missing or wrong admin token (Authorization: Bearer <token>)")
            try:
                await self.routes.when_ready()
                status, body = await handler(self, request, *args, **kwargs)
            except HTTPError as e:
                return _error(request, e.status, e.message, e.field)
            except InvalidField as e:
                return _error(request, 400, e.message, e.field)
            except NotFound as e:
                return _error(request, 404, e.message, e.field)
            except Conflict as e:
                return _error(request, 409, e.message, e.field)
            except Closed:
                request.setHeader(b"connection", b"close")
                return _error(request, 503, "mcpgated is shutting down; nothing was changed")
            except Unavailable as e:
                log.error("admin {method} {path}: the store refused ({reason}); nothing was changed",
                          method=request.method.decode("ascii", "replace"),
                          path=request.path.decode("ascii", "replace"), reason=e.reason)
                if e.full:
                    return _error(request, 507, "disk full: the store cannot write, nothing was "
                                  "changed; free some space and retry")
                return _error(request, 503, f"the store cannot be used ({e.reason}); nothing was "
                              "changed")
            if body is None:
                request.setResponseCode(status)
                return b""
            return _json(request, status, body)

        return wrapper

    return decorate


def _read_json(request: IRequest) -> Any:
    content_type = request.getHeader(b"content-type") or b""
    if content_type and not content_type.split(b";")[0].strip().lower().endswith(b"json"):
        raise HTTPError(415, "Content-Type must be application/json", None)
    raw = request.content.read()
    if not raw.strip():
        raise HTTPError(400, "the body is empty; a JSON object is required", None)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise HTTPError(400, f"malformed JSON: {e}", None)
    except RecursionError:
        raise HTTPError(400, "malformed JSON: nested too deeply", None)


@attrs.define(slots=False)
class AdminAPI:
    """
    @ivar store: where definitions live.
    @ivar routes: the gateway's routing table, updated after each commit.
    @ivar clock: for timestamps.
    @ivar token: the bearer token clients must send.
    """

    store: IApiStore
    routes: RouteTable
    clock: IReactorTime
    token: str = attrs.field(repr=False)
    analytics: Any = None  # mcpgated.analytics.store.AnalyticsStore, or None when disabled
    metrics: Any = None  # mcpgated.analytics.metrics.Metrics
    gateway_info: Any = None  # () -> where clients reach the gateway (web console hints)
    keys: KeyIndex = attrs.field(factory=KeyIndex)  # the gateway's API keys, kept in sync
    pins: Any = None  # the gateway's mcpgated.policy.pinbook.PinBook, kept in sync

    app = Klein()

    def authorized(self, request: IRequest) -> bool:
        if not self.token:
            return False
        header = request.getHeader(b"authorization") or b""
        scheme, _, credential = header.partition(b" ")
        if scheme.lower() != b"bearer" or not credential:
            return False
        return hmac.compare_digest(credential.strip(), self.token.encode("utf-8"))

    def _api_json(self, record: Any) -> Any:
        """
        An API as the admin API shows it: its record, plus the audiences its
        token plans accept (C{effectiveAudience}, for the stored and the
        deployed definition).
        """
        body = record.to_json()
        info = self.gateway_info() if self.gateway_info is not None else None
        public_url = (info or {}).get("publicUrl")
        body["effectiveAudience"] = effective_audiences(record.definition, public_url)
        if record.deployed is not None and body.get("deployed") is not None:
            body["deployed"]["effectiveAudience"] = effective_audiences(record.deployed, public_url)
        return body

    def resource(self):  # type: ignore[no-untyped-def]
        from mcpgated.admin.console import AdminRoot

        return AdminRoot(self.app.resource())  # /ui/... is the web console, the rest this API

    # --- unauthenticated -----------------------------------------------------------

    @app.route("/health", methods=["GET"])
    @endpoint(authenticated=False)
    async def health(self, request: IRequest) -> Any:
        # Readiness for anyone; what runs (version, APIs) only for the admin.
        if not self.authorized(request):
            return 200, {"status": "ok"}
        return 200, {"status": "ok", "version": __version__,
                     "apisStarted": len(self.routes.routes())}

    @app.route("/openapi.json", methods=["GET"])
    @endpoint(authenticated=False)
    async def openapi(self, request: IRequest) -> Any:
        return 200, openapi_document()

    # --- APIs -------------------------------------------------------------------------

    @app.route("/apis", methods=["GET"])
    @endpoint()
    async def list_apis(self, request: IRequest) -> Any:
        records = await self.store.list_apis()
        return 200, {"data": [self._api_json(record) for record in records]}

    @app.route("/apis", methods=["POST"])
    @endpoint()
    async def create_api(self, request: IRequest) -> Any:
        definition = parse_definition(_read_json(request))
        record = await self.store.create_api(definition, self.clock.seconds())
        log.info("API {api_id} created at {context_path}", api_id=record.id,
                 context_path=definition.context_path)
        request.setHeader(b"location", f"/apis/{record.id}".encode("ascii"))
        return 201, self._api_json(record)

    @app.route("/apis/<string:api_id>", methods=["GET"])
    @endpoint()
    async def get_api(self, request: IRequest, api_id: str) -> Any:
        return 200, self._api_json(await self.store.get_api(api_id))

    @app.route("/apis/<string:api_id>", methods=["PUT"])
    @endpoint()
    async def update_api(self, request: IRequest, api_id: str) -> Any:
        body = _read_json(request)
        # the stored definition keeps secrets the GET body shows masked
        previous = (await self.store.get_api(api_id)).definition
        definition = parse_definition(body, previous)
        if isinstance(body, dict) and body.get("id") not in (None, api_id):
            raise InvalidField("id", "id in the body does not match the URL")
        record = await self.store.update_api(api_id, definition, self.clock.seconds())
        return 200, self._api_json(record)

    @app.route("/apis/<string:api_id>", methods=["DELETE"])
    @endpoint()
    async def delete_api(self, request: IRequest, api_id: str) -> Any:
        await self.store.delete_api(api_id)
        self.routes.remove(api_id)
        log.info("API {api_id} deleted", api_id=api_id)
        return 204, None

    @app.route("/apis/<string:api_id>/_deploy", methods=["POST"])
    @endpoint()
    async def deploy_api(self, request: IRequest, api_id: str) -> Any:
        record = await self.store.deploy_api(api_id, self.clock.seconds())
        self.routes.apply(record)
        log.info("API {api_id} deployed and started at {context_path}", api_id=api_id,
                 context_path=record.definition.context_path)
        return 200, self._api_json(record)

    @app.route("/apis/<string:api_id>/_start", methods=["POST"])
    @endpoint()
    async def start_api(self, request: IRequest, api_id: str) -> Any:
        record = await self.store.set_state(api_id, STARTED, self.clock.seconds())
        self.routes.apply(record)
        log.info("API {api_id} started", api_id=api_id)
        return 200, self._api_json(record)

    @app.route("/apis/<string:api_id>/_stop", methods=["POST"])
    @endpoint()
    async def stop_api(self, request: IRequest, api_id: str) -> Any:
        record = await self.store.set_state(api_id, STOPPED, self.clock.seconds())
        self.routes.apply(record)
        log.info("API {api_id} stopped", api_id=api_id)
        return 200, self._api_json(record)

    # --- applications, subscriptions and API keys (mcpgated.subscriptions) --------------
    # Each write updates self.keys (the gateway's KeyIndex) as soon as it is
    # committed. A key is shown once, in the answer that issues it; the store
    # only ever sees its hash.

    @app.route("/applications", methods=["GET"])
    @endpoint()
    async def list_applications(self, request: IRequest) -> Any:
        applications = await self.store.list_applications()
        return 200, {"data": [application.to_json() for application in applications]}

    @app.route("/applications", methods=["POST"])
    @endpoint()
    async def create_application(self, request: IRequest) -> Any:
        name, description = parse_application(_read_json(request))
        application = await self.store.create_application(name, description, self.clock.seconds())
        log.info("application {application_id} created", application_id=application.id)
        request.setHeader(b"location", f"/applications/{application.id}".encode("ascii"))
        return 201, application.to_json()

    @app.route("/applications/<string:application_id>", methods=["GET"])
    @endpoint()
    async def get_application(self, request: IRequest, application_id: str) -> Any:
        return 200, (await self.store.get_application(application_id)).to_json()

    @app.route("/applications/<string:application_id>", methods=["DELETE"])
    @endpoint()
    async def delete_application(self, request: IRequest, application_id: str) -> Any:
        for key_hash in await self.store.delete_application(application_id):
            self.keys.remove(key_hash)
        log.info("application {application_id} deleted with its subscriptions and keys",
                 application_id=application_id)
        return 204, None

    @app.route("/apis/<string:api_id>/subscriptions", methods=["POST"])
    @endpoint()
    async def create_subscription(self, request: IRequest, api_id: str) -> Any:
        application_id, plan = parse_subscription_request(_read_json(request))
        subscription = await self.store.create_subscription(api_id, application_id, plan,
                                                            self.clock.seconds())
        log.info("application {application_id} subscribed to plan {plan} of API {api_id}: "
                 "{subscription_id}", application_id=application_id, plan=plan, api_id=api_id,
                 subscription_id=subscription.id)
        request.setHeader(b"location", f"/apis/{api_id}/subscriptions/{subscription.id}"
                          .encode("ascii"))
        return 201, subscription.to_json()

    @app.route("/apis/<string:api_id>/subscriptions", methods=["GET"])
    @endpoint()
    async def list_subscriptions(self, request: IRequest, api_id: str) -> Any:
        subscriptions = await self.store.list_subscriptions(api_id)
        return 200, {"data": [subscription.to_json() for subscription in subscriptions]}

    @app.route("/apis/<string:api_id>/subscriptions/<string:subscription_id>", methods=["GET"])
    @endpoint()
    async def get_subscription(self, request: IRequest, api_id: str, subscription_id: str) -> Any:
        return 200, (await self.store.get_subscription(api_id, subscription_id)).to_json()

    @app.route("/apis/<string:api_id>/subscriptions/<string:subscription_id>/_close",
               methods=["POST"])
    @endpoint()
    async def close_subscription(self, request: IRequest, api_id: str,
                                 subscription_id: str) -> Any:
        subscription, revoked = await self.store.close_subscription(api_id, subscription_id,
                                                                    self.clock.seconds())
        for key_hash in revoked:
            self.keys.remove(key_hash)
        log.info("subscription {subscription_id} of API {api_id} closed ({count} keys revoked)",
                 subscription_id=subscription_id, api_id=api_id, count=len(revoked))
        return 200, subscription.to_json()

    @app.route("/apis/<string:api_id>/subscriptions/<string:subscription_id>/keys",
               methods=["GET"])
    @endpoint()
    async def list_keys(self, request: IRequest, api_id: str, subscription_id: str) -> Any:
        keys = await self.store.list_keys(api_id, subscription_id)
        now = self.clock.seconds()
        return 200, {"data": [key.to_json(now) for key in keys]}

    async def _issue_key(self, api_id: str, subscription_id: str,
                         replace_after: Optional[int]) -> Any:
        key = new_key()
        issued = await self.store.issue_key(api_id, subscription_id, hash_key(key),
                                            key_prefix(key), self.clock.seconds(), replace_after)
        now = self.clock.seconds()
        for old_hash, grant in issued.replaced:
            if grant.expires_at is not None and grant.expires_at <= now:
                self.keys.remove(old_hash)
            else:
                self.keys.put(old_hash, grant)
        self.keys.put(issued.key_hash, issued.grant)
        log.info("API key {key_id} ({prefix}...) issued for subscription {subscription_id}"
                 "{rotation}", key_id=issued.key.id, prefix=issued.key.prefix,
                 subscription_id=subscription_id,
                 rotation="" if replace_after is None else
                 f", replacing {len(issued.replaced)} keys in {replace_after} s")
        return 201, issued.key.issued_json(key)

    @app.route("/apis/<string:api_id>/subscriptions/<string:subscription_id>/keys",
               methods=["POST"])
    @endpoint()
    async def issue_key(self, request: IRequest, api_id: str, subscription_id: str) -> Any:
        return await self._issue_key(api_id, subscription_id, None)

    @app.route("/apis/<string:api_id>/subscriptions/<string:subscription_id>/keys/_rotate",
               methods=["POST"])
    @endpoint()
    async def rotate_keys(self, request: IRequest, api_id: str, subscription_id: str) -> Any:
        grace = parse_rotation(_read_optional_json(request))
        return await self._issue_key(api_id, subscription_id, grace)

    @app.route("/apis/<string:api_id>/subscriptions/<string:subscription_id>/keys/"
               "<string:key_id>", methods=["DELETE"])
    @endpoint()
    async def revoke_key(self, request: IRequest, api_id: str, subscription_id: str,
                         key_id: str) -> Any:
        _, key_hash = await self.store.revoke_key(api_id, subscription_id, key_id,
                                                  self.clock.seconds())
        self.keys.remove(key_hash)
        log.info("API key {key_id} of subscription {subscription_id} revoked", key_id=key_id,
                 subscription_id=subscription_id)
        return 204, None

    # --- end of applications, subscriptions and API keys --------------------------------

    # --- exchange logs and analytics ----------------------------------------------------------

    def _analytics_store(self) -> Any:
        if self.analytics is None:
            raise HTTPError(404, "analytics are disabled ([analytics] enabled = off)")
        return self.analytics

    async def _known_api(self, api_id: str) -> None:
        await self.store.get_api(api_id)  # NotFound -> 404

    async def _logs(self, request: IRequest, api_id: Optional[str]) -> Any:
        store = self._analytics_store()
        if api_id is not None:
            await self._known_api(api_id)
        query = _log_query(request, api_id, self.clock.seconds())
        return 200, await store.logs(query)

    @app.route("/apis/<string:api_id>/logs", methods=["GET"])
    @endpoint()
    async def api_logs(self, request: IRequest, api_id: str) -> Any:
        return await self._logs(request, api_id)

    @app.route("/logs", methods=["GET"])
    @endpoint()
    async def all_logs(self, request: IRequest) -> Any:
        return await self._logs(request, None)

    @app.route("/apis/<string:api_id>/logs/<int:log_id>", methods=["GET"])
    @endpoint()
    async def api_log_entry(self, request: IRequest, api_id: str, log_id: int) -> Any:
        store = self._analytics_store()
        await self._known_api(api_id)
        entry = await store.log_entry(api_id, log_id) if log_id <= _MAX_ROW_ID else None
        if entry is None:
            raise HTTPError(404, "no exchange record with this id for this API", "logId")
        return 200, _with_payloads(entry)

    async def _summary(self, request: IRequest, api_id: Optional[str]) -> Any:
        store = self._analytics_store()
        if api_id is not None:
            await self._known_api(api_id)
        since, until = _time_range(request, self.clock.seconds())
        return 200, await store.analytics(api_id, since, until)

    @app.route("/apis/<string:api_id>/analytics", methods=["GET"])
    @endpoint()
    async def api_analytics(self, request: IRequest, api_id: str) -> Any:
        return await self._summary(request, api_id)

    @app.route("/analytics", methods=["GET"])
    @endpoint()
    async def all_analytics(self, request: IRequest) -> Any:
        return await self._summary(request, None)

    @app.route("/metrics", methods=["GET"])
    def prometheus(self, request: IRequest) -> bytes:
        if not self.authorized(request):
            request.setHeader(b"www-authenticate", b'Bearer realm="mcpgated-admin"')
            return _error(request, 401, "missing or wrong admin token (Authorization: Bearer <token>)")
        if self.metrics is None:
            return _error(request, 404, "metrics are disabled")
        request.setHeader(b"content-type", self.metrics.content_type.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        # rendered on a thread: a scrape never stalls the proxied traffic
        return self.metrics.render_in_thread()

    # --- web console (mcpgated/admin/console.py serves the /ui/ files) ------------------

    @app.route("/gateway", methods=["GET"])
    @endpoint()
    async def gateway(self, request: IRequest) -> Any:
        info = self.gateway_info() if self.gateway_info is not None else None
        return 200, info or {"publicUrl": None, "listeners": []}

    # --- end of web console -------------------------------------------------------------

    # --- anything else ------------------------------------------------------------------

    @app.handle_errors(Exception)
    def unexpected(self, request: IRequest, failure: Any) -> bytes:
        from werkzeug.exceptions import MethodNotAllowed, NotFound as RouteNotFound
        from werkzeug.routing import RequestRedirect

        # A path that only matches with its slashes merged (/apis//x) is not
        # redirected: the admin API has no such endpoint.
        if failure.check(RouteNotFound, RequestRedirect):
            return _error(request, 404, "no such admin endpoint; see /openapi.json")
        if failure.check(MethodNotAllowed):
            return _error(request, 405, "method not allowed on this endpoint")
        log.failure("admin API request failed", failure)
        return _error(request, 500, "internal error; see the daemon log")


def _read_optional_json(request: IRequest) -> Any:
    """
    Like L{_read_json}, but an empty body is L{None}.
    """
    if not request.content.read().strip():
        return None
    request.content.seek(0)
    return _read_json(request)


# The largest id SQLite stores (a signed 64-bit INTEGER).
_MAX_ROW_ID = 2 ** 63 - 1


def _whole(raw: str) -> Optional[int]:
    """
    C{raw} as a whole number if it is one written in ASCII digits and fits a
    SQLite INTEGER, else L{None} (C{int} also takes C{"\u0663"} and C{"1_0"}).
    """
    if raw.isascii() and raw.isdigit() and len(raw) <= 19:
        value = int(raw)
        if value <= _MAX_ROW_ID:
            return value
    return None


def _arg(request: IRequest, name: str) -> Optional[str]:
    values = request.args.get(name.encode("ascii"))
    if not values:
        return None
    return values[0].decode("utf-8", "replace")


def _number(request: IRequest, name: str, default: Optional[float] = None) -> Optional[float]:
    raw = _arg(request, name)
    if raw is None or raw == "":
        return default
    try:
        value = _parse_time(raw)
    except (ValueError, OverflowError):
        value = math.nan
    if not math.isfinite(value):
        raise HTTPError(400, f"{name} must be a number of seconds since the epoch or an ISO 8601 time", name)
    return value


def _parse_time(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        import datetime

        moment = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        return moment.timestamp()


def _last(request: IRequest) -> Optional[float]:
    """
    C{last}: a window in seconds ending at C{to}, instead of C{from} (the
    server's clock, whatever the browser's says).
    """
    raw = _arg(request, "last")
    if raw is None or raw == "":
        return None
    if _arg(request, "from"):
        raise HTTPError(400, "give from or last, not both", "last")
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 366 * 86400:
        raise HTTPError(400, "last must be a number of seconds, more than 0 and at most a year",
                        "last")
    return value


def _time_range(request: IRequest, now: float) -> "tuple[float, float]":
    until = _number(request, "to", now)
    since = _number(request, "from", None)
    assert until is not None
    if since is None:
        since = until - (_last(request) or 3600.0)
    if since >= until:
        raise HTTPError(400, "from must be earlier than to", "from")
    return since, until


def _log_query(request: IRequest, api_id: Optional[str], now: float) -> Any:
    from mcpgated.analytics.store import LogQuery

    limit = _whole(_arg(request, "limit") or "50")
    if limit is None or not 1 <= limit <= 500:
        raise HTTPError(400, "limit must be a whole number from 1 to 500", "limit")
    cursor_raw = _arg(request, "cursor")
    cursor = None if cursor_raw is None else _whole(cursor_raw)
    if cursor_raw is not None and cursor is None:
        raise HTTPError(400, "cursor must be a value returned as nextCursor", "cursor")
    status_raw = _arg(request, "status")
    status = None if status_raw is None else _whole(status_raw)
    if status_raw is not None and (status is None or not 100 <= status <= 599):
        raise HTTPError(400, "status must be an HTTP status code", "status")
    last, until = _last(request), _number(request, "to")
    return LogQuery(
        api_id=api_id,
        since=_number(request, "from") if last is None else (now if until is None else until) - last,
        until=until,
        method=_arg(request, "method"),
        target=_arg(request, "tool") or _arg(request, "target"),
        outcome=_arg(request, "outcome"),
        status=status,
        client=_arg(request, "client"),
        session=_arg(request, "session"),
        text=_arg(request, "q"),
        cursor=cursor,
        limit=limit,
    )


def _with_payloads(entry: Any) -> Any:
    for key in ("requestHeaders", "responseHeaders", "requestPayload", "responsePayload"):
        raw = entry.get(key)
        if raw is None:
            continue
        try:
            entry[key] = json.loads(raw)
        except ValueError:
            entry[key] = raw  # cut at the capture limit: shown as text
    return entry


# Tool-definition pinning: pins, drift events, approve and reject.
from mcpgated.admin import pins as _pins  # noqa: E402

_pins.install(AdminAPI, endpoint, _read_optional_json, HTTPError)
