"""
The MCP method tables (L{mcpgated.mcp.methods}): what each method names,
which list a result is, and that the tables agree with each other.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from mcpgated.mcp.methods import (
    FEATURE_KINDS,
    FEATURE_METHODS,
    LIST_ITEMS,
    SPEC_METHODS,
    TARGET_PARAMS,
    TARGETED_CALLS,
    list_method_of_result,
    target_of,
)

# --- target_of ------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "param"), sorted(TARGET_PARAMS.items()))
def test_each_targeted_method_names_its_target_in_its_parameter(method: str, param: str) -> None:
    assert target_of(method, {param: "the-item"}) == "the-item"
    assert target_of(method, {param: ""}) == ""
    assert target_of(method, {param: "ü/ünïcode"}) == "ü/ünïcode"


@pytest.mark.parametrize(("method", "param"), sorted(TARGET_PARAMS.items()))
def test_no_target_from_another_parameter_or_a_non_string(method: str, param: str) -> None:
    other = "uri" if param == "name" else "name"
    assert target_of(method, {other: "x"}) is None
    for value in (5, None, ["x"], {"x": "y"}, True):
        assert target_of(method, {param: value}) is None


@pytest.mark.parametrize("params", [None, "echo", ["echo"], 5, [{"name": "echo"}]])
def test_no_target_when_params_is_not_an_object(params: Any) -> None:
    assert target_of("tools/call", params) is None


@pytest.mark.parametrize("method", sorted(SPEC_METHODS - set(TARGET_PARAMS)) + ["unknown/call", "", "TOOLS/CALL"])
def test_methods_without_a_target_parameter_have_none(method: str) -> None:
    assert target_of(method, {"name": "x", "uri": "y"}) is None


# --- list_method_of_result ---------------------------------------------------------------


@pytest.mark.parametrize(("method", "keys"), sorted(LIST_ITEMS.items()))
def test_each_list_result_shape_names_its_method(method: str, keys: Any) -> None:
    items_key, item_key = keys
    assert list_method_of_result({items_key: []}) == method
    assert list_method_of_result({items_key: [{item_key: "a"}], "nextCursor": "c"}) == method


@pytest.mark.parametrize(("method", "keys"), sorted(LIST_ITEMS.items()))
def test_a_list_key_whose_value_is_no_array_names_no_method(method: str, keys: Any) -> None:
    items_key, _ = keys
    for value in (None, {}, "tools", 3, {"0": {"name": "a"}}):
        assert list_method_of_result({items_key: value}) is None


@pytest.mark.parametrize("result", [
    None, [], [{"name": "a"}], "tools", 5, {}, {"content": []}, {"items": []}, {"Tools": []},
    {"contents": [{"uri": "x"}]}, {"messages": []},
])
def test_results_that_are_no_list_result_name_no_method(result: Any) -> None:
    assert list_method_of_result(result) is None


@settings(deadline=None, derandomize=True, max_examples=200)
@given(st.dictionaries(st.text(max_size=20), st.none() | st.integers() | st.lists(st.integers(), max_size=2),
                       max_size=5))
def test_list_method_of_result_only_names_list_methods(result: Any) -> None:
    method = list_method_of_result(result)
    if method is None:
        assert not any(isinstance(result.get(key), list) for key, _ in LIST_ITEMS.values())
    else:
        assert method in LIST_ITEMS
        assert isinstance(result[LIST_ITEMS[method][0]], list)


# --- the tables agree -------------------------------------------------------------------


def test_every_feature_and_list_method_is_a_spec_method() -> None:
    assert set(FEATURE_METHODS) <= SPEC_METHODS
    assert set(LIST_ITEMS) <= SPEC_METHODS
    assert set(TARGET_PARAMS) <= SPEC_METHODS
    assert TARGETED_CALLS <= SPEC_METHODS


def test_target_params_are_the_feature_methods_with_a_parameter() -> None:
    assert TARGET_PARAMS == {method: param for method, (_, param) in FEATURE_METHODS.items() if param}
    assert set(TARGET_PARAMS) == {"tools/call", "prompts/get", "resources/read", "resources/subscribe",
                                  "resources/unsubscribe"}
    assert TARGETED_CALLS <= set(TARGET_PARAMS)


def test_list_methods_are_the_feature_methods_without_a_parameter() -> None:
    assert set(LIST_ITEMS) == {method for method, (_, param) in FEATURE_METHODS.items() if not param}


def test_a_list_names_its_items_by_the_parameter_that_targets_them() -> None:
    # a tool listed by "name" is called by "name", a resource listed by "uri" is read by "uri"
    for method, (feature, param) in FEATURE_METHODS.items():
        assert feature in FEATURE_KINDS
        assert method.startswith(feature + "/")
        if param:
            lists = [m for m in LIST_ITEMS if m.startswith(feature + "/") and "templates" not in m]
            assert lists, method
            for listed in lists:
                assert LIST_ITEMS[listed][1] == param


def test_list_item_keys_are_distinct() -> None:
    keys = [key for key, _ in LIST_ITEMS.values()]
    assert len(keys) == len(set(keys))


def test_spec_methods_include_the_2026_additions_and_notifications() -> None:
    for method in ("server/discover", "subscriptions/listen", "tasks/get", "notifications/initialized",
                   "notifications/subscriptions/acknowledged", "initialize", "ping"):
        assert method in SPEC_METHODS
    assert all(isinstance(m, str) and m == m.strip() and m for m in SPEC_METHODS)
