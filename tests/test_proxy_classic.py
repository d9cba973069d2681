"""
2026-07-28 clients bridged to handshake-era backends through a real daemon
(L{mcpgated.proxy.classic}): the official SDK client, which speaks
2026-07-28, and raw HTTP, in front of server-everything (2025-11-25).
"""

from __future__ import annotations

import json
import time
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, Dict, List, Tuple
from urllib.parse import urlsplit

import anyio
import pytest
from mcp import Client
from mcp_types import ElicitResult

from mcpgated.mcp.messages import classify
from mcpgated.mcp.responses import DROP
from mcpgated.proxy.classic import ClassicJudge
from tests.support import BIN, Proc, deploy, http, subscribe_key

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
TO_CLASSIC = {"clientVersions": ["2026-07-28"], "backendVersion": "2025-11-25"}
META = "io.modelcontextprotocol/"


def _modern(method: str, params: Any = None, id: int = 7,
            meta: Any = None) -> Tuple[Dict[str, Any], Dict[str, str]]:
    body = {"jsonrpc": "2.0", "id": id, "method": method, "params": dict(params or {}, _meta=dict({
        META + "protocolVersion": "2026-07-28", META + "clientCapabilities": {},
        META + "clientInfo": {"name": "raw-test", "version": "1"}}, **(meta or {})))}
    headers = dict(ACCEPT, **{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method})
    named = (params or {}).get("uri" if method == "resources/read" else "name")
    if method in ("tools/call", "prompts/get", "resources/read") and named is not None:
        headers["Mcp-Name"] = named
    return body, headers


def _messages(body: bytes) -> list:
    text = body.decode()
    if text.lstrip().startswith("{"):
        return [json.loads(text)]
    return [json.loads(line[5:]) for line in text.splitlines()
            if line.startswith("data:") and line[5:].strip()]


async def _sdk(url: str) -> Dict[str, Any]:
    seen: Dict[str, Any] = {}
    async with Client(url) as client:
        seen["protocol"] = client.protocol_version
        seen["server"] = client.server_info.name if client.server_info else None
        tools = [t.name for t in (await client.list_tools()).tools]
        seen["echo_listed"] = "echo" in tools
        seen["echo"] = (await client.call_tool("echo", {"message": "bridged"})).content[0].text
    return seen


def test_sdk_client_speaks_2026_to_a_handshake_backend(daemon, everything):
    deploy(daemon, "/classic", f"http://127.0.0.1:{everything}/mcp", protocol=TO_CLASSIC)
    seen = anyio.run(_sdk, daemon.gateway + "/classic")
    assert seen == {"protocol": "2026-07-28", "server": "mcp-servers/everything",
                    "echo_listed": True, "echo": "Echo: bridged"}


def test_raw_discover_and_call(daemon, everything):
    deploy(daemon, "/classic", f"http://127.0.0.1:{everything}/mcp", protocol=TO_CLASSIC)
    url = daemon.gateway + "/classic"
    body, headers = _modern("server/discover")
    status, headers_out, answer = http("POST", url, body, headers)
    assert status == 200, answer
    result = _messages(answer)[-1]["result"]
    assert result["supportedVersions"] == ["2026-07-28"]
    assert result["resultType"] == "complete"
    assert "tools" in result["capabilities"]
    assert result["_meta"][META + "serverInfo"]["name"] == "mcp-servers/everything"
    assert "mcp-session-id" not in headers_out
    body, headers = _modern("tools/list")
    status, headers_out, answer = http("POST", url, body, headers)
    assert status == 200, answer
    listed = _messages(answer)[-1]
    assert listed["id"] == 7
    assert listed["result"]["resultType"] == "complete"
    assert listed["result"]["cacheScope"] == "private" and listed["result"]["ttlMs"] == 0
    assert "mcp-session-id" not in headers_out


# --- the scripted backend: what the backend saw -----------------------------------------------

