"""
A configuration error, as an operator meets it from a real C{twistd}: one line
on stderr naming the file, the section and the key, status 1, nothing on
stdout (no usage block, no log lines), nothing created, and never a daemon
left behind. An admin token file that cannot be read is such an error too,
found before twistd logs, listens or daemonizes (not only by --check-config).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import List, Optional

import pytest

from tests.support import BIN

# Every file and port the daemon would use, in tmp_path (relative paths are
# against the working directory) and on ephemeral loopback ports.
SAFE = ("[gateway]\nlisten = tcp:0:interface=127.0.0.1\n"
        "[storage]\npath = data/mcpgated.db\n[logging]\ndir = log\n"
        "[admin]\nlisten = tcp:0:interface=127.0.0.1\n")


def _twistd(argv: List[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "twistd"), *argv], cwd=str(cwd), capture_output=True,
                          text=True, timeout=60)


CASES = [
    # (INI text or None for no file, the one line)
    ("[limits]\nheader_timeout = forever\n",
     "mcpgated: bad.ini: [limits] header_timeout: 'forever' is not a duration (examples: 500ms, 10s, 5m, 1h)"),
    ("[gateway]\nlisen = tcp:0\n",
     "mcpgated: bad.ini: [gateway] lisen: unknown key (known: listen, public_url, trusted_proxies, "
     "allowed_hosts, allowed_origins, http, workers, node, session_key_file)"),
    ("listen = tcp:0\n", "mcpgated: bad.ini: line 1: text before the first [section]"),
    (None, "mcpgated: bad.ini: file not found"),
    (SAFE + "token_file = missing.token\n",
     "mcpgated: bad.ini: [admin] token_file: cannot read: No such file or directory"),
    (SAFE + "token_file = empty.token\n", "mcpgated: bad.ini: [admin] token_file: the file is empty"),
]
IDS = ["bad-value", "unknown-key", "no-section", "no-file", "token-file-missing", "token-file-empty"]


def _bad_ini(folder: Path, text: Optional[str]) -> None:
    (folder / "empty.token").write_text("\n")
    if text is not None:
        (folder / "bad.ini").write_text(text)


def _left(folder: Path, text: Optional[str]) -> List[str]:
    """
    What is in C{folder} but the files the test wrote.
    """
    written = {"empty.token", "bad.ini"} if text is not None else {"empty.token"}
    return sorted(p.name for p in folder.iterdir() if p.name not in written)


@pytest.mark.parametrize("text, line", CASES, ids=IDS)
def test_a_config_error_is_one_line_on_stderr(tmp_path, text, line):
    _bad_ini(tmp_path, text)
    # --nodaemon: should a case start the daemon anyway, it fails here
    # instead of leaving a daemonized twistd behind.
    result = _twistd(["--nodaemon", "--pidfile=", "mcpgated", "-c", "bad.ini"], tmp_path)
    assert (result.returncode, result.stdout, result.stderr.splitlines()) == (1, "", [line])
    assert _left(tmp_path, text) == []


@pytest.mark.parametrize("text, line", [CASES[0], CASES[4]], ids=[IDS[0], IDS[4]])
def test_a_config_error_of_the_daemon_form_is_one_line_too(tmp_path, text, line):
    # twistd mcpgated -c bad.ini as written (it would daemonize): the error
    # comes before, on the terminal, and no daemon is left.
    _bad_ini(tmp_path, text)
    try:
        result = _twistd(["mcpgated", "-c", "bad.ini"], tmp_path)
    finally:
        pidfile = tmp_path / "twistd.pid"
        if pidfile.exists():  # a daemon started after all: end it, then fail
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
    assert (result.returncode, result.stdout, result.stderr.splitlines()) == (1, "", [line])
    assert _left(tmp_path, text) == []
