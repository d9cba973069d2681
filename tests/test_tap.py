"""
The composition root in process: C{makeService} (mcpgated/tap.py) with a
temporary INI and a L{MemoryReactorClock}, which records the listeners the
daemon asks for instead of binding them; and the twistd options, which turn
a bad file into one line. test_config.py and test_daemon_e2e.py run the
same through a real C{twistd}.

C{makeService} takes the reactor as an argument (the twistd plugin passes
none, and the global reactor is used): nothing here touches the real one.
Only C{privilegedStartService} runs (the listening step); starting the
whole service would open the store and the log files. The memory reactor
binds nothing, so the fixed port numbers below are only numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock
from twisted.web.server import Site

from mcpgated.admin.console import AdminRoot
from mcpgated.config import defaults
from mcpgated.proxy.resource import GatewayResource
from mcpgated.tap import ListenerService, Options, makeService


def write_ini(folder: Path, text: str = "") -> Path:
    """
    An INI whose files all live in C{folder}, plus C{text}.
    """
    ini = folder / "mcpgated.ini"
    ini.write_text("[storage]\npath = data/mcpgated.db\n[logging]\ndir = log\n" + text)
    return ini


def options(ini: Path, *extra: str) -> Options:
    parsed = Options()
    parsed.parseOptions(["-c", str(ini), *extra])
    return parsed


def listen(folder: Path, text: str = "") -> Tuple[Any, MemoryReactorClock]:
    """
    The service C{makeService} builds for the INI, after its listening step.
    """
    reactor = MemoryReactorClock()
    service = makeService(options(write_ini(folder, text)), reactor=reactor)
    service.privilegedStartService()
    return service, reactor


def servers(reactor: MemoryReactorClock) -> List[Tuple[int, str, Any]]:
    """
    (port, interface, factory) of every TCP listener asked for.
    """
    return [(port, interface, factory) for port, factory, _, interface in reactor.tcpServers]


def test_the_defaults_put_the_gateway_on_every_interface_and_the_admin_on_loopback(tmp_path):
    service, reactor = listen(tmp_path)
    gateway_port = int(defaults()["gateway"]["listen"].split(":")[1])
    admin_port = int(defaults()["admin"]["listen"].split(":")[1])
    (gw_port, gw_interface, gw_factory), (ad_port, ad_interface, ad_factory) = servers(reactor)
    assert (gw_port, gw_interface) == (gateway_port, "")
    assert (ad_port, ad_interface) == (admin_port, "127.0.0.1")
    # the admin listener serves the admin API, the gateway one the MCP proxy
    assert isinstance(ad_factory, Site) and isinstance(ad_factory.resource, AdminRoot)
    assert not isinstance(gw_factory, Site)
    assert isinstance(service.gateway, GatewayResource)
    assert service.ports() == {"gateway": [gateway_port], "admin": [admin_port]}


def test_every_configured_endpoint_is_listened_on(tmp_path):
    _, reactor = listen(tmp_path, "[gateway]\nlisten = tcp:18080:interface=127.0.0.1 tcp6:18081:interface=\\:\\:1\n"
                                  "[admin]\nlisten = tcp:18090:interface=10.1.2.3 tcp:18091:interface=127.0.0.1\n")
    ports = [(port, interface) for port, interface, _ in servers(reactor)]
    assert ports == [(18080, "127.0.0.1"), (18081, "::1"), (18090, "10.1.2.3"), (18091, "127.0.0.1")]
    factories = [factory for _, _, factory in servers(reactor)]
    assert factories[0] is factories[1] and factories[2] is factories[3]


def test_the_twisted_http_server_is_a_twisted_web_site(tmp_path):
    _, reactor = listen(tmp_path, "[gateway]\nlisten = tcp:0\nhttp = twisted\n")
    (_, _, gateway), _ = servers(reactor)
    assert isinstance(gateway, Site)


class RefusingReactor(MemoryReactorClock):
    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        raise CannotListenError(interface, port, OSError(98, "Address already in use"))


def test_a_port_in_use_stops_startup_with_one_line(tmp_path):
    service = makeService(options(write_ini(tmp_path, "[admin]\nlisten = tcp:18093:interface=127.0.0.1\n")),
                          reactor=RefusingReactor())
    with pytest.raises(SystemExit) as stopped:
        service.privilegedStartService()
    message = str(stopped.value)
    assert "\n" not in message
    assert message.startswith("mcpgated: cannot listen on tcp:8082 (gateway): ")
    assert "Address already in use" in message


def test_a_listener_stops_listening_when_stopped():
    listener = ListenerService("gateway", "tcp:0:interface=127.0.0.1", object(), MemoryReactorClock())
    listener.privilegedStartService()
    assert listener.bound_port() == 0 and listener.port is not None
    listener.stopService()
    assert listener.bound_port() is None


@pytest.mark.parametrize("text,located", [
    ("[gateway]\nlisten = udp:53\n", "[gateway] listen"),
    ("[admin]\nlisten =\n", "[admin] listen"),
    ("[limits]\nmax_body = lots\n", "[limits] max_body"),
    ("[gateway]\nlisten = tcp:0\nlisten = tcp:1\n", "[gateway] listen"),
    ("[gatway]\nlisten = tcp:0\n", "[gatway]"),
])
def test_a_config_error_is_one_line_naming_section_and_key(tmp_path, text, located):
    ini = write_ini(tmp_path, text)
    with pytest.raises(SystemExit) as stopped:
        options(ini)
    message = str(stopped.value)
    assert "\n" not in message
    assert message.startswith(f"mcpgated: {ini}:")
    assert located in message


def test_check_config_says_valid_and_exits_zero(tmp_path, capsys):
    ini = write_ini(tmp_path, "[admin]\ntoken = t\n")
    with pytest.raises(SystemExit) as stopped:
        options(ini, "--check-config")
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"{ini}: configuration is valid\n"
    assert not (tmp_path / "data").exists()  # a check creates nothing


def test_check_config_reads_the_token_file(tmp_path):
    ini = write_ini(tmp_path, "[admin]\ntoken_file = missing.token\n")
    with pytest.raises(SystemExit) as stopped:
        options(ini, "--check-config")
    message = str(stopped.value)
    assert "\n" not in message and "[admin] token_file" in message and "cannot read" in message


def test_make_service_builds_and_opens_nothing(tmp_path):
    reactor = MemoryReactorClock()
    service = makeService(options(write_ini(tmp_path)), reactor=reactor)
    assert reactor.tcpServers == [] and reactor.getDelayedCalls() == []
    assert list(tmp_path.iterdir()) == [tmp_path / "mcpgated.ini"]
    roles: Dict[str, int] = {}
    for child in service:
        if isinstance(child, ListenerService):
            roles[child.role] = roles.get(child.role, 0) + 1
    assert roles == {"gateway": 1, "admin": 1}
