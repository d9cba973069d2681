"""
DNS-rebinding protection at the edge (MCP transports: servers MUST check
Origin; the conformance suite checks Host on localhost too).

A request that reaches the gateway on a loopback address must name a
loopback host and, if it carries an Origin, a loopback origin, unless
configured otherwise. Requests on other addresses are checked only against
explicit allow-lists.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Optional, Tuple
from urllib.parse import urlsplit


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
