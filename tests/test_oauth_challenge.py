"""
WWW-Authenticate: the parser and the resource_metadata rewrite on ordinary
and hostile values (quotes, commas, escapes, several schemes, missing
parameters, very long values), with werkzeug's parser as the oracle where
it applies (one challenge per value).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import WWWAuthenticate

from mcpgated.oauth.challenge import (
    ChallengeSyntaxError,
    parse_challenges,
    rewrite_header_values,
    rewrite_resource_metadata,
)

GW = "https://gw.example/.well-known/oauth-protected-resource/mcp-proxy"
QGW = f'"{GW}"'


def params(value: str):
    return [(c.scheme, c.token68, [(p.name, p.value) for p in c.params]) for c in parse_challenges(value)]


# --- the rewrite, case by case -------------------------------------------------------------------


@pytest.mark.parametrize("header, expected", [
    # the SDK's own shape
    ('Bearer error="invalid_token", error_description="Authentication required", '
     'resource_metadata="http://10.0.0.7:3001/.well-known/oauth-protected-resource/mcp"',
     f'Bearer error="invalid_token", error_description="Authentication required", resource_metadata={QGW}'),
    # commas and escaped quotes inside quoted strings; scope list; realm
    ('Bearer realm="a, b", scope="files:read files:write", error_description="say \\"x, y\\"", '
     'resource_metadata="http://b/m"',
     f'Bearer realm="a, b", scope="files:read files:write", error_description="say \\"x, y\\"", '
     f'resource_metadata={QGW}'),
    # unquoted URL (clients accept it); token values untouched
    ('Bearer resource_metadata=http://b/m, error=invalid_token',
     f'Bearer resource_metadata={QGW}, error=invalid_token'),
    # several challenges, each rewritten; spacing and case kept
    ('DPoP algs="ES256", resource_metadata="http://b/m",Bearer  RESOURCE_METADATA = "http://b/m" ,scope=x',
     f'DPoP algs="ES256", resource_metadata={QGW},Bearer  RESOURCE_METADATA = {QGW} ,scope=x'),
    # a token68 scheme beside a Bearer one
    ('Negotiate YIIB==, Bearer resource_metadata="http://b/m"', f'Negotiate YIIB==, Bearer resource_metadata={QGW}'),
    # nothing to rewrite: byte-identical
    ('Bearer realm="x", error="invalid_token"', 'Bearer realm="x", error="invalid_token"'),
    ('Bearer', 'Bearer'),
    ('Basic realm="simple", Bearer', 'Basic realm="simple", Bearer'),
    # a name that only contains resource_metadata is another parameter
    ('Bearer x_resource_metadata="http://b/m"', 'Bearer x_resource_metadata="http://b/m"'),
    # a quoted value containing the parameter's name is data, not a parameter
    ('Bearer error_description="resource_metadata=\\"http://b/m\\", really"',
     'Bearer error_description="resource_metadata=\\"http://b/m\\", really"'),
    # empty list elements
    (', Bearer resource_metadata="http://b/m",, ', f', Bearer resource_metadata={QGW},, '),
])
def test_rewrite_changes_only_resource_metadata(header, expected):
    result = rewrite_resource_metadata(header, GW)
    assert result.value == expected
    assert not result.malformed


def test_rewrite_reports_the_backend_values():
    result = rewrite_resource_metadata(
        'Bearer resource_metadata="http://b/m", DPoP resource_metadata=/relative/doc', GW)
    assert result.originals == ("http://b/m", "/relative/doc")


def test_url_needing_escapes_is_quoted():
    result = rewrite_resource_metadata('Bearer resource_metadata="x"', 'https://h/a"b\\c')
    assert result.value == 'Bearer resource_metadata="https://h/a\\"b\\\\c"'
    assert parse_challenges(result.value)[0].get("resource_metadata") == 'https://h/a"b\\c'


@pytest.mark.parametrize("header", [
    'Bearer error="unterminated, resource_metadata="http://b/m',
    'Bearer resource_metadata=""x',
    'Bearer resource_metadata="http://b/m" trailing',
    'Bearer =x, resource_metadata="http://b/m"',
    'Bearer, resource_metadata="http://b/m"',
    '"Bearer" resource_metadata="http://b/m"',
    'Bearer resource_metadata="a\x01b"',
])
def test_malformed_header_with_resource_metadata_is_replaced(header):
    with pytest.raises(ChallengeSyntaxError):
        parse_challenges(header)
    result = rewrite_resource_metadata(header, GW)
    assert result.malformed
    # the backend's address never reaches the client
    assert result.value == f"Bearer resource_metadata={QGW}"


@pytest.mark.parametrize("header", ['Bearer error="unterminated', 'Bearer realm="x"y', "Bearer realm=x y"])
def test_malformed_header_without_resource_metadata_passes(header):
    result = rewrite_resource_metadata(header, GW)
    assert result.malformed and result.value == header


def test_very_long_values():
    long_description = "x, \\\"y\\\" " * 20000  # ~160 KB of commas and escaped quotes
    header = (f'Bearer error_description="{long_description}", scope="{"s " * 5000}", '
              'resource_metadata="http://b/m", ' + ", ".join(f"p{i}=v{i}" for i in range(2000)))
    result = rewrite_resource_metadata(header, GW)
    assert result.value == header.replace('"http://b/m"', QGW)
    long_url = "https://gw.example/" + "a" * 100000
    assert rewrite_resource_metadata('Bearer resource_metadata="x"', long_url).value == \
        f'Bearer resource_metadata="{long_url}"'


def test_raw_header_values():
    values = [b'Bearer resource_metadata="http://b/m"', b'Bearer realm="caf\xe9"']
    out, originals, malformed = rewrite_header_values(values, GW)
    assert out == [f"Bearer resource_metadata={QGW}".encode(), b'Bearer realm="caf\xe9"']
    assert originals == ["http://b/m"] and not malformed


def test_parse_several_schemes_and_token68():
    assert params('Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"') == [
        ("Newauth", None, [("realm", "apps"), ("type", "1"), ("title", 'Login to "apps"')]),
        ("Basic", None, [("realm", "simple")]),
    ]
    assert params("Negotiate abc==, Bearer, DPoP algs=ES256") == [
        ("Negotiate", "abc==", []), ("Bearer", None, []), ("DPoP", None, [("algs", "ES256")])]
    # "name=" with no value is a token68 (RFC 9110 allows trailing '='), not a parameter
    assert params("Bearer resource_metadata=") == [("Bearer", "resource_metadata=", [])]
    assert rewrite_resource_metadata("Bearer resource_metadata=", GW).value == "Bearer resource_metadata="


# --- properties ---------------------------------------------------------------------------------

_TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
tokens = st.text(alphabet=_TCHARS, min_size=1, max_size=12)
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
# printable text plus the troublemakers: quotes, backslashes, commas, '=', spaces
values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("\t\xe9"),
                 max_size=40)
ows = st.sampled_from(["", " ", "  ", "\t"])


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def challenge(draw):
    scheme = draw(tokens)
    items = draw(st.lists(st.tuples(names, values, st.booleans()), max_size=5))
    if draw(st.booleans()):
        items.append(("resource_metadata", draw(values), True))
    draw(st.randoms()).shuffle(items)
    parts = []
    expected = []
    for name, value, quote in items:
        as_token = value and all(c in _TCHARS for c in value) and not quote
        text = value if as_token else _quoted(value)
        parts.append(f"{name}{draw(ows)}={draw(ows)}{text}")
        expected.append((name, value))
    rendered = scheme + ((" " + (draw(ows) + "," + draw(ows)).join(parts)) if parts else "")
    return rendered, scheme, expected


@given(st.lists(challenge(), min_size=1, max_size=4), ows)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_list_of_challenges_round_trips(generated, separator):
    header = ("," + separator).join(text for text, _, _ in generated)
    parsed = parse_challenges(header)
    assert [(c.scheme, [(p.name, p.value) for p in c.params]) for c in parsed] == \
        [(scheme, expected) for _, scheme, expected in generated]

    result = rewrite_resource_metadata(header, GW)
    rewritten = parse_challenges(result.value)
    # every parameter but resource_metadata is what it was; that one is the gateway's
    assert [(c.scheme, [(p.name, GW if p.name == "resource_metadata" else p.value) for p in c.params])
            for c in rewritten] == \
        [(scheme, [(n, GW if n == "resource_metadata" else v) for n, v in expected])
         for _, scheme, expected in generated]
    # and the bytes outside resource_metadata values are the backend's
    if "resource_metadata" not in header:
        assert result.value == header


@given(challenge())
@settings(max_examples=300, deadline=None)
def test_single_challenge_agrees_with_werkzeug(generated):
    header, scheme, expected = generated
    if not expected:
        return
    names_seen = [n for n, _ in expected]
    if len(set(names_seen)) != len(names_seen):
        return  # werkzeug keeps the last of duplicated names; we keep all
    if any(v == "" or "\t" in v or "\xe9" in v for _, v in expected):
        return  # werkzeug drops empty items and quotes tabs differently
    oracle = WWWAuthenticate.from_header(header)
    assert oracle is not None
    ours = parse_challenges(header)[0]
    assert oracle.type == scheme.lower()
    assert dict(oracle.parameters) == {p.name: p.value for p in ours.params}


@given(st.text(max_size=200))
@settings(max_examples=500, deadline=None)
def test_arbitrary_text_never_crashes(text):
    result = rewrite_resource_metadata(text, GW)
    if result.malformed:
        assert result.value in (text, f"Bearer resource_metadata={QGW}")
    else:
        assert [c.scheme for c in parse_challenges(result.value)] == [c.scheme for c in parse_challenges(text)]
