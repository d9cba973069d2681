"""
Packaging as an operator meets it: the wheel carries the twistd plugin (and
no twisted/__init__.py), installing it makes `twistd mcpgated` available,
and the systemd unit runs a command line twistd accepts.
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Dict, List

import pytest

from tests.support import BIN, REPO

UNIT = REPO / "systemd" / "mcpgated.service"
SOURCES = ["pyproject.toml", "setup.cfg", "MANIFEST.in", "README.md", "mcpgated", "twisted",
           "etc", "systemd"]


def _run(argv: List[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in argv], cwd=str(cwd), capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"{argv}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """
    A wheel built from a copy of the working tree (the build writes build/
    and *.egg-info beside its sources; the copy keeps the tree clean).
    """
    pytest.importorskip("build")
    folder = tmp_path_factory.mktemp("wheel")
    source = folder / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "dropin.cache", "*.egg-info")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        elif path.exists():
            shutil.copy2(path, source / name)
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
          folder / "dist", source], folder)
    (built,) = (folder / "dist").glob("mcpgated-*.whl")
    return built


def test_wheel_contains_the_plugin_and_every_module(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twisted/plugins/mcpgated_plugin.py" in names
    # Either file would hide Twisted itself or the plugin.
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    assert not [n for n in names if n.endswith("dropin.cache")]
    # Every module and data file (migrations, py.typed, web assets) ships.
    shipped = {str(p.relative_to(REPO)) for p in (REPO / "mcpgated").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    assert shipped <= names, sorted(shipped - names)
    assert "mcpgated/py.typed" in names
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    requires = [line.split(":", 1)[1].strip().lower() for line in
                zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line]
    for dependency in ("twisted", "klein", "attrs", "pyopenssl", "service-identity"):
        assert any(r.startswith(dependency) for r in requires), requires


def test_installed_wheel_provides_twistd_mcpgated(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
          "--no-index", "--disable-pip-version-check", "--quiet", wheel], tmp_path)
    # Dependencies come from this venv's site-packages (added after the
    # fresh venv's own, and without its .pth files, so not the editable
    # checkout).
    target = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       tmp_path).stdout.strip())
    (target / "mcpgated-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    where = _run([python, "-c", "import mcpgated.tap, twisted.plugins.mcpgated_plugin as p; "
                  "print(mcpgated.tap.__file__); print(p.__file__)"], elsewhere).stdout.split()
    assert [Path(p).is_relative_to(target) for p in where] == [True, True], where

    twistd = [python, "-c", "import sys; from twisted.scripts.twistd import run; "
              "sys.argv[0] = 'twistd'; run()"]
    listing = _run([*twistd, "--help"], elsewhere).stdout
    assert re.search(r"^\s+mcpgated\s+MCP gateway", listing, re.MULTILINE), listing
    usage = _run([*twistd, "mcpgated", "--help"], elsewhere).stdout
    assert "-c, --config=" in usage and "--check-config" in usage
    ini = elsewhere / "mcpgated.ini"
    ini.write_text("[gateway]\nlisten = tcp:0\n")
    checked = _run([*twistd, "mcpgated", "-c", ini, "--check-config"], elsewhere).stdout
    assert checked.strip() == f"{ini}: configuration is valid"
    assert (target / "twisted" / "plugins" / "mcpgated_plugin.py").exists()


# --- systemd -----------------------------------------------------------------------------


def _unit() -> Dict[str, Dict[str, str]]:
    parser = configparser.ConfigParser(interpolation=None, strict=True,
                                       comment_prefixes=("#", ";"), empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return {section: dict(parser[section]) for section in parser.sections()}


def test_systemd_unit_runs_twistd_in_the_foreground_hardened():
    service = _unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    assert Path(argv[0]).name == "twistd"
    assert argv[1:] == ["--nodaemon", "--pidfile=", "mcpgated", "-c", "/etc/mcpgated.ini"]
    assert service["User"] == "mcpgated"
    assert service["Restart"] == "on-failure"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert int(service["LimitNOFILE"]) >= 4096
    # The writable folders the INI should name exist under ProtectSystem.
    assert service["StateDirectory"] == "mcpgated" and service["LogsDirectory"] == "mcpgated"


def test_systemd_command_lines_are_accepted_by_twistd(tmp_path):
    ini = tmp_path / "mcpgated.ini"
    ini.write_text("[storage]\npath = /var/lib/mcpgated/mcpgated.db\n"
                   "[logging]\ndir = /var/log/mcpgated\n")
    service = _unit()["Service"]
    for key in ("ExecStartPre", "ExecStart"):
        argv = [str(BIN / "twistd") if Path(a).name == "twistd" else a
                for a in shlex.split(service[key].replace("/etc/mcpgated.ini", str(ini)))]
        if "--check-config" not in argv:
            argv.append("--check-config")
        assert _run(argv, tmp_path).stdout.strip() == f"{ini}: configuration is valid"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_unit_verifies(tmp_path):
    unit = tmp_path / "mcpgated.service"
    unit.write_text(UNIT.read_text().replace("/opt/mcpgated/bin/twistd", str(BIN / "twistd")))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60)
    assert (result.returncode, result.stderr.strip()) == (0, "")
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)],
                            capture_output=True, text=True, timeout=60)
    level = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    if level is not None:
        assert float(level.group(1)) <= 3.0, result.stdout
