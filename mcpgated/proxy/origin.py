"""
DNS-rebinding protection at the edge (MCP transports: servers MUST check
Origin; the conformance suite checks Host on localhost too).

A request that reaches the gateway on a loopback address must name a
loopback host and, if it carries an Origin, a loopback origin, unless
configured otherwise. Requests on other addresses are checked only against
explicit allow-lists.

A refusal names the key that would allow it and is logged once per
refused value (L{RefusalLog}): an operator behind a reverse proxy learns
which Host to allow, and a flood of random Hosts neither grows memory nor
floods the log.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Dict, Optional, Set, Tuple
from urllib.parse import urlsplit
from weakref import finalize

import attrs
from twisted.logger import Logger

log = Logger()

# distinct refused Host and Origin values logged per gateway; later ones are not
REFUSALS_LOGGED = 256
_SHOWN = 200  # characters of a refused value the log line shows


@functools.lru_cache(maxsize=1024)
def is_loopback_address(address: Optional[str]) -> bool:
    if not address:
        return False
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def _hostname(authority: str) -> str:
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[1:].split("]", 1)[0]
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def is_loopback_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost") or is_loopback_address(host)


def host_allowed(host: Optional[str], on_loopback: bool, allowed: Tuple[str, ...],
                 public_url: Optional[str]) -> bool:
    if "*" in allowed:
        return True
    if host is None:
        return not on_loopback and not allowed
    authority = host.strip().lower()
    name = _hostname(authority)
    if public_url and urlsplit(public_url).hostname == name:
        return True
    if authority in allowed or name in allowed:
        return True
    if allowed:
        return on_loopback and is_loopback_name(name)
    return not on_loopback or is_loopback_name(name)


def origin_allowed(origin: Optional[str], on_loopback: bool, allowed: Tuple[str, ...],
                   public_url: Optional[str]) -> bool:
    if origin is None or "*" in allowed:
        return True
    value = origin.strip().lower().rstrip("/")
    if value in allowed:
        return True
    parts = urlsplit(value)
    if public_url:
        public = urlsplit(public_url)
        if (parts.scheme, parts.netloc) == (public.scheme, public.netloc.lower()):
            return True
    if allowed:
        return on_loopback and bool(parts.hostname) and is_loopback_name(parts.hostname or "")
    if not on_loopback:
        return True
    return value != "null" and bool(parts.hostname) and is_loopback_name(parts.hostname or "")


@attrs.define
class RefusalLog:
    """
    Logs each refused Host or Origin value once. At most C{limit} values are
    remembered; past them one line says further refusals go unlogged (the
    403s still say which key to set).
    """

    limit: int = REFUSALS_LOGGED
    _seen: Set[Tuple[str, str]] = attrs.field(factory=set)
    _full: bool = False

    def refused(self, header: str, value: Optional[str], key: str,
                peer: Optional[str]) -> bool:
        """
        Log the refusal of C{value} (None: the header is missing) unless
        that value was logged already.

        @param header: C{"Host"} or C{"Origin"}.
        @param key: the setting that would allow it (C{allowed_hosts}).
        @return: whether a line was logged.
        """
        shown = None if value is None else value.strip().lower()[:_SHOWN]
        seen = (header, "" if shown is None else shown)
        if seen in self._seen:
            return False
        if len(self._seen) >= self.limit:
            if not self._full:
                self._full = True
                log.warn("{limit} distinct Host and Origin values refused: further ones are "
                         "refused without a log line", limit=self.limit)
            return False
        self._seen.add(seen)
        log.warn("refused {header} {value} from {peer} (403): not allowed by [gateway] {key} "
                 "(logged once per value)", header=header,
                 value="(none)" if shown is None else repr(shown), peer=peer, key=key)
        return True


# by id(): the resource is an attrs class compared by value, so not hashable
_LOGS: Dict[int, RefusalLog] = {}


def refusal_log(gateway: object) -> RefusalLog:
    """
    The L{RefusalLog} of one gateway (its resource), made on first use and
    dropped with the gateway.
    """
    found = _LOGS.get(id(gateway))
    if found is None:
        found = _LOGS[id(gateway)] = RefusalLog()
        finalize(gateway, _LOGS.pop, id(gateway), None)
    return found
