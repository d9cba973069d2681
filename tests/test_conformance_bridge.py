"""
The MCP conformance suite's server scenarios through an API that bridges
protocol eras (its C{protocol} settings, L{mcpgated.proxy.bridge}), in both
directions, compared with the same scenarios run direct (issue #16).

The suite is npm's @modelcontextprotocol/conformance 0.2.0-alpha.12
(tests/npm installs it as "conformance-next"), whose C{--requirements
<revision>} runs what a revision requires (its requirements/<revision>.yaml
lists the scored scenarios) plus, unscored, its pending and extension
scenarios. The backend is tests/conformance_server.py, the official
Python SDK's server, started in one era:

 - direction A, handshake-era clients to a 2026-07-28 backend: the
   2025-11-25 scenarios direct against the server started handshake-only,
   and through an API C{{"clientVersions": ["2025-11-25"],
   "backendVersion": "2026-07-28"}} in front of the same server started
   2026-07-28-only;
 - direction B, 2026-07-28 clients to a handshake-era backend: the
   2026-07-28 scenarios direct against the server started 2026-07-28-only,
   and through C{{"clientVersions": ["2026-07-28"], "backendVersion":
   "2025-11-25"}} in front of it started handshake-only.

Each server refuses the other era's requests, so what passes bridged was
translated. The rule: the direct run passes every scenario its revision
requires (a floor, so the comparison is not vacuous), and every check that
succeeds direct succeeds bridged, except the checks a bridge cannot carry,
named with the reason in L{UNBRIDGEABLE_A} / L{UNBRIDGEABLE_B}. An entry
there that passes bridged after all fails the test too (the list is kept
exact).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import attrs
import pytest
import yaml

from tests.support import Daemon, NODE_BIN, Proc, REPO, deploy, start_python_server
from tests.test_conformance import run_conformance

SUITE = NODE_BIN.parent / "conformance-next"
CONFORMANCE = SUITE / "dist" / "index.js"
NODE22 = NODE_BIN / "node"
SERVER = REPO / "tests" / "conformance_server.py"
SCENARIO_TIMEOUT_MS = 15000  # the suite's own per-scenario limit (default 30 s)
RUN_TIMEOUT = 120.0  # one run: a few seconds, plus room for a few scenario timeouts
# a check id may repeat (one entry per probe): the worst status counts; INFO
# entries are the traffic log, SKIPPED ones a check the suite could not apply
_WORSE = {"INFO": 0, "SUCCESS": 1, "SKIPPED": 2, "WARNING": 3, "FAILURE": 4}

TO_MODERN = {"clientVersions": ["2025-11-25"], "backendVersion": "2026-07-28"}
TO_CLASSIC = {"clientVersions": ["2026-07-28"], "backendVersion": "2025-11-25"}

# Direction A: what a 2026-07-28 backend does not have, by scenario (all its
# checks) or scenario/check. The bridge refuses the methods 2026-07-28
# removed with -32601 (mcpgated.mcp.bridge.UNBRIDGED); a 2026-07-28 server
# sends no requests to its client (the SDK server's sampling and elicitation
# tools fail: "no back-channel for server-initiated requests"; 2026-07-28 has
# input-required results instead, which the bridge does not turn into
# requests to a handshake client).
_NO_REVERSE_INPUT = ("a 2026-07-28 server asks for input with an input_required result, which the bridge "
                     "does not turn into requests to a handshake-era client (it answers -32000 naming "
                     "what was asked)")
UNBRIDGEABLE_A: Dict[str, str] = {
    "logging-set-level": "logging/setLevel: removed in 2026-07-28, refused by the bridge (-32601)",
    "resources-subscribe": "resources/subscribe: removed in 2026-07-28, refused by the bridge (-32601)",
    "resources-unsubscribe": "resources/unsubscribe: removed in 2026-07-28, refused by the bridge (-32601)",
    "tools-call-with-logging": "the scenario calls logging/setLevel first, refused by the bridge (-32601); "
                               "a 2026-07-28 server logs only at a _meta log level, which the bridge sets none of",
    "tools-call-sampling": _NO_REVERSE_INPUT,
    "tools-call-elicitation": _NO_REVERSE_INPUT,
    "elicitation-sep1034-defaults": _NO_REVERSE_INPUT,
    "elicitation-sep1330-enums": _NO_REVERSE_INPUT,
    "server-sse-multiple-streams/server-sse-streams-functional":
        "a 2026-07-28 server answers tools/list with JSON, not SSE (allowed: the suite reports INFO, "
        "nothing to check)",
}

# Direction B: what a handshake-era backend cannot give a 2026-07-28 client.
# Its tools ask with requests of their own on the call's stream (the
# server's input-required tools do, started handshake-only), which the
# bridge turns into input-required results one at a time, keyed by the
# backend request's JSON-RPC id.
UNBRIDGEABLE_B: Dict[str, str] = {
    "input-required-result-basic-elicitation":
        "the scenario wants the server's own inputRequests key (user_name); a handshake-era request has "
        "none, the bridge keys it by the backend request's id",
    "input-required-result-ignore-extra-params/sep-2322-ignore-unexpected-params":
        "the scenario's first call brings inputResponses (user_name) unasked; the bridge leaves them "
        "out and the handshake-era backend asks anew, so the call does not complete at once (a warning)",
    "server-stateless/sep-2575-missing-capability-http-400":
        "the handshake-era backend sends its -32021 as an event of the call's stream, whose 200 has "
        "gone out before it (the gateway gives a JSON answer's error its 2026-07-28 status)",
    "input-required-result-multiple-input-requests":
        "the scenario wants three inputRequests in one result; the bridge answers at the backend's first "
        "request (the others follow in later rounds)",
    # the SDK server started handshake-only declares no listChanged (its
    # initialize result), so the suite skips these checks bridged
    "server-stateless/sep-2575-server-sends-tools-list-changed-on-subscription":
        "the handshake-era backend declares no tools.listChanged (the suite skips the check)",
    "server-stateless/sep-2575-server-sends-prompts-list-changed-on-subscription":
        "the handshake-era backend declares no prompts.listChanged (the suite skips the check)",
}


@attrs.frozen
class Check:
    status: str
    message: Optional[str]


# scenario -> {check id: Check}, or None for a scenario that threw (the
# suite then writes its folder but no checks.json, and counts a failure)
Results = Dict[str, Optional[Dict[str, Check]]]



def required(revision: str) -> List[str]:
    """
    The scored server scenarios of C{revision}, from the suite's frozen
    requirements file.
    """
    listed = yaml.safe_load((SUITE / "requirements" / f"{revision}.yaml").read_text())["server"]
    assert isinstance(listed, list) and len(listed) >= 25, listed
    return listed


def run_requirements(url: str, revision: str, out_dir: Path) -> Tuple[Results, str]:
    """
    One C{conformance server --requirements <revision>} run against
    C{url}: each scenario's checks (from its checks.json), and the suite's
    output.
    """
    found, output = run_conformance([str(CONFORMANCE), "server", "--url", url, "--requirements",
                                     revision, "--timeout", str(SCENARIO_TIMEOUT_MS)], out_dir,
                                    RUN_TIMEOUT)
    results: Results = {}
    for scenario, listed in found.items():
        if listed is None:
            results[scenario] = None
            continue
        checks: Dict[str, Check] = {}
        for check in listed:
            earlier = checks.get(check["id"])
            if earlier is None or _WORSE[check["status"]] > _WORSE[earlier.status]:
                details = check.get("details") if isinstance(check.get("details"), dict) else {}
                why = check.get("errorMessage") or details.get("note") or details.get("message")
                checks[check["id"]] = Check(check["status"], why)
        results[scenario] = checks
    return results, output


def passed(checks: Optional[Dict[str, Check]]) -> bool:
    """
    The suite's own rule (its summary's tick): the scenario ran and none of
    its checks failed.
    """
    return checks is not None and all(c.status != "FAILURE" for c in checks.values())


def _table(direct: Results, bridged: Results) -> str:
    rows = []
    for scenario in sorted(set(direct) | set(bridged)):
        d, b = direct.get(scenario), bridged.get(scenario)
        rows.append(f"  {scenario:48} direct={'PASS' if passed(d) else 'fail'} "
                    f"bridged={'PASS' if passed(b) else 'fail'}")
    return "\n".join(rows)


def _excused(unbridgeable: Dict[str, str], scenario: str, check: str) -> bool:
    return scenario in unbridgeable or f"{scenario}/{check}" in unbridgeable


def compare(revision: str, direct: Tuple[Results, str], bridged: Tuple[Results, str],
            unbridgeable: Dict[str, str]) -> None:
    """
    The comparison rule of the module's docstring, on two runs' results
    and output.
    """
    (direct, direct_log), (bridged, bridged_log) = direct, bridged
    table = _table(direct, bridged)
    print(f"{revision}\n{table}")
    assert set(bridged) == set(direct), f"the runs ran different scenarios\n{table}\n{bridged_log}"

    missing = [s for s in required(revision) if not passed(direct.get(s))]
    assert not missing, f"the direct run fails required scenarios {missing}\n{table}\n{direct_log}"

    lost = []
    for scenario, checks in sorted(direct.items()):
        for check, outcome in sorted((checks or {}).items()):
            if outcome.status != "SUCCESS" or _excused(unbridgeable, scenario, check):
                continue
            got = (bridged[scenario] or {}).get(check)
            if got is None or got.status != "SUCCESS":
                lost.append(f"{scenario} / {check}: direct SUCCESS, bridged "
                            f"{got.status if got else 'missing'}: {got.message if got else ''}")
    assert not lost, "checks lost through the bridge:\n  " + "\n  ".join(lost) + f"\n{table}"

    # nor does a scenario fail bridged on a check of its own, or by throwing
    failing = [s for s, checks in sorted(bridged.items()) if passed(direct[s]) and s not in unbridgeable
               and (checks is None or any(c.status == "FAILURE" and not _excused(unbridgeable, s, cid)
                                          for cid, c in checks.items()))]
    assert not failing, f"pass direct, fail bridged: {failing}\n{table}\n{bridged_log}"

    # the excused list is exact: each entry still fails bridged (and passed direct)
    stale = []
    for entry in unbridgeable:
        scenario, _, check = entry.partition("/")
        d, b = direct.get(scenario), bridged.get(scenario)
        if check:
            ok_direct = bool(d) and check in d and d[check].status == "SUCCESS"
            ok_bridged = bool(b) and check in b and b[check].status == "SUCCESS"
        else:
            ok_direct, ok_bridged = passed(d), passed(b)
        if not ok_direct or ok_bridged:
            stale.append(f"{entry}: direct {'PASS' if ok_direct else 'fail'}, "
                         f"bridged {'PASS' if ok_bridged else 'fail'}")
    assert not stale, "unbridgeable entries that no longer hold:\n  " + "\n  ".join(stale) + f"\n{table}"


def start_server(era: str) -> Tuple[Proc, int]:
    return start_python_server(str(SERVER), "--era", era, timeout=60)


@pytest.fixture(scope="module")
def servers() -> Iterator[Dict[str, int]]:
    """
    The conformance server started handshake-only and 2026-07-28-only:
    era -> port.
    """
    started = {era: start_server(era) for era in ("handshake", "modern")}
    yield {era: port for era, (_, port) in started.items()}
    for proc, _ in started.values():
        proc.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, servers) -> Iterator[Daemon]:
    """
    A daemon with the two bridged APIs: /to-modern (direction A, in front
    of the 2026-07-28-only server) and /to-classic (direction B, in front of
    the handshake-only one).
    """
    daemon = Daemon(tmp_path_factory.mktemp("gw")).start()
    try:
        deploy(daemon, "/to-modern", f"http://127.0.0.1:{servers['modern']}/mcp", protocol=TO_MODERN)
        deploy(daemon, "/to-classic", f"http://127.0.0.1:{servers['handshake']}/mcp", protocol=TO_CLASSIC)
        yield daemon
    finally:
        daemon.stop_if_running()


def _local(port: int, path: str) -> str:
    # localhost, not 127.0.0.1: dns-rebinding-protection sends a "localhost"
    # Host as its valid case
    return f"http://localhost:{port}{path}"


def test_handshake_scenarios_bridged_to_a_2026_backend_match_direct(tmp_path, servers, gateway):
    revision = "2025-11-25"
    direct = run_requirements(_local(servers["handshake"], "/mcp"), revision, tmp_path / "direct")
    bridged = run_requirements(_local(gateway.ports["gateway"][0], "/to-modern"), revision, tmp_path / "bridged")
    compare(revision, direct, bridged, UNBRIDGEABLE_A)


def test_2026_scenarios_bridged_to_a_handshake_backend_match_direct(tmp_path, servers, gateway):
    revision = "2026-07-28"
    direct = run_requirements(_local(servers["modern"], "/mcp"), revision, tmp_path / "direct")
    bridged = run_requirements(_local(gateway.ports["gateway"][0], "/to-classic"), revision, tmp_path / "bridged")
    compare(revision, direct, bridged, UNBRIDGEABLE_B)
