"""
The console's Pins view in headless Chromium (tests/test_console.py's
fixtures): a drift made by a real SDK server (tests/pin_server.py) shows
with its diff; the operator approves it in the browser and the official SDK
client then gets the new definition through the gateway.
"""

from __future__ import annotations

from typing import Dict

from mcp import Client
from playwright.sync_api import expect

from tests.test_console import Console, browser, console, run_mcp, table_rows
from tests.pin_support import V1_ADD, V2_ADD, Backend, backend, deploy_pinned

__all__ = ["backend", "browser", "console"]  # fixtures from other modules


def _tools(url: str) -> Dict[str, str]:
    seen: Dict[str, str] = {}

    async def work(client: Client) -> None:
        seen.update({t.name: t.description or "" for t in (await client.list_tools()).tools})

    run_mcp(url, work)
    return seen


def test_drift_shows_with_its_diff_and_is_approved_in_the_console(console: Console,
                                                                  backend: Backend) -> None:
    daemon = console.daemon
    api_id = deploy_pinned(daemon, backend, {"mode": "block"})
    url = daemon.gateway + "/pinned"
    assert _tools(url)["add"] == V1_ADD
    backend.switch("v2")
    assert "add" not in _tools(url)  # blocked

    page = console.page
    console.sign_in()
    console.open(f"#/apis/{api_id}")
    page.get_by_role("link", name="Pins", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Pins of Pinned")
    expect(page.locator("#pinning-mode")).to_contain_text("block mode")

    awaiting = page.get_by_role("region", name="Tool add")
    expect(awaiting.get_by_text("Blocked", exact=True)).to_be_visible()
    expect(awaiting.get_by_text("Awaiting approval", exact=True)).to_be_visible()
    diff = awaiting.get_by_label("Changes to Tool add")
    expect(diff.locator(".diff-line.del")).to_contain_text([f'"description": "{V1_ADD}"'])
    expect(diff.locator(".diff-line.add").first).to_contain_text(f'"description": "{V2_ADD}"')
    expect(diff).to_contain_text('"note": {')

    rows = {row[1]: row for row in table_rows(page.get_by_role("table", name="Pins"))}
    assert rows["add"][0] == "Tool" and "Blocked" in rows["add"][2]
    assert rows["echo"][2] == "Pinned" and rows["echo"][4] == "first-use"

    event = page.get_by_role("article", name="Changed: Tool add")
    expect(event).to_be_visible()
    event.get_by_text("Diff", exact=True).click()
    expect(event.get_by_label("Diff of Tool add")).to_contain_text(V2_ADD)
    console.shot("drift")

    page.get_by_role("button", name="Approve add", exact=True).click()
    expect(console.banner()).to_contain_text(
        "Approved: Tool add is pinned to its new definition and served again.")
    expect(page.get_by_role("region", name="Tool add")).to_have_count(0)
    expect(page.get_by_text("Nothing awaits a decision")).to_be_visible()
    rows = {row[1]: row for row in table_rows(page.get_by_role("table", name="Pins"))}
    assert rows["add"][2] == "Pinned" and rows["add"][4] == "admin"
    console.shot("approved")

    assert _tools(url)["add"] == V2_ADD
