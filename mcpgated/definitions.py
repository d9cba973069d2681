"""
Validation of API definitions as the admin API receives them: untrusted JSON
in, an L{mcpgated.model.ApiDefinition} out, or L{InvalidField} naming the
first field that is wrong (dotted, e.g. C{plans[0].rateLimit.requests}).

L{read_object} and L{read_string} are the field readers every admin body
uses (applications and subscriptions too, L{mcpgated.subscriptions}).
"""

from __future__ import annotations

import math
import re
from typing import AbstractSet, Any, Dict, Mapping, Optional, Tuple
from urllib.parse import SplitResult, quote, unquote, urlsplit

import attrs
import idna

from mcpgated.model import (
    CAPTURE_MODES,
    OAUTH_KEYS,
    PLAN_STATUSES,
    SECURITY_TYPES,
    SUPPORTED_SECURITY,
    LB_ALGORITHMS,
    AnalyticsSettings,
    ApiDefinition,
    Endpoint,
    HealthCheck,
    KeepAliveSettings,
    LoadBalancing,
    OAuthSettings,
    Plan,
    ProtocolSettings,
)
from mcpgated.mcp.bridge import KNOWN_VERSIONS
from mcpgated.policy.acl import AccessPolicy, PolicyError, parse_policy
from mcpgated.policy.pinning import PinningError, PinSettings, parse_settings
from mcpgated.policy.plans import SECRET_MASK, parse_backend_auth, parse_configuration
from mcpgated.policy.ratelimit import LimitError, parse_limit

# Fields the admin API answers with but never reads: a GET body can be
# edited and PUT back.
_READ_ONLY = frozenset({
    "id",
    "state",
    "createdAt",
    "updatedAt",
    "deployedAt",
    "deploymentState",
    "needsRedeploy",
    "deployed",
    "effectiveAudience",
})
_FIELDS = frozenset({
    "name", "version", "description", "contextPath", "backend", "plans", "analytics",
    "publicUrl", "oauth",  # secured backends (mcpgated.oauth)
    "backendCaFile", "acl", "backendAuth", "backendKeepAlive",
    "pinning",  # tool-definition pinning (mcpgated.policy.pinning)
    "endpoints", "loadBalancing",  # several replicas (mcpgated.proxy.balancer)
    "protocol",  # the protocol versions accepted (mcpgated.mcp.bridge)
})
_PLAN_FIELDS = frozenset({"name", "security", "status", "description", "configuration",
                          "rateLimit", "acl"})
_ANALYTICS_FIELDS = frozenset({"logging", "capture", "maxPayloadBytes", "redactFields"})
_SEGMENT = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@%-]+$")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
MAX_IDLE_TIMEOUT = 600.0


