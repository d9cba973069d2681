"""
The files C{mcpgatedctl} reads and writes, in JSON or YAML:

    version: 1
    apis:
      - name: Everything          # an API's admin JSON (its definition) ...
        version: "1.0"
        contextPath: /everything  # ... matched on a gateway by contextPath
        backend: http://127.0.0.1:3001/mcp
        plans: [{name: Keyless, security: KEY_LESS}]
        state: STARTED            # deployed and started (default), or STOPPED
        subscriptions:            # open subscriptions: application name, plan
          - {application: Acme, plan: Gold}
    applications:
      - {name: Acme, description: ""}

L{read_document} checks the shape (each definition is validated against the
gateway's stored one when the changes are worked out); L{dump} writes one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import attrs
import yaml

from mcpgated.definitions import InvalidField, normalize_context_path, read_string
from mcpgated.model import STARTED, STOPPED
from mcpgated.subscriptions import parse_application

from mcpgated.ctl.client import CtlError

FORMAT_VERSION = 1
_TOP = {"version", "apis", "applications"}
_STATES = (STARTED, STOPPED)
_READ_ONLY = frozenset({"id", "createdAt", "updatedAt", "deployedAt", "deploymentState",
                        "needsRedeploy", "deployed", "effectiveAudience"})


@attrs.frozen
class DesiredSubscription:
    application: str
    plan: str


@attrs.frozen
class DesiredApi:
    """
    One API of a file: its definition as written (masked secrets included:
    the gateway keeps the stored ones), the state it should be in and its
    open subscriptions.
    """

    where: str  # apis[N]
    context_path: str  # normalised: the key that matches it on a gateway
    body: Dict[str, Any] = attrs.field(hash=False)
    state: str
    subscriptions: Tuple[DesiredSubscription, ...]

    @property
    def label(self) -> str:
        return api_label(self.body.get("name"), self.body.get("version"), self.context_path)


@attrs.frozen
class DesiredApplication:
    name: str
    description: str


@attrs.frozen
class Document:
    apis: Tuple[DesiredApi, ...]
    applications: Tuple[DesiredApplication, ...]


def api_label(name: Any, version: Any, context_path: str) -> str:
    """
    How messages name an API: C{Everything 1.0 (/everything)}.
    """
    return f"{name} {version} ({context_path})"


def read_document(path: str) -> Document:
    """
    A file, JSON or YAML (JSON is YAML, but JSON's own parser names the
    place of its errors better).

    @raise CtlError: naming the file and the place or field that is wrong.
    """
    try:
        text = Path(path).read_text("utf-8") if path != "-" else _stdin()
    except OSError as e:
        raise CtlError(f"{path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise CtlError(f"{path}: not UTF-8 text") from None
    return parse_document(text, path)


def _stdin() -> str:
    return sys.stdin.read()


def parse_document(text: str, path: str = "<file>") -> Document:
    data = _load(text, path)
    try:
        return _document(data)
    except InvalidField as e:
        raise CtlError(f"{path}: {e.message}") from None


def _load(text: str, path: str) -> Any:
    if path.endswith(".json") or text.lstrip().startswith(("{", "[")):
        try:
            return json.loads(text)
        except ValueError as e:
            raise CtlError(f"{path}: malformed JSON: {e}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        place = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise CtlError(f"{path}: malformed YAML: {place}{problem}") from None


def _document(data: Any) -> Document:
    if not isinstance(data, dict):
        raise InvalidField(None, "the file must hold a mapping with apis (and applications)")
    unknown = sorted(str(key) for key in set(data) - _TOP)
    if unknown:
        raise InvalidField(unknown[0], f"{unknown[0]} is not a known top-level field "
                                       f"(known: {', '.join(sorted(_TOP))})")
    if data.get("version", FORMAT_VERSION) != FORMAT_VERSION:
        raise InvalidField("version", f"version must be {FORMAT_VERSION}")
    apis = _list(data, "apis")
    applications = _list(data, "applications")
    desired_apps = tuple(_application(item, f"applications[{i}]") for i, item in enumerate(applications))
    names: Dict[str, str] = {}
    for app, where in zip(desired_apps, (f"applications[{i}]" for i in range(len(applications))),
                          strict=True):
        if app.name in names:
            raise InvalidField(where, f"{where}: application {app.name!r} is also {names[app.name]} "
                                      "(names identify applications)")
        names[app.name] = where
    desired_apis = tuple(_api(item, f"apis[{i}]") for i, item in enumerate(apis))
    paths: Dict[str, str] = {}
    for api in desired_apis:
        if api.context_path in paths:
            raise InvalidField(api.where, f"{api.where} ({api.body.get('name')}): contextPath "
                               f"{api.context_path} is also {paths[api.context_path]}'s "
                               "(the context path identifies an API)")
        paths[api.context_path] = api.where
    return Document(desired_apis, desired_apps)


def _list(data: Dict[str, Any], field: str) -> List[Any]:
    value = data.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidField(field, f"{field} must be a list")
    return value


def _application(item: Any, where: str) -> DesiredApplication:
    try:
        name, description = parse_application(item)
    except InvalidField as e:
        raise InvalidField(where, f"{where}: {e.message}") from None
    return DesiredApplication(name, description)


def _api(item: Any, where: str) -> DesiredApi:
    if not isinstance(item, dict):
        raise InvalidField(where, f"{where} must be a mapping (an API's definition)")
    # what the admin API answers but never reads: a GET body can be applied
    body = {key: value for key, value in item.items() if key not in _READ_ONLY}
    name = body.get("name")
    label = f"{where} ({name})" if isinstance(name, str) else where
    state = body.pop("state", STARTED)
    if state not in _STATES:
        raise InvalidField(f"{where}.state", f"{label}: state must be STARTED or STOPPED")
    raw_subscriptions = body.pop("subscriptions", None) or []
    if not isinstance(raw_subscriptions, list):
        raise InvalidField(f"{where}.subscriptions", f"{label}: subscriptions must be a list")
    subscriptions = []
    for index, sub in enumerate(raw_subscriptions):
        field = f"subscriptions[{index}]"
        if not isinstance(sub, dict) or set(sub) - {"application", "plan"}:
            raise InvalidField(f"{where}.{field}", f"{label}: {field} must be "
                               "{application: <application name>, plan: <plan name>}")
        try:
            subscriptions.append(DesiredSubscription(read_string(sub, "application", max_length=100),
                                                     read_string(sub, "plan", max_length=100)))
        except InvalidField as e:
            raise InvalidField(f"{where}.{field}", f"{label}: {field}.{e.message}") from None
    try:
        context_path = normalize_context_path(read_string(body, "contextPath", max_length=200))
    except InvalidField as e:
        raise InvalidField(f"{where}.contextPath", f"{label}: {e.message}") from None
    return DesiredApi(where, context_path, body, state, tuple(subscriptions))


def field_error(api: DesiredApi, error: InvalidField) -> str:
    """
    A definition's error as one line naming the API and the field.
    """
    message = error.message
    if error.field and not message.startswith(error.field):
        message = f"{error.field}: {message}"
    if error.field == "version" and isinstance(api.body.get("version"), (int, float)):
        message += " (quote it in YAML: version: \"1.0\")"
    return f"{api.where} {api.label}: {message}"


def dump(document: Dict[str, Any], fmt: str, header: Optional[str] = None) -> str:
    """
    A document as JSON or YAML text (YAML with C{header} as a comment).
    """
    if fmt == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False,
                          width=100)
    if header:
        text = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + text
    return text
