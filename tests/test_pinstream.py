"""
Lists on a legacy GET event stream (L{mcpgated.policy.pinstream}): a
message with a list result's shape is judged by that shape, with no request
id to say what it answers; everything else passes byte for byte. Driven
through the response reader the relay uses (L{mcpgated.mcp.responses}).
"""

from __future__ import annotations

import json
from typing import Any, List, Tuple

import pytest

from mcpgated.mcp.responses import ResponseReader
from mcpgated.policy.pinstream import ShapeJudge


class HidingFilter:
    """
    A caller's view of lists: items named or addressed "secret..." hidden.
    """

    def __init__(self) -> None:
        self.calls: List[Tuple[str, Any]] = []

    def __call__(self, method: str, result: Any) -> Any:
        self.calls.append((method, result))
        key = next(k for k in ("tools", "prompts", "resources", "resourceTemplates") if k in result)
        kept = [item for item in result[key]
                if not str(item.get("name") or item.get("uri") or item.get("uriTemplate"))
                .startswith("secret")]
        if len(kept) == len(result[key]):
            return result  # nothing to hide: the same object
        return dict(result, **{key: kept})


def event(message: Any, raw: bytes = b"") -> bytes:
    return b"event: message\ndata: " + (raw or json.dumps(message).encode()) + b"\n\n"


def stream(judge: ShapeJudge, data: bytes, cut: int = 7) -> bytes:
    reader = ResponseReader(True, judge)
    out = b"".join(reader.feed(data[i:i + cut]) for i in range(0, len(data), cut))
    return out + reader.flush()


def sent(out: bytes) -> List[Any]:
    return [json.loads(line[len(b"data: "):]) for line in out.split(b"\n")
            if line.startswith(b"data: ")]


@pytest.mark.parametrize("key, method, item", [
    ("tools", "tools/list", "name"),
    ("prompts", "prompts/list", "name"),
    ("resources", "resources/list", "uri"),
    ("resourceTemplates", "resources/templates/list", "uriTemplate"),
])
def test_a_list_result_is_judged_by_its_shape(key: str, method: str, item: str) -> None:
    hide = HidingFilter()
    message = {"jsonrpc": "2.0", "id": 3,
               "result": {key: [{item: "public"}, {item: "secret-one"}], "nextCursor": "p2"}}
    [judged] = sent(stream(ShapeJudge(hide), event(message)))
    assert [method for method, _ in hide.calls] == [method]
    # judged as a page: the cursor and the rest of the message stay
    assert judged == {"jsonrpc": "2.0", "id": 3,
                      "result": {key: [{item: "public"}], "nextCursor": "p2"}}


def test_a_list_the_filter_leaves_alone_passes_byte_for_byte() -> None:
    raw = b'{"jsonrpc": "2.0",  "id": "a", "result": {"tools": [{"name": "echo"}]}}'
    data = event(None, raw)
    hide = HidingFilter()
    assert stream(ShapeJudge(hide), data) == data
    assert len(hide.calls) == 1


@pytest.mark.parametrize("message", [
    {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "secret"}]}},
    {"jsonrpc": "2.0", "id": 1, "result": {"tools": "not a list"}},
    {"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "no tools/list"}},
    {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"},
    # a list shape without an id is no answer
    {"jsonrpc": "2.0", "result": {"tools": [{"name": "secret"}]}},
    # a server's request to the client
    {"jsonrpc": "2.0", "id": 9, "method": "sampling/createMessage", "params": {}},
])
def test_other_messages_pass_untouched_and_unjudged(message: Any) -> None:
    hide = HidingFilter()
    data = event(message)
    assert stream(ShapeJudge(hide), data) == data
    assert hide.calls == []


def test_every_list_on_the_stream_is_judged_and_nothing_is_added() -> None:
    hide = HidingFilter()
    first = {"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": "secret"}, {"name": "a"}]}}
    ping = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "x"}}
    second = {"jsonrpc": "2.0", "id": 2, "result": {"prompts": [{"name": "secret-p"}]}}
    judge = ShapeJudge(hide)
    out = sent(stream(judge, event(first) + event(ping) + event(second), cut=3))
    assert out == [{"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": "a"}]}},
                   ping,
                   {"jsonrpc": "2.0", "id": 2, "result": {"prompts": []}}]
    assert judge.extra() == [] and judge.batch is False