class InvalidField(ValueError):
    """
    A field of an admin API request is missing or invalid.
    """

    def __init__(self, field: Optional[str], message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def read_object(body: Any, known: AbstractSet[str]) -> Dict[str, Any]:
    """
    C{body} as a JSON object with no field outside C{known}.

    @raise InvalidField: naming no field if it is not an object, else the
        first unknown field (in sorted order).
    """
    if not isinstance(body, dict):
        raise InvalidField(None, "the body must be a JSON object")
    unknown = sorted(set(body) - known)
    if unknown:
        raise InvalidField(unknown[0], f"{unknown[0]} is not a known field")
    return body


def read_string(body: Mapping[str, Any], field: str, *, required: bool = True,
                max_length: int = 200, default: str = "") -> str:
    """
    A string field, stripped: required ones must not be empty; none may be
    longer than C{max_length} or hold control characters other than newline
    and tab.

    @raise InvalidField: naming C{field}.
    """
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


def _backend(value: str, field: str = "backend") -> str:
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError as e:
        raise InvalidField(field, f"{field} is not a valid URL: {e}") from e
    if parts.scheme not in ("http", "https"):
        raise InvalidField(field, f"{field} must be an http:// or https:// URL")
    if not parts.hostname:
        raise InvalidField(field, f"{field} must name a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidField(field, f"{field} must not embed credentials in the URL")
    if parts.fragment:
        raise InvalidField(field, f"{field} must not have a fragment")
    if any(c.isspace() for c in value):
        raise InvalidField(field, f"{field} must not contain whitespace")
    if ".." in parts.path.split("/"):
        raise InvalidField(field, f"{field} path must not contain '..' segments")
    netloc = parts.netloc
    if not value.isascii() or "%" in netloc or "xn--" in netloc.lower():
        value = _ascii_backend(value, parts, field)
    return value


def _ascii_backend(value: str, parts: SplitResult, field: str = "backend") -> str:
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
            raise InvalidField(field, f"{field} IPv6 address must be ASCII")
    else:
        head, colon, tail = netloc.rpartition(":")
        if colon:
            host, port = head, colon + tail
        if "%" in host:
            raise InvalidField(field, f"{field} host must not be percent-encoded; write the "
                                      "name itself (e.g. bücher.example) or its xn-- form")
        try:
            host = idna_host(host)
        except (idna.IDNAError, UnicodeError) as e:
            raise InvalidField(field, f"{field} host {host!r} is not a valid "
                                      f"internationalised domain name: {e}") from e
    try:
        path = _NON_ASCII.sub(lambda m: quote(m.group(), safe=""), parts.path)
        query = _NON_ASCII.sub(lambda m: quote(m.group(), safe=""), parts.query)
    except UnicodeError:
        raise InvalidField(field, f"{field} is not valid Unicode") from None
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
            name = read_string(item, "name", max_length=100)
            security = read_string(item, "security", max_length=20)
            status = read_string(item, "status", required=False, default="PUBLISHED", max_length=20)
            description = read_string(item, "description", required=False, max_length=2000)
        except InvalidField as e:
            raise InvalidField(f"{where}.{e.field}", f"{where}.{e.message}") from e
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
            raise InvalidField(e.field, e.message) from e
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
    unknown = sorted(set(raw) - _ANALYTICS_FIELDS)
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
        _ = parts.port  # raises ValueError on a bad port
    except ValueError as e:
        raise InvalidField(field, f"publicUrl is not a valid URL: {e}") from e
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
    unknown = sorted(set(raw) - set(OAUTH_KEYS))
    if unknown:
        raise InvalidField(f"oauth.{unknown[0]}", f"oauth.{unknown[0]} is not a known oauth field")
    values: Dict[str, bool] = {}
    for key, attr in OAUTH_KEYS.items():
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


def _ca_file(body: Mapping[str, Any], urls: Tuple[str, ...]) -> Optional[str]:
    value = body.get("backendCaFile")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.startswith("/") or "\x00" in value:
        raise InvalidField("backendCaFile", "backendCaFile must be an absolute path to a PEM file")
    if not all(url.startswith("https://") for url in urls):
        raise InvalidField("backendCaFile", "backendCaFile applies to https:// backends only")
    return value


MAX_ENDPOINTS = 64
MAX_WEIGHT = 1000


def _endpoints(body: Mapping[str, Any]) -> Tuple[Endpoint, ...]:
    """
    The C{endpoints} list (empty when absent or null).

    @raise InvalidField: naming C{endpoints} or C{endpoints[i].field}.
    """
    raw = body.get("endpoints")
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise InvalidField("endpoints", 'endpoints must be a non-empty list, e.g. '
                                        '[{"url": "http://10.0.0.1:3001/mcp", "weight": 1}]')
    if len(raw) > MAX_ENDPOINTS:
        raise InvalidField("endpoints", f"endpoints has more than {MAX_ENDPOINTS} entries")
    endpoints = []
    seen = set()
    for index, item in enumerate(raw):
        where = f"endpoints[{index}]"
        if not isinstance(item, dict):
            raise InvalidField(where, f'{where} must be an object with a "url"')
        unknown = sorted(set(item) - {"url", "weight"})
        if unknown:
            raise InvalidField(f"{where}.{unknown[0]}", f"{where}.{unknown[0]} is not a known field")
        try:
            url = _backend(read_string(item, "url", max_length=2000), f"{where}.url")
        except InvalidField as e:
            field = e.field if e.field and e.field.startswith(where) else f"{where}.url"
            message = e.message if e.message.startswith(where) else f"{where}.{e.message}"
            raise InvalidField(field, message) from None
        weight = item.get("weight", 1)
        if not isinstance(weight, int) or isinstance(weight, bool) or not 1 <= weight <= MAX_WEIGHT:
            raise InvalidField(f"{where}.weight",
                               f"{where}.weight must be a whole number from 1 to {MAX_WEIGHT}")
        if url in seen:
            raise InvalidField(f"{where}.url", f"{where}.url {url} is listed twice")
        seen.add(url)
        endpoints.append(Endpoint(url, weight))
    return tuple(endpoints)


def _seconds(raw: Mapping[str, Any], key: str, where: str, default: float, low: float,
             high: float) -> float:
    value = raw.get(key)
    if value is None:
        return default
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
            or not low < value <= high):
        raise InvalidField(f"{where}.{key}",
                           f"{where}.{key} must be a number of seconds above {low:g} up to {high:g}")
    return float(value)


def _object(raw: Any, where: str, known: AbstractSet[str]) -> Mapping[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidField(where, f"{where} must be an object")
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InvalidField(f"{where}.{unknown[0]}", f"{where}.{unknown[0]} is not a known field")
    return raw


def _load_balancing(body: Mapping[str, Any], endpoints: Tuple[Endpoint, ...]) -> LoadBalancing:
    raw = body.get("loadBalancing")
    if raw is None:
        return LoadBalancing()
    if not endpoints:
        raise InvalidField("loadBalancing", "loadBalancing applies to APIs with endpoints")
    raw = _object(raw, "loadBalancing", {"algorithm", "passive", "healthCheck"})
    algorithm = raw.get("algorithm", "round-robin")
    if algorithm not in LB_ALGORITHMS:
        raise InvalidField("loadBalancing.algorithm",
                           f"loadBalancing.algorithm must be one of {', '.join(LB_ALGORITHMS)}")
    passive = _object(raw.get("passive") or {}, "loadBalancing.passive",
                      {"maxFailures", "ejectSeconds"})
    failures = passive.get("maxFailures", 3)
    if not isinstance(failures, int) or isinstance(failures, bool) or not 1 <= failures <= 100:
        raise InvalidField("loadBalancing.passive.maxFailures",
                           "loadBalancing.passive.maxFailures must be a whole number from 1 to 100")
    eject = _seconds(passive, "ejectSeconds", "loadBalancing.passive", 10.0, 0, 3600)
    check = None
    if raw.get("healthCheck") is not None:
        where = "loadBalancing.healthCheck"
        given = _object(raw["healthCheck"], where, {"intervalSeconds", "timeoutSeconds", "path"})
        path = given.get("path") or ""
        if not isinstance(path, str) or (path and (not path.startswith("/") or not path.isascii()
                                                   or any(c.isspace() or c in "?#" for c in path))):
            raise InvalidField(f"{where}.path", f"{where}.path must be an absolute path such as "
                                                f"/health (no query), or empty: the endpoint's URL")
        interval = _seconds(given, "intervalSeconds", where, 10.0, 0, 3600)
        timeout = _seconds(given, "timeoutSeconds", where, 2.0, 0, 60)
        check = HealthCheck(max(interval, 0.1), timeout, path)
    return LoadBalancing(algorithm, failures, eject, check)


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
        raise InvalidField(e.field, e.message) from e


def _backend_auth(body: Mapping[str, Any], previous: Optional[ApiDefinition]) -> Optional[Mapping[str, Any]]:
    try:
        auth = parse_backend_auth(body.get("backendAuth"))
    except PolicyError as e:
        raise InvalidField(e.field, e.message) from e
    if auth is not None and auth.get("value") == SECRET_MASK:
        old = previous.backend_auth if previous is not None else None
        if not old or "value" not in old:
            raise InvalidField("backendAuth.value", "backendAuth.value is required")
        auth = dict(auth, value=old["value"])
    return auth


def parse_definition(body: Any, previous: Optional[ApiDefinition] = None) -> ApiDefinition:
    """
    Validate a JSON body from the admin API.

    Read-only fields the admin API itself returns (C{id}, C{state}, ...) are
    ignored so that a GET body can be edited and PUT back; any other unknown
    field is refused.

    @raise InvalidField: for the first problem found.
    """
    body = read_object(body, _FIELDS | _READ_ONLY)
    name = read_string(body, "name", max_length=100)
    version = read_string(body, "version", max_length=50)
    description = read_string(body, "description", required=False, max_length=2000)
    context_path = normalize_context_path(read_string(body, "contextPath", max_length=200))
    endpoints = _endpoints(body)
    if endpoints:
        if body.get("backend") not in (None, ""):
            raise InvalidField("endpoints", "give backend (one server) or endpoints (several "
                                            "replicas), not both")
        backend = endpoints[0].url
    elif body.get("backend") is None and "endpoints" in body:
        raise InvalidField("endpoints", "endpoints must be a non-empty list (or give backend)")
    else:
        backend = _backend(read_string(body, "backend", max_length=2000))
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
        backend_ca_file=_ca_file(body, tuple(e.url for e in endpoints) or (backend,)),
        acl=_policy(body),
        backend_auth=_backend_auth(body, previous),
        backend_keep_alive=_keep_alive(body),
        pinning=_pinning(body),
        endpoints=endpoints,
        load_balancing=_load_balancing(body, endpoints),
        protocol=_protocol(body),
    )


def _protocol(body: Mapping[str, Any]) -> Optional[ProtocolSettings]:
    """
    The C{protocol} settings (L{None} when absent or null: pass-through).

    @raise InvalidField: naming C{protocol.clientVersions[i]} or
        C{protocol.backendVersion}.
    """
    raw = body.get("protocol")
    if raw is None:
        return None
    raw = _object(raw, "protocol", {"clientVersions", "backendVersion"})
    known = ", ".join(KNOWN_VERSIONS)
    versions = raw.get("clientVersions")
    if not isinstance(versions, list) or not versions:
        raise InvalidField("protocol.clientVersions",
                           f"protocol.clientVersions must be a non-empty list of versions from {known}")
    for index, version in enumerate(versions):
        if version not in KNOWN_VERSIONS or versions.index(version) != index:
            raise InvalidField(f"protocol.clientVersions[{index}]",
                               f"protocol.clientVersions[{index}] must be one of {known}, once")
    backend = raw.get("backendVersion")
    if backend is not None:
        if backend not in KNOWN_VERSIONS:
            raise InvalidField("protocol.backendVersion",
                               f"protocol.backendVersion must be one of {known}")
    return ProtocolSettings(tuple(versions), backend)


def _pinning(body: Mapping[str, Any]) -> PinSettings:
    try:
        return parse_settings(body.get("pinning"))
    except PinningError as e:
        raise InvalidField(e.field, e.message) from e


def definition_from_json(data: Mapping[str, Any]) -> ApiDefinition:
    """
    Rebuild a stored definition (trusted: it was validated when written),
    bringing one stored by an older version up to date.
    """
    definition = ApiDefinition.from_json(data)
    backend = _stored_backend(definition.backend)
    if backend == definition.backend:
        return definition
    return attrs.evolve(definition, backend=backend)


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
