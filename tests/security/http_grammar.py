"""
Hypothesis strategies for raw HTTP/1.1 request bytes, for differential tests
of the gateway's HTTP/1.1 server against a reference parser (h11).

A generated L{Message} is one request as bytes on the wire, mostly well
formed, with the edge cases of issue #11 mixed in: odd targets (C{%2F},
C{%2e}, C{..}, C{//}, absolute-form, C{#}), CL/TE mixes and duplicates, Host
missing, twice or invalid, obs-fold, space before the colon, bare LF, C{_} in
names, control bytes in values, chunked bodies with extensions and trailers
(Host, Content-Length, Authorization, X-Gravitee-Api-Key), Upgrade and Expect.
Each deviation from the plain grammar adds a tag naming it, so a test can
tell an intended refusal (the tag is in its allowed list) from a bug.

A L{Stream} is what one connection sends: one or more pipelined messages.
"""

from __future__ import annotations

from typing import FrozenSet, List, Optional, Sequence, Tuple

import attrs
from hypothesis import strategies as st

CRLF = b"\r\n"


@attrs.frozen
class Message:
    """
    One request's bytes and the tags naming its deviations.
    """

    raw: bytes
    tags: FrozenSet[str] = frozenset()
    # The same request in the plain grammar, where a deviation has only one
    # reading (extra spaces in the request line): what the reference reads.
    plain: Optional[bytes] = None


@attrs.frozen
class Stream:
    """
    The bytes one connection sends: pipelined messages, in order.
    """

    messages: Tuple[Message, ...]

    @property
    def raw(self) -> bytes:
        return b"".join(message.raw for message in self.messages)

    @property
    def plain(self) -> bytes:
        return b"".join(message.raw if message.plain is None else message.plain
                        for message in self.messages)

    def tags(self, index: int) -> FrozenSet[str]:
        """
        The tags of the C{index}th message, or of the last one when
        C{index} is past the end (bytes left over after the last message).
        """
        if not self.messages:
            return frozenset()
        return self.messages[min(index, len(self.messages) - 1)].tags


def stream(*messages: Message) -> Stream:
    return Stream(tuple(messages))


def message(raw: bytes, *tags: str) -> Message:
    return Message(raw, frozenset(tags))


# --- request line -----------------------------------------------------------------------

