"""
C{WWW-Authenticate}: parse the challenges and rewrite C{resource_metadata}.

RFC 9110 section 11.6.1::

    WWW-Authenticate = #challenge
    challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
    auth-param       = token BWS "=" BWS ( token / quoted-string )

One header value may hold several challenges (C{Bearer ..., DPoP ...}), and a
comma inside a quoted string (C{error_description="a, b"}) separates
nothing. werkzeug quotes and unquotes values for us (L{quote_header_value},
L{unquote_header_value}), but its L{WWWAuthenticate.from_header} reads one
challenge per value and writes a new header rather than editing the old
one; the gateway must split several challenges and change one parameter
while every other byte (scheme, C{scope}, C{error}, C{error_description},
C{realm}, their quoting) stays as the backend sent it. So the tokenizer
below records where each value sits and the rewrite splices only there.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple
from urllib.parse import quote, unquote

import attrs
from werkzeug.http import quote_header_value, unquote_header_value

RESOURCE_METADATA = "resource_metadata"
RESOURCE_METADATA_EXT = RESOURCE_METADATA + "*"  # RFC 8187: resource_metadata*=UTF-8''...
# RFC 8187 attr-char: what an ext-value leaves unescaped
_ATTR_CHAR = "!#$&+-.^_`|~"

_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TOKEN68 = frozenset("-._~+/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WS = " \t"
_BARE_STOP = frozenset(' \t,"\\')


class ChallengeSyntaxError(ValueError):
    """
    A C{WWW-Authenticate} value that does not follow RFC 9110.
    """


@attrs.frozen
class Param:
    """
    One C{name=value} of a challenge; C{span} is where the value (with its
    quotes, if any) sits in the header.
    """

    name: str
    value: str
    span: Tuple[int, int]


@attrs.frozen
class Challenge:
    scheme: str
    token68: Optional[str] = None
    params: Tuple[Param, ...] = ()

    def get(self, name: str) -> Optional[str]:
        """
        The first value of a parameter (names are case-insensitive).
        """
        lowered = name.lower()
        for param in self.params:
            if param.name.lower() == lowered:
                return param.value
        return None


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _WS:
            self.pos += 1

    def token(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TCHAR:
            self.pos += 1
        return self.text[start:self.pos]

    def bare(self) -> str:
        """
        An unquoted value: visible characters up to whitespace, a comma, a
        quote or a backslash.
        """
        start = self.pos
        text = self.text
        while self.pos < len(text):
            c = text[self.pos]
            if c in _BARE_STOP or ord(c) <= 0x20 or ord(c) == 0x7F:
                break
            self.pos += 1
        return text[start:self.pos]

    def quoted(self) -> str:
        """
        A quoted-string, quotes included; the reader is on the opening quote.
        """
        start = self.pos
        self.pos += 1
        text = self.text
        while self.pos < len(text):
            c = text[self.pos]
            if c == '"':
                self.pos += 1
                return text[start:self.pos]
            if c == "\\":
                if self.pos + 1 >= len(text):
                    break
                escaped = text[self.pos + 1]
                if escaped != "\t" and (ord(escaped) < 0x20 or ord(escaped) == 0x7F):
                    raise ChallengeSyntaxError(f"control character in a quoted string at {self.pos + 1}")
                self.pos += 2
                continue
            if c != "\t" and (ord(c) < 0x20 or ord(c) == 0x7F):
                raise ChallengeSyntaxError(f"control character in a quoted string at {self.pos}")
            self.pos += 1
        raise ChallengeSyntaxError(f"unterminated quoted string starting at {start}")

    def next_is_param(self) -> bool:
        """
        Whether C{token BWS "="} starts here (else a new challenge or token68).
        """
        save = self.pos
        try:
            if not self.token():
                return False
            self.skip_ws()
            return self.peek() == "="
        finally:
            self.pos = save

    def token68_here(self) -> Optional[str]:
        """
        A token68 ending the challenge (followed by the end or a comma).
        """
        save = self.pos
        text = self.text
        while self.pos < len(text) and text[self.pos] in _TOKEN68:
            self.pos += 1
        if self.pos == save:
            return None
        while self.pos < len(text) and text[self.pos] == "=":
            self.pos += 1
        end = self.pos
        self.skip_ws()
        if self.at_end() or self.peek() == ",":
            return text[save:end]
        self.pos = save
        return None


def _list_separators(reader: _Reader) -> bool:
    """
    Skip C{OWS , OWS} (empty list elements allowed); whether one was seen.
    """
    seen = False
    while True:
        reader.skip_ws()
        if reader.peek() == ",":
            reader.pos += 1
            seen = True
            continue
        return seen


def parse_challenges(value: str) -> List[Challenge]:
    """
    Every challenge of one C{WWW-Authenticate} value, in order.

    @raise ChallengeSyntaxError: for a value that does not follow RFC 9110
        (unterminated quotes, a parameter without a value, stray characters).
    """
    reader = _Reader(value)
    challenges: List[Challenge] = []
    _list_separators(reader)
    while not reader.at_end():
        scheme = reader.token()
        if not scheme:
            raise ChallengeSyntaxError(f"expected an auth-scheme at {reader.pos}")
        token68 = None
        params: List[Param] = []
        if reader.peek() and reader.peek() in _WS:
            reader.skip_ws()
            if not reader.at_end() and reader.peek() != ",":
                token68 = reader.token68_here()
                if token68 is None:
                    if not reader.next_is_param():
                        raise ChallengeSyntaxError(f"expected a token68 or auth-param at {reader.pos}")
                    _params(reader, params)
        elif not reader.at_end() and reader.peek() != ",":
            raise ChallengeSyntaxError(f"unexpected {reader.peek()!r} after the auth-scheme at {reader.pos}")
        challenges.append(Challenge(scheme=scheme, token68=token68, params=tuple(params)))
        if not _list_separators(reader) and not reader.at_end():
            raise ChallengeSyntaxError(f"expected ',' at {reader.pos}")
    return challenges


def _params(reader: _Reader, params: List[Param]) -> None:
    """
    C{#auth-param}, up to the next challenge or the end.
    """
    while True:
        name = reader.token()
        reader.skip_ws()
        if reader.peek() != "=":  # next_is_param() said so
            raise ChallengeSyntaxError(f"expected '=' at {reader.pos}")  # pragma: no cover
        reader.pos += 1
        reader.skip_ws()
        start = reader.pos
        if reader.peek() == '"':
            raw = reader.quoted()
            value = unquote_header_value(raw)
        else:
            # RFC 9110 allows a token here; backends also send URLs
            # unquoted (resource_metadata=https://...), so take anything up
            # to whitespace or a comma, as clients do.
            raw = reader.bare()
            if not raw:
                raise ChallengeSyntaxError(f"auth-param {name!r} has no value at {reader.pos}")
            value = raw
        params.append(Param(name=name, value=value, span=(start, reader.pos)))
        save = reader.pos
        if not _list_separators(reader):
            if not reader.at_end():
                raise ChallengeSyntaxError(f"expected ',' at {reader.pos}")
            return
        if reader.at_end():
            return
        if not reader.next_is_param():
            # A new challenge starts here; let the caller see the comma.
            reader.pos = save
            return


@attrs.frozen
class Rewritten:
    """
    The outcome of L{rewrite_resource_metadata} on one header value.

    @ivar value: the value to send.
    @ivar originals: the C{resource_metadata} values it replaced.
    @ivar malformed: the backend's value could not be parsed.
    """

    value: str
    originals: Tuple[str, ...] = ()
    malformed: bool = False


def rewrite_resource_metadata(value: str, url: str) -> Rewritten:
    """
    Point every C{resource_metadata} parameter of every challenge at C{url};
    leave every other byte alone.

    A value that cannot be parsed is kept as it is when it does not mention
    C{resource_metadata}. When it does, it is replaced by
    C{Bearer resource_metadata="url"}: passing it on would send clients to
    the backend's address, and a client finds the rest (scopes, the
    authorization server) in the metadata.
    """
    try:
        challenges = parse_challenges(value)
    except ChallengeSyntaxError:
        if RESOURCE_METADATA in value.lower():
            return Rewritten(f"Bearer {RESOURCE_METADATA}={_quote(url)}", malformed=True)
        return Rewritten(value, malformed=True)
    spans = []
    originals = []
    for challenge in challenges:
        for param in challenge.params:
            name = param.name.lower()
            if name == RESOURCE_METADATA:
                spans.append((param.span, _quote(url)))
                originals.append(param.value)
            elif name == RESOURCE_METADATA_EXT:
                # RFC 8187's extended form names the backend's address as
                # much as the plain one does: point it at the gateway too.
                spans.append((param.span, _ext_value(url)))
                original = _ext_decoded(param.value)
                if original is not None:
                    originals.append(original)
    if not spans:
        return Rewritten(value)
    parts = []
    last = 0
    for (start, end), replacement in spans:
        parts.append(value[last:start])
        parts.append(replacement)
        last = end
    parts.append(value[last:])
    return Rewritten("".join(parts), tuple(originals))


def rewrite_header_values(values: Sequence[bytes], url: str) -> Tuple[List[bytes], List[str], bool]:
    """
    L{rewrite_resource_metadata} over raw header values (latin-1, as HTTP
    carries them).

    @return: the new values, the replaced C{resource_metadata} values, and
        whether any value was malformed.
    """
    out = []
    originals: List[str] = []
    malformed = False
    for raw in values:
        result = rewrite_resource_metadata(raw.decode("latin-1"), url)
        out.append(result.value.encode("latin-1", "replace"))
        originals.extend(result.originals)
        malformed = malformed or result.malformed
    return out, originals, malformed


def _quote(url: str) -> str:
    return quote_header_value(url, allow_token=False)


def _ext_value(url: str) -> str:
    """
    C{url} as an RFC 8187 ext-value: C{UTF-8''} and the percent-encoded
    UTF-8 bytes.
    """
    return "UTF-8''" + quote(url, safe=_ATTR_CHAR, encoding="utf-8")


def _ext_decoded(value: str) -> Optional[str]:
    """
    The text of an RFC 8187 ext-value (C{charset'language'value-chars}),
    or L{None} when it is not one.
    """
    charset, sep, rest = value.partition("'")
    _, sep2, encoded = rest.partition("'")
    if not sep or not sep2 or charset.lower() not in ("utf-8", "iso-8859-1"):
        return None
    try:
        return unquote(encoded, encoding=charset.lower(), errors="strict")
    except (UnicodeDecodeError, LookupError):
        return None
