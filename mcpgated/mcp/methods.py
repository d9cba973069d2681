"""
The MCP method tables, for every revision from 2024-11-05 to 2026-07-28:
which methods exist, which name a feature's item (a tool, a prompt, a
resource) and in which parameter, and what each list method returns.

A new revision's methods are added here, and nowhere else.
"""

from __future__ import annotations

from typing import Dict, FrozenSet, Optional, Tuple

# Every method of the specification: requests both ways and notifications.
SPEC_METHODS: FrozenSet[str] = frozenset({
    "initialize", "ping", "server/discover", "subscriptions/listen",
    "tools/list", "tools/call", "prompts/list", "prompts/get",
    "resources/list", "resources/templates/list", "resources/read",
    "resources/subscribe", "resources/unsubscribe",
    "completion/complete", "logging/setLevel",
    "sampling/createMessage", "elicitation/create", "roots/list",
    "tasks/get", "tasks/result", "tasks/list", "tasks/cancel", "tasks/update",
    "notifications/initialized", "notifications/cancelled", "notifications/progress",
    "notifications/message", "notifications/roots/list_changed",
    "notifications/tools/list_changed", "notifications/prompts/list_changed",
    "notifications/resources/list_changed", "notifications/resources/updated",
    "notifications/tasks/status", "notifications/elicitation/complete",
    "notifications/subscriptions/acknowledged",
})

TOOLS = "tools"
PROMPTS = "prompts"
RESOURCES = "resources"
FEATURE_KINDS: Tuple[str, ...] = (TOOLS, RESOURCES, PROMPTS)

# method -> (feature, the parameter naming its item, "" for list methods)
FEATURE_METHODS: Dict[str, Tuple[str, str]] = {
    "tools/call": (TOOLS, "name"),
    "tools/list": (TOOLS, ""),
    "prompts/get": (PROMPTS, "name"),
    "prompts/list": (PROMPTS, ""),
    "resources/read": (RESOURCES, "uri"),
    "resources/subscribe": (RESOURCES, "uri"),
    "resources/unsubscribe": (RESOURCES, "uri"),
    "resources/list": (RESOURCES, ""),
    "resources/templates/list": (RESOURCES, ""),
}

# method -> the parameter that names its target
TARGET_PARAMS: Dict[str, str] = {method: param for method, (_, param)
                                 in FEATURE_METHODS.items() if param}

# list method -> (result key holding the items, item key naming each item)
LIST_ITEMS: Dict[str, Tuple[str, str]] = {
    "tools/list": ("tools", "name"),
    "prompts/list": ("prompts", "name"),
    "resources/list": ("resources", "uri"),
    "resources/templates/list": ("resourceTemplates", "uriTemplate"),
}

# the methods whose calls count per target in the metrics
TARGETED_CALLS: FrozenSet[str] = frozenset({"tools/call", "prompts/get"})


def target_of(method: str, params: object) -> Optional[str]:
    """
    What a request names (a tool, a prompt, a resource URI), whole.
    """
    key = TARGET_PARAMS.get(method)
    if key is not None and isinstance(params, dict):
        value = params.get(key)
        if isinstance(value, str):
            return value
    return None


def list_method_of_result(result: object) -> Optional[str]:
    """
    The list method whose result has this shape (its items array), or
    L{None}: how an answer is read where no request id can say what it
    answers (the legacy transport's GET stream).
    """
    if not isinstance(result, dict):
        return None
    for method, (key, _) in LIST_ITEMS.items():
        if isinstance(result.get(key), list):
            return method
    return None
