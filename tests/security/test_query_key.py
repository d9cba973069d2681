"""
Issue #12, item 6: the API key query parameter is removed from the query the
backend gets, and every other byte of the query stays as the client sent it
(no re-encoding of C{%20} or C{+}, no C{=} added to a bare name, empty
pairs kept). A parameter whose percent-decoded name is the key parameter is
the key, however it is spelled.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, List

import pytest

from mcpgated.policy.auth import strip_query
from tests.support import Daemon, deploy, http, subscribe_key

PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}

# query as sent (<key>: the valid key) -> query the backend must get (None: no "?")
CASES: List[Any] = [
    ("api-key=<key>&foo=a%20b+c", "foo=a%20b+c"),
    ("foo=a%20b+c&api-key=<key>", "foo=a%20b+c"),
    ("flag&api-key=<key>", "flag"),
    ("api-key=<key>&flag&empty=", "flag&empty="),
    ("api-key=<key>", None),
    ("a=1&&api-key=<key>&&b=2", "a=1&&&b=2"),
    ("api-key=<key>&api-key=other&x=%2B%26", "x=%2B%26"),
    ("api%2Dkey=<key>&x=1", "x=1"),
    ("api%2dkey=<key>&x=%7e", "x=%7e"),
    ("%61pi-key=<key>&x=y", "x=y"),
    ("xapi-key=1&api-key=<key>&api-keys=2", "xapi-key=1&api-keys=2"),
    ("API-KEY=upper&api-key=<key>", "API-KEY=upper"),  # names are case-sensitive, as parsed
    ("q=%2F;api-key=nope&api-key=<key>", "q=%2F;api-key=nope"),  # only & separates
    ("api-key=<key>&sessionId=abc&x=a=b", "sessionId=abc&x=a=b"),
    # escapes of non-ASCII bytes (UTF-8 or not) next to the key: never a 502
    ("x=%C3%A9&api-key=<key>", "x=%C3%A9"),
    ("api-key=<key>&%E9t%E9=%FF%FE", "%E9t%E9=%FF%FE"),
]


@pytest.mark.parametrize("sent,forwarded", CASES)
def test_strip_query_keeps_every_other_byte(sent: str, forwarded: Any) -> None:
    assert strip_query(sent.replace("<key>", "K").encode(), ["api-key"]) == (forwarded or "").encode()


def test_strip_query_leaves_queries_without_the_key_untouched() -> None:
    for query in (b"a=1&b=%20+", b"flag", b"&&", b"x=api-key", b"a%20b=c"):
        assert strip_query(query, ["api-key"]) is query
    assert strip_query(b"token=1&api-key=2", ["token", "api-key"]) == b""


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, peer) -> Iterator[Dict[str, Any]]:
    daemon = Daemon(tmp_path_factory.mktemp("query-key")).start()
    try:
        api = deploy(daemon, "/keyed", peer.url + "/mcp", [{"name": "Keys", "security": "API_KEY"}],
                     name="Keyed")
        _, issued = subscribe_key(daemon, api["id"], "Keys", "app")
        yield {"daemon": daemon, "key": issued["key"]}
    finally:
        daemon.stop()


@pytest.mark.parametrize("sent,forwarded", CASES)
def test_backend_gets_the_query_as_sent_without_the_key(keyed, peer, sent, forwarded) -> None:
    daemon, key = keyed["daemon"], keyed["key"]
    query = sent.replace("<key>", key)
    status, _, body = http("POST", f"{daemon.gateway}/keyed?{query}",
                           raw=json.dumps(PING).encode(), headers=ACCEPT)
    assert status == 200, body  # the key, however spelled, was read and accepted
    target = peer.last_target()
    assert target == "/mcp" + (f"?{forwarded}" if forwarded is not None else "")
    assert key not in target


def test_a_key_only_in_the_query_never_reaches_the_backend_whatever_the_spelling(keyed, peer):
    daemon, key = keyed["daemon"], keyed["key"]
    for name in ("api-key", "api%2Dkey", "api%2dkey", "%61%70%69%2D%6B%65%79"):
        status, _, body = http("POST", f"{daemon.gateway}/keyed?{name}={key}&keep=1",
                               raw=json.dumps(PING).encode(), headers=ACCEPT)
        assert status == 200, (name, body)
        assert peer.last_target() == "/mcp?keep=1"
    # a wrong key is refused before the backend
    count = len(peer.targets)
    status, _, _ = http("POST", f"{daemon.gateway}/keyed?api-key=wrong&keep=1",
                        raw=json.dumps(PING).encode(), headers=ACCEPT)
    assert status == 401 and len(peer.targets) == count
