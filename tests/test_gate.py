"""
The gate (L{mcpgated.policy.gate}) in memory: what it admits, refuses,
denies and asks to filter, for bodies parsed once by the resource. The same
behaviour through a real daemon and real MCP peers is in
tests/test_access_control.py and tests/security/.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from zope.interface.verify import verifyObject

from mcpgated.definitions import parse_definition
from mcpgated.jsonrpc import Refusal
from mcpgated.mcp.body import parse
from mcpgated.mcp.messages import classify
from mcpgated.policy.auth import Authenticator
from mcpgated.policy.gate import Admission, AdmissionRequest, Gate
from mcpgated.policy.interfaces import IAdmission
from mcpgated.policy.ratelimit import Limiter

ACL = {"rules": [{"tools": ["echo"]}]}


def _definition(**plan: Any) -> Any:
    return parse_definition({
        "name": "Guarded", "version": "1", "contextPath": "/g", "backend": "http://127.0.0.1:1/mcp",
        "plans": [dict({"name": "Free", "security": "KEY_LESS"}, **plan)],
    })


def _gate(clock: Optional[Clock] = None) -> Gate:
    clock = clock or Clock()
    return Gate(Authenticator(clock), Limiter(clock))


def _call(name: str, id: Any = 1) -> Dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name}}


def _admit(gate: Gate, definition: Any, body: bytes, headers: Optional[Headers] = None,
           parsed: Any = None) -> Admission:
    request = AdmissionRequest(
        "api-1", definition, b"POST", headers or Headers(), b"", {}, body,
        parsed if parsed is not None else (parse(body) if body else None), "127.0.0.1",
        'Bearer resource_metadata="http://gw/.well-known/oauth-protected-resource/g"')
    results: List[Any] = []
    Deferred.fromCoroutine(gate.admit(request)).addBoth(results.append)
    (result,) = results  # keyless admission never waits
    if isinstance(result, Failure):
        result.raiseException()
    return result


def test_the_gate_provides_its_interface():
    assert verifyObject(IAdmission, _gate())


def test_an_open_api_needs_no_gate_and_a_guarded_one_does():
    gate = _gate()
    assert not gate.needed(_definition())
    assert gate.needed(_definition(acl=ACL))
    assert gate.needed(_definition(rateLimit={"requests": 1, "periodSeconds": 60}))


def test_an_allowed_call_is_forwarded_as_it_came():
    body = json.dumps(_call("echo")).encode()
    admission = _admit(_gate(), _definition(acl=ACL), body)
    assert admission.answer is None and admission.body is body
    assert admission.forwarded == {("n", 1)} and not admission.denied


def test_a_denied_single_call_is_answered_by_the_gateway():
    admission = _admit(_gate(), _definition(acl=ACL), json.dumps(_call("secret", "a")).encode())
    answer = json.loads(admission.answer)
    assert answer["id"] == "a" and answer["error"]["code"] < 0
    assert admission.denied == [("s", "a")]


def test_a_partly_denied_batch_forwards_the_rest_and_adds_the_errors():
    batch = [_call("echo", 1), _call("secret", 2), {"jsonrpc": "2.0", "method": "notifications/x"}]
    admission = _admit(_gate(), _definition(acl=ACL), json.dumps(batch).encode())
    assert admission.answer is None
    assert json.loads(admission.body) == [batch[0], batch[2]]
    assert [e["id"] for e in admission.extra] == [2]
    assert admission.rewrites


def test_the_gate_judges_the_parse_it_is_given_not_the_bytes():
    # the resource parses once; the gate never reads the body again
    body = json.dumps(_call("echo")).encode()
    admission = _admit(_gate(), _definition(acl=ACL), body,
                       parsed=parse(json.dumps(_call("secret")).encode()))
    assert admission.answer is not None and admission.denied == [("n", 1)]


def test_list_requests_are_marked_for_filtering_under_rules():
    body = b'{"jsonrpc":"2.0","id":1.0,"method":"tools/list"}'
    admission = _admit(_gate(), _definition(acl=ACL), body)
    assert admission.lists == {("n", 1): "tools/list"}
    judge = admission.judge()
    result = {"tools": [{"name": "echo"}, {"name": "secret"}]}
    filtered = judge.judge(classify({"jsonrpc": "2.0", "id": 1, "result": result}))
    assert [t["name"] for t in filtered["result"]["tools"]] == ["echo"]


@pytest.mark.parametrize("headers, problem", [
    ({b"mcp-method": [b"tools/list"]}, "Mcp-Method"),
    ({b"mcp-name": [b"other"]}, "Mcp-Name"),
    ({b"mcp-name": [b"=?base64?!!?="]}, "malformed"),
])
def test_routing_headers_that_disagree_with_the_body_are_refused(headers, problem):
    body = json.dumps(_call("echo", 9)).encode()
    with pytest.raises(Refusal) as refused:
        _admit(_gate(), _definition(acl=ACL), body, Headers(headers))
    assert refused.value.status == 400 and refused.value.code == -32020
    assert refused.value.id == 9 and problem in refused.value.message


def test_routing_headers_that_agree_pass():
    body = json.dumps(_call("echo")).encode()
    headers = Headers({b"mcp-method": [b"tools/call"], b"mcp-name": [b"=?base64?ZWNobw==?="]})
    assert _admit(_gate(), _definition(acl=ACL), body, headers).answer is None


def test_a_rate_limited_request_is_refused_with_retry_after_and_its_id():
    clock = Clock()
    gate = _gate(clock)
    definition = _definition(rateLimit={"requests": 1, "periodSeconds": 60})
    _admit(gate, definition, json.dumps(_call("echo", 1)).encode())
    with pytest.raises(Refusal) as refused:
        _admit(gate, definition, json.dumps(_call("echo", 2)).encode())
    assert refused.value.status == 429 and refused.value.id == 2
    assert (b"retry-after", b"60") in refused.value.headers()
    clock.advance(60)
    assert _admit(gate, definition, json.dumps(_call("echo", 3)).encode()).answer is None


def test_an_api_key_plan_refuses_a_request_without_one():
    definition = parse_definition({
        "name": "Keyed", "version": "1", "contextPath": "/k", "backend": "http://127.0.0.1:1/mcp",
        "plans": [{"name": "Gold", "security": "API_KEY"}]})
    with pytest.raises(Refusal) as refused:
        _admit(_gate(), definition, json.dumps(_call("echo")).encode())
    assert refused.value.status == 401 and refused.value.outcome == "unauthorized"
