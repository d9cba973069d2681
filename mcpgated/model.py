"""
API definitions as records: the values the admin API stores, deploys and
answers with, and the gateway serves.

These are trusted values. Turning untrusted admin JSON into them (and
naming the field that is wrong) is L{mcpgated.definitions}' job;
L{ApiRecord.to_json} is the shape the admin API answers with.
"""

from __future__ import annotations

import datetime
from typing import Any, Dict, Mapping, Optional, Tuple

import attrs

from mcpgated.policy.acl import AccessPolicy, parse_policy
from mcpgated.policy.pinning import PinSettings, parse_settings
from mcpgated.policy.plans import SECRET_MASK, shown
from mcpgated.policy.ratelimit import RateLimit, parse_limit

STOPPED = "STOPPED"
STARTED = "STARTED"

SECURITY_TYPES = ("KEY_LESS", "API_KEY", "JWT", "OAUTH2")
# Plans the gateway can enforce in this version; the others are refused
# rather than deployed unenforced.
SUPPORTED_SECURITY = ("KEY_LESS", "API_KEY", "JWT", "OAUTH2")
PLAN_STATUSES = ("STAGING", "PUBLISHED", "CLOSED")
CAPTURE_MODES = ("off", "headers", "bodies")
# The JSON keys of an API's "oauth" object and the OAuthSettings attribute
# each sets.
OAUTH_KEYS = {"relay": "relay",
              "proxyAuthorizationServerDiscovery": "proxy_authorization_server_discovery"}
# Seconds an idle pooled backend connection is kept: below the keep-alive
# timeout of common servers (uvicorn, Apache, Node <= 25: 5 s); gunicorn's is
# 2 s, set backendKeepAlive.idleTimeoutSeconds to 1 for it.
DEFAULT_IDLE_TIMEOUT = 4.0


