"""
Request path normalisation (L{mcpgated.paths}) and routing on normalised
paths (L{mcpgated.routing}).
"""

from __future__ import annotations

import re
from typing import List
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import example, given, settings, strategies as st

from mcpgated.definitions import parse_definition
from mcpgated.model import ApiRecord
from mcpgated.paths import BadPath, normalize_path, split_target
from mcpgated.routing import RouteTable

UNRESERVED = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

SEGMENTS = st.sampled_from([
    b"mcp", b"pa", b"x", b"a.b", b"...", b".well-known", b"~u", b"x;y", b"%41", b"%7e", b"%7E",
    b"%20", b"%c3%a9", b"%C3%A9", b"%3f", b"%25", b"", b".", b"..", b"%2e", b"%2E", b"%2e%2e",
    b"%2E%2e", b".%2e", b"%2e.", b"..;", b"..;x", b".;", b"%2F", b"%2f", b"..%2f", b"%5c", b"%5C",
    b"%00", b"%zz", b"%4", b"%", b"a\\b", b"#", b"%C0%AE", b"%e0%80%ae", b"caf\xc3\xa9", b"a b",
])


def _reference(path: bytes) -> bytes:
    """
    RFC 3986: decode unreserved escapes, upper-case the others (6.2.2), merge
    slashes, then remove_dot_segments (5.2.4), written independently.
    """
    def escape(m: "re.Match[bytes]") -> bytes:
        value = int(m.group(1), 16)
        return bytes((value,)) if value in UNRESERVED else b"%" + m.group(1).upper()

    path = re.sub(rb"%([0-9A-Fa-f]{2})", escape, path)
    path = re.sub(rb"/+", b"/", path)
    output: List[bytes] = []
    for segment in path.split(b"/")[1:]:
        if segment == b"..":
            if output:
                output.pop()
        elif segment != b".":
            output.append(segment)
    trailing = path.endswith((b"/.", b"/..")) and output
    return b"/" + b"/".join(output) + (b"/" if trailing else b"")


@settings(deadline=None)
@given(st.lists(SEGMENTS, min_size=1, max_size=6))
@example([b"pa", b"..", b"mcp-b"])
@example([b"pa", b"%2e%2e", b"mcp-b"])
@example([b"pa", b"..%2f", b"mcp-b"])
def test_a_path_is_refused_or_what_a_backend_resolves_it_to(segments):
    raw = b"/" + b"/".join(segments)
    try:
        normal = normalize_path(raw)
    except BadPath:
        return
    encoded = normal.encode("ascii")
    # what routes is what a normalising backend would serve: nothing left to resolve
    assert _reference(raw) == encoded
    assert normalize_path(encoded) == normal  # idempotent
    assert b"//" not in encoded
    decoded = unquote_to_bytes(encoded)
    for segment in decoded.split(b"/")[1:]:
        assert segment.split(b";")[0] not in (b".", b"..")
    assert b"\\" not in decoded and b"\x00" not in decoded and b"/" not in \
        unquote_to_bytes(encoded.replace(b"/", b""))
    decoded.decode("utf-8")  # no overlong dots or slashes


@settings(deadline=None)
@given(st.lists(SEGMENTS, min_size=1, max_size=6))
def test_every_dot_segment_spelling_is_refused(segments):
    raw = b"/" + b"/".join(segments)
    decoded = re.sub(rb"%2[eE]", b".", raw)
    if any(s.split(b";")[0] in (b".", b"..") for s in decoded.split(b"/")):
        with pytest.raises(BadPath):
            normalize_path(raw)


@pytest.mark.parametrize("raw, message", [
    (b"/pa/../mcp-b", "'.' or '..'"), (b"/pa/%2e%2e/mcp-b", "'.' or '..'"),
    (b"/pa/..%2fmcp-b", "%2F"), (b"/pa/%2E%2E/x", "'.' or '..'"), (b"/pa/.%2e/x", "'.' or '..'"),
    (b"/pa/%2e./x", "'.' or '..'"), (b"/pa/./x", "'.' or '..'"), (b"/pa/..", "'.' or '..'"),
    (b"/pa/.", "'.' or '..'"), (b"/pa/..;/x", "'.' or '..'"), (b"/pa/%5c", "%5C"),
    (b"/pa/%00", "NUL"), (b"/pa/%2F", "%2F"), (b"/pa/%zz", "two hex digits"),
    (b"/pa/%4", "two hex digits"), (b"/pa/a\\b", "'\\'"), (b"/pa#x", "fragment"),
    (b"/pa/caf\xc3\xa9", "percent-encoded"), (b"/pa/a b", "percent-encoded"),
    (b"/pa/%C0%AE%C0%AE/x", "UTF-8"), (b"*", "starting with '/'"),
    (b"http://gw/pa", "starting with '/'"), (b"pa", "starting with '/'"),
])
def test_refusals_say_why(raw, message):
    with pytest.raises(BadPath, match=re.escape(message)):
        normalize_path(raw)


@pytest.mark.parametrize("raw, normal", [
    (b"/pa", "/pa"), (b"/pa/", "/pa/"), (b"//pa//x//", "/pa/x/"), (b"/p%61", "/pa"),
    (b"/pa/%7e%2D%5f", "/pa/~-_"), (b"/pa/%c3%a9%3f%25", "/pa/%C3%A9%3F%25"),
    (b"/.well-known/oauth-protected-resource/pa", "/.well-known/oauth-protected-resource/pa"),
    (b"/pa/...", "/pa/..."), (b"/pa/a..b", "/pa/a..b"),
])
def test_normal_forms(raw, normal):
    assert normalize_path(raw) == normal


def test_the_query_goes_on_byte_for_byte():
    assert split_target(b"/p%61/x?a=%2F&b=..&c=%2e%2e/") == ("/pa/x", b"a=%2F&b=..&c=%2e%2e/")
    assert split_target(b"/pa?") == ("/pa", b"")
    with pytest.raises(BadPath, match="fragment"):
        split_target(b"/pa?x=1#frag")
    with pytest.raises(BadPath):
        split_target(b"/pa?x=\xff")


def _table(*paths: str) -> RouteTable:
    table = RouteTable()
    definitions = [parse_definition({"name": f"a{index}", "version": "1", "contextPath": path,
                                     "backend": "http://b/mcp",
                                     "plans": [{"name": "K", "security": "KEY_LESS"}]})
                   for index, path in enumerate(paths)]
    table.load([ApiRecord(id=f"id{index}", definition=d, deployed=d, state="STARTED",
                          created_at=0.0, updated_at=0.0, deployed_at=0.0)
                for index, d in enumerate(definitions)])
    return table


def test_routes_match_normalised_context_paths_on_segment_boundaries():
    table = _table("/pa", "/p%61b", "/pa/deep")
    found = table.match("/pa/x")
    assert found is not None and (found[0].api_id, found[1]) == ("id0", "/x")
    found = table.match("/pab/x")  # /p%61b, matched as the normalised /pab
    assert found is not None and (found[0].api_id, found[1]) == ("id1", "/x")
    found = table.match("/pa/deep")
    assert found is not None and found[0].api_id == "id2"
    assert table.match("/pa-other") is None and table.match("/p") is None
