"""
An API's MCP protocol versions in the web console (issue #16), in headless
Chromium (tests/test_console.py's browser and tab helpers; one daemon and one
browser for the module): the "Protocol versions" section of the API page
sets pass-through or the client versions and the backend's, says in one line
what the gateway does with the combination, saves C{protocol} in the
definition (what the admin API's GET then shows, and what a deploy makes the
gateway do), shows the admin API's refusals next to the section, and the
API's summary shows the settings read-only.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, Iterator, List

import pytest
from playwright.sync_api import expect

from tests.support import Daemon, api_definition, http
from tests.test_console import Console, browser

__all__ = ["browser"]

KNOWN = "2024-11-05, 2025-03-26, 2025-06-18, 2025-11-25, 2026-07-28"
ACCEPT = {"Accept": "application/json, text/event-stream"}
PASS_THROUGH = ("Every MCP version passes through: clients and the backend negotiate as they would "
                "without the gateway.")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("console-protocol")).start()
    yield d
    if d.proc is not None and d.proc.popen.poll() is None:
        d.stop()


@pytest.fixture
def console(browser: Any, daemon: Daemon, request: pytest.FixtureRequest) -> Iterator[Console]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    tab = Console(context.new_page(), daemon, request.node.name.removeprefix("test_"))
    yield tab
    context.close()
    assert tab.problems == []


def create(daemon: Daemon, path: str, backend: str, **fields: Any) -> Dict[str, Any]:
    status, api = daemon.admin("POST", "/apis", api_definition(path, backend, **fields))
    assert status == 201, api
    created: Dict[str, Any] = api
    return created


def fetched(daemon: Daemon, api_id: str) -> Dict[str, Any]:
    status, api = daemon.admin("GET", f"/apis/{api_id}")
    assert status == 200, api
    got: Dict[str, Any] = api
    return got


class Section:
    """
    The "Protocol versions" section of an API page, as a person uses it.
    """

    def __init__(self, page: Any) -> None:
        self.page = page
        self.group = page.get_by_role("group", name="Protocol versions", exact=True)
        self.explanation = page.locator("#api-protocol-explain")
        self.summary = page.locator("#api-protocol-summary")

    def pass_through(self) -> Any:
        return self.group.get_by_role("radio", name="Pass every version through", exact=True)

    def only(self) -> Any:
        return self.group.get_by_role("radio", name="Accept only these client versions", exact=True)

    def client(self, version: str) -> Any:
        return self.group.get_by_role("checkbox", name=version)

    def backend(self) -> Any:
        return self.group.get_by_label("Backend speaks", exact=True)

    def choose(self, clients: List[str], backend: str = "") -> None:
        self.only().check()
        for version in KNOWN.split(", "):
            self.client(version).set_checked(version in clients)
        self.backend().select_option(backend)


def open_api(console: Console, api_id: str) -> Section:
    console.sign_in()
    console.open(f"#/apis/{api_id}")
    expect(console.page.get_by_role("heading", level=1)).to_be_visible()
    return Section(console.page)


def save(console: Console) -> Dict[str, Any]:
    """
    Click Save; the definition the console sent.
    """
    page = console.page
    with page.expect_request(lambda r: r.method == "PUT" and "/apis/" in r.url) as sent:
        console.button("Save").click()
    body: Dict[str, Any] = sent.value.post_data_json
    return body


def test_versions_set_in_the_editor_are_saved_shown_and_deployed(console: Console, everything: int) -> None:
    daemon = console.daemon
    api = create(daemon, "/versions", f"http://127.0.0.1:{everything}/mcp")
    status, _ = daemon.admin("POST", f"/apis/{api['id']}/_deploy")
    assert status == 200
    section = open_api(console, api["id"])

    # a new API passes every version through; the lists are out of the way
    expect(section.summary).to_have_text("Every version passes through")
    expect(section.pass_through()).to_be_checked()
    expect(section.client("2025-06-18")).to_be_hidden()
    expect(section.backend()).to_be_hidden()
    expect(section.explanation).to_have_text(PASS_THROUGH)

    section.choose(["2025-06-18"])
    expect(section.explanation).to_have_text(
        "No bridging: clients speaking 2025-06-18 pass through; other versions are refused "
        "(an initialize proposing one is offered the newest listed version).")
    sent = save(console)
    assert sent["protocol"] == {"clientVersions": ["2025-06-18"], "backendVersion": None}
    expect(console.banner()).to_contain_text("Saved.")
    assert fetched(daemon, api["id"])["protocol"] == {"clientVersions": ["2025-06-18"], "backendVersion": None}

    # the page drawn again: the summary and the editor show what was saved; the gateway still
    # serves the deployed definition
    section = Section(console.page)
    expect(section.summary).to_have_text(
        "Clients 2025-06-18; backend what the client negotiates (deployed: Every version passes through)")
    expect(section.only()).to_be_checked()
    expect(section.client("2025-06-18")).to_be_checked()
    expect(section.client("2025-11-25")).not_to_be_checked()
    expect(section.backend()).to_have_value("")
    console.shot("saved")

    def initialize() -> str:
        status, _, answer = http("POST", daemon.gateway + "/versions", {
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "console-test", "version": "1"}}}, ACCEPT)
        assert status == 200, answer
        text = answer.decode()
        datas = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
        message = json.loads(text if text.lstrip().startswith("{") else [d for d in datas if d][-1])
        version: str = message["result"]["protocolVersion"]
        return version

    assert initialize() == "2025-11-25"  # server-everything's newest, passed through
    console.button("Deploy").click()
    expect(console.banner()).to_contain_text("Deployed")
    expect(section.summary).to_have_text("Clients 2025-06-18; backend what the client negotiates")
    assert initialize() == "2025-06-18"  # the gateway offered the version listed


def test_bridged_combinations_say_what_the_gateway_does(console: Console) -> None:
    daemon = console.daemon
    api = create(daemon, "/bridged", "http://127.0.0.1:1/mcp")
    section = open_api(console, api["id"])

    # handshake-era clients in front of a 2026-07-28 backend
    section.choose(["2025-06-18", "2025-11-25"], "2026-07-28")
    expect(section.explanation).to_have_text(
        "Handshake-era clients (2025-06-18 and 2025-11-25) are bridged to the 2026-07-28 backend: the gateway "
        "answers their initialize from its server/discover and keeps their sessions; other versions are "
        "refused (an initialize proposing one is offered the newest listed version).")
    section.client("2026-07-28").check()
    expect(section.explanation).to_contain_text(
        "keeps their sessions; 2026-07-28 clients pass through; other versions are refused")
    save(console)
    expect(console.banner()).to_contain_text("Saved.")
    assert fetched(daemon, api["id"])["protocol"] == {
        "clientVersions": ["2025-06-18", "2025-11-25", "2026-07-28"], "backendVersion": "2026-07-28"}
    section = Section(console.page)
    expect(section.summary).to_have_text(
        "Clients 2025-06-18, 2025-11-25, 2026-07-28; backend 2026-07-28: handshake-era clients bridged")

    # 2026-07-28 clients in front of a handshake-era backend
    section.choose(["2026-07-28"], "2025-11-25")
    expect(section.explanation).to_have_text(
        "2026-07-28 clients are bridged to the 2025-11-25 backend: the gateway checks their requests as a "
        "2026-07-28 server and keeps the backend sessions they need; other versions are refused.")
    section.client("2025-03-26").check()
    expect(section.explanation).to_contain_text(
        "sessions they need; 2025-03-26 clients pass through; other versions are refused (an initialize")
    console.shot("bridged")
    sent = save(console)
    # the versions stored first keep their order, the new one comes after
    assert sent["protocol"] == {"clientVersions": ["2026-07-28", "2025-03-26"], "backendVersion": "2025-11-25"}
    expect(console.banner()).to_contain_text("Saved.")
    assert fetched(daemon, api["id"])["protocol"] == sent["protocol"]
    expect(Section(console.page).summary).to_have_text(
        "Clients 2026-07-28, 2025-03-26; backend 2025-11-25: 2026-07-28 clients bridged")

    # the same era on both sides is not bridged
    section = Section(console.page)
    section.choose(["2026-07-28"], "2026-07-28")
    expect(section.explanation).to_have_text(
        "No bridging: clients speaking 2026-07-28 pass through to the 2026-07-28 backend; "
        "other versions are refused.")


def test_refusals_show_next_to_the_section(console: Console) -> None:
    daemon = console.daemon
    protocol = {"clientVersions": ["2025-11-25"], "backendVersion": None}
    api = create(daemon, "/refused", "http://127.0.0.1:1/mcp", protocol=protocol)
    section = open_api(console, api["id"])
    page = console.page
    console.expected_statuses.append(400)
    error = page.locator("#api-protocol-client-0-error")

    # no client version checked: refused in the browser, in the admin API's words
    section.client("2025-11-25").uncheck()
    expect(section.explanation).to_have_text("No client version is accepted: check at least one.")
    console.button("Save").click()
    message = f"protocol.clientVersions must be a non-empty list of versions from {KNOWN}"
    expect(error).to_have_text(message)
    expect(section.client("2024-11-05")).to_be_focused()
    expect(section.client("2024-11-05")).to_have_attribute("aria-invalid", "true")
    expect(console.banner()).to_contain_text(f"Error: Not saved: {message}")
    definition = {k: v for k, v in fetched(daemon, api["id"]).items()
                  if k not in ("id", "state", "createdAt", "updatedAt", "deployedAt", "deploymentState",
                               "needsRedeploy", "deployed")}
    status, body = daemon.admin("PUT", f"/apis/{api['id']}",
                                dict(definition, protocol={"clientVersions": [], "backendVersion": None}))
    assert (status, body) == (400, {"error": message, "field": "protocol.clientVersions"})  # same words
    assert fetched(daemon, api["id"])["protocol"] == protocol

    # what the admin API refuses is shown at the part of the section it names; the console cannot
    # send these, so the test alters its request on the way (the daemon's answer is its own)
    def altering(change: Callable[[Dict[str, Any]], None]) -> Callable[[Any], None]:
        def handler(route: Any) -> None:
            if route.request.method != "PUT":
                route.continue_()
                return
            body = route.request.post_data_json
            change(body["protocol"])
            route.continue_(post_data=json.dumps(body))
        return handler

    section.client("2025-11-25").check()
    page.route("**/apis/*", altering(lambda p: p.update(clientVersions=["2025-11-25", "2025-11-25"])))
    console.button("Save").click()
    twice = f"protocol.clientVersions[1] must be one of {KNOWN}, once"
    expect(error).to_have_text(twice)
    expect(console.banner()).to_contain_text(
        f"Error: Saving failed: {twice} (HTTP 400, field protocol.clientVersions[1])")
    page.unroute("**/apis/*")

    page.route("**/apis/*", altering(lambda p: p.update(backendVersion="2025-01-01")))
    console.button("Save").click()
    expect(page.locator("#api-protocol-backend-error")).to_have_text(
        f"protocol.backendVersion must be one of {KNOWN}")
    expect(error).to_be_empty()
    expect(section.backend()).to_be_focused()
    expect(section.backend()).to_have_attribute("aria-invalid", "true")
    console.shot("refused")
    page.unroute("**/apis/*")
    assert fetched(daemon, api["id"])["protocol"] == protocol


def test_clearing_back_to_pass_through_saves_null(console: Console) -> None:
    daemon = console.daemon
    protocol = {"clientVersions": ["2025-11-25", "2026-07-28"], "backendVersion": "2026-07-28"}
    api = create(daemon, "/cleared", "http://127.0.0.1:1/mcp", protocol=protocol)
    section = open_api(console, api["id"])
    expect(section.summary).to_have_text(
        "Clients 2025-11-25, 2026-07-28; backend 2026-07-28: handshake-era clients bridged")
    expect(section.only()).to_be_checked()
    expect(section.client("2025-11-25")).to_be_checked()
    expect(section.client("2026-07-28")).to_be_checked()
    expect(section.client("2025-06-18")).not_to_be_checked()
    expect(section.backend()).to_have_value("2026-07-28")

    section.pass_through().check()
    expect(section.explanation).to_have_text(PASS_THROUGH)
    expect(section.client("2025-11-25")).to_be_hidden()
    sent = save(console)
    assert sent["protocol"] is None
    expect(console.banner()).to_contain_text("Saved.")
    assert fetched(daemon, api["id"]).get("protocol") is None
    section = Section(console.page)
    expect(section.summary).to_have_text("Every version passes through")
    expect(section.pass_through()).to_be_checked()
