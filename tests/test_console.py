"""
The web console as an operator uses it: headless Chromium (Debian's
package, driven by Playwright with its executable path: no browser download)
against a real daemon and npm's server-everything. APIs are created through
the wizard, MCP traffic comes from the official Python SDK client, and the
tests read what a person would read: texts, counts, rows. Screenshots of
every page go to test-artifacts/console/.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import threading
from configparser import ConfigParser
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import anyio
import playwright.sync_api as playwright_api
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from playwright.sync_api import expect

from tests.support import REPO, http

CHROMIUM = os.environ.get("MCPGATED_CHROMIUM", "/usr/bin/chromium")
# What works in this sandbox and in CI: no sandbox (root), no GPU, and no
# background calls to Google's services (the network is closed).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO / "test-artifacts" / "console"
UI = REPO / "mcpgated" / "admin" / "ui"
SECRET_BEARER = "Bearer do-not-show-me-7d1e"

expect.set_options(timeout=15_000)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"the console tests need Debian's chromium at {CHROMIUM} "
                    "(apt-get install chromium), or MCPGATED_CHROMIUM naming another build")
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


class Console:
    """
    One browser tab on the console of one daemon, failing the test on any
    script error or unexpected failed request.
    """

    def __init__(self, page: Any, daemon: Any, name: str) -> None:
        self.page = page
        self.daemon = daemon
        self.name = name
        self.problems: List[str] = []
        self.expected_statuses: List[int] = []
        self.expect_refused = False  # the test stops the daemon under the page
        page.on("pageerror", lambda error: self.problems.append(f"script error: {error}"))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if message.type != "error":
            return
        status = re.search(r"status of (\d+)", message.text)
        if status and int(status.group(1)) in self.expected_statuses:
            return
        if self.expect_refused and "ERR_CONNECTION_REFUSED" in message.text:
            return
        self.problems.append(f"console error: {message.text}")

    @property
    def url(self) -> str:
        return self.daemon.admin_url + "/ui/"

    def open(self, hash_: str = "") -> None:
        self.page.goto(self.url + hash_)

    def sign_in(self) -> None:
        self.open()
        token = self.page.get_by_label("Admin token")
        token.fill(self.daemon.token)
        token.press("Enter")  # the keyboard way
        expect(self.page.get_by_role("navigation", name="Main")).to_be_visible()
        expect(self.page.get_by_role("button", name="Sign out")).to_be_visible()

    def go(self, link: str) -> None:
        self.page.get_by_role("navigation", name="Main").get_by_role("link", name=link, exact=True).click()
        expect(self.page.get_by_role("heading", level=1)).to_have_text(link)

    def shot(self, what: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{self.name}-{what}.png"), full_page=True)
        assert_readable(self.page, what)

    def textbox(self, name: str) -> Any:
        return self.page.get_by_role("textbox", name=name, exact=True)

    def button(self, name: str) -> Any:
        return self.page.get_by_role("button", name=name, exact=True)

    def banner(self) -> Any:
        return self.page.locator("#banner .banner")


@pytest.fixture
def console(browser, daemon, request) -> Iterator[Console]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    tab = Console(page, daemon, request.node.name.removeprefix("test_"))
    yield tab
    context.close()
    assert tab.problems == []


# Contrast as WCAG 2 computes it, for every visible text on the page (4.5:1,
# or 3:1 for large text); text on a canvas is Chart.js's, set in dashboard.js.
CONTRAST = """
() => {
  const parse = (c) => {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const over = (top, base) => ({ r: top.r * top.a + base.r * (1 - top.a), g: top.g * top.a + base.g * (1 - top.a),
    b: top.b * top.a + base.b * (1 - top.a) });
  const lum = ({ r, g, b }) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
    }
    let base = { r: 255, g: 255, b: 255 };
    for (const c of layers.reverse()) base = over(c, base);
    return base;
  };
  const failures = [];
  const seen = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const el = node.parentElement;
    if (!node.textContent.trim() || seen.has(el)) continue;
    seen.add(el);
    if (!el.checkVisibility({ opacityProperty: true, visibilityProperty: true })) continue;
    if (el.closest("[disabled], option, script, style, .visually-hidden, .skip-link")) continue;
    const style = getComputedStyle(el);
    const bg = background(el);
    const fg = over(parse(style.color), bg);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (Number(style.fontWeight) >= 700 && size >= 18.66);
    if (ratio < (large ? 3 : 4.5))
      failures.push(`${ratio.toFixed(2)}:1 ${el.tagName} "${node.textContent.trim().slice(0, 50)}"`);
  }
  return failures;
}
"""


def assert_readable(page: Any, what: str) -> None:
    failures = page.evaluate(CONTRAST)
    assert failures == [], f"low contrast on {what}: {failures}"


def run_mcp(url: str, work: Callable[[Client], Any], headers: Dict[str, str] | None = None) -> None:
    """
    Run an MCP session with the official SDK client, in a thread of its own
    (Playwright's sync API owns this thread's event loop).
    """
    failure: List[BaseException] = []

    async def session() -> None:
        transport = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
        async with Client(transport, mode="legacy") as client:
            await work(client)

    def main() -> None:
        try:
            anyio.run(session)
        except BaseException as e:  # noqa: BLE001 -- handed to the test's thread, which raises it
            failure.append(e)

    thread = threading.Thread(target=main)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the MCP session did not finish"
    if failure:
        raise failure[0]


async def _usual_traffic(client: Client) -> None:
    await client.list_tools()
    for i in range(3):
        await client.call_tool("echo", {"message": f"hello {i}"})
    for _ in range(2):
        await client.call_tool("get-sum", {"a": 2, "b": 3})
    assert (await client.call_tool("no-such-tool", {})).is_error


def table_rows(locator: Any) -> List[List[str]]:
    """
    The cells of a table's body rows, as a person reads them.
    """
    rows = []
    for row in locator.locator("tbody tr").all():
        rows.append([cell.inner_text().strip() for cell in row.locator("th, td").all()])
    return rows


def card(page: Any, title: str) -> Any:
    return page.locator("section.card").filter(has=page.get_by_role("heading", name=title, exact=True))


# --- the first guide, in a browser ------------------------------------------------------------


def test_wizard_deploys_and_traffic_shows_on_dashboard_and_logs(console, everything):
    page, daemon = console.page, console.daemon
    backend = f"http://127.0.0.1:{everything}/mcp"
    client_url = daemon.gateway + "/mcp-proxy"
    console.sign_in()
    assert daemon.token not in page.url
    expect(page.get_by_text("No APIs yet.")).to_be_visible()
    console.shot("apis-empty")

    # the wizard, step by step, in the order of the first guide
    page.get_by_role("link", name="Create your first API").click()
    steps = page.get_by_role("list", name="Steps")
    expect(steps.locator("[aria-current=step]")).to_have_text("Name and version")
    console.textbox("Name").fill("Everything")
    console.textbox("Version").fill("1.0")
    console.button("Next").click()
    expect(steps.locator("[aria-current=step]")).to_have_text("Context path")
    console.textbox("Context path").fill("/mcp-proxy")
    console.textbox("Context path").press("Enter")
    expect(steps.locator("[aria-current=step]")).to_have_text("Backend")
    console.textbox("Backend URL").fill(backend)
    console.button("Next").click()
    expect(steps.locator("[aria-current=step]")).to_have_text("Plan")
    expect(console.textbox("Plan name")).to_have_value("Keyless")
    expect(page.get_by_role("combobox", name="Security")).to_have_value("KEY_LESS")
    console.button("Next").click()
    expect(steps.locator("[aria-current=step]")).to_have_text("Review")
    review = page.locator("dl.summary")
    for text in ("Everything", "1.0", "/mcp-proxy", backend, "Keyless (open)", client_url):
        expect(review).to_contain_text(text)
    console.shot("wizard-review")
    console.button("Create and Deploy").click()

    # the API page: deployed and started, with the address clients use
    expect(console.banner()).to_contain_text(f"Created and deployed: Everything 1.0 is live. "
                                             f"MCP clients connect to {client_url}.")
    expect(page.get_by_role("heading", level=1)).to_have_text("Everything 1.0")
    expect(page.locator(".page-head .badge")).to_have_text(["Started"])
    status, apis = daemon.admin("GET", "/apis")
    (api,) = apis["data"]
    assert (api["name"], api["version"], api["contextPath"], api["backend"], api["state"],
            api["deploymentState"]) == ("Everything", "1.0", "/mcp-proxy", backend, "STARTED", "DEPLOYED")
    assert [(p["name"], p["security"]) for p in api["plans"]] == [("Keyless", "KEY_LESS")]
    console.shot("api-page")

    # before any traffic: the dashboard says where to point a client
    console.go("Dashboard")
    expect(page.get_by_role("status")).to_have_text(
        re.compile(rf"No traffic yet: point an MCP client at {re.escape(client_url)}"))
    expect(page.locator("#tile-requests")).to_have_text("0")
    console.shot("dashboard-empty")

    run_mcp(client_url, _usual_traffic)

    # the dashboard refreshes by itself (no click) and shows the session's counts
    tiles = {key: page.locator(f"#tile-{key}") for key in
             ("requests", "notifications", "errors", "error-rate", "p50", "p90", "p99")}
    expect(tiles["requests"]).to_have_text("8")  # initialize, tools/list, 6 tools/call
    expect(tiles["notifications"]).to_have_text("1")  # notifications/initialized
    expect(tiles["errors"]).to_have_text("1")
    expect(tiles["error-rate"]).to_have_text("12.5%")  # 1 of 8 requests (not of 9 with the notification)
    latencies = [float(re.fullmatch(r"([\d.,]+) ms", tiles[p].inner_text()).group(1).replace(",", ""))
                 for p in ("p50", "p90", "p99")]
    assert 0 < latencies[0] <= latencies[1] <= latencies[2]
    expect(page.get_by_text("No traffic yet")).to_be_hidden()

    methods = card(page, "Top methods")
    methods.get_by_text("Show as a table").click()
    method_rows = table_rows(methods.locator("table"))
    assert [row[:4] for row in method_rows] == [
        ["tools/call", "6", "1", "16.7%"], ["initialize", "1", "0", "0%"],
        ["notifications/initialized", "1", "0", "0%"], ["tools/list", "1", "0", "0%"]]
    for row in method_rows:  # each method's latency p50, p90, p99; a notification has none
        if row[0].startswith("notifications/"):
            assert row[4:] == ["–", "–", "–"]
        else:
            assert all(re.fullmatch(r"[\d.,]+ m?s", cell) for cell in row[4:]), row
    tools = card(page, "Top tools")
    tools.get_by_text("Show as a table").click()
    assert [row[:3] for row in table_rows(tools.locator("table"))] == [
        ["echo", "3", "0"], ["get-sum", "2", "0"], ["no-such-tool", "1", "1"]]
    # clients by application (none: a keyless plan), then name and address; shares of the requests
    assert table_rows(card(page, "Top clients").locator("table")) == [["–", "mcp", "127.0.0.1", "8", "100%"]]
    # the charts draw the same numbers
    charts = page.evaluate("""() => Object.fromEntries(["chart-timeline", "chart-methods", "chart-tools"].map((id) => {
        const chart = Chart.getChart(id);
        return [id, { labels: chart.data.labels, data: chart.data.datasets.map((d) => d.data) }];
    }))""")
    assert sum(charts["chart-timeline"]["data"][0]) == 8 and sum(charts["chart-timeline"]["data"][1]) == 1
    assert charts["chart-methods"]["labels"][0] == "tools/call"
    assert charts["chart-methods"]["data"] == [[5, 1, 1, 1], [1, 0, 0, 0]]
    assert charts["chart-tools"] == {"labels": ["echo", "get-sum", "no-such-tool"], "data": [[3, 2, 0], [0, 0, 1]]}
    console.shot("dashboard")

    # the list shows the live request rate
    console.go("APIs")
    row = page.locator("tbody tr", has_text="Everything")
    expect(row).to_have_count(1)
    assert table_rows(page.locator("table"))[0][:6] == [
        "Everything", "1.0", "/mcp-proxy", backend, "Keyless", "Started"]
    expect(row.locator("[data-rate]")).to_have_text("9/min")
    console.shot("apis")

    # the logs: every exchange, then filtered as the API filters
    console.go("Logs")
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(9)
    expect(page.get_by_role("heading", name="Exchanges 1–9, newest first")).to_be_visible()
    logged = table_rows(page.locator("table"))
    assert sorted(r[2].replace(" (notification)", "") for r in logged) == sorted(
        ["initialize", "notifications/initialized", "tools/list"] + ["tools/call"] * 6)
    assert {r[7].split()[0] for r in logged} == {"mcp"}  # the SDK's clientInfo.name
    console.shot("logs")

    page.get_by_role("searchbox", name="Tool, resource or prompt").fill("echo")
    console.button("Apply filters").click()
    expect(rows).to_have_count(3)
    assert [(r[2], r[3], r[4], r[5]) for r in table_rows(page.locator("table"))] == [
        ("tools/call", "echo", "result", "200")] * 3

    page.get_by_role("searchbox", name="Tool, resource or prompt").fill("")
    page.get_by_role("combobox", name="Outcome").select_option("errors")
    console.button("Apply filters").click()
    expect(rows).to_have_count(1)
    (failed,) = table_rows(page.locator("table"))
    assert failed[2:4] == ["tools/call", "no-such-tool"]
    assert failed[4].startswith("tool_error") and "no-such-tool" in failed[4]
    console.shot("logs-errors")

    # one exchange in detail
    rows.first.get_by_role("link", name=re.compile("details")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("tools/call no-such-tool")
    summary = page.locator("dl.summary")
    for text in ("tool_error", "no-such-tool", "Keyless", "mcp", "SSE stream"):
        expect(summary).to_contain_text(text)
    expect(page.get_by_text("Headers and messages were not captured for this exchange.")).to_be_visible()
    console.shot("log-detail")
    page.get_by_role("link", name="← Back to the logs").click()
    expect(rows).to_have_count(1)  # the filters are kept
    expect(page.get_by_role("combobox", name="Outcome")).to_have_value("errors")

    # cursor pagination: 9 exchanges, 5 a page
    page.get_by_role("link", name="Reset").click()
    expect(rows).to_have_count(9)
    page.get_by_role("combobox", name="Rows per page").select_option("5")
    console.button("Apply filters").click()
    expect(rows).to_have_count(5)
    first = [row.get_attribute("data-log-id") for row in rows.all()]
    page.get_by_role("link", name="Older →").click()
    expect(rows).to_have_count(4)
    expect(page.get_by_text("Page 2")).to_be_visible()
    expect(page.get_by_role("link", name="Older →")).to_have_count(0)
    second = [row.get_attribute("data-log-id") for row in rows.all()]
    ids = [int(i) for i in first + second]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 9
    page.get_by_role("link", name="← Newer").click()
    expect(rows).to_have_count(5)
    assert [row.get_attribute("data-log-id") for row in rows.all()] == first


# --- payloads, SSE events, secrets ---------------------------------------------------------------


async def _captured_traffic(client: Client) -> None:
    await client.call_tool("echo", {"message": "visible text", "password": "hunter2"})
    seen: List[float] = []

    async def progress(value, total, message):
        seen.append(value)

    await client.call_tool("trigger-long-running-operation", {"duration": 0.3, "steps": 3},
                           progress_callback=progress)
    assert seen == [1.0, 2.0, 3.0]


def test_captured_exchange_shows_sse_events_and_no_secrets(console, everything):
    page, daemon = console.page, console.daemon
    api_id = daemon.deploy(f"http://127.0.0.1:{everything}/mcp", context_path="/cap", name="Captured")
    console.sign_in()
    page.get_by_role("link", name="Captured").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Captured 1.0")

    # turn capture on: the edit waits for a deploy
    page.get_by_role("combobox", name="Capture").select_option("bodies")
    console.button("Save").click()
    expect(console.banner()).to_contain_text("Saved. The gateway still serves the deployed definition")
    expect(page.locator(".page-head")).to_contain_text("Deployed definition is behind")
    console.shot("api-behind")
    console.button("Deploy").click()
    expect(console.banner()).to_contain_text(f"Deployed: Captured 1.0 is live at {daemon.gateway}/cap.")
    expect(page.locator(".page-head")).not_to_contain_text("Deployed definition is behind")
    assert daemon.admin("GET", f"/apis/{api_id}")[1]["deployed"]["analytics"]["capture"] == "bodies"

    run_mcp(daemon.gateway + "/cap", _captured_traffic, headers={"Authorization": SECRET_BEARER})

    page.get_by_role("link", name="Logs", exact=True).first.click()
    page.get_by_role("searchbox", name="Tool, resource or prompt").fill("trigger-long-running-operation")
    console.button("Apply filters").click()
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(1)
    rows.first.get_by_role("link", name=re.compile("details")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("tools/call trigger-long-running-operation")

    # the stream's events, one by one: three progress notifications, then the result
    response = card(page, "Response")
    expect(response.get_by_role("heading", level=3, name="SSE events (4)")).to_be_visible()
    events = response.locator(".event h4")
    expect(events).to_have_text([
        "Event 1 of 4: notifications/progress", "Event 2 of 4: notifications/progress",
        "Event 3 of 4: notifications/progress", re.compile(r"Event 4 of 4: result for \d+")])
    progress = [json.loads(text) for text in response.locator(".event pre").all_inner_texts()]
    assert [m["params"]["progress"] for m in progress[:3]] == [1, 2, 3]
    assert "result" in progress[3]
    request = card(page, "Request")
    sent = json.loads(request.locator("pre").inner_text())
    assert sent["params"]["name"] == "trigger-long-running-operation"
    assert sent["params"]["arguments"] == {"duration": 0.3, "steps": 3}
    assert "\n  " in request.locator("pre").inner_text()  # pretty-printed
    # the Authorization header, and the session id (records name sessions by a hash)
    expect(request.get_by_role("row", name="Authorization [REDACTED]", exact=True)).to_be_visible()
    expect(response.get_by_role("row", name="Mcp-Session-Id [REDACTED]", exact=True)).to_be_visible()
    entry_id = page.url.rsplit("/", 1)[1]
    stored = daemon.admin("GET", f"/apis/{api_id}/logs/{entry_id}")[1]
    assert stored["responseHeaders"]["Mcp-Session-Id"] == ["[REDACTED]"]  # never stored in clear
    console.shot("log-detail-sse")

    # the echo call: the password argument and the bearer token are never shown
    page.get_by_role("link", name="← Back to the logs").click()
    page.get_by_role("searchbox", name="Tool, resource or prompt").fill("echo")
    console.button("Apply filters").click()
    expect(rows).to_have_count(1)
    rows.first.get_by_role("link", name=re.compile("details")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("tools/call echo")
    sent = json.loads(card(page, "Request").locator("pre").inner_text())
    assert sent["params"]["arguments"] == {"message": "visible text", "password": "[REDACTED]"}
    expect(card(page, "Response").locator(".event h4")).to_have_text([re.compile(r"result for \d+")])
    expect(card(page, "Response")).to_contain_text("Echo: visible text")
    content = page.content()
    assert "hunter2" not in content and SECRET_BEARER.split()[1] not in content
    console.shot("log-detail-json")


# --- sign-in -------------------------------------------------------------------------------------


def test_wrong_token_shows_the_sign_in_error(console, tmp_path):
    page, daemon = console.page, console.daemon
    console.expected_statuses.append(401)
    console.open()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to mcpgated")
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    wrong = "not-the-token-4f1c"
    page.get_by_label("Admin token").fill(wrong)
    console.button("Sign in").click()
    expect(page.get_by_role("alert").filter(has_text="refused")).to_have_text(
        "The gateway refused this token (HTTP 401: missing or wrong admin token). "
        "Check the token and try again.")
    expect(page.get_by_label("Admin token")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    assert page.evaluate("() => Object.keys(sessionStorage)") == []
    console.shot("signin-refused")

    # the right token, typed and sent with the keyboard; kept in this tab only
    page.get_by_label("Admin token").fill(daemon.token)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("APIs")
    assert page.evaluate("() => sessionStorage.getItem('mcpgated.adminToken')") == daemon.token
    assert page.evaluate("() => localStorage.length") == 0
    assert daemon.token not in page.url

    expect(page.get_by_role("heading", level=1)).to_be_focused()

    # keyboard: on a fresh load the first Tab reaches the skip link, which leads to the content
    page.reload()
    expect(page.get_by_role("link", name="Create API")).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Create API")).to_be_focused()

    # a token the gateway stops accepting sends the tab back to sign-in, saying why
    page.evaluate("() => sessionStorage.setItem('mcpgated.adminToken', 'revoked-token-9b2')")
    page.reload()
    expect(page.locator("#signin-error")).to_have_text(
        "The gateway no longer accepts the token this tab signed in with (HTTP 401). Sign in again.")
    assert page.evaluate("() => Object.keys(sessionStorage)") == []

    console.sign_in()
    console.button("Sign out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to mcpgated")
    assert page.evaluate("() => Object.keys(sessionStorage)") == []

    daemon.stop()
    logged = "\n".join(daemon.proc.output)
    for path in (daemon.folder / "log").iterdir():
        logged += path.read_text()
    assert daemon.token not in logged and wrong not in logged and "revoked-token-9b2" not in logged


# --- field errors ---------------------------------------------------------------------------------


def test_bad_context_path_shows_the_field_error(console, everything):
    page, daemon = console.page, console.daemon
    console.expected_statuses.append(400)
    backend = f"http://127.0.0.1:{everything}/mcp"
    daemon.deploy(backend, context_path="/mcp-proxy", name="Taken")
    console.sign_in()
    page.get_by_role("link", name="Create API").click()
    console.textbox("Name").fill("Inner")
    console.textbox("Version").fill("2")
    console.textbox("Version").press("Enter")
    path = console.textbox("Context path")
    error = page.locator("#wizard-context-path-error")
    steps = page.get_by_role("list", name="Steps")

    # checked in the browser as the API checks it, before anything is sent
    for bad, message in [
        ("mcp-proxy", "contextPath must be an absolute path starting with '/'"),
        ("/tools/../admin", "contextPath must not contain '.' or '..' segments"),
        ("/search?q=1", "contextPath must not contain a query or fragment"),
    ]:
        path.fill(bad)
        path.press("Enter")
        expect(error).to_have_text(message)
        expect(path).to_have_attribute("aria-invalid", "true")
        expect(path).to_be_focused()
        expect(steps.locator("[aria-current=step]")).to_have_text("Context path")
        status, body = daemon.admin("POST", "/apis", {
            "name": "x", "version": "1", "contextPath": bad, "backend": backend,
            "plans": [{"name": "Keyless", "security": "KEY_LESS"}]})
        assert (status, body) == (400, {"error": message, "field": "contextPath"})  # same words
    console.shot("wizard-field-error")

    # only the API knows /mcp-proxy is deployed: its own field error comes back to the step
    path.fill("/mcp-proxy/inner")
    path.press("Enter")
    console.textbox("Backend URL").fill(backend)
    console.button("Next").click()
    console.button("Next").click()
    console.button("Create and Deploy").click()
    status, refused = daemon.admin("POST", "/apis", {
        "name": "Inner", "version": "2", "contextPath": "/mcp-proxy/inner", "backend": backend,
        "plans": [{"name": "Keyless", "security": "KEY_LESS"}]})
    assert status == 400 and refused["field"] == "contextPath", refused
    expect(steps.locator("[aria-current=step]")).to_have_text("Context path")
    expect(error).to_have_text(refused["error"])
    expect(console.textbox("Context path")).to_be_focused()
    expect(console.banner()).to_have_text(re.compile(
        rf"Error: Creating the API failed: {re.escape(refused['error'])} \(HTTP 400, field contextPath\)"))
    console.shot("wizard-api-field-error")
    assert [a["name"] for a in daemon.admin("GET", "/apis")[1]["data"]] == ["Taken"]


# --- the API page: stop, start, delete -----------------------------------------------------------------


def test_api_page_stops_starts_and_deletes_with_confirmation(console, everything):
    page, daemon = console.page, console.daemon
    api_id = daemon.deploy(f"http://127.0.0.1:{everything}/mcp", context_path="/life", name="Lifecycle")
    probe = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    accept = {"Accept": "application/json, text/event-stream"}
    console.sign_in()
    page.get_by_role("link", name="Lifecycle").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Lifecycle 1.0")

    console.button("Stop").click()
    expect(console.banner()).to_have_text(re.compile("Stopped: the gateway no longer serves /life."))
    expect(page.locator(".page-head .badge")).to_have_text(["Stopped"])
    assert http("POST", daemon.gateway + "/life", probe, accept)[0] == 404
    console.button("Start").click()
    expect(console.banner()).to_have_text(re.compile(f"Started: Lifecycle is live again at {daemon.gateway}/life."))
    expect(page.locator(".page-head .badge")).to_have_text(["Started"])
    assert http("POST", daemon.gateway + "/life", probe, accept)[0] != 404

    # delete asks first; Escape (or Cancel) keeps the API
    console.button("Delete").click()
    dialog = page.get_by_role("dialog", name="Delete the API “Lifecycle”?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("It is started: the console stops it first")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    console.shot("delete-dialog")
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(console.button("Delete")).to_be_focused()
    assert daemon.admin("GET", f"/apis/{api_id}")[0] == 200

    console.button("Delete").click()
    dialog.get_by_role("button", name="Stop and delete").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("APIs")
    expect(console.banner()).to_have_text(re.compile("Deleted the API “Lifecycle” \\(/life\\)."))
    expect(page.get_by_text("No APIs yet.")).to_be_visible()
    assert daemon.admin("GET", "/apis")[1]["data"] == []
    assert http("POST", daemon.gateway + "/life", probe, accept)[0] == 404

    # the daemon goes away: the banner says so
    console.go("Dashboard")
    expect(page.locator("#dashboard-status")).to_have_text(re.compile("^Updated"))
    console.expect_refused = True
    daemon.stop()
    console.button("Refresh now").click()
    expect(console.banner()).to_have_text(re.compile(
        rf"Error: Refreshing the dashboard failed: the admin API at {re.escape(daemon.admin_url)} "
        r"did not answer \(is mcpgated running\?\)"))
    expect(page.locator("#dashboard-status")).to_have_text("Not up to date")
    console.shot("daemon-gone")


# --- times ---------------------------------------------------------------------------------------------

CLOCK = r"\d{2}:\d{2}:\d{2}"
DAY = r"\d{4}-\d{2}-\d{2}"


def test_times_are_24_hour_and_iso_like_on_every_page(browser, daemon, everything):
    # en-US, the locale whose own format is "12/3/2026, 2:05:09 PM"
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    context.set_default_timeout(15_000)
    tab = Console(context.new_page(), daemon, "times")
    page = tab.page
    try:
        api_id = daemon.deploy(f"http://127.0.0.1:{everything}/mcp", context_path="/times", name="Times")
        run_mcp(daemon.gateway + "/times", _usual_traffic)
        tab.sign_in()
        tab.open(f"#/apis/{api_id}")
        expect(page.get_by_text(re.compile(r"^Deployed "))).to_have_text(re.compile(rf"^Deployed {DAY} {CLOCK}$"))

        tab.go("Logs")
        rows = page.locator("table tbody tr")
        expect(rows).to_have_count(9)
        times = [row[0] for row in table_rows(page.locator("table"))]
        assert all(re.fullmatch(rf"(?:{DAY} )?{CLOCK}", t) for t in times), times
        rows.first.get_by_role("link", name=re.compile("details")).click()
        when = page.locator("dl.summary dt", has_text=re.compile("^Time$")).locator("xpath=following-sibling::dd[1]")
        expect(when).to_have_text(re.compile(rf"^{DAY} {CLOCK} \({DAY}T{CLOCK}\.\d{{3}}Z\)$"))

        tab.go("Dashboard")
        expect(page.locator("#dashboard-status")).to_have_text(re.compile(rf"^Updated {CLOCK}\b"))
        for text in page.locator("body").all_inner_texts():
            assert not re.search(r"\b\d{1,2}:\d{2}(:\d{2})? ?[AP]M\b", text), text
    finally:
        context.close()
    assert tab.problems == []


# --- the files themselves -------------------------------------------------------------------------------


def test_console_files_are_served_without_token_and_data_is_not(daemon):
    base = daemon.admin_url
    expected = {"/ui/": "text/html; charset=utf-8", "/ui/app.js": "text/javascript; charset=utf-8",
                "/ui/style.css": "text/css; charset=utf-8",
                "/ui/vendor/chart.umd.min.js": "text/javascript; charset=utf-8",
                "/ui/vendor/LICENSE.chart.js": "text/plain; charset=utf-8"}
    for path, content_type in expected.items():
        status, headers, body = http("GET", base + path)
        assert (status, headers["Content-Type"]) == (200, content_type), path
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert body
        if path == "/ui/":
            assert "script-src 'self'" in headers["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
            assert b'<script type="module" src="app.js">' in body
            status, _, _ = http("GET", base + path, headers={"If-None-Match": headers["ETag"]})
            assert status == 304
    assert b"Chart.js v4" in http("GET", base + "/ui/vendor/chart.umd.min.js")[2][:200]
    assert b"MIT License" in http("GET", base + "/ui/vendor/LICENSE.chart.js")[2]
    status, headers, body = http("HEAD", base + "/ui/app.js")
    assert (status, body, int(headers["Content-Length"])) == (200, b"", (UI / "app.js").stat().st_size)
    status, headers, _ = http("GET", base + "/ui/nothing-here.js")
    assert (status, headers["Content-Type"]) == (404, "text/plain; charset=utf-8")
    assert http("POST", base + "/ui/", raw=b"x")[0] == 405
    # the data stays behind the token
    for path in ("/apis", "/gateway", "/analytics?last=60", "/logs?last=60"):
        assert http("GET", base + path)[0] == 401, path
    status, gateway = daemon.admin("GET", "/gateway")
    assert status == 200 and gateway["publicUrl"] is None
    assert [(x["scheme"], x["host"], x["port"]) for x in gateway["listeners"]] == [
        ("http", "127.0.0.1", daemon.ports["gateway"][0])]
    status, summary = daemon.admin("GET", "/analytics?last=60")
    assert status == 200 and round(summary["to"] - summary["from"]) == 60
    for query, message in [("last=0", "last must be a number of seconds"),
                           ("last=60&from=1", "give from or last, not both")]:
        status, body = daemon.admin("GET", f"/logs?{query}")
        assert status == 400 and body["field"] == "last" and body["error"].startswith(message)


def test_every_console_file_is_package_data():
    config = ConfigParser()
    config.read(REPO / "setup.cfg")
    patterns = [p.strip() for p in config["options.package_data"]["mcpgated.admin"].split(",")]
    files = [str(p.relative_to(UI.parent)) for p in UI.rglob("*") if p.is_file()]
    assert "ui/vendor/chart.umd.min.js" in files and "ui/vendor/LICENSE.chart.js" in files
    missing = [f for f in files if not any(fnmatch.fnmatch(f, p) and f.count("/") == p.count("/")
                                           for p in patterns)]
    assert missing == []
    manifest = (REPO / "MANIFEST.in").read_text()
    assert "recursive-include mcpgated/admin/ui" in manifest
