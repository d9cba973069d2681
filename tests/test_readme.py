"""
The README's quick start, run as written: a documentation test.

Every C{```sh} block preceded by C{<!-- quickstart -->} is run literally, in
order, in one bash (as one terminal would), from a copy of the checkout in
which the daemon runs the way C{make run} starts it: C{make run} itself, with
C{RUN_VENV} pointed at this venv and its install step skipped (C{make -o}).
Then C{make clean}. A README that drifts from the code (a token path, a port,
a route, a field) makes a command fail and this test with it.

The quick start uses fixed ports (8082, 8083, the example server's 3001):
everything runs in a network namespace of its own (C{unshare --net}, with a
user namespace when not root), whose loopback no other test or program
shares, so the commands need no substitution. No network either: C{npx -y
@modelcontextprotocol/server-everything} finds the package in the copy's
C{node_modules} (a link to C{tests/npm/node_modules}), as it finds it in any
project that installed it, and fetches it from npm's registry elsewhere.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
MARK = "<!-- quickstart -->"
NODE_MODULES = REPO / "tests" / "npm" / "node_modules"
# What the copy of the checkout needs for make run and make clean.
COPIED = ["Makefile", "etc", "setup.cfg", "pyproject.toml", "MANIFEST.in"]


def quickstart_blocks(text: str) -> List[str]:
    """
    The shell blocks marked for the quick start, in order.
    """
    return re.findall(re.escape(MARK) + r"\n```sh\n(.*?)^```$", text, re.DOTALL | re.MULTILINE)


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def _tree(folder: Path) -> List[str]:
    found = []
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            found.append(os.path.relpath(os.path.join(root, name), folder))
    return sorted(found)


# --- inside the namespace ------------------------------------------------------------------

def _loopback_up() -> None:
    """
    Bring up C{lo}, down in a new network namespace (SIOCGIFFLAGS/SIOCSIFFLAGS).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s.fileno(), 0x8913, request))[1]
        fcntl.ioctl(s.fileno(), 0x8914, struct.pack("16sH", b"lo", flags | 0x1))


class _Lines:
    """
    A process's output lines, read by a thread; wait for one matching.
    """

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: List[str] = []
        self.eof = False
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.eof = True
            self.changed.notify_all()

    def wait_for(self, pattern: str, deadline: float) -> bool:
        with self.changed:
            while time.monotonic() < deadline:
                if any(re.search(pattern, line) for line in self.lines):
                    return True
                if self.eof:
                    return False
                self.changed.wait(deadline - time.monotonic())
        return False


