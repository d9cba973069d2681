"""
The HTTP/1.1 edge rules both gateway listener servers keep, the fast
channel (L{mcpgated.proxy.http11}) and twisted.web's server
(L{mcpgated.proxy.twisted_server}): the head cap, the C{Host} rule,
refusals with JSON-RPC bodies, and the client timeouts.

Timeouts follow nginx: one absolute deadline for a request's head, counted
from its first byte (from the connection for the first request); for a body,
the longest pause between two reads; for a keep-alive connection, the
longest time with no request. A request being answered has none: the
resource's own watchdog closes streams that stall.
"""

from __future__ import annotations

import re
from typing import Callable, Dict, List, Optional

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from mcpgated.config import LimitsConfig
from mcpgated.jsonrpc import INVALID_REQUEST, error_body

# Request line target, header names and values, and trailers together.
MAX_HEAD_BYTES = 65536
MAX_HEADERS = 256

HEAD_TOO_LARGE = "Request header fields are larger than 64 KB"
TRAILERS_TOO_LARGE = "Request header and trailer fields are larger than 64 KB"


@attrs.frozen
class ClientTimeouts:
    """
    The client side's timeouts, in seconds (C{[limits]} client_header_timeout,
    client_body_timeout, keepalive_timeout).
    """

    header: float = 60.0
    body: float = 60.0
    keepalive: float = 75.0

    @classmethod
    def from_limits(cls, limits: LimitsConfig) -> "ClientTimeouts":
        return cls(limits.client_header_timeout, limits.client_body_timeout,
                   limits.keepalive_timeout)


# --- Host ---------------------------------------------------------------------------

# RFC 3986 host (reg-name or IP-literal) and optional port; as nginx's
# ngx_http_validate_host, plus "," refused (a list is never one host).
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+;=%]+)(?::([0-9]{0,5}))?\Z")
# Host values seen, and whether each is valid (the fast channel looks here first).
VALID_HOSTS: Dict[bytes, bool] = {}


def _host_valid(value: bytes) -> bool:
    known = VALID_HOSTS.get(value)
    if known is not None:
        return known
    match = _HOST.match(value)
    valid = (match is not None and b".." not in value
             and not (match.group(1) and int(match.group(1)) > 65535))
    if len(VALID_HOSTS) < 4096:
        VALID_HOSTS[value] = valid
    return valid


def host_problem(values: Optional[List[bytes]], version: bytes) -> Optional[str]:
    """
    Why a request's C{Host} fields are refused (RFC 9112 section 3.2: an
    HTTP/1.1 request has exactly one, valid), or L{None}. HTTP/1.0 may have
    none.
    """
    if not values:
        if version == b"HTTP/1.0":
            return None
        return "The request has no Host header"
    if len(values) > 1:
        return "The request has more than one Host header"
    if not _host_valid(values[0]):
        return "The request's Host header is not a valid host"
    return None


# --- refusals -----------------------------------------------------------------------

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 413: b"Payload Too Large",
            431: b"Request Header Fields Too Large"}


def refusal(status: int, message: str) -> bytes:
    """
    A whole response refusing a request the server could not take, with a
    JSON-RPC error body, announcing that the connection closes.
    """
    return refusal_with_body(status, error_body(INVALID_REQUEST, message, None,
                                                {"httpStatus": status}))


def refusal_with_body(status: int, body: bytes) -> bytes:
    return (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (status, _REASONS.get(status, b"Error"), len(body),
                                               body))


def head_timeout_message(timeouts: ClientTimeouts) -> str:
    return f"The request head was not received within {timeouts.header:g} s"


def body_timeout_message(timeouts: ClientTimeouts) -> str:
    return f"The request body stalled for {timeouts.body:g} s"


# --- timeouts -----------------------------------------------------------------------

IDLE = 0  # between requests on a keep-alive connection
HEAD = 1  # reading a request head (or waiting for the first one)
BODY = 2  # reading a request body
BUSY = 3  # a request is being answered: no client timeout


def _nothing(phase: int) -> None:
    pass


class ClientDeadlines:
    """
    The client timeouts of one connection, with one timer.

    The channel sets C{phase} and C{since} (when the phase's clock started:
    the connection or the head's first byte, the last body read, the end of
    the last answer); the timer never needs moving: it fires at the
    earliest deadline any phase can have from the time it was armed (every
    deadline is at least C{step} away from its start), and re-arms itself for
    what is left. C{expired(phase)} is called once a deadline has passed.
    """

    __slots__ = ("clock", "timeouts", "expired", "phase", "since", "timer", "step")

    def __init__(self, clock: IReactorTime, timeouts: ClientTimeouts,
                 expired: Callable[[int], None]) -> None:
        self.clock = clock
        self.timeouts = timeouts
        self.expired = expired
        self.phase = HEAD
        self.since = 0.0
        self.timer: Optional[IDelayedCall] = None
        self.step = min(timeouts.header, timeouts.body, timeouts.keepalive)

    def start(self) -> None:
        self.phase = HEAD
        self.since = self.clock.seconds()
        self.timer = self.clock.callLater(self.step, self._fire)

    def set(self, phase: int, now: float) -> None:
        self.phase = phase
        self.since = now

    def stop(self) -> None:
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()
        self.expired = _nothing  # the channel's method: no cycle left for the collector

    def _fire(self) -> None:
        self.timer = None
        phase = self.phase
        if phase == BUSY:
            delay = self.step
        else:
            timeouts = self.timeouts
            limit = (timeouts.keepalive if phase == IDLE
                     else timeouts.header if phase == HEAD else timeouts.body)
            delay = self.since + limit - self.clock.seconds()
            if delay <= 0.001:  # (a clock's float sums may land a hair early)
                self.expired(phase)
                return
            delay = min(delay, self.step)
        self.timer = self.clock.callLater(delay, self._fire)
