"""
mcpgatedctl (mcpgated.ctl) against real daemons: the installed entry point
as a subprocess where the installation and the process matter (connection
from the environment and the ports file, exit codes, --follow), main(argv)
in process elsewhere.

Two daemons for the module: "source" (what is exported) and "target" (what
files are imported into and applied to). Each test uses context paths and
application names of its own; the prune test checks the whole target.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
import yaml

from mcpgated.admin import export as admin_export
from mcpgated.keys import hash_key
from mcpgated.ctl import client as ctl_client, documents, export, logs, main as ctl_main, reconcile
from tests.daemon_helpers import ACCEPT, INITIALIZE, UNREACHABLE
from tests.support import BIN, Daemon, Proc, http, running

CTL = BIN / "mcpgatedctl"
OAUTH2 = {"name": "Partners", "security": "OAUTH2", "configuration": {
    "introspectionUrl": "http://127.0.0.1:1/introspect", "clientId": "gateway",
    "clientSecret": "introspection-s3cret", "authorizationServers": ["http://127.0.0.1:1"]}}
BACKEND_SECRET = "backend-s3cret"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    yield from running(Daemon(tmp_path_factory.mktemp("source")))


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    yield from running(Daemon(tmp_path_factory.mktemp("target")))


def token_file(daemon: Daemon) -> str:
    path = daemon.folder / "ctl.token"
    path.write_text(daemon.token + "\n")
    return str(path)


def run(daemon: Daemon, capsys: pytest.CaptureFixture[str], *argv: str) -> Tuple[int, str, str]:
    """
    main(argv) in process: (exit code, stdout, stderr).
    """
    code = ctl_main.main(["--admin-url", daemon.admin_url, "--token-file", token_file(daemon),
                          *argv], environ={})
    out, err = capsys.readouterr()
    return code, out, err


def admin_ok(daemon: Daemon, method: str, path: str, body: Any = None) -> Any:
    status, answer = daemon.admin(method, path, body)
    assert status in (200, 201, 204), (method, path, status, answer)
    return answer


def by_path(daemon: Daemon) -> Dict[str, Dict[str, Any]]:
    return {api["contextPath"]: api for api in admin_ok(daemon, "GET", "/apis")["data"]}


def stored(daemon: Daemon, context_path: str) -> Dict[str, Any]:
    """
    The stored definition with its secrets (the admin API's _export).
    """
    return admin_ok(daemon, "GET", f"/apis/{by_path(daemon)[context_path]['id']}/_export")["definition"]


def open_subscriptions(daemon: Daemon, context_path: str) -> List[Tuple[str, str]]:
    api_id = by_path(daemon)[context_path]["id"]
    return sorted((s["applicationName"], s["plan"])
                  for s in admin_ok(daemon, "GET", f"/apis/{api_id}/subscriptions")["data"]
                  if s["status"] == "ACCEPTED")


def application(daemon: Daemon, name: str) -> str:
    for app in admin_ok(daemon, "GET", "/applications")["data"]:
        if app["name"] == name:
            return str(app["id"])
    return str(admin_ok(daemon, "POST", "/applications", {"name": name})["id"])


def publish(daemon: Daemon, body: Dict[str, Any], deploy: bool = True) -> str:
    api_id = str(admin_ok(daemon, "POST", "/apis", body)["id"])
    if deploy:
        admin_ok(daemon, "POST", f"/apis/{api_id}/_deploy")
    return api_id


def secured_api(context_path: str, name: str) -> Dict[str, Any]:
    """
    An API with what an export must carry: an API_KEY plan with a rate
    limit and rules, an OAUTH2 plan with a secret, API rules, a backend
    credential.
    """
    return {
        "name": name, "version": "2.1", "description": "exported", "contextPath": context_path,
        "backend": UNREACHABLE,
        "plans": [{"name": "Gold", "security": "API_KEY",
                   "rateLimit": {"requests": 10, "toolCalls": 5, "periodSeconds": 60},
                   "acl": {"rules": [{"tools": ["echo"]}]}},
                  OAUTH2],
        "acl": {"rules": [{"tools": ["get-*"], "plans": ["Gold"]}], "dryRun": True},
        "backendAuth": {"header": "X-Backend-Key", "value": BACKEND_SECRET},
    }


def write(path: Path, document: Dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return str(path)


def keyless(context_path: str, name: str, **fields: Any) -> Dict[str, Any]:
    body = {"name": name, "version": "1.0", "contextPath": context_path, "backend": UNREACHABLE,
            "plans": [{"name": "Open", "security": "KEY_LESS"}]}
    body.update(fields)
    return body


# --- the installed command -----------------------------------------------------------


def test_the_installed_command_lists_apis_with_the_token_from_the_environment(source: Daemon):
    assert CTL.exists(), "pip install -e . (make's install step) installs bin/mcpgatedctl"
    publish(source, keyless("/listed", "Listed"))
    # the admin port from the daemon's ports file, the token from the environment
    proc = Proc([str(CTL), "--ports-file", str(source.folder / "run" / "ports.json"), "apis", "list"],
                env={"MCPGATED_ADMIN_TOKEN": source.token, "MCPGATED_ADMIN_URL": ""})
    assert proc.popen.wait(30) == 0, proc.output
    proc.wait_for(r"^ID\s+STATE\s+DEPLOYMENT\s+CONTEXT PATH\s+NAME\s+VERSION$")
    proc.wait_for(r"STARTED\s+DEPLOYED\s+/listed\s+Listed\s+1\.0$")
    assert source.token not in "\n".join(proc.output)


def test_without_a_token_or_with_a_wrong_one_one_line_and_exit_1(source: Daemon, tmp_path: Path):
    proc = Proc([str(CTL), "--admin-url", source.admin_url, "apis", "list"],
                env={"MCPGATED_ADMIN_TOKEN": ""})
    assert proc.popen.wait(30) == 1
    proc.lines.get(timeout=10)
    assert proc.output == ["mcpgatedctl: error: no admin token: give --token-file FILE "
                           "(e.g. var/admin.token) or set MCPGATED_ADMIN_TOKEN"]
    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-the-token")
    proc = Proc([str(CTL), "--admin-url", source.admin_url, "--token-file", str(wrong), "apis", "list"])
    assert proc.popen.wait(30) == 1
    proc.lines.get(timeout=10)
    assert len(proc.output) == 1 and proc.output[0].startswith(
        "mcpgatedctl: error: the admin API answered 401: missing or wrong admin token"), proc.output
    assert "not-the-token" not in proc.output[0]
    # the token is never an argument
    for given in (["--token", "s3cret"], ["--token=s3cret"]):
        proc = Proc([str(CTL), *given, "apis", "list"])
        assert proc.popen.wait(30) == 2
        proc.lines.get(timeout=10)
        assert proc.output == ["mcpgatedctl: error: the token is never an argument (every user of "
                               "the machine sees arguments): use --token-file FILE or "
                               "MCPGATED_ADMIN_TOKEN"]


def test_an_unreachable_admin_api_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    token = tmp_path / "token"
    token.write_text("t")
    code = ctl_main.main(["--admin-url", "http://127.0.0.1:1", "--token-file", str(token),
                          "apis", "list"], environ={})
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.startswith("mcpgatedctl: error: cannot reach the admin API at http://127.0.0.1:1: ")
    assert err.count("\n") == 1


# --- export and import ---------------------------------------------------------------


def test_export_then_import_reproduces_the_apis_on_another_gateway(source: Daemon, target: Daemon,
                                                                    tmp_path: Path):
    api_id = publish(source, secured_api("/exported", "Exported"))
    publish(source, keyless("/exported-stopped", "Stopped"), deploy=False)
    acme = application(source, "Exporter Acme")
    admin_ok(source, "POST", f"/apis/{api_id}/subscriptions", {"application": acme, "plan": "Gold"})
    admin_ok(source, "POST", f"/apis/{api_id}/subscriptions", {"application": acme, "plan": "Partners"})

    exported = tmp_path / "gateway.yaml"
    proc = Proc([str(CTL), "--admin-url", source.admin_url, "--token-file", token_file(source),
                 "export", "--all", "--with-secrets", "-o", str(exported)])
    assert proc.popen.wait(30) == 0, proc.output
    assert exported.stat().st_mode & 0o077 == 0  # secrets inside: the operator's only
    proc = Proc([str(CTL), "--admin-url", target.admin_url, "--token-file", token_file(target),
                 "import", "-f", str(exported)])
    assert proc.popen.wait(30) == 0, proc.output
    proc.wait_for(r"^\+ application Exporter Acme: create$")
    proc.wait_for(r"^\+ api Exported 2\.1 \(/exported\): create$")
    proc.wait_for(r"^\+ api Exported 2\.1 \(/exported\): deploy and start$")
    proc.wait_for(r"^\+ subscription Exporter Acme -> /exported plan Gold: create$")

    there, here = by_path(source), by_path(target)
    for path in ("/exported", "/exported-stopped", "/listed"):
        assert stored(target, path) == stored(source, path), path  # secrets, plans, rules, limits
        assert (here[path]["state"], here[path]["deploymentState"]) == \
            (there[path]["state"], there[path]["deploymentState"]), path
    assert here["/exported"]["id"] != there["/exported"]["id"]
    assert open_subscriptions(target, "/exported") == [("Exporter Acme", "Gold"),
                                                       ("Exporter Acme", "Partners")]
    # what the gateway serves: the imported API answers (502: its backend is down) ...
    status, _, _ = http("POST", target.gateway + "/exported", INITIALIZE, ACCEPT)
    assert status == 401  # ... behind its plans: no credential, no entry
    status, _, _ = http("POST", target.gateway + "/exported-stopped", INITIALIZE, ACCEPT)
    assert status == 404

    # importing again creates nothing
    proc = Proc([str(CTL), "--admin-url", target.admin_url, "--token-file", token_file(target),
                 "import", "-f", str(exported)])
    assert proc.popen.wait(30) == 0
    proc.wait_for(r"^no changes: ")
    assert not [line for line in proc.output if line.startswith(("+", "~", "-"))], proc.output


def test_secrets_are_masked_unless_asked_and_keys_never_exported(source: Daemon,
                                                                 capsys: pytest.CaptureFixture[str]):
    api_id = publish(source, secured_api("/masked", "Masked"))
    holder = application(source, "Key Holder")
    sub = admin_ok(source, "POST", f"/apis/{api_id}/subscriptions", {"application": holder, "plan": "Gold"})
    key = admin_ok(source, "POST", f"/apis/{api_id}/subscriptions/{sub['id']}/keys")

    code, masked, err = run(source, capsys, "export", "--api", "/masked")
    assert code == 0, err
    document = yaml.safe_load(masked)
    [api] = document["apis"]
    assert api["plans"][1]["configuration"]["clientSecret"] == "********"
    assert api["backendAuth"]["value"] == "********"
    assert document["applications"] == [{"name": "Key Holder", "description": ""}]
    assert api["subscriptions"] == [{"application": "Key Holder", "plan": "Gold"}]
    assert "note: 2 secret(s) shown as ********" in err
    assert "note: API keys are not exported" in err

    code, clear, err = run(source, capsys, "export", "--api", api_id, "--with-secrets", "--format", "json")
    assert code == 0, err
    [api] = json.loads(clear)["apis"]
    assert api["plans"][1]["configuration"]["clientSecret"] == "introspection-s3cret"
    assert api["backendAuth"]["value"] == BACKEND_SECRET
    assert "note: API keys are not exported" in err
    for text in (masked, clear):
        assert key["key"] not in text and key["prefix"] not in text
        assert hash_key(key["key"]) not in text
        assert "hash" not in json.dumps(yaml.safe_load(text)).lower()
    assert "introspection-s3cret" not in masked and BACKEND_SECRET not in masked

    # the stored secret stays where a masked export is applied
    path = source.folder / "masked.yaml"
    path.write_text(masked)
    code, out, err = run(source, capsys, "apply", "-f", str(path))
    assert (code, out) == (0, f"no changes: the gateway already has what {path} says\n"), err
    assert stored(source, "/masked")["backendAuth"]["value"] == BACKEND_SECRET


def test_the_export_endpoint_needs_the_token_and_is_documented(source: Daemon):
    api_id = publish(source, keyless("/export-endpoint", "Endpoint"))
    status, body = source.admin("GET", f"/apis/{api_id}/_export", token="wrong")
    assert status == 401 and "secret" not in json.dumps(body)
    assert "/apis/{api_id}/_export" in admin_export.openapi_paths()
    status, _, data = http("GET", source.admin_url + "/openapi.json")
    assert "/apis/{api_id}/_export" in json.loads(data)["paths"]


# --- apply ---------------------------------------------------------------------------


def test_apply_twice_changes_nothing_and_a_dry_run_changes_nothing(target: Daemon, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]):
    document = {"version": 1,
                "apis": [{**keyless("/applied", "Applied"),
                          "plans": [{"name": "Open", "security": "KEY_LESS"},
                                    {"name": "Keys", "security": "API_KEY",
                                     "rateLimit": {"requests": 100, "periodSeconds": 60}}],
                          "subscriptions": [{"application": "Applier", "plan": "Keys"}]}],
                "applications": [{"name": "Applier", "description": "apply tests"}]}
    path = write(tmp_path / "apis.yaml", document)
    before = admin_ok(target, "GET", "/apis")

    code, out, err = run(target, capsys, "apply", "--dry-run", "-f", path)
    assert code == 0, err
    assert out.splitlines() == [
        "+ application Applier: create",
        "+ api Applied 1.0 (/applied): create",
        "+ api Applied 1.0 (/applied): deploy and start",
        "+ subscription Applier -> /applied plan Keys: create",
        "dry run: 4 to create, 0 to update, 0 to remove; nothing was changed"]
    assert admin_ok(target, "GET", "/apis") == before
    assert "Applier" not in json.dumps(admin_ok(target, "GET", "/applications"))

    code, out, err = run(target, capsys, "apply", "-f", path)
    assert code == 0, err
    assert out.splitlines()[-1] == "done: 4 created, 0 updated, 0 removed"
    api = by_path(target)["/applied"]
    assert (api["state"], api["deploymentState"]) == ("STARTED", "DEPLOYED")
    assert open_subscriptions(target, "/applied") == [("Applier", "Keys")]

    code, out, err = run(target, capsys, "apply", "-f", path)
    assert (code, out) == (0, f"no changes: the gateway already has what {path} says\n")
    assert by_path(target)["/applied"]["updatedAt"] == api["updatedAt"]

    # an edit: the dry run shows it field by field and changes nothing
    document["apis"][0]["backend"] = "http://127.0.0.1:2/mcp"
    document["apis"][0]["plans"][1]["rateLimit"]["requests"] = 5
    write(tmp_path / "apis.yaml", document)
    code, out, err = run(target, capsys, "apply", "--dry-run", "-f", path)
    assert code == 0, err
    assert out.splitlines() == [
        "~ api Applied 1.0 (/applied): update the definition",
        '    backend: "http://127.0.0.1:1/mcp" -> "http://127.0.0.1:2/mcp"',
        "    plans[1].rateLimit.requests: 100 -> 5",
        "~ api Applied 1.0 (/applied): deploy (make the stored definition live)",
        "dry run: 0 to create, 2 to update, 0 to remove; nothing was changed"]
    assert by_path(target)["/applied"] == api

    code, out, err = run(target, capsys, "apply", "-f", path)
    assert code == 0, err
    api = by_path(target)["/applied"]
    assert api["deployed"]["backend"] == "http://127.0.0.1:2/mcp"
    assert api["deploymentState"] == "DEPLOYED"
    assert api["deployed"]["plans"][1]["rateLimit"]["requests"] == 5

    # the state the file asks for
    document["apis"][0]["state"] = "STOPPED"
    write(tmp_path / "apis.yaml", document)
    code, out, err = run(target, capsys, "apply", "-f", path)
    assert out.splitlines()[0] == "~ api Applied 1.0 (/applied): stop"
    assert by_path(target)["/applied"]["state"] == "STOPPED"
    code, out, err = run(target, capsys, "apply", "-f", path)
    assert out.startswith("no changes")


def test_a_masked_secret_cannot_create_an_api_elsewhere(source: Daemon, target: Daemon, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]):
    publish(source, secured_api("/masked-elsewhere", "Elsewhere"))
    code, masked, _ = run(source, capsys, "export", "--api", "/masked-elsewhere")
    path = tmp_path / "masked.yaml"
    path.write_text(masked)
    before = admin_ok(target, "GET", "/apis")
    code, out, err = run(target, capsys, "apply", "-f", str(path))
    assert code == 1 and out == ""
    assert err == ("mcpgatedctl: error: apis[0] Elsewhere 2.1 (/masked-elsewhere): "
                   "plans[1].configuration.clientSecret is required (the file has a secret masked as "
                   "********: export with --with-secrets or write the value in)\n")
    assert admin_ok(target, "GET", "/apis") == before


def test_prune_removes_what_the_file_does_not_name(target: Daemon, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]):
    kept = publish(target, keyless("/pruning/kept", "Kept"))
    gone = publish(target, {**keyless("/pruning/gone", "Gone"),
                            "plans": [{"name": "Keys", "security": "API_KEY"}]})
    leaver = application(target, "Leaver")
    admin_ok(target, "POST", f"/apis/{gone}/subscriptions", {"application": leaver, "plan": "Keys"})
    code, exported, err = run(target, capsys, "export", "--api", kept)
    path = tmp_path / "kept.yaml"
    path.write_text(exported)

    code, out, err = run(target, capsys, "apply", "-f", str(path))
    assert out.startswith("no changes"), out  # without --prune nothing is removed
    code, out, err = run(target, capsys, "apply", "--prune", "--dry-run", "-f", str(path))
    assert code == 0, err
    lines = out.splitlines()
    assert "- api Gone 1.0 (/pruning/gone): stop, close 1 subscription(s), delete" in lines
    assert "- application Leaver: delete (with its subscriptions and keys)" in lines
    assert not [line for line in lines if line.startswith(("+", "~"))], lines
    assert "/pruning/gone" in by_path(target)

    code, out, err = run(target, capsys, "apply", "--prune", "-f", str(path))
    assert code == 0, err
    assert list(by_path(target)) == ["/pruning/kept"]
    assert admin_ok(target, "GET", "/applications")["data"] == []
    status, _, _ = http("POST", target.gateway + "/pruning/gone", INITIALIZE, ACCEPT)
    assert status == 404
    code, out, err = run(target, capsys, "apply", "--prune", "-f", str(path))
    assert out.startswith("no changes")

    # a move under the old path: the old API goes first, or the new one would overlap it
    path.write_text(exported.replace("contextPath: /pruning/kept", "contextPath: /pruning/kept/v2"))
    code, out, err = run(target, capsys, "apply", "--prune", "-f", str(path))
    assert code == 0, err
    assert out.splitlines() == ["- api Kept 1.0 (/pruning/kept): stop, delete",
                                "+ api Kept 1.0 (/pruning/kept/v2): create",
                                "+ api Kept 1.0 (/pruning/kept/v2): deploy and start",
                                "done: 2 created, 0 updated, 1 removed"]
    assert [(p, a["state"]) for p, a in by_path(target).items()] == [("/pruning/kept/v2", "STARTED")]


# --- errors --------------------------------------------------------------------------


def test_a_bad_file_is_one_line_naming_the_place(target: Daemon, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]):
    cases = {
        "apis:\n  - name: x\n   bad: indent\n": "malformed YAML: line 3, column 4",
        "{\"apis\": [}": "malformed JSON: ",
        "apis: {}\n": "apis must be a list",
        "apis: []\nextra: 1\n": "extra is not a known top-level field",
        "apis:\n- {name: Wrong, version: '1', contextPath: /wrong, backend: 'http://h/',"
        " plans: [{name: P, security: BASIC}]}\n":
            "apis[0] Wrong 1 (/wrong): plans[0].security must be one of ",
        "apis:\n- {name: Number, version: 1.0, contextPath: /n, backend: 'http://h/',"
        " plans: [{name: P, security: KEY_LESS}]}\n":
            "apis[0] Number 1.0 (/n): version must be a string (quote it in YAML",
        "apis:\n- {name: NoPath, version: '1', backend: 'http://h/'}\n":
            "apis[0] (NoPath): contextPath is required",
        "apis:\n- {name: Sub, version: '1', contextPath: /s, backend: 'http://h/',"
        " plans: [{name: P, security: API_KEY}], subscriptions: [{application: Nobody, plan: P}]}\n":
            "apis[0] Sub 1 (/s): subscription to plan P: application 'Nobody' is neither",
        "apis:\n- {name: A, version: '1', contextPath: /same, backend: 'http://h/', plans: []}\n"
        "- {name: B, version: '1', contextPath: /same/, backend: 'http://h/', plans: []}\n":
            "apis[1] (B): contextPath /same is also apis[0]'s",
    }
    before = admin_ok(target, "GET", "/apis")
    for text, expected in cases.items():
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        code, out, err = run(target, capsys, "apply", "-f", str(path))
        assert code == 1 and out == "", (text, out)
        assert err.startswith("mcpgatedctl: error: ") and err.count("\n") == 1, err
        assert expected in err, (expected, err)
        if not expected.startswith("apis["):
            assert str(path) in err
    assert admin_ok(target, "GET", "/apis") == before


def test_a_refusal_of_the_admin_api_names_the_api_and_the_field(target: Daemon, tmp_path: Path):
    publish(target, keyless("/taken", "Taken"))
    path = write(tmp_path / "overlap.yaml", {"apis": [keyless("/taken/inner", "Inner")]})
    proc = Proc([str(CTL), "--admin-url", target.admin_url, "--token-file", token_file(target),
                 "apply", "-f", path])
    assert proc.popen.wait(30) == 1
    proc.lines.get(timeout=10)
    assert len(proc.output) == 1, proc.output
    assert proc.output[0].startswith(
        "mcpgatedctl: error: api Inner 1.0 (/taken/inner): create: the admin API answered 400 "
        "(contextPath): "), proc.output


# --- logs ----------------------------------------------------------------------------


def test_logs_follow_prints_new_exchanges(source: Daemon):
    api_id = publish(source, keyless("/followed", "Followed"))
    proc = Proc([str(CTL), "--admin-url", source.admin_url, "--token-file", token_file(source),
                 "logs", "--api", "/followed", "--follow", "--interval", "0.2"])
    try:
        status, _, _ = http("POST", source.gateway + "/followed", INITIALIZE, ACCEPT)
        assert status == 502  # nothing listens behind it: still an exchange
        proc.wait_for(r"Z Followed initialize - http_error 502 \d+ms 127\.0\.0\.1 mcpgated-tests$")
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo"}}
        http("POST", source.gateway + "/followed", call, ACCEPT)
        proc.wait_for(r" Followed tools/call echo http_error 502 ")
    finally:
        proc.kill()
    assert sum(" initialize " in line for line in proc.output) == 1, proc.output
    page = source.admin("GET", f"/apis/{api_id}/logs")[1]["data"]
    assert [logs.line(entry) for entry in reversed(page)] == proc.output


# --- the package's shape -------------------------------------------------------------


def test_the_ctl_package_uses_the_admin_api_and_value_code_only():
    allowed = {"mcpgated", "mcpgated.definitions", "mcpgated.model", "mcpgated.policy.plans",
               "mcpgated.subscriptions"}
    package = Path(ctl_main.__file__).parent
    found = set()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mcpgated"):
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("mcpgated"))
    assert {m for m in found if not m.startswith("mcpgated.ctl")} <= allowed
    assert {"twisted", "klein", "treq"}.isdisjoint(m.split(".")[0] for m in found)
    # the modules this file tests, by name
    assert {ctl_client.__name__, documents.__name__, export.__name__, reconcile.__name__} <= {
        f"mcpgated.ctl.{p.stem}" for p in package.glob("*.py")}


def test_field_diff_masks_secrets_and_names_fields():
    before = {"backend": "a", "plans": [{"name": "P", "configuration": {"clientSecret": "x"}}],
              "backendAuth": {"value": "old"}, "acl": {"rules": []}}
    after = {"backend": "b", "plans": [{"name": "P", "configuration": {"clientSecret": "y"}}],
             "backendAuth": {"value": "new"}, "acl": {"rules": [{"tools": ["a", "b"]}]}}
    assert reconcile.field_diff(before, after) == [
        'backend: "a" -> "b"',
        "plans[0].configuration.clientSecret: (secret changed)",
        "backendAuth.value: (secret changed)",
        'acl.rules: [] -> [{"tools": ["a", "b"]}]',
    ]
    # a plan added whole: its secret masked inside the value shown
    added = {**after, "plans": [*after["plans"], {"name": "Q", "configuration": {"clientSecret": "z"}}]}
    assert reconcile.field_diff(after, added) == [
        'plans[1]: (none) -> {"name": "Q", "configuration": {"clientSecret": "********"}}']
    assert reconcile.field_diff({"backendAuth": None}, {"backendAuth": {"header": "H", "value": "v"}}) == [
        'backendAuth: null -> {"header": "H", "value": "********"}']


def test_the_admin_url_comes_from_the_flag_the_environment_or_the_ports_file(tmp_path: Path):
    ports = tmp_path / "ports.json"
    ports.write_text('{"gateway": [1], "admin": [4242]}')
    env = {"MCPGATED_ADMIN_URL": "http://admin.example:9/"}
    assert ctl_client.admin_url("http://x:1", str(ports), env) == "http://x:1"
    assert ctl_client.admin_url(None, str(ports), env) == "http://admin.example:9"
    assert ctl_client.admin_url(None, str(ports), {}) == "http://127.0.0.1:4242"
    assert ctl_client.admin_url(None, None, {}) == "http://127.0.0.1:8083"
    ports.write_text("[]")
    with pytest.raises(ctl_client.CtlError, match="not the daemon's ports file"):
        ctl_client.admin_url(None, str(ports), {})
    with pytest.raises(ctl_client.CtlError, match="is not an http"):
        ctl_client.admin_url("file:///etc/passwd", None, {})
