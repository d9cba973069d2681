"""
systemd's readiness protocol (sd_notify(3)), which Twisted lacks: under a
C{Type=notify} unit, systemd sets C{NOTIFY_SOCKET} and counts the service
started only when C{READY=1} arrives there, so C{systemctl start} waits
until the daemon serves, and fails if it stops before.
"""

from __future__ import annotations

import os
import socket
from typing import Mapping, Optional


def notify(state: str, environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """
    Send C{state} (C{"READY=1"}, C{"STOPPING=1"}, C{"STATUS=..."}, newline
    separated) to systemd, if it listens.

    @return: None when sent or when there is no C{NOTIFY_SOCKET}, else why
        it could not be sent.
    """
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not address:
        return None
    if address.startswith("@"):  # the abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)  # one datagram; never wait on systemd
            sock.sendto(state.encode("utf-8"), address)
    except OSError as e:
        return f"{address.lstrip(chr(0))}: {e.strerror or e}"
    return None
