"""
Validation of the security settings of a plan (C{configuration}) and of the
API's backend credential; returns plain, JSON-able values the model stores.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional
from urllib.parse import urlsplit

from mcpgated.policy.acl import PolicyError

SECRET_MASK = "********"  # noqa: S105 -- what a secret is shown as, not a secret

_API_KEY = {"header", "queryParam"}
_JWT = {"issuer", "audience", "anyAudience", "jwksUrl", "publicKey", "algorithms", "requiredScopes",
        "authorizationServers", "scopesSupported", "scopeClaim"}
_OAUTH2 = {"introspectionUrl", "clientId", "clientSecret", "requiredScopes",
           "authorizationServers", "scopesSupported", "issuer", "audience", "anyAudience",
           "cacheSeconds"}
# signature algorithms of JWT plans (asymmetric only: a plan holds no shared secret)
JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
                  "EdDSA", "Ed25519")
_BACKEND_AUTH = {"header", "value", "forwardClientToken"}


def _url(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise PolicyError(field, f"{field} must be a URL")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PolicyError(field, f"{field} must be an http(s) URL")
    return value


def _strings(value: Any, field: str) -> List[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(field, f"{field} must be a string or a list of strings")
    return list(value)


def _token_name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in " :\r\n\t"):
        raise PolicyError(field, f"{field} must be a header or parameter name")
    return value


def _public_key(pem: str) -> bool:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError, TypeError):
        return False
    return isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey))


def _audience(raw: Mapping[str, Any], out: Dict[str, Any], field: str) -> None:
    """
    The audiences a token plan accepts: C{audience} (a URL or a list), or,
    without it, the API's own public resource URL (the C{resource} of its
    protected-resource metadata; see L{mcpgated.policy.tokens.expected_audience}).
    C{anyAudience: true} turns the check off, and only explicitly.
    """
    if "audience" in raw:
        out["audience"] = _strings(raw["audience"], f"{field}.audience")
    if "anyAudience" in raw:
        value = raw["anyAudience"]
        if not isinstance(value, bool):
            raise PolicyError(f"{field}.anyAudience", f"{field}.anyAudience must be true or false")
        if value and "audience" in raw:
            raise PolicyError(f"{field}.anyAudience",
                              f"{field}.anyAudience cannot be combined with {field}.audience")
        if value:
            out["anyAudience"] = True


def parse_configuration(security: str, raw: Any, where: str,
                        previous: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    field = f"{where}.configuration"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise PolicyError(field, f"{field} must be an object")
    allowed = {"KEY_LESS": set(), "API_KEY": _API_KEY, "JWT": _JWT, "OAUTH2": _OAUTH2}[security]
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise PolicyError(f"{field}.{unknown[0]}",
                          f"{field}.{unknown[0]} is not a setting of {security} plans")
    out: Dict[str, Any] = {}
    if security == "API_KEY":
        out["header"] = _token_name(raw.get("header", "X-Gravitee-Api-Key"), f"{field}.header")
        query = raw.get("queryParam", "api-key")
        out["queryParam"] = _token_name(query, f"{field}.queryParam") if query else ""
    elif security == "JWT":
        if not isinstance(raw.get("issuer"), str) or not raw["issuer"]:
            raise PolicyError(f"{field}.issuer", f"{field}.issuer is required")
        out["issuer"] = raw["issuer"]
        if ("jwksUrl" in raw) == ("publicKey" in raw):
            raise PolicyError(f"{field}.jwksUrl", f"{field} needs jwksUrl or publicKey (one of them)")
        if "jwksUrl" in raw:
            out["jwksUrl"] = _url(raw["jwksUrl"], f"{field}.jwksUrl")
        else:
            key = raw["publicKey"]
            if not isinstance(key, str) or "BEGIN" not in key or not _public_key(key):
                raise PolicyError(f"{field}.publicKey",
                                  f"{field}.publicKey must be a PEM public key (RSA, EC or Ed25519)")
            out["publicKey"] = key
        out["algorithms"] = _strings(raw.get("algorithms", ["RS256", "ES256"]), f"{field}.algorithms")
        if not out["algorithms"]:
            # no algorithm would refuse every token, silently: say so when it is saved
            raise PolicyError(f"{field}.algorithms", f"{field}.algorithms must name at least one "
                                                     f"of {', '.join(JWT_ALGORITHMS)}")
        wrong = [a for a in out["algorithms"] if a not in JWT_ALGORITHMS]
        if wrong:
            raise PolicyError(f"{field}.algorithms", f"{field}.algorithms: {wrong[0]} is not one of "
                                                     f"{', '.join(JWT_ALGORITHMS)}")
        if "scopeClaim" in raw:
            out["scopeClaim"] = _token_name(raw["scopeClaim"], f"{field}.scopeClaim")
    elif security == "OAUTH2":
        out["introspectionUrl"] = _url(raw.get("introspectionUrl"), f"{field}.introspectionUrl")
        for key in ("clientId", "clientSecret"):
            if key in raw:
                if not isinstance(raw[key], str):
                    raise PolicyError(f"{field}.{key}", f"{field}.{key} must be a string")
                out[key] = raw[key]
        if out.get("clientSecret") == SECRET_MASK:
            # an edited GET body: keep the stored secret
            if previous is None or "clientSecret" not in previous:
                raise PolicyError(f"{field}.clientSecret", f"{field}.clientSecret is required")
            out["clientSecret"] = previous["clientSecret"]
        if "issuer" in raw:
            if not isinstance(raw["issuer"], str) or not raw["issuer"]:
                raise PolicyError(f"{field}.issuer", f"{field}.issuer must be a string")
            out["issuer"] = raw["issuer"]
        if "cacheSeconds" in raw:
            seconds = raw["cacheSeconds"]
            if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 <= seconds <= 3600:
                raise PolicyError(f"{field}.cacheSeconds",
                                  f"{field}.cacheSeconds must be a whole number of seconds from 0 to 3600")
            out["cacheSeconds"] = seconds
    if security in ("JWT", "OAUTH2"):
        _audience(raw, out, field)
        out["requiredScopes"] = _strings(raw.get("requiredScopes", []), f"{field}.requiredScopes")
        if "authorizationServers" in raw:
            out["authorizationServers"] = [
                _url(u, f"{field}.authorizationServers") for u in
                _strings(raw["authorizationServers"], f"{field}.authorizationServers")]
        elif security == "JWT":
            out["authorizationServers"] = [out["issuer"]]
        else:
            raise PolicyError(f"{field}.authorizationServers",
                              f"{field}.authorizationServers is required (for the metadata clients read)")
        if "scopesSupported" in raw:
            out["scopesSupported"] = _strings(raw["scopesSupported"], f"{field}.scopesSupported")
    return out


def shown(configuration: Mapping[str, Any]) -> Dict[str, Any]:
    """
    The configuration as the admin API shows it: secrets masked.
    """
    out = dict(configuration)
    if "clientSecret" in out:
        out["clientSecret"] = SECRET_MASK
    return out


def parse_backend_auth(raw: Any) -> Optional[Dict[str, Any]]:
    field = "backendAuth"
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise PolicyError(field, f"{field} must be an object")
    unknown = sorted(set(raw) - _BACKEND_AUTH)
    if unknown:
        raise PolicyError(f"{field}.{unknown[0]}", f"{field}.{unknown[0]} is not a known field")
    out: Dict[str, Any] = {"forwardClientToken": bool(raw.get("forwardClientToken", False))}
    if "header" in raw or "value" in raw:
        out["header"] = _token_name(raw.get("header"), f"{field}.header")
        value = raw.get("value")
        if not isinstance(value, str) or not value or "\r" in value or "\n" in value:
            raise PolicyError(f"{field}.value", f"{field}.value must be a header value")
        out["value"] = value
    return out
