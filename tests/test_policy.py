"""
Access-control rules, list filtering (JSON and SSE, any chunking) and rate
limits with an injected clock.
"""

from __future__ import annotations

import json
from typing import List

import pytest
from hypothesis import given, strategies as st
from twisted.internet.task import Clock

from mcpgated.policy.acl import Caller, PolicyError, parse_policy
from mcpgated.policy.ratelimit import Limiter, RateLimit, parse_limit
from tests.exchange_driver import events_judged, json_judged

POLICY = parse_policy({"rules": [
    {"tools": ["echo", "get-*"], "plans": ["Gold"]},
    {"tools": ["echo"]},
    {"resources": ["demo://static/*"],
     "methods": ["resources/read", "resources/list", "resources/templates/list"]},
    {"prompts": ["simple"], "scopes": ["prompts:read"]},
    {"methods": ["completion/complete"], "claims": {"role": "admin"}},
]})
FREE, GOLD = Caller(plan="Free"), Caller(plan="Gold")


def test_calls_are_allowed_only_by_a_matching_rule():
    assert POLICY.decide("tools/call", "echo", FREE).allowed
    assert not POLICY.decide("tools/call", "get-sum", FREE).allowed
    assert POLICY.decide("tools/call", "get-sum", GOLD).allowed
    denied = POLICY.decide("tools/call", "ECHO", FREE)
    assert (denied.allowed, denied.code, denied.message) == (False, -32602, "Unknown tool: ECHO")
    assert POLICY.decide("resources/read", "demo://static/a", FREE).allowed
    assert not POLICY.decide("resources/subscribe", "demo://static/a", FREE).allowed  # method not covered
    assert not POLICY.decide("prompts/get", "simple", FREE).allowed
    assert POLICY.decide("prompts/get", "simple", Caller(scopes=frozenset({"prompts:read", "x"}))).allowed
    assert not POLICY.decide("completion/complete", None, FREE).allowed
    assert POLICY.decide("completion/complete", None, Caller(claims={"role": ["user", "admin"]})).allowed
    # plumbing and notifications are never in the way
    for method in ("initialize", "ping", "notifications/initialized", "server/discover"):
        assert POLICY.decide(method, None, FREE).allowed
    # no rules: no policy
    assert parse_policy(None).decide("tools/call", "anything", FREE).allowed


def test_list_filtering_keeps_cursor_and_privatises_cache():
    result = {"tools": [{"name": "echo"}, {"name": "get-sum"}, {"name": "secret"}, "junk"],
              "nextCursor": "c2", "ttlMs": 1000, "cacheScope": "public"}
    filtered, removed = POLICY.filter_result("tools/list", result, FREE)
    assert filtered == {"tools": [{"name": "echo"}], "nextCursor": "c2", "ttlMs": 1000,
                        "cacheScope": "private"}
    assert removed == 3
    gold, _ = POLICY.filter_result("tools/list", result, GOLD)
    assert [t["name"] for t in gold["tools"]] == ["echo", "get-sum"]
    templates, _ = POLICY.filter_result("resources/templates/list", {"resourceTemplates": [
        {"uriTemplate": "demo://static/{id}"}, {"uriTemplate": "file:///{path}"}]}, FREE)
    assert templates == {"resourceTemplates": [{"uriTemplate": "demo://static/{id}"}]}


def test_bad_rules_name_the_field():
    for raw, field in [({"rules": [{"tools": "echo"}]}, "acl.rules[0].tools"),
                       ({"rules": [{"plans": ["a"]}]}, "acl.rules[0]"),
                       ({"rules": [{"tools": ["x"], "toolz": ["y"]}]}, "acl.rules[0].toolz"),
                       ({"dryRun": "yes"}, "acl.dryRun")]:
        with pytest.raises(PolicyError) as e:
            parse_policy(raw)
        assert e.value.field == field


def test_deny_wins_over_allow_for_calls_and_lists():
    policy = parse_policy({"rules": [
        {"tools": ["get-*", "echo"]},
        {"deny": True, "tools": ["get-env"]},
        {"deny": True, "tools": ["echo"], "plans": ["Free"]},
    ]})
    assert policy.decide("tools/call", "get-sum", FREE).allowed
    denied = policy.decide("tools/call", "get-env", GOLD)
    assert (denied.allowed, denied.code, denied.message) == (False, -32602, "Unknown tool: get-env")
    assert not policy.decide("tools/call", "echo", FREE).allowed  # deny applies to Free only
    assert policy.decide("tools/call", "echo", GOLD).allowed
    result = {"tools": [{"name": "echo"}, {"name": "get-env"}, {"name": "get-sum"}, {"name": "x"}]}
    assert [t["name"] for t in policy.filter_result("tools/list", result, GOLD)[0]["tools"]] == [
        "echo", "get-sum"]
    assert [t["name"] for t in policy.filter_result("tools/list", result, FREE)[0]["tools"]] == [
        "get-sum"]


