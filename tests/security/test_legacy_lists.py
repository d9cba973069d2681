"""
Access control on the legacy HTTP+SSE transport (2024-11-05): the POST of
a C{tools/list} gets 202 and its answer arrives on the GET stream, which no
request id of the POST's exchange reaches. The GET stream's list answers
are judged by shape, with the stream's own caller and rules, so a client
never reads there what the rules hide (before: every tool of the backend).
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, Tuple

import pytest

from tests.security.judge_support import Legacy, start_daemon, stop_daemon
from tests.support import Daemon, deploy

GET_SUM_ONLY = {"rules": [{"tools": ["get-sum"]}, {"deny": True, "prompts": ["*"]}]}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, everything_sse) -> Iterator[Tuple[Daemon, Dict[str, str]]]:
    daemon = start_daemon(tmp_path_factory.mktemp("legacy-lists"))
    sse = f"http://127.0.0.1:{everything_sse}"
    apis = {
        "/legacy-acl": deploy(daemon, "/legacy-acl", sse, acl=GET_SUM_ONLY)["id"],
        "/legacy-dry": deploy(daemon, "/legacy-dry", sse, acl=dict(GET_SUM_ONLY, dryRun=True))["id"],
        "/legacy": deploy(daemon, "/legacy", sse)["id"],
    }
    yield daemon, apis
    stop_daemon(daemon)


def _list(session: Legacy, method: str, id: Any) -> Dict[str, Any]:
    status, body = session.post(json.dumps({"jsonrpc": "2.0", "id": id, "method": method,
                                            "params": {}}).encode())
    assert status == 202, body
    answer = session.until(id)[-1]
    assert "result" in answer, answer
    return answer["result"]


@pytest.mark.parametrize("id", [1, "one", 7.0])
def test_tools_hidden_by_the_rules_never_show_on_the_get_stream(gateway, id) -> None:
    daemon, _ = gateway
    session = Legacy(daemon, "/legacy-acl")
    try:
        names = [tool["name"] for tool in _list(session, "tools/list", id)["tools"]]
    finally:
        session.close()
    assert names == ["get-sum"]


def test_lists_of_other_kinds_follow_the_rules_too(gateway) -> None:
    daemon, _ = gateway
    session = Legacy(daemon, "/legacy-acl")
    try:
        prompts = _list(session, "prompts/list", 2)["prompts"]
        tools = _list(session, "tools/list", 3)["tools"]
    finally:
        session.close()
    assert prompts == []  # the deny rule hides every prompt
    assert [tool["name"] for tool in tools] == ["get-sum"]


@pytest.mark.parametrize("path", ["/legacy", "/legacy-dry"])
def test_without_rules_or_in_a_dry_run_every_tool_shows(gateway, path) -> None:
    daemon, _ = gateway
    session = Legacy(daemon, path)
    try:
        names = {tool["name"] for tool in _list(session, "tools/list", 1)["tools"]}
    finally:
        session.close()
    assert {"get-sum", "echo"} <= names and len(names) > 2
