"""
The package's layers, as README.md's "Design" section draws them: a module
imports its own layer or lower ones, never a higher one; the protocol layer
(L{mcpgated.mcp}) is pure: no Twisted, no I/O.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

PACKAGE = Path(__file__).resolve().parent.parent / "mcpgated"

# (layer, its name, the modules and packages in it); a package covers its submodules
LAYERS: List[Tuple[int, str, Tuple[str, ...]]] = [
    (0, "protocol and support", (
        "mcpgated", "mcpgated.mcp", "mcpgated.paths", "mcpgated.jsonrpc", "mcpgated.forwarding",
        "mcpgated.files", "mcpgated._twisted_compat", "mcpgated.config", "mcpgated.logs",
        "mcpgated.sqlitedb", "mcpgated.webclient", "mcpgated.writable", "mcpgated.sdnotify",
        "mcpgated.sealing", "mcpgated.writeorder")),
    (1, "policy", (
        "mcpgated.policy", "mcpgated.model", "mcpgated.definitions", "mcpgated.keys",
        "mcpgated.subscriptions",
        # the store's seam (IApiStore and its errors): policy and admin use it,
        # the implementations in mcpgated.store are a layer up
        "mcpgated.store._interface")),
    (2, "analytics, oauth, store, routing, cluster", (
        "mcpgated.analytics", "mcpgated.oauth", "mcpgated.store", "mcpgated.routing",
        "mcpgated.cluster")),
    (3, "proxy and admin", ("mcpgated.proxy", "mcpgated.admin", "mcpgated.site")),
    (4, "the tap and its workers", ("mcpgated.tap", "mcpgated.workers")),
    # mcpgatedctl: the admin API over HTTP; from the package, value code only
    # (tests/test_ctl.py checks which)
    (5, "the command line", ("mcpgated.ctl",)),
]

# what the protocol layer may import besides itself
PURE_ALLOWED = {"__future__", "base64", "binascii", "json", "math", "re", "typing", "attrs",
                "zope"}


def _layer(module: str) -> Tuple[int, str]:
    best: Tuple[int, str, str] = (-1, "", "")
    for number, name, prefixes in LAYERS:
        for prefix in prefixes:
            covers = module == prefix or (prefix != "mcpgated" and module.startswith(prefix + "."))
            if covers and len(prefix) > len(best[2]):
                best = (number, name, prefix)
    assert best[0] >= 0, f"{module} is in no layer: add it to LAYERS (and README's Design)"
    return best[0], best[1]


def _modules() -> Iterator[Tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            for alias in node.names:  # "from mcpgated import config": the module config
                yield f"{node.module}.{alias.name}"


def _is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (PACKAGE.parent / relative).with_suffix(".py").exists() or \
        (PACKAGE.parent / relative / "__init__.py").exists()


def test_every_module_has_a_layer():
    for module, _ in _modules():
        _layer(module)


def test_no_module_imports_a_layer_above_its_own():
    wrong: Dict[str, List[str]] = {}
    for module, path in _modules():
        mine, _ = _layer(module)
        for name in _imports(path):
            if not name.startswith("mcpgated") or not _is_module(name):
                continue
            theirs, layer = _layer(name)
            if theirs > mine:
                wrong.setdefault(module, []).append(f"{name} ({layer})")
    assert wrong == {}


def test_the_protocol_layer_is_pure():
    found: Dict[str, List[str]] = {}
    for module, path in _modules():
        if module != "mcpgated.mcp" and not module.startswith("mcpgated.mcp."):
            continue
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "mcpgated":
                if not (name == "mcpgated.mcp" or name.startswith("mcpgated.mcp.")):
                    found.setdefault(module, []).append(name)
            elif top not in PURE_ALLOWED:
                found.setdefault(module, []).append(name)
    assert found == {}


def test_the_checks_see_a_violation(tmp_path):
    # the walker finds imports, so the tests above can fail
    sample = tmp_path / "sample.py"
    sample.write_text("from mcpgated.proxy.resource import GatewayResource\nimport twisted.web\n")
    assert list(_imports(sample)) == ["mcpgated.proxy.resource",
                                      "mcpgated.proxy.resource.GatewayResource", "twisted.web"]
    assert _layer("mcpgated.proxy.resource")[0] > _layer("mcpgated.policy.gate")[0]