def test_kinds_no_allow_rule_names_stay_open():
    tools_only = parse_policy({"rules": [{"tools": ["echo"]}]})
    resources = {"resources": [{"uri": "demo://a"}, {"uri": "file:///etc/passwd"}]}
    prompts = {"prompts": [{"name": "simple"}, {"name": "complex"}]}
    assert tools_only.filter_result("resources/list", resources, FREE) == (resources, 0)
    assert tools_only.filter_result("prompts/list", prompts, FREE) == (prompts, 0)
    assert tools_only.decide("resources/read", "demo://a", FREE).allowed
    assert tools_only.decide("prompts/get", "complex", FREE).allowed
    assert tools_only.decide("completion/complete", None, FREE).allowed
    assert tools_only.decide("tasks/get", None, FREE).allowed
    assert not tools_only.decide("tools/call", "add", FREE).allowed
    # an allow rule for Gold only still closes tools for everyone else
    gold_only = parse_policy({"rules": [{"tools": ["echo"], "plans": ["Gold"]}]})
    assert not gold_only.decide("tools/call", "echo", FREE).allowed
    assert gold_only.filter_result("tools/list", {"tools": [{"name": "echo"}]}, FREE)[0] == {"tools": []}
    assert gold_only.decide("prompts/get", "complex", FREE).allowed


def test_hide_one_tool_with_a_deny_rule_alone():
    hide = parse_policy({"rules": [{"deny": True, "tools": ["get-env"]}]})
    assert hide.active and hide.closed == frozenset()
    for name in ("echo", "add", "get-envy", "get-en"):
        assert hide.decide("tools/call", name, FREE).allowed, name
    # case, width and compatibility forms of the name are denied too: some backends fold them
    for name in ("get-env", "GET-ENV", "Get-Env", "ｇｅｔ－ｅｎｖ"):
        assert not hide.visible("tools/list", name, FREE), name
    for name in ("get-env", "GET-ENV", "ｇｅｔ－ｅｎｖ"):
        assert not hide.decide("tools/call", name, FREE).allowed, name
    # a target that is not a string (["get-env"], a JavaScript server may stringify it) is denied
    assert not hide.decide("tools/call", None, FREE).allowed
    assert not hide.visible("tools/list", ["get-env"], FREE)
    assert hide.decide("completion/complete", None, FREE).allowed
    assert hide.decide("resources/read", "demo://x", FREE).allowed


def test_deny_globs_and_methods():
    policy = parse_policy({"rules": [
        {"deny": True, "tools": ["admin-*", "*-danger"]},
        {"deny": True, "resources": ["file:///*"], "methods": ["resources/read"]},
        {"deny": True, "methods": ["completion/complete", "prompts/list"]},
    ]})
    assert not policy.decide("tools/call", "ADMIN-reset", FREE).allowed
    assert not policy.decide("tools/call", "very-DANGER", FREE).allowed
    assert policy.decide("tools/call", "administer", FREE).allowed
    assert not policy.decide("resources/read", "FILE:///etc/passwd", FREE).allowed
    # the resource rule covers reads only: listing still shows the item
    assert policy.visible("resources/list", "file:///etc/passwd", FREE)
    assert policy.decide("completion/complete", None, FREE).code == -32601
    assert policy.decide("prompts/list", None, FREE).code == -32601
    assert policy.decide("tools/list", None, FREE).allowed
    assert policy.decide("ping", None, FREE).allowed


def test_deny_rules_parse_and_round_trip():
    raw = {"rules": [{"deny": True, "tools": ["x"], "plans": ["Free"]}, {"tools": ["y"]}], "dryRun": True}
    policy = parse_policy(raw)
    assert policy.to_json() == raw
    assert parse_policy(policy.to_json()) == policy
    for bad, field, message in [
            ({"rules": [{"deny": "yes", "tools": ["x"]}]}, "acl.rules[0].deny", "true or false"),
            ({"rules": [{"deny": True, "plans": ["Free"]}]}, "acl.rules[0]", "denies nothing")]:
        with pytest.raises(PolicyError) as e:
            parse_policy(bad)
        assert e.value.field == field and message in e.value.message