def start_classic() -> Tuple[Proc, str]:
    """
    The scripted 2025-11-25 backend (tests/classic_backend.py) started: the
    process and its base URL (C{/mcp}, C{/state}, C{/expire}).
    """
    proc = Proc([str(BIN / "python"), str(Path(__file__).parent / "classic_backend.py")])
    port = int(proc.wait_for(r"listening on (\d+)").group(1))
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture
def classic(tmp_path):
    proc, url = start_classic()
    yield url
    proc.stop()


def _call(url: str, tool: str, id: int = 7, **meta: Any) -> List[Dict[str, Any]]:
    body, headers = _modern("tools/call", {"name": tool, "arguments": {}}, id, meta)
    status, _, answer = http("POST", url, body, headers)
    assert status == 200, answer
    return _messages(answer)


def _whoami(url: str, **meta: Any) -> Dict[str, Any]:
    result = _call(url, "whoami", **meta)[-1]["result"]
    assert result["resultType"] == "complete"
    return json.loads(result["content"][0]["text"])


def _state(classic: str) -> Dict[str, Any]:
    status, _, answer = http("GET", classic + "/state")
    assert status == 200
    return json.loads(answer)


def test_one_backend_session_per_identity_carrying_what_meta_said(daemon, classic):
    deploy(daemon, "/classic", classic + "/mcp", protocol=TO_CLASSIC)
    url = daemon.gateway + "/classic"
    first = _whoami(url)
    # the session was opened as the 2026-07-28 client described itself
    assert first["clientInfo"] == {"name": "raw-test", "version": "1"}
    assert first["capabilities"] == {} and first["initialized"] is True
    assert first["protocol"] == "2025-11-25"
    # the _meta members the session carries are not sent again; the client's own are
    assert first["meta"] is None
    assert _whoami(url, progressToken="p1")["meta"] == {"progressToken": "p1"}
    again = _whoami(url)
    assert again["session"] == first["session"] and again["initializes"] == 1
    # another capability set, another client: sessions of their own
    sampling = _whoami(url, **{META + "clientCapabilities": {"sampling": {}}})
    other = _whoami(url, **{META + "clientInfo": {"name": "other", "version": "2"}})
    assert len({first["session"], sampling["session"], other["session"]}) == 3
    assert sampling["capabilities"] == {"sampling": {}}
    assert other["clientInfo"] == {"name": "other", "version": "2"}
    assert _state(classic)["initializes"] == 3


def test_an_expired_backend_session_is_opened_again(daemon, classic):
    deploy(daemon, "/classic", classic + "/mcp", protocol=TO_CLASSIC)
    url = daemon.gateway + "/classic"
    before = _whoami(url)
    status, _, _ = http("POST", classic + "/expire")
    assert status == 200
    after = _whoami(url)  # the backend said 404: a new session, the request sent again
    assert after["session"] != before["session"] and after["initializes"] == 2


def test_log_messages_only_for_requests_that_set_a_level(daemon, classic):
    deploy(daemon, "/classic", classic + "/mcp", protocol=TO_CLASSIC)
    url = daemon.gateway + "/classic"
    quiet = _call(url, "log")
    assert [m.get("method") for m in quiet] == ["notifications/progress", None]
    assert quiet[-1]["result"]["content"][0]["text"] == "logged"
    loud = _call(url, "log", **{META + "logLevel": "info"})
    assert [m.get("method") for m in loud] == ["notifications/message", "notifications/progress",
                                               None]
    # the level was set on a session of its own
    assert _whoami(url, **{META + "logLevel": "info"})["level"] == "info"
    assert _whoami(url)["level"] is None


