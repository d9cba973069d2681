"""
The gateway as the security boundary, per request: authenticate and select
the plan, hold 2026-07-28 routing headers to the body, apply MCP access
control, pinning and rate limits, and say how the answer must be judged.

The gate reads the request body the resource parsed once
(L{mcpgated.mcp.body.RequestBody}); it never parses it again.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from mcpgated.jsonrpc import Refusal
from mcpgated.mcp.body import RequestBody
from mcpgated.mcp.headers import HEADER_MISMATCH, routing_header_problem
from mcpgated.mcp.ids import IdKey
from mcpgated.mcp.messages import REQUEST, Message
from mcpgated.mcp.methods import LIST_ITEMS
from mcpgated.model import ApiDefinition
from mcpgated.policy.acl import AccessPolicy, Caller, combine
from mcpgated.policy.auth import Authenticator, Principal, key_locations, strip_query
from mcpgated.policy.interfaces import IAdmission, ILimiter
from mcpgated.policy.ratelimit import LimitUnavailable
from mcpgated.policy.rewrite import ListJudge

log = Logger()

RATE_LIMITED = -32000


@attrs.frozen
class AdmissionRequest:
    """
    What the gate judges: one request to one API, its body already read.

    @ivar body: the body as received; C{message} is its one parse (L{None}
        for a request without a body).
    @ivar challenge: the C{WWW-Authenticate} value for token plans.
    @ivar resource: the API's public resource URL (the tokens' audience).
    """

    api_id: str
    definition: ApiDefinition
    method: bytes
    headers: Any  # twisted.web.http_headers.Headers
    query: bytes
    args: Mapping[bytes, List[bytes]]
    body: bytes
    message: Optional[RequestBody]
    client: Optional[str]
    challenge: str
    resource: Optional[str] = None


@attrs.define
class Admission:
    """
    What the gate decided for one request.

    @ivar answer: a complete JSON-RPC answer (bytes) when nothing is to be
        forwarded (every element denied).
    @ivar body: the body to forward (denied batch elements removed).
    @ivar extra: error messages for denied batch elements, to add to the
        backend's answer.
    @ivar lists: id key (L{mcpgated.mcp.ids}) -> list method, for results
        to filter.
    @ivar forwarded: id keys of the other requests forwarded: a result
        matching neither is not passed on while lists are filtered.
    @ivar denied: id keys of denied requests (for the exchange log).
    @ivar would_deny: id keys a dry-run policy would have denied.
    """

    principal: Principal
    caller: Caller
    policy: AccessPolicy
    body: bytes
    query: bytes
    batch: bool = False
    answer: Optional[bytes] = None
    extra: List[Any] = attrs.field(factory=list)
    lists: Dict[IdKey, str] = attrs.field(factory=dict)
    forwarded: Set[IdKey] = attrs.field(factory=set)
    denied: List[IdKey] = attrs.field(factory=list)
    would_deny: List[IdKey] = attrs.field(factory=list)
    strip_headers: List[bytes] = attrs.field(factory=list)
    set_headers: List[Tuple[bytes, bytes]] = attrs.field(factory=list)
    # tool-definition pinning: a mcpgated.policy.pinbook.PinCheck, or None
    pinning: Any = None

    @property
    def rewrites(self) -> bool:
        return bool(self.lists or self.extra)

    @property
    def judges_streams(self) -> bool:
        """
        Whether list results on a GET stream (the legacy transport's) are
        judged: by pins, or by an enforced access policy.
        """
        return self.pinning is not None or (self.policy.active and not self.policy.dry_run)

    def filter_result(self, method: str, result: Any) -> Any:
        """
        A list result as this caller gets it: judged against the pins (the
        backend's whole result), then filtered by access control.
        """
        if self.pinning is not None:
            result = self.pinning.filter_result(method, result)
        if self.policy.active and not self.policy.dry_run:
            result = self.policy.filter_result(method, result, self.caller)[0]
        return result

    def judge(self) -> ListJudge:
        """
        The judge of the backend's answer (L{mcpgated.mcp.responses}).
        """
        return ListJudge(self.lists, self.filter_result, self.extra, self.batch,
                         forwarded=self.forwarded)


def _rate_limited(body: RequestBody, wait: float) -> Refusal:
    # a single request's id; a batch's error has none (JSON-RPC: null)
    messages = body.messages
    return Refusal(429, "Rate limit exceeded for this plan; retry later",
                   outcome="rate_limited", code=RATE_LIMITED,
                   id=messages[0].id if len(messages) == 1 else None,
                   retry_after=max(1, int(wait + 0.999)))


def _unavailable(body: RequestBody) -> Refusal:
    """
    The rate limits cannot be checked and fail closed: 503, retry soon.
    """
    messages = body.messages
    return Refusal(503, "Rate limits cannot be checked now; retry later",
                   outcome="rate_limited", code=RATE_LIMITED,
                   id=messages[0].id if len(messages) == 1 else None, retry_after=1)


def _refuse_json(status: int, code: int, message: str, id: Any = None) -> Refusal:
    return Refusal(status, message, outcome="bad_request", code=code, id=id)


def _deny(message: Message, code: int, text: str) -> Dict[str, Any]:
    return {"jsonrpc": "2.0", "id": message.id, "error": {"code": code, "message": text}}


@implementer(IAdmission)
@attrs.define
class Gate:
    authenticator: Authenticator
    limiter: ILimiter
    pins: Any = None  # mcpgated.policy.pinbook.PinBook: tool-definition pinning

    def needed(self, definition: ApiDefinition) -> bool:
        """
        Whether an API needs the gate at all (the open, rule-less, limit-less
        keyless case skips it, costing nothing).
        """
        if definition.acl.active or definition.backend_auth or definition.pinning.active:
            return True
        return any(p.security != "KEY_LESS" or p.rate_limit is not None or p.acl is not None
                   for p in definition.plans)

    async def admit(self, request: AdmissionRequest) -> Admission:
        """
        @raise Refusal: the request is refused as a whole (401, 403, 400, 429).
        """
        definition = request.definition
        text_args = {k.decode("latin-1"): [v.decode("latin-1") for v in vs]
                     for k, vs in request.args.items()}
        principal = await self.authenticator.authenticate(
            request.api_id, definition, request.headers, text_args, request.challenge,
            request.resource)
        policy = combine(definition.acl, principal.plan.acl)
        caller = principal.caller()
        admission = Admission(principal, caller, policy, request.body, request.query)
        if self.pins is not None and definition.pinning.active:
            admission.pinning = self.pins.check(request.api_id, definition.pinning,
                                                request.headers)
        self._credentials(admission, definition, request.headers)
        body = request.message
        if body is None:
            return admission
        admission.batch = body.batch
        messages = body.messages
        if not body.batch:
            self._check_headers(request.headers, messages[0])
        wait = self._limits(request.api_id, principal, request.client, body)
        if wait is not None:
            if isinstance(wait, Deferred):  # a shared limiter (Redis, the parent process)
                try:
                    wait = await wait
                except LimitUnavailable:
                    raise _unavailable(body) from None
            if wait is not None:
                raise _rate_limited(body, wait)
        pinning = admission.pinning
        if not policy.active and pinning is None:
            return admission
        kept: List[Any] = []
        for message in messages:
            if message.kind != REQUEST:
                kept.append(message.raw)  # notifications, client responses: not ACL'd
                continue
            key = message.id_key  # RequestBody refused null, unkeyable and repeated ids
            assert key is not None and message.method is not None
            name = message.method
            decision = policy.decide(name, message.target, caller)
            if not decision.allowed:
                if policy.dry_run:
                    admission.would_deny.append(key)
                    log.info("dry run: API {api_id} would deny {method} {target} for plan {plan}",
                             api_id=request.api_id, method=name, target=message.target,
                             plan=principal.plan.name)
                else:
                    admission.denied.append(key)
                    admission.extra.append(_deny(message, decision.code, decision.message))
                    continue
            if pinning is not None:
                decision = pinning.decide(message.raw)  # a changed or unapproved tool or prompt
                if not decision.allowed:
                    admission.denied.append(key)
                    admission.extra.append(_deny(message, decision.code, decision.message))
                    continue
            if name in LIST_ITEMS and ((policy.active and not policy.dry_run)
                                       or (pinning is not None and pinning.judges(name))):
                admission.lists[key] = name
            else:
                admission.forwarded.add(key)
            kept.append(message.raw)
        if admission.extra:
            if not admission.batch or not kept:
                payload = admission.extra if admission.batch else admission.extra[0]
                admission.answer = json.dumps(payload, separators=(",", ":")).encode("utf-8")
                admission.extra = []
            else:
                admission.body = json.dumps(kept, separators=(",", ":")).encode("utf-8")
        return admission

    def _credentials(self, admission: Admission, definition: ApiDefinition, headers: Any) -> None:
        """
        Gateway credentials never reach the backend; a configured backend
        credential is sent instead.
        """
        principal = admission.principal
        key_headers, key_queries = key_locations(list(definition.plans))
        admission.strip_headers.extend(h.encode("latin-1") for h in key_headers)
        admission.query = strip_query(admission.query, key_queries)
        auth = definition.backend_auth or {}
        if principal.credential == "bearer" and not auth.get("forwardClientToken"):
            admission.strip_headers.append(b"authorization")
            admission.strip_headers.append(b"dpop")
        if auth.get("header"):
            admission.set_headers.append((auth["header"].encode("latin-1"),
                                          auth["value"].encode("latin-1")))

    def _check_headers(self, headers: Any, message: Message) -> None:
        """
        2026-07-28 routing headers must say what the body says
        (L{mcpgated.mcp.headers}).
        """
        problem = routing_header_problem(headers.getRawHeaders(b"mcp-method"),
                                         headers.getRawHeaders(b"mcp-name"), message)
        if problem is not None:
            ident = message.raw.get("id") if type(message.raw) is dict else None
            raise _refuse_json(400, HEADER_MISMATCH, problem, ident)

    def _limits(self, api_id: str, principal: Principal, client: Optional[str],
                body: RequestBody) -> "Optional[float] | Deferred[Optional[float]]":
        """
        Count the requests of a message (or batch) against the plan's rate
        limit, all or nothing: a batch that does not fit as a whole is
        refused (429) and spends none of the budget. Counters belong to one
        API's plan: C{(API id, plan name, subscription, subject or client)}.

        @return: L{None} when allowed, the seconds until the window resets
            when not, or a Deferred of either (a shared limiter).
        """
        limit = principal.plan.rate_limit
        if limit is None:
            return None
        calls = [(m.method, m.target) for m in body.messages
                 if m.kind == REQUEST and m.method is not None]
        if not calls:
            return None
        who = (api_id, principal.plan.name, principal.limit_key(client, limit.scope))
        return self.limiter.check_all(limit, who, calls)
