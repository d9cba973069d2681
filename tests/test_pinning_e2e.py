"""
Tool-definition pinning through the real daemon: a server built with the
official SDK (tests/pin_server.py) changes its tool, prompt and template
definitions on a switch; the official SDK client, through the gateway, sees
the pinned definitions, then the drift blocked (or, in warn mode, passed),
the event with its diff in the admin API and /metrics, and after the
operator's approval the new definition. 2025 sessions (with
notifications/tools/list_changed) and 2026-07-28 requests, JSON and SSE
answers, pagination; pins survive a restart.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.pin_support import V1_ADD, V2_ADD, Backend, backend, deploy_pinned
from tests.support import Daemon, metric

__all__ = ["backend"]  # the pin server fixture, from tests.pin_support

def _pins(daemon: Daemon, api_id: str) -> Dict[Tuple[str, str], Dict[str, Any]]:
    status, body = daemon.admin("GET", f"/apis/{api_id}/pins")
    assert status == 200, body
    return {(pin["kind"], pin["name"]): pin for pin in body["data"]}


def _events(daemon: Daemon, api_id: str) -> List[Dict[str, Any]]:
    status, body = daemon.admin("GET", f"/apis/{api_id}/pins/events")
    assert status == 200, body
    return body["data"]


def _approve(daemon: Daemon, api_id: str, pin: Dict[str, Any]) -> Dict[str, Any]:
    status, body = daemon.admin("POST", f"/apis/{api_id}/pins/{pin['id']}/_approve",
                                {"fingerprint": pin["pending"]["fingerprint"]})
    assert status == 200, body
    return body


async def _call(client: Client, name: str, arguments: Dict[str, Any]) -> Any:
    try:
        return (await client.call_tool(name, arguments)).content[0].text
    except MCPError as e:
        return (e.error.code, e.error.message)


# --- 2025 session, block mode ---------------------------------------------------------------


def test_rug_pull_in_a_2025_session_is_blocked_until_approved(daemon: Daemon,
                                                              backend: Backend) -> None:
    api_id = deploy_pinned(daemon, backend, {"mode": "block"})
    url = daemon.gateway + "/pinned"
    seen: Dict[str, Any] = {}

    async def session() -> None:
        changed = anyio.Event()

        async def on_message(message: Any) -> None:
            if getattr(message, "method", None) == "notifications/tools/list_changed":
                changed.set()

        async with Client(url, mode="legacy", message_handler=on_message) as client:
            assert client.protocol_version.startswith("2025-")
            tools = {t.name: t for t in (await client.list_tools()).tools}
            seen["v1"] = (sorted(tools), tools["add"].description)
            seen["v1 add"] = await _call(client, "add", {"a": 2, "b": 3})
            seen["v1 prompts"] = [p.name for p in (await client.list_prompts()).prompts]
            seen["v1 templates"] = [t.uri_template for t in
                                    (await client.list_resource_templates()).resource_templates]
            # the server changes its definitions and says so on the session
            seen["switch"] = await _call(client, "switch", {"to": "v2"})
            with anyio.fail_after(10):
                await changed.wait()
            tools = {t.name: t for t in (await client.list_tools()).tools}
            seen["v2"] = sorted(tools)
            seen["v2 add"] = await _call(client, "add", {"a": 2, "b": 3})
            seen["v2 prompts"] = [p.name for p in (await client.list_prompts()).prompts]
            try:
                await client.get_prompt("greet", {"who": "x", "secret": "y"})
                seen["v2 greet"] = "served"
            except MCPError as e:
                seen["v2 greet"] = (e.error.code, e.error.message)
            seen["v2 templates"] = [t.uri_template for t in
                                    (await client.list_resource_templates()).resource_templates]

            # the operator reviews the diff and approves: at once, same session
            events = _events(daemon, api_id)
            seen["events"] = events
            pins = _pins(daemon, api_id)
            seen["pins"] = pins
            for key in (("tool", "add"), ("prompt", "greet"), ("resourceTemplate", "notes://{id}")):
                _approve(daemon, api_id, pins[key])
            tools = {t.name: t for t in (await client.list_tools()).tools}
            seen["approved"] = (sorted(tools), tools["add"].description,
                                sorted(tools["add"].input_schema["properties"]))
            seen["approved add"] = await _call(client, "add", {"a": 2, "b": 3})
            seen["approved greet"] = (await client.get_prompt("greet", {"who": "x", "secret": "y"})
                                      ).messages[0].content.text

    anyio.run(session)
    assert seen["v1"] == (["add", "echo", "switch"], V1_ADD)
    assert seen["v1 add"] == "5"
    assert seen["v1 prompts"] == ["greet"] and seen["v1 templates"] == ["notes://{id}"]
    assert seen["switch"] == "switched to v2"
    # the changed tool is gone from the list, its calls refused with the reason
    assert seen["v2"] == ["echo", "switch"]
    assert seen["v2 add"] == (-32602, "Tool add is blocked by the gateway: its definition "
                                      "changed since it was approved (pinning)")
    assert seen["v2 prompts"] == []
    assert seen["v2 greet"] == (-32602, "Prompt greet is blocked by the gateway: its definition "
                                        "changed since it was approved (pinning)")
    assert seen["v2 templates"] == []

    # one event per changed definition (however many lists showed it), with its diff
    events = {(e["kind"], e["name"]): e for e in seen["events"]}
    assert sorted(events) == [("prompt", "greet"), ("resourceTemplate", "notes://{id}"),
                              ("tool", "add")]
    add = events[("tool", "add")]
    assert add["type"] == "changed" and add["oldFingerprint"] != add["newFingerprint"]
    assert f'-  "description": "{V1_ADD}",' in add["diff"].splitlines()
    assert f'+  "description": "{V2_ADD}",' in add["diff"].splitlines()
    assert '+      "note": {' in add["diff"].splitlines()
    assert re.fullmatch(r"[0-9a-f]{16}", add["session"])  # hashed, as in the exchange log
    pin = seen["pins"][("tool", "add")]
    assert pin["status"] == "pending" and pin["blocked"] and not pin["trusted"]
    assert pin["fingerprint"] == add["oldFingerprint"]
    assert pin["pending"]["fingerprint"] == add["newFingerprint"]
    assert pin["definition"]["description"] == V1_ADD
    assert pin["pending"]["definition"]["description"] == V2_ADD
    assert seen["pins"][("tool", "echo")]["status"] == "approved"
    assert not seen["pins"][("tool", "echo")]["blocked"]

    # after approval: the new definition, served and callable
    assert seen["approved"] == (["add", "echo", "switch"], V2_ADD, ["a", "b", "note"])
    assert seen["approved add"] == "5"
    assert seen["approved greet"] == "Hello x"

    assert metric(daemon, "mcpgated_pin_drift_events_total", missing=0.0, api=api_id, kind="tool",
                   type="changed") == 1.0
    assert metric(daemon, "mcpgated_pin_blocked_total", missing=0.0, api=api_id, what="call") == 2.0
    assert metric(daemon, "mcpgated_pin_blocked_total", missing=0.0, api=api_id, what="list_item") >= 3.0

    # the history: pinned on first use, then approved by the operator
    status, detail = daemon.admin("GET", f"/apis/{api_id}/pins/{pin['id']}")
    assert status == 200
    assert [(h["action"], h["by"], h["definition"]["description"]) for h in detail["history"]] == [
        ("approved", "admin", V2_ADD), ("pinned", "first-use", V1_ADD)]
    assert detail["status"] == "approved" and detail["trusted"] and detail["pending"] is None

    # the blocked calls are in the exchange log as denied
    daemon.stop()  # flushes the batched exchange log
    daemon.start()
    status, logs = daemon.admin("GET", f"/apis/{api_id}/logs?tool=add&outcome=denied")
    assert status == 200 and len(logs["data"]) == 1


def test_pins_survive_a_restart(daemon: Daemon, backend: Backend) -> None:
    api_id = deploy_pinned(daemon, backend, {"mode": "block"})
    url = daemon.gateway + "/pinned"

    async def tools(url: str) -> List[str]:
        async with Client(url, mode="legacy") as client:
            return sorted(t.name for t in (await client.list_tools()).tools)

    assert anyio.run(tools, url) == ["add", "echo", "switch"]  # v1 pinned on first use
    daemon.stop()
    backend.switch("v2")
    daemon.start()
    # a gateway that forgot its pins would trust v2 on first use
    assert anyio.run(tools, daemon.gateway + "/pinned") == ["echo", "switch"]
    (event,) = [e for e in _events(daemon, api_id) if e["name"] == "add"]
    assert event["type"] == "changed"
    assert _pins(daemon, api_id)[("tool", "add")]["definition"]["description"] == V1_ADD


# --- 2026-07-28, approval required ------------------------------------------------------------


def test_2026_requests_with_approval_required(daemon: Daemon, backend: Backend) -> None:
    api_id = deploy_pinned(daemon, backend, {"mode": "block", "approval": "required"})
    url = daemon.gateway + "/pinned"
    seen: Dict[str, Any] = {}

    async def run() -> None:
        async with Client(url) as client:
            seen["version"] = client.protocol_version
            result = await client.list_tools()
            seen["nothing approved"] = ([t.name for t in result.tools], result.cache_scope,
                                        result.ttl_ms)
            seen["echo refused"] = await _call(client, "echo", {"message": "hi"})
            pins = _pins(daemon, api_id)
            seen["pending"] = sorted((k, p["status"], p["fingerprint"]) for k, p in pins.items()
                                     if k[0] == "tool")
            for key in (("tool", "add"), ("tool", "echo")):
                _approve(daemon, api_id, pins[key])
            result = await client.list_tools()
            seen["approved"] = ([t.name for t in result.tools], result.cache_scope)
            seen["echo"] = await _call(client, "echo", {"message": "hi"})
            backend.switch("v2")
            seen["v2"] = [t.name for t in (await client.list_tools()).tools]
            _approve(daemon, api_id, _pins(daemon, api_id)[("tool", "add")])
            result = await client.list_tools()
            seen["v2 approved"] = [(t.name, t.description) for t in result.tools]

    anyio.run(run)
    assert seen["version"] == "2026-07-28"
    # nothing new is served before an operator approves it; the server said public
    assert seen["nothing approved"] == ([], "private", 0)
    assert seen["echo refused"] == (-32602, "Tool echo is blocked by the gateway: its "
                                            "definition has not been approved (pinning)")
    assert seen["pending"] == [(("tool", name), "pending", None)
                               for name in ("add", "echo", "switch")]
    assert seen["approved"] == (["add", "echo"], "private")
    assert seen["echo"] == "Echo: hi"
    assert seen["v2"] == ["echo"]
    assert seen["v2 approved"] == [("add", V2_ADD), ("echo", "Echo a message.")]
    kinds = [(e["name"], e["type"], e["session"]) for e in _events(daemon, api_id)
             if e["kind"] == "tool"]
    assert kinds == [("add", "changed", None), ("switch", "new", None), ("echo", "new", None),
                     ("add", "new", None)]


def test_the_cache_scope_stays_public_when_nothing_is_filtered(daemon: Daemon,
                                                               backend: Backend) -> None:
    deploy_pinned(daemon, backend, {"mode": "block"})

    async def run() -> Tuple[Optional[str], Optional[int]]:
        async with Client(daemon.gateway + "/pinned") as client:
            result = await client.list_tools()
            return result.cache_scope, result.ttl_ms

    assert anyio.run(run) == ("public", 0)


# --- warn mode, pagination, JSON answers --------------------------------------------------------


def test_warn_mode_passes_traffic_and_records_events(daemon: Daemon, backend: Backend) -> None:
    api_id = deploy_pinned(daemon, backend, {"mode": "warn"})

    async def run() -> Any:
        async with Client(daemon.gateway + "/pinned", mode="legacy") as client:
            await client.list_tools()
            backend.switch("v2")
            tools = {t.name: t.description for t in (await client.list_tools()).tools}
            return tools, await _call(client, "add", {"a": 1, "b": 1})

    tools, added = anyio.run(run)
    assert tools["add"] == V2_ADD and added == "2"
    (event,) = [e for e in _events(daemon, api_id) if e["kind"] == "tool"]
    assert (event["name"], event["type"]) == ("add", "changed")
    pin = _pins(daemon, api_id)[("tool", "add")]
    assert pin["status"] == "pending" and not pin["blocked"]
    # rejecting keeps the pin; in warn mode traffic still passes
    status, rejected = daemon.admin("POST", f"/apis/{api_id}/pins/{pin['id']}/_reject")
    assert status == 200 and rejected["status"] == "rejected"
    assert rejected["fingerprint"] == pin["fingerprint"]


@pytest.fixture
def paged_backend(tmp_path: Path) -> Iterator[Backend]:
    server = Backend(tmp_path, "--page-size", "2", "--json")
    yield server
    server.proc.stop()


def test_pages_in_json_answers(daemon: Daemon, paged_backend: Backend) -> None:
    api_id = deploy_pinned(daemon, paged_backend, {"mode": "block"})

    async def walk(client: Client) -> List[Tuple[List[str], Optional[str]]]:
        pages = []
        cursor = None
        while True:
            result = await client.list_tools(cursor=cursor, cache_mode="bypass")
            pages.append(([t.name for t in result.tools], result.next_cursor))
            cursor = result.next_cursor
            if cursor is None:
                return pages

    async def run() -> Any:
        async with Client(daemon.gateway + "/pinned", mode="legacy") as client:
            first = await walk(client)
            paged_backend.switch("v2")
            second = await walk(client)
            return first, second

    first, second = anyio.run(run)
    assert first == [(["add", "echo"], "2"), (["switch"], None)]
    # the changed tool is filtered out of its page; the cursor is kept
    assert second == [(["echo"], "2"), (["switch"], None)]
    # a later page that lacks an item is not a removal
    assert [(e["name"], e["type"]) for e in _events(daemon, api_id)] == [("add", "changed")]


def test_removed_and_new_items_are_events(daemon: Daemon, backend: Backend) -> None:
    api_id = deploy_pinned(daemon, backend, {"mode": "block"})

    async def run() -> Any:
        async with Client(daemon.gateway + "/pinned", mode="legacy") as client:
            first = sorted(t.name for t in (await client.list_tools()).tools)
            backend.switch("v3")
            second = sorted(t.name for t in (await client.list_tools()).tools)
            return first, second

    first, second = anyio.run(run)
    assert first == ["add", "echo", "switch"]
    # trust on first use: a new tool is pinned and served, and reported
    assert second == ["add", "delete_all", "echo"]
    events = [(e["name"], e["type"], e["oldFingerprint"] is None, e["newFingerprint"] is None)
              for e in _events(daemon, api_id)]
    assert events == [("switch", "removed", False, True), ("delete_all", "new", True, False)]
    removed = next(e for e in _events(daemon, api_id) if e["type"] == "removed")
    assert '-  "name": "switch"' in removed["diff"].splitlines()
    pins = _pins(daemon, api_id)
    assert not pins[("tool", "switch")]["present"]
    assert pins[("tool", "delete_all")]["trusted"]
    assert metric(daemon, "mcpgated_pin_drift_events_total", missing=0.0, api=api_id, kind="tool",
                   type="removed") == 1.0


def test_admin_errors_name_the_field(daemon: Daemon, backend: Backend) -> None:
    status, body = daemon.admin("POST", "/apis", {
        "name": "P", "version": "1", "contextPath": "/p", "backend": backend.url,
        "plans": [{"name": "Keyless", "security": "KEY_LESS"}], "pinning": {"mode": "strict"}})
    assert (status, body["field"]) == (400, "pinning.mode")
    api_id = deploy_pinned(daemon, backend, {"mode": "block"})

    async def run() -> None:
        async with Client(daemon.gateway + "/pinned", mode="legacy") as client:
            await client.list_tools()

    anyio.run(run)
    pin = _pins(daemon, api_id)[("tool", "add")]
    base = f"/apis/{api_id}/pins/{pin['id']}"
    assert daemon.admin("POST", base + "/_approve")[0] == 409  # nothing pending
    assert daemon.admin("POST", base + "/_approve", {"fingerprint": "md5:1"})[1]["field"] == \
        "fingerprint"
    assert daemon.admin("POST", base + "/_approve", {"other": 1})[1]["field"] == "other"
    assert daemon.admin("GET", f"/apis/{api_id}/pins/nope")[0] == 404
    assert daemon.admin("GET", "/apis/nope/pins")[0] == 404
    assert daemon.admin("GET", f"/apis/{api_id}/pins/events?limit=0")[1]["field"] == "limit"
    backend.switch("v2")
    anyio.run(run)
    pending = _pins(daemon, api_id)[("tool", "add")]["pending"]["fingerprint"]
    status, body = daemon.admin("POST", base + "/_approve", {"fingerprint": pin["fingerprint"]})
    assert (status, body["field"]) == (409, "fingerprint") and pending in body["error"]
    # an operator approves what they reviewed: not a later change
    backend.switch("v1")
    anyio.run(run)
    backend.switch("v2")
    anyio.run(run)
    assert daemon.admin("POST", base + "/_approve", {"fingerprint": pending})[0] == 200


# --- the legacy 2024-11-05 HTTP+SSE transport: answers arrive on the GET stream ------------------


def test_legacy_sse_transport_lists_are_judged_on_the_get_stream(daemon: Daemon,
                                                                  everything_sse: int) -> None:
    from mcp.client.sse import sse_client

    status, api = daemon.admin("POST", "/apis", {
        "name": "Legacy", "version": "1", "contextPath": "/legacy",
        "backend": f"http://127.0.0.1:{everything_sse}",
        "plans": [{"name": "Keyless", "security": "KEY_LESS"}],
        "pinning": {"mode": "block", "approval": "required"}})
    assert status == 201, api
    assert daemon.admin("POST", f"/apis/{api['id']}/_deploy")[0] == 200
    url = daemon.gateway + "/legacy/sse"

    async def session(call: bool) -> Tuple[List[str], Any]:
        async with Client(sse_client(url), mode="legacy") as client:
            tools = [t.name for t in (await client.list_tools()).tools]
            # (a refused call is answered on its POST, which legacy clients do not read)
            return tools, await _call(client, "echo", {"message": "hi"}) if call else None

    tools, _ = anyio.run(session, False)
    assert tools == []  # nothing approved yet: the answer on the GET stream was judged
    pins = _pins(daemon, api["id"])
    assert ("tool", "echo") in pins and pins[("tool", "echo")]["status"] == "pending"
    assert pins[("tool", "echo")]["blocked"]
    _approve(daemon, api["id"], pins[("tool", "echo")])
    tools, echoed = anyio.run(session, True)
    assert tools == ["echo"] and echoed == "Echo: hi"
