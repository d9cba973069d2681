"""
The object reader on every request and answer (L{mcpgated.mcp.jsonfast}):
for a text that starts with C{"{"} it reads what C{json.loads} (its
decoder's C{decode}) reads, and refuses what that refuses.
"""

from __future__ import annotations

import json
from typing import Any, List, Tuple

import pytest
from hypothesis import given, strategies as st

from mcpgated.mcp.jsonfast import object_reader

read = object_reader(json.JSONDecoder())

scalars = (st.none() | st.booleans() | st.integers() | st.text()
           | st.floats(allow_nan=False, allow_infinity=False))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(), inner, max_size=4), max_leaves=25)
objects = st.dictionaries(st.text(), values, max_size=5)
spaces = st.text(alphabet=" \t\r\n", max_size=3)


def _outcome(reader: Any, text: str) -> Tuple[str, Any]:
    try:
        return "value", repr(reader(text))  # repr: NaN equals NaN
    except ValueError:
        return "error", None


@given(objects, st.sampled_from([(",", ":"), (", ", ": "), (" , ", " : ")]),
       st.sampled_from([None, 1]), spaces)
def test_an_object_reads_as_json_loads_reads_it(value: Any, separators: Tuple[str, str],
                                                indent: Any, trailing: str) -> None:
    text = json.dumps(value, separators=separators, indent=indent, ensure_ascii=False) + trailing
    assert read(text) == json.loads(text) == value


@given(st.text(max_size=40))
def test_any_text_starting_with_a_brace_reads_or_fails_as_json_loads(rest: str) -> None:
    text = "{" + rest
    assert _outcome(read, text) == _outcome(json.loads, text)


@given(st.from_regex(r'\{"[a-z]{1,5}": ?(1|"x"|\[\]|null)\}', fullmatch=True), spaces,
       st.sampled_from(["x", "{}", "1", ",", "\u00a0", "\x0b", "\x0c"]))
def test_data_after_the_object_is_an_error(text: str, space: str, extra: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text + space + extra)
    with pytest.raises(ValueError):
        read(text + space + extra)


@pytest.mark.parametrize("text", ["{", "{}}", '{"a":}', '{"a" 1}', "{'a': 1}", '{"a": 1,}'])
def test_malformed_objects_are_errors(text: str) -> None:
    with pytest.raises(ValueError):
        read(text)


def test_the_decoder_s_own_hooks_apply() -> None:
    seen: List[List[Tuple[str, Any]]] = []

    def pairs(items: List[Tuple[str, Any]]) -> Any:
        seen.append(items)
        return dict(items)

    reader = object_reader(json.JSONDecoder(object_pairs_hook=pairs, parse_float=str))
    assert reader('{"a": {"b": 1.5}, "a": 2}') == {"a": 2}
    assert seen == [[("b", "1.5")], [("a", {"b": "1.5"}), ("a", 2)]]


def test_the_reader_keeps_no_state_between_texts() -> None:
    assert read('{"k": "v"}') == {"k": "v"}
    with pytest.raises(ValueError):
        read('{"k": "v"} tail')
    assert read('{"k": "w"}\n') == {"k": "w"}
