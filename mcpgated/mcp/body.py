"""
Reading a JSON-RPC request body exactly one way, or refusing it.

A backend decodes a body by the charset the request declares (the MCP
TypeScript SDK's legacy SSE transport honours any charset iconv-lite knows,
UTF-7 and UTF-16 included), may inflate a C{Content-Encoding}, and
JavaScript's C{JSON.parse} refuses a BOM and C{NaN}. Had the gateway read
such a body otherwise (as UTF-8, as plain bytes), it would judge and log one
message while the backend runs another. So the gateway only takes bodies
that every backend reads as it does:

  - C{Content-Type: application/json}, with no charset or C{charset=utf-8}
    (any case, quoted or not), else 415; no C{Content-Encoding} other than
    C{identity}, else 415 (the answer says C{Accept-Encoding: identity}).
    A body with no C{Content-Type} at all declares no charset: it is read as
    UTF-8 JSON like any other (a backend reads it as UTF-8 or refuses it;
    one that sniffs UTF-16 or a BOM gets neither past the byte rules);
  - strict UTF-8 with no BOM and no NUL byte, and strict JSON: no C{NaN} or
    C{Infinity}, no key twice in one object (400);
  - request ids that L{mcpgated.mcp.ids} can key: a string or a safe
    integral number, never null; no id twice in one batch (400, -32600).

Lone surrogates written as JSON escapes (C{"\\ud800"}) are taken: Python and
JavaScript read the same string from them. Encoded in UTF-8 bytes they are
invalid UTF-8 (JavaScript would read U+FFFD): refused.

The body forwarded is the one read here, byte for byte.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional, Set, Tuple, Union

from mcpgated.mcp.jsonfast import object_reader
from mcpgated.mcp.ids import MAX_SAFE, IdKey, InvalidId, request_key
from mcpgated.mcp.messages import REQUEST, Message, classify

PARSE_ERROR = -32700
INVALID_REQUEST = -32600


class BodyError(Exception):
    """
    A body (or its headers) the gateway refuses, with the HTTP status, the
    JSON-RPC error code and message, and the id to answer with.
    """

    def __init__(self, status: int, code: int, message: str,
                 id: Union[str, int, None] = None, accept_encoding: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.id = id
        self.accept_encoding = accept_encoding


# --- headers ---------------------------------------------------------------------------

_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(rb"[ \t]*(" + _TOKEN + rb"/" + _TOKEN + rb")[ \t]*")
# RFC 9110 section 5.6.6: *( OWS ";" OWS [ name "=" ( token / quoted-string ) ] )
_PARAMETER = re.compile(rb";[ \t]*(?:(" + _TOKEN + rb")=(" + _TOKEN
                        + rb'|"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*")[ \t]*)?')
_UTF8 = frozenset({b"utf-8", b"utf8"})
_JSON = b"application/json"
_content_types: Dict[bytes, Optional[str]] = {_JSON: None}

NOT_JSON = "A JSON-RPC body must be sent with Content-Type: application/json"


def _content_type(value: bytes) -> Optional[str]:
    match = _MEDIA_TYPE.match(value)
    if match is None or match.group(1).lower() != _JSON:
        return NOT_JSON
    position = match.end()
    charsets = 0
    while position < len(value):
        parameter = _PARAMETER.match(value, position)
        if parameter is None or parameter.end() == position:
            return "The Content-Type header is malformed"
        position = parameter.end()
        name = parameter.group(1)
        if name is not None and name.lower() == b"charset":
            charsets += 1
            charset = parameter.group(2)
            if charset[:1] == b'"':
                charset = re.sub(rb"\\(.)", rb"\1", charset[1:-1])
            if charsets > 1 or charset.lower() not in _UTF8:
                return "A JSON-RPC body must be UTF-8: no charset other than utf-8"
    return None


def content_type_problem(values: Optional[List[bytes]]) -> Optional[str]:
    """
    Why the C{Content-Type} fields of a request with a body are refused
    (415), or L{None} (none at all is not refused: see the module).
    """
    if values is None:
        return None
    if len(values) != 1:
        return "The request has more than one Content-Type"
    value = values[0]
    found = _content_types.get(value, _content_types)
    if found is _content_types:
        found = _content_type(value)
        if len(_content_types) < 1024:
            _content_types[value] = found
    return found  # type: ignore[return-value]


def content_encoding_problem(values: Optional[List[bytes]]) -> Optional[str]:
    """
    Why the C{Content-Encoding} fields of a request with a body are refused
    (415), or L{None}: the gateway reads bodies as they are sent.
    """
    if values is None:
        return None
    for value in values:
        for coding in value.split(b","):
            coding = coding.strip(b" \t").lower()
            if coding and coding != b"identity":
                return "A JSON-RPC body must not be compressed (no Content-Encoding)"
    return None


def check_headers(content_type: Optional[List[bytes]],
                  content_encoding: Optional[List[bytes]]) -> None:
    """
    @raise BodyError: 415, for a body the gateway would not read as the
        backend does.
    """
    if content_encoding is not None:
        problem = content_encoding_problem(content_encoding)
        if problem is not None:
            raise BodyError(415, INVALID_REQUEST, problem, accept_encoding=True)
    if content_type is not None and (content_type[0] != _JSON or len(content_type) != 1):
        problem = content_type_problem(content_type)
        if problem is not None:
            raise BodyError(415, INVALID_REQUEST, problem)


# --- bytes and JSON --------------------------------------------------------------------

_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")

NOT_UTF8 = "Parse error: the body is not UTF-8"
BOM = "Parse error: the body starts with a byte order mark"


def check_bytes(body: bytes) -> None:
    """
    The byte rules alone, for a body nothing parses: UTF-8, no BOM, no NUL
    (which JSON never has outside a string, and UTF-16 or UTF-32 text has).

    @raise BodyError: 400.
    """
    if not body.isascii():
        if body[:3] == _BOMS[0] or body[:2] in _BOMS[1:]:
            raise BodyError(400, PARSE_ERROR, BOM)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise BodyError(400, PARSE_ERROR, NOT_UTF8) from None
    if b"\x00" in body:
        raise BodyError(400, PARSE_ERROR, "Parse error: the body has a NUL byte (UTF-16?)")


class _Duplicate(ValueError):
    pass


def _pairs(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise _Duplicate(key)
            seen.add(key)
    return value


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_constant)
_object = object_reader(_DECODER)
NOT_JSON_BODY = "Parse error: the body is not JSON"


def decode(body: bytes) -> Any:
    """
    The JSON value of a body, read strictly (UTF-8, no BOM, RFC 8259 JSON
    without NaN or Infinity, no key twice in one object).

    @raise BodyError: 400 (-32700, or -32600 for a repeated key).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError(400, PARSE_ERROR, NOT_UTF8) from None
    try:
        if text[:1] == "{":
            return _object(text)  # the usual body: one message
        if text[:1] == "\ufeff":
            raise BodyError(400, PARSE_ERROR, BOM)
        return _DECODER.decode(text)
    except _Duplicate as e:
        raise BodyError(400, INVALID_REQUEST,
                        f"Duplicate key {str(e)!r} in a JSON-RPC message") from None
    except (ValueError, RecursionError):
        raise BodyError(400, PARSE_ERROR, NOT_JSON_BODY) from None


