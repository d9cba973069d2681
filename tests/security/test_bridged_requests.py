"""
2026-07-28 requests bridged to a handshake-era backend are held to what
that revision's server checks, by the gateway, since the backend cannot:
a request whose C{_meta} is incomplete, whose routing headers disagree with
its body (however spelt), or whose method 2026-07-28 does not have never
reaches the backend, and gets the spec's status and code.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Dict, Iterator, Optional, Tuple

import pytest

from tests.support import Daemon, deploy, http, running
from tests.test_proxy_classic import _modern, start_classic

TO_CLASSIC = {"clientVersions": ["2026-07-28"], "backendVersion": "2025-11-25"}
META = "io.modelcontextprotocol/"


@pytest.fixture(scope="module")
def bridged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[str, str]]:
    proc, backend_url = start_classic()
    for daemon in running(Daemon(tmp_path_factory.mktemp("bridged"))):
        deploy(daemon, "/b", backend_url + "/mcp", protocol=TO_CLASSIC)
        yield daemon.gateway + "/b", backend_url
    proc.stop()


def _reached(backend: str) -> int:
    """
    How many POSTs the backend has had.
    """
    status, _, answer = http("GET", backend + "/state")
    return int(json.loads(answer)["posts"])


def _without(meta_key: str) -> Tuple[Dict[str, Any], Dict[str, str]]:
    body, headers = _modern("tools/list")
    del body["params"]["_meta"][META + meta_key]
    return body, headers


def _headers(method: str, params: Any, **changes: Optional[str]
             ) -> Tuple[Dict[str, Any], Dict[str, str]]:
    body, headers = _modern(method, params)
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return body, headers


def _no_meta() -> Tuple[Dict[str, Any], Dict[str, str]]:
    body, headers = _modern("tools/list")
    del body["params"]["_meta"]
    return body, headers


CALL = {"name": "whoami", "arguments": {}}
B64 = "=?base64?" + base64.b64encode(b"whoami").decode() + "?="
REFUSED = {
    "no _meta": (_no_meta(), 400, -32602),
    "no protocol version": (_without("protocolVersion"), 400, -32602),
    "no client capabilities": (_without("clientCapabilities"), 400, -32602),
    "version header differs": (_headers("tools/list", None, **{"MCP-Protocol-Version": "2025-11-25"}),
                               400, -32020),
    "no version header": (_headers("tools/list", None, **{"MCP-Protocol-Version": None}), 400, -32020),
    "no Mcp-Method": (_headers("tools/list", None, **{"Mcp-Method": None}), 400, -32020),
    "another Mcp-Method": (_headers("tools/list", None, **{"Mcp-Method": "prompts/list"}),
                           400, -32020),
    "Mcp-Method in another case": (_headers("tools/list", None, **{"Mcp-Method": "Tools/List"}),
                                   400, -32020),
    "no Mcp-Name": (_headers("tools/call", CALL, **{"Mcp-Name": None}), 400, -32020),
    "another Mcp-Name": (_headers("tools/call", CALL, **{"Mcp-Name": "log"}), 400, -32020),
    "Mcp-Name in another case": (_headers("tools/call", CALL, **{"Mcp-Name": "WhoAmI"}), 400, -32020),
    "base64 of another name": (_headers("tools/call", CALL, **{
        "Mcp-Name": "=?base64?" + base64.b64encode(b"log").decode() + "?="}), 400, -32020),
    "malformed base64": (_headers("tools/call", CALL, **{"Mcp-Name": "=?base64?@@?="}), 400, -32020),
    "base64 marker in another case": (_headers("tools/call", CALL, **{
        "Mcp-Name": "=?BASE64?" + base64.b64encode(b"whoami").decode() + "?="}), 400, -32020),
    "ping (removed)": (_modern("ping"), 404, -32601),
    "logging/setLevel (removed)": (_modern("logging/setLevel", {"level": "info"}), 404, -32601),
    "resources/subscribe (removed)": (_modern("resources/subscribe", {"uri": "file:///x"}),
                                      404, -32601),
    "an unknown method": (_modern("made/up"), 404, -32601),
    "initialize": (_headers("initialize", {"protocolVersion": "2025-11-25"}), 404, -32601),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_before_the_backend(bridged, case: str):
    url, backend = bridged
    (body, headers), status, code = REFUSED[case]
    before = _reached(backend)
    got, _, answer = http("POST", url, body, headers)
    error = json.loads(answer)
    assert (got, error["error"]["code"], error["id"]) == (status, code, 7), answer
    assert _reached(backend) == before


def test_the_base64_form_of_the_right_name_passes(bridged):
    url, backend = bridged
    body, headers = _headers("tools/call", CALL, **{"Mcp-Name": B64})
    before = _reached(backend)
    status, _, answer = http("POST", url, body, headers)
    assert status == 200, answer
    assert _reached(backend) > before


def _raw(text: bytes) -> Tuple[bytes, Dict[str, str]]:
    _, headers = _modern("tools/call", CALL)
    return text, headers


META_JSON = (b'"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", '
             b'"io.modelcontextprotocol/clientCapabilities": {}}')
UNREAD = {
    # a key twice: one reader takes the first, another the last
    "method twice": _raw(b'{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "method": "tools/list", '
                         b'"params": {"name": "whoami", ' + META_JSON + b'}}'),
    "name twice": _raw(b'{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {'
                       b'"name": "whoami", "name": "log", ' + META_JSON + b'}}'),
    "NaN": _raw(b'{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {'
                b'"name": "whoami", "arguments": {"x": NaN}, ' + META_JSON + b'}}'),
    "not UTF-8": _raw(b'{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {'
                      b'"name": "who\xffami", ' + META_JSON + b'}}'),
    "a byte order mark": _raw(b'\xef\xbb\xbf{"jsonrpc": "2.0", "id": 7, "method": "tools/call", '
                              b'"params": {"name": "whoami", ' + META_JSON + b'}}'),
}


@pytest.mark.parametrize("case", sorted(UNREAD))
def test_a_body_read_two_ways_never_reaches_the_backend(bridged, case: str):
    url, backend = bridged
    raw, headers = UNREAD[case]
    before = _reached(backend)
    status, _, answer = http("POST", url, raw=raw, headers=headers)
    assert status == 400, answer
    assert json.loads(answer)["error"]["code"] in (-32700, -32600)
    assert _reached(backend) == before
