"""
The admin API's shared plumbing (L{mcpgated.admin.endpoint}), in process:
the token check, JSON bodies in, and each domain error as its JSON answer.
Real-daemon tests of the same answers are in tests/test_admin.py and
tests/security/test_admin_errors.py.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Coroutine, Dict, Optional, Tuple, cast

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from mcpgated.admin.api import AdminAPI
from mcpgated.admin.endpoint import (
    AdminState,
    Answer,
    HTTPError,
    endpoint,
    read_json,
    read_optional_json,
)
from mcpgated.definitions import InvalidField
from mcpgated.routing import RouteTable
from mcpgated.store import Closed, Conflict, IApiStore, NotFound, Unavailable
from tests.admin_requests import AdminRequest

TOKEN = "admin-token"


def request(body: bytes = b"", content_type: Optional[bytes] = b"application/json",
            authorization: Optional[bytes] = b"Bearer " + TOKEN.encode()) -> AdminRequest:
    return AdminRequest(body, content_type=content_type, authorization=authorization)


def state(token: str = TOKEN) -> AdminState:
    routes = RouteTable()
    routes.load([])
    return AdminState(store=cast(IApiStore, None), routes=routes, clock=Clock(), token=token)


def answer(handler: Callable[..., Any], req: AdminRequest,
           admin: Optional[AdminState] = None) -> Tuple[int, Dict[str, str], Any]:
    wrapped = endpoint()(handler)
    coroutine = cast(Coroutine[Any, Any, bytes], wrapped(admin or state(), req))
    body = cast(bytes, Deferred.fromCoroutine(coroutine).result)  # the handlers never wait
    headers = {k.decode().lower(): v[0].decode() for k, v in req.responseHeaders.getAllRawHeaders()}
    return req.responseCode or 200, headers, json.loads(body) if body else None


def raising(error: Exception) -> Callable[..., Any]:
    async def handler(self: AdminState, request: AdminRequest) -> Answer:
        raise error
    return handler


@pytest.mark.parametrize("authorization", [None, b"", b"Bearer", b"Bearer ", b"Basic admin-token",
                                           b"Bearer admin-token-2", b"Bearer ADMIN-TOKEN"])
def test_a_missing_or_wrong_token_is_401_with_a_challenge(authorization: Optional[bytes]) -> None:
    async def handler(self: AdminState, request: AdminRequest) -> Answer:
        raise AssertionError("not reached")

    status, headers, body = answer(handler, request(authorization=authorization))
    assert status == 401
    assert headers["www-authenticate"] == 'Bearer realm="mcpgated-admin"'
    assert body["field"] is None and "admin token" in body["error"]


def test_the_scheme_is_case_insensitive_and_an_empty_configured_token_admits_no_one() -> None:
    assert state().authorized(request(authorization=b"bearer " + TOKEN.encode()))
    assert not state(token="").authorized(request(authorization=b"Bearer "))


@pytest.mark.parametrize("error, status, field", [
    (HTTPError(415, "Content-Type must be application/json"), 415, None),
    (InvalidField("plans[0].name", "plans[0].name is required"), 400, "plans[0].name"),
    (NotFound("x"), 404, "id"),
    (Conflict("taken", "contextPath"), 409, "contextPath"),
    (Closed(), 503, None),
    (Unavailable("disk I/O error", full=False), 503, None),
    (Unavailable("database or disk is full", full=True), 507, None),
])
def test_domain_errors_are_json_answers_naming_the_field(error: Exception, status: int,
                                                         field: Optional[str]) -> None:
    got_status, headers, body = answer(raising(error), request())
    assert (got_status, body["field"]) == (status, field) and body["error"]
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"
    if isinstance(error, Closed):
        assert headers["connection"] == "close"


def test_an_answer_without_a_body_is_empty() -> None:
    async def handler(self: AdminState, request: AdminRequest) -> Answer:
        return 204, None

    assert answer(handler, request())[::2] == (204, None)


@pytest.mark.parametrize("content_type", [None, b"application/json", b"application/json; charset=utf-8",
                                          b"Application/JSON", b"application/merge-patch+json"])
def test_json_bodies_are_read_whatever_the_json_type(content_type: Optional[bytes]) -> None:
    assert read_json(request(b'{"a": [1]}', content_type)) == {"a": [1]}


@pytest.mark.parametrize("raw, content_type, status, message", [
    (b'{"a": 1}', b"text/plain", 415, "Content-Type must be application/json"),
    (b'{"a": 1}', b"application/x-www-form-urlencoded", 415, "Content-Type must be application/json"),
    (b"", b"application/json", 400, "the body is empty; a JSON object is required"),
    (b" \r\n", b"application/json", 400, "the body is empty; a JSON object is required"),
    (b'{"a": ', b"application/json", 400, "malformed JSON: "),
    (b'"\xff"', b"application/json", 400, "malformed JSON: "),
    (b"[" * 100_000, b"application/json", 400, "malformed JSON: "),
])
def test_bad_bodies_are_refused(raw: bytes, content_type: bytes, status: int, message: str) -> None:
    with pytest.raises(HTTPError) as caught:
        read_json(request(raw, content_type))
    assert caught.value.status == status and caught.value.message.startswith(message)


def test_an_optional_body_may_be_empty() -> None:
    assert read_optional_json(request(b"")) is None
    assert read_optional_json(request(b'{"expireOldAfter": 5}')) == {"expireOldAfter": 5}


def test_every_route_has_its_own_handler() -> None:
    # Klein keys handlers by function name: two resource modules defining a
    # handler of the same name would silently answer with one of them.
    rules = list(AdminAPI.app.url_map.iter_rules())
    assert len(rules) > 30  # every resource module's routes are on the one app
    assert len({rule.endpoint for rule in rules}) == len(rules)
