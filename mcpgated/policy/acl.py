"""
MCP access control: which tools, resources and prompts a caller may list and
use.

A rule allows, or with C{"deny": true} denies, and deny wins over allow. Each
kind (tools, resources, prompts, and the other methods) is restricted once an
allow rule of the policy names it (whomever that rule applies to): then what no
allow rule allows is denied; a kind no allow rule names stays open, minus what
deny rules name. A rule names features by glob, optionally the methods it
covers, and optionally who it applies to (plans, applications, OAuth scopes,
token claims). Allow globs match as written (C{fnmatchcase}: case-sensitive, no
Unicode folding, so C{ECHO} or a full-width C{ｅｃｈｏ} never matches C{echo});
deny globs match after NFKC normalisation and case folding on both sides, so a
deny of C{echo} also hides C{ECHO} and C{ｅｃｈｏ} from a backend that folds
names, and a call whose target is not a string is denied once a deny rule
covers it.
"""  # noqa: RUF002 -- the full-width letters are the example

from __future__ import annotations

import unicodedata
from fnmatch import fnmatchcase
from typing import Any, Dict, FrozenSet, Iterable, Mapping, Optional, Tuple

import attrs

from mcpgated.mcp.methods import FEATURE_KINDS, FEATURE_METHODS, LIST_ITEMS

# Always allowed: the protocol's own plumbing, needed by every client.
PLUMBING = frozenset({
    "initialize", "ping", "server/discover", "subscriptions/listen", "logging/setLevel",
})
_FEATURES = FEATURE_KINDS  # the method tables are mcpgated.mcp.methods
_RULE_FIELDS = {"methods", "tools", "resources", "prompts", "plans", "applications", "scopes",
                "claims", "description", "deny"}
# the kind of the methods that name no feature (completion/complete, tasks/*...)
_METHODS = "methods"


def _fold(text: str) -> str:
    """
    A name as deny rules compare it: NFKC-normalised and case-folded.
    """
    return unicodedata.normalize("NFKC", text).casefold()


class PolicyError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@attrs.frozen
class Caller:
    """
    Who is calling, as far as rules can see.
    """

    plan: Optional[str] = None
    application: Optional[str] = None
    scopes: FrozenSet[str] = frozenset()
    claims: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Rule:
    methods: Optional[Tuple[str, ...]] = None
    tools: Tuple[str, ...] = ()
    resources: Tuple[str, ...] = ()
    prompts: Tuple[str, ...] = ()
    plans: Optional[Tuple[str, ...]] = None
    applications: Optional[Tuple[str, ...]] = None
    scopes: Optional[Tuple[str, ...]] = None
    claims: Optional[Tuple[Tuple[str, Any], ...]] = None
    description: str = ""
    deny: bool = False
    # deny rules: the feature globs folded as the names they are compared with
    folded: Tuple[Tuple[str, ...], ...] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "folded", tuple(
            tuple(_fold(p) for p in self.names(kind)) if self.deny else () for kind in _FEATURES))

    @property
    def features(self) -> bool:
        """
        Whether the rule names tools, resources or prompts (else only methods).
        """
        return bool(self.tools or self.resources or self.prompts)

    def matches(self, kind: str, target: str) -> bool:
        """
        Whether C{target} (a name or URI of that kind) is one this rule names.
        """
        if self.deny:
            folded = _fold(target)
            return any(fnmatchcase(folded, p) for p in self.folded[_FEATURES.index(kind)])
        return any(fnmatchcase(target, p) for p in self.names(kind))

    def applies_to(self, caller: Caller) -> bool:
        if self.plans is not None and caller.plan not in self.plans:
            return False
        if self.applications is not None and caller.application not in self.applications:
            return False
        if self.scopes is not None and not set(self.scopes) <= caller.scopes:
            return False
        if self.claims is not None:
            for key, expected in self.claims:
                actual = caller.claims.get(key)
                if isinstance(actual, list):
                    if expected not in actual:
                        return False
                elif actual != expected:
                    return False
        return True

    def covers(self, method: str) -> bool:
        return self.methods is None or any(fnmatchcase(method, m) for m in self.methods)

    def names(self, feature: str) -> Tuple[str, ...]:
        names: Tuple[str, ...] = getattr(self, feature)
        return names

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        if self.deny:
            out["deny"] = True
        if self.methods is not None:
            out["methods"] = list(self.methods)
        for feature in _FEATURES:
            if self.names(feature):
                out[feature] = list(self.names(feature))
        for key in ("plans", "applications", "scopes"):
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value)
        if self.claims is not None:
            out["claims"] = dict(self.claims)
        if self.description:
            out["description"] = self.description
        return out


