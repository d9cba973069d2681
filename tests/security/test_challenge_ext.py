"""
Issue #12, item 7 (challenge): the RFC 8187 extended form
C{resource_metadata*=UTF-8''<percent-encoded URL>} names the backend's
metadata as much as the plain parameter does. With the OAuth relay on, both
point at the gateway's metadata URL; the backend's address never reaches
the client.
"""

from __future__ import annotations

import json
from typing import Iterator, List
from urllib.parse import quote, unquote

import pytest

from mcpgated.oauth.challenge import rewrite_resource_metadata
from tests.support import Daemon, deploy, http

GATEWAY_PRM = "https://gw.example/.well-known/oauth-protected-resource/mcp"
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _ext(url: str, charset: str = "UTF-8", language: str = "") -> str:
    return f"{charset}'{language}'" + quote(url, safe="")


def _challenges(backend_prm: str) -> List[str]:
    return [
        f"Bearer resource_metadata*={_ext(backend_prm)}",
        f'Bearer resource_metadata*={_ext(backend_prm)}, scope="mcp"',
        f'Bearer scope="mcp", Resource_Metadata*={_ext(backend_prm, "utf-8", "en")}',
        f'Bearer resource_metadata="{backend_prm}", resource_metadata*={_ext(backend_prm)}',
        f'DPoP algs="ES256", RESOURCE_METADATA*={_ext(backend_prm, "ISO-8859-1")}',
        f'Bearer realm="r", error="invalid_token", resource_metadata*={_ext(backend_prm)}, '
        f'Basic realm="x"',
        f'Bearer resource_metadata*="{_ext(backend_prm)}"',  # quoted, against RFC 8187
        f"Bearer resource_metadata*=x'y'{quote(backend_prm, safe='')}",  # unknown charset
        f"Bearer resource_metadata*={quote(backend_prm, safe='')}",  # not an ext-value
    ]


@pytest.mark.parametrize("index", range(9))
def test_rewrite_points_the_extended_form_at_the_gateway(index):
    backend_prm = "http://10.0.0.7:3001/.well-known/oauth-protected-resource/mcp"
    value = _challenges(backend_prm)[index]
    rewritten = rewrite_resource_metadata(value, GATEWAY_PRM)
    assert "10.0.0.7" not in unquote(rewritten.value)
    assert "10.0.0.7" not in rewritten.value
    assert _ext(GATEWAY_PRM).split("'", 2)[2] in rewritten.value


def test_rewrite_keeps_every_other_byte():
    backend_prm = "http://10.0.0.7:3001/prm"
    value = f'Bearer error="invalid_token", resource_metadata*={_ext(backend_prm)}, scope="a b"'
    rewritten = rewrite_resource_metadata(value, "https://gw.example/prm")
    assert rewritten.value == ('Bearer error="invalid_token", '
                               "resource_metadata*=UTF-8''https%3A%2F%2Fgw.example%2Fprm, "
                               'scope="a b"')
    assert rewritten.originals == (backend_prm,)  # where the backend's document is


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, peer) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("challenge-ext")).start()
    deploy(d, "/relayed", peer.url + "/mcp", name="Relayed", oauth={"relay": True})
    yield d
    d.stop()


def test_the_backend_address_never_reaches_the_client(daemon, peer):
    backend_prm = peer.url + "/.well-known/oauth-protected-resource/mcp"
    address = peer.url.split("//", 1)[1]
    gateway_prm = f"{daemon.gateway}/.well-known/oauth-protected-resource/relayed"
    try:
        for value in _challenges(backend_prm):
            peer.challenge = [value]
            status, headers, _ = http("POST", daemon.gateway + "/relayed",
                                      raw=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"})
                                      .encode(), headers=ACCEPT)
            assert status == 401
            shown = headers.get_all("WWW-Authenticate")
            assert shown, value
            for challenge in shown:
                assert address not in challenge and address not in unquote(challenge), value
            assert any(gateway_prm in unquote(c) for c in shown), (value, shown)
    finally:
        peer.challenge = None
