"""
API keys: how they are made and the in-memory index the gateway checks them
against.

A key is shown once, when it is issued; only its SHA-256 (hex) is stored.
Keys are 32 random bytes from L{secrets}, so a fast unsalted hash is enough:
there is nothing to brute-force.

L{KeyIndex} is the reactor-side view of the keys that can be used now, like
L{mcpgated.routing.RouteTable} for APIs: the store loads it at start and the
admin API updates it after each committed write (issue, rotate, revoke,
subscription closed, application deleted). The gateway only calls
L{KeyIndex.lookup}.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Dict, Iterable, Optional, Tuple, Union

import attrs

from mcpgated.writeorder import WriteOrder

# Presented keys longer than this are not hashed (issued keys are 43 chars).
MAX_KEY_LENGTH = 512
PREFIX_LENGTH = 6


def new_key() -> str:
    """
    A fresh API key: 32 random bytes, URL-safe base64 (43 characters).
    """
    return secrets.token_urlsafe(32)


def hash_key(key: Union[str, bytes]) -> str:
    """
    What the store keeps instead of a key: its SHA-256, hex.
    """
    raw = key.encode("utf-8", "surrogateescape") if isinstance(key, str) else key
    return hashlib.sha256(raw).hexdigest()


def key_prefix(key: str) -> str:
    """
    The part of a key that may be displayed (to tell keys apart).
    """
    return key[:PREFIX_LENGTH]


@attrs.frozen
class KeyGrant:
    """
    What a valid key gives access to.

    @ivar expires_at: epoch seconds after which the key no longer works
        (set when a rotation gives the old key a grace period), or L{None}.
    """

    api_id: str
    plan: str
    application_id: str
    application_name: str
    subscription_id: str
    expires_at: Optional[float]


@attrs.define
class KeyIndex:
    """
    Key hash -> L{KeyGrant} for every key that is neither revoked nor on a
    closed subscription. Expired keys may linger until the next start; the
    lookup refuses them.
    """

    _grants: Dict[str, KeyGrant] = attrs.field(factory=dict)
    # a reader's ticket (order.begin()) before it reads the store for load
    order: "WriteOrder[str]" = attrs.field(factory=WriteOrder)

    # --- writes (admin side) ----------------------------------------------------

    def load(self, entries: Iterable[Tuple[str, KeyGrant]], ticket: Optional[int] = None) -> None:
        """
        Every usable key, as read with C{ticket} (L{None}: now); keys
        written since that read began keep their newer state
        (L{mcpgated.writeorder}).
        """
        keep = self.order.whole(ticket)
        if keep is None:
            return
        grants = {key_hash: grant for key_hash, grant in entries if key_hash not in keep}
        for key_hash in keep:
            grant = self._grants.get(key_hash)
            if grant is not None:
                grants[key_hash] = grant
        self._grants = grants

    def put(self, key_hash: str, grant: KeyGrant) -> None:
        self.order.entry(key_hash)
        self._grants[key_hash] = grant

    def remove(self, key_hash: str) -> None:
        self.order.entry(key_hash)
        self._grants.pop(key_hash, None)

    # --- reads (gateway side) -----------------------------------------------------

    def lookup(self, api_id: str, presented_key: str, now: float) -> Optional[KeyGrant]:
        """
        The grant of a key presented for an API, or L{None} if the key is
        unknown, revoked, on a closed subscription, for another API, or
        expired at C{now}.
        """
        if not presented_key or len(presented_key) > MAX_KEY_LENGTH:
            return None
        grant = self._grants.get(hash_key(presented_key))
        if grant is None or grant.api_id != api_id:
            return None
        if grant.expires_at is not None and now >= grant.expires_at:
            return None
        return grant
