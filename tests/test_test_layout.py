"""
Tests mirror modules (#13): every module of the package has a test file
that imports it, so a reader looking for a module's tests finds them by
name.

A module C{mcpgated.a.b} has its tests in C{tests/test_b.py} or
C{tests/test_a_b.py} (a leading underscore dropped: C{store/_sqlite.py} ->
C{test_sqlite.py}), and that file imports the module (C{import} or C{from}
anywhere in it; a private module counts as imported when its package is,
since tests use the package's public names). Modules whose tests live
elsewhere are listed in L{ELSEWHERE} with the file that imports them and
why; modules without a test file yet are in L{PENDING}, with whoever owns
the module. Both lists are checked: an entry must name a real module, an
ELSEWHERE file must import its module, and a PENDING module that gets its
test file must leave the list.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path
from typing import Dict, FrozenSet, List, Set

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "mcpgated"
TESTS = REPO / "tests"

# module -> the test file (relative to tests/) that imports and tests it,
# for modules whose tests are named after something else.
ELSEWHERE: Dict[str, str] = {
    # the admin API as a whole, over a real daemon and in process
    "mcpgated.admin.api": "test_admin.py",
    # the OpenAPI document is checked against the Klein routes
    "mcpgated.admin.openapi": "test_admin.py",
    # the tracker split: records, sessions and the exchange metrics are
    # tested through the tracker that produces them
    "mcpgated.analytics.metrics": "test_tracker.py",
    "mcpgated.analytics.records": "test_tracker.py",
    "mcpgated.analytics.sessions": "test_tracker.py",
    "mcpgated.analytics.store": "test_tracker.py",
    # the OAuth documents: well-known paths and the relay's discovery answers
    "mcpgated.oauth.wellknown": "test_oauth_metadata.py",
    "mcpgated.oauth.relay": "test_oauth_metadata.py",
    "mcpgated.oauth.terminating": "security/test_audience.py",
    # plans' rules, limits and list rewriting: the policy tests
    "mcpgated.policy.acl": "test_policy.py",
    "mcpgated.policy.ratelimit": "test_policy.py",
    # the list judge by id: judged answers, matched by id value
    "mcpgated.policy.rewrite": "test_id_correlation.py",
    "mcpgated.policy.auth": "test_authenticator.py",
    "mcpgated.policy.tokens": "test_token_plans.py",
    # the gateway listener: edge rules and the fast channel's caps
    "mcpgated.proxy.edge": "test_http11.py",
    "mcpgated.site": "test_http11.py",
    # both HTTP servers behind one factory, compared request by request
    "mcpgated.proxy.listener": "security/test_edge_differential.py",
    "mcpgated.proxy.resource": "test_streaming.py",
    "mcpgated.proxy.upstream": "test_backend_client.py",
    "mcpgated.sqlitedb": "test_durability.py",
    # the store behind its package's names
    "mcpgated.store._sqlite": "test_subscriptions.py",
    "mcpgated.store._subscriptions": "test_subscriptions.py",
    "mcpgated.store._interface": "test_interfaces.py",
    "mcpgated.store._pins": "test_pinbook.py",
    # mcpgatedctl against real daemons, module by module, and the admin
    # API's export route it uses
    "mcpgated.admin.export": "test_ctl.py",
    "mcpgated.ctl.client": "test_ctl.py",
    "mcpgated.ctl.documents": "test_ctl.py",
    "mcpgated.ctl.export": "test_ctl.py",
    "mcpgated.ctl.logs": "test_ctl.py",
    "mcpgated.ctl.main": "test_ctl.py",
    "mcpgated.ctl.reconcile": "test_ctl.py",
}

# module -> owner (as issue 13's plan assigns files), for modules that have no
# test file importing them yet. Remove an entry when its test file lands.
PENDING: Dict[str, str] = {}


def package_modules() -> List[str]:
    """
    Every module of the package, but packages' C{__init__} and the web
    console's assets.
    """
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if path.name == "__init__.py" or "ui" in parts:
            continue
        found.append(".".join(parts))
    return found


@cache
def imports(test_file: Path) -> FrozenSet[str]:
    """
    The modules (and C{module.name}s) a file imports, at any depth.
    """
    names: Set[str] = set()
    for node in ast.walk(ast.parse(test_file.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return frozenset(names)


def imported_by(module: str, test_file: Path) -> bool:
    names = imports(test_file)
    if module in names:
        return True
    package, _, last = module.rpartition(".")
    return last.startswith("_") and package in names


def own_test_files(module: str) -> List[Path]:
    parts = [part.lstrip("_") for part in module.split(".")[1:]]
    stems = {f"test_{parts[-1]}", "test_" + "_".join(parts)}
    return [TESTS / f"{stem}.py" for stem in sorted(stems) if (TESTS / f"{stem}.py").exists()]


def has_own_test(module: str) -> bool:
    return any(imported_by(module, path) for path in own_test_files(module))


def test_every_module_has_a_test_file_that_imports_it() -> None:
    gaps = []
    for module in package_modules():
        if has_own_test(module) or module in PENDING:
            continue
        elsewhere = ELSEWHERE.get(module)
        if elsewhere is not None and imported_by(module, TESTS / elsewhere):
            continue
        named = [p.name for p in own_test_files(module)] or ["none"]
        gaps.append(f"{module} (test files by name: {', '.join(named)}; "
                    f"listed elsewhere: {elsewhere})")
    assert not gaps, "modules without a test file importing them:\n" + "\n".join(gaps)


def test_the_lists_name_real_modules_and_stay_true() -> None:
    modules = set(package_modules())
    assert not set(ELSEWHERE) - modules, "ELSEWHERE names no module"
    assert not set(PENDING) - modules, "PENDING names no module"
    assert not set(ELSEWHERE) & set(PENDING)
    for module, test_file in ELSEWHERE.items():
        assert (TESTS / test_file).exists(), (module, test_file)
        assert imported_by(module, TESTS / test_file), f"{test_file} does not import {module}"
    landed = [module for module in PENDING if has_own_test(module)]
    assert not landed, f"these have their test file now; take them off PENDING: {landed}"
    assert set(PENDING.values()) <= {"LEAD", "LINT", "MODEL", "OAUTH", "TESTS", "UNKNOWN"}


def test_the_check_sees_imports_the_way_python_does(tmp_path: Path) -> None:
    sample = tmp_path / "test_sample.py"
    sample.write_text("import mcpgated.paths\n"
                      "from mcpgated.mcp import body\n"
                      "from mcpgated.store import SQLiteApiStore\n"
                      "def later():\n"
                      "    from mcpgated.policy.auth import Authenticator\n")
    assert imported_by("mcpgated.paths", sample)
    assert imported_by("mcpgated.mcp.body", sample)  # from a package, the module
    assert imported_by("mcpgated.policy.auth", sample)  # inside a function too
    assert imported_by("mcpgated.store._sqlite", sample)  # a private module via its package
    assert not imported_by("mcpgated.store.migrations", sample)
    assert not imported_by("mcpgated.policy.acl", sample)
