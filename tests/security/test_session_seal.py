"""
Sealed session ids cannot be forged, altered or carried over: every id the
gateway did not seal, unaltered, with a key it holds, for this API and an
endpoint it still has, is "session not found" (404, JSON-RPC -32001), so the
client starts a new session and no request reaches a backend session it was
not given. Variants: bit flips at every byte, characters substituted,
inserted (ones a lenient base64 decoder skips), truncation and extension,
padding, case, another API's id, an old key after rotation, the backend's
own (plain) id, a removed endpoint; in process, then through the daemon for
the header and the legacy transport's query.
"""

from __future__ import annotations

import base64
import json
import socket
import string
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from mcpgated.sealing import Sealer, endpoint_id, new_key_line, parse_keys
from tests.support import Daemon, deploy, http, running, start_everything

KEY_OLD = bytes(range(32))
KEY_NEW = bytes(range(100, 132))
API = "8d4c1f4e-api"
ENDPOINT = endpoint_id("http://127.0.0.1:3001/mcp")
ALPHABET = string.ascii_letters + string.digits + "-_"


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _token(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _tampered(token: str) -> Iterator[Tuple[str, str]]:
    """
    (what, variant) for every alteration of one sealed id.
    """
    raw = _raw(token)
    for index in range(len(raw)):
        for bit in (0x01, 0x80):
            flipped = bytearray(raw)
            flipped[index] ^= bit
            yield f"bit {bit:#x} of byte {index}", _token(bytes(flipped))
    for index in range(len(token)):
        other = ALPHABET[(ALPHABET.index(token[index]) + 1) % len(ALPHABET)]
        yield f"character {index} substituted", token[:index] + other + token[index + 1:]
    for index in (0, 1, len(token) // 2, len(token) - 1, len(token)):
        for junk in (".", "=", " ", "+", "/", "%", "\t", "*"):
            yield f"{junk!r} inserted at {index}", token[:index] + junk + token[index:]
    for length in range(len(token)):
        yield f"truncated to {length}", token[:length]
    for extra in ("A", "AA", "AAA", "AAAA", "=", "==", "_", token):
        yield f"extended by {extra[:8]!r}", token + extra
    yield "upper case", token.upper()
    yield "lower case", token.lower()
    yield "swapped case", token.swapcase()
    yield "standard alphabet", token.replace("-", "+").replace("_", "/")
    yield "version byte 2", _token(b"\x02" + raw[1:])
    yield "nonce of zeros", _token(raw[:1] + bytes(12) + raw[13:])
    yield "tag cut", _token(raw[:-16])
    yield "reversed", token[::-1]


def test_every_alteration_of_a_sealed_id_unseals_to_nothing():
    sealer = Sealer([KEY_NEW])
    token = sealer.seal(API, ENDPOINT, "0f9a6f14-1c1d-4c4e-9b8f-3e2a0e6f8d11")
    assert sealer.unseal(API, token) is not None
    accepted = [what for what, variant in _tampered(token)
                if variant != token and sealer.unseal(API, variant) is not None]
    assert accepted == []


@pytest.mark.parametrize("other", [
    "8d4c1f4e-api2", "8d4c1f4e-API", "8d4c1f4e-ap", "8d4c1f4e-api\x00", "", " 8d4c1f4e-api",
    "8d4c1f4e-аpi",  # Cyrillic a
])
def test_an_id_sealed_for_another_api_unseals_to_nothing(other):
    sealer = Sealer([KEY_NEW])
    assert sealer.unseal(other, sealer.seal(API, ENDPOINT, "session")) is None


def test_an_old_key_is_refused_once_rotated_out():
    old_id = Sealer([KEY_OLD]).seal(API, ENDPOINT, "session")
    assert Sealer([KEY_NEW, KEY_OLD]).unseal(API, old_id) == (ENDPOINT, "session")
    assert Sealer([KEY_NEW]).unseal(API, old_id) is None


@pytest.mark.parametrize("plain", [
    "0f9a6f14-1c1d-4c4e-9b8f-3e2a0e6f8d11", "0f9a6f141c1d4c4e9b8f3e2a0e6f8d11", "1", "x" * 60,
    "A" * 64, "AQ" + "A" * 62, "A" * 4000, "é", "\x00" * 40,
])
def test_a_plain_backend_id_unseals_to_nothing(plain):
    assert Sealer([KEY_NEW]).unseal(API, plain) is None


def test_parts_of_two_ids_do_not_combine():
    sealer = Sealer([KEY_NEW])
    first, second = _raw(sealer.seal(API, ENDPOINT, "first")), _raw(sealer.seal(API, ENDPOINT, "second"))
    assert sealer.unseal(API, _token(first[:13] + second[13:])) is None
    assert sealer.unseal(API, _token(second[:13] + first[13:])) is None


# --- through the daemon ------------------------------------------------------------

MCP_HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "seal-test", "version": "1"}}}


