"""
Declared lower bounds stay true: the constraints file `make test-lowest`
installs pins exactly setup.cfg's lower bounds, and Twisted's private names
are used only in mcpgated._twisted_compat (the one module to change when a
Twisted release renames or drops one).
"""

from __future__ import annotations

import ast
import configparser
import re
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import twisted
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "mcpgated"
COMPAT = PACKAGE / "_twisted_compat.py"
CONSTRAINTS = REPO / "tests" / "constraints-lowest.txt"


def _lower_bounds() -> Dict[str, Version]:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    bounds = {}
    for line in parser["options"]["install_requires"].splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        requirement = Requirement(line)
        lows = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        assert len(lows) == 1, f"setup.cfg: {line!r} needs one >= lower bound"
        bounds[canonicalize_name(requirement.name)] = Version(lows[0])
    return bounds


def _constraints() -> Dict[str, Version]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        [spec] = requirement.specifier
        assert spec.operator == "==", line
        pins[canonicalize_name(requirement.name)] = Version(spec.version)
    return pins


# Where the test tools need more than setup.cfg's bound (said in the
# constraints file): the lowest version they allow.
RAISED_FOR_THE_TESTS = {"idna": Version("3.18")}  # mcp -> httpx2 -> idna>=3.18


def test_constraints_pin_every_lower_bound_of_setup_cfg():
    bounds = _lower_bounds()
    assert "twisted" in bounds and "httptools" in bounds
    for name, version in RAISED_FOR_THE_TESTS.items():
        assert bounds[name] < version
        bounds[name] = version
    assert _constraints() == bounds


# --- Twisted's private names --------------------------------------------------------


def _twisted_private_names() -> Set[str]:
    """
    Every C{_name} (not C{__dunder__}) spelled in Twisted's own sources.
    """
    names: Set[str] = set()
    word = re.compile(r"\b_[A-Za-z][A-Za-z0-9_]*\b")
    for path in Path(twisted.__file__).parent.rglob("*.py"):
        names.update(word.findall(path.read_text("utf-8", "replace")))
    return {name for name in names if not name.endswith("__")}


def _modules() -> Iterator[Tuple[Path, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text("utf-8"), str(path))


def _defined_here(trees: List[Tuple[Path, ast.Module]]) -> Set[str]:
    """
    Private attribute names mcpgated defines itself: methods, class
    attributes and fields, and what its code assigns to C{self.<name>}.
    """
    defined: Set[str] = set()
    for _, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    targets = (item.targets if isinstance(item, ast.Assign)
                               else [item.target] if isinstance(item, ast.AnnAssign) else [])
                    defined.update(t.id for t in targets if isinstance(t, ast.Name))
            if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                    and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                defined.add(node.attr)
    return defined


STDLIB_OWNERS = frozenset({"os", "sys"})


def test_twisted_private_names_are_used_only_in_the_compat_module():
    twisted_names = _twisted_private_names()
    trees = list(_modules())
    ours = _defined_here(trees)
    found = []
    for path, tree in trees:
        if path == COMPAT:
            continue
        where = path.relative_to(REPO)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "twisted":
                parts = (node.module or "").split(".") + [alias.name for alias in node.names]
                found += [f"{where}:{node.lineno}: from {node.module} import {part}"
                          for part in parts if part.startswith("_")]
            elif isinstance(node, ast.Import):
                found += [f"{where}:{node.lineno}: import {alias.name}" for alias in node.names
                          if alias.name.split(".")[0] == "twisted"
                          and any(p.startswith("_") for p in alias.name.split("."))]
            elif (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                  and not node.attr.endswith("__") and node.attr in twisted_names
                  and node.attr not in ours
                  # the standard library's own underscored API (os._exit)
                  and not (isinstance(node.value, ast.Name) and node.value.id in STDLIB_OWNERS)):
                found.append(f"{where}:{node.lineno}: .{node.attr}")
    assert found == [], "Twisted private names outside mcpgated/_twisted_compat.py:\n" + \
        "\n".join(found)


def test_the_check_sees_a_private_name():
    # The scan above finds what it looks for.
    assert {"_rawHeaders", "_nameEncoder", "_tempDataLen"} <= _twisted_private_names()
    compat = ast.parse(COMPAT.read_text("utf-8"))
    used = {node.attr for node in ast.walk(compat) if isinstance(node, ast.Attribute)}
    assert "_rawHeaders" in used and "_tempDataLen" in used
