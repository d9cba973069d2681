"""
The storage seam: every method returns a Deferred and never blocks the reactor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from zope.interface import Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from mcpgated.keys import KeyGrant
    from mcpgated.model import ApiDefinition, ApiRecord
    from mcpgated.policy.pinning import EventRecord, Key, Observed, PinRecord, PinSettings, PinState
    from mcpgated.subscriptions import ApiKey, Application, IssuedKey, Subscription


class NotFound(KeyError):
    """
    No API with that id (or, with C{message} and C{field}, no such
    application, subscription or key).
    """

    def __init__(self, key: str, message: str = "no API with this id", field: str = "id") -> None:
        super().__init__(key)
        self.message = message
        self.field = field


class Closed(Exception):
    """
    The store is stopping: the call was refused and nothing was written.
    """


class Unavailable(Exception):
    """
    The store could not complete the call (a full disk, an I/O error, a
    read-only file): the transaction was rolled back, nothing was changed.

    @ivar full: whether the disk (or the database's size limit) is full.
    @ivar reason: what the database said.
    """

    def __init__(self, reason: str, full: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.full = full


class Conflict(Exception):
    """
    The change contradicts the current state (e.g. two live APIs on one path).
    """

    def __init__(self, message: str, field: "str | None" = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class IApiStore(Interface):
    """
    Durable API definitions. A write's Deferred fires only once the change is
    committed to stable storage, so an acknowledged write survives a crash.

    Rules that span several APIs (no two deployed APIs on overlapping context
    paths) are checked inside the same transaction as the write.
    """

    def start() -> Deferred[int]:
        """
        Open the store and apply schema migrations. Returns a Deferred.
        """

    def stop() -> Deferred[None]:
        """
        Finish pending writes and close; calls made from now on fail with
        L{Closed}. Returns a Deferred.
        """

    def list_apis() -> Deferred[List[ApiRecord]]:
        """
        Deferred list of every L{mcpgated.model.ApiRecord}, oldest first.
        """

    def get_api(api_id: str) -> Deferred[ApiRecord]:
        """
        Deferred L{ApiRecord}; fails with L{NotFound}.
        """

    def create_api(definition: ApiDefinition, now: float) -> Deferred[ApiRecord]:
        """
        Store a new, never-deployed, STOPPED API. Deferred L{ApiRecord}.
        Fails with L{mcpgated.definitions.InvalidField} if its context path overlaps
        a deployed API's.
        """

    def update_api(api_id: str, definition: ApiDefinition, now: float) -> Deferred[ApiRecord]:
        """
        Replace the stored definition (the deployed one is untouched).
        Deferred L{ApiRecord}; L{NotFound}; L{InvalidField} on overlap.
        """

    def delete_api(api_id: str) -> Deferred[None]:
        """
        Remove a STOPPED API with its CLOSED subscriptions and their keys.
        L{NotFound}; L{Conflict} while it is STARTED or has ACCEPTED
        subscriptions.
        """

    def deploy_api(api_id: str, now: float) -> Deferred[ApiRecord]:
        """
        Make the stored definition the deployed one and start it.
        Deferred L{ApiRecord}; L{NotFound}; L{Conflict} on path overlap.
        """

    def set_state(api_id: str, state: str, now: float) -> Deferred[ApiRecord]:
        """
        Start or stop a deployed API. Deferred L{ApiRecord}; L{NotFound};
        L{Conflict} if never deployed or its path overlaps a started API.
        """

    # --- applications, subscriptions and API keys (mcpgated.subscriptions) ---------
    # Keys reach the store hashed (mcpgated.keys.hash_key), never in clear.

    def list_applications() -> Deferred[List[Application]]:
        """
        Deferred list of every L{mcpgated.subscriptions.Application}, oldest first.
        """

    def get_application(application_id: str) -> Deferred[Application]:
        """
        Deferred L{Application}; L{NotFound}.
        """

    def create_application(name: str, description: str, now: float) -> Deferred[Application]:
        """
        Deferred new L{Application}.
        """

    def delete_application(application_id: str) -> Deferred[List[str]]:
        """
        Delete an application with its subscriptions and their keys.
        Deferred list of the deleted keys' hashes; L{NotFound}.
        """

    def create_subscription(api_id: str, application_id: str, plan: str,
                            now: float) -> Deferred[Subscription]:
        """
        Subscribe an application to a PUBLISHED API_KEY, JWT or OAUTH2 plan
        of the API's stored definition. Deferred ACCEPTED
        L{mcpgated.subscriptions.Subscription}; L{NotFound} (API);
        L{InvalidField} naming C{application} or C{plan}; L{Conflict} if the
        application already has an ACCEPTED subscription to that plan.
        """

    def list_subscriptions(api_id: str) -> Deferred[List[Subscription]]:
        """
        Deferred list of the API's subscriptions, oldest first; L{NotFound}.
        """

    def get_subscription(api_id: str, subscription_id: str) -> Deferred[Subscription]:
        """
        Deferred L{Subscription}; L{NotFound} (API or subscription).
        """

    def close_subscription(api_id: str, subscription_id: str,
                           now: float) -> Deferred[Tuple[Subscription, List[str]]]:
        """
        Close an ACCEPTED subscription and revoke its keys. Deferred
        (L{Subscription}, hashes of the keys revoked); L{NotFound};
        L{Conflict} if already CLOSED.
        """

    def list_keys(api_id: str, subscription_id: str) -> Deferred[List[ApiKey]]:
        """
        Deferred list of the subscription's L{mcpgated.subscriptions.ApiKey},
        oldest first (never the keys themselves); L{NotFound}.
        """

    def issue_key(api_id: str, subscription_id: str, key_hash: str, prefix: str, now: float,
                  replace_after: Optional[float] = None) -> Deferred[IssuedKey]:
        """
        Store a new key of an ACCEPTED subscription to an API_KEY plan. With
        C{replace_after} (seconds), a rotation: the subscription's usable
        keys expire that long after C{now} (or earlier, if they already
        did). Deferred L{mcpgated.subscriptions.IssuedKey};
        L{NotFound}; L{Conflict} (subscription CLOSED, plan not API_KEY).
        """

    def revoke_key(api_id: str, subscription_id: str, key_id: str,
                   now: float) -> Deferred[Tuple[ApiKey, str]]:
        """
        Revoke a key (kept, marked revoked; revoking twice changes nothing).
        Deferred (L{ApiKey}, its hash); L{NotFound}.
        """

    def usable_keys(now: float) -> Deferred[List[Tuple[str, KeyGrant]]]:
        """
        Deferred list of (key hash, L{mcpgated.keys.KeyGrant}) for every key
        neither revoked, expired at C{now}, nor on a CLOSED subscription:
        what L{mcpgated.keys.KeyIndex} loads at start.
        """

    # --- tool-definition pinning (mcpgated.policy.pinning) -------------------------

    def pin_states(api_id: Optional[str] = None) -> Deferred[List[Tuple[str, str, str, PinState]]]:
        """
        Deferred list of (API id, kind, name, L{PinState}) of every pin, or
        of one API's: what L{mcpgated.policy.pinbook.PinBook} loads.
        """

    def observe_pins(api_id: str, kind: str, items: Sequence[Observed], settings: PinSettings,
                     complete: bool, initial: bool, session: Optional[str], now: float,
                     ) -> Deferred[Tuple[Dict[Key, PinState], List[EventRecord]]]:
        """
        Judge one list result's L{Observed} items against the stored pins of
        their kind, store what changed (new pins, pending definitions, items
        seen or gone) and record the drift events, in one transaction
        (C{initial}: a page of the API's first list of that kind).
        Deferred ({(kind, name): L{PinState}} of that kind as stored, list
        of the L{EventRecord}s recorded).
        """

    def list_pins(api_id: str) -> Deferred[List[PinRecord]]:
        """
        Deferred list of the API's L{PinRecord}s; L{NotFound}.
        """

    def get_pin(api_id: str, pin_id: str) -> Deferred[Tuple[PinRecord, List[Dict[str, Any]]]]:
        """
        Deferred (L{PinRecord}, its history newest first); L{NotFound}.
        """

    def decide_pin(api_id: str, pin_id: str, approve: bool, fingerprint: Optional[str],
                   now: float) -> Deferred[PinRecord]:
        """
        Approve (re-pin) or reject the definition awaiting a decision
        (C{fingerprint}, when given, must be its). Deferred L{PinRecord};
        L{NotFound}; L{Conflict} when none or another one awaits.
        """

    def list_pin_events(api_id: str, limit: int, before: Optional[int],
                        ) -> Deferred[Tuple[List[EventRecord], Optional[int]]]:
        """
        Deferred (the API's L{EventRecord}s newest first, at most C{limit},
        older than the event id C{before}; the cursor of the next page or
        L{None}); L{NotFound}.
        """