def test_an_input_request_the_client_cannot_answer_gets_an_answer_not_a_hang(daemon, classic):
    deploy(daemon, "/classic", classic + "/mcp", protocol=TO_CLASSIC)
    messages = _call(daemon.gateway + "/classic", "ask")  # no elicitation capability declared
    # the client never sees the backend's request; the backend got the gateway's error
    assert [m.get("method") for m in messages] == [None]
    answer = json.loads(messages[0]["result"]["content"][0]["text"])
    assert answer["error"]["code"] == -32601
    assert "elicitation/create cannot be bridged" in answer["error"]["message"]


ASKING = {META + "clientCapabilities": {"elicitation": {}}}


def test_an_input_request_becomes_input_required_and_the_retry_carries_the_answer(daemon, classic):
    api = deploy(daemon, "/classic", classic + "/mcp", protocol=TO_CLASSIC)
    url = daemon.gateway + "/classic"
    first = _call(url, "ask", id=7, **ASKING)
    assert len(first) == 1 and first[0]["id"] == 7
    result = first[0]["result"]
    assert result["resultType"] == "input_required"
    [(key, asked)] = result["inputRequests"].items()
    assert asked["method"] == "elicitation/create"
    assert asked["params"]["message"] == "Your name?"
    state = result["requestState"]
    # the retry: the same call, a new id, the answer and the state
    body, headers = _modern("tools/call", {"name": "ask", "arguments": {}, "requestState": state,
                                           "inputResponses": {key: {"action": "accept",
                                                                    "content": {"name": "Ada"}}}},
                            8, ASKING)
    status, _, answer = http("POST", url, body, headers)
    assert status == 200, answer
    final = _messages(answer)
    assert [m["id"] for m in final] == [8]
    assert final[0]["result"]["resultType"] == "complete"
    got = json.loads(final[0]["result"]["content"][0]["text"])
    assert got["result"] == {"action": "accept", "content": {"name": "Ada"}}
    # the state was used: a second retry with it is refused, clearly
    status, _, answer = http("POST", url, body, headers)
    assert status == 400 and json.loads(answer)["error"]["code"] == -32602
    # the exchange log: the call answered input_required, its retry answered in full
    daemon.stop()  # the records written
    daemon.start()
    status, page = daemon.admin("GET", f"/apis/{api['id']}/logs?tool=ask")
    assert status == 200
    answered = sorted((r["jsonrpcId"], r["outcome"]) for r in page["data"])
    assert answered == [("7", "result"), ("8", "error"), ("8", "result")], answered
    assert {r["backendVersion"] for r in page["data"]} == {"2025-11-25"}


def test_input_required_state_belongs_to_its_client(daemon, classic):
    deploy(daemon, "/classic", classic + "/mcp", protocol=TO_CLASSIC)
    url = daemon.gateway + "/classic"
    result = _call(url, "ask", **ASKING)[0]["result"]
    other = {META + "clientCapabilities": {"elicitation": {}},
             META + "clientInfo": {"name": "someone-else", "version": "1"}}
    body, headers = _modern("tools/call", {"name": "ask", "requestState": result["requestState"],
                                           "inputResponses": {}}, 9, other)
    status, _, answer = http("POST", url, body, headers)
    assert status == 400 and json.loads(answer)["error"]["code"] == -32602


async def _elicited(url: str) -> str:
    async def elicit(context: Any, params: Any) -> Any:
        return ElicitResult(action="accept", content={"name": "Ada", "check": True})

    async with Client(url, elicitation_callback=elicit) as client:
        assert client.protocol_version == "2026-07-28"
        names = [t.name for t in (await client.list_tools()).tools]
        assert "trigger-elicitation-request" in names  # server-everything saw the capability
        result = await client.call_tool("trigger-elicitation-request", {})
        return "\n".join(c.text for c in result.content if hasattr(c, "text"))


def test_sdk_client_answers_server_everythings_elicitation_through_the_bridge(daemon, everything):
    deploy(daemon, "/classic", f"http://127.0.0.1:{everything}/mcp", protocol=TO_CLASSIC)
    text = anyio.run(_elicited, daemon.gateway + "/classic")
    assert "Ada" in text and "accept" in text


