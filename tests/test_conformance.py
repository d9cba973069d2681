"""
The MCP conformance suite (npm @modelcontextprotocol/conformance 0.1.16,
server scenarios) run against one backend twice: directly, and through a
real mcpgated daemon. A transparent gateway must not lose anything, so every
scenario, and every scored check, that passes direct must pass through the
gateway too.

The backend is npm's @modelcontextprotocol/server-everything. The suite's
own reference server (examples/servers/typescript/everything-server.ts in
the conformance repository, 32/32 direct) ships in no npm package, so it
cannot be installed here. server-everything names its tools, prompts and
resources differently, so only some scenarios pass against it even direct;
the comparison is scenario by scenario, and the direct run must pass a
fixed core set so the test cannot pass vacuously.

MCPGATED_CONFORMANCE_BACKEND may name another backend command, e.g. a local
copy of the reference server: "/path/to/tsx /path/to/everything-server.ts".
It is started with PORT=0 and must print a line with "listening" or
"running on" once it listens; it is served at /mcp. (The reference server
sends its elicitation and sampling requests on the GET stream, which the
harness opens without waiting for it before calling the tool; a request sent
before the GET lands is dropped and the scenario times out after 60 s. Any
hop widens that race, so those scenarios can fail through the gateway now
and then, about 1 in 60 under load.)

Node >= 22 is needed by the suite; tests/npm (npm ci) installs it as the npm
"node" package, and its .bin goes first on PATH.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from tests.support import NODE_BIN, Daemon, Proc, listening_ports, start_everything

# by path: tests/npm also has 0.2.0-alpha.12 (as conformance-next), whose
# "conformance" bin npm install may link in place of this one
CONFORMANCE = NODE_BIN.parent / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
NODE22 = NODE_BIN / "node"
RUN_TIMEOUT = 80.0  # one whole suite run: a few seconds, plus room for one 60 s MCP timeout

# Scenarios the direct run must pass whatever the backend. server-everything
# 2026.8.31 passes 13 of the 32: these, plus tools-call-simple-text and
# tools-call-error, which pass against it only on a "tool test_... not found"
# isError result and so prove nothing, and are left out of the floor.
DIRECT_FLOOR = {
    "server-initialize",
    "logging-set-level",
    "ping",
    "tools-list",
    "server-sse-multiple-streams",
    "resources-list",
    "resources-subscribe",
    "resources-unsubscribe",
    "prompts-list",
}

# The scored statuses; INFO entries are the harness's traffic log.
SCORED = ("SUCCESS", "FAILURE", "WARNING")

_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$")

# scenario -> {check id: status}, or None for a scenario that threw (the
# harness then writes its folder but no checks.json, and counts a failure).
Results = Dict[str, Optional[Dict[str, str]]]


def _env() -> Dict[str, str]:
    return {"PATH": f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.fixture
def backend() -> Iterator[Tuple[str, int]]:
    """
    (label, port) of a backend serving MCP at /mcp on an ephemeral port.
    """
    command = os.environ.get("MCPGATED_CONFORMANCE_BACKEND")
    if not command:
        proc, port = start_everything("streamableHttp")
        label = "server-everything"
    else:
        argv = shlex.split(command)
        proc = Proc(argv, env={**_env(), "PORT": "0"})
        proc.wait_for(r"(?i)listening|running on", timeout=60)
        ports = listening_ports(proc.popen.pid)
        assert len(ports) == 1, f"{command} listens on {ports}"
        port = ports[0]
        label = command
    yield label, port
    proc.stop()


def scenarios() -> set:
    out = subprocess.run([str(NODE22), str(CONFORMANCE), "list", "--server"], env={**os.environ, **_env()},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    names = set(re.findall(r"^\s*- (\S+)", out.stdout, re.MULTILINE))
    assert len(names) >= 30, out.stdout
    return names


def run_conformance(argv: List[str], out_dir: Path, timeout: float = RUN_TIMEOUT
                    ) -> Tuple[Dict[str, Optional[List[Dict[str, Any]]]], str]:
    """
    One run of the suite's CLI (C{argv} after the node and the script, with
    C{-o out_dir} added): each scenario's checks as its checks.json lists
    them (L{None}: the scenario threw and wrote none), and the output.
    """
    proc = Proc([str(NODE22), *argv, "-o", str(out_dir)], env=_env())
    try:
        proc.wait_for(r"^Total: \d+ passed, \d+ failed", timeout)
        proc.popen.wait(30)
    finally:
        proc.kill()
    found: Dict[str, Optional[List[Dict[str, Any]]]] = {}
    for folder in sorted(out_dir.iterdir()):
        match = _RESULT_DIR.match(folder.name)
        assert match, f"unexpected entry {folder}"
        scenario = match.group("scenario")
        assert scenario not in found, f"{scenario} ran twice"
        checks_file = folder / "checks.json"
        found[scenario] = json.loads(checks_file.read_text()) if checks_file.exists() else None
    return found, "\n".join(proc.output)


def run_suite(url: str, out_dir: Path) -> Tuple[Results, str]:
    """
    One C{conformance server --suite all} run against C{url}: the checks of
    each scenario, from its checks.json, and the harness's output.
    """
    found, output = run_conformance([str(CONFORMANCE), "server", "--url", url, "--suite", "all"],
                                    out_dir)
    results: Results = {}
    for scenario, checks in found.items():
        if checks is None:
            results[scenario] = None
            continue
        scored: Dict[str, str] = {}
        for check in checks:
            if check["status"] in SCORED:
                assert check["id"] not in scored, f"{scenario}: check {check['id']} twice"
                scored[check["id"]] = check["status"]
        results[scenario] = scored
    return results, output


def passed(checks: Optional[Dict[str, str]]) -> bool:
    """
    The harness's own rule (its summary's tick): the scenario ran and none
    of its checks failed.
    """
    return checks is not None and "FAILURE" not in checks.values()


def _table(direct: Results, gateway: Results) -> str:
    rows = []
    for scenario in sorted(set(direct) | set(gateway)):
        d, g = direct.get(scenario), gateway.get(scenario)
        rows.append(f"  {scenario:34} direct={'PASS' if passed(d) else 'fail'} "
                    f"gateway={'PASS' if passed(g) else 'fail'}  {d} | {g}")
    return "\n".join(rows)


def test_conformance_through_gateway_matches_direct(tmp_path, backend):
    label, port = backend
    version = subprocess.run([str(NODE22), "--version"], capture_output=True, text=True,
                             timeout=60).stdout
    assert int(version.lstrip("v").split(".")[0]) >= 22, f"the suite needs Node >= 22, {NODE22} is {version}"
    expected = scenarios()

    (tmp_path / "gw").mkdir()
    daemon = Daemon(tmp_path / "gw").start()
    try:
        daemon.deploy(f"http://127.0.0.1:{port}/mcp", "/conformance", name="Conformance")
        gateway_port = daemon.ports["gateway"][0]
        # localhost, not 127.0.0.1: dns-rebinding-protection sends a
        # "localhost" Host as its valid case.
        direct, direct_log = run_suite(f"http://localhost:{port}/mcp", tmp_path / "direct")
        gateway, gateway_log = run_suite(f"http://localhost:{gateway_port}/conformance",
                                         tmp_path / "gateway")
    finally:
        daemon.stop()
    table = _table(direct, gateway)
    print(f"backend {label}\n{table}")

    assert set(direct) == expected, f"direct run scenarios differ from `list --server`\n{direct_log}"
    assert set(gateway) == expected, f"gateway run scenarios differ from `list --server`\n{gateway_log}"

    # Not vacuous: the backend really answered the suite.
    direct_passed = {s for s, checks in direct.items() if passed(checks)}
    missing = DIRECT_FLOOR - direct_passed
    assert not missing, f"direct run against {label} fails core scenarios {sorted(missing)}\n{table}"

    # Check by check: nothing that succeeds direct may fail, warn or vanish
    # through the gateway.
    lost = [f"{s}/{cid}: direct SUCCESS, gateway {(gateway[s] or {}).get(cid, 'missing')}"
            for s, checks in sorted(direct.items()) for cid, status in (checks or {}).items()
            if status == "SUCCESS" and (gateway[s] or {}).get(cid) != "SUCCESS"]
    assert not lost, "checks lost through the gateway:\n  " + "\n  ".join(lost) + f"\n{table}"

    # Scenario by scenario: the same list passes both ways. The one allowed
    # difference is dns-rebinding-protection passing only through the
    # gateway: a gateway may check Host/Origin itself where the backend does
    # not. server-everything has no such check (it fails that scenario
    # direct), so against it this test cannot see whether the gateway checks
    # Host; against a backend that does (the reference server), the check
    # comparison above fails if the gateway lets evil.example.com through.
    # Any other gateway-only pass would mean the gateway answers for the
    # backend.
    gateway_passed = {s for s, checks in gateway.items() if passed(checks)}
    assert direct_passed <= gateway_passed, (
        f"pass direct, fail through the gateway: {sorted(direct_passed - gateway_passed)}\n{table}")
    extra = gateway_passed - direct_passed - {"dns-rebinding-protection"}
    assert not extra, f"pass only through the gateway: {sorted(extra)}\n{table}"
