"""
API definitions: the values the admin API accepts, stores and deploys.

L{parse_definition} turns untrusted JSON into an L{ApiDefinition} or raises
L{InvalidField} naming the offending field; L{ApiRecord.to_json} is the shape
the admin API answers with.
"""

from __future__ import annotations

import math
import re
from typing import Any, Dict, Mapping, Optional, Tuple
from urllib.parse import quote, unquote, urlsplit

import attrs
import idna

from mcpgated.policy.acl import AccessPolicy, PolicyError, parse_policy
from mcpgated.policy.pinning import PinningError, PinSettings, parse_settings
from mcpgated.policy.plans import SECRET_MASK, parse_backend_auth, parse_configuration, shown
from mcpgated.policy.ratelimit import LimitError, RateLimit, parse_limit

STOPPED = "STOPPED"
STARTED = "STARTED"

SECURITY_TYPES = ("KEY_LESS", "API_KEY", "JWT", "OAUTH2")
# Plans the gateway can enforce in this version; the others are refused
# rather than deployed unenforced.
SUPPORTED_SECURITY = ("KEY_LESS", "API_KEY", "JWT", "OAUTH2")
PLAN_STATUSES = ("STAGING", "PUBLISHED", "CLOSED")

_READ_ONLY = {
    "id",
    "state",
    "createdAt",
    "updatedAt",
    "deployedAt",
    "deploymentState",
    "needsRedeploy",
    "deployed",
    "effectiveAudience",
}
_FIELDS = {"name", "version", "description", "contextPath", "backend", "plans", "analytics"}
_FIELDS |= {"publicUrl", "oauth"}  # secured backends (mcpgated.oauth)
_FIELDS |= {"backendCaFile", "acl", "backendAuth", "backendKeepAlive"}
_FIELDS |= {"pinning"}  # tool-definition pinning (mcpgated.policy.pinning)
_OAUTH_FIELDS = {"relay": "relay", "proxyAuthorizationServerDiscovery": "proxy_authorization_server_discovery"}
CAPTURE_MODES = ("off", "headers", "bodies")
_PLAN_FIELDS = {"name", "security", "status", "description", "configuration", "rateLimit", "acl"}
_SEGMENT = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@%-]+$")
# Seconds an idle pooled backend connection is kept: below the keep-alive
# timeout of common servers (uvicorn, Apache, Node <= 25: 5 s); gunicorn's is
# 2 s, set backendKeepAlive.idleTimeoutSeconds to 1 for it.
DEFAULT_IDLE_TIMEOUT = 4.0
MAX_IDLE_TIMEOUT = 600.0
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


class InvalidField(ValueError):
    """
    A field of an admin API request is missing or invalid.
    """

    def __init__(self, field: Optional[str], message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@attrs.frozen
class Plan:
    name: str
    security: str = "KEY_LESS"
    status: str = "PUBLISHED"
    description: str = ""
    # security settings (mcpgated.policy.plans), a rate limit and plan rules
    configuration: Mapping[str, Any] = attrs.field(factory=dict, hash=False)
    rate_limit: Optional[RateLimit] = None
    acl: Optional[AccessPolicy] = None

    def to_json(self, secrets: bool = True) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "name": self.name,
            "security": self.security,
            "status": self.status,
            "description": self.description,
        }
        if self.configuration:
            out["configuration"] = dict(self.configuration) if secrets else shown(self.configuration)
        if self.rate_limit is not None:
            out["rateLimit"] = self.rate_limit.to_json()
        if self.acl is not None:
            out["acl"] = self.acl.to_json()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Plan":
        return cls(
            name=data["name"], security=data.get("security", "KEY_LESS"),
            status=data.get("status", "PUBLISHED"), description=data.get("description", ""),
            configuration=data.get("configuration") or {},
            rate_limit=parse_limit(data.get("rateLimit"), "rateLimit"),
            acl=parse_policy(data["acl"]) if data.get("acl") is not None else None,
        )