def test_results_and_errors_in_2026_terms(daemon, classic):
    deploy(daemon, "/classic", classic + "/mcp", protocol=TO_CLASSIC)
    url = daemon.gateway + "/classic"
    body, headers = _modern("resources/read", {"uri": "file:///nowhere"})
    status, _, answer = http("POST", url, body, headers)
    assert status == 200
    assert _messages(answer)[0]["error"]["code"] == -32602  # resource not found since 2026-07-28
    body, headers = _modern("tools/list")
    status, _, answer = http("POST", url, body, headers)
    result = _messages(answer)[0]["result"]
    assert result["_meta"][META + "serverInfo"] == {"name": "classic-test", "version": "1.0"}
    assert (result["resultType"], result["ttlMs"], result["cacheScope"]) == ("complete", 0, "private")
    body, headers = _modern("server/discover")
    status, _, answer = http("POST", url, body, headers)
    assert _messages(answer)[0]["result"]["instructions"] == "A scripted backend."


def test_what_2026_07_28_has_no_place_for_is_refused_clearly(daemon, classic):
    deploy(daemon, "/classic", classic + "/mcp", protocol=TO_CLASSIC)
    url = daemon.gateway + "/classic"
    body, headers = _modern("tools/list")
    status, _, answer = http("POST", url, [body], headers)
    assert status == 400 and json.loads(answer)["error"]["code"] == -32600
    notification = {k: v for k, v in body.items() if k != "id"}
    status, _, answer = http("POST", url, notification, headers)
    assert (status, answer) == (202, b"")
    body, headers = _modern("tools/call", {"name": "whoami", "requestState": "forged",
                                           "inputResponses": {}})
    status, _, answer = http("POST", url, body, headers)
    error = json.loads(answer)
    assert status == 400 and error["id"] == 7 and error["error"]["code"] == -32602
    assert _state(classic)["initializes"] == 0  # none of them reached the backend


def test_a_listen_stream_is_the_get_stream_of_a_session_of_its_own(daemon, classic):
    deploy(daemon, "/classic", classic + "/mcp", protocol=TO_CLASSIC)
    url = daemon.gateway + "/classic"
    body, headers = _modern("subscriptions/listen", {"notifications": {
        "toolsListChanged": True, "promptsListChanged": True,
        "resourceSubscriptions": ["file:///watched"]}}, id=41)
    parts = urlsplit(url)
    connection = HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.request("POST", parts.path, json.dumps(body), headers)
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type", "").startswith("text/event-stream")

    def next_message() -> Dict[str, Any]:
        while True:
            line = response.fp.readline().decode()
            assert line, "the stream ended"
            if line.startswith("data:") and line[5:].strip():
                return json.loads(line[5:])

    ack = next_message()
    assert ack["method"] == "notifications/subscriptions/acknowledged"
    # prompts: the backend has no prompts capability, so it is not honoured
    assert ack["params"]["notifications"] == {"toolsListChanged": True,
                                              "resourceSubscriptions": ["file:///watched"]}
    assert ack["params"]["_meta"][META + "subscriptionId"] == 41
    updated = next_message()
    assert updated["method"] == "notifications/resources/updated"
    assert updated["params"]["uri"] == "file:///watched"
    assert updated["params"]["_meta"][META + "subscriptionId"] == 41
    changed = next_message()  # the prompts change in between was not asked for
    assert changed["method"] == "notifications/tools/list_changed"
    assert _state(classic)["sessions"] == 1
    connection.close()
    # the stream's own backend session is closed with it
    deadline = time.monotonic() + 10
    while _state(classic)["deleted"] < 1:
        assert time.monotonic() < deadline, _state(classic)
    assert _state(classic)["sessions"] == 0


