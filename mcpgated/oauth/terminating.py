"""
The gateway as the OAuth resource server of an API ("terminating" mode):
an API with a PUBLISHED C{JWT} or C{OAUTH2} plan gets the gateway's own
RFC 9728 protected-resource metadata, built from its plans.
"""

from __future__ import annotations

from typing import Any, Dict, List

TOKEN_PLANS = ("JWT", "OAUTH2")


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
