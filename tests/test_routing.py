"""
The routing table (L{mcpgated.routing}): readiness before the store has
loaded, what a committed change does to the routes at once, and longest
whole-segment prefix matching. Context paths as request paths see them
(normalised) are tested in tests/test_paths.py; routes changing on a real
daemon in tests/test_admin.py.
"""

from __future__ import annotations

from typing import List, Optional

from mcpgated.model import STARTED, STOPPED, ApiDefinition, ApiRecord, Plan
from mcpgated.routing import RouteTable


def definition(path: str, version: str = "1") -> ApiDefinition:
    return ApiDefinition(name=path, version=version, description="", context_path=path,
                         backend="http://127.0.0.1:1/mcp", plans=(Plan("Keyless"),))


def record(api_id: str, path: str, state: str = STARTED,
           deployed: Optional[ApiDefinition] = None, edited: Optional[str] = None) -> ApiRecord:
    live = deployed if deployed is not None else definition(path)
    stored = definition(path, edited) if edited else live
    return ApiRecord(id=api_id, definition=stored, deployed=live, state=state,
                     created_at=0.0, updated_at=0.0, deployed_at=0.0)


def matched(table: RouteTable, path: str) -> Optional[str]:
    found = table.match(path)
    return None if found is None else f"{found[0].api_id}:{found[1]}"


def test_requests_wait_until_the_store_has_loaded() -> None:
    table = RouteTable()
    fired: List[None] = []
    table.when_ready().addCallback(fired.append)
    assert not table.ready and fired == []
    table.load([record("a", "/a")])
    assert table.ready and fired == [None]
    # once loaded, at once
    table.when_ready().addCallback(fired.append)
    assert fired == [None, None]


def test_only_started_deployed_apis_are_routed() -> None:
    never = ApiRecord(id="n", definition=definition("/never"), deployed=None, state=STOPPED,
                      created_at=0.0, updated_at=0.0, deployed_at=None)
    table = RouteTable()
    table.load([record("a", "/a"), record("s", "/stopped", STOPPED), never])
    assert [route.api_id for route in table.routes()] == ["a"]
    assert matched(table, "/stopped") is None and matched(table, "/never") is None


def test_the_deployed_definition_is_served_not_the_edited_one() -> None:
    table = RouteTable()
    table.load([record("a", "/a", edited="2")])
    (route,) = table.routes()
    assert route.definition.version == "1"


def test_committed_changes_apply_at_once() -> None:
    table = RouteTable()
    table.load([record("a", "/a")])
    table.apply(record("b", "/b"))
    assert matched(table, "/b/x") == "b:/x"
    table.apply(record("b", "/b", STOPPED))
    assert matched(table, "/b/x") is None
    # redeployed at another path: the old one no longer routes
    table.apply(record("a", "/moved"))
    assert matched(table, "/a") is None and matched(table, "/moved") == "a:"
    table.remove("a")
    table.remove("a")  # twice is harmless
    assert table.routes() == [] and matched(table, "/moved") is None


def test_the_longest_context_path_wins_on_whole_segments() -> None:
    table = RouteTable()
    table.load([record("short", "/mcp"), record("long", "/mcp/team"), record("other", "/mcp-x")])
    assert [route.api_id for route in table.routes()] == ["long", "other", "short"]
    assert matched(table, "/mcp/team/tools") == "long:/tools"
    assert matched(table, "/mcp/teams") == "short:/teams"
    assert matched(table, "/mcp") == "short:"
    assert matched(table, "/mcp-x/") == "other:/"
    assert matched(table, "/mc") is None and matched(table, "/mcpx") is None
