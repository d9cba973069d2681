"""
Load balancing over an API's endpoints (C{"endpoints"} instead of
C{"backend"}): smooth weighted round-robin or least-connections among the
healthy endpoints, passive health (an endpoint whose connections fail, or
that answers 5xx C{maxFailures} times in a row, is taken out for
C{ejectSeconds}, then tried again), and optional active checks
(L{HealthChecks}: a GET every C{intervalSeconds}).

Sessions are not tracked here: a session's endpoint travels sealed in the
session id the client holds (L{mcpgated.sealing}); L{Pool.by_id} finds it.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple
from urllib.parse import urlsplit

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent

from mcpgated.model import ApiDefinition, LoadBalancing
from mcpgated.routing import Route, RouteTable
from mcpgated.sealing import endpoint_id
from mcpgated.webclient import fetch

log = Logger()

CHECK_MAX_BYTES = 65536  # a health check's answer is read whole, up to this


@attrs.frozen
class Backend:
    """
    A backend URL split once: the parts every request reuses.
    """

    url: str
    origin: str
    path: str
    query: str
    authority: Optional[bytes]  # None: a non-ASCII host, left to the client's IDNA encoding

    @classmethod
    def parse(cls, url: str) -> "Backend":
        parts = urlsplit(url)
        return cls(url=url, origin=f"{parts.scheme}://{parts.netloc}",
                   path=parts.path.rstrip("/"), query=parts.query,
                   authority=parts.netloc.encode("ascii") if parts.netloc.isascii() else None)

    def target(self, rest: str, query: bytes) -> bytes:
        """
        The upstream URL for the part of the request path after the
        context path, with the backend's and the request's queries.
        """
        path = self.path + rest if rest else (self.path or "/")
        queries = [q for q in (self.query, query.decode("latin-1")) if q]
        url = self.origin + path
        if queries:
            url += "?" + "&".join(queries)
        return url.encode("latin-1")

    def public_path(self, upstream_url: str) -> Optional[str]:
        """
        Map an upstream URL (absolute) to the path under the API's context
        path, or L{None} when it is not under the backend URL.
        """
        parts = urlsplit(upstream_url)
        if f"{parts.scheme}://{parts.netloc}" != self.origin:
            return None
        if parts.path == self.path or parts.path.startswith(self.path + "/"):
            return parts.path[len(self.path):]
        return None


class Member:
    """
    One endpoint of a pool and what the balancer knows of it.
    """

    def __init__(self, url: str, weight: int) -> None:
        self.url = url
        self.weight = weight
        self.id = endpoint_id(url)
        self.backend = Backend.parse(url)
        self.active = 0  # requests and streams in flight
        self.current = 0  # smooth weighted round-robin's running score
        self.failures = 0  # in a row
        self.down_until = 0.0  # taken out until then (passive health)
        self.check_failed = False  # the last active check failed

    def healthy(self, now: float) -> bool:
        return not self.check_failed and self.down_until <= now


class Pool:
    """
    The endpoints of one API and their state.
    """

    def __init__(self, definition: ApiDefinition, previous: Optional["Pool"] = None) -> None:
        self.definition = definition
        settings: LoadBalancing = definition.load_balancing
        self.settings = settings
        self.least = settings.algorithm == "least-connections"
        old = {m.url: m for m in previous.members} if previous is not None else {}
        members = []
        for endpoint in definition.endpoints:
            member = old.get(endpoint.url)
            if member is None:
                member = Member(endpoint.url, endpoint.weight)
            else:
                member.weight = endpoint.weight
            members.append(member)
        self.members: Tuple[Member, ...] = tuple(members)
        self._by_id: Dict[bytes, Member] = {m.id: m for m in members}
        self._turn = 0

    def by_id(self, member_id: bytes) -> Optional[Member]:
        return self._by_id.get(member_id)

    def pick(self, now: float, exclude: Iterable[Member] = ()) -> Optional[Member]:
        """
        The endpoint for a request that no session ties to one, among the
        healthy ones not in C{exclude}; when none is healthy, among all not
        excluded (a pool never refuses outright: the next failure or success
        is news), L{None} when every one is excluded.
        """
        excluded = tuple(exclude)
        members = [m for m in self.members if m.healthy(now) and m not in excluded]
        if not members:
            members = [m for m in self.members if m not in excluded]
            if not members:
                return None
        if len(members) == 1:
            return members[0]
        if self.least:
            self._turn += 1
            turn = self._turn
            count = len(members)
            # fewest in flight per weight; ties taken in turn
            return min(enumerate(members),
                       key=lambda pair: (pair[1].active / pair[1].weight,
                                         (pair[0] - turn) % count))[1]
        total = 0
        best = members[0]
        for member in members:
            member.current += member.weight
            total += member.weight
            if member.current > best.current:
                best = member
        best.current -= total
        return best

    def failed(self, member: Member, now: float, refused: bool) -> None:
        """
        A request to C{member} failed (its connection; C{refused}: it could
        not connect at all) or got a 5xx.
        """
        member.failures += 1
        if refused or member.failures >= self.settings.max_failures:
            if member.down_until <= now:
                log.warn("endpoint {url} taken out for {seconds:g}s after {failures} "
                         "failure(s)", url=member.url, seconds=self.settings.eject_seconds,
                         failures=member.failures)
            member.down_until = now + self.settings.eject_seconds

    def succeeded(self, member: Member) -> None:
        member.failures = 0


@attrs.define
class Balancer:
    """
    The pools of every load-balanced API, rebuilt (keeping what is known of
    endpoints that stay) when an API's definition changes.
    """

    clock: IReactorTime
    _pools: Dict[str, Pool] = attrs.field(factory=dict)

    def pool(self, route: Route) -> Pool:
        pool = self._pools.get(route.api_id)
        if pool is None or pool.definition is not route.definition:
            if len(self._pools) > 10000:
                self._pools.clear()
            pool = self._pools[route.api_id] = Pool(route.definition, pool)
        return pool

    def pools(self, routes: Iterable[Route]) -> List[Pool]:
        return [self.pool(route) for route in routes if route.definition.endpoints]


@attrs.define(slots=False)
class HealthChecks(Service):
    """
    Active health checks of the endpoints of the APIs that ask for them
    (C{loadBalancing.healthCheck}): a GET of the check URL with the check's
    timeout; an answer below 500 is healthy. Looks for work once a second.

    @ivar agent: the agent that sends the checks.
    """

    balancer: Balancer
    routes: RouteTable
    clock: Any  # IReactorTime
    agent: IAgent
    _loop: Optional[LoopingCall] = None
    _due: Dict[Tuple[str, str], float] = attrs.field(factory=dict)
    _running: Dict[Tuple[str, str], None] = attrs.field(factory=dict)

    def startService(self) -> None:
        Service.startService(self)
        self._loop = LoopingCall(self.tick)
        self._loop.clock = self.clock
        self._loop.start(1.0, now=True)

    def stopService(self) -> None:
        Service.stopService(self)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def tick(self) -> "Deferred[Any]":
        """
        Start the checks that are due; fires when they are all done.
        """
        started: List[Deferred[Any]] = []
        if not self.routes.ready:
            return DeferredList(started)
        now = self.clock.seconds()
        for route in self.routes.routes():
            check = route.definition.load_balancing.health_check
            if check is None or not route.definition.endpoints:
                continue
            pool = self.balancer.pool(route)
            for member in pool.members:
                key = (route.api_id, member.url)
                if key in self._running or self._due.get(key, 0.0) > now:
                    continue
                self._due[key] = now + check.interval
                url = member.backend.origin + check.path if check.path else member.url
                self._running[key] = None
                d: Deferred[Any] = Deferred.fromCoroutine(self._check(url, check.timeout))
                d.addCallback(self._checked, pool, member, key)
                started.append(d)
        return DeferredList(started)

    async def _check(self, url: str, timeout: float) -> bool:
        try:
            reply = await fetch(self.agent, self.clock, "GET", url, Headers(),
                                max_bytes=CHECK_MAX_BYTES, timeout=timeout)
        except Exception:  # noqa: BLE001 -- any failure to get an answer is unhealthy
            return False
        return reply.status < 500

    def _checked(self, healthy: bool, pool: Pool, member: Member, key: Tuple[str, str]) -> None:
        self._running.pop(key, None)
        if healthy and member.check_failed:
            log.info("endpoint {url} passes its health check again", url=member.url)
            member.down_until = 0.0
            member.failures = 0
        elif not healthy and not member.check_failed:
            log.warn("endpoint {url} fails its health check: taken out", url=member.url)
        member.check_failed = not healthy
