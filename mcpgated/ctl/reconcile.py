"""
The changes that bring a gateway to a file (L{plan}), shown field by field
(L{render}) and made over the admin API (L{execute}).

APIs are matched by their context path (what clients use, and what the
gateway keeps unique among deployed APIs; ids differ between gateways),
applications by name, subscriptions by application name and plan. A file's
definition is validated and compared with the stored one as the admin API
would store it (L{mcpgated.definitions.parse_definition} with the stored
definition: a masked secret keeps the stored one), so applying the same
file twice changes nothing.

C{apply} creates, updates, deploys, starts and stops; with C{prune} it also
closes subscriptions and deletes APIs and applications the file does not
name (the APIs first: one moved to a path that overlaps its old one is
created once the old one is gone). C{import} only creates what is not there.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Optional, Tuple

import attrs

from mcpgated.definitions import InvalidField, parse_definition
from mcpgated.model import STARTED, ApiDefinition
from mcpgated.policy.plans import SECRET_MASK

from mcpgated.ctl.client import AdminClient, AdminError, CtlError, quoted
from mcpgated.ctl.documents import DesiredApi, Document, api_label, field_error
from mcpgated.ctl.export import Gateway

CREATE, UPDATE, REMOVE, NOTE = "+", "~", "-", "!"
_SECRET_PATHS = ("backendAuth.value",)
_SECRET_KEYS = ("clientSecret",)


@attrs.define
class Change:
    """
    One change: its sign (C{+ ~ -}, or C{!} for a note that changes
    nothing), what it is about, what is done, the field-by-field diff, and
    the calls that make it (run in order; a call may read the ids earlier
    ones learnt from C{ids}).
    """

    sign: str
    subject: str
    action: str
    fields: List[str] = attrs.field(factory=list)
    calls: List[Callable[[AdminClient, Dict[str, str]], None]] = attrs.field(factory=list)

    def lines(self) -> List[str]:
        head = f"{self.sign} {self.subject}: {self.action}"
        return [head, *(f"    {line}" for line in self.fields)]


@attrs.define
class Changes:
    """
    The changes in order, and the ids of what the file names that the
    gateway already has (C{"app:<name>"}, C{"api:<context path>"}).
    """

    items: List[Change]
    ids: Dict[str, str]

    def counts(self) -> Tuple[int, int, int]:
        """
        How many to create, update and remove.
        """
        signs = [change.sign for change in self.items]
        return signs.count(CREATE), signs.count(UPDATE), signs.count(REMOVE)


def plan(document: Document, gateway: Gateway, *, prune: bool = False,
         update: bool = True) -> Changes:
    """
    The changes, in the order they are made: applications, APIs (create,
    update, state), subscriptions, then what C{prune} removes.

    @raise CtlError: for a definition the gateway would refuse, naming the
        API and the field, or a subscription naming an unknown application.
    """
    changes: List[Change] = []
    ids: Dict[str, str] = {}  # "app:<name>" / "api:<path>" -> id on the gateway

    known_apps = set()
    for app in document.applications:
        known_apps.add(app.name)
        existing = gateway.applications_named(app.name)
        if len(existing) > 1:
            raise CtlError(f"two applications on the gateway are named {app.name!r}: "
                           "a file cannot tell them apart; delete one")
        if existing:
            ids[f"app:{app.name}"] = existing[0]["id"]
            if existing[0]["description"] != app.description:
                changes.append(Change(NOTE, f"application {app.name}", "description differs; the "
                                      "admin API cannot edit an application (left as it is)"))
            continue
        changes.append(Change(CREATE, f"application {app.name}", "create",
                              calls=[_create_application(app.name, app.description)]))

    if prune:
        changes.extend(_pruned_apis(document, gateway))
    subscription_changes: List[Change] = []
    for api in document.apis:
        current = gateway.by_context_path(api.context_path)
        for sub in api.subscriptions:
            if sub.application not in known_apps and not gateway.applications_named(sub.application):
                raise CtlError(f"{api.where} {api.label}: subscription to plan {sub.plan}: "
                               f"application {sub.application!r} is neither in the file's "
                               "applications nor on the gateway")
            if sub.application not in known_apps:
                ids.setdefault(f"app:{sub.application}",
                               gateway.applications_named(sub.application)[0]["id"])
        if current is None:
            changes.extend(_create_api(api))
            open_subs: List[Dict[str, Any]] = []
        else:
            ids[f"api:{api.context_path}"] = current["id"]
            if update:
                changes.extend(_update_api(api, current, gateway))
            else:
                changes.append(Change(NOTE, f"api {api.label}", "is on the gateway (id "
                                      f"{current['id']}): left as it is (apply updates it)"))
            open_subs = gateway.subscriptions(current["id"])
        have = {(s["applicationName"], s["plan"]): s for s in open_subs}
        wanted = set()
        for sub in api.subscriptions:
            wanted.add((sub.application, sub.plan))
            if (sub.application, sub.plan) in have:
                continue
            subscription_changes.append(Change(
                CREATE, f"subscription {sub.application} -> {api.context_path} plan {sub.plan}",
                "create", calls=[_create_subscription(api.context_path, sub.application, sub.plan)]))
        if prune and current is not None:
            for (app_name, plan_name), extra in have.items():
                if (app_name, plan_name) not in wanted:
                    subscription_changes.append(Change(
                        REMOVE, f"subscription {app_name} -> {api.context_path} plan {plan_name}",
                        "close (its keys are revoked)", calls=[_close(current["id"], extra["id"])]))
    changes.extend(subscription_changes)
    if prune:
        changes.extend(_pruned_applications(document, gateway))
    return Changes(changes, ids)


def _validated(api: DesiredApi, previous: Optional[ApiDefinition]) -> ApiDefinition:
    try:
        return parse_definition(api.body, previous)
    except InvalidField as e:
        message = field_error(api, e)
        if previous is None and SECRET_MASK in json.dumps(api.body):
            message += (f" (the file has a secret masked as {SECRET_MASK}: export with "
                        "--with-secrets or write the value in)")
        raise CtlError(message) from None


def _create_api(api: DesiredApi) -> List[Change]:
    _validated(api, None)  # refused before anything is changed
    subject = f"api {api.label}"
    changes = [Change(CREATE, subject, "create", calls=[_post_api(api)])]
    if api.state == STARTED:
        changes.append(Change(CREATE, subject, "deploy and start",
                              calls=[_action(api.context_path, "_deploy")]))
    return changes


def _update_api(api: DesiredApi, current: Dict[str, Any], gateway: Gateway) -> List[Change]:
    stored = gateway.definition(current["id"])
    wanted = _validated(api, stored)
    subject = f"api {api.label}"
    changes = []
    differs = wanted != stored
    if differs:
        changes.append(Change(UPDATE, subject, "update the definition",
                              fields=field_diff(stored.to_json(), wanted.to_json()),
                              calls=[_put_api(api, current["id"])]))
    if api.state == STARTED:
        if differs or current["deploymentState"] != "DEPLOYED":
            changes.append(Change(UPDATE, subject, "deploy and start" if current["state"] != STARTED
                                  else "deploy (make the stored definition live)",
                                  calls=[_action(api.context_path, "_deploy")]))
        elif current["state"] != STARTED:
            changes.append(Change(UPDATE, subject, "start", calls=[_action(api.context_path, "_start")]))
    elif current["state"] == STARTED:
        changes.append(Change(UPDATE, subject, "stop", calls=[_action(api.context_path, "_stop")]))
    return changes


def _pruned_apis(document: Document, gateway: Gateway) -> List[Change]:
    """
    The APIs the file does not name: stopped, their subscriptions closed,
    deleted; before the file's APIs are created and deployed, so that one
    moved to a path that overlaps its old one can be.
    """
    changes: List[Change] = []
    paths = {api.context_path for api in document.apis}
    for current in gateway.apis:
        if current["contextPath"] in paths:
            continue
        subject = f"api {api_label(current['name'], current['version'], current['contextPath'])}"
        steps = []
        calls: List[Callable[[AdminClient, Dict[str, str]], None]] = []
        api_id = current["id"]
        if current["state"] == STARTED:
            steps.append("stop")
            calls.append(_by_id(api_id, "_stop"))
        subs = gateway.subscriptions(api_id)
        if subs:
            steps.append(f"close {len(subs)} subscription(s)")
            calls.extend(_close(api_id, sub["id"]) for sub in subs)
        steps.append("delete")
        calls.append(_delete_api(api_id))
        changes.append(Change(REMOVE, subject, ", ".join(steps), calls=calls))
    return changes


def _pruned_applications(document: Document, gateway: Gateway) -> List[Change]:
    changes: List[Change] = []
    names = {app.name for app in document.applications}
    referenced = {sub.application for api in document.apis for sub in api.subscriptions}
    for app in gateway.applications:
        if app["name"] not in names and app["name"] not in referenced:
            changes.append(Change(REMOVE, f"application {app['name']}",
                                  "delete (with its subscriptions and keys)",
                                  calls=[_delete_application(app["id"])]))
    return changes


# --- the calls ----------------------------------------------------------------------


def _create_application(name: str, description: str) -> Callable[[AdminClient, Dict[str, str]], None]:
    def call(client: AdminClient, ids: Dict[str, str]) -> None:
        ids[f"app:{name}"] = client.post("/applications", {"name": name, "description": description})["id"]
    return call


def _post_api(api: DesiredApi) -> Callable[[AdminClient, Dict[str, str]], None]:
    def call(client: AdminClient, ids: Dict[str, str]) -> None:
        ids[f"api:{api.context_path}"] = client.post("/apis", api.body)["id"]
    return call


def _put_api(api: DesiredApi, api_id: str) -> Callable[[AdminClient, Dict[str, str]], None]:
    def call(client: AdminClient, ids: Dict[str, str]) -> None:
        client.put(f"/apis/{quoted(api_id)}", api.body)
    return call


def _action(context_path: str, action: str) -> Callable[[AdminClient, Dict[str, str]], None]:
    def call(client: AdminClient, ids: Dict[str, str]) -> None:
        client.post(f"/apis/{quoted(ids[f'api:{context_path}'])}/{action}")
    return call


def _by_id(api_id: str, action: str) -> Callable[[AdminClient, Dict[str, str]], None]:
    def call(client: AdminClient, ids: Dict[str, str]) -> None:
        client.post(f"/apis/{quoted(api_id)}/{action}")
    return call


def _create_subscription(context_path: str, application: str, plan_name: str
                         ) -> Callable[[AdminClient, Dict[str, str]], None]:
    def call(client: AdminClient, ids: Dict[str, str]) -> None:
        client.post(f"/apis/{quoted(ids[f'api:{context_path}'])}/subscriptions",
                    {"application": ids[f"app:{application}"], "plan": plan_name})
    return call


def _close(api_id: str, subscription_id: str) -> Callable[[AdminClient, Dict[str, str]], None]:
    def call(client: AdminClient, ids: Dict[str, str]) -> None:
        client.post(f"/apis/{quoted(api_id)}/subscriptions/{quoted(subscription_id)}/_close")
    return call


def _delete_api(api_id: str) -> Callable[[AdminClient, Dict[str, str]], None]:
    def call(client: AdminClient, ids: Dict[str, str]) -> None:
        client.delete(f"/apis/{quoted(api_id)}")
    return call


def _delete_application(application_id: str) -> Callable[[AdminClient, Dict[str, str]], None]:
    def call(client: AdminClient, ids: Dict[str, str]) -> None:
        client.delete(f"/applications/{quoted(application_id)}")
    return call


def execute(changes: Changes, client: AdminClient, progress: Callable[[Change], None]) -> None:
    """
    Make the changes in order, saying each as it is done.

    @raise CtlError: at the first refusal, naming the change (the ones
        before it are made: applying the file again finishes the work).
    """
    ids = dict(changes.ids)
    for change in changes.items:
        if change.sign == NOTE:
            continue
        try:
            for call in change.calls:
                call(client, ids)
        except AdminError as e:
            raise CtlError(f"{change.subject}: {change.action}: {e}") from None
        progress(change)


# --- the field-by-field diff ----------------------------------------------------------

_MISSING: Any = object()


def field_diff(before: Dict[str, Any], after: Dict[str, Any]) -> List[str]:
    """
    C{field: old -> new} for each field that differs: objects by key, lists
    of objects by index, anything else (lists of names, a list that was
    empty) as one value; secrets never shown.
    """
    lines: List[str] = []
    _diff(before, after, "", lines)
    return lines


def _diff(old: Any, new: Any, path: str, lines: List[str]) -> None:
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict) and old and new:
        for key in [*old, *(key for key in new if key not in old)]:
            _diff(old.get(key, _MISSING), new.get(key, _MISSING), f"{path}.{key}" if path else key,
                  lines)
    elif _objects(old) and _objects(new):
        for index in range(max(len(old), len(new))):
            _diff(old[index] if index < len(old) else _MISSING,
                  new[index] if index < len(new) else _MISSING, f"{path}[{index}]", lines)
    elif _secret(path):
        lines.append(f"{path}: (secret changed)")
    else:
        lines.append(f"{path}: {_show(old, path)} -> {_show(new, path)}")


def _objects(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)


def _secret(path: str) -> bool:
    return path in _SECRET_PATHS or path.rsplit(".", 1)[-1] in _SECRET_KEYS


def _masked(value: Any, path: str) -> Any:
    if _secret(path) and value is not None:
        return SECRET_MASK
    if isinstance(value, dict):
        return {key: _masked(item, f"{path}.{key}" if path else key) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item, f"{path}[{index}]") for index, item in enumerate(value)]
    return value


def _show(value: Any, path: str) -> str:
    if value is _MISSING:
        return "(none)"
    return json.dumps(_masked(value, path), ensure_ascii=False)
