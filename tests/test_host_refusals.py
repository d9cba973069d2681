"""
Issue #14 item 8: a request whose Host or Origin the gateway refuses (the
DNS-rebinding check, mcpgated/proxy/origin.py) gets a 403 naming the key
that would allow it, and the daemon logs the refusal once per refused value
(bounded: a flood of random Hosts grows neither memory nor the log).

Through the real daemon on a loopback listener (where only loopback Hosts
and Origins pass unless configured); RefusalLog's bound in memory.
"""

from __future__ import annotations

import http.client
import json
import re
import uuid
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

from mcpgated.proxy.origin import REFUSALS_LOGGED, RefusalLog
from tests.support import Daemon

CALL = b'{"jsonrpc":"2.0","id":7,"method":"tools/list"}'
HOST_LINE = r"refused Host '{host}' from 127\.0\.0\.1 \(403\): not allowed by \[gateway\] allowed_hosts"
ORIGIN_LINE = (r"refused Origin '{origin}' from 127\.0\.0\.1 \(403\): "
               r"not allowed by \[gateway\] allowed_origins")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[Daemon]:
    started = Daemon(tmp_path_factory.mktemp("refusals")).start()
    yield started
    started.stop()


def _post(daemon: Daemon, headers: Dict[str, str],
          connection: Optional[http.client.HTTPConnection] = None) -> Tuple[int, Dict]:
    own = connection is None
    connection = connection or http.client.HTTPConnection("127.0.0.1", daemon.ports["gateway"][0],
                                                          timeout=10)
    try:
        connection.request("POST", "/anything", CALL, {
            "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
            **headers})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        if own:
            connection.close()


def _lines(daemon: Daemon, pattern: str) -> List[str]:
    assert daemon.proc is not None
    return [line for line in daemon.proc.output if re.search(pattern, line)]


def _logged_by_now(daemon: Daemon) -> None:
    """
    Wait until every line logged so far has been read: refuse a fresh Host
    and wait for its line (lines come in order).
    """
    fresh = f"sync-{uuid.uuid4().hex}.example"
    assert _post(daemon, {"Host": fresh})[0] == 403
    assert daemon.proc is not None
    daemon.proc.wait_for(HOST_LINE.format(host=re.escape(fresh)))


@pytest.mark.parametrize("host", [
    "evil.example", "evil.example:8082", "EVIL.Example", "10.0.0.1", "[2001:db8::1]:443",
    "mcp.example.com", "localhost.evil.example",
])
def test_a_refused_host_names_allowed_hosts(daemon, host):
    status, body = _post(daemon, {"Host": host})
    assert status == 403
    assert body["id"] == 7
    assert body["error"]["message"] == \
        "Host header not allowed by this gateway ([gateway] allowed_hosts)"


@pytest.mark.parametrize("origin", [
    "https://evil.example", "null", "http://evil.example:8082", "HTTPS://EVIL.EXAMPLE",
    "http://localhost.evil.example",
])
def test_a_refused_origin_names_allowed_origins(daemon, origin):
    status, body = _post(daemon, {"Host": "127.0.0.1", "Origin": origin})
    assert status == 403
    assert body["error"]["message"] == \
        "Origin not allowed by this gateway ([gateway] allowed_origins)"


def test_each_refused_host_is_logged_once(daemon):
    host = f"once-{uuid.uuid4().hex}.example"
    for value in (host, host, host.upper(), host + ":8443", host):
        assert _post(daemon, {"Host": value})[0] == 403
    _logged_by_now(daemon)
    # one line per distinct value (the port makes another one), case folded
    assert len(_lines(daemon, HOST_LINE.format(host=re.escape(host)))) == 1
    assert len(_lines(daemon, HOST_LINE.format(host=re.escape(host + ":8443")))) == 1


def test_each_refused_origin_is_logged_once(daemon):
    origin = f"https://{uuid.uuid4().hex}.example"
    for value in (origin, origin, origin.upper()):
        assert _post(daemon, {"Host": "localhost", "Origin": value})[0] == 403
    _logged_by_now(daemon)
    assert len(_lines(daemon, ORIGIN_LINE.format(origin=re.escape(origin)))) == 1


def test_an_allowed_host_is_not_logged(daemon):
    for host in ("127.0.0.1", "localhost", "LOCALHOST:1234", "[::1]"):
        status, _ = _post(daemon, {"Host": host})
        assert status == 404  # past the check: no API at /anything
    _logged_by_now(daemon)
    assert not _lines(daemon, r"refused Host '(127\.0\.0\.1|localhost|localhost:1234|\[::1\])'")


def test_a_refused_value_is_shown_as_data_and_cut(daemon):
    # Control characters never reach the check (the edge answers 400); braces
    # are not format fields, and a long value is cut.
    origin = "https://{peer}.{key}.example/" + "x" * 1000
    assert _post(daemon, {"Host": "127.0.0.1", "Origin": origin})[0] == 403
    _logged_by_now(daemon)
    (line,) = _lines(daemon, r"refused Origin 'https://\{peer\}\.\{key\}\.example/x+' from")
    kept = 200 - len("https://{peer}.{key}.example/")  # 200 characters of the value
    assert "x" * kept in line and "x" * (kept + 1) not in line


def test_a_flood_of_random_hosts_is_logged_up_to_the_bound(tmp_path):
    flooded = Daemon(tmp_path).start()
    assert flooded.proc is not None
    try:
        connection = http.client.HTTPConnection("127.0.0.1", flooded.ports["gateway"][0],
                                                timeout=10)
        hosts = [f"flood-{n}-{uuid.uuid4().hex[:8]}.example" for n in range(REFUSALS_LOGGED + 60)]
        for host in hosts:
            assert _post(flooded, {"Host": host}, connection)[0] == 403
        connection.close()
        flooded.proc.wait_for(rf"{REFUSALS_LOGGED} distinct Host and Origin values refused: "
                              "further ones are refused without a log line")
    finally:
        assert flooded.stop() in (0, -15)  # every line is out once it has exited
    logged = _lines(flooded, r"refused Host 'flood-")
    assert len(logged) == REFUSALS_LOGGED
    assert all(host in line for host, line in zip(hosts, logged, strict=False))
    assert len(_lines(flooded, "further ones are refused without a log line")) == 1


def test_the_remembered_values_are_bounded():
    refusals = RefusalLog(limit=100)
    logged = [refusals.refused("Host", f"h{n}.example", "allowed_hosts", "192.0.2.1")
              for n in range(10_000)]
    assert logged.count(True) == 100 and len(refusals._seen) == 100
    assert not refusals.refused("Host", "h5.example", "allowed_hosts", None)  # seen
    # a missing Host is one value too
    fresh = RefusalLog()
    assert fresh.refused("Host", None, "allowed_hosts", None)
    assert not fresh.refused("Host", None, "allowed_hosts", None)