def _apply(method, result):
    return POLICY.filter_result(method, result, FREE)[0]


LIST_ANSWER = {"jsonrpc": "2.0", "id": 4, "result": {
    "tools": [{"name": "echo", "description": "line1\nline2"}, {"name": "get-env"}], "nextCursor": "n"}}
PROGRESS = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}}


def _sse(messages, end=b"\n") -> bytes:
    return b"".join(b"id: " + str(i).encode() + end + b"data: " + json.dumps(m).encode() + end + end
                    for i, m in enumerate(messages))


def _events(raw: bytes) -> List[dict]:
    text = raw.decode().replace("\r\n", "\n").replace("\r", "\n")
    return [json.loads(line[5:]) for line in text.split("\n") if line.startswith("data:")]


@given(st.lists(st.integers(1, 400), max_size=10), st.sampled_from([b"\n", b"\r\n", b"\r"]))
def test_sse_list_answers_are_filtered_under_any_chunking(cuts, end):
    stream = _sse([PROGRESS, LIST_ANSWER], end)
    rewriter = events_judged({("n", 4): "tools/list"}, _apply, [])
    points = sorted(set(c % (len(stream) + 1) for c in cuts))
    out, start = b"", 0
    for point in points + [len(stream)]:
        out += rewriter.feed(stream[start:point])
        start = point
    out += rewriter.flush()
    progress, answer = _events(out)
    assert progress == PROGRESS
    assert [t["name"] for t in answer["result"]["tools"]] == ["echo"]
    assert answer["result"]["nextCursor"] == "n"
    assert out.count(b"id: ") == 2  # event ids kept


def test_other_events_pass_byte_for_byte():
    stream = b": keepalive\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"tools\":[]}}\n\n"
    # id 9: another request forwarded in the same exchange
    rewriter = events_judged({("n", 4): "tools/list"}, _apply, [], forwarded={("n", 9)})
    assert rewriter.feed(stream) + rewriter.flush() == stream


def test_json_batch_answers_gain_denied_errors():
    denied = {"jsonrpc": "2.0", "id": 2, "error": {"code": -32602, "message": "Unknown tool: x"}}
    rewriter = json_judged({("n", 4): "tools/list"}, _apply, [denied], batch=True)
    body = json.dumps([LIST_ANSWER]).encode()
    assert rewriter.feed(body[:10]) == b"" and rewriter.feed(body[10:]) == b""
    answer = json.loads(rewriter.flush())
    assert [t["name"] for t in answer[0]["result"]["tools"]] == ["echo"]
    assert answer[1] == denied


def test_rate_limit_counts_resets_and_tells_when():
    clock = Clock()
    clock.advance(1000)
    limiter = Limiter(clock)
    limit = parse_limit({"requests": 3, "toolCalls": 2, "perTool": {"slow": 1}, "periodSeconds": 60},
                        "rateLimit")
    assert limiter.check(limit, "sub:a", "tools/call", "slow") is None
    assert limiter.check(limit, "sub:a", "tools/call", "slow") == pytest.approx(20.0)  # per tool
    assert limiter.check(limit, "sub:a", "tools/call", "echo") is None
    assert limiter.check(limit, "sub:a", "tools/call", "echo") is not None       # tool calls
    assert limiter.check(limit, "sub:a", "tools/list", None) is None
    wait = limiter.check(limit, "sub:a", "tools/list", None)                      # requests
    assert wait == pytest.approx(20.0)
    assert limiter.check(limit, "sub:b", "tools/list", None) is None  # others have their own
    clock.advance(wait)
    assert limiter.check(limit, "sub:a", "tools/call", "slow") is None  # a new window
    assert len(limiter._counts) <= 4  # old windows forgotten


def test_rate_limit_settings_are_validated():
    assert parse_limit(None, "rateLimit") is None
    assert parse_limit({"requests": 10}, "rateLimit") == RateLimit(requests=10)
    from mcpgated.policy.ratelimit import LimitError

    for raw, field in [({"requests": -1}, "rateLimit.requests"), ({"periodSeconds": 0}, "rateLimit.periodSeconds"),
                       ({"scope": "world"}, "rateLimit.scope"), ({"burst": 1}, "rateLimit.burst")]:
        with pytest.raises(LimitError) as e:
            parse_limit(raw, "rateLimit")
        assert e.value.field == field
