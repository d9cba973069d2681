"""
Issue #14 item 12: the daemon log is for what an operator must read.

Every connection of the gateway's own HTTP client (OAuth metadata, JWKS,
introspection, the console's preview) went through twisted.web's connection
pool, whose C{_HTTP11ClientFactory} is C{noisy}: each logged "Starting
factory" and "Stopping factory", at info level, into mcpgated.log. The pool's
factories are quiet now; what goes wrong is still logged.
"""

from __future__ import annotations

import re
from typing import Iterator, Tuple

import pytest

from tests.support import Daemon, deploy, http

NOISE = re.compile(r"(Starting|Stopping) factory|_HTTP11ClientFactory")


@pytest.fixture(scope="module")
def relayed(tmp_path_factory, everything) -> Iterator[Tuple[Daemon, str]]:
    daemon = Daemon(tmp_path_factory.mktemp("noise")).start()
    deploy(daemon, "/relayed", f"http://127.0.0.1:{everything}/mcp", oauth={"relay": True})
    # a backend nothing listens on: the gateway's client fails, and says so
    deploy(daemon, "/gone", "http://127.0.0.1:1/mcp", oauth={"relay": True})
    yield daemon, "/relayed"
    if daemon.proc is not None and daemon.proc.popen.poll() is None:
        daemon.stop()


def test_the_gateway_client_leaves_no_factory_lines_in_the_daemon_log(relayed):
    daemon, path = relayed
    for _ in range(3):  # each fetch of the backend's metadata opens connections of the pool
        for where in ("/.well-known/oauth-protected-resource" + path, path + "/.well-known/oauth-protected-resource"):
            status, _, _ = http("GET", daemon.gateway + where)
            assert status in (200, 404), (where, status)
    status, _, body = http("GET", daemon.gateway + "/.well-known/oauth-protected-resource/gone")
    assert status == 502, body
    daemon.stop()  # closing the pool's connections is where "Stopping factory" came
    text = (daemon.folder / "log" / "mcpgated.log").read_text()
    assert "mcpgated ready" in text  # the log is written at info level
    # what goes wrong is still there
    assert "fetching OAuth metadata http://127.0.0.1:1/.well-known/oauth-protected-resource" in text
    assert not NOISE.search(text), NOISE.search(text)
    assert daemon.proc is not None and not NOISE.search("\n".join(daemon.proc.output))
