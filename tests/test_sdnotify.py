"""
L{mcpgated.sdnotify}: the datagram systemd reads, in memory of a real
unix socket (no systemd needed).
"""

from __future__ import annotations

import socket
from pathlib import Path

from mcpgated.sdnotify import notify


def test_without_notify_socket_nothing_is_sent() -> None:
    assert notify("READY=1", {}) is None


def test_ready_reaches_the_socket_systemd_names(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        assert notify("READY=1\nSTATUS=serving", {"NOTIFY_SOCKET": path}) is None
        assert listener.recv(100) == b"READY=1\nSTATUS=serving"


def test_the_abstract_namespace(tmp_path: Path) -> None:
    name = f"mcpgated-test-{tmp_path.name}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        assert notify("STOPPING=1", {"NOTIFY_SOCKET": "@" + name}) is None
        assert listener.recv(100) == b"STOPPING=1"


def test_a_socket_nobody_listens_on_is_a_reason_not_an_exception(tmp_path: Path) -> None:
    reason = notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "missing")})
    assert reason is not None and "missing" in reason
