"""
Applications, subscriptions and API keys: the values the admin API accepts,
stores and answers with (the consumer side of plans, as in Gravitee).

An application is a consumer. It subscribes to one plan of one API; a
subscription is C{ACCEPTED} (usable) until it is closed. Subscriptions to
C{API_KEY} plans hold API keys. C{KEY_LESS} plans need no subscription.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import attrs

from mcpgated.definitions import InvalidField, read_object, read_string
from mcpgated.keys import KeyGrant
from mcpgated.model import ApiDefinition, Plan, iso_time

ACCEPTED = "ACCEPTED"
CLOSED = "CLOSED"
SUBSCRIBABLE_SECURITY = ("API_KEY", "JWT", "OAUTH2")
KEY_SECURITY = "API_KEY"

# Rotation: how long the keys being replaced keep working by default, and
# the longest grace an operator may give them.
DEFAULT_ROTATION_GRACE = 3600
MAX_ROTATION_GRACE = 30 * 24 * 3600

_APPLICATION_FIELDS = {"name", "description"}
_APPLICATION_READ_ONLY = {"id", "createdAt"}


@attrs.frozen
class Application:
    id: str
    name: str
    description: str
    created_at: float

    def to_json(self) -> Dict[str, Any]:
        return {"id": self.id, "name": self.name, "description": self.description,
                "createdAt": iso_time(self.created_at)}


@attrs.frozen
class Subscription:
    id: str
    api_id: str
    plan: str
    application_id: str
    application_name: str
    status: str
    created_at: float
    closed_at: Optional[float]

    def to_json(self) -> Dict[str, Any]:
        return {
            "id": self.id,
            "api": self.api_id,
            "plan": self.plan,
            "application": self.application_id,
            "applicationName": self.application_name,
            "status": self.status,
            "createdAt": iso_time(self.created_at),
            "closedAt": iso_time(self.closed_at),
        }


@attrs.frozen
class ApiKey:
    """
    A stored key: never the key itself, only what identifies it.
    """

    id: str
    subscription_id: str
    prefix: str
    created_at: float
    expires_at: Optional[float]
    revoked_at: Optional[float]

    def status(self, now: float) -> str:
        if self.revoked_at is not None:
            return "REVOKED"
        if self.expires_at is not None and now >= self.expires_at:
            return "EXPIRED"
        return "ACTIVE"

    def to_json(self, now: float) -> Dict[str, Any]:
        return {
            "id": self.id,
            "subscription": self.subscription_id,
            "prefix": self.prefix,
            "status": self.status(now),
            "createdAt": iso_time(self.created_at),
            "expiresAt": iso_time(self.expires_at),
            "revokedAt": iso_time(self.revoked_at),
        }

    def issued_json(self, key: str) -> Dict[str, Any]:
        """
        The one answer that shows the key.
        """
        return {"id": self.id, "key": key, "prefix": self.prefix,
                "createdAt": iso_time(self.created_at), "expiresAt": iso_time(self.expires_at)}


def parse_application(body: Any) -> Tuple[str, str]:
    """
    C{{"name", "description"}} -> (name, description). Read-only fields of
    an application's JSON are ignored.
    """
    body = read_object(body, _APPLICATION_FIELDS | _APPLICATION_READ_ONLY)
    return (read_string(body, "name", max_length=100),
            read_string(body, "description", required=False, max_length=2000))


def parse_subscription_request(body: Any) -> Tuple[str, str]:
    """
    C{{"application": id, "plan": name}} -> (application id, plan name).
    """
    body = read_object(body, {"application", "plan"})
    return (read_string(body, "application", max_length=100),
            read_string(body, "plan", max_length=100))


def parse_rotation(body: Any) -> int:
    """
    The optional body of a rotation: C{{"expireOldAfter": seconds}}.

    @return: how many seconds the replaced keys keep working.
    """
    if body is None:
        return DEFAULT_ROTATION_GRACE
    body = read_object(body, {"expireOldAfter"})
    value = body.get("expireOldAfter")
    if value is None:
        return DEFAULT_ROTATION_GRACE
    if (not isinstance(value, int) or isinstance(value, bool)
            or not 0 <= value <= MAX_ROTATION_GRACE):
        raise InvalidField("expireOldAfter",
                           f"expireOldAfter must be a whole number of seconds from 0 to "
                           f"{MAX_ROTATION_GRACE}")
    return value


def subscribable_plan(api_id: str, definition: ApiDefinition, name: str) -> Plan:
    """
    The plan of an API's stored definition an application may subscribe to.

    @raise InvalidField: naming C{plan}, if there is no such plan, it is not
        PUBLISHED, or it is C{KEY_LESS}.
    """
    for plan in definition.plans:
        if plan.name == name:
            break
    else:
        names = ", ".join(plan.name for plan in definition.plans)
        raise InvalidField("plan", f"API {api_id} has no plan named {name!r} (plans: {names})")
    if plan.security not in SUBSCRIBABLE_SECURITY:
        raise InvalidField("plan", f"plan {name!r} is {plan.security}: it needs no subscription")
    if plan.status != "PUBLISHED":
        raise InvalidField("plan", f"plan {name!r} is {plan.status}: only PUBLISHED plans "
                                   f"take subscriptions")
    return plan


@attrs.frozen
class IssuedKey:
    """
    The result of issuing (or rotating) a key.

    @ivar key: the new key's stored record.
    @ivar key_hash: the new key's hash, with L{grant} what the index maps it to.
    @ivar replaced: for a rotation, the keys given an expiry: (hash, grant
        with the new C{expires_at}).
    """

    key: ApiKey
    key_hash: str
    grant: KeyGrant
    replaced: Tuple[Tuple[str, KeyGrant], ...] = ()
