"""
Tool-definition pinning: fingerprints of what a server says its tools,
prompts and resource templates are, and what to do when that changes.

An MCP client trusts a tool by its name, description and schema, and the
model acts on the description. A server that was reviewed can later change
what a tool says or accepts (a "rug pull"); the gateway sees every list
result, so it pins each definition (trust on first use, or after an
operator's approval) and reports, or blocks, what differs from its pin.

This module is pure (no I/O, no Twisted): the canonical form and
fingerprint of a definition, a readable diff of two definitions, and the
decisions: for one list result, which items pass and which changes are
events; for one call, whether it may reach the backend. The same decisions
run on the gateway's in-memory copy of the pins (to answer at once) and in
the store's transaction (the authority, which records the events).

The canonical form is RFC 8785 (JSON Canonicalization Scheme): object keys
sorted by UTF-16 code units, no whitespace, strings with the minimal
escapes, numbers as ECMAScript prints doubles (C{1.0} is C{1}, C{1e2} is
C{100}). Where RFC 8785 refuses a value, the form is extended, never giving
two different values one form: an integer beyond 2**53 keeps all its digits
(integers compare exactly, however large; a double that large prints its
shortest digits as ECMAScript does), NaN and the infinities (which Python's
JSON reader takes) are the bare tokens C{NaN}, C{Infinity} and
C{-Infinity}, and a lone surrogate is written as its C{\\uXXXX} escape.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from json.encoder import encode_basestring
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import attrs

# --- the definition of an item -----------------------------------------------------------

TOOL = "tool"
PROMPT = "prompt"
TEMPLATE = "resourceTemplate"
KINDS = (TOOL, PROMPT, TEMPLATE)

# list method -> (kind, result key, name key, fields of the definition)
LISTS: Dict[str, Tuple[str, str, str, Tuple[str, ...]]] = {
    "tools/list": (TOOL, "tools", "name",
                   ("name", "title", "description", "inputSchema", "outputSchema", "annotations")),
    "prompts/list": (PROMPT, "prompts", "name",
                     ("name", "title", "description", "arguments")),
    "resources/templates/list": (TEMPLATE, "resourceTemplates", "uriTemplate",
                                 ("uriTemplate", "name", "title", "description", "mimeType",
                                  "annotations")),
}
# call method -> kind of the item it uses (by params.name)
CALLS: Dict[str, str] = {"tools/call": TOOL, "prompts/get": PROMPT}

Key = Tuple[str, str]  # (kind, name)


class PinningError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# --- canonical JSON (RFC 8785) and fingerprints --------------------------------------------

# RFC 8785's string escapes are JSON's shortest: the C encoder's (the quote,
# the backslash, \b \f \n \r \t, other controls as lowercase \u00XX).
_string = encode_basestring
# A lone surrogate (JSON text may escape one) is kept escaped.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _double(value: float) -> str:
    """
    A finite double as ECMAScript's Number::toString writes it (RFC 8785
    section 3.2.2.3): the shortest digits that read back as the same
    double (Python's C{repr} finds them too), in positional form from 1e-6
    up to 1e21, else with an exponent.
    """
    if value == 0:
        return "0"
    if value < 0:
        return "-" + _double(-value)
    mantissa, _, exponent = repr(value).partition("e")
    point = mantissa.find(".")
    if point < 0:
        point = len(mantissa)
    digits = mantissa.replace(".", "")
    significant = digits.lstrip("0")
    # value = 0.<digits> * 10**n, digits without leading or trailing zeros
    n = point - (len(digits) - len(significant)) + int(exponent or 0)
    digits = significant.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    head = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{head}e{'+' if n > 0 else '-'}{abs(n - 1)}"


def _number(value: Any) -> str:
    if type(value) is not float:
        # an integer: all its digits (beyond 2**53 too, never another's form)
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return _double(value)


def _utf16(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _write(value: Any, out: List[str], depth: int) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, (int, float)):
        out.append(_number(value))
    elif isinstance(value, dict):
        out.append("{")
        for index, key in enumerate(sorted(value, key=_utf16)):
            if index:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _write(value[key], out, depth + 1)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, out, depth + 1)
        out.append("]")
    else:
        raise TypeError(f"not a JSON value: {type(value).__name__}")


def _walk(value: Any) -> str:
    out: List[str] = []
    _write(value, out, 0)
    return "".join(out)


_sorted_plain = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True,
                                 allow_nan=True, check_circular=False).encode
_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
# outside strings: a float as Python writes it (1.0, 1e+16); NaN and Infinity
# are looked for as words
_FLOAT = re.compile(r"[0-9][.eE]")
# where Python's key order (code points) may differ from UTF-16's
_FAR = re.compile("[\ud800-\udfff\ue000-\U0010ffff]")


def _floats(text: str) -> bool:
    """
    Whether a plain JSON text has a float, NaN or an infinity (outside its
    strings).
    """
    if _FLOAT.search(text) is None and "NaN" not in text and "Infinity" not in text:
        return False
    bare = _STRINGS.sub("", text)
    return _FLOAT.search(bare) is not None or "NaN" in bare or "Infinity" in bare


def canonical(value: Any) -> str:
    """
    The canonical JSON text of a decoded JSON value (see the module
    docstring). Equal values give equal texts; different values (in the
    RFC 8785 sense: numbers compare as doubles within 2**53) give different
    ones.

    Most definitions have no float and no character beyond U+D7FF: for them
    the C encoder with sorted keys writes the RFC 8785 form already (the
    same escapes, integers, key order); the others are written by L{_walk}.
    """
    text = _sorted_plain(value)
    if (not text.isascii() and _FAR.search(text) is not None) or _floats(text):
        text = _walk(value)
    if _SURROGATE.search(text) is not None:
        text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


def definition(list_method: str, item: Mapping[str, Any]) -> Dict[str, Any]:
    """
    What is pinned of one list item: the fields a client shows the model or
    validates against (see L{LISTS}), those present.
    """
    fields = LISTS[list_method][3]
    return {field: item[field] for field in fields if field in item}


def fingerprint_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def fingerprint(list_method: str, item: Mapping[str, Any]) -> str:
    """
    The fingerprint of a list item's definition.
    """
    return fingerprint_of(canonical(definition(list_method, item)))


_plain = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=True,
                          check_circular=False).encode


class FingerprintCache:
    """
    Fingerprints of the definitions seen lately, by their plain JSON text
    (the C encoder's, keys in the order received): an unchanged list answer
    costs one plain encoding and one lookup per item instead of a canonical
    form. Equal plain texts are equal JSON values, so a hit is never wrong.
    Bounded: emptied when full.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._entries: Dict[str, Tuple[str, str]] = {}

    def get(self, value: Any) -> Tuple[str, str]:
        """
        (fingerprint, canonical text) of a definition.
        """
        plain = _plain(value)
        hit = self._entries.get(plain)
        if hit is None:
            text = canonical(value)
            hit = (fingerprint_of(text), text)
            if len(self._entries) >= self._size:
                self._entries.clear()
            self._entries[plain] = hit
        return hit


def pretty(text: Optional[str]) -> List[str]:
    """
    A canonical definition as indented JSON lines, for reading and diffs.
    """
    if text is None:
        return []
    return json.dumps(json.loads(text), indent=2, sort_keys=True,
                      ensure_ascii=False).splitlines()


MAX_DIFF = 64 * 1024


def diff(name: str, old: Optional[str], new: Optional[str], old_fingerprint: Optional[str],
         new_fingerprint: Optional[str]) -> str:
    """
    A unified diff of two canonical definitions (C{None}: absent), cut at
    L{MAX_DIFF} characters.
    """
    before = f"{name} {old_fingerprint[7:19] if old_fingerprint else '(none)'}"
    after = f"{name} {new_fingerprint[7:19] if new_fingerprint else '(removed)'}"
    text = "\n".join(difflib.unified_diff(pretty(old), pretty(new), before, after, lineterm=""))
    if len(text) > MAX_DIFF:
        text = text[:MAX_DIFF] + "\n... (diff cut)"
    return text


# --- settings ---------------------------------------------------------------------------

OFF = "off"
WARN = "warn"
BLOCK = "block"
MODES = (OFF, WARN, BLOCK)
FIRST_USE = "first-use"
REQUIRED = "required"
APPROVALS = (FIRST_USE, REQUIRED)


@attrs.frozen
class PinSettings:
    """
    @ivar mode: C{off} (nothing), C{warn} (pin, record and report; traffic
        unchanged), C{block} (also filter changed or unapproved items out of
        list results and refuse calls to them).
    @ivar approval: C{first-use} (the first definition seen is pinned) or
        C{required} (nothing new is trusted until an operator approves it).
    """

    mode: str = OFF
    approval: str = FIRST_USE

    @property
    def active(self) -> bool:
        return self.mode != OFF

    @property
    def blocks(self) -> bool:
        return self.mode == BLOCK

    def to_json(self) -> Dict[str, Any]:
        return {"mode": self.mode, "approval": self.approval}


def parse_settings(raw: Any, field: str = "pinning") -> PinSettings:
    if raw is None:
        return PinSettings()
    if not isinstance(raw, dict):
        raise PinningError(field, f'{field} must be an object, e.g. {{"mode": "warn"}}')
    unknown = sorted(set(raw) - {"mode", "approval"})
    if unknown:
        raise PinningError(f"{field}.{unknown[0]}", f"{field}.{unknown[0]} is not a known field")
    mode = raw.get("mode", OFF)
    if mode not in MODES:
        raise PinningError(f"{field}.mode", f"{field}.mode must be one of {', '.join(MODES)}")
    approval = raw.get("approval", FIRST_USE)
    if approval not in APPROVALS:
        raise PinningError(f"{field}.approval",
                           f"{field}.approval must be one of {', '.join(APPROVALS)}")
    return PinSettings(mode, approval)


# --- pins and decisions -----------------------------------------------------------------

APPROVED = "approved"  # nothing awaits a decision
PENDING = "pending"  # a definition other than the approved one awaits a decision
REJECTED = "rejected"  # the operator refused the pending definition
STATUSES = (APPROVED, PENDING, REJECTED)

NEW = "new"
CHANGED = "changed"
REMOVED = "removed"


@attrs.frozen
class PinState:
    """
    What the decisions need of one pin.

    @ivar approved: the fingerprint trusted (pinned on first use or approved
        by an operator); L{None} until one is.
    @ivar status: L{APPROVED}, L{PENDING} or L{REJECTED} (of C{pending}).
    @ivar pending: the fingerprint awaiting (or refused) a decision.
    @ivar seen: the fingerprint of the last list result that had the item;
        L{None} when the last complete list did not.
    """

    approved: Optional[str]
    status: str = APPROVED
    pending: Optional[str] = None
    seen: Optional[str] = None

    @property
    def trusted(self) -> bool:
        return self.approved is not None and self.seen == self.approved


@attrs.frozen
class Observed:
    """
    One item of a list result: its name (L{None} if it has none the gateway
    can read), fingerprint and canonical definition.
    """

    name: Optional[str]
    fingerprint: str
    text: str


@attrs.frozen
class Event:
    kind: str
    name: str
    type: str  # NEW, CHANGED or REMOVED
    old: Optional[str]  # fingerprints
    new: Optional[str]


@attrs.frozen
class Verdict:
    """
    What one list result means for the pins.

    @ivar keep: per item, whether it is served.
    @ivar states: the pins this result changed (new ones included), only.
    @ivar events: what changed, to record and report.
    @ivar first_use: the pins created trusted (trust on first use).
    """

    keep: Tuple[bool, ...]
    states: Dict[Key, PinState]
    events: Tuple[Event, ...]
    first_use: Tuple[Key, ...]


def observe(kind: str, pins: Mapping[Key, PinState], items: Sequence[Observed],
            settings: PinSettings, complete: bool, initial: bool = False) -> Verdict:
    """
    Judge the items of one list result against an API's pins.

    An unpinned item is pinned on first use (or, with approval required,
    awaits one: a C{new} event); an item whose definition is not its pin's
    awaits a decision (a C{changed} event the first time that definition is
    seen); a C{complete} result (the whole list in one page) that lacks a
    pinned item makes a C{removed} event. In C{block} mode only trusted
    items are kept. The items pinned on first use when the API had no pin
    of their kind yet (or, C{initial}, on the later pages of that first
    list) are its first inventory, not C{new} events.
    """
    first_sight = initial or not any(key[0] == kind for key in pins)
    states: Dict[Key, PinState] = {}
    events: List[Event] = []
    first_use: List[Key] = []
    keep: List[bool] = []
    names = set()
    for item in items:
        if item.name is None:
            keep.append(not settings.blocks)
            continue
        key = (kind, item.name)
        names.add(item.name)
        known = states.get(key) or pins.get(key)
        pin = known
        new_fp = item.fingerprint
        if pin is None:
            if settings.approval == FIRST_USE:
                pin = PinState(new_fp, APPROVED, None, new_fp)
                first_use.append(key)
                if not first_sight:
                    events.append(Event(kind, item.name, NEW, None, new_fp))
            else:
                pin = PinState(None, PENDING, new_fp, new_fp)
                events.append(Event(kind, item.name, NEW, None, new_fp))
        elif new_fp == pin.approved or new_fp == pin.pending:
            if pin.seen != new_fp:
                pin = attrs.evolve(pin, seen=new_fp)
        else:
            events.append(Event(kind, item.name, NEW if pin.approved is None else CHANGED,
                                pin.approved if pin.approved is not None else pin.pending,
                                new_fp))
            pin = PinState(pin.approved, PENDING, new_fp, new_fp)
        if pin is not known:
            states[key] = pin
        keep.append(pin.trusted or not settings.blocks)
    if complete:
        for key, pin in pins.items():
            if key[0] == kind and key[1] not in names and pin.seen is not None:
                states[key] = attrs.evolve(pin, seen=None)
                events.append(Event(kind, key[1], REMOVED, pin.seen, None))
    return Verdict(tuple(keep), states, tuple(events), tuple(first_use))


def read_items(list_method: str, result: Any,
               cache: Optional[FingerprintCache] = None) -> Optional[List[Observed]]:
    """
    The items of a list result, or L{None} when it has no item list.
    """
    if not isinstance(result, dict):
        return None
    _, key, name_key, _ = LISTS[list_method]
    items = result.get(key)
    if not isinstance(items, list):
        return None
    out = []
    for item in items:
        if not isinstance(item, dict):
            out.append(Observed(None, "", ""))
            continue
        name = item.get(name_key)
        try:
            if cache is not None:
                fingerprint_, text = cache.get(definition(list_method, item))
            else:
                text = canonical(definition(list_method, item))
                fingerprint_ = fingerprint_of(text)
        except (ValueError, RecursionError):  # nested too deeply: never trusted
            out.append(Observed(None, "", ""))
            continue
        out.append(Observed(name if isinstance(name, str) else None, fingerprint_, text))
    return out


def filtered(list_method: str, result: Dict[str, Any], keep: Sequence[bool]) -> Dict[str, Any]:
    """
    The list result with only the kept items (every other field kept; a
    2026 C{cacheScope} made C{private} when an item was removed).
    """
    if all(keep):
        return result
    key = LISTS[list_method][1]
    out = dict(result)
    out[key] = [item for item, kept in zip(result[key], keep, strict=True) if kept]
    if "cacheScope" in out:
        out["cacheScope"] = "private"
    return out


def refusal(kind: str, name: Any, pin: Optional[PinState], settings: PinSettings,
            listed: bool) -> Optional[str]:
    """
    Why a call to an item is refused, or L{None} when it may go on: in
    C{block} mode, an item whose last listed definition is not the one
    pinned, one never approved (approval required), one no list has shown
    while the API has pins of its kind (C{listed}: a name spelled another
    way, C{ADD} for C{add}, never reaches a server that might read it as the
    pinned one), and a name that is not a string.
    """
    if not settings.blocks:
        return None
    what = "Tool" if kind == TOOL else "Prompt"
    if not isinstance(name, str):
        return f"{what} call blocked by the gateway: its name is not a string (pinning)"
    if pin is None:
        if settings.approval == REQUIRED:
            return (f"{what} {name} is blocked by the gateway: its definition has not been "
                    f"approved (pinning)")
        if listed:
            return (f"{what} {name} is blocked by the gateway: no list result has shown it "
                    f"(pinning)")
        return None
    if pin.approved is None:
        return (f"{what} {name} is blocked by the gateway: its definition has not been "
                f"approved (pinning)")
    if pin.seen is not None and pin.seen != pin.approved:
        return (f"{what} {name} is blocked by the gateway: its definition changed since it "
                f"was approved (pinning)")
    return None


# --- what the admin API shows -------------------------------------------------------------


def _iso(when: Optional[float]) -> Optional[str]:
    if when is None:
        return None
    import datetime

    moment = datetime.datetime.fromtimestamp(when, datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parsed(text: Optional[str]) -> Any:
    # for display: NaN and the infinities as strings (JSON has no such numbers)
    return None if text is None else json.loads(text, parse_constant=str)


@attrs.frozen
class PinRecord:
    """
    A pin as stored, with the definitions (canonical JSON texts).
    """

    id: str
    api_id: str
    kind: str
    name: str
    state: PinState
    definition: Optional[str]
    approved_at: Optional[float]
    approved_by: Optional[str]
    pending_definition: Optional[str]
    pending_at: Optional[float]
    seen_at: Optional[float]
    created_at: float
    updated_at: float

    def to_json(self, settings: Optional[PinSettings] = None) -> Dict[str, Any]:
        state = self.state
        pending = None
        if state.pending is not None:
            pending = {
                "fingerprint": state.pending,
                "definition": _parsed(self.pending_definition),
                "seenAt": _iso(self.pending_at),
                "diff": diff(self.name, self.definition, self.pending_definition,
                             state.approved, state.pending),
            }
        out: Dict[str, Any] = {
            "id": self.id,
            "api": self.api_id,
            "kind": self.kind,
            "name": self.name,
            "status": state.status,
            "fingerprint": state.approved,
            "definition": _parsed(self.definition),
            "approvedAt": _iso(self.approved_at),
            "approvedBy": self.approved_by,
            "pending": pending,
            "present": state.seen is not None,
            "seenFingerprint": state.seen,
            "seenAt": _iso(self.seen_at),
            "trusted": state.trusted,
            "createdAt": _iso(self.created_at),
            "updatedAt": _iso(self.updated_at),
        }
        if settings is not None:
            out["blocked"] = settings.blocks and state.seen is not None and not state.trusted
        return out


@attrs.frozen
class EventRecord:
    id: int
    api_id: str
    pin_id: Optional[str]
    kind: str
    name: str
    type: str
    old: Optional[str]
    new: Optional[str]
    diff: str
    session: Optional[str]
    at: float

    def to_json(self) -> Dict[str, Any]:
        return {"id": self.id, "api": self.api_id, "pin": self.pin_id, "kind": self.kind,
                "name": self.name, "type": self.type, "oldFingerprint": self.old,
                "newFingerprint": self.new, "diff": self.diff, "session": self.session,
                "at": _iso(self.at)}


def history_json(row: Tuple[Any, ...]) -> Dict[str, Any]:
    """
    One row of a pin's history: (action, fingerprint, definition, actor, at).
    """
    action, fingerprint_, text, actor, at = row
    return {"action": action, "fingerprint": fingerprint_, "definition": _parsed(text),
            "by": actor, "at": _iso(at)}
