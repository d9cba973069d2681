"""
API keys (L{mcpgated.keys}): how they are made and hashed, and the
reactor-side L{KeyIndex} the gateway checks presented keys against, with an
injected clock. The index rebuilt from the store and kept in step by the
admin API runs against a real daemon in tests/test_subscriptions.py.
"""

from __future__ import annotations

import hashlib
from typing import Optional

from mcpgated.keys import MAX_KEY_LENGTH, KeyGrant, KeyIndex, hash_key, key_prefix, new_key


def _grant(api_id: str = "api-1", expires_at: Optional[float] = None) -> KeyGrant:
    return KeyGrant(api_id=api_id, plan="Keys", application_id="app-1",
                    application_name="Cursor", subscription_id="sub-1", expires_at=expires_at)


def test_new_keys() -> None:
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert len(key) == 43 and key.isascii() and not set(key) - set(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
        assert key_prefix(key) == key[:6]
        assert hash_key(key) == hashlib.sha256(key.encode()).hexdigest()


def test_key_index_lookup() -> None:
    index = KeyIndex()
    assert index.lookup("api-1", "anything", 0.0) is None
    key, later, other = new_key(), new_key(), new_key()
    index.load([(hash_key(key), _grant()), (hash_key(later), _grant(expires_at=100.0)),
                (hash_key(other), _grant("api-2"))])
    assert index.lookup("api-1", key, 50.0) == _grant()
    assert index.lookup("api-2", key, 50.0) is None  # another API's key
    assert index.lookup("api-2", other, 50.0) == _grant("api-2")
    # Expiry: valid strictly before expires_at.
    assert index.lookup("api-1", later, 99.999) == _grant(expires_at=100.0)
    assert index.lookup("api-1", later, 100.0) is None
    assert index.lookup("api-1", later, 1e12) is None
    # Wrong, empty, oversized and near-miss keys.
    for wrong in ("", key[:-1], key + " ", key.upper(), "x" * 10000, hash_key(key)):
        assert index.lookup("api-1", wrong, 50.0) is None


def test_key_index_updates() -> None:
    index = KeyIndex()
    key = new_key()
    index.put(hash_key(key), _grant())
    assert index.lookup("api-1", key, 0.0) == _grant()
    # A rotation gives the old key an expiry.
    index.put(hash_key(key), _grant(expires_at=10.0))
    assert index.lookup("api-1", key, 5.0) == _grant(expires_at=10.0)
    assert index.lookup("api-1", key, 10.0) is None
    # Revocation.
    index.remove(hash_key(key))
    assert index.lookup("api-1", key, 0.0) is None
    index.remove(hash_key(key))  # removing twice is harmless
    # load replaces everything.
    index.put(hash_key(key), _grant())
    fresh = new_key()
    index.load([(hash_key(fresh), _grant())])
    assert index.lookup("api-1", key, 0.0) is None
    assert index.lookup("api-1", fresh, 0.0) == _grant()


def test_keys_hash_as_sent_and_oversized_ones_are_not_looked_up() -> None:
    # a presented key is whatever bytes the client sent: undecodable ones hash too
    assert hash_key("caf\udce9") == hashlib.sha256(b"caf\xe9").hexdigest()
    assert hash_key(b"caf\xe9") == hash_key("caf\udce9")
    index = KeyIndex()
    long_key = "k" * (MAX_KEY_LENGTH + 1)
    index.put(hash_key(long_key), _grant())
    assert index.lookup("api-1", long_key, 0.0) is None
    at_limit = "k" * MAX_KEY_LENGTH
    index.put(hash_key(at_limit), _grant())
    assert index.lookup("api-1", at_limit, 0.0) == _grant()