@attrs.frozen
class AnalyticsSettings:
    """
    What the exchange log keeps for an API beyond metadata.

    @ivar capture: C{off} (metadata only), C{headers} or C{bodies}
        (headers and JSON-RPC messages), secrets redacted.
    @ivar max_payload_bytes: each captured payload is cut (and marked
        truncated) at this size.
    @ivar redact_fields: JSON keys whose values are replaced in captured
        messages, besides the built-in token and password keys.
    @ivar logging: keep exchange log records (the C{/logs} entries and the
        C{/analytics} dashboard data) for this API. Off, the gateway still
        inspects its traffic for the Prometheus metrics and access control,
        and writes the access log.
    """

    capture: str = "off"
    max_payload_bytes: int = 16384
    redact_fields: Tuple[str, ...] = ()
    logging: bool = True

    def to_json(self) -> Dict[str, Any]:
        return {"logging": self.logging, "capture": self.capture,
                "maxPayloadBytes": self.max_payload_bytes,
                "redactFields": list(self.redact_fields)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "AnalyticsSettings":
        return cls(capture=data.get("capture", "off"),
                   max_payload_bytes=data.get("maxPayloadBytes", 16384),
                   redact_fields=tuple(data.get("redactFields", ())),
                   logging=data.get("logging", True))


@attrs.frozen
class OAuthSettings:
    """
    How the gateway treats a backend that runs its own OAuth (see
    L{mcpgated.oauth}).

    @ivar relay: the backend is an OAuth-protected resource and the
        gateway's public URL for this API is its resource identifier: the
        gateway points 401/403 challenges at its own protected-resource
        metadata, serves that metadata (rewritten for its URL), and forwards
        C{Authorization} and C{DPoP} untouched. The backend must accept
        tokens whose audience is the gateway's URL for this API.
    @ivar proxy_authorization_server_discovery: also answer
        C{/.well-known/oauth-authorization-server} at the host root (2025-03-26
        clients) with the backend's authorization server's metadata.
    """

    relay: bool = False
    proxy_authorization_server_discovery: bool = False

    def to_json(self) -> Dict[str, Any]:
        return {
            "relay": self.relay,
            "proxyAuthorizationServerDiscovery": self.proxy_authorization_server_discovery,
        }

    @classmethod
    def from_json(cls, data: Optional[Mapping[str, Any]]) -> "OAuthSettings":
        data = data or {}
        return cls(**{attr: bool(data.get(key, False)) for key, attr in _OAUTH_FIELDS.items()})


@attrs.frozen
class KeepAliveSettings:
    """
    The gateway's keep-alive pool toward the backend.

    @ivar idle_timeout: seconds an idle connection is kept for the next
        request (0: a new connection per request); a response's
        C{Keep-Alive: timeout=N} shortens it to N - 2 s. Keep it below the
        backend's own keep-alive timeout.
    """

    idle_timeout: float = DEFAULT_IDLE_TIMEOUT

    def to_json(self) -> Dict[str, Any]:
        timeout = self.idle_timeout
        return {"idleTimeoutSeconds": int(timeout) if timeout == int(timeout) else timeout}

    @classmethod
    def from_json(cls, data: Optional[Mapping[str, Any]]) -> "KeepAliveSettings":
        return cls(float((data or {}).get("idleTimeoutSeconds", DEFAULT_IDLE_TIMEOUT)))


@attrs.frozen
class ApiDefinition:
    name: str
    version: str
    description: str
    context_path: str
    backend: str
    plans: Tuple[Plan, ...]
    analytics: AnalyticsSettings = AnalyticsSettings()
    public_url: Optional[str] = None
    oauth: OAuthSettings = OAuthSettings()
    # PEM file of the CA(s) trusted for an https backend instead of the
    # system trust store (certificates are always verified).
    backend_ca_file: Optional[str] = None
    # MCP access control for every plan (plans may add rules), and the
    # credential the gateway sends to the backend (JWT/OAUTH2/API_KEY plans).
    acl: AccessPolicy = AccessPolicy()
    backend_auth: Optional[Mapping[str, Any]] = attrs.field(default=None, hash=False)
    backend_keep_alive: KeepAliveSettings = KeepAliveSettings()
    pinning: PinSettings = PinSettings()

    def to_json(self, secrets: bool = True) -> Dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "contextPath": self.context_path,
            "backend": self.backend,
            "plans": [plan.to_json(secrets) for plan in self.plans],
            "analytics": self.analytics.to_json(),
            "publicUrl": self.public_url,
            "oauth": self.oauth.to_json(),
            "backendCaFile": self.backend_ca_file,
            "acl": self.acl.to_json(),
            "backendAuth": _backend_auth_json(self.backend_auth, secrets),
            "backendKeepAlive": self.backend_keep_alive.to_json(),
            "pinning": self.pinning.to_json(),
        }


