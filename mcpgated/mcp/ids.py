"""
JSON-RPC ids as keys, compared as the backends compare them.

A JavaScript backend reads C{1}, C{1.0}, C{1e0} and C{10e-1} as the same
number and answers C{1}; a Go backend's C{float64} does the same. So every
place that matches a response to its request (list filtering, denied batch
elements, the exchange log) keys ids by value: a string id is
C{("s", text)}, a number id C{("n", integer)}. Strings and numbers never
match each other (C{"1"} and C{1} are two ids).

A request id must be a string or an integral number no larger than
2**53 - 1 in magnitude (beyond it, JavaScript rounds: 2**53 + 1 would be
answered as 2**53); anything else (a fraction, a boolean, NaN, a huge
number, an object, null) is refused by L{request_key}.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union

IdKey = Tuple[str, Union[str, int]]

# Number.MAX_SAFE_INTEGER: every integer up to it has one double.
MAX_SAFE = 2 ** 53 - 1


class InvalidId(ValueError):
    """
    A request id that is not a string or a safe integral number.
    """


def id_key(value: Any) -> Optional[IdKey]:
    """
    The key of an id (of a request or a response), or L{None} for an id
    that cannot be matched: null, absent, or not a valid request id.
    """
    kind = type(value)
    if kind is str:
        return ("s", value)
    if kind is int:
        if -MAX_SAFE <= value <= MAX_SAFE:
            return ("n", value)
        return None
    if kind is float:
        # NaN and the infinities fail the comparison; fractions is_integer
        if -MAX_SAFE <= value <= MAX_SAFE and value.is_integer():
            return ("n", int(value))
        return None
    return None


def request_key(value: Any) -> IdKey:
    """
    The key of a request's id (the C{id} member is present).

    @raise InvalidId: null, a boolean, a fraction, a number beyond
        2**53 - 1, or any other JSON value.
    """
    key = id_key(value)
    if key is None:
        if value is None:
            raise InvalidId("A request id must not be null (a notification has no id member)")
        raise InvalidId("A request id must be a string or an integer of at most 2^53 - 1")
    return key


def canonical(key: IdKey) -> Union[str, int]:
    """
    The id to echo in an answer the gateway writes itself: the string, or
    the number as an integer (C{1.0} is answered as C{1}, as a JavaScript
    backend answers).
    """
    return key[1]