def run_inside(spec: Dict[str, Any]) -> Dict[str, Any]:
    """
    make run, the quick-start blocks, Ctrl-C, make clean; what each did.
    """
    _loopback_up()
    # Ctrl-C reaches make run as in a terminal, even if this process was
    # started with SIGINT ignored (a background job): children inherit that.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    work = Path(spec["work"])
    env = dict(os.environ, npm_config_cache=spec["npm_cache"], npm_config_update_notifier="false")
    report: Dict[str, Any] = {"before": _tree(work)}
    daemon = subprocess.Popen(
        ["make", "-o", f"{spec['venv']}/.installed", "run", f"RUN_VENV={spec['venv']}"],
        cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    lines = _Lines(daemon)
    try:
        report["ready"] = lines.wait_for(r"mcpgated ready", time.monotonic() + 60)
        if report["ready"]:
            script = "set -eu -o pipefail\n" + "".join(
                f"{block}echo '<<quickstart block {n} done>>'\n"
                for n, block in enumerate(spec["blocks"], 1))
            with tempfile.TemporaryFile("w+") as out:
                shell = subprocess.Popen(["bash", "-c", script], cwd=work, env=env, stdout=out,
                                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
                try:
                    report["status"] = shell.wait(timeout=90)
                finally:
                    try:  # the example server the first block left in the background
                        os.killpg(shell.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
                out.seek(0)
                report["output"] = out.read()
        report["during"] = _tree(work)
    finally:
        os.killpg(daemon.pid, signal.SIGINT)  # Ctrl-C in make run's terminal
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
        lines.thread.join(10)
    report["daemon"] = lines.lines
    report["after_run"] = _tree(work)
    clean = subprocess.run(["make", "clean"], cwd=work, env=env, capture_output=True, text=True,
                           timeout=60)
    report["clean_status"] = clean.returncode
    report["after_clean"] = _tree(work)
    return report


if __name__ == "__main__":
    sys.stdout.write(json.dumps(run_inside(json.loads(sys.stdin.read()))))
    sys.exit(0)


# --- the tests ----------------------------------------------------------------------------

import pytest  # noqa: E402 -- the namespace side above runs without pytest

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, Any]]:
    """
    The quick start, run once for the module in its own network namespace.
    """
    base = tmp_path_factory.mktemp("readme")
    work = base / "mcpgated"
    work.mkdir()
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, work / name)
        else:
            shutil.copy2(source, work / name)
    (work / "node_modules").symlink_to(NODE_MODULES)
    spec = {"work": str(work), "venv": str(BIN.parent), "npm_cache": str(base / "npm-cache"),
            "blocks": quickstart_blocks(README.read_text())}
    unshare = ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "--net", "--map-root-user"]
    result = subprocess.run([*unshare, sys.executable, __file__], input=json.dumps(spec),
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    report["work"] = work
    yield report


def test_the_quick_start_has_marked_shell_blocks_only():
    section = _section(README.read_text(), "Proxy an MCP server in three calls")
    blocks = quickstart_blocks(section)
    assert len(blocks) >= 2
    # every shell block of the quick start is marked, so none escapes the test
    assert section.count("```sh\n") == len(blocks)


def test_every_npx_in_the_docs_answers_yes():
    # npx asks before installing; in a background job that question stops it
    documents = [README, REPO / "SECURITY.md", *sorted((REPO / "docs").glob("*.md"))]
    unasked = [f"{doc.name}: {line.strip()}" for doc in documents if doc.exists()
               for line in doc.read_text().splitlines()
               if re.search(r"\bnpx\s", line) and not re.search(r"\bnpx\s+(-y|--yes)\b", line)]
    assert unasked == []


def test_the_quick_start_runs_as_written(quickstart):
    blocks = quickstart_blocks(README.read_text())
    assert quickstart["ready"], "\n".join(quickstart["daemon"])
    output = quickstart["output"]
    assert quickstart["status"] == 0, output
    for n in range(1, len(blocks) + 1):
        assert f"<<quickstart block {n} done>>" in output
    # the deploy answered the started API, and an MCP client reached the
    # example server through the gateway
    assert re.search(r'"state":\s*"STARTED"', output), output
    assert '"serverInfo"' in output and "mcp-servers/everything" in output, output


def test_make_run_prints_where_its_files_are(quickstart):
    work = quickstart["work"]
    printed = [line.split("mcpgated files: ", 1)[1] for line in quickstart["daemon"]
               if "mcpgated files: " in line]
    # the README shows the same line, for a checkout in /home/you/mcpgated
    shown = re.search(r"mcpgated files: (.*)", README.read_text())
    assert shown is not None
    assert printed == [shown.group(1).replace("/home/you/mcpgated", str(work))]
    assert printed[0] == (f"admin token {work}/var/admin.token; databases {work}/var/mcpgated.db and "
                          f"{work}/var/analytics.db; logs {work}/var/log")


def test_make_run_keeps_its_files_in_var(quickstart):
    created = sorted(set(quickstart["after_run"]) - set(quickstart["before"]))
    assert {"var/admin.token", "var/mcpgated.db", "var/analytics.db", "var/log/mcpgated.log",
            "var/log/access.log"} <= set(created)
    assert [path for path in created if not path.startswith("var")] == []


def test_make_clean_removes_what_make_run_created(quickstart):
    assert quickstart["clean_status"] == 0
    assert quickstart["after_clean"] == quickstart["before"]
