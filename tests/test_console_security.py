"""
Security in the web console (headless Chromium, tests/test_console.py's
browser and tab helpers; one daemon and one browser for the module): plan
settings, rate limits, access-control rules, the backend credential, the
public URL and the OAuth relay edited on the API page; applications,
subscriptions and keys; and "what does this consumer see" against a real
server-everything, checked against what the official SDK client gets
through the gateway.

With MCPGATED_UPDATE_DOCS=1 the screenshots of the new pages also go to
docs/ (the README shows them).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3

from typing import Any, Dict, Iterator, List, Set

import pytest
from mcp import Client
from playwright.sync_api import expect

from tests.support import REPO, Daemon, api_definition, http
from tests.test_console import ARTIFACTS, Console, browser, run_mcp, table_rows

__all__ = ["browser"]

CLIENT_SECRET = "introspection-secret-5f2a"
BACKEND_SECRET = "Bearer backend-secret-91c3"
DOCS = REPO / "docs"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("console-security")).start()
    yield d
    if d.proc is not None and d.proc.popen.poll() is None:
        d.stop()


@pytest.fixture
def console(browser: Any, daemon: Daemon, request: pytest.FixtureRequest) -> Iterator[Console]:
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  permissions=["clipboard-read", "clipboard-write"])
    context.set_default_timeout(15_000)
    tab = Console(context.new_page(), daemon, request.node.name.removeprefix("test_"))
    yield tab
    context.close()
    assert tab.problems == []


def docs_shot(console: Console, what: str, name: str, part: Any = None) -> None:
    """
    A screenshot of the page (or of one C{part} of it) in test-artifacts/,
    and, with MCPGATED_UPDATE_DOCS=1, in docs/ as C{name}.
    """
    console.shot(what)
    if part is not None:
        part.screenshot(path=str(ARTIFACTS / f"{console.name}-{what}.png"))
    if os.environ.get("MCPGATED_UPDATE_DOCS") == "1":
        shutil.copyfile(ARTIFACTS / f"{console.name}-{what}.png", DOCS / name)


def create(daemon: Daemon, body: Dict[str, Any]) -> Dict[str, Any]:
    status, api = daemon.admin("POST", "/apis", body)
    assert status == 201, api
    return api


def deploy(daemon: Daemon, api_id: str) -> None:
    status, body = daemon.admin("POST", f"/apis/{api_id}/_deploy")
    assert status == 200, body


def stored(daemon: Daemon, api_id: str) -> Dict[str, Any]:
    """
    The definition as the store holds it, secrets included (the admin API
    shows them masked).
    """
    db = sqlite3.connect(f"file:{daemon.folder / 'data' / 'mcpgated.db'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT definition FROM apis WHERE id = ?", (api_id,)).fetchone()
    finally:
        db.close()
    definition: Dict[str, Any] = json.loads(row[0])
    return definition


PLANS: List[Dict[str, Any]] = [
    {"name": "Keyless", "security": "KEY_LESS"},
    {"name": "Gold", "security": "API_KEY"},
    {"name": "Tokens", "security": "JWT",
     "configuration": {"issuer": "https://idp.example", "jwksUrl": "https://idp.example/jwks"}},
    {"name": "Partner", "security": "OAUTH2",
     "configuration": {"introspectionUrl": "https://idp.example/introspect", "clientId": "gw",
                       "clientSecret": CLIENT_SECRET,
                       "authorizationServers": ["https://idp.example"]}},
]


def plan_group(page: Any, number: int) -> Any:
    return page.get_by_role("group", name=f"Plan {number}", exact=True)


def test_plan_settings_rules_and_backend_security_are_saved_from_the_api_page(
        console: Console, everything: int) -> None:
    daemon = console.daemon
    api = create(daemon, api_definition("/secured", f"http://127.0.0.1:{everything}/mcp", PLANS))
    page = console.page
    console.sign_in()
    console.open(f"#/apis/{api['id']}")
    expect(page.get_by_role("heading", level=1)).to_contain_text("secured")

    # the stored client secret is never shown back, not even masked in a field
    partner = plan_group(page, 4)
    secret = partner.get_by_label("Client secret")
    expect(secret).to_have_value("")
    expect(secret).to_have_attribute("placeholder", "stored (hidden): type to replace")
    assert CLIENT_SECRET not in page.content()

    gold = plan_group(page, 2)
    expect(gold.get_by_label("API key header")).to_have_value("X-Gravitee-Api-Key")
    gold.get_by_label("API key header").fill("X-Key")
    gold.get_by_label("API key query parameter").fill("key")
    gold.get_by_label("Requests per period").fill("100")
    gold.get_by_label("Tool calls per period").fill("5")
    gold.get_by_label("Calls per tool").fill("echo=2")
    gold.get_by_label("Period (seconds)").fill("30")
    gold.get_by_label("Rules (JSON list)").fill('[{"tools": ["get-sum"]}]')

    tokens = plan_group(page, 3)
    expect(tokens.get_by_label("Issuer")).to_have_value("https://idp.example")
    tokens.get_by_label("Audience").fill("https://gw.example/secured")
    tokens.get_by_label("Required scopes").fill("mcp, files:read")
    partner.get_by_label("Client id").fill("gateway-2")  # the secret field left empty

    # the security type decides which settings there are
    keyless = plan_group(page, 1)
    keyless.get_by_label("Security").select_option("API_KEY")
    expect(keyless.get_by_label("API key header")).to_have_value("")
    keyless.get_by_label("Security").select_option("KEY_LESS")
    expect(keyless.get_by_label("API key header")).to_have_count(0)

    security = page.get_by_role("group", name="Security", exact=True)
    security.get_by_label("Rules (JSON list)").fill('[{"tools": ["echo"]}]')
    security.get_by_label("Dry run: let everything through, mark what would be denied").check()
    security.get_by_label("Backend credential header").fill("Authorization")
    security.get_by_label("Backend credential value").fill(BACKEND_SECRET)
    security.get_by_label("Public URL").fill("https://gw.example")
    security.get_by_label("Relay the backend's OAuth (challenges and protected-resource metadata)").check()
    security.get_by_label("Serve the backend's authorization-server metadata at the root (older clients)").check()
    console.button("Save").click()
    expect(console.banner()).to_contain_text("Saved.")

    status, saved = daemon.admin("GET", f"/apis/{api['id']}")
    assert status == 200
    plans = {plan["name"]: plan for plan in saved["plans"]}
    assert plans["Keyless"].get("configuration", {}) == {}
    assert plans["Gold"]["configuration"] == {"header": "X-Key", "queryParam": "key"}
    assert plans["Gold"]["rateLimit"] == {"requests": 100, "toolCalls": 5, "perTool": {"echo": 2},
                                          "periodSeconds": 30, "scope": "subscription"}
    assert plans["Gold"]["acl"]["rules"] == [{"tools": ["get-sum"]}]
    assert plans["Tokens"]["configuration"]["audience"] == ["https://gw.example/secured"]
    assert plans["Tokens"]["configuration"]["requiredScopes"] == ["mcp", "files:read"]
    assert plans["Partner"]["configuration"]["clientId"] == "gateway-2"
    assert plans["Partner"]["configuration"]["clientSecret"] == "********"
    assert saved["acl"] == {"rules": [{"tools": ["echo"]}], "dryRun": True}
    assert saved["backendAuth"] == {"header": "Authorization", "value": "********",
                                    "forwardClientToken": False}
    assert saved["publicUrl"] == "https://gw.example"
    assert saved["oauth"] == {"relay": True, "proxyAuthorizationServerDiscovery": True}
    # the secrets: the stored one kept, the new one stored as typed
    raw = stored(daemon, api["id"])
    assert raw["plans"][3]["configuration"]["clientSecret"] == CLIENT_SECRET
    assert raw["backendAuth"]["value"] == BACKEND_SECRET

    # the page drawn again shows what was saved, and neither secret
    expect(plan_group(page, 2).get_by_label("Requests per period")).to_have_value("100")
    expect(page.get_by_label("Backend credential value")).to_have_value("")
    content = page.content()
    assert CLIENT_SECRET not in content and BACKEND_SECRET not in content
    docs_shot(console, "plan", "console-plan.png", plan_group(page, 2))
    docs_shot(console, "api-security", "console-security.png",
              page.get_by_role("group", name="Security", exact=True))


def test_field_errors_show_next_to_the_field_the_api_names(console: Console,
                                                          everything: int) -> None:
    daemon = console.daemon
    api = create(daemon, api_definition("/errors", f"http://127.0.0.1:{everything}/mcp", PLANS))
    page = console.page
    console.sign_in()
    console.open(f"#/apis/{api['id']}")
    console.expected_statuses.append(400)

    tokens = plan_group(page, 3)
    tokens.get_by_label("JWKS URL").fill("idp.example/jwks")
    console.button("Save").click()
    expect(page.locator("#plan-2-jwksUrl-error")).to_have_text(
        "plans[2].configuration.jwksUrl must be an http(s) URL")
    expect(tokens.get_by_label("JWKS URL")).to_be_focused()
    expect(console.banner()).to_contain_text("field plans[2].configuration.jwksUrl")
    tokens.get_by_label("JWKS URL").fill("https://idp.example/jwks")

    # an error inside a rule is shown at the rules it belongs to
    gold = plan_group(page, 2)
    gold.get_by_label("Rules (JSON list)").fill('[{"tools": "echo"}]')
    console.button("Save").click()
    expect(page.locator("#plan-1-acl-rules-error")).to_have_text(
        "plans[1].acl.rules[0].tools must be a list of non-empty strings")
    expect(gold.get_by_label("Rules (JSON list)")).to_have_attribute("aria-invalid", "true")

    # rules that are not JSON never leave the browser
    gold.get_by_label("Rules (JSON list)").fill('[{"tools": ["echo"]')
    console.button("Save").click()
    expect(page.locator("#plan-1-acl-rules-error")).to_contain_text(
        "plans[1].acl.rules is not valid JSON")

    gold.get_by_label("Rules (JSON list)").fill("")
    gold.get_by_label("Tool calls per period").fill("-1")
    console.button("Save").click()
    expect(page.locator("#plan-1-rate-tools-error")).to_have_text(
        "plans[1].rateLimit.toolCalls must be a whole number, 0 or more")

    page.get_by_label("Public URL").fill("ftp://gw.example")
    gold.get_by_label("Tool calls per period").fill("")
    console.button("Save").click()
    expect(page.locator("#api-public-url-error")).to_contain_text(
        "publicUrl must be an absolute http:// or https:// URL")
    status, unchanged = daemon.admin("GET", f"/apis/{api['id']}")
    assert unchanged["publicUrl"] is None and unchanged["plans"][2]["configuration"]["jwksUrl"] \
        == "https://idp.example/jwks"


def _initialize(daemon: Daemon, path: str, key: str) -> int:
    status, _, _ = http("POST", daemon.gateway + path, {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "1"}}},
        {"Accept": "application/json, text/event-stream", "X-Key": key})
    return status


def _keys(daemon: Daemon, api_id: str, sid: str) -> Dict[str, str]:
    status, body = daemon.admin("GET", f"/apis/{api_id}/subscriptions/{sid}/keys")
    assert status == 200
    return {key["prefix"]: key["status"] for key in body["data"]}


def test_applications_subscriptions_and_keys(console: Console, everything: int) -> None:
    daemon = console.daemon
    api = create(daemon, api_definition("/keyed", f"http://127.0.0.1:{everything}/mcp", [
        {"name": "Gold", "security": "API_KEY", "configuration": {"header": "X-Key"}}]))
    deploy(daemon, api["id"])
    page = console.page
    console.sign_in()
    console.open(f"#/apis/{api['id']}")
    page.get_by_role("link", name="Subscriptions", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Subscriptions of keyed")
    expect(page.get_by_text("No subscriptions yet.")).to_be_visible()

    page.get_by_label("Application name").fill("Billing bot")
    page.get_by_label("Application description").fill("Runs invoices")
    console.button("Create application").click()
    expect(console.banner()).to_contain_text("Created the application “Billing bot”.")
    apps = table_rows(page.get_by_role("table", name="Applications"))
    assert ["Billing bot", "Runs invoices"] == [c for c in apps[-1][:2]]

    page.get_by_label("Application", exact=True).select_option(label="Billing bot")
    page.get_by_label("Plan", exact=True).select_option("Gold")
    console.button("Subscribe").click()
    expect(console.banner()).to_contain_text("Subscribed “Billing bot” to the plan Gold.")
    status, subs = daemon.admin("GET", f"/apis/{api['id']}/subscriptions")
    sub = subs["data"][0]
    assert (sub["applicationName"], sub["plan"], sub["status"]) == ("Billing bot", "Gold", "ACCEPTED")
    card = page.get_by_role("region", name="Subscription of Billing bot to Gold")
    expect(card.get_by_text("No keys yet.")).to_be_visible()

    # issued: shown once, copied, and it opens the API on the gateway
    card.get_by_role("button", name="Issue key", exact=True).click()
    issued = page.get_by_role("region", name="New API key")
    expect(issued).to_contain_text("Shown once")
    key = issued.get_by_label("New API key").input_value()
    assert len(key) > 20
    issued.get_by_role("button", name="Copy key").click()
    expect(issued.get_by_role("status")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == key
    docs_shot(console, "issued", "console-subscriptions.png")
    assert _keys(daemon, api["id"], sub["id"]) == {key[:6]: "ACTIVE"}
    assert _initialize(daemon, "/keyed", key) == 200
    page.reload()
    expect(page.get_by_role("region", name="Subscription of Billing bot to Gold")).to_be_visible()
    assert key not in page.content()  # once only
    expect(page.get_by_role("region", name="New API key")).to_have_count(0)

    # rotated with no grace: the old key stops at once, the new one works
    card = page.get_by_role("region", name="Subscription of Billing bot to Gold")
    card.get_by_label("Old keys keep working (seconds)").fill("0")
    card.get_by_role("button", name="Rotate keys").click()
    expect(console.banner()).to_contain_text("the old ones stopped at once")
    new_key = page.get_by_role("region", name="New API key").get_by_label("New API key").input_value()
    assert new_key != key
    assert _keys(daemon, api["id"], sub["id"]) == {key[:6]: "EXPIRED", new_key[:6]: "ACTIVE"}
    assert _initialize(daemon, "/keyed", key) == 401
    assert _initialize(daemon, "/keyed", new_key) == 200
    rows = table_rows(card.get_by_role("table", name="Keys of Billing bot to Gold"))
    assert {(r[0], r[1]) for r in rows} == {(f"{key[:6]}…", "EXPIRED"), (f"{new_key[:6]}…", "ACTIVE")}

    # rotated with a grace period: both work meanwhile
    card.get_by_label("Old keys keep working (seconds)").fill("600")
    card.get_by_role("button", name="Rotate keys").click()
    expect(console.banner()).to_contain_text("keep working 600 s")
    third = page.get_by_role("region", name="New API key").get_by_label("New API key").input_value()
    assert _initialize(daemon, "/keyed", new_key) == 200 and _initialize(daemon, "/keyed", third) == 200

    # revoked, after a confirmation
    card.get_by_role("button", name=f"Revoke key {third[:6]}…").click()
    dialog = page.get_by_role("dialog", name=f"Revoke the key {third[:6]}…?")
    dialog.get_by_role("button", name="Revoke").click()
    expect(console.banner()).to_contain_text(f"Revoked the key {third[:6]}… of Billing bot to Gold.")
    assert _keys(daemon, api["id"], sub["id"])[third[:6]] == "REVOKED"
    assert _initialize(daemon, "/keyed", third) == 401

    # closed: every key stops
    card.get_by_role("button", name="Close subscription").click()
    page.get_by_role("dialog", name="Close the subscription of Billing bot to Gold?") \
        .get_by_role("button", name="Close").click()
    expect(console.banner()).to_contain_text("Closed the subscription of Billing bot to Gold")
    expect(card.get_by_text("CLOSED", exact=True)).to_be_visible()
    expect(card.get_by_role("button", name="Issue key")).to_have_count(0)
    status, closed = daemon.admin("GET", f"/apis/{api['id']}/subscriptions/{sub['id']}")
    assert closed["status"] == "CLOSED"
    assert set(_keys(daemon, api["id"], sub["id"]).values()) <= {"EXPIRED", "REVOKED"}
    assert _initialize(daemon, "/keyed", new_key) == 401


def _through_gateway(url: str, headers: Dict[str, str] | None = None) -> Dict[str, Set[str]]:
    seen: Dict[str, Set[str]] = {}

    async def work(client: Client) -> None:
        seen["tools"] = {t.name for t in (await client.list_tools()).tools}
        seen["prompts"] = {p.name for p in (await client.list_prompts()).prompts}
        seen["resources"] = {str(r.uri) for r in (await client.list_resources()).resources}

    run_mcp(url, work, headers)
    return seen


def _shown(page: Any, label: str) -> Dict[str, bool]:
    rows = table_rows(page.get_by_role("table", name=label, exact=True))
    return {row[0]: row[3] == "Allowed" for row in rows}


def test_consumer_view_lists_what_the_rules_allow(console: Console, everything: int) -> None:
    daemon = console.daemon
    status, app = daemon.admin("POST", "/applications", {"name": "Reporter"})
    assert status == 201
    api = create(daemon, api_definition(
        "/viewed", f"http://127.0.0.1:{everything}/mcp",
        [{"name": "Keyless", "security": "KEY_LESS"},
         {"name": "Gold", "security": "API_KEY",
          "acl": {"rules": [{"tools": ["get-sum"]},
                            {"tools": ["get-env"], "applications": [app["id"]]}]}}],
        acl={"rules": [{"tools": ["echo"]}, {"prompts": ["simple-prompt"]},
                       {"resources": ["demo://resource/static/document/architecture.md"]}]}))
    deploy(daemon, api["id"])
    page = console.page
    console.sign_in()
    console.open(f"#/apis/{api['id']}")
    page.get_by_role("link", name="Consumer view", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("What consumers of viewed see")

    page.get_by_label("Plan", exact=True).select_option("Keyless")
    console.button("Show what this consumer sees").click()
    expect(page.locator("#preview-summary")).to_have_text("3 access-control rules apply to Keyless.")
    expect(page.get_by_role("table", name="Tools", exact=True)).to_be_visible()
    tools = _shown(page, "Tools")
    # every tool of the backend is listed, the rules decide which are visible
    assert len(tools) > 5 and {"echo", "get-sum", "get-env"} <= set(tools)
    real = _through_gateway(daemon.gateway + "/viewed")
    assert {name for name, ok in tools.items() if ok} == real["tools"] == {"echo"}
    assert {name for name, ok in _shown(page, "Prompts").items() if ok} == real["prompts"]
    assert {name for name, ok in _shown(page, "Resources").items() if ok} == real["resources"]
    expect(page.get_by_role("heading", name="Tools: 1 of", exact=False)).to_be_visible()

    # the plan's rules add to the API's; a rule for one application only
    page.get_by_label("Plan", exact=True).select_option("Gold")
    console.button("Show what this consumer sees").click()
    expect(page.locator("#preview-summary")).to_have_text("5 access-control rules apply to Gold.")
    expect(page.get_by_role("heading", name="Tools: 2 of", exact=False)).to_be_visible()
    assert {n for n, ok in _shown(page, "Tools").items() if ok} == {"echo", "get-sum"}
    page.get_by_label("Application", exact=True).select_option(label="Reporter")
    console.button("Show what this consumer sees").click()
    expect(page.locator("#preview-summary")).to_have_text("5 access-control rules apply to Gold, Reporter.")
    expect(page.get_by_role("heading", name="Tools: 3 of", exact=False)).to_be_visible()
    assert {n for n, ok in _shown(page, "Tools").items() if ok} == {"echo", "get-sum", "get-env"}
    # and the gateway agrees, for that application's key
    status, sub = daemon.admin("POST", f"/apis/{api['id']}/subscriptions",
                               {"application": app["id"], "plan": "Gold"})
    status, key = daemon.admin("POST", f"/apis/{api['id']}/subscriptions/{sub['id']}/keys")
    real = _through_gateway(daemon.gateway + "/viewed", {"X-Gravitee-Api-Key": key["key"]})
    assert real["tools"] == {"echo", "get-sum", "get-env"}
    docs_shot(console, "preview", "console-preview.png")


def test_consumer_view_says_when_the_backend_cannot_be_listed(console: Console) -> None:
    daemon = console.daemon
    api = create(daemon, api_definition("/gone", "http://127.0.0.1:9/mcp"))
    page = console.page
    console.sign_in()
    console.open(f"#/apis/{api['id']}/preview")
    console.expected_statuses.append(502)
    console.button("Show what this consumer sees").click()
    expect(console.banner()).to_contain_text(
        "Listing what the consumer sees failed: cannot list the backend http://127.0.0.1:9/mcp: "
        "the backend did not answer initialize")
    expect(page.get_by_role("table")).to_have_count(0)


def test_docs_screenshots_exist() -> None:
    for name in ("console-plan.png", "console-security.png", "console-subscriptions.png",
                 "console-preview.png"):
        assert (DOCS / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
