"""
The public origin and forwarding rules (L{mcpgated.forwarding}): which
peers are trusted proxies, what their Forwarded / X-Forwarded-* headers
may change, and the configured public URL winning over both.
"""

from __future__ import annotations

import ipaddress
from typing import Optional

import pytest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.web.http_headers import Headers

from mcpgated.forwarding import (
    forwarded_pair,
    is_trusted,
    peer_address,
    public_base_path,
    public_origin,
    request_origin,
)
from tests.support import make_headers

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


class FakeRequest:
    def __init__(self, address: object, secure: bool = False, **headers: str) -> None:
        self.requestHeaders = make_headers(**headers)
        self._address = address
        self._secure = secure

    def getClientAddress(self) -> object:
        return self._address

    def isSecure(self) -> bool:
        return self._secure


# --- public_origin ----------------------------------------------------------------------------


def test_public_origin_from_host_when_not_forwarded():
    h = make_headers(host="gw.example:8082", x_forwarded_proto="https", x_forwarded_host="evil.example")
    assert public_origin(h, False, "203.0.113.9", None, TRUSTED) == "http://gw.example:8082"


def test_public_origin_believes_trusted_proxy():
    h = make_headers(host="10.0.0.5:8082", x_forwarded_proto="https", x_forwarded_host="mcp.example.com")
    assert public_origin(h, False, "10.1.2.3", None, TRUSTED) == "https://mcp.example.com"


def test_public_origin_rfc7239_forwarded_wins_over_x_forwarded():
    h = make_headers(host="internal", forwarded='for=1.2.3.4;proto=https;host="api.example"',
                 x_forwarded_host="other.example")
    assert public_origin(h, False, "10.9.9.9", None, TRUSTED) == "https://api.example"


def test_configured_public_url_wins():
    h = make_headers(host="internal:8082", x_forwarded_host="x.example")
    assert public_origin(h, False, "10.1.1.1", "https://gw.example/base", TRUSTED) == "https://gw.example"


def test_tls_listener_gives_https():
    assert public_origin(make_headers(host="gw"), True, "1.1.1.1", None, ()) == "https://gw"


def test_no_host_is_localhost():
    assert public_origin(Headers(), False, None, None, TRUSTED) == "http://localhost"


@pytest.mark.parametrize("peer", [
    "203.0.113.9",        # outside the trusted networks
    "fe80::1",            # IPv6, outside
    None,                 # no IP peer (a UNIX socket)
    "not-an-address",
    "10.0.0.1%eth0",      # a scoped address is no IP address
])
def test_forwarding_headers_of_untrusted_peers_change_nothing(peer: Optional[str]):
    h = make_headers(host="gw:8082", forwarded='proto=https;host="evil.example"',
                 x_forwarded_proto="https", x_forwarded_host="evil.example")
    assert public_origin(h, False, peer, None, TRUSTED) == "http://gw:8082"


def test_no_trusted_networks_trusts_nobody():
    h = make_headers(host="gw", x_forwarded_host="evil.example")
    assert public_origin(h, False, "10.0.0.1", None, ()) == "http://gw"


def test_ipv6_proxies_are_trusted_by_network():
    h = make_headers(host="[fd00::5]:8082", x_forwarded_proto="https", x_forwarded_host="mcp.example")
    assert public_origin(h, False, "fd12::9", None, TRUSTED) == "https://mcp.example"


@pytest.mark.parametrize("proto", ["ftp", "javascript", "HTTPS:", "", "ws"])
def test_only_http_and_https_are_believed_as_the_scheme(proto: str):
    h = make_headers(host="gw", x_forwarded_proto=proto, x_forwarded_host="mcp.example")
    assert public_origin(h, True, "10.0.0.1", None, TRUSTED) == "https://mcp.example"


def test_the_first_hop_of_a_chain_is_the_clients():
    h = make_headers(host="gw", x_forwarded_proto="https, http", x_forwarded_host="first.example, second.example")
    assert public_origin(h, False, "10.0.0.1", None, TRUSTED) == "https://first.example"
    h = make_headers(host="gw", forwarded='proto=https;host=first.example, proto=http;host=second.example')
    assert public_origin(h, False, "10.0.0.1", None, TRUSTED) == "https://first.example"


def test_forwarded_names_and_proto_are_case_insensitive():
    assert forwarded_pair(make_headers(forwarded='For=1.2.3.4; PROTO=HTTPS; Host="a.example:8443"')) == (
        "https", "a.example:8443")
    assert forwarded_pair(make_headers(forwarded="for=1.2.3.4")) == (None, None)
    assert forwarded_pair(Headers()) == (None, None)


def test_forwarded_without_host_falls_back_to_x_forwarded_host():
    h = make_headers(host="gw", forwarded="proto=https", x_forwarded_host="x.example")
    assert public_origin(h, False, "10.0.0.1", None, TRUSTED) == "https://x.example"


def test_is_trusted():
    assert is_trusted("10.255.0.1", TRUSTED) and is_trusted("fd00::1", TRUSTED)
    assert not is_trusted("11.0.0.1", TRUSTED)
    assert not is_trusted("", TRUSTED) and not is_trusted(None, TRUSTED)
    assert not is_trusted("10.0.0.1", ())


# --- the request, the base path -------------------------------------------------------------


def test_peer_address_is_the_ip_of_the_transport():
    assert peer_address(FakeRequest(IPv4Address("TCP", "192.0.2.1", 4000))) == "192.0.2.1"
    assert peer_address(FakeRequest(IPv6Address("TCP", "::1", 4000))) == "::1"
    assert peer_address(FakeRequest(UNIXAddress(b"/run/gw.sock"))) is None
    assert peer_address(FakeRequest(None)) is None


def test_request_origin_reads_headers_transport_and_peer():
    behind = FakeRequest(IPv4Address("TCP", "10.0.0.2", 4000), host="internal", x_forwarded_proto="https",
                         x_forwarded_host="mcp.example")
    assert request_origin(behind, TRUSTED) == "https://mcp.example"
    assert request_origin(behind, ()) == "http://internal"
    assert request_origin(behind, TRUSTED, "http://gw.example:8080/base") == "http://gw.example:8080"
    direct = FakeRequest(IPv4Address("TCP", "192.0.2.1", 4000), secure=True, host="gw.example")
    assert request_origin(direct, TRUSTED) == "https://gw.example"


@pytest.mark.parametrize("url, path", [
    (None, ""), ("", ""), ("https://gw.example", ""), ("https://gw.example/", ""),
    ("https://gw.example/base", "/base"), ("https://gw.example/a/b/", "/a/b"),
])
def test_public_base_path(url: Optional[str], path: str):
    assert public_base_path(url) == path
