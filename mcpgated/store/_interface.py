"""
The storage seam: every method returns a Deferred and never blocks the reactor.
"""

from zope.interface import Interface


class NotFound(KeyError):
    """
    No API with that id.
    """


class Closed(Exception):
    """
    The store is stopping: the call was refused and nothing was written.
    """


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

    def start():
        """
        Open the store and apply schema migrations. Returns a Deferred.
        """

    def stop():
        """
        Finish pending writes and close; calls made from now on fail with
        L{Closed}. Returns a Deferred.
        """

    def list_apis():
        """
        Deferred list of every L{mcpgated.model.ApiRecord}, oldest first.
        """

    def get_api(api_id):
        """
        Deferred L{ApiRecord}; fails with L{NotFound}.
        """

    def create_api(definition, now):
        """
        Store a new, never-deployed, STOPPED API. Deferred L{ApiRecord}.
        Fails with L{mcpgated.model.InvalidField} if its context path overlaps
        a deployed API's.
        """

    def update_api(api_id, definition, now):
        """
        Replace the stored definition (the deployed one is untouched).
        Deferred L{ApiRecord}; L{NotFound}; L{InvalidField} on overlap.
        """

    def delete_api(api_id):
        """
        Remove a STOPPED API. L{NotFound}; L{Conflict} while it is STARTED.
        """

    def deploy_api(api_id, now):
        """
        Make the stored definition the deployed one and start it.
        Deferred L{ApiRecord}; L{NotFound}; L{Conflict} on path overlap.
        """

    def set_state(api_id, state, now):
        """
        Start or stop a deployed API. Deferred L{ApiRecord}; L{NotFound};
        L{Conflict} if never deployed or its path overlaps a started API.
        """
