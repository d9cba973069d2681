"""
Packaging as an operator meets it: the wheel carries the twistd plugin (and
no twisted/__init__.py), installing it (or the checkout, as the README
says) makes `twistd mcpgated` available, and the systemd unit runs the
twistd of the virtualenv the README installs into, with command lines
twistd accepts; `systemd-analyze verify` checks the unit where it exists,
and the unit's syntax is checked everywhere.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Dict, List, Tuple

import build  # noqa: F401 -- the test extra's builder: `python -m build` below
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


def _checkout(source: Path) -> Path:
    """
    A copy of the working tree's sources (a build writes build/ and
    *.egg-info beside them; the copy keeps the tree clean).
    """
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "dropin.cache", "*.egg-info")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        elif path.exists():
            shutil.copy2(path, source / name)
    return source


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """
    A wheel built from a copy of the working tree (the build writes build/
    and *.egg-info beside its sources; the copy keeps the tree clean).
    """
    folder = tmp_path_factory.mktemp("wheel")
    source = _checkout(folder / "src")
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


@pytest.mark.parametrize("what", ["wheel", "checkout"])
def test_installed_package_provides_twistd_mcpgated(wheel, tmp_path, what):
    """
    The README's install, `pip install` of the wheel or of the checkout
    into a fresh virtualenv (offline: the dependencies come from this one).
    """
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path)
    python = venv / "bin" / "python"
    # Dependencies (and, for the checkout, the build backend) come from this
    # venv's site-packages (added after the fresh venv's own, and without
    # its .pth files, so not the editable checkout).
    target = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       tmp_path).stdout.strip())
    (target / "mcpgated-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = wheel if what == "wheel" else _checkout(tmp_path / "mcpgated")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
          "--no-index", "--no-build-isolation", "--disable-pip-version-check", "--quiet",
          installed], tmp_path, timeout=300)
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


def _readme_install() -> Tuple[str, str]:
    """
    (virtualenv, what pip installs) from the install block of the README's
    "Running as a service".
    """
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Running as a service\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    venv = re.search(r"^(?:sudo )?python3 -m venv (\S+)$", block, re.MULTILINE)
    pip = re.search(r"^(?:sudo )?(\S+)/bin/pip install (\S+)$", block, re.MULTILINE)
    assert venv and pip, block
    assert pip.group(1) == venv.group(1), block
    return venv.group(1), pip.group(2)


def test_the_readme_and_the_unit_install_the_same_real_package():
    venv, target = _readme_install()
    # a path (the checkout, or a wheel built from it): mcpgated is not on PyPI
    assert target.startswith(("./", "../", "/")) and not target.endswith("/mcpgated.whl"), target
    text = UNIT.read_text()
    comments = "\n".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    assert f"python3 -m venv {venv}\n" in comments
    assert f"{venv}/bin/pip install {target}\n" in comments
    assert not re.search(r"pip install mcpgated\b", text)
    service = _unit()["Service"]
    for key in ("ExecStartPre", "ExecStart"):
        assert shlex.split(service[key])[0] == f"{venv}/bin/twistd", service[key]


# Every directive the unit may use (systemd.unit(5), systemd.service(5),
# systemd.exec(5), systemd.kill(5), systemd.resource-control(5)): a
# misspelt one, which systemd only warns about, fails here too.
DIRECTIVES = {
    "Unit": {"Description", "Documentation", "After", "Before", "Wants", "Requires",
             "StartLimitIntervalSec", "StartLimitBurst"},
    "Service": {"Type", "User", "Group", "ExecStartPre", "ExecStart", "ExecReload", "KillSignal",
                "KillMode", "TimeoutStopSec", "TimeoutStartSec", "Restart", "RestartSec",
                "NotifyAccess", "StateDirectory", "StateDirectoryMode", "LogsDirectory",
                "LogsDirectoryMode", "RuntimeDirectory", "ConfigurationDirectory",
                "WorkingDirectory", "UMask", "LimitNOFILE", "NoNewPrivileges",
                "CapabilityBoundingSet", "AmbientCapabilities", "ProtectSystem", "ProtectHome",
                "PrivateTmp", "PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules",
                "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock", "ProtectHostname",
                "ProtectProc", "RestrictAddressFamilies", "RestrictNamespaces", "RestrictRealtime",
                "RestrictSUIDSGID", "LockPersonality", "SystemCallArchitectures",
                "SystemCallFilter", "ReadWritePaths", "Environment", "MemoryDenyWriteExecute"},
    "Install": {"WantedBy"},
}


def test_systemd_unit_syntax():
    """
    Without systemd-analyze (CI may lack it) as with it: only comments,
    sections and Key=Value lines, known sections and directives, absolute
    Exec paths, and Type=notify (the daemon sends READY=1).
    """
    for number, line in enumerate(UNIT.read_text().splitlines(), 1):
        assert (not line.strip() or line.startswith(("#", ";")) or re.fullmatch(r"\[\w+\]", line)
                or re.fullmatch(r"[A-Z]\w*=\S.*|[A-Z]\w*=", line)), f"line {number}: {line!r}"
    unit = _unit()
    assert set(unit) == {"Unit", "Service", "Install"}
    for section, keys in unit.items():
        assert set(keys) <= DIRECTIVES[section], set(keys) - DIRECTIVES[section]
    service = unit["Service"]
    assert service["Type"] == "notify"
    for key in ("ExecStartPre", "ExecStart"):
        assert Path(shlex.split(service[key])[0]).is_absolute()
    assert unit["Install"]["WantedBy"] == "multi-user.target"


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
    # The shipped INI with the README's [logging] dir, the unit's folders
    # in a temporary one (StateDirectory= gives $STATE_DIRECTORY).
    state, logs = tmp_path / "var-lib-mcpgated", tmp_path / "var-log-mcpgated"
    state.mkdir()
    ini = tmp_path / "mcpgated.ini"
    ini.write_text((REPO / "etc" / "mcpgated.ini").read_text().replace("\ndir = var/log\n",
                                                                       f"\ndir = {logs}\n"))
    service = _unit()["Service"]
    for key in ("ExecStartPre", "ExecStart"):
        argv = [str(BIN / "twistd") if Path(a).name == "twistd" else a
                for a in shlex.split(service[key].replace("/etc/mcpgated.ini", str(ini)))]
        if "--check-config" not in argv:
            argv.append("--check-config")
        result = subprocess.run(argv, cwd=str(state), capture_output=True, text=True, timeout=60,
                                env={**os.environ, "STATE_DIRECTORY": str(state)})
        assert (result.returncode, result.stdout.strip()) == \
            (0, f"{ini}: configuration is valid"), result.stderr


def test_systemd_unit_verifies(tmp_path):
    """
    systemd-analyze verify where it exists; elsewhere test_systemd_unit_syntax
    and the tests above are the checks.
    """
    if shutil.which("systemd-analyze") is None:
        test_systemd_unit_syntax()
        test_the_readme_and_the_unit_install_the_same_real_package()
        return
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
