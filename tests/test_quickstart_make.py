"""
C{make run} runs from a normal install of the checkout with the runtime
dependencies only (no test extras, no setuptools "compat" editable mode, which
is going away), in its own venv, reinstalled when a source changes. Read from
C{make -n} (what make would run) in a copy of the checkout's build files; the
install itself is what test_packaging.py checks of the wheel: twistd finds the
plugin in a normal install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import List

from tests.support import REPO

BUILD_FILES = ["Makefile", "setup.cfg", "pyproject.toml", "MANIFEST.in"]


def _copy(folder: Path) -> Path:
    for name in BUILD_FILES:
        shutil.copy2(REPO / name, folder / name)
    (folder / "etc").mkdir()
    shutil.copy2(REPO / "etc" / "mcpgated.ini", folder / "etc" / "mcpgated.ini")
    (folder / "mcpgated").mkdir()
    (folder / "mcpgated" / "__init__.py").write_text("")
    return folder


def _dry_run(folder: Path, *targets: str) -> List[str]:
    # as from a shell: under `make test` the outer make's flags would reach this one
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    result = subprocess.run(["make", "--no-print-directory", "-n", *targets], cwd=str(folder),
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_make_run_installs_the_checkout_with_its_runtime_dependencies_only(tmp_path):
    commands = _dry_run(_copy(tmp_path), "run")
    installs = [c for c in commands if "pip install" in c and "--upgrade pip" not in c]
    assert installs == ["build/venv-run/bin/python -m pip install -q ."]
    assert not any("editable" in c or " -e " in c or "[test" in c for c in commands), commands
    assert commands[-1] == "build/venv-run/bin/twistd --nodaemon --pidfile= mcpgated -c etc/mcpgated.ini"


def test_make_run_reinstalls_only_when_a_source_changed(tmp_path):
    folder = _copy(tmp_path)
    stamp = folder / "build" / "venv-run" / ".installed"
    stamp.parent.mkdir(parents=True)
    stamp.touch()
    later = stamp.stat().st_mtime + 10
    os.utime(stamp, (later, later))
    assert _dry_run(folder, "run") == [
        "build/venv-run/bin/twistd --nodaemon --pidfile= mcpgated -c etc/mcpgated.ini"]
    source = folder / "mcpgated" / "__init__.py"
    os.utime(source, (later + 10, later + 10))
    assert "build/venv-run/bin/python -m pip install -q ." in _dry_run(folder, "run")


def test_make_check_config_uses_the_run_install_too(tmp_path):
    commands = _dry_run(_copy(tmp_path), "check-config")
    assert commands[-1] == "build/venv-run/bin/twistd mcpgated -c etc/mcpgated.ini --check-config"
    assert not any("[test" in c for c in commands), commands
