"""
The INI configuration: read once, validated whole, turned into frozen records.

Every section and key mcpgated knows is declared in L{_SCHEMA}; anything else
in the file is an error, so a typo never silently falls back to a default.
Errors name the file, the section and the key.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import re
import socket
from urllib.parse import urlsplit, urlunsplit
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import attrs
from twisted.logger import InvalidLogLevelError, LogLevel

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class ConfigError(Exception):
    """
    A problem in the configuration file, located by file, section and key.
    """

    def __init__(
        self,
        message: str,
        path: Optional[str] = None,
        section: Optional[str] = None,
        key: Optional[str] = None,
    ) -> None:
        self.message = message
        self.path = path
        self.section = section
        self.key = key
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.path:
            where.append(f"{self.path}:")
        if self.section:
            where.append(f"[{self.section}]")
        if self.key:
            where.append(f"{self.key}:")
        return " ".join([*where, self.message])


# --- value parsers -----------------------------------------------------------

_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(value: str) -> int:
    """
    Parse C{"4MB"}, C{"512k"}, C{"1048576"} into bytes (binary multiples).
    """
    match = _SIZE.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a size (examples: 4096, 512KB, 10MB)")
    number, unit = match.groups()
    return int(number) * _SIZE_UNITS[(unit or "").lower()[:1]]


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str) -> float:
    """
    Parse C{"10s"}, C{"500ms"}, C{"5m"}, C{"2h"}, C{"30"} (seconds) into seconds.
    """
    match = _DURATION.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a duration (examples: 500ms, 10s, 5m, 1h)")
    number, unit = match.groups()
    return float(number) * _DURATION_UNITS[(unit or "").lower()]


_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}


def parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean (use on/off, yes/no, true/false)")


def parse_endpoints(value: str) -> Tuple[str, ...]:
    parts = tuple(value.split())
    for part in parts:
        kind = part.split(":", 1)[0]
        if kind not in {"tcp", "tcp6", "ssl", "unix", "systemd"}:
            raise ValueError(
                f"{part!r} is not a supported endpoint "
                "(tcp:PORT[:interface=ADDR], ssl:PORT:privateKey=..:certKey=.., unix:PATH)"
            )
        if kind != "systemd":
            # Building the endpoint binds nothing (no reactor is used) but
            # checks its arguments and, for ssl:, reads the key and
            # certificate, so mistakes show up here, located, and not as a
            # traceback at startup. systemd: needs the inherited sockets.
            from twisted.internet.endpoints import serverFromString

            try:
                serverFromString(None, part)
            # Any exception: each endpoint parser raises its own (ValueError,
            # KeyError, OSError, SSL errors ...), all of them the operator's.
            except Exception as e:
                raise ValueError(f"{part!r} is not a valid endpoint: {e}") from e
    return parts


def parse_level(value: str) -> LogLevel:
    try:
        level: LogLevel = LogLevel.levelWithName(value.strip().lower())
    except InvalidLogLevelError:
        raise ValueError(f"{value!r} is not a level (debug, info, warn, error, critical)") from None
    return level


def parse_networks(value: str) -> Tuple[IPNetwork, ...]:
    networks = []
    for part in value.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not an IP address or network") from None
    return tuple(networks)


def parse_words(value: str) -> Tuple[str, ...]:
    return tuple(word.lower() for word in value.replace(",", " ").split())


def parse_public_url(value: str) -> Optional[str]:
    from urllib.parse import urlsplit

    value = value.strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{value!r} is not an absolute http(s) URL")
    if parts.query or parts.fragment:
        raise ValueError(f"{value!r} must not have a query or fragment")
    return value.rstrip("/")


def parse_otlp_endpoint(value: str) -> Optional[str]:
    from urllib.parse import urlsplit

    value = value.strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL of an OTLP/HTTP collector")
    return value


def parse_ratio(value: str) -> float:
    try:
        ratio = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number from 0 to 1") from None
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"{value!r} is not a number from 0 to 1")
    return ratio


def _name(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def parse_redis_url(value: str) -> Optional[str]:
    """
    C{redis://[[user]:password@]host[:port][/db]} or
    C{unix:///path.sock[?db=N]}; empty: none.
    """
    from urllib.parse import urlsplit

    value = value.strip()
    if not value:
        return None
    usage = "redis://[[user]:password@]host[:port][/db] or unix:///path.sock[?db=N]"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError as e:
        raise ValueError(f"not a Redis URL ({usage}): {e}") from None
    if parts.scheme == "unix" and parts.path:
        return value
    if parts.scheme != "redis" or not parts.hostname or parts.query or parts.fragment \
            or not (parts.path.strip("/") or "0").isdigit():
        raise ValueError(f"not a Redis URL ({usage})")
    return value


def _positive(parser: Callable[[str], float]) -> Callable[[str], float]:
    def parse(value: str) -> float:
        result = parser(value)
        if result <= 0:
            raise ValueError(f"{value!r} must be greater than zero")
        return result

    return parse


def _non_negative_int(value: str) -> int:
    try:
        result = int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number") from None
    if result < 0:
        raise ValueError(f"{value!r} must not be negative")
    return result


def parse_workers(value: str) -> int:
    """
    C{[gateway] workers}: a whole number from 1, or C{auto} (the CPU count).
    """
    if value.strip().lower() == "auto":
        return max(1, os.cpu_count() or 1)
    try:
        result = int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number or auto") from None
    if not 1 <= result <= 256:
        raise ValueError(f"{value!r} must be from 1 to 256, or auto")
    return result


def parse_node(value: str) -> str:
    """
    C{[gateway] node}: the name this node gives its exchange records (up to
    100 characters, no spaces or control characters); empty: the host name.
    """
    name = value.strip() or socket.gethostname()
    if len(name) > 100 or not name.isprintable() or any(c.isspace() for c in name):
        raise ValueError(f"{name!r} must be at most 100 printable characters without spaces")
    return name


def redacted_url(url: str) -> str:
    """
    C{url} without its password (in the authority or a C{password=}
    parameter), for log lines and messages.
    """
    parts = urlsplit(url)
    query = "&".join("password=***" if pair.split("=", 1)[0] == "password" else pair
                     for pair in parts.query.split("&")) if parts.query else ""
    netloc = parts.netloc
    if parts.password is not None:
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def parse_postgres_url(value: str) -> Optional[str]:
    """
    A PostgreSQL connection URL (C{postgresql://user:password@host:port/db});
    empty: L{None}.
    """
    url = value.strip()
    if not url:
        return None
    if not url.startswith(("postgresql://", "postgres://")):
        raise ValueError("must be a postgresql:// URL (postgresql://user:password@host:port/database)")
    return url


def _text(value: str) -> str:
    return value.strip()


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        lowered = value.strip().lower()
        if lowered not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return lowered

    return parse


# --- the records --------------------------------------------------------------


@attrs.frozen
class GatewayConfig:
    listen: Tuple[str, ...]
    public_url: Optional[str]
    trusted_proxies: Tuple[IPNetwork, ...]
    allowed_hosts: Tuple[str, ...] = ()
    allowed_origins: Tuple[str, ...] = ()
    http: str = "fast"  # the listener's HTTP/1.1 server: "fast" (llhttp) or "twisted" (twisted.web)
    workers: int = 1  # gateway processes (mcpgated.workers); 1: this process serves
    node: str = ""  # names this node's exchange records; [gateway] node, else the host name
    # keys sealing load-balanced APIs' session ids (mcpgated.sealing); None:
    # session.key beside the database, generated when absent
    session_key_file: Optional[Path] = None


@attrs.frozen
class AdminConfig:
    listen: Tuple[str, ...]
    token: Optional[str] = attrs.field(repr=False)
    token_file: Optional[Path]


@attrs.frozen
class StorageConfig:
    path: Path
    # PostgreSQL instead of the SQLite file (mcpgated.store.PostgresApiStore);
    # path still places admin.token and the analytics file
    url: Optional[str] = attrs.field(default=None, repr=False)


@attrs.frozen
class LoggingConfig:
    dir: Optional[Path]
    level: LogLevel
    max_bytes: int
    keep: int
    access_log: bool


@attrs.frozen
class LimitsConfig:
    max_body: int
    connect_timeout: float
    header_timeout: float
    idle_timeout: float
    # The client side of the gateway listener (nginx's client_header_timeout,
    # client_body_timeout and keepalive_timeout).
    client_header_timeout: float = 60.0
    client_body_timeout: float = 60.0
    keepalive_timeout: float = 75.0


@attrs.frozen
class DaemonConfig:
    ports_file: Optional[Path]


@attrs.frozen
class AnalyticsConfig:
    enabled: bool
    path: Path
    retention: float
    max_rows: int
    exchange_log: bool
    url: Optional[str] = attrs.field(default=None, repr=False)  # PostgreSQL instead of path


@attrs.frozen
class RateLimitConfig:
    """
    Where rate-limit counters live: in this process (no C{redis}), or in
    Redis, shared by every process and node using it.
    """

    redis: Optional[str] = attrs.field(default=None, repr=False)  # its URL may hold a password
    redis_failure: str = "open"  # Redis cannot answer: "open" allows, "closed" refuses (503)
    redis_timeout: float = 0.25  # the longest a decision waits for Redis
    # "exact": each decision one script in Redis; "approximate": decided
    # locally, spending synced every sync_interval (mcpgated.policy.redisapprox)
    mode: str = "exact"
    sync_interval: float = 0.01


@attrs.frozen
class TracingConfig:
    """
    OpenTelemetry traces (L{mcpgated.analytics.tracing}): off without an
    endpoint.
    """

    otlp_endpoint: Optional[str] = None
    sample_ratio: float = 1.0
    service_name: str = "mcpgated"


@attrs.frozen
class Config:
    source: Optional[Path]
    gateway: GatewayConfig
    admin: AdminConfig
    storage: StorageConfig
    logging: LoggingConfig
    limits: LimitsConfig
    daemon: DaemonConfig
    analytics: AnalyticsConfig
    ratelimit: RateLimitConfig = RateLimitConfig()
    tracing: TracingConfig = TracingConfig()


# section -> key -> (default text, parser)
_Parser = Callable[[str], object]
_SCHEMA: Dict[str, Dict[str, Tuple[str, _Parser]]] = {
    "gateway": {
        "listen": ("tcp:8082", parse_endpoints),
        "public_url": ("", parse_public_url),
        "trusted_proxies": ("", parse_networks),
        "allowed_hosts": ("", parse_words),
        "allowed_origins": ("", parse_words),
        "http": ("fast", _choice("fast", "twisted")),
        "workers": ("1", parse_workers),
        "node": ("", parse_node),  # empty: the host name
        "session_key_file": ("", _text),
    },
    "admin": {
        "listen": ("tcp:8083:interface=127.0.0.1", parse_endpoints),
        "token": ("", _text),
        "token_file": ("", _text),
    },
    "storage": {
        "path": ("", _text),  # empty: see state_paths
        "url": ("", parse_postgres_url),  # empty: the SQLite file at path
    },
    "logging": {
        "dir": ("var/log", _text),
        "level": ("info", parse_level),
        "max_bytes": ("10MB", _positive(parse_size)),
        "keep": ("10", _non_negative_int),
        "access_log": ("on", parse_bool),
    },
    "limits": {
        "max_body": ("4MB", _positive(parse_size)),
        "connect_timeout": ("10s", _positive(parse_duration)),
        "header_timeout": ("60s", _positive(parse_duration)),
        "idle_timeout": ("300s", _positive(parse_duration)),
        "client_header_timeout": ("60s", _positive(parse_duration)),
        "client_body_timeout": ("60s", _positive(parse_duration)),
        "keepalive_timeout": ("75s", _positive(parse_duration)),
    },
    "daemon": {
        "ports_file": ("", _text),
    },
    "analytics": {
        "enabled": ("on", parse_bool),
        "path": ("", _text),  # empty: beside [storage] path
        "retention": ("7d", _positive(parse_duration)),
        "max_rows": ("1000000", _non_negative_int),
        "exchange_log": ("off", parse_bool),
        "url": ("", parse_postgres_url),  # empty: the SQLite file at path
    },
    "ratelimit": {
        "redis": ("", parse_redis_url),
        "redis_failure": ("open", _choice("open", "closed")),
        "redis_timeout": ("250ms", _positive(parse_duration)),
        "mode": ("exact", _choice("exact", "approximate")),
        "sync_interval": ("10ms", _positive(parse_duration)),
    },
    "tracing": {
        "otlp_endpoint": ("", parse_otlp_endpoint),  # empty: no traces
        "sample_ratio": ("1.0", parse_ratio),
        "service_name": ("mcpgated", _name),
    },
}


def _resolve(base: Path, value: str) -> Optional[Path]:
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


# the files the daemon writes when the INI names none (see _state_paths)
STORAGE_FILE = "mcpgated.db"
ANALYTICS_FILE = "analytics.db"
DEFAULT_STATE_DIR = "var"


def _state_paths(base: Path, storage: str, analytics: str,
                 environ: Mapping[str, str]) -> Tuple[Path, Path]:
    """
    The API store's and the analytics store's files. An empty [storage]
    path is mcpgated.db in systemd's C{$STATE_DIRECTORY} (the unit's
    StateDirectory=) when set, else in var/; an empty [analytics] path is
    analytics.db beside the API store, so one writable folder holds every
    file the daemon writes but its logs (and the generated admin token).
    """
    state = environ.get("STATE_DIRECTORY", "").split(":")[0]
    if storage:
        storage_path = _resolve(base, storage)
    elif state:
        storage_path = Path(state) / STORAGE_FILE
    else:
        storage_path = _resolve(base, f"{DEFAULT_STATE_DIR}/{STORAGE_FILE}")
    assert storage_path is not None
    analytics_path = _resolve(base, analytics) if analytics else None
    return storage_path, analytics_path or storage_path.parent / ANALYTICS_FILE


def parse_text(text: str, path: Optional[str] = None, base: Optional[Path] = None,
               environ: Optional[Mapping[str, str]] = None) -> Config:
    """
    Parse configuration text; relative paths are resolved against C{base}
    (default: the working directory).
    C{environ} (default: the process's) supplies C{STATE_DIRECTORY}.
    """
    parser = configparser.ConfigParser(
        interpolation=None,
        default_section="\x00no-default-section",
        inline_comment_prefixes=(";", "#"),
        strict=True,
    )
    try:
        parser.read_string(text, source=path or "<config>")
    except configparser.DuplicateSectionError as e:
        raise ConfigError("section appears twice", path, e.section) from e
    except configparser.DuplicateOptionError as e:
        raise ConfigError("key appears twice", path, e.section, e.option) from e
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(f"line {e.lineno}: text before the first [section]", path) from e
    except configparser.Error as e:
        raise ConfigError(f"cannot parse: {e.message.splitlines()[0]}", path) from e

    # Each value is what its key's parser in _SCHEMA returns: the types the
    # config records below declare.
    values: Dict[str, Dict[str, Any]] = {}
    for section in parser.sections():
        if section not in _SCHEMA:
            known = ", ".join(f"[{name}]" for name in _SCHEMA)
            raise ConfigError(f"unknown section (known: {known})", path, section)
    for section, keys in _SCHEMA.items():
        given = parser[section] if parser.has_section(section) else {}
        for key in given:
            if key not in keys:
                raise ConfigError(
                    f"unknown key (known: {', '.join(keys)})", path, section, key
                )
        values[section] = {}
        for key, (default, convert) in keys.items():
            raw = given.get(key, default) if given else default
            try:
                values[section][key] = convert(raw)
            except ValueError as e:
                raise ConfigError(str(e), path, section, key) from e

    base = base or Path.cwd()
    gateway, admin, storage = values["gateway"], values["admin"], values["storage"]
    logging, limits, daemon = values["logging"], values["limits"], values["daemon"]
    analytics = values["analytics"]
    storage_path, analytics_path = _state_paths(
        base, str(storage["path"]), str(analytics["path"]),
        os.environ if environ is None else environ)
    if not gateway["listen"]:
        raise ConfigError("at least one endpoint is required", path, "gateway", "listen")
    if not admin["listen"]:
        raise ConfigError("at least one endpoint is required", path, "admin", "listen")
    if admin["token"] and admin["token_file"]:
        raise ConfigError("set token or token_file, not both", path, "admin", "token_file")
    return Config(
        source=Path(path) if path else None,
        gateway=GatewayConfig(**dict(gateway, session_key_file=_resolve(
            base, str(gateway["session_key_file"])))),
        admin=AdminConfig(
            listen=admin["listen"],
            token=admin["token"] or None,
            token_file=_resolve(base, str(admin["token_file"])),
        ),
        storage=StorageConfig(path=storage_path, url=storage["url"]),
        logging=LoggingConfig(
            dir=_resolve(base, str(logging["dir"])),
            level=logging["level"],
            max_bytes=logging["max_bytes"],
            keep=logging["keep"],
            access_log=logging["access_log"],
        ),
        limits=LimitsConfig(**limits),
        daemon=DaemonConfig(ports_file=_resolve(base, str(daemon["ports_file"]))),
        analytics=AnalyticsConfig(
            enabled=analytics["enabled"],
            path=analytics_path,
            retention=analytics["retention"],
            max_rows=analytics["max_rows"],
            exchange_log=analytics["exchange_log"],
            url=analytics["url"],
        ),
        ratelimit=RateLimitConfig(**values["ratelimit"]),
        tracing=TracingConfig(**values["tracing"]),
    )


def load(path: str) -> Config:
    """
    Read and validate the INI file at C{path}. Relative paths in it are
    resolved against the working directory (the unit's C{WorkingDirectory=}
    under systemd; the checkout for C{make run}), not the file's folder.

    @raise ConfigError: if the file is missing, unreadable or invalid.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError("file not found", path) from None
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", path) from e
    except UnicodeDecodeError as e:
        raise ConfigError("not UTF-8 text", path) from e
    # Relative paths: against the working directory, like the paths inside
    # endpoint strings (ssl:...:privateKey=key.pem, unix:gw.sock), which
    # Twisted resolves there, and twistd's own --logfile and --pidfile.
    return parse_text(text, path)


def defaults() -> Dict[str, Dict[str, str]]:
    """
    Every section and key with its default, as text (for docs and tests).
    """
    return {s: {k: d for k, (d, _) in keys.items()} for s, keys in _SCHEMA.items()}
