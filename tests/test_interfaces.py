"""
Every zope interface of the package is provided, in full, by the object the
daemon uses for it (L{zope.interface.verify.verifyObject}: declared, every
method present with a compatible signature, every attribute set).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest
from twisted.internet.error import ConnectError
from twisted.internet.task import Clock
from twisted.web.http_headers import Headers
from zope.interface import Interface
from zope.interface.verify import verifyClass, verifyObject

import mcpgated
from mcpgated.analytics.interfaces import IExchangeObserver, IRecorder
from mcpgated.analytics.metrics import Metrics
from mcpgated.analytics.recorder import Recorder
from mcpgated.analytics.tracker import ExchangeTracker
from mcpgated.config import LimitsConfig
from mcpgated.model import ApiDefinition, Plan
from mcpgated.policy.auth import Authenticator, ITokenVerifier
from mcpgated.policy.gate import Gate
from mcpgated.policy.interfaces import IAdmission, ILimiter
from mcpgated.policy.ratelimit import Limiter
from mcpgated.cluster.changes import IChangeFeed, LocalFeed
from mcpgated.policy.tokens import TokenVerifier
from mcpgated.proxy.backend_client import BackendClient
from mcpgated.proxy.interfaces import IBackendClient
from mcpgated.proxy.upstream import UpstreamPool
from mcpgated.store import IApiStore, SQLiteApiStore

LIMITS = LimitsConfig(max_body=1024 * 1024, connect_timeout=5.0, header_timeout=30.0, idle_timeout=60.0)


def _definition() -> ApiDefinition:
    return ApiDefinition("files", "1", "", "/files", "http://127.0.0.1:1/mcp", (Plan("Keyless"),))


def _gate(clock: Clock, tmp_path: Path) -> Gate:
    # as the tap builds it (mcpgated.tap): an authenticator with a token verifier, a limiter
    verifier = TokenVerifier(clock, UpstreamPool(reactor=clock, limits=LIMITS))
    return Gate(Authenticator(clock, keys=None, verifier=verifier), Limiter(clock))


def _recorder(clock: Clock, tmp_path: Path) -> Recorder:
    return Recorder(clock, None, Metrics())


def _observer(clock: Clock, tmp_path: Path) -> Any:
    # the observer the resource gets: the recorder makes it
    return _recorder(clock, tmp_path).observer("api-1", _definition(), "127.0.0.1", clock.seconds(), b"POST")


def _backend_client(clock: Clock, tmp_path: Path) -> BackendClient:
    def endpoint_for(scheme: bytes, host: bytes, port: int) -> Any:
        raise ConnectError("no network in this test")

    return BackendClient(clock, endpoint_for)


def _store(clock: Clock, tmp_path: Path) -> SQLiteApiStore:
    return SQLiteApiStore(clock, tmp_path / "store.sqlite")  # not started: no thread, no file


def _token_verifier(clock: Clock, tmp_path: Path) -> TokenVerifier:
    return TokenVerifier(clock, UpstreamPool(reactor=clock, limits=LIMITS))


Maker = Callable[[Clock, Path], Any]
IMPLEMENTATIONS: Dict[str, Tuple[Any, type, Maker]] = {
    "IAdmission": (IAdmission, Gate, _gate),
    "IExchangeObserver": (IExchangeObserver, ExchangeTracker, _observer),
    "IRecorder": (IRecorder, Recorder, _recorder),
    "IBackendClient": (IBackendClient, BackendClient, _backend_client),
    "IApiStore": (IApiStore, SQLiteApiStore, _store),
    "ITokenVerifier": (ITokenVerifier, TokenVerifier, _token_verifier),
    # the in-memory limiter (one process); the shared ones add their own lines
    "ILimiter": (ILimiter, Limiter, lambda clock, path: Limiter(clock)),
    # one process alone (the default); the feeds between processes and nodes add theirs
    "IChangeFeed": (IChangeFeed, LocalFeed, lambda clock, path: LocalFeed()),
}


@pytest.mark.parametrize("name", sorted(IMPLEMENTATIONS))
def test_the_daemons_implementation_provides_the_interface(name: str, tmp_path: Path) -> None:
    interface, cls, make = IMPLEMENTATIONS[name]
    instance = make(Clock(), tmp_path)
    assert type(instance) is cls
    assert interface.providedBy(instance)
    assert verifyObject(interface, instance)
    assert verifyClass(interface, cls)


def _declared_interfaces() -> List[Tuple[str, str]]:
    """
    Every class of the package that subclasses C{Interface}, read from the
    source (so no module needs importing), as (module path, name).
    """
    root = Path(mcpgated.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                    (isinstance(base, ast.Name) and base.id == "Interface")
                    or (isinstance(base, ast.Attribute) and base.attr == "Interface") for base in node.bases):
                found.append((str(path.relative_to(root.parent)), node.name))
    return found


def test_every_interface_of_the_package_is_verified_here() -> None:
    declared = _declared_interfaces()
    assert {name for _, name in declared} == set(IMPLEMENTATIONS), declared
    for path, name in declared:
        interface = IMPLEMENTATIONS[name][0]
        assert issubclass(type(interface), type(Interface))
        assert interface.__name__ == name
        assert interface.__module__.replace(".", "/") + ".py" == path


def test_the_gate_tells_which_apis_need_it() -> None:
    # IAdmission.needed on the real gate: an open keyless API skips admission
    gate = _gate(Clock(), Path("."))
    assert gate.needed(_definition()) is False
    keyed = ApiDefinition("files", "1", "", "/files", "http://127.0.0.1:1/mcp", (Plan("Keys", security="API_KEY"),))
    assert gate.needed(keyed) is True


def test_the_backend_client_answers_a_request_with_a_deferred() -> None:
    # IBackendClient.request: a Deferred, failing with the connection error
    client = _backend_client(Clock(), Path("."))
    failures: List[Any] = []
    client.request(b"GET", b"http://127.0.0.1:1/mcp", Headers(), None).addErrback(failures.append)
    assert len(failures) == 1 and failures[0].check(ConnectError)


def test_the_exchange_span_provides_the_observer_interface() -> None:
    # [tracing] on: the resource's reader tells the exchange's span, which passes it on
    from mcpgated.analytics.tracing import ExchangeSpan, Tracing
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    span = Tracing(None, exporter=InMemorySpanExporter()).exchange(Headers())
    assert verifyObject(IExchangeObserver, span)
    assert verifyClass(IExchangeObserver, ExchangeSpan)
