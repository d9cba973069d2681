"""
Sealed session ids (mcpgated.sealing): what seals unseals to the same
endpoint and backend session, for that API only; the key file (generated
0600, rotation by lines). Tampering variants: tests/security/test_session_seal.py.
"""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from mcpgated.sealing import (
    KeyFileError,
    Sealer,
    endpoint_id,
    load_key_file,
    new_key_line,
    parse_keys,
)

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


def test_a_sealed_id_unseals_to_its_endpoint_and_backend_session():
    sealer = Sealer([KEY_A])
    endpoint = endpoint_id("http://10.0.0.1:3001/mcp")
    token = sealer.seal("api-1", endpoint, "5f0c6e1a-backend-session")
    assert sealer.unseal("api-1", token) == (endpoint, "5f0c6e1a-backend-session")
    # the backend's id is not readable in what the client holds
    assert "5f0c6e1a" not in token
    assert b"5f0c6e1a" not in base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def test_sealed_ids_are_visible_ascii_and_query_safe():
    token = Sealer([KEY_A]).seal("api", endpoint_id("http://a"), "x" * 100)
    assert all(0x21 <= ord(c) <= 0x7E for c in token)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_two_seals_of_one_session_differ_but_both_unseal():
    sealer = Sealer([KEY_A])
    endpoint = endpoint_id("http://a")
    first, second = sealer.seal("api", endpoint, "s"), sealer.seal("api", endpoint, "s")
    assert first != second  # fresh nonce each time
    assert sealer.unseal("api", first) == sealer.unseal("api", second) == (endpoint, "s")


def test_endpoint_ids_depend_on_the_url_only():
    assert endpoint_id("http://a:1/mcp") == endpoint_id("http://a:1/mcp")
    assert endpoint_id("http://a:1/mcp") != endpoint_id("http://a:2/mcp")
    assert len(endpoint_id("http://a")) == 8


def test_rotation_the_first_key_seals_every_key_unseals():
    old = Sealer([KEY_A])
    rotated = Sealer([KEY_B, KEY_A])
    endpoint = endpoint_id("http://a")
    from_old = old.seal("api", endpoint, "old-session")
    assert rotated.unseal("api", from_old) == (endpoint, "old-session")
    from_new = rotated.seal("api", endpoint, "new-session")
    assert old.unseal("api", from_new) is None  # sealed with the new key
    assert Sealer([KEY_B]).unseal("api", from_new) == (endpoint, "new-session")


def test_key_file_lines_comments_and_both_base64_alphabets():
    text = ("# session keys\n\n" + base64.b64encode(b"\xfb" * 32).decode() + "\n"
            + base64.urlsafe_b64encode(b"\xfb" * 31 + b"\x01").decode().rstrip("=") + "\n")
    assert parse_keys(text) == (b"\xfb" * 32, b"\xfb" * 31 + b"\x01")


@pytest.mark.parametrize("text, message", [
    ("", "holds no key"),
    ("# only a comment\n", "holds no key"),
    ("not base64!\n", "line 1 is not base64"),
    (base64.b64encode(b"short").decode() + "\n", "line 1 is 5 bytes, not 32"),
    (new_key_line() + "\n" + base64.b64encode(b"x" * 16).decode(), "line 2 is 16 bytes"),
])
def test_bad_key_files_are_refused_naming_the_line(text, message):
    with pytest.raises(KeyFileError, match=message):
        parse_keys(text)


def test_a_missing_key_file_is_generated_0600_once(tmp_path: Path):
    os.umask(0o022)
    path = tmp_path / "state" / "session.key"
    keys = load_key_file(path, generate=True)
    assert len(keys) == 1 and len(keys[0]) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_key_file(path, generate=True) == keys  # kept, not regenerated


def test_a_configured_key_file_that_is_missing_is_an_error(tmp_path: Path):
    with pytest.raises(KeyFileError, match="cannot read"):
        load_key_file(tmp_path / "absent.key", generate=False)
    assert not (tmp_path / "absent.key").exists()


@pytest.mark.parametrize("content, message", [
    (None, "cannot read"),
    ("", "holds no key"),
    ("c2hvcnQ=\n", "line 1 is 5 bytes, not 32"),
])
def test_check_config_reads_a_configured_key_file(tmp_path: Path, content, message):
    from mcpgated.tap import Options

    key_file = tmp_path / "session.key"
    if content is not None:
        key_file.write_text(content)
    ini = tmp_path / "mcpgated.ini"
    ini.write_text(f"[gateway]\nsession_key_file = {key_file}\n[admin]\ntoken = t\n"
                   f"[storage]\npath = {tmp_path}/data/mcpgated.db\n")
    with pytest.raises(SystemExit) as stopped:
        Options().parseOptions(["-c", str(ini), "--check-config"])
    text = str(stopped.value)
    assert "\n" not in text and "[gateway] session_key_file" in text and message in text


def test_check_config_accepts_a_good_key_file_and_generates_none(tmp_path: Path):
    from mcpgated.tap import Options

    key_file = tmp_path / "session.key"
    key_file.write_text(new_key_line() + "\n" + new_key_line() + "\n")
    ini = tmp_path / "mcpgated.ini"
    ini.write_text(f"[gateway]\nsession_key_file = {key_file}\n[admin]\ntoken = t\n"
                   f"[storage]\npath = {tmp_path}/data/mcpgated.db\n[logging]\ndir =\n")
    with pytest.raises(SystemExit) as stopped:
        Options().parseOptions(["-c", str(ini), "--check-config"])
    assert stopped.value.code == 0
    assert not (tmp_path / "data").exists()