_METHODS = [b"GET", b"POST", b"POST", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH"]
_ODD_METHODS: List[Tuple[bytes, Tuple[str, ...]]] = [
    (b"get", ("method-unknown",)),
    (b"PROPFIND", ()),
    (b"FOO", ("method-unknown",)),
    (b"G_T", ("method-unknown",)),
    (b"CONNECT", ("connect",)),
]

# Path segments, tagged with the path rule of http-edge.md section 1 they touch.
_SEGMENTS: List[Tuple[bytes, Tuple[str, ...]]] = [
    (b"mcp", ()), (b"ctx", ()), (b"api", ()), (b"sse", ()), (b"message", ()),
    (b"x;y", ()), (b"~u", ()), (b"%41", ()), (b"a-b.c", ()),
    (b"", ("path-double-slash",)),
    (b".", ("path-dot",)), (b"..", ("path-dot",)), (b"%2e", ("path-dot",)),
    (b"%2E%2E", ("path-dot",)), (b".%2e", ("path-dot",)),
    (b"%2F", ("path-escaped-slash",)), (b"%2f", ("path-escaped-slash",)),
    (b"%5C", ("path-escaped-slash",)), (b"..%5c", ("path-escaped-slash", "path-dot")),
    (b"%00", ("path-escaped-slash",)),
    (b"%zz", ("path-bad-escape",)), (b"%4", ("path-bad-escape",)),
    (b"a\\b", ("path-backslash",)),
]
_QUERIES: List[Tuple[bytes, Tuple[str, ...]]] = [
    (b"", ()), (b"", ()), (b"?sessionId=abc", ()), (b"?a=%2F&b=..", ()), (b"?", ()),
    (b"?x=1#frag", ("target-fragment",)), (b"#frag", ("target-fragment",)),
]


@st.composite
def targets(draw: st.DrawFn) -> Tuple[bytes, FrozenSet[str]]:
    kind = draw(st.sampled_from(["origin"] * 6 + ["absolute", "asterisk", "raw"]))
    if kind == "asterisk":
        return b"*", frozenset({"asterisk"})
    if kind == "raw":
        value, tag = draw(st.sampled_from([
            (b"/caf\xc3\xa9", "target-non-ascii"), (b"/a\x7fb", "target-ctl"),
            (b"mcp", "target-no-slash"), (b"/a\tb", "target-ctl"),
        ]))
        return value, frozenset({tag})
    segments = draw(st.lists(st.sampled_from(_SEGMENTS), min_size=1, max_size=4))
    query, query_tags = draw(st.sampled_from(_QUERIES))
    tags = {tag for _, segment_tags in segments for tag in segment_tags} | set(query_tags)
    path = b"/" + b"/".join(segment for segment, _ in segments) + query
    if kind == "absolute":
        authority = draw(st.sampled_from([b"gw.test", b"other.test", b"gw.test:8080"]))
        scheme = draw(st.sampled_from([b"http", b"https", b"HTTP"]))
        path = scheme + b"://" + authority + path
        tags.add("absolute-form")
    return path, frozenset(tags)


@st.composite
def request_lines(draw: st.DrawFn) -> Tuple[bytes, bytes, bytes, FrozenSet[str]]:
    """
    (method, line without its line end, the line with single spaces, tags).
    """
    tags: set = set()
    if draw(st.integers(0, 9)) == 0:
        method, method_tags = draw(st.sampled_from(_ODD_METHODS))
        tags.update(method_tags)
    else:
        method = draw(st.sampled_from(_METHODS))
    if method == b"CONNECT" and draw(st.booleans()):
        target, target_tags = b"gw.test:443", frozenset({"authority-form"})
    else:
        target, target_tags = draw(targets())
    tags.update(target_tags)
    version, version_tags = draw(st.sampled_from(
        [(b"HTTP/1.1", ())] * 8 + [(b"HTTP/1.0", ("http10",)), (b"HTTP/1.2", ("version-odd",)),
                                   (b"HTTP/2.0", ("version-odd",)), (b"HTTP/0.9", ("version-odd",)),
                                   (b"http/1.1", ("version-odd",))]))
    tags.update(version_tags)
    space, space_tags = draw(st.sampled_from(
        [(b" ", ())] * 12 + [(b"  ", ("request-line-space",)), (b"\t", ("request-line-space",))]))
    tags.update(space_tags)
    return (method, method + space + target + b" " + version,
            method + b" " + target + b" " + version, frozenset(tags))


# --- header fields ----------------------------------------------------------------------


@attrs.frozen
class Field:
    name: bytes
    value: bytes
    tags: FrozenSet[str] = frozenset()


def _field(name: bytes, value: bytes, *tags: str) -> Field:
    return Field(name, value, frozenset(tags))


_HOSTS: List[Tuple[List[Field], Tuple[str, ...]]] = [
    ([_field(b"Host", b"gw.test")], ()),
    ([_field(b"Host", b"gw.test")], ()),
    ([_field(b"Host", b"gw.test:8080")], ()),
    ([_field(b"host", b"GW.test")], ()),
    ([], ("host-missing",)),
    ([_field(b"Host", b"gw.test"), _field(b"Host", b"gw.test")], ("host-dup",)),
    ([_field(b"Host", b"gw.test"), _field(b"Host", b"evil.test")], ("host-dup",)),
    ([_field(b"Host", b"gw.test, evil.test")], ("host-invalid",)),
    ([_field(b"Host", b"gw.test,evil.test")], ("host-invalid",)),
    ([_field(b"Host", b"")], ("host-invalid",)),
    ([_field(b"Host", b"gw.test:99999")], ("host-invalid",)),
    ([_field(b"Host", b"gw..test")], ("host-invalid",)),
    ([_field(b"Host", b"gw.test/admin")], ("host-invalid",)),
    ([_field(b"Host", b"user@gw.test")], ("host-invalid",)),
]

# Body framing: (fields, chunked body?, declared length override, tags).
_FRAMINGS: List[Tuple[str, Tuple[str, ...]]] = [
    ("none", ()), ("cl", ()), ("cl", ()), ("chunked", ()), ("chunked", ()),
    ("cl+te", ("cl-te",)), ("te+cl", ("cl-te",)),
    ("cl-dup-equal", ("cl-dup",)), ("cl-dup-differ", ("cl-dup",)), ("cl-list", ("cl-dup",)),
    ("te-dup", ("te-dup",)), ("te-list", ("te-odd",)), ("te-gzip-chunked", ("te-odd",)),
    ("te-chunked-gzip", ("te-odd",)), ("te-identity", ("te-odd",)), ("te-case", ()),
    ("cl-plus", ("cl-odd",)), ("cl-space", ()), ("cl-hex", ("cl-odd",)), ("cl-huge", ("cl-odd",)),
    ("cl-neg", ("cl-odd",)), ("cl-zero-padded", ()),
]

_EXTRAS: List[Field] = [
    _field(b"Authorization", b"Bearer token-1"),
    _field(b"X-Gravitee-Api-Key", b"key-1"),
    _field(b"Content-Type", b"application/json"),
    _field(b"Accept", b"application/json, text/event-stream"),
    _field(b"Mcp-Session-Id", b"session-1"),
    _field(b"User-Agent", b"differential/1"),
    _field(b"Connection", b"keep-alive"),
    _field(b"Connection", b"close"),
    _field(b"Connection", b"Upgrade, HTTP2-Settings", "upgrade"),
    _field(b"Connection", b"upgrade", "upgrade"),
    _field(b"Connection", b"Authorization", "connection-names-judged"),
    _field(b"Connection", b"Mcp-Session-Id", "connection-names-judged"),
    _field(b"Upgrade", b"h2c", "upgrade"),
    _field(b"Upgrade", b"websocket", "upgrade"),
    _field(b"HTTP2-Settings", b"AAMAAABkAAQAAP__"),
    _field(b"Expect", b"100-continue"),
    _field(b"Expect", b"fancy"),
    _field(b"Trailer", b"X-Gravitee-Api-Key"),
    _field(b"TE", b"trailers"),
    _field(b"Keep-Alive", b"timeout=5"),
    _field(b"Proxy-Connection", b"keep-alive"),
    _field(b"X_Gravitee_Api_Key", b"key-2", "underscore-name"),
    _field(b"X-Forwarded-For", b"10.0.0.1"),
    _field(b"X-Empty", b""),
    _field(b"X-Obs-Text", b"caf\xc3\xa9"),
    _field(b"X-Spaces", b"  padded \t "),
    _field(b"X-Tab", b"a\tb"),
]

# Bytes put inside one field value; tagged unless harmless.
_VALUE_BYTES: List[Tuple[bytes, Tuple[str, ...]]] = [
    (b"\x00", ("nul",)), (b"\x01", ("ctl-in-value",)), (b"\x08", ("ctl-in-value",)),
    (b"\x0b", ("ctl-in-value",)), (b"\x1f", ("ctl-in-value",)), (b"\x7f", ("ctl-in-value",)),
    (b"\r", ("bare-cr",)), (b"\xff", ()), (b"\t", ()),
]

_TRAILERS: List[Field] = [
    _field(b"Host", b"evil.test", "trailer-host"),
    _field(b"Content-Length", b"5", "trailer-cl"),
    _field(b"Transfer-Encoding", b"chunked", "trailer-te"),
    _field(b"Authorization", b"Bearer stolen", "trailer-auth"),
    _field(b"X-Gravitee-Api-Key", b"stolen", "trailer-auth"),
    _field(b"Mcp-Session-Id", b"other-session", "trailer-auth"),
    _field(b"X-Checksum", b"abc", "trailer"),
]

_BODIES = [
    b"", b"x", b"hello", b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
    b"GET /admin HTTP/1.1\r\nHost: gw.test\r\n\r\n",
    b"0\r\n\r\n", b"\r\n\r\n", b"\x00\xff",
]


def _framing_fields(kind: str, body: bytes) -> Tuple[List[Field], bool]:
    """
    The framing fields for C{kind} and whether the body goes chunked.
    """
    length = b"%d" % len(body)
    chunked = _field(b"Transfer-Encoding", b"chunked")
    return {
        "none": ([], False),
        "cl": ([_field(b"Content-Length", length)], False),
        "chunked": ([chunked], True),
        "cl+te": ([_field(b"Content-Length", length), chunked], True),
        "te+cl": ([chunked, _field(b"Content-Length", b"%d" % (len(body) + 5))], True),
        "cl-dup-equal": ([_field(b"Content-Length", length)] * 2, False),
        "cl-dup-differ": ([_field(b"Content-Length", length),
                           _field(b"Content-Length", b"%d" % (len(body) + 1))], False),
        "cl-list": ([_field(b"Content-Length", length + b", " + length)], False),
        "te-dup": ([chunked, chunked], True),
        "te-list": ([_field(b"Transfer-Encoding", b"chunked, chunked")], True),
        "te-gzip-chunked": ([_field(b"Transfer-Encoding", b"gzip, chunked")], True),
        "te-chunked-gzip": ([_field(b"Transfer-Encoding", b"chunked, gzip")], True),
        "te-identity": ([_field(b"Transfer-Encoding", b"identity"),
                         _field(b"Content-Length", length)], False),
        "te-case": ([_field(b"Transfer-Encoding", b"Chunked")], True),
        "cl-plus": ([_field(b"Content-Length", b"+" + length)], False),
        "cl-space": ([_field(b"Content-Length", length + b" ")], False),
        "cl-hex": ([_field(b"Content-Length", b"0x%x" % len(body))], False),
        "cl-huge": ([_field(b"Content-Length", b"1" + b"0" * 20)], False),
        "cl-neg": ([_field(b"Content-Length", b"-" + length)], False),
        "cl-zero-padded": ([_field(b"Content-Length", b"00" + length)], False),
    }[kind]


@st.composite
def chunked_bodies(draw: st.DrawFn, body: bytes) -> Tuple[bytes, FrozenSet[str]]:
    """
    C{body} as chunks, with chunk extensions, odd size spellings and
    trailers, each tagged.
    """
    tags: set = set()
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=3)))
    pieces = [body[a:b] for a, b in zip([0] + cuts, cuts + [len(body)]) if b > a]
    out = []

    def size_line(size: int) -> bytes:
        spelling, spelling_tags = draw(st.sampled_from(
            [(b"%x" % size, ())] * 6 + [(b"%X" % size, ()), (b"000%x" % size, ()),
                                        (b"0x%x" % size, ("chunk-odd",)),
                                        (b"%x " % size, ("chunk-odd",)),
                                        (b" %x" % size, ("chunk-odd",)),
                                        (b"0" * 17 + b"%x" % size, ("chunk-long",))]))
        tags.update(spelling_tags)
        extension, extension_tags = draw(st.sampled_from(
            [(b"", ())] * 6 + [(b";a=b", ()), (b";name", ()), (b';a="q s"', ()),
                               (b"; a = b", ("chunk-ext-odd",)), (b";a=b;c", ()),
                               (b";" + b"e" * 2000, ("chunk-ext-long",)),
                               (b";a\x01", ("chunk-ext-odd",))]))
        tags.update(extension_tags)
        end, end_tags = draw(st.sampled_from([(CRLF, ())] * 10 + [(b"\n", ("chunk-bare-lf",))]))
        tags.update(end_tags)
        return spelling + extension + end

    for piece in pieces:
        out.append(size_line(len(piece)) + piece + CRLF)
    out.append(size_line(0))
    for trailer in draw(st.lists(st.sampled_from(_TRAILERS), max_size=3)):
        tags.update(trailer.tags)
        out.append(trailer.name + b": " + trailer.value + CRLF)
    out.append(CRLF)
    return b"".join(out), frozenset(tags)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    method, line, plain_line, tags = draw(request_lines())
    all_tags = set(tags)
    fields: List[Field] = []
    host_fields, host_tags = draw(st.sampled_from(_HOSTS))
    fields.extend(host_fields)
    all_tags.update(host_tags)
    body = draw(st.sampled_from(_BODIES))
    framing, framing_tags = draw(st.sampled_from(_FRAMINGS))
    all_tags.update(framing_tags)
    framing_fields, chunked = _framing_fields(framing, body)
    fields.extend(framing_fields)
    extras = draw(st.lists(st.sampled_from(_EXTRAS), max_size=4, unique_by=lambda f: f.name.lower()))
    fields.extend(extras)
    fields = list(draw(st.permutations(fields)))
    for field in fields:
        all_tags.update(field.tags)
    if fields and draw(st.integers(0, 3)) == 0:
        # Mutate one field: a byte inside its value, its separator, obs-fold.
        index = draw(st.integers(0, len(fields) - 1))
        field = fields[index]
        kind = draw(st.sampled_from(["byte", "byte", "space-before-colon", "tab-before-colon",
                                     "obs-fold", "no-colon", "bad-name", "empty-name"]))
        if kind == "byte":
            inserted, byte_tags = draw(st.sampled_from(_VALUE_BYTES))
            at = draw(st.integers(0, len(field.value)))
            inside = inserted != b"\t" or 0 < at < len(field.value)
            extra = {"host-invalid"} if field.name.lower() == b"host" and inside else set()
            field = Field(field.name, field.value[:at] + inserted + field.value[at:],
                          field.tags | frozenset(byte_tags) | extra)
        elif kind == "obs-fold":
            field = Field(field.name, field.value + b"\r\n folded", field.tags | {"obs-fold"})
        elif kind == "bad-name":
            field = Field(field.name + b"(x)", field.value, field.tags | {"bad-name"})
        elif kind == "empty-name":
            field = Field(b"", field.value, field.tags | {"bad-name"})
        else:
            field = Field(field.name, field.value, field.tags | {kind})
        all_tags.update(field.tags)
        fields[index] = field
    bare_lf = draw(st.integers(0, 9)) == 0
    if bare_lf:
        all_tags.add("bare-lf")
    eol = b"\n" if bare_lf else CRLF
    lines = [line + eol]
    for field in fields:
        separator = b": "
        if "space-before-colon" in field.tags:
            separator = b" : "
        elif "tab-before-colon" in field.tags:
            separator = b"\t: "
        elif "no-colon" in field.tags:
            separator = b" "
        lines.append(field.name + separator + field.value + eol)
    lines.append(eol)
    if chunked:
        encoded, body_tags = draw(chunked_bodies(body))
        all_tags.update(body_tags)
        lines.append(encoded)
    elif framing != "none":
        lines.append(body)
    raw = b"".join(lines)
    plain = None
    if plain_line != line:
        plain = plain_line + raw[len(line):]
    return Message(raw, frozenset(all_tags), plain)


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    """
    One to three pipelined messages, mostly one.
    """
    count = draw(st.sampled_from([1, 1, 1, 2, 2, 3]))
    return Stream(tuple(draw(messages()) for _ in range(count)))


def split(data: bytes, cuts: Sequence[int]) -> List[bytes]:
    """
    C{data} cut at C{cuts} (taken modulo its length plus one), in order.
    """
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:]) if b > a] or [data]