async def _listened(url: str) -> Tuple[Any, List[str]]:
    async with Client(url) as client:
        async with client.listen(tools_list_changed=True,
                                 resource_subscriptions=["file:///watched"]) as subscription:
            honored = subscription.honored
            events = []
            async for event in subscription:
                events.append(type(event).__name__)
                if len(events) == 2:
                    break
    return honored, events


def test_sdk_client_listens_through_the_bridge(daemon, classic):
    deploy(daemon, "/classic", classic + "/mcp", protocol=TO_CLASSIC)
    honored, events = anyio.run(_listened, daemon.gateway + "/classic")
    assert honored.tools_list_changed is True
    assert honored.resource_subscriptions == ["file:///watched"]
    assert honored.prompts_list_changed is None  # the backend has no prompts capability
    # the backend's prompts list change in between was not asked for
    assert events == ["ResourceUpdated", "ToolsListChanged"]


def test_a_client_leaving_cancels_the_call_on_the_backend(daemon, classic):
    deploy(daemon, "/classic", classic + "/mcp", protocol=TO_CLASSIC)
    body, headers = _modern("tools/call", {"name": "slow", "arguments": {}}, 31)
    parts = urlsplit(daemon.gateway + "/classic")
    connection = HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.request("POST", parts.path, json.dumps(body), headers)
    response = connection.getresponse()
    assert response.status == 200
    while not response.fp.readline().startswith(b"data:"):  # the call is under way
        pass
    connection.close()
    deadline = time.monotonic() + 10
    while _state(classic)["cancelled"] != [31]:
        assert time.monotonic() < deadline, _state(classic)


# --- load-balanced: a backend session per endpoint ----------------------------------------------

@pytest.fixture
def classic_pair(tmp_path):
    started = [start_classic() for _ in range(2)]
    yield [url for _, url in started]
    for proc, _ in started:
        proc.stop()


def test_endpoints_each_get_their_own_backend_session(daemon, classic_pair):
    deploy(daemon, "/classic-lb", None, protocol=TO_CLASSIC,  # type: ignore[arg-type]
           endpoints=[{"url": url + "/mcp", "weight": 1} for url in classic_pair])
    url = daemon.gateway + "/classic-lb"
    seen = [_whoami(url) for _ in range(6)]
    assert len({s["session"] for s in seen}) == 2  # one per endpoint, each used again
    assert [_state(u)["initializes"] for u in classic_pair] == [1, 1]
    # an input request's retry finds its parked answer, whichever endpoint it would go to
    for id in (50, 60):
        result = _call(url, "ask", id=id, **ASKING)[0]["result"]
        [key] = result["inputRequests"]
        body, headers = _modern("tools/call", {"name": "ask", "requestState": result["requestState"],
                                               "inputResponses": {key: {"action": "decline"}}},
                                id + 1, ASKING)
        status, _, answer = http("POST", url, body, headers)
        assert status == 200, answer
        final = _messages(answer)[-1]
        assert final["id"] == id + 1
        assert json.loads(final["result"]["content"][0]["text"])["result"] == {"action": "decline"}