def _backend_auth_json(auth: Optional[Mapping[str, Any]], secrets: bool) -> Optional[Dict[str, Any]]:
    if auth is None:
        return None
    if secrets or "value" not in auth:
        return dict(auth)
    return dict(auth, value=SECRET_MASK)


@attrs.frozen
class ApiRecord:
    """
    An API as stored: the edited definition, the deployed one, and its state.
    """

    id: str
    definition: ApiDefinition
    deployed: Optional[ApiDefinition]
    state: str
    created_at: float
    updated_at: float
    deployed_at: Optional[float]

    @property
    def needs_redeploy(self) -> bool:
        return self.deployed is not None and self.deployed != self.definition

    @property
    def live(self) -> Optional[ApiDefinition]:
        """
        The definition the gateway serves, or L{None} when it serves nothing.
        """
        return self.deployed if self.state == STARTED else None

    def to_json(self) -> Dict[str, Any]:
        if self.deployed is None:
            deployment = "NEVER_DEPLOYED"
        elif self.needs_redeploy:
            deployment = "NEED_REDEPLOY"
        else:
            deployment = "DEPLOYED"
        body = {"id": self.id}
        body.update(self.definition.to_json(secrets=False))
        body.update(
            {
                "state": self.state,
                "deploymentState": deployment,
                "needsRedeploy": self.needs_redeploy,
                "createdAt": _iso(self.created_at),
                "updatedAt": _iso(self.updated_at),
                "deployedAt": _iso(self.deployed_at),
                "deployed": self.deployed.to_json(secrets=False) if self.deployed else None,
            }
        )
        return body


