"""
JSON-RPC id keys (L{mcpgated.mcp.ids}): ids compared by value, as a
JavaScript backend reads them, and refused where no backend reads them alike.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from mcpgated.mcp.ids import MAX_SAFE, InvalidId, canonical, id_key, request_key

SAFE = st.integers(-MAX_SAFE, MAX_SAFE)


@pytest.mark.parametrize("text", ["1", "1.0", "1e0", "10e-1", "0.1e1", "1E+0", "100e-2"])
def test_one_in_every_spelling_is_one_id(text):
    assert request_key(json.loads(text)) == ("n", 1)


def test_minus_zero_is_zero_as_in_javascript():
    assert request_key(json.loads("-0")) == request_key(json.loads("-0.0")) == ("n", 0)


@pytest.mark.parametrize("text", [
    "1.5", "-0.5", "true", "false", "null", "9007199254740992", "9007199254740993",
    "-9007199254740992", "1e16", "1e400", "-1e400", "[1]", '{"a":1}', "123456789012345678901234567890",
])
def test_ids_no_two_backends_read_alike_are_refused(text):
    with pytest.raises(InvalidId):
        request_key(json.loads(text))
    assert id_key(json.loads(text)) is None  # and match nothing


def test_the_largest_safe_integers_are_ids():
    assert request_key(MAX_SAFE) == ("n", MAX_SAFE)
    assert request_key(-MAX_SAFE) == ("n", -MAX_SAFE)
    assert request_key(float(MAX_SAFE)) == ("n", MAX_SAFE)


def test_nan_and_infinities_are_refused():
    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(InvalidId):
            request_key(value)


def test_strings_and_numbers_are_distinct_ids():
    assert request_key("1") == ("s", "1") != request_key(1)
    assert request_key("") == ("s", "")
    assert request_key("1.0") != request_key("1")


def test_null_is_refused_with_a_message_naming_notifications():
    with pytest.raises(InvalidId, match="null"):
        request_key(None)


@settings(deadline=None)
@given(SAFE)
def test_an_integer_and_its_float_spellings_share_a_key(n):
    assert request_key(n) == request_key(float(n)) == request_key(json.loads(f"{n}.0"))
    assert request_key(json.loads(f"{n}e0")) == ("n", n)
    assert canonical(request_key(float(n))) == n and type(canonical(request_key(float(n)))) is int


@settings(deadline=None)
@given(st.one_of(st.integers(min_value=MAX_SAFE + 1), st.integers(max_value=-MAX_SAFE - 1)))
def test_unsafe_integers_are_refused(n):
    with pytest.raises(InvalidId):
        request_key(n)


@settings(deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True).filter(
    lambda f: not (math.isfinite(f) and f.is_integer() and abs(f) <= MAX_SAFE)))
def test_floats_that_are_not_safe_integers_are_refused(value):
    with pytest.raises(InvalidId):
        request_key(value)


@settings(deadline=None)
@given(st.text())
def test_any_string_is_its_own_key(text):
    assert request_key(text) == ("s", text)
    assert canonical(request_key(text)) == text


@settings(deadline=None)
@given(st.one_of(SAFE, st.text(max_size=20)), st.one_of(SAFE, st.text(max_size=20)))
def test_keys_are_equal_exactly_when_javascript_sees_one_id(a, b):
    # JSON text -> value as JavaScript reads it: numbers by value, strings by text
    same = type(a) is type(b) and a == b
    assert (request_key(json.loads(json.dumps(a))) == request_key(json.loads(json.dumps(b)))) is same
