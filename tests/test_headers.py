"""
Header rules: hop-by-hop filtering both ways and the X-Forwarded-* set sent
to backends (the public origin's rules: tests/test_forwarding.py).
"""

from __future__ import annotations

import ipaddress

from twisted.web.http_headers import Headers

from mcpgated.proxy.headers import (
    copy_response_headers,
    upstream_request_headers,
)
from tests.support import make_headers

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"),)


def test_request_headers_drop_hop_by_hop_and_connection_named():
    incoming = make_headers(connection="keep-alive, X-Private", x_private="1", keep_alive="5",
                        te="trailers", upgrade="h2c", proxy_authorization="Basic x",
                        host="gw", authorization="Bearer t", mcp_session_id="s",
                        x_forwarded_for="6.6.6.6")
    out = upstream_request_headers(incoming, "10.0.0.1", "https://gw", TRUSTED)
    names = {name.lower() for name, _ in out.getAllRawHeaders()}
    assert not names & {b"connection", b"x-private", b"keep-alive", b"te", b"upgrade",
                        b"proxy-authorization", b"host"}
    assert out.getRawHeaders(b"authorization") == [b"Bearer t"]
    assert out.getRawHeaders(b"mcp-session-id") == [b"s"]
    # a trusted proxy's chain is extended
    assert out.getRawHeaders(b"x-forwarded-for") == [b"6.6.6.6, 10.0.0.1"]
    assert out.getRawHeaders(b"x-forwarded-proto") == [b"https"]


def test_untrusted_forwarded_for_is_replaced():
    out = upstream_request_headers(make_headers(x_forwarded_for="6.6.6.6"), "203.0.113.7", "http://gw", TRUSTED)
    assert out.getRawHeaders(b"x-forwarded-for") == [b"203.0.113.7"]


def test_response_headers_keep_mcp_and_auth_drop_hop_by_hop():
    upstream = make_headers(connection="close, X-Hop", x_hop="1", transfer_encoding="chunked",
                        mcp_session_id="abc", www_authenticate='Bearer resource_metadata="x"',
                        retry_after="5", keep_alive="timeout=5")
    out = Headers()
    copy_response_headers(upstream, out)
    names = {name.lower() for name, _ in out.getAllRawHeaders()}
    assert names == {b"mcp-session-id", b"www-authenticate", b"retry-after"}