def iso_time(when: Optional[float]) -> Optional[str]:
    """
    A timestamp as the admin API shows it: ISO 8601 in UTC, to the
    millisecond, C{Z}-suffixed; L{None} stays L{None}.
    """
    if when is None:
        return None
    moment = datetime.datetime.fromtimestamp(when, datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def paths_overlap(a: str, b: str) -> bool:
    """
    Whether two canonical context paths are equal or one is a whole-segment
    prefix of the other (C{/mcp} and C{/mcp/x} overlap; C{/mcp} and
    C{/mcp-proxy} do not).
    """
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


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
        return cls(**{attr: bool(data.get(key, False)) for key, attr in OAUTH_KEYS.items()})


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


LB_ALGORITHMS = ("round-robin", "least-connections")


@attrs.frozen
class Endpoint:
    """
    One replica of a load-balanced API's MCP server.
    """

    url: str
    weight: int = 1

    def to_json(self) -> Dict[str, Any]:
        return {"url": self.url, "weight": self.weight}


@attrs.frozen
class HealthCheck:
    """
    Active health checks: a GET of C{path} (the endpoint's own URL when
    empty) every C{interval} seconds; an answer below 500 within C{timeout}
    is healthy, anything else takes the endpoint out until a check passes.
    """

    interval: float = 10.0
    timeout: float = 2.0
    path: str = ""

    def to_json(self) -> Dict[str, Any]:
        return {"intervalSeconds": _number(self.interval), "timeoutSeconds": _number(self.timeout),
                "path": self.path}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "HealthCheck":
        return cls(float(data.get("intervalSeconds", 10.0)), float(data.get("timeoutSeconds", 2.0)),
                   data.get("path") or "")


@attrs.frozen
class LoadBalancing:
    """
    How requests are spread over an API's endpoints, and when an endpoint
    is taken out: after C{max_failures} failures in a row (a connection
    that fails, or a 5xx answer; a refused connection at once) for
    C{eject_seconds}, then tried again.
    """

    algorithm: str = "round-robin"
    max_failures: int = 3
    eject_seconds: float = 10.0
    health_check: Optional[HealthCheck] = None

    def to_json(self) -> Dict[str, Any]:
        return {"algorithm": self.algorithm,
                "passive": {"maxFailures": self.max_failures,
                            "ejectSeconds": _number(self.eject_seconds)},
                "healthCheck": self.health_check.to_json() if self.health_check else None}

    @classmethod
    def from_json(cls, data: Optional[Mapping[str, Any]]) -> "LoadBalancing":
        data = data or {}
        passive = data.get("passive") or {}
        check = data.get("healthCheck")
        return cls(data.get("algorithm", "round-robin"), int(passive.get("maxFailures", 3)),
                   float(passive.get("ejectSeconds", 10.0)),
                   HealthCheck.from_json(check) if check is not None else None)


@attrs.frozen
class ProtocolSettings:
    """
    The MCP protocol versions an API accepts from its clients
    (L{mcpgated.mcp.bridge}), and the one its backend speaks (L{None}:
    whatever the client negotiates with it).
    """

    client_versions: Tuple[str, ...]
    backend_version: Optional[str] = None

    @property
    def to_modern(self) -> bool:
        """
        Whether handshake-era clients are bridged to a 2026-07-28 backend.
        """
        backend = self.backend_version
        return backend is not None and backend >= "2026" and \
            any(v < "2026" for v in self.client_versions)

    @property
    def to_classic(self) -> bool:
        """
        Whether 2026-07-28 clients are bridged to a handshake-era backend.
        """
        backend = self.backend_version
        return backend is not None and backend < "2026" and \
            any(v >= "2026" for v in self.client_versions)

    def to_json(self) -> Dict[str, Any]:
        return {"clientVersions": list(self.client_versions), "backendVersion": self.backend_version}

    @classmethod
    def from_json(cls, data: Optional[Mapping[str, Any]]) -> Optional["ProtocolSettings"]:
        if not data:
            return None
        return cls(tuple(data["clientVersions"]), data.get("backendVersion"))


def _number(value: float) -> Any:
    return int(value) if value == int(value) else value


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
    acl: AccessPolicy = attrs.field(factory=AccessPolicy)
    backend_auth: Optional[Mapping[str, Any]] = attrs.field(default=None, hash=False)
    backend_keep_alive: KeepAliveSettings = KeepAliveSettings()
    pinning: PinSettings = attrs.field(factory=PinSettings)
    # Several replicas instead of one backend (then C{backend} is the first
    # one's URL, for what needs one URL: OAuth metadata, previews).
    endpoints: Tuple[Endpoint, ...] = ()
    load_balancing: LoadBalancing = LoadBalancing()
    # the protocol versions accepted (None: any, passed through)
    protocol: Optional[ProtocolSettings] = None

    def to_json(self, secrets: bool = True) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "contextPath": self.context_path,
            "backend": None if self.endpoints else self.backend,
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
        if self.endpoints:
            out["endpoints"] = [endpoint.to_json() for endpoint in self.endpoints]
            out["loadBalancing"] = self.load_balancing.to_json()
        if self.protocol is not None:
            out["protocol"] = self.protocol.to_json()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ApiDefinition":
        """
        Rebuild a definition from L{to_json}'s shape, trusted: it was
        validated when written (L{mcpgated.definitions.definition_from_json}
        also brings definitions stored by older versions up to date).
        """
        endpoints = tuple(Endpoint(e["url"], e.get("weight", 1)) for e in data.get("endpoints") or ())
        return cls(
            name=data["name"],
            version=data["version"],
            description=data.get("description", ""),
            context_path=data["contextPath"],
            backend=data.get("backend") or endpoints[0].url,
            plans=tuple(Plan.from_json(plan) for plan in data["plans"]),
            analytics=AnalyticsSettings.from_json(data.get("analytics") or {}),
            public_url=data.get("publicUrl"),
            oauth=OAuthSettings.from_json(data.get("oauth")),
            backend_ca_file=data.get("backendCaFile"),
            acl=parse_policy(data.get("acl")),
            backend_auth=data.get("backendAuth"),
            backend_keep_alive=KeepAliveSettings.from_json(data.get("backendKeepAlive")),
            pinning=parse_settings(data.get("pinning")),
            endpoints=endpoints,
            load_balancing=LoadBalancing.from_json(data.get("loadBalancing")),
            protocol=ProtocolSettings.from_json(data.get("protocol")),
        )


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
        body: Dict[str, Any] = {"id": self.id}
        body.update(self.definition.to_json(secrets=False))
        body.update(
            {
                "state": self.state,
                "deploymentState": deployment,
                "needsRedeploy": self.needs_redeploy,
                "createdAt": iso_time(self.created_at),
                "updatedAt": iso_time(self.updated_at),
                "deployedAt": iso_time(self.deployed_at),
                "deployed": self.deployed.to_json(secrets=False) if self.deployed else None,
            }
        )
        return body
