"""
DNS-rebinding rules for Host and Origin.
"""

from mcpgated.proxy.origin import host_allowed, origin_allowed


def test_loopback_listener_accepts_only_loopback_hosts_by_default():
    for host in ("localhost:8082", "127.0.0.1:8082", "[::1]:8082", "localhost", "app.localhost"):
        assert host_allowed(host, True, (), None), host
    for host in ("evil.example.com", "evil.example.com:8082", "192.168.1.5", None):
        assert not host_allowed(host, True, (), None), host


def test_other_listeners_accept_any_host_unless_configured():
    assert host_allowed("mcp.example.com", False, (), None)
    assert host_allowed(None, False, (), None)
    assert not host_allowed("other.example", False, ("mcp.example.com",), None)
    assert host_allowed("mcp.example.com:443", False, ("mcp.example.com",), None)
    assert host_allowed("anything", True, ("*",), None)


def test_public_url_host_is_always_accepted():
    assert host_allowed("gw.example.com", True, (), "https://gw.example.com/base")


def test_origins():
    assert origin_allowed(None, True, (), None)
    assert origin_allowed("http://localhost:6274", True, (), None)
    assert not origin_allowed("http://evil.example", True, (), None)
    assert not origin_allowed("null", True, (), None)
    assert origin_allowed("http://evil.example", False, (), None)
    assert not origin_allowed("https://evil.example", False, ("https://console.example",), None)
    assert origin_allowed("https://console.example", False, ("https://console.example",), None)
    assert origin_allowed("https://gw.example.com", False, ("https://x",), "https://gw.example.com/p")
