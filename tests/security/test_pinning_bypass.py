"""
Tool-definition pinning (block mode) cannot be bypassed by naming a blocked
tool or prompt another way: the gateway refuses every call whose name no
list result showed (case, width, invisible and look-alike characters,
trailing spaces), whose name is not a string (a JavaScript server reads
C{tools[123]} as C{tools["123"]}), alone or in a 2025-03-26 batch, from a
session that never listed, with JSON and SSE answers; a name that is
pinned and unchanged still works.

The backend is the official SDK server of tests/pin_server.py, behind the
real daemon; requests are raw JSON-RPC over HTTP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from tests.support import Daemon, http, messages_of
from tests.pin_support import Backend, deploy_pinned

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
BLOCKED = "is blocked by the gateway"


@pytest.fixture(params=["sse", "json"])
def backend(request: Any, tmp_path: Path) -> Iterator[Backend]:
    server = Backend(tmp_path, *(["--json"] if request.param == "json" else []))
    yield server
    server.proc.stop()


class Session:
    def __init__(self, daemon: Daemon, version: str = "2025-06-18") -> None:
        self.url = daemon.gateway + "/pinned"
        status, headers, raw = http("POST", self.url, {
            "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": version, "capabilities": {},
                "clientInfo": {"name": "raw", "version": "1"}}}, headers=ACCEPT)
        assert status == 200, raw
        self.headers = dict(ACCEPT, **{"Mcp-Session-Id": headers["mcp-session-id"],
                                       "MCP-Protocol-Version": version})
        self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def post(self, body: Any) -> List[Dict[str, Any]]:
        status, _, raw = http("POST", self.url, body, headers=self.headers)
        assert status in (200, 202), raw
        return messages_of(raw) if raw else []

    def tools(self) -> List[str]:
        (answer,) = self.post({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        return [tool["name"] for tool in answer["result"]["tools"]]

    def call(self, name: Any, method: str = "tools/call") -> Dict[str, Any]:
        arguments = {"a": 1, "b": 2} if method == "tools/call" else {"who": "x"}
        (answer,) = self.post({"jsonrpc": "2.0", "id": 2, "method": method,
                               "params": {"name": name, "arguments": arguments}})
        return answer


VARIANTS = ["ADD", "Add", "add ", " add", "ａｄｄ", "add\u200b", "\u0430dd", "add\x00", "ad\u0064\u0301"]


@pytest.fixture
def drifted(daemon: Daemon, backend: Backend) -> Daemon:
    deploy_pinned(daemon, backend, {"mode": "block"})
    session = Session(daemon)
    assert session.tools() == ["add", "echo", "switch"]
    session.post({"jsonrpc": "2.0", "id": 3, "method": "prompts/list"})
    backend.switch("v2")
    assert session.tools() == ["echo", "switch"]  # add changed: blocked
    session.post({"jsonrpc": "2.0", "id": 4, "method": "prompts/list"})
    return daemon


@pytest.mark.parametrize("name", VARIANTS)
def test_a_blocked_tool_named_another_way_is_refused(drifted: Daemon, name: str) -> None:
    answer = Session(drifted).call(name)  # a session that never listed
    assert answer["error"]["code"] == -32602
    assert BLOCKED in answer["error"]["message"] and "no list result has shown it" in \
        answer["error"]["message"]


@pytest.mark.parametrize("name", [1, None, ["add"], {"name": "add"}, True])
def test_a_name_that_is_not_a_string_is_refused(drifted: Daemon, name: Any) -> None:
    answer = Session(drifted).call(name)
    assert answer["error"] == {"code": -32602, "message": "Tool call blocked by the gateway: "
                                                          "its name is not a string (pinning)"}


@pytest.mark.parametrize("name", ["GREET", "greet ", "ｇｒｅｅｔ"])
def test_a_blocked_prompt_named_another_way_is_refused(drifted: Daemon, name: str) -> None:
    answer = Session(drifted).call(name, "prompts/get")
    assert BLOCKED in answer["error"]["message"]


def test_in_a_batch_every_element_is_judged(drifted: Daemon) -> None:
    # the SDK server takes no batches: these never reach it, the gateway answers all
    session = Session(drifted, "2025-03-26")
    answers = {m["id"]: m for m in session.post([
        {"jsonrpc": "2.0", "id": 10, "method": "tools/call",
         "params": {"name": "ADD", "arguments": {"a": 1, "b": 2}}},
        {"jsonrpc": "2.0", "id": 11, "method": "tools/call",
         "params": {"name": 7, "arguments": {"a": 1, "b": 2}}},
        {"jsonrpc": "2.0", "id": 12, "method": "tools/call",
         "params": {"name": "add", "arguments": {"a": 1, "b": 2}}},
    ])}
    assert "no list result has shown it" in answers[10]["error"]["message"]
    assert "not a string" in answers[11]["error"]["message"]
    assert "changed since it was approved" in answers[12]["error"]["message"]


def test_pinned_unchanged_names_still_work(drifted: Daemon) -> None:
    answer = Session(drifted).call("echo")
    assert "result" in answer, answer
