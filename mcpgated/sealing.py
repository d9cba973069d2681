"""
Sealed session ids: the C{Mcp-Session-Id} (and the legacy transport's
C{sessionId}) a client of a load-balanced API sees is the backend's own
session id and the endpoint that holds it, encrypted and authenticated
(AES-256-GCM, the API id as associated data). Any gateway node holding the
key routes it to the same endpoint without a shared store; an id that was
altered, sealed for another API or with an unknown key, or never sealed at
all, unseals to nothing (the gateway answers "session not found", 404).

The key file (C{[gateway] session_key_file}) holds one key per line
(base64 of 32 bytes; blank lines and C{#} comments ignored): the first line
seals, every line unseals, so a key is rotated by putting the new one
first and removing the old one once its sessions are gone.

    token = base64url(version 1 byte | nonce 12 bytes | AES-GCM(plaintext) )
    plaintext = endpoint id (8 bytes) | backend session id (ASCII)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mcpgated.files import SECRET_DIR, make_dirs

VERSION = b"\x01"
_NONCE = 12
_TAG = 16
ENDPOINT_ID = 8  # bytes naming an endpoint inside a sealed id
KEY_BYTES = 32
_AAD_PREFIX = b"mcpgated session v1\x00"
# a session id longer than this (sealed) is not one the gateway made
MAX_TOKEN = 2048
MAX_OPENED = 10000  # ids remembered as unsealed


class KeyFileError(ValueError):
    """
    The session key file cannot be used; the message says why (which line).
    """


def endpoint_id(url: str) -> bytes:
    """
    The 8 bytes that name an endpoint in a sealed id: from its URL, so the
    same endpoint has the same id on every node and after a redeploy that
    reorders or adds endpoints.
    """
    return hashlib.sha256(url.encode("utf-8")).digest()[:ENDPOINT_ID]


def parse_keys(text: str) -> Tuple[bytes, ...]:
    """
    The keys of a key file's text, the sealing key first.

    @raise KeyFileError: naming the line that is not base64 of 32 bytes, or
        when there is no key.
    """
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key = base64.b64decode(line.replace("-", "+").replace("_", "/") + "=" * (-len(line) % 4),
                                   validate=True)
        except (binascii.Error, ValueError):
            raise KeyFileError(f"line {number} is not base64") from None
        if len(key) != KEY_BYTES:
            raise KeyFileError(f"line {number} is {len(key)} bytes, not {KEY_BYTES} "
                               f"(generate one with: openssl rand -base64 32)")
        keys.append(key)
    if not keys:
        raise KeyFileError("the file holds no key")
    return tuple(keys)


def new_key_line() -> str:
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def load_key_file(path: Path, generate: bool) -> Tuple[bytes, ...]:
    """
    The keys in C{path}; when it does not exist and C{generate} is set, a
    new file with one fresh key is created first (mode 0600, its folder
    0700 when made).

    @raise KeyFileError: the file cannot be read or holds no usable key.
    """
    if generate and not path.exists():
        make_dirs(path.parent, SECRET_DIR)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # made meanwhile (another node's process on a shared folder): use it
        else:
            with os.fdopen(fd, "w") as f:
                os.fchmod(fd, 0o600)
                f.write(new_key_line() + "\n")
    try:
        text = path.read_text("ascii")
    except OSError as e:
        raise KeyFileError(f"cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise KeyFileError("not ASCII text") from None
    return parse_keys(text)


class Sealer:
    """
    Seals and unseals session ids with a list of keys: the first seals,
    all unseal.
    """

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        self._ciphers = tuple(AESGCM(key) for key in keys)
        self._aad: Dict[str, bytes] = {}
        # what recent ids unsealed to: a session sends its id with every
        # request, opened once (a pure function of the keys and the id)
        self._opened: Dict[Tuple[str, str], Tuple[bytes, str]] = {}

    def _associated(self, api_id: str) -> bytes:
        aad = self._aad.get(api_id)
        if aad is None:
            if len(self._aad) > 10000:
                self._aad.clear()
            aad = self._aad[api_id] = _AAD_PREFIX + api_id.encode("utf-8")
        return aad

    def seal(self, api_id: str, endpoint: bytes, session: str) -> str:
        """
        The id the client sees for backend session C{session} held by
        C{endpoint} (L{endpoint_id}) of API C{api_id}.
        """
        nonce = os.urandom(_NONCE)
        sealed = self._ciphers[0].encrypt(nonce, endpoint + session.encode("latin-1"),
                                          self._associated(api_id))
        return base64.urlsafe_b64encode(VERSION + nonce + sealed).rstrip(b"=").decode("ascii")

    def unseal(self, api_id: str, token: str) -> Optional[Tuple[bytes, str]]:
        """
        The endpoint id and backend session id sealed in C{token} for API
        C{api_id}, or L{None}: not a token this gateway's keys sealed for
        this API, unaltered.
        """
        opened = self._opened.get((api_id, token))
        if opened is not None:
            return opened
        if not 0 < len(token) <= MAX_TOKEN:
            return None
        try:
            raw = token.encode("ascii")
            data = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
        except (UnicodeEncodeError, binascii.Error, ValueError):
            return None
        # one spelling per token: no padding, no characters outside the
        # alphabet (the decoder skips them), no other trailing bits
        if base64.urlsafe_b64encode(data).rstrip(b"=") != raw:
            return None
        if len(data) < 1 + _NONCE + ENDPOINT_ID + _TAG or data[:1] != VERSION:
            return None
        nonce, sealed = data[1:1 + _NONCE], data[1 + _NONCE:]
        aad = self._associated(api_id)
        for cipher in self._ciphers:
            try:
                plain = cipher.decrypt(nonce, sealed, aad)
            except InvalidTag:
                continue
            opened = plain[:ENDPOINT_ID], plain[ENDPOINT_ID:].decode("latin-1")
            if len(self._opened) >= MAX_OPENED:
                self._opened.clear()
            self._opened[(api_id, token)] = opened
            return opened
        return None