def test_access_control_limits_and_the_exchange_log_on_bridged_2026_calls(daemon, everything):
    backend = f"http://127.0.0.1:{everything}/mcp"
    guarded = deploy(daemon, "/guarded", backend, protocol=TO_CLASSIC, plans=[
        {"name": "Free", "security": "KEY_LESS", "rateLimit": {"toolCalls": 2, "periodSeconds": 3600},
         "acl": {"rules": [{"tools": ["echo"]}]}}])
    url = daemon.gateway + "/guarded"
    body, headers = _modern("tools/list")
    status, _, answer = http("POST", url, body, headers)
    listed = _messages(answer)[-1]["result"]
    # filtered by the plan's access control, then in 2026-07-28's terms
    assert [t["name"] for t in listed["tools"]] == ["echo"]
    assert listed["resultType"] == "complete" and listed["cacheScope"] == "private"
    body, headers = _modern("tools/call", {"name": "get-sum", "arguments": {"a": 1, "b": 2}}, 1)
    status, _, answer = http("POST", url, body, headers)
    denied = _messages(answer)[-1]
    assert denied["id"] == 1 and "get-sum" in denied["error"]["message"], denied
    body, headers = _modern("tools/call", {"name": "echo", "arguments": {"message": "x"}}, 2)
    status, _, answer = http("POST", url, body, headers)
    assert _messages(answer)[-1]["result"]["content"][0]["text"] == "Echo: x"
    body, headers = _modern("tools/call", {"name": "echo", "arguments": {"message": "x"}}, 3)
    status, _, answer = http("POST", url, body, headers)
    assert status == 429

    daemon.stop()  # the records written
    daemon.start()
    status, page = daemon.admin("GET", f"/apis/{guarded['id']}/logs")
    assert status == 200
    calls = {r["jsonrpcId"]: r for r in page["data"] if r["method"] == "tools/call"}
    assert {k: r["outcome"] for k, r in calls.items()} == {
        "1": "denied", "2": "result", "3": "rate_limited"}
    # each side's version; none for the backend where the gateway refused the call itself
    assert {r["jsonrpcId"]: (r["protocolVersion"], r["backendVersion"]) for r in calls.values()} == {
        "1": ("2026-07-28", None), "2": ("2026-07-28", "2025-11-25"), "3": ("2026-07-28", None)}


def test_input_requests_asked_together_come_in_one_input_required(daemon, classic):
    deploy(daemon, "/classic", classic + "/mcp", protocol=TO_CLASSIC)
    url = daemon.gateway + "/classic"
    result = _call(url, "ask2", **ASKING)[-1]["result"]
    assert result["resultType"] == "input_required"
    asked = result["inputRequests"]
    assert sorted(r["params"]["message"] for r in asked.values()) == ["Question 0?", "Question 1?"]
    answers = {key: {"action": "accept", "content": {"n": index}}
               for index, key in enumerate(asked)}
    body, headers = _modern("tools/call", {"name": "ask2", "requestState": result["requestState"],
                                           "inputResponses": answers}, 8, ASKING)
    status, _, answer = http("POST", url, body, headers)
    got = json.loads(_messages(answer)[-1]["result"]["content"][0]["text"])
    assert sorted(a["result"]["content"]["n"] for a in got) == [0, 1]


def test_answers_without_a_request_state_are_left_out_and_the_backend_asks(daemon, classic):
    deploy(daemon, "/classic", classic + "/mcp", protocol=TO_CLASSIC)
    body, headers = _modern("tools/call", {"name": "ask", "arguments": {},
                                           "inputResponses": {"x": {"action": "accept"}}},
                            7, ASKING)
    status, _, answer = http("POST", daemon.gateway + "/classic", body, headers)
    assert status == 200
    assert _messages(answer)[-1]["result"]["resultType"] == "input_required"


def test_errors_2026_sends_on_another_status_get_it(daemon, classic):
    deploy(daemon, "/classic", classic + "/mcp", protocol=TO_CLASSIC)
    # the backend does not do completions: its -32601 (on its 200) is a 404 in 2026-07-28
    body, headers = _modern("completion/complete", {"ref": {"type": "ref/prompt", "name": "p"},
                                                    "argument": {"name": "a", "value": ""}})
    status, _, answer = http("POST", daemon.gateway + "/classic", body, headers)
    assert status == 404, answer
    assert json.loads(answer)["error"]["code"] == -32601


# --- in memory: the judge of a bridged answer ---------------------------------------------------

def _judge(**kwargs: Any) -> Tuple[ClassicJudge, List[Dict[str, Any]]]:
    told: List[Dict[str, Any]] = []
    defaults: Dict[str, Any] = dict(client_id=7, sent_id=7)
    defaults.update(kwargs)
    return ClassicJudge("tools/call", {"name": "s", "version": "1"}, False, told.append,
                        **defaults), told