@pytest.fixture(scope="module")
def backends() -> Iterator[List[int]]:
    started = [start_everything("streamableHttp") for _ in range(2)]
    started.append(start_everything("sse"))
    yield [port for _, port in started]
    for proc, _ in started:
        proc.stop()


@pytest.fixture(scope="module")
def sealed_gateway(tmp_path_factory: pytest.TempPathFactory, backends: List[int]
                   ) -> Iterator[Tuple[Daemon, List[str]]]:
    folder = tmp_path_factory.mktemp("seal")
    key_file = folder / "session.key"
    key_file.write_text(_key_line(KEY_NEW) + "\n" + _key_line(KEY_OLD) + "\n")
    daemon = Daemon(folder, extra="")
    daemon.ini.write_text(daemon.ini.read_text().replace(
        "[gateway]\n", f"[gateway]\nsession_key_file = {key_file}\n"))
    for started in running(daemon):
        urls = [f"http://127.0.0.1:{port}/mcp" for port in backends[:2]]
        ids = []
        for path in ("/a", "/b"):
            api = deploy(started, path, None,  # type: ignore[arg-type]
                         endpoints=[{"url": url} for url in urls])
            ids.append(api["id"])
        api = deploy(started, "/legacy", None,  # type: ignore[arg-type]
                     endpoints=[{"url": f"http://127.0.0.1:{backends[2]}"}])
        ids.append(api["id"])
        yield started, ids


def _key_line(key: bytes) -> str:
    return base64.b64encode(key).decode()


def _initialize(daemon: Daemon, path: str) -> str:
    status, headers, body = http("POST", daemon.gateway + path, INIT, MCP_HEADERS)
    assert status == 200, body
    return str(headers["mcp-session-id"])


def _call(daemon: Daemon, path: str, session: str) -> Tuple[int, bytes]:
    status, _, body = http("POST", daemon.gateway + path,
                           {"jsonrpc": "2.0", "id": 7, "method": "tools/list"},
                           dict(MCP_HEADERS, **{"Mcp-Session-Id": session}))
    return status, body


def _not_found(status: int, body: bytes) -> bool:
    if status != 404:
        return False
    error = json.loads(body)["error"]
    return bool(error["code"] == -32001 and error["message"] == "Session not found")


def test_altered_ids_in_the_header_are_session_not_found(sealed_gateway):
    daemon, _ = sealed_gateway
    token = _initialize(daemon, "/a")
    assert _call(daemon, "/a", token)[0] == 200
    variants = [(what, v) for what, v in _tampered(token)
                if v and v != token and v.isprintable() and v.strip() == v and v.isascii()]
    # every byte flipped is many requests: a sample of each kind, all the others
    sample = [pair for index, pair in enumerate(variants)
              if not pair[0].startswith(("bit", "character", "truncated")) or index % 7 == 0]
    wrong = [(what, status) for what, variant in sample
             for status, body in [_call(daemon, "/a", variant)] if not _not_found(status, body)]
    assert wrong == []


def test_another_api_s_id_is_session_not_found_though_the_backends_are_the_same(sealed_gateway):
    daemon, _ = sealed_gateway
    token = _initialize(daemon, "/a")
    assert _not_found(*_call(daemon, "/b", token))
    assert _call(daemon, "/a", token)[0] == 200


def test_the_backend_s_own_id_is_session_not_found(sealed_gateway, backends):
    daemon, ids = sealed_gateway
    # a session the backend knows, opened directly: its plain id gets nowhere
    _, headers, _ = http("POST", f"http://127.0.0.1:{backends[0]}/mcp", INIT, MCP_HEADERS)
    plain = headers["mcp-session-id"]
    assert _not_found(*_call(daemon, "/a", plain))
    # sealed with a key the gateway does not hold: nowhere either
    forged = Sealer(parse_keys(new_key_line())).seal(ids[0], endpoint_id(
        f"http://127.0.0.1:{backends[0]}/mcp"), plain)
    assert _not_found(*_call(daemon, "/a", forged))


def test_an_id_naming_an_endpoint_the_api_no_longer_has_is_session_not_found(sealed_gateway,
                                                                            backends):
    daemon, ids = sealed_gateway
    key = Sealer([KEY_NEW])
    elsewhere = key.seal(ids[0], endpoint_id("http://127.0.0.1:1/mcp"), "anything")
    assert _not_found(*_call(daemon, "/a", elsewhere))


