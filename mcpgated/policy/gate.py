"""
The gateway as the security boundary, per request: authenticate and select
the plan, check 2026-07-28 routing headers against the body, apply MCP
access control and rate limits, and say how the response must be rewritten.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Dict, List, Optional, Set, Tuple

import attrs
from twisted.logger import Logger

from mcpgated.mcp.body import BodyError, Parsed, parse
from mcpgated.mcp.ids import IdKey, id_key
from mcpgated.policy.acl import FEATURE_METHODS, LIST_ITEMS, AccessPolicy, Caller, combine
from mcpgated.policy.auth import Authenticator, Principal, Refusal, key_locations, strip_query
from mcpgated.policy.ratelimit import Limiter

log = Logger()

HEADER_MISMATCH = -32020
RATE_LIMITED = -32000


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


def decode_header_value(raw: str) -> str:
    """
    The value of an C{Mcp-Name}/C{Mcp-Param-*} header: plain, or the
    case-sensitive C{=?base64?...?=} form.
    """
    if raw.startswith("=?base64?") and raw.endswith("?="):
        try:
            return base64.b64decode(raw[9:-2], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError("malformed base64 header value")
    return raw


def _target(message: Dict[str, Any]) -> Optional[str]:
    method = message.get("method")
    feature = FEATURE_METHODS.get(method) if isinstance(method, str) else None
    params = message.get("params")
    if feature is None or not feature[1] or not isinstance(params, dict):
        return None
    value = params.get(feature[1])
    return value if isinstance(value, str) else None


def _refuse_json(status: int, code: int, message: str, id: Any = None) -> Refusal:
    refusal = Refusal(status, message, outcome="bad_request")
    refusal.code = code  # type: ignore[attr-defined]
    refusal.id = id  # type: ignore[attr-defined]
    return refusal


@attrs.define
class Gate:
    authenticator: Authenticator
    limiter: Limiter
    pins: Any = None  # mcpgated.policy.pinbook.PinBook: tool-definition pinning

    def needed(self, definition: Any) -> bool:
        """
        Whether an API needs the gate at all (the open, rule-less, limit-less
        keyless case skips it, costing nothing).
        """
        if definition.acl.active or definition.backend_auth or definition.pinning.active:
            return True
        return any(p.security != "KEY_LESS" or p.rate_limit is not None or p.acl is not None
                   for p in definition.plans)

    async def admit(self, api_id: str, definition: Any, method: bytes, headers: Any,
                    query: bytes, args: Dict[bytes, List[bytes]], body: bytes, client: Optional[str],
                    challenge: str, resource: Optional[str] = None,
                    parsed: Optional[Parsed] = None) -> Admission:
        """
        @param parsed: the POST body as the gateway read it
            (L{mcpgated.mcp.body.parse}); read here when not given.
        @raise Refusal: the request is refused as a whole (401, 403, 400, 429).
        """
        text_args = {k.decode("latin-1"): [v.decode("latin-1") for v in vs] for k, vs in args.items()}
        principal = await self.authenticator.authenticate(api_id, definition, headers, text_args,
                                                          challenge, resource)
        policy = combine(definition.acl, principal.plan.acl)
        caller = principal.caller()
        admission = Admission(principal, caller, policy, body, query)
        if self.pins is not None and definition.pinning.active:
            admission.pinning = self.pins.check(api_id, definition.pinning, headers)
        self._credentials(admission, definition, headers)
        if method != b"POST" or not body:
            return admission
        if parsed is None:
            try:
                parsed = parse(body)
            except BodyError as e:
                raise _refuse_json(e.status, e.code, e.message, e.id)
        admission.batch = parsed.batch
        messages = parsed.messages
        if not admission.batch:
            self._check_headers(headers, messages[0])
        self._limits(api_id, principal, client, messages)
        pinning = admission.pinning
        if not policy.active and pinning is None:
            return admission
        kept: List[Any] = []
        for message in messages:
            if not isinstance(message, dict) or not isinstance(message.get("method"), str) \
                    or "id" not in message:
                kept.append(message)  # notifications, client responses: not ACL'd
                continue
            # a request: parse() refused null, unkeyable and repeated ids
            key = id_key(message["id"])
            assert key is not None
            name = message["method"]
            decision = policy.decide(name, _target(message), caller)
            if not decision.allowed:
                if policy.dry_run:
                    admission.would_deny.append(key)
                    log.info("dry run: API {api_id} would deny {method} {target} for plan {plan}",
                             api_id=api_id, method=name, target=_target(message),
                             plan=principal.plan.name)
                else:
                    admission.denied.append(key)
                    admission.extra.append({"jsonrpc": "2.0", "id": message["id"], "error": {
                        "code": decision.code, "message": decision.message}})
                    continue
            if pinning is not None:
                decision = pinning.decide(message)  # a changed or unapproved tool or prompt
                if not decision.allowed:
                    admission.denied.append(key)
                    admission.extra.append({"jsonrpc": "2.0", "id": message["id"], "error": {
                        "code": decision.code, "message": decision.message}})
                    continue
            if name in LIST_ITEMS and ((policy.active and not policy.dry_run)
                                       or (pinning is not None and pinning.judges(name))):
                admission.lists[key] = name
            else:
                admission.forwarded.add(key)
            kept.append(message)
        if admission.extra:
            if not admission.batch or not kept:
                payload = admission.extra if admission.batch else admission.extra[0]
                admission.answer = json.dumps(payload, separators=(",", ":")).encode("utf-8")
                admission.extra = []
            else:
                admission.body = json.dumps(kept, separators=(",", ":")).encode("utf-8")
        return admission

    def _credentials(self, admission: Admission, definition: Any, headers: Any) -> None:
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

    def _check_headers(self, headers: Any, message: Any) -> None:
        """
        2026-07-28 routing headers must say what the body says, so a header
        can never smuggle a different method or name past a rule.
        """
        if not isinstance(message, dict):
            return
        method_header = headers.getRawHeaders(b"mcp-method")
        if method_header is not None:
            if method_header[0].decode("latin-1") != message.get("method"):
                raise _refuse_json(400, HEADER_MISMATCH,
                                   "Mcp-Method header does not match the request body",
                                   message.get("id"))
        name_header = headers.getRawHeaders(b"mcp-name")
        if name_header is not None:
            try:
                name = decode_header_value(name_header[0].decode("latin-1"))
            except ValueError:
                raise _refuse_json(400, HEADER_MISMATCH, "Mcp-Name header is malformed",
                                   message.get("id"))
            if name != _target(message):
                raise _refuse_json(400, HEADER_MISMATCH,
                                   "Mcp-Name header does not match the request body",
                                   message.get("id"))

    def _limits(self, api_id: str, principal: Principal, client: Optional[str],
                messages: List[Any]) -> None:
        """
        Count the requests of a message (or batch) against the plan's rate
        limit, all or nothing: a batch that does not fit as a whole is
        refused (429) and spends none of the budget. Counters belong to one
        API's plan: C{(API id, plan name, subscription, subject or client)}.
        """
        limit = principal.plan.rate_limit
        if limit is None:
            return
        calls = [(message["method"], _target(message)) for message in messages
                 if isinstance(message, dict) and message.get("id") is not None
                 and isinstance(message.get("method"), str)]
        if not calls:
            return
        who = (api_id, principal.plan.name, principal.limit_key(client, limit.scope))
        wait = self.limiter.check_all(limit, who, calls)
        if wait is not None:
            refusal = Refusal(429, "Rate limit exceeded for this plan; retry later",
                              outcome="rate_limited")
            refusal.retry_after = max(1, int(wait + 0.999))  # type: ignore[attr-defined]
            # a single request's id; a batch's error has none (JSON-RPC: null)
            refusal.id = messages[0]["id"] if len(messages) == 1 else None  # type: ignore[attr-defined]
            raise refusal