@attrs.frozen
class Decision:
    allowed: bool
    # JSON-RPC error for a denial, shaped like the backend's own "unknown" errors
    code: int = 0
    message: str = ""


ALLOW = Decision(True)


@attrs.frozen
class AccessPolicy:
    """
    @ivar rules: when empty, everything is allowed (no policy).
    @ivar dry_run: decide and report, but let everything through.
    @ivar closed: the kinds (C{tools}, C{resources}, C{prompts}, C{methods})
        an allow rule names: only what allow rules allow passes. A rule
        naming only methods closes C{methods} (those that name no feature).
    """

    rules: Tuple[Rule, ...] = ()
    dry_run: bool = False
    closed: FrozenSet[str] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        closed = {kind for rule in self.rules if not rule.deny
                  for kind in _FEATURES if rule.names(kind)}
        if any(not r.deny and r.methods is not None and not r.features for r in self.rules):
            closed.add(_METHODS)
        object.__setattr__(self, "closed", frozenset(closed))

    @property
    def active(self) -> bool:
        return bool(self.rules)

    def _applicable(self, caller: Caller, method: str) -> Iterable[Rule]:
        return (r for r in self.rules if r.covers(method) and r.applies_to(caller))

    def _denied(self, kind: str, target: Any, method: str, caller: Caller) -> bool:
        """
        Whether a deny rule takes this target (a name or URI of C{kind}) away.
        A deny rule naming only methods denies every target of those methods;
        a target that is not a string is denied by any deny rule covering it.
        """
        for rule in self._applicable(caller, method):
            if rule.deny and (not rule.features or (
                    rule.names(kind) and (not isinstance(target, str) or rule.matches(kind, target)))):
                return True
        return False

    def decide(self, method: str, target: Optional[str], caller: Caller) -> Decision:
        if not self.rules or method in PLUMBING or method.startswith("notifications/"):
            return ALLOW
        feature = FEATURE_METHODS.get(method)
        if feature is None:
            applicable = list(self._applicable(caller, method))
            # a deny rule naming the method (and no feature) denies it;
            if any(r.deny and r.methods is not None and not r.features for r in applicable):
                return Decision(False, -32601, f"Method not found: {method}")
            # once allow rules name methods, any other method must be named by one
            if _METHODS not in self.closed or any(
                    not r.deny and r.methods is not None for r in applicable):
                return ALLOW
            return Decision(False, -32601, f"Method not found: {method}")
        kind, param = feature
        if not param:
            # list methods: answered, filtered item by item, unless a deny rule
            # naming only methods takes the method itself away
            if any(r.deny and not r.features for r in self._applicable(caller, method)):
                return Decision(False, -32601, f"Method not found: {method}")
            return ALLOW
        if not self._denied(kind, target, method, caller):
            if kind not in self.closed:
                return ALLOW
            if target is not None:
                for rule in self._applicable(caller, method):
                    if not rule.deny and rule.matches(kind, target):
                        return ALLOW
        if kind == "tools":
            return Decision(False, -32602, f"Unknown tool: {target}")
        if kind == "prompts":
            return Decision(False, -32602, f"Unknown prompt: {target}")
        return Decision(False, -32602, f"Resource not found: {target}")

    def visible(self, list_method: str, name: Any, caller: Caller) -> bool:
        """
        Whether one item of a list result is shown to this caller.
        """
        if not self.rules:
            return True
        kind = FEATURE_METHODS[list_method][0]
        if self._denied(kind, name, list_method, caller):
            return False
        if kind not in self.closed:
            return True
        if not isinstance(name, str):
            return False
        for rule in self._applicable(caller, list_method):
            if not rule.deny and rule.matches(kind, name):
                return True
        return False

    def filter_result(self, list_method: str, result: Any, caller: Caller) -> Tuple[Any, int]:
        """
        The list result with hidden items removed (C{nextCursor} and every
        other field kept; 2026 C{cacheScope} made C{private}).

        @return: the new result and how many items were removed.
        """
        if not isinstance(result, dict):
            return result, 0
        key, item_key = LIST_ITEMS[list_method]
        items = result.get(key)
        if not isinstance(items, list):
            return result, 0
        kept = [item for item in items
                if isinstance(item, dict) and self.visible(list_method, item.get(item_key), caller)]
        filtered = dict(result)
        filtered[key] = kept
        if "cacheScope" in filtered:
            filtered["cacheScope"] = "private"
        return filtered, len(items) - len(kept)

    def to_json(self) -> Dict[str, Any]:
        return {"rules": [rule.to_json() for rule in self.rules], "dryRun": self.dry_run}


