"""
Micro-benchmark of tool-definition pinning (mcpgated.policy.pinning): what it
costs on a tools/list answer of 100 tools, and on a tools/call.

Drives, N times, the code mcpgated.proxy.resource runs, with no network and
no store (the store's write happens only when something changed, on its own
thread):

  list  a tools/list JSON answer of 100 realistic tools (about 90 kB) through
        the response reader (mcpgated.mcp.responses) with the admission's filter, as the gateway does:
          - "pass-through": pinning off and no access control (the bytes are
            relayed untouched; no rewriter at all: 0 by construction);
          - "acl": access control filtering only (a rule allowing every tool);
          - "pinning": pinning in block mode, every tool pinned and unchanged
            (the steady state);
          - "pinning+acl": both;
          - "first list": pinning, the API's first list (100 definitions put
            in canonical form and pinned on first use; the store write, on
            the store's thread, is not counted); a changed definition costs
            the same for its item;
  call  Gate.admit for a tools/call (the body already parsed, as resource.py
        hands it over), for the same API definitions: the pinning decision is
        one dict lookup. An open API (keyless, no rules, no limits) skips the
        gate (gate.needed): pinning makes it run for that API.

  .venv/bin/python bench/pinning_micro.py               # N=2000 lists, 50000 calls
  .venv/bin/python bench/pinning_micro.py --profile     # and a cProfile of the pinned list
  .venv/bin/python bench/pinning_micro.py --src /tmp/before   # another tree's mcpgated/

Printed: us per list and per call, best of --repeat (process CPU time).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict

if "--src" in sys.argv:
    sys.path.insert(0, sys.argv[sys.argv.index("--src") + 1])
else:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.web.http_headers import Headers

from mcpgated.mcp.body import parse
from mcpgated.definitions import parse_definition
from mcpgated.policy.auth import Authenticator
from mcpgated.policy.gate import AdmissionRequest, Gate
from mcpgated.policy.pinbook import PinBook
from mcpgated.policy.pinning import FingerprintCache
from mcpgated.policy.ratelimit import Limiter
from mcpgated.mcp.responses import ResponseReader


class Clock:
    def seconds(self) -> float:
        return 1_000_000.0


def tool(i: int) -> Dict[str, Any]:
    """
    A tool as real servers list them: a paragraph of description, a schema
    with a few typed, described properties, annotations.
    """
    return {
        "name": f"tool_{i:03d}",
        "title": f"Tool number {i}",
        "description": (f"Tool {i} looks up records in the inventory service and returns them as "
                        "JSON. Use it when the user asks about stock levels, prices or suppliers; "
                        "prefer the narrowest filter. Results are paginated: pass the cursor from "
                        "the previous call to continue."),
        "inputSchema": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "Free text to match", "maxLength": 200},
                "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                "cursor": {"type": ["string", "null"], "description": "From the previous page"},
                "fields": {"type": "array", "items": {"enum": ["sku", "price", "stock", "supplier"]}},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        "outputSchema": {"type": "object", "properties": {
            "items": {"type": "array", "items": {"type": "object"}},
            "nextCursor": {"type": ["string", "null"]}}},
        "annotations": {"readOnlyHint": True, "openWorldHint": False},
    }


LIST_ANSWER = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {
    "tools": [tool(i) for i in range(100)]}}).encode()
LIST_REQUEST = b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}'
CALL_REQUEST = (b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"tool_042",'
                b'"arguments":{"query":"hello from the benchmark"}}}')

BASE = {"name": "Bench", "version": "1", "contextPath": "/bench", "backend": "http://127.0.0.1:1/mcp",
        "plans": [{"name": "Keyless", "security": "KEY_LESS"}]}
ACL = {"rules": [{"tools": ["*"], "methods": ["tools/*"]}]}
DEFINITIONS = {
    "acl": parse_definition(dict(BASE, acl=ACL)),
    "pinning": parse_definition(dict(BASE, pinning={"mode": "block"})),
    "pinning+acl": parse_definition(dict(BASE, acl=ACL, pinning={"mode": "block"})),
}
OPEN = parse_definition(BASE)


PARSED = {LIST_REQUEST: parse(LIST_REQUEST), CALL_REQUEST: parse(CALL_REQUEST)}
HEADERS = Headers({b"content-type": [b"application/json"],
                   b"mcp-session-id": [b"8e1c0a52d1b84a0c9f0f5bb1c1e0d0aa"]})


def admit(gate: Gate, definition: Any, body: bytes) -> Any:
    """
    Gate.admit as resource.py awaits it (the body parsed already; a keyless
    API's admission never waits, so one step runs it).
    """
    step = gate.admit(AdmissionRequest("api-1", definition, b"POST", HEADERS, b"", {}, body,
                                       PARSED[body], "127.0.0.1", "Bearer", None))
    try:
        step.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the admission waited")


def best(work: Callable[[], None], n: int, repeat: int) -> float:
    """
    us per iteration, best of C{repeat} runs (process CPU time).
    """
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.process_time()
        for _ in range(n):
            work()
        times.append((time.process_time() - start) / n * 1e6)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lists", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=50000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--src")
    args = parser.parse_args()

    clock = Clock()
    pins = PinBook(None, clock)
    gate = Gate(Authenticator(clock), Limiter(clock), pins=pins)

    def list_once(definition: Any) -> Callable[[], None]:
        def work() -> None:
            admission = admit(gate, definition, LIST_REQUEST)
            rewriter = ResponseReader(False, admission.judge())
            rewriter.feed(LIST_ANSWER)
            out = rewriter.flush()
            assert len(out) > 50000
        return work

    list_once(DEFINITIONS["pinning"])()  # pins the 100 tools (first use)
    print(f"tools/list answer: {len(LIST_ANSWER)} bytes, 100 tools")
    print(f"{'':28}{'us per tools/list':>20}")
    results: Dict[str, float] = {}
    for name in ("acl", "pinning", "pinning+acl"):
        results[name] = best(list_once(DEFINITIONS[name]), args.lists, args.repeat)
        print(f"{name:28}{results[name]:>20.1f}")

    def first_list() -> None:
        pins.load([])  # forget every pin: the API's first list again
        pins._fingerprints = FingerprintCache()  # and every fingerprint
        list_once(DEFINITIONS["pinning"])()
    results["first"] = best(first_list, max(1, args.lists // 4), args.repeat)
    print(f"{'pinning, first list':28}{results['first']:>20.1f}")

    # the admission alone (parse, no answer): how much of the list cost is the gate
    results["gate only"] = best(lambda: admit(gate, DEFINITIONS["pinning"], LIST_REQUEST),
                                args.lists, args.repeat)
    print(f"{'(gate.admit of the request)':28}{results['gate only']:>20.1f}")

    print(f"\n{'':28}{'us per tools/call':>20}")
    results["call needed"] = best(lambda: gate.needed(OPEN), args.calls, args.repeat)
    print(f"{'open API (gate.needed only)':28}{results['call needed']:>20.2f}")
    for name in ("acl", "pinning", "pinning+acl"):
        definition = DEFINITIONS[name]
        results["call " + name] = best(lambda definition=definition: admit(gate, definition, CALL_REQUEST),
                                       args.calls, args.repeat)
        print(f"{name:28}{results['call ' + name]:>20.2f}")

    if args.profile:
        profile = cProfile.Profile()
        work = list_once(DEFINITIONS["pinning"])
        profile.enable()
        for _ in range(200):
            work()
        profile.disable()
        pstats.Stats(profile).sort_stats("cumulative").print_stats(18)


if __name__ == "__main__":
    main()
