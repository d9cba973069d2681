"""
Per-session state the exchange tracker keeps between exchanges: who the
client is, and server requests awaiting the client's answer.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, Optional, Tuple

import attrs

from mcpgated.analytics.records import CallRecord, session_hash
from mcpgated.mcp.messages import ClientInfo


@attrs.define
class SessionBook:
    """
    Per-session state kept between exchanges, bounded in size (oldest
    sessions and pending calls are forgotten first).
    """

    max_sessions: int = 10000
    max_pending: int = 20000
    _clients: "OrderedDict[str, ClientInfo]" = attrs.field(factory=OrderedDict)
    _pending: "OrderedDict[Tuple[str, Any], CallRecord]" = attrs.field(factory=OrderedDict)
    # session_hash by (API, session id): a session sends many requests
    _hashes: Dict[Tuple[str, str], str] = attrs.field(factory=dict)

    def session_id(self, api_id: str, session: str) -> str:
        """
        L{session_hash}, remembered for the most recent sessions.
        """
        key = (api_id, session)
        found = self._hashes.get(key)
        if found is None:
            if len(self._hashes) >= self.max_sessions:
                self._hashes.clear()
            found = self._hashes[key] = session_hash(api_id, session)
        return found

    def remember_client(self, session: str, info: ClientInfo) -> None:
        self._clients[session] = info
        self._clients.move_to_end(session)
        while len(self._clients) > self.max_sessions:
            self._clients.popitem(last=False)

    def client(self, session: Optional[str]) -> Optional[ClientInfo]:
        if session is None:
            return None
        return self._clients.get(session)

    def forget(self, session: str) -> None:
        self._clients.pop(session, None)

    def add_pending(self, session: str, key: Any, record: CallRecord) -> None:
        self._pending[(session, key)] = record
        while len(self._pending) > self.max_pending:
            self._pending.popitem(last=False)

    def take_pending(self, session: Optional[str], key: Any) -> Optional[CallRecord]:
        if session is None or key is None or not self._pending:
            return None
        return self._pending.pop((session, key), None)