def test_the_judge_turns_input_requests_into_one_input_required_and_resumes():
    judge, told = _judge(can_answer=frozenset({"elicitation/create"}))
    asked = [classify({"jsonrpc": "2.0", "id": f"q{n}", "method": "elicitation/create",
                       "params": {"message": str(n)}}) for n in range(2)]
    assert judge.parking() is None
    assert [judge.judge(m) for m in asked] == [DROP, DROP]
    progress = classify({"jsonrpc": "2.0", "method": "notifications/progress", "params": {}})
    assert judge.judge(progress) is DROP  # held for the retry
    event = judge.parking()
    assert event is not None and told == []
    answer = json.loads(event.split(b"data: ", 1)[1])
    assert answer["id"] == 7 and answer["result"]["resultType"] == "input_required"
    assert answer["result"]["inputRequests"] == {
        "q0": {"method": "elicitation/create", "params": {"message": "0"}},
        "q1": {"method": "elicitation/create", "params": {"message": "1"}}}
    assert answer["result"]["requestState"] == judge.token and judge.asked == {"q0": "q0", "q1": "q1"}
    assert judge.parking() is None  # said once
    # the retry (id 8): the held progress, then the answer under the retry's id
    assert b"notifications/progress" in judge.resume(8)
    final = judge.judge(classify({"jsonrpc": "2.0", "id": 7, "result": {"content": []}}))
    assert final["id"] == 8 and final["result"]["resultType"] == "complete"


def test_the_judge_answers_what_the_client_cannot_and_drops_unasked_logs():
    judge, told = _judge()
    for method in ("sampling/createMessage", "roots/list", "ping"):
        assert judge.judge(classify({"jsonrpc": "2.0", "id": method, "method": method})) is DROP
    assert [("error" in t, t.get("result")) for t in told] == [
        (True, None), (False, {"roots": []}), (False, {})]
    log = classify({"jsonrpc": "2.0", "method": "notifications/message", "params": {}})
    assert judge.judge(log) is DROP
    error = judge.judge(classify({"jsonrpc": "2.0", "id": 7,
                                  "error": {"code": -32601, "message": "no"}}))
    assert error is None and judge.status == 404


def test_callers_never_share_a_backend_session_nor_a_parked_answer(daemon, classic):
    api = deploy(daemon, "/keyed", classic + "/mcp", protocol=TO_CLASSIC,
                 plans=[{"name": "Gold", "security": "API_KEY"}])
    url = daemon.gateway + "/keyed"
    keys = [subscribe_key(daemon, api["id"], "Gold", name)[1]["key"] for name in ("ann", "bob")]

    def whoami(key: str) -> Dict[str, Any]:
        body, headers = _modern("tools/call", {"name": "whoami", "arguments": {}})
        status, _, answer = http("POST", url, body, dict(headers, **{"X-Gravitee-Api-Key": key}))
        assert status == 200, answer
        return json.loads(_messages(answer)[-1]["result"]["content"][0]["text"])

    ann, bob = whoami(keys[0]), whoami(keys[1])
    # the same client info and capabilities, but two callers: two backend sessions
    assert ann["session"] != bob["session"]
    assert whoami(keys[0])["session"] == ann["session"]
    # Bob cannot go on with Ann's parked answer, even with its requestState
    body, headers = _modern("tools/call", {"name": "ask", "arguments": {}}, 7, ASKING)
    status, _, answer = http("POST", url, body, dict(headers, **{"X-Gravitee-Api-Key": keys[0]}))
    state = _messages(answer)[-1]["result"]["requestState"]
    body, headers = _modern("tools/call", {"name": "ask", "arguments": {}, "requestState": state,
                                           "inputResponses": {}}, 8, ASKING)
    status, _, answer = http("POST", url, body, dict(headers, **{"X-Gravitee-Api-Key": keys[1]}))
    assert status == 400 and json.loads(answer)["error"]["code"] == -32602