def test_altered_ids_in_the_legacy_query_are_session_not_found(sealed_gateway):
    daemon, _ = sealed_gateway
    from tests.test_balancer_e2e import _endpoint_event

    url = _endpoint_event(daemon, "/legacy/sse")
    token = url.split("sessionId=", 1)[1]
    base = daemon.gateway + "/legacy/message?sessionId="
    ping = {"jsonrpc": "2.0", "id": 3, "method": "ping"}
    for variant in (token[:-1], token + "A", token.swapcase(), token[:10] + "." + token[10:],
                    _token(bytes([_raw(token)[0]]) + bytes(12) + _raw(token)[13:]),
                    "0f9a6f14-1c1d-4c4e-9b8f-3e2a0e6f8d11"):
        status, _, body = http("POST", base + variant, ping, MCP_HEADERS)
        assert _not_found(status, body), (variant, status, body)


def test_rotation_old_key_accepted_while_listed_refused_once_removed(tmp_path: Path, backends):
    key_file = tmp_path / "session.key"
    key_file.write_text(_key_line(KEY_OLD) + "\n")
    daemon = Daemon(tmp_path, extra="")
    daemon.ini.write_text(daemon.ini.read_text().replace(
        "[gateway]\n", f"[gateway]\nsession_key_file = {key_file}\n"))
    daemon.start()
    try:
        api = deploy(daemon, "/r", None,  # type: ignore[arg-type]
                     endpoints=[{"url": f"http://127.0.0.1:{backends[0]}/mcp"}])
        old = _initialize(daemon, "/r")
        daemon.stop()
        key_file.write_text(_key_line(KEY_NEW) + "\n" + _key_line(KEY_OLD) + "\n")
        daemon.start()
        assert _call(daemon, "/r", old)[0] == 200  # the old key still opens it
        new = _initialize(daemon, "/r")
        assert Sealer([KEY_NEW]).unseal(api["id"], new) is not None  # the new key seals
        daemon.stop()
        key_file.write_text(_key_line(KEY_NEW) + "\n")
        daemon.start()
        assert _not_found(*_call(daemon, "/r", old))
        assert _call(daemon, "/r", new)[0] == 200
    finally:
        daemon.stop_if_running()


def _open_legacy(port: int, path: str, host: str) -> Tuple[socket.socket, str]:
    """
    A legacy SSE stream kept open (the session lives with it) and its
    endpoint event's URL.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
    received = b""
    while b"event: endpoint" not in received or \
            b"\n\n" not in received.split(b"event: endpoint", 1)[1]:
        chunk = sock.recv(4096)
        assert chunk, received
        received += chunk
    data = received.split(b"event: endpoint", 1)[1].split(b"\n\n", 1)[0]
    line = [x for x in data.splitlines() if x.startswith(b"data:")][0]
    return sock, line[5:].strip().decode()


def test_no_second_or_escaped_session_parameter_reaches_another_session(sealed_gateway, backends):
    """
    A client holding its own sealed id cannot add a plain backend id (a
    victim's) for the backend to read: a repeated parameter (the backend may
    read the last), an escaped name (the backend decodes it), or the query
    beside the header; every session id the request carries must open.
    """
    daemon, _ = sealed_gateway
    sse_port = backends[2]
    victim, victim_url = _open_legacy(sse_port, "/sse", f"127.0.0.1:{sse_port}")
    mine, my_url = _open_legacy(daemon.ports["gateway"][0], "/legacy/sse",
                                f"127.0.0.1:{daemon.ports['gateway'][0]}")
    try:
        plain = victim_url.split("sessionId=", 1)[1]
        token = my_url.split("sessionId=", 1)[1]
        ping = {"jsonrpc": "2.0", "id": 3, "method": "ping"}
        # the victim's session is live at the backend: its plain id would be taken there
        status, _, _ = http("POST", f"http://127.0.0.1:{sse_port}/message?sessionId={plain}", ping,
                            MCP_HEADERS)
        assert status == 202
        status, _, _ = http("POST", daemon.gateway + f"/legacy/message?sessionId={token}", ping,
                            MCP_HEADERS)
        assert status == 202  # and mine through the gateway
        base = daemon.gateway + "/legacy/message?"
        for query, extra in [
            (f"sessionId={token}&sessionId={plain}", {}),
            (f"sessionId={plain}&sessionId={token}", {}),
            (f"sessionId={token}&session_id={plain}", {}),
            (f"sessionId={token}&session%49d={plain}", {}),
            (f"sessionId={token}&session%5Fid={plain}", {}),
            (f"s%65ssionId={plain}", {"Mcp-Session-Id": token}),
            (f"sessionId={plain}", {"Mcp-Session-Id": token}),
            (f"sessionId={token}", {"Mcp-Session-Id": plain}),
        ]:
            status, _, body = http("POST", base + query, ping, dict(MCP_HEADERS, **extra))
            assert _not_found(status, body), (query, extra, status, body)
    finally:
        victim.close()
        mine.close()
