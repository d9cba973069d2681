"""
What every resource of the admin API shares: the one Klein app, the state
the handlers read (L{AdminState}), the bearer-token check, JSON bodies in and
out, and the L{endpoint} wrapper that turns domain errors into JSON answers
(C{{"error": ..., "field": ...}}).

Each resource is a mixin of L{AdminState} in its own module (L{apis},
L{applications}, L{analytics}, L{pins}) whose handlers are routed on L{app};
L{mcpgated.admin.api.AdminAPI} combines them.
"""

from __future__ import annotations

import functools
import hmac
import json
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, Optional, Tuple

import attrs
from klein import Klein
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from mcpgated.definitions import InvalidField
from mcpgated.cluster.changes import Change, IChangeFeed, LocalFeed
from mcpgated.keys import KeyIndex
from mcpgated.routing import RouteTable
from mcpgated.store import Closed, Conflict, IApiStore, NotFound, Unavailable

if TYPE_CHECKING:
    from mcpgated.analytics.metrics import Metrics
    from mcpgated.analytics.store import ExchangeStore
    from mcpgated.policy.pinbook import PinBook

log = Logger()

# A handler's answer: the status and a JSON-able body (None: no body).
Answer = Tuple[int, Any]
Handler = Callable[..., Awaitable[Answer]]

# The admin API's routes, whichever module declares them.
app = Klein()

UNAUTHORIZED = "missing or wrong admin token (Authorization: Bearer <token>)"


class HTTPError(Exception):
    """
    A refusal with its status, answered as C{{"error": message, "field": field}}.
    """

    def __init__(self, status: int, message: str, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def json_answer(request: IRequest, status: int, body: Any) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"x-content-type-options", b"nosniff")
    return json.dumps(body, indent=None).encode("utf-8")


def error_answer(request: IRequest, status: int, message: str,
                 field: Optional[str] = None) -> bytes:
    return json_answer(request, status, {"error": message, "field": field})


def unauthorized(request: IRequest) -> bytes:
    request.setHeader(b"www-authenticate", b'Bearer realm="mcpgated-admin"')
    return error_answer(request, 401, UNAUTHORIZED)


@attrs.define(slots=False)
class AdminState:
    """
    What the admin API's handlers work with.

    @ivar store: where definitions, applications and pins live.
    @ivar routes: the gateway's routing table, updated after each commit.
    @ivar clock: for timestamps.
    @ivar token: the bearer token clients must send.
    @ivar analytics: the exchange log, or L{None} when disabled.
    @ivar metrics: the Prometheus metrics, or L{None} when disabled.
    @ivar gateway_info: where clients reach the gateway (web console hints).
    @ivar keys: the gateway's API keys, kept in step with the store.
    @ivar pins: the gateway's pin book, kept in step with the store.
    @ivar changes: how the other gateway processes and nodes hear of each
        committed write (L{mcpgated.cluster.changes}).
    """

    store: IApiStore
    routes: RouteTable
    clock: IReactorTime
    token: str = attrs.field(repr=False)
    analytics: Optional[ExchangeStore] = None
    metrics: Optional[Metrics] = None
    gateway_info: Optional[Callable[[], Dict[str, Any]]] = None
    keys: KeyIndex = attrs.field(factory=KeyIndex)
    pins: Optional[PinBook] = None
    changes: IChangeFeed = attrs.field(factory=LocalFeed)

    app = app

    async def tell(self, kind: str, api_id: Optional[str] = None) -> None:
        """
        Tell the other processes and nodes what a committed write changed;
        returns once this node's workers have applied it (at most the
        feed's timeout: the write is committed whatever they say), so the
        admin answer means "live on this node".
        """
        applied = self.changes.publish(Change(kind, api_id))
        if applied is not None:
            await applied

    def authorized(self, request: IRequest) -> bool:
        if not self.token:
            return False
        header = request.getHeader(b"authorization") or b""
        scheme, _, credential = header.partition(b" ")
        if scheme.lower() != b"bearer" or not credential:
            return False
        return hmac.compare_digest(credential.strip(), self.token.encode("utf-8"))


def endpoint(authenticated: bool = True) -> Callable[[Handler], Callable[..., Awaitable[bytes]]]:
    """
    Wrap a handler: check the token, turn domain errors into JSON answers.
    """

    def decorate(handler: Handler) -> Callable[..., Awaitable[bytes]]:
        @functools.wraps(handler)
        async def wrapper(self: AdminState, request: IRequest, *args: Any, **kwargs: Any) -> bytes:
            if authenticated and not self.authorized(request):
                return unauthorized(request)
            try:
                if authenticated:  # /health and /openapi.json answer while the store opens
                    await self.routes.when_ready()
                status, body = await handler(self, request, *args, **kwargs)
            except HTTPError as e:
                return error_answer(request, e.status, e.message, e.field)
            except InvalidField as e:
                return error_answer(request, 400, e.message, e.field)
            except NotFound as e:
                return error_answer(request, 404, e.message, e.field)
            except Conflict as e:
                return error_answer(request, 409, e.message, e.field)
            except Closed:
                request.setHeader(b"connection", b"close")
                return error_answer(request, 503, "mcpgated is shutting down; nothing was changed")
            except Unavailable as e:
                log.error("admin {method} {path}: the store refused ({reason}); nothing was changed",
                          method=request.method.decode("ascii", "replace"),
                          path=request.path.decode("ascii", "replace"), reason=e.reason)
                if e.full:
                    return error_answer(request, 507, "disk full: the store cannot write, nothing "
                                        "was changed; free some space and retry")
                return error_answer(request, 503, f"the store cannot be used ({e.reason}); "
                                    "nothing was changed")
            if body is None:
                request.setResponseCode(status)
                return b""
            return json_answer(request, status, body)

        return wrapper

    return decorate


def read_json(request: IRequest) -> Any:
    """
    The request's body as JSON (any value: the parsers name what is wrong).

    @raise HTTPError: 415 for a content type other than JSON, 400 for an
        empty or malformed body.
    """
    content_type = request.getHeader(b"content-type") or b""
    if content_type and not content_type.split(b";")[0].strip().lower().endswith(b"json"):
        raise HTTPError(415, "Content-Type must be application/json", None)
    raw = request.content.read()
    if not raw.strip():
        raise HTTPError(400, "the body is empty; a JSON object is required", None)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise HTTPError(400, f"malformed JSON: {e}", None) from e
    except RecursionError:
        raise HTTPError(400, "malformed JSON: nested too deeply", None) from None


def read_optional_json(request: IRequest) -> Any:
    """
    Like L{read_json}, but an empty body is L{None}.
    """
    if not request.content.read().strip():
        return None
    request.content.seek(0)
    return read_json(request)