def _iso(when: Optional[float]) -> Optional[str]:
    if when is None:
        return None
    import datetime

    moment = datetime.datetime.fromtimestamp(when, datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _string(body: Mapping[str, Any], field: str, *, required: bool = True,
            max_length: int = 200, default: str = "") -> str:
    if field not in body or body[field] is None:
        if required:
            raise InvalidField(field, f"{field} is required")
        return default
    value = body[field]
    if not isinstance(value, str):
        raise InvalidField(field, f"{field} must be a string")
    value = value.strip()
    if required and not value:
        raise InvalidField(field, f"{field} must not be empty")
    if len(value) > max_length:
        raise InvalidField(field, f"{field} is longer than {max_length} characters")
    if any(ord(c) < 0x20 for c in value if c not in "\n\t"):
        raise InvalidField(field, f"{field} contains control characters")
    return value


def normalize_context_path(value: str) -> str:
    """
    Validate an entrypoint context path and return its canonical form
    (no trailing slash).

    @raise InvalidField: naming C{contextPath}.
    """
    field = "contextPath"
    if not value.startswith("/"):
        raise InvalidField(field, "contextPath must be an absolute path starting with '/'")
    if "?" in value or "#" in value:
        raise InvalidField(field, "contextPath must not contain a query or fragment")
    if "//" in value:
        raise InvalidField(field, "contextPath must not contain empty segments ('//')")
    segments = [s for s in value.split("/") if s]
    if not segments:
        raise InvalidField(field, "contextPath must have at least one segment, e.g. /mcp-proxy")
    for segment in segments:
        if unquote(segment) in (".", ".."):
            raise InvalidField(field, "contextPath must not contain '.' or '..' segments")
        if not _SEGMENT.match(segment):
            raise InvalidField(
                field, f"contextPath segment {segment!r} has characters not allowed in a URL path"
            )
    if segments[0] == ".well-known":
        raise InvalidField(field, "contextPath must not start with /.well-known (reserved)")
    if len(value) > 200:
        raise InvalidField(field, "contextPath is longer than 200 characters")
    return "/" + "/".join(segments)


def paths_overlap(a: str, b: str) -> bool:
    """
    Whether two canonical context paths are equal or one is a whole-segment
    prefix of the other (C{/mcp} and C{/mcp/x} overlap; C{/mcp} and
    C{/mcp-proxy} do not).
    """
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _backend(value: str) -> str:
    field = "backend"
    try:
        parts = urlsplit(value)
        parts.port  # raises ValueError on a bad port
    except ValueError as e:
        raise InvalidField(field, f"backend is not a valid URL: {e}")
    if parts.scheme not in ("http", "https"):
        raise InvalidField(field, "backend must be an http:// or https:// URL")
    if not parts.hostname:
        raise InvalidField(field, "backend must name a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidField(field, "backend must not embed credentials in the URL")
    if parts.fragment:
        raise InvalidField(field, "backend must not have a fragment")
    if any(c.isspace() for c in value):
        raise InvalidField(field, "backend must not contain whitespace")
    if ".." in parts.path.split("/"):
        raise InvalidField(field, "backend path must not contain '..' segments")
    netloc = parts.netloc
    if not value.isascii() or "%" in netloc or "xn--" in netloc.lower():
        value = _ascii_backend(value, parts)
    return value


def _ascii_backend(value: str, parts: Any) -> str:
    """
    The backend URL as sent on the wire: an internationalised host in its
    IDNA (ASCII, C{xn--}) form, as browsers map it (UTS 46, then IDNA 2008
    per label), and a non-ASCII path or query percent-encoded as UTF-8.

    @raise InvalidField: naming C{backend}, for a host that is not a valid
        internationalised domain name.
    """
    netloc = host = parts.netloc
    port = ""
    if netloc.startswith("["):
        if not netloc.isascii():
            raise InvalidField("backend", "backend IPv6 address must be ASCII")
    else:
        head, colon, tail = netloc.rpartition(":")
        if colon:
            host, port = head, colon + tail
        if "%" in host:
            raise InvalidField("backend", "backend host must not be percent-encoded; write the "
                                          "name itself (e.g. bücher.example) or its xn-- form")
        try:
            host = idna_host(host)
        except (idna.IDNAError, UnicodeError) as e:
            raise InvalidField("backend", f"backend host {host!r} is not a valid "
                                          f"internationalised domain name: {e}")
    try:
        path = _NON_ASCII.sub(lambda m: quote(m.group(), safe=""), parts.path)
        query = _NON_ASCII.sub(lambda m: quote(m.group(), safe=""), parts.query)
    except UnicodeError:
        raise InvalidField("backend", "backend is not valid Unicode")
    return f"{parts.scheme}://{host}{port}{path}" + (f"?{query}" if query else "")


def idna_host(host: str) -> str:
    """
    A host name in ASCII: labels that are not ASCII are mapped (UTS 46:
    case, width, full stops such as U+3002) and encoded (IDNA 2008);
    C{xn--} labels must decode. ASCII labels are otherwise kept as they are
    (underscores included, as in container host names).

    @raise idna.IDNAError: for a label that is not valid IDNA.
    """
    if host.startswith("["):
        return host
    if not host.isascii():
        host = idna.uts46_remap(host, std3_rules=False, transitional=False)
    labels = host.split(".")
    out = []
    for index, label in enumerate(labels):
        if not label:
            if index and index == len(labels) - 1:
                out.append("")  # a trailing dot: the root
                continue
            raise idna.IDNAError("Empty label")
        if not label.isascii():
            label = idna.alabel(label).decode("ascii")
        elif label[:4].lower() == "xn--":
            idna.ulabel(label)
        out.append(label)
    ascii_host = ".".join(out)
    if len(ascii_host.rstrip(".")) > 253:
        raise idna.IDNAError("Domain too long")
    return ascii_host


def _plans(body: Mapping[str, Any],
           previous: Optional[Mapping[str, Mapping[str, Any]]] = None) -> Tuple[Plan, ...]:
    raw = body.get("plans")
    if raw is None:
        raise InvalidField("plans", "plans is required (e.g. [{\"name\": \"Keyless\", \"security\": \"KEY_LESS\"}])")
    if not isinstance(raw, list):
        raise InvalidField("plans", "plans must be a list")
    if not raw:
        raise InvalidField("plans", "at least one plan is required")
    plans = []
    names = set()
    for index, item in enumerate(raw):
        where = f"plans[{index}]"
        if not isinstance(item, dict):
            raise InvalidField(where, f"{where} must be an object")
        unknown = sorted(set(item) - _PLAN_FIELDS)
        if unknown:
            raise InvalidField(f"{where}.{unknown[0]}", f"{where}.{unknown[0]} is not a known plan field")
        try:
            name = _string(item, "name", max_length=100)
            security = _string(item, "security", max_length=20)
            status = _string(item, "status", required=False, default="PUBLISHED", max_length=20)
            description = _string(item, "description", required=False, max_length=2000)
        except InvalidField as e:
            raise InvalidField(f"{where}.{e.field}", f"{where}.{e.message}")
        if security not in SECURITY_TYPES:
            raise InvalidField(
                f"{where}.security", f"{where}.security must be one of {', '.join(SECURITY_TYPES)}"
            )
        if security not in SUPPORTED_SECURITY:
            raise InvalidField(
                f"{where}.security",
                f"{where}.security {security} is not enforced by this gateway version; "
                f"supported: {', '.join(SUPPORTED_SECURITY)}",
            )
        if status not in PLAN_STATUSES:
            raise InvalidField(
                f"{where}.status", f"{where}.status must be one of {', '.join(PLAN_STATUSES)}"
            )
        if name.lower() in names:
            raise InvalidField(f"{where}.name", f"{where}.name {name!r} is used by another plan")
        names.add(name.lower())
        try:
            configuration = parse_configuration(security, item.get("configuration"), where,
                                                (previous or {}).get(name))
            rate_limit = parse_limit(item.get("rateLimit"), f"{where}.rateLimit")
            acl = parse_policy(item["acl"], f"{where}.acl") if item.get("acl") is not None else None
        except (PolicyError, LimitError) as e:
            raise InvalidField(e.field, e.message)
        plans.append(Plan(name=name, security=security, status=status, description=description,
                          configuration=configuration, rate_limit=rate_limit, acl=acl))
    if not any(plan.status == "PUBLISHED" for plan in plans):
        raise InvalidField("plans", "at least one plan must be PUBLISHED for clients to use the API")
    return tuple(plans)


def _analytics(body: Mapping[str, Any]) -> AnalyticsSettings:
    raw = body.get("analytics")
    if raw is None:
        return AnalyticsSettings()
    if not isinstance(raw, dict):
        raise InvalidField("analytics", "analytics must be an object")
    unknown = sorted(set(raw) - {"logging", "capture", "maxPayloadBytes", "redactFields"})
    if unknown:
        raise InvalidField(f"analytics.{unknown[0]}", f"analytics.{unknown[0]} is not a known field")
    capture = raw.get("capture", "off")
    if capture not in CAPTURE_MODES:
        raise InvalidField("analytics.capture",
                           f"analytics.capture must be one of {', '.join(CAPTURE_MODES)}")
    size = raw.get("maxPayloadBytes", 16384)
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= 1048576:
        raise InvalidField("analytics.maxPayloadBytes",
                           "analytics.maxPayloadBytes must be a whole number from 1 to 1048576")
    fields = raw.get("redactFields", [])
    if not isinstance(fields, list) or not all(isinstance(f, str) and f for f in fields):
        raise InvalidField("analytics.redactFields",
                           "analytics.redactFields must be a list of JSON key names")
    logging = raw.get("logging", True)
    if not isinstance(logging, bool):
        raise InvalidField("analytics.logging", "analytics.logging must be true or false")
    return AnalyticsSettings(capture, size, tuple(fields), logging)


def _public_url(body: Mapping[str, Any]) -> Optional[str]:
    field = "publicUrl"
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidField(field, "publicUrl must be a string (an absolute http(s) URL) or null")
    value = value.strip()
    if not value:
        return None
    if len(value) > 2000:
        raise InvalidField(field, "publicUrl is longer than 2000 characters")
    if not value.isascii() or any(c.isspace() or ord(c) < 0x20 or c in '"\\<>' for c in value):
        raise InvalidField(field, "publicUrl must be ASCII without spaces, quotes or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # raises ValueError on a bad port
    except ValueError as e:
        raise InvalidField(field, f"publicUrl is not a valid URL: {e}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidField(field, "publicUrl must be an absolute http:// or https:// URL, "
                                  "e.g. https://mcp.example.com")
    if parts.username is not None or parts.password is not None:
        raise InvalidField(field, "publicUrl must not embed credentials")
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise InvalidField(field, "publicUrl must not have a query or fragment")
    if any(unquote(s) in (".", "..") for s in parts.path.split("/")):
        raise InvalidField(field, "publicUrl must not contain '.' or '..' segments")
    return value.rstrip("/")


def _oauth(body: Mapping[str, Any]) -> OAuthSettings:
    raw = body.get("oauth")
    if raw is None:
        return OAuthSettings()
    if not isinstance(raw, dict):
        raise InvalidField("oauth", "oauth must be an object, e.g. {\"relay\": true}")
    unknown = sorted(set(raw) - set(_OAUTH_FIELDS))
    if unknown:
        raise InvalidField(f"oauth.{unknown[0]}", f"oauth.{unknown[0]} is not a known oauth field")
    values = {}
    for key, attr in _OAUTH_FIELDS.items():
        value = raw.get(key)
        if value is None:
            value = False
        if not isinstance(value, bool):
            raise InvalidField(f"oauth.{key}", f"oauth.{key} must be true or false")
        values[attr] = value
    settings = OAuthSettings(**values)
    if settings.proxy_authorization_server_discovery and not settings.relay:
        raise InvalidField("oauth.proxyAuthorizationServerDiscovery",
                           "oauth.proxyAuthorizationServerDiscovery needs oauth.relay")
    return settings


def _ca_file(body: Mapping[str, Any]) -> Optional[str]:
    value = body.get("backendCaFile")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.startswith("/") or "\x00" in value:
        raise InvalidField("backendCaFile", "backendCaFile must be an absolute path to a PEM file")
    if not body.get("backend", "").startswith("https://"):
        raise InvalidField("backendCaFile", "backendCaFile applies to https:// backends only")
    return value


def _keep_alive(body: Mapping[str, Any]) -> KeepAliveSettings:
    raw = body.get("backendKeepAlive")
    if raw is None:
        return KeepAliveSettings()
    if not isinstance(raw, dict):
        raise InvalidField("backendKeepAlive",
                           "backendKeepAlive must be an object, e.g. {\"idleTimeoutSeconds\": 2}")
    unknown = sorted(set(raw) - {"idleTimeoutSeconds"})
    if unknown:
        raise InvalidField(f"backendKeepAlive.{unknown[0]}",
                           f"backendKeepAlive.{unknown[0]} is not a known field")
    field = "backendKeepAlive.idleTimeoutSeconds"
    value = raw.get("idleTimeoutSeconds")
    if value is None:
        return KeepAliveSettings()
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
            or not 0 <= value <= MAX_IDLE_TIMEOUT):
        raise InvalidField(field, f"{field} must be a number of seconds from 0 (no pooling) "
                                  f"to {MAX_IDLE_TIMEOUT:.0f}")
    return KeepAliveSettings(float(value))


def _policy(body: Mapping[str, Any]) -> AccessPolicy:
    try:
        return parse_policy(body.get("acl"))
    except PolicyError as e:
        raise InvalidField(e.field, e.message)


def _backend_auth(body: Mapping[str, Any], previous: Optional["ApiDefinition"]) -> Optional[Mapping[str, Any]]:
    try:
        auth = parse_backend_auth(body.get("backendAuth"))
    except PolicyError as e:
        raise InvalidField(e.field, e.message)
    if auth is not None and auth.get("value") == SECRET_MASK:
        old = previous.backend_auth if previous is not None else None
        if not old or "value" not in old:
            raise InvalidField("backendAuth.value", "backendAuth.value is required")
        auth = dict(auth, value=old["value"])
    return auth


def parse_definition(body: Any, previous: Optional["ApiDefinition"] = None) -> ApiDefinition:
    """
    Validate a JSON body from the admin API.

    Read-only fields the admin API itself returns (C{id}, C{state}, ...) are
    ignored so that a GET body can be edited and PUT back; any other unknown
    field is refused.

    @raise InvalidField: for the first problem found.
    """
    if not isinstance(body, dict):
        raise InvalidField(None, "the body must be a JSON object")
    unknown = sorted(set(body) - _FIELDS - _READ_ONLY)
    if unknown:
        raise InvalidField(unknown[0], f"{unknown[0]} is not a known field")
    name = _string(body, "name", max_length=100)
    version = _string(body, "version", max_length=50)
    description = _string(body, "description", required=False, max_length=2000)
    context_path = normalize_context_path(_string(body, "contextPath", max_length=200))
    backend = _backend(_string(body, "backend", max_length=2000))
    plans = _plans(body, {p.name: p.configuration for p in previous.plans} if previous else None)
    return ApiDefinition(
        name=name,
        version=version,
        description=description,
        context_path=context_path,
        backend=backend,
        plans=plans,
        analytics=_analytics(body),
        public_url=_public_url(body),
        oauth=_oauth(body),
        backend_ca_file=_ca_file(body),
        acl=_policy(body),
        backend_auth=_backend_auth(body, previous),
        backend_keep_alive=_keep_alive(body),
        pinning=_pinning(body),
    )


def _pinning(body: Mapping[str, Any]) -> PinSettings:
    try:
        return parse_settings(body.get("pinning"))
    except PinningError as e:
        raise InvalidField(e.field, e.message)


def definition_from_json(data: Mapping[str, Any]) -> ApiDefinition:
    """
    Rebuild a stored definition (trusted: it was validated when written).
    """
    return ApiDefinition(
        name=data["name"],
        version=data["version"],
        description=data.get("description", ""),
        context_path=data["contextPath"],
        backend=_stored_backend(data["backend"]),
        plans=tuple(Plan.from_json(plan) for plan in data["plans"]),
        analytics=AnalyticsSettings.from_json(data.get("analytics") or {}),
        public_url=data.get("publicUrl"),
        oauth=OAuthSettings.from_json(data.get("oauth")),
        backend_ca_file=data.get("backendCaFile"),
        acl=parse_policy(data.get("acl")),
        backend_auth=data.get("backendAuth"),
        backend_keep_alive=KeepAliveSettings.from_json(data.get("backendKeepAlive")),
        pinning=parse_settings(data.get("pinning")),
    )


def _stored_backend(value: str) -> str:
    """
    A stored backend URL; one saved with a non-ASCII host before they were
    encoded at validation is encoded now (left as it was if it cannot be).
    """
    if value.isascii():
        return value
    try:
        return _backend(value)
    except InvalidField:
        return value
