"""
What a gateway holds, read over the admin API (L{Gateway}), and its export
as a file L{mcpgated.ctl.documents} reads back: definitions (plans, rules,
rate limits included), state, open subscriptions and applications.

Secrets (an OAUTH2 plan's C{clientSecret}, C{backendAuth.value}) are
exported masked unless asked for; API keys never are: the gateway stores
only their hashes.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import attrs

from mcpgated.definitions import definition_from_json
from mcpgated.model import ApiDefinition
from mcpgated.policy.plans import SECRET_MASK

from mcpgated.ctl.client import AdminClient, CtlError, quoted
from mcpgated.ctl.documents import FORMAT_VERSION

KEYS_NOTE = ("API keys are not exported: the gateway stores only their hashes. Issue new keys "
             "for the subscriptions after an import (POST /apis/{id}/subscriptions/{sid}/keys).")


@attrs.define
class Gateway:
    """
    A gateway's APIs, applications and open subscriptions, as the admin API
    shows them; stored definitions with their secrets on demand.
    """

    client: AdminClient
    apis: List[Dict[str, Any]]
    applications: List[Dict[str, Any]]
    _subscriptions: Dict[str, List[Dict[str, Any]]] = attrs.field(factory=dict)
    _secret_definitions: Dict[str, ApiDefinition] = attrs.field(factory=dict)

    @classmethod
    def read(cls, client: AdminClient) -> "Gateway":
        return cls(client, client.get("/apis")["data"], client.get("/applications")["data"])

    def subscriptions(self, api_id: str) -> List[Dict[str, Any]]:
        """
        The API's open (C{ACCEPTED}) subscriptions.
        """
        if api_id not in self._subscriptions:
            data = self.client.get(f"/apis/{quoted(api_id)}/subscriptions")["data"]
            self._subscriptions[api_id] = [s for s in data if s.get("status") == "ACCEPTED"]
        return self._subscriptions[api_id]

    def definition(self, api_id: str) -> ApiDefinition:
        """
        The API's stored definition, secrets in clear (never printed).
        """
        if api_id not in self._secret_definitions:
            body = self.client.get(f"/apis/{quoted(api_id)}/_export")
            self._secret_definitions[api_id] = definition_from_json(body["definition"])
        return self._secret_definitions[api_id]

    def find(self, ref: str) -> Dict[str, Any]:
        """
        An API by id or context path.
        """
        for api in self.apis:
            if ref in (api["id"], api["contextPath"]):
                return api
        raise CtlError(f"no API with the id or context path {ref!r} on this gateway "
                       "(mcpgatedctl apis list)")

    def by_context_path(self, context_path: str) -> Optional[Dict[str, Any]]:
        found = [api for api in self.apis if api["contextPath"] == context_path]
        if len(found) > 1:
            ids = ", ".join(api["id"] for api in found)
            raise CtlError(f"APIs {ids} share the context path {context_path}: a file cannot tell "
                           "them apart; delete one")
        return found[0] if found else None

    def applications_named(self, name: str) -> List[Dict[str, Any]]:
        return [app for app in self.applications if app["name"] == name]


def export_document(gateway: Gateway, ref: Optional[str], with_secrets: bool
                    ) -> Tuple[Dict[str, Any], List[str]]:
    """
    The file for one API (C{ref}: id or context path) or all, and notes for
    the operator (what was masked, that keys are not exported).
    """
    records = [gateway.find(ref)] if ref is not None else list(gateway.apis)
    apis = []
    used: List[str] = []
    masked = 0
    for record in records:
        if with_secrets:
            definition = gateway.definition(record["id"]).to_json(secrets=True)
        else:
            definition = ApiDefinition.from_json(record).to_json(secrets=False)
            masked += _count_masked(definition)
        subscriptions = [{"application": s["applicationName"], "plan": s["plan"]}
                         for s in gateway.subscriptions(record["id"])]
        used.extend(s["application"] for s in subscriptions)
        apis.append({**definition, "state": record["state"], "subscriptions": subscriptions})
    names = {app["name"] for app in gateway.applications} if ref is None else set(used)
    applications = []
    seen = set()
    for app in gateway.applications:
        if app["name"] not in names:
            continue
        if app["name"] in seen:
            raise CtlError(f"two applications are named {app['name']!r}: a file names applications, "
                           "so it cannot tell them apart")
        seen.add(app["name"])
        applications.append({"name": app["name"], "description": app["description"]})
    notes = [KEYS_NOTE]
    if with_secrets:
        notes.insert(0, "the file holds secrets in clear: keep it out of version control or encrypt it")
    elif masked:
        notes.insert(0, f"{masked} secret(s) shown as {SECRET_MASK}: applying the file to this "
                        "gateway keeps the stored ones; another gateway needs --with-secrets or the "
                        "values written in")
    return {"version": FORMAT_VERSION, "apis": apis, "applications": applications}, notes


def _count_masked(definition: Dict[str, Any]) -> int:
    count = sum(1 for plan in definition["plans"]
                if (plan.get("configuration") or {}).get("clientSecret") == SECRET_MASK)
    return count + ((definition.get("backendAuth") or {}).get("value") == SECRET_MASK)
