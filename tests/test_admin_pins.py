"""
The pinning resource of the admin API (L{mcpgated.admin.pins}), in
process: the body of a decision and the page of drift events. The routes run
against a real daemon in tests/test_pinning_e2e.py and the console's
tests/test_console_pins.py.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import pytest

from mcpgated.admin.endpoint import HTTPError
from mcpgated.admin.pins import decision_body, page
from mcpgated.definitions import InvalidField
from tests.admin_requests import AdminRequest

FINGERPRINT = "sha256:" + "0123456789abcdef" * 4


def test_a_decision_names_a_fingerprint_or_takes_the_pending_one() -> None:
    assert decision_body(None) is None
    assert decision_body({}) is None
    assert decision_body({"fingerprint": None}) is None
    assert decision_body({"fingerprint": FINGERPRINT}) == FINGERPRINT


@pytest.mark.parametrize("body, field", [
    ([FINGERPRINT], None),
    (FINGERPRINT, None),
    ({"fingerprint": FINGERPRINT, "reason": "ok"}, "reason"),
    ({"fingerprint": FINGERPRINT.upper()}, "fingerprint"),
    ({"fingerprint": FINGERPRINT[:-1]}, "fingerprint"),
    ({"fingerprint": FINGERPRINT + "0"}, "fingerprint"),
    ({"fingerprint": FINGERPRINT + "\n"}, "fingerprint"),
    ({"fingerprint": "sha1:" + "0" * 40}, "fingerprint"),
    ({"fingerprint": 1}, "fingerprint"),
])
def test_bad_decisions_name_the_field(body: Any, field: Optional[str]) -> None:
    with pytest.raises(InvalidField) as caught:
        decision_body(body)
    assert caught.value.field == field


def request(**args: str) -> AdminRequest:
    return AdminRequest(method=b"GET", path=b"/apis/a/pins/events", args=args)


@pytest.mark.parametrize("args, expected", [
    ({}, (50, None)),
    ({"limit": "1"}, (1, None)),
    ({"limit": "500", "cursor": "12"}, (500, 12)),
    ({"cursor": "9" * 18}, (50, int("9" * 18))),
])
def test_pages(args: Dict[str, str], expected: Tuple[int, Optional[int]]) -> None:
    assert page(request(**args)) == expected


@pytest.mark.parametrize("args, field", [
    ({"limit": "0"}, "limit"),
    ({"limit": "501"}, "limit"),
    ({"limit": "\u0661"}, "limit"),
    ({"cursor": "-1"}, "cursor"),
    ({"cursor": "9" * 19}, "cursor"),
    ({"cursor": "x"}, "cursor"),
])
def test_bad_pages_name_the_argument(args: Dict[str, str], field: str) -> None:
    with pytest.raises(HTTPError) as caught:
        page(request(**args))
    assert (caught.value.status, caught.value.field) == (400, field)