def _names(value: Any, field: str) -> Tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(field, f"{field} must be a list of non-empty strings")
    if len(value) > 500:
        raise PolicyError(field, f"{field} has more than 500 entries")
    return tuple(value)


def parse_rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise PolicyError(where, f"{where} must be an object")
    unknown = sorted(set(raw) - _RULE_FIELDS)
    if unknown:
        raise PolicyError(f"{where}.{unknown[0]}", f"{where}.{unknown[0]} is not a known rule field")
    kwargs: Dict[str, Any] = {}
    for key in ("methods", "tools", "resources", "prompts", "plans", "applications", "scopes"):
        if key in raw:
            kwargs[key] = _names(raw[key], f"{where}.{key}")
    if "deny" in raw:
        if not isinstance(raw["deny"], bool):
            raise PolicyError(f"{where}.deny", f"{where}.deny must be true or false")
        kwargs["deny"] = raw["deny"]
    if "claims" in raw:
        claims = raw["claims"]
        if not isinstance(claims, dict) or not all(
                isinstance(v, (str, int, bool)) for v in claims.values()):
            raise PolicyError(f"{where}.claims", f"{where}.claims must map claim names to values")
        kwargs["claims"] = tuple(sorted(claims.items()))
    if "description" in raw:
        if not isinstance(raw["description"], str):
            raise PolicyError(f"{where}.description", f"{where}.description must be a string")
        kwargs["description"] = raw["description"][:500]
    if not any(kwargs.get(f) for f in _FEATURES) and not kwargs.get("methods"):
        verb = "denies" if kwargs.get("deny") else "allows"
        raise PolicyError(where, f"{where} {verb} nothing: give tools, resources, prompts or methods")
    return Rule(**kwargs)


def parse_policy(raw: Any, field: str = "acl") -> AccessPolicy:
    if raw is None:
        return AccessPolicy()
    if not isinstance(raw, dict):
        raise PolicyError(field, f"{field} must be an object")
    unknown = sorted(set(raw) - {"rules", "dryRun"})
    if unknown:
        raise PolicyError(f"{field}.{unknown[0]}", f"{field}.{unknown[0]} is not a known field")
    rules = raw.get("rules", [])
    if not isinstance(rules, list):
        raise PolicyError(f"{field}.rules", f"{field}.rules must be a list")
    dry_run = raw.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise PolicyError(f"{field}.dryRun", f"{field}.dryRun must be true or false")
    return AccessPolicy(tuple(parse_rule(r, f"{field}.rules[{i}]") for i, r in enumerate(rules)),
                        dry_run)


def combine(api: AccessPolicy, plan: Optional[AccessPolicy]) -> AccessPolicy:
    """
    The policy for a request: the API's rules plus its plan's.
    """
    if plan is None or not plan.rules:
        return api
    return AccessPolicy(api.rules + plan.rules, api.dry_run or plan.dry_run)
