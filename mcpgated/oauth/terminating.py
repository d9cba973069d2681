"""
The gateway as the OAuth resource server of an API ("terminating" mode):
an API with a PUBLISHED C{JWT} or C{OAUTH2} plan gets the gateway's own
RFC 9728 protected-resource metadata, built from its plans.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from mcpgated.policy.tokens import expected_audience

TOKEN_PLANS = ("JWT", "OAUTH2")
# the request's origin, in an audience shown when no public URL is configured
REQUEST_ORIGIN = "{origin}"


def token_plans(definition: Any) -> List[Any]:
    return [p for p in definition.plans if p.status == "PUBLISHED" and p.security in TOKEN_PLANS]


def terminates(definition: Any) -> bool:
    """
    Whether the gateway checks this API's bearer tokens itself.
    """
    return bool(token_plans(definition))


def _union(lists: Any) -> List[str]:
    out: List[str] = []
    for values in lists:
        for value in values:
            if value not in out:
                out.append(value)
    return out


def protected_resource_document(definition: Any, resource: str) -> Dict[str, Any]:
    """
    The metadata clients read: the API's public URL as C{resource}, the
    token plans' authorization servers and scopes (C{scopesSupported}, else
    C{requiredScopes}).
    """
    plans = token_plans(definition)
    config = [p.configuration or {} for p in plans]
    document: Dict[str, Any] = {
        "resource": resource,
        "authorization_servers": _union(c.get("authorizationServers", ()) for c in config),
        "bearer_methods_supported": ["header"],
    }
    scopes = _union(c.get("scopesSupported", c.get("requiredScopes", ())) for c in config)
    if scopes:
        document["scopes_supported"] = scopes
    if getattr(definition, "name", None):
        document["resource_name"] = definition.name
    return document


def effective_audiences(definition: Any, gateway_public_url: Optional[str]) -> Dict[str, Any]:
    """
    For the admin API: the audiences each C{JWT}/C{OAUTH2} plan accepts,
    by plan name, as C{{"audience": [...] | None, "source": ...}}.

    C{source} says where they come from: C{"plan"} (its C{audience}),
    C{"anyAudience"} (no check; C{audience} is L{None}), C{"publicUrl"} or
    C{"gateway.public_url"} (the API's public resource URL, as its
    protected-resource metadata advertises it), or C{"request"}: no public
    URL is configured, so the origin each client used ({REQUEST_ORIGIN} in
    the value) decides it, as it decides the metadata's C{resource}.
    """
    base = definition.public_url or gateway_public_url
    if base:
        resource = base.rstrip("/") + definition.context_path
        source = "publicUrl" if definition.public_url else "gateway.public_url"
    else:
        resource, source = REQUEST_ORIGIN + definition.context_path, "request"
    out: Dict[str, Any] = {}
    for plan in definition.plans:
        if plan.security not in TOKEN_PLANS:
            continue
        config = plan.configuration or {}
        accepted = expected_audience(config, resource)
        if accepted is None:
            out[plan.name] = {"audience": None, "source": "anyAudience"}
        elif config.get("audience"):
            out[plan.name] = {"audience": accepted, "source": "plan"}
        else:
            out[plan.name] = {"audience": accepted, "source": source}
    return out
