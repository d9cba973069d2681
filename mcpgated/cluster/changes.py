"""
The news one process gives the others after a committed write: what
changed, never the new state itself (each listener reads that from the
store, so a late or repeated notice is harmless).
"""

from __future__ import annotations

import json
from typing import Any, Callable, List, Optional

import attrs
from twisted.internet.defer import Deferred, gatherResults
from zope.interface import Interface, implementer

API = "api"  # an API's definition or state: routes
KEYS = "keys"  # applications, subscriptions, API keys: the key index
PINS = "pins"  # an API's tool-definition pins
ALL = "all"  # anything: notices may have been missed (a feed reconnected)
KINDS = (API, KEYS, PINS, ALL)


class BadChange(ValueError):
    """
    A notice that is not a L{Change} (another version's, or garbage).
    """


@attrs.frozen
class Change:
    """
    @ivar kind: one of L{KINDS}.
    @ivar api_id: the API concerned (L{API}, L{PINS}); L{None} otherwise.
    """

    kind: str = attrs.field(validator=attrs.validators.in_(KINDS))
    api_id: Optional[str] = None

    def to_json(self) -> str:
        out: dict[str, Any] = {"kind": self.kind}
        if self.api_id is not None:
            out["api"] = self.api_id
        return json.dumps(out, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: "str | bytes") -> "Change":
        try:
            raw = json.loads(text)
            api_id = raw.get("api")
            if api_id is not None and not isinstance(api_id, str):
                raise BadChange(f"not a change: {text!r}")
            return cls(raw["kind"], api_id)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise BadChange(f"not a change: {text!r}") from e


Listener = Callable[[Change], object]


class IChangeFeed(Interface):
    """
    How news of committed writes travels between the processes of one
    host and the nodes sharing a store.
    """

    def publish(change: Change) -> "Optional[Deferred[None]]":
        """
        Tell the other processes and nodes (a no-op where the store tells
        them itself, as PostgreSQL's NOTIFY does inside the write's
        transaction). Never raises: news that cannot travel is logged.

        @return: where the feed can know it, a Deferred that fires (never
            with an error) once this host's other processes have applied
            the change, so an admin write can answer only when it is live
            on every worker of its node; else L{None}.
        """

    def subscribe(listener: Listener) -> None:
        """
        Call C{listener} on the reactor thread with each change made
        elsewhere (never with this process's own publications).
        """


@implementer(IChangeFeed)
@attrs.define
class LocalFeed:
    """
    One process alone: nothing to tell, nothing to hear.
    """

    def publish(self, change: Change) -> "Optional[Deferred[None]]":
        return None

    def subscribe(self, listener: Listener) -> None:
        pass


@implementer(IChangeFeed)
@attrs.define
class FanOut:
    """
    Several feeds as one: publishes to each, subscribes to each (a worker
    process hears its parent; a node's parent hears PostgreSQL and tells
    its workers).
    """

    feeds: List[Any]

    def publish(self, change: Change) -> "Optional[Deferred[None]]":
        applied = [d for d in (feed.publish(change) for feed in self.feeds) if d is not None]
        if not applied:
            return None
        return gatherResults(applied).addCallback(lambda _: None)

    def subscribe(self, listener: Listener) -> None:
        for feed in self.feeds:
            feed.subscribe(listener)