class RequestBody:
    """
    A request body as the gateway read it: parsed once, right after routing,
    and kept on the exchange for every stage that judges or records it.

    @ivar value: the decoded JSON.
    @ivar batch: whether it is a (2025-03-26) batch array.
    @ivar messages: its L{Message}s: the array's elements, or the value alone.
    @ivar keys: the id keys of its requests, in order.
    """

    __slots__ = ("value", "batch", "messages", "keys")

    def __init__(self, value: Any, batch: bool, messages: List[Message], keys: List[IdKey]) -> None:
        self.value = value
        self.batch = batch
        self.messages = messages
        self.keys = keys

    @property
    def single(self) -> Optional[Message]:
        """
        The message of a body that is not a batch.
        """
        return None if self.batch else self.messages[0]


def _request(value: Dict[str, Any], method: str) -> Message:
    """
    A request (a message with a method and an id), its id keyed strictly.

    @raise BodyError: 400, -32600, for a null id or one that cannot be keyed.
    """
    ident = value["id"]
    kind = type(ident)
    if kind is str:
        key: IdKey = ("s", ident)
    elif kind is int and -MAX_SAFE <= ident <= MAX_SAFE:
        key = ("n", ident)
    else:
        try:
            key = request_key(ident)
        except InvalidId as e:
            raise BodyError(400, INVALID_REQUEST, f"Invalid Request: {e}") from None
    return Message(REQUEST, value, ident, key, method, value.get("params"))


def validate(value: Any) -> RequestBody:
    """
    The messages of a decoded body, with the ids of its requests checked.

    @raise BodyError: 400, -32600, for a request whose id is null or cannot
        be keyed, or two requests of a batch with one id.
    """
    if type(value) is dict:  # the usual body: one message
        method = value.get("method")
        if type(method) is str and "id" in value:
            message = _request(value, method)
            assert message.id_key is not None
            return RequestBody(value, False, [message], [message.id_key])
        return RequestBody(value, False, [classify(value)], [])
    if type(value) is not list:
        return RequestBody(value, False, [classify(value)], [])
    messages: List[Message] = []
    keys: List[IdKey] = []
    seen: Set[IdKey] = set()
    for element in value:
        if type(element) is dict and type(element.get("method")) is str and "id" in element:
            message = _request(element, element["method"])
            key = message.id_key
            assert key is not None
            if key in seen:
                raise BodyError(400, INVALID_REQUEST,
                                "Invalid Request: two requests in one batch share an id")
            seen.add(key)
            keys.append(key)
        else:
            message = classify(element)
        messages.append(message)
    return RequestBody(value, True, messages, keys)


def parse(body: bytes) -> RequestBody:
    """
    L{decode} and L{validate}: the body as the gateway reads it, judges it,
    logs it and forwards it.

    @raise BodyError: 400 (answered with a null id: the body is not read).
    """
    return validate(decode(body))
