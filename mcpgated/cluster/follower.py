"""
What a process does when it hears that another one changed the store:
read again what the change names and apply it to the copies the data
plane serves from (routes, API keys, pins).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import attrs
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from mcpgated.cluster.changes import ALL, API, KEYS, PINS, Change
from mcpgated.keys import KeyIndex
from mcpgated.policy.pinbook import PinBook
from mcpgated.routing import RouteTable
from mcpgated.store._interface import NotFound

log = Logger()

# one reload: ("api", id), ("routes", None), ("keys", None), ("pins", id or None)
_Job = Tuple[str, Optional[str]]


@attrs.define
class _Running:
    waiters: List["Deferred[None]"]
    again: bool = False
    next_waiters: List["Deferred[None]"] = attrs.field(factory=list)


@attrs.define
class StateFollower:
    """
    Reloads from the store what each L{Change} names. A burst of changes
    to one thing costs at most two reads: one running, one after it (the
    second sees every change that arrived meanwhile).

    @ivar store: the L{mcpgated.store.IApiStore}.
    """

    store: Any
    routes: RouteTable
    keys: KeyIndex
    pins: Optional[PinBook]
    clock: IReactorTime
    _jobs: Dict[_Job, _Running] = attrs.field(init=False, factory=dict)

    def changed(self, change: Change) -> "Deferred[None]":
        """
        Bring the copies up to date with C{change}. The Deferred fires once
        they reflect the store as read after the change was heard (never
        with an error: a failed read is logged, and the next change or
        the feed's reconnection reads again).
        """
        jobs: List[_Job]
        if change.kind == API:
            jobs = [("api", change.api_id)]
        elif change.kind == KEYS:
            jobs = [("keys", None)]
        elif change.kind == PINS:
            jobs = [("pins", change.api_id)] if self.pins is not None else []
        else:
            assert change.kind == ALL
            jobs = [("routes", None), ("keys", None)]
            if self.pins is not None:
                jobs.append(("pins", None))
        return gatherResults([self._job(job) for job in jobs]).addCallback(lambda _: None)

    def _job(self, job: _Job) -> "Deferred[None]":
        answer: Deferred[None] = Deferred()
        running = self._jobs.get(job)
        if running is not None:
            running.again = True
            running.next_waiters.append(answer)
            return answer
        running = self._jobs[job] = _Running([answer])
        self._start(job, running)
        return answer

    def _start(self, job: _Job, running: _Running) -> None:
        Deferred.fromCoroutine(self._reload(job)).addBoth(self._done, job, running)

    def _done(self, result: object, job: _Job, running: _Running) -> None:
        if isinstance(result, Failure):
            log.error("cannot reload {what} {api_id} after a change elsewhere: {error}",
                      what=job[0], api_id=job[1] or "", error=result.getErrorMessage())
        waiters = running.waiters
        if running.again:
            running.waiters, running.next_waiters, running.again = running.next_waiters, [], False
            self._start(job, running)
        else:
            del self._jobs[job]
        for waiter in waiters:
            waiter.callback(None)

    async def _reload(self, job: _Job) -> None:
        # Each read takes its copy's ticket before it begins: its answer
        # cannot undo what was written meanwhile (an admin write committed
        # while it ran, a later read's answer): mcpgated.writeorder.
        what, api_id = job
        order = (self.routes.order if what in ("api", "routes") else
                 self.keys.order if what == "keys" else self._pins().order)
        ticket = order.begin()
        try:
            if what == "api":
                assert api_id is not None
                try:
                    record = await self.store.get_api(api_id)
                except NotFound:
                    self.routes.remove(api_id, ticket)
                else:
                    self.routes.apply(record, ticket)
            elif what == "routes":
                self.routes.load(await self.store.list_apis(), ticket)
            elif what == "keys":
                self.keys.load(await self.store.usable_keys(self.clock.seconds()), ticket)
            elif api_id is None:
                self._pins().load(await self.store.pin_states(), ticket)
            else:
                self._pins().replace(api_id, await self.store.pin_states(api_id), ticket)
        finally:
            order.end()

    def _pins(self) -> PinBook:
        assert self.pins is not None
        return self.pins
