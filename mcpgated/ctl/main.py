"""
The command line: C{mcpgatedctl [connection] COMMAND ...}.

    mcpgatedctl apis list
    mcpgatedctl export [--api ID|--all] [--format yaml|json] [--with-secrets] [-o FILE]
    mcpgatedctl import -f FILE [--dry-run]
    mcpgatedctl apply -f FILE [--dry-run] [--prune]
    mcpgatedctl logs [--api ID] [--follow]

Connection: C{--admin-url} (else C{MCPGATED_ADMIN_URL}, else the admin port
of C{--ports-file}, else http://127.0.0.1:8083), the token from
C{--token-file} or C{MCPGATED_ADMIN_TOKEN} (never an argument: arguments are
visible to every user of the machine). Errors are one line on stderr, exit 1
(2 for a wrong command line).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, NoReturn, Optional, Sequence

from mcpgated import __version__
from mcpgated.ctl import logs as _logs
from mcpgated.ctl.client import AdminClient, CtlError, admin_token, admin_url
from mcpgated.ctl.documents import dump, read_document
from mcpgated.ctl.export import Gateway, export_document
from mcpgated.ctl.reconcile import NOTE, Change, execute, plan

PROG = "mcpgatedctl"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # no abbreviations: --token must not mean --token-file
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        # one line, not the usage block: --help shows that
        self.exit(2, f"{self.prog}: error: {message} (see {PROG} --help)\n")


def _connection(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default: Any = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("connection")
    group.add_argument("--admin-url", default=default, metavar="URL",
                       help="the admin API (default: $MCPGATED_ADMIN_URL, else the admin port of "
                            "--ports-file, else http://127.0.0.1:8083)")
    group.add_argument("--ports-file", default=default, metavar="FILE",
                       help="the daemon's [daemon] ports_file, to find the admin port")
    group.add_argument("--token-file", default=default, metavar="FILE",
                       help="file holding the admin token (default: $MCPGATED_ADMIN_TOKEN)")


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog=PROG, description="The mcpgated gateway's configuration as code, over its "
                                         "admin API.")
    top.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _connection(top, suppress=False)
    commands = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    apis = commands.add_parser("apis", help="list the gateway's APIs")
    apis_commands = apis.add_subparsers(dest="apis_command", metavar="list", parser_class=_Parser)
    apis_commands.required = True
    listing = apis_commands.add_parser("list", help="id, state, context path, name and version")
    listing.add_argument("--json", action="store_true", help="the admin API's JSON")
    _connection(listing, suppress=True)

    export = commands.add_parser(
        "export", help="write APIs (definitions, plans, rules), their subscriptions and the "
                       "applications as a file apply and import read")
    which = export.add_mutually_exclusive_group()
    which.add_argument("--api", metavar="ID", help="one API, by id or context path (with the "
                                                   "applications its subscriptions name)")
    which.add_argument("--all", action="store_true", help="every API and application (default)")
    export.add_argument("--format", choices=("yaml", "json"), default=None,
                        help="default: from -o's extension, else yaml")
    export.add_argument("--with-secrets", action="store_true",
                        help="clientSecret and backendAuth.value in clear (masked otherwise); "
                             "API keys are never exported")
    export.add_argument("-o", "--output", metavar="FILE", help="write FILE (default: stdout)")
    _connection(export, suppress=True)

    for name, text in (("import", ("create what the file names and the gateway lacks; change "
                                   "nothing that is there")),
                       ("apply", ("make the gateway match the file: create, update, deploy, start "
                                  "and stop (remove what the file lacks only with --prune)"))):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("-f", "--file", required=True, metavar="FILE",
                             help="YAML or JSON (- for stdin)")
        command.add_argument("--dry-run", action="store_true",
                             help="print the changes, field by field, and make none")
        if name == "apply":
            command.add_argument("--prune", action="store_true",
                                 help="also stop and delete the APIs, close the subscriptions and "
                                      "delete the applications the file does not name")
        _connection(command, suppress=True)

    logs = commands.add_parser("logs", help="the exchange log, oldest first")
    logs.add_argument("--api", metavar="ID", help="one API, by id or context path")
    logs.add_argument("--follow", "-F", action="store_true", help="keep polling for new records")
    logs.add_argument("--limit", type=int, default=20, help="records shown first (1-500, default 20)")
    logs.add_argument("--interval", type=float, default=1.0, help="seconds between polls (--follow)")
    logs.add_argument("--json", action="store_true", help="one JSON object per line")
    _connection(logs, suppress=True)
    return top


def main(argv: Optional[Sequence[str]] = None, environ: Optional[Mapping[str, str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(arg == "--token" or arg.startswith("--token=") for arg in argv):
        # said without echoing the argument: it may be the token
        _err(f"{PROG}: error: the token is never an argument (every user of the machine sees "
             "arguments): use --token-file FILE or MCPGATED_ADMIN_TOKEN")
        return 2
    args = parser().parse_args(argv)
    env = os.environ if environ is None else environ
    try:
        client = AdminClient(admin_url(args.admin_url, args.ports_file, env),
                             admin_token(args.token_file, env))
        return _COMMANDS[args.command](client, args)
    except CtlError as e:
        _err(f"{PROG}: error: {e}")
        return 1
    except KeyboardInterrupt:
        return 130 if args.command != "logs" else 0
    except BrokenPipeError:
        return 0


def console() -> NoReturn:
    """
    The C{mcpgatedctl} entry point.
    """
    sys.exit(main())


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _apis(client: AdminClient, args: argparse.Namespace) -> int:
    apis: List[Dict[str, Any]] = client.get("/apis")["data"]
    if args.json:
        _out(json.dumps(apis, indent=2, ensure_ascii=False))
        return 0
    rows = [("ID", "STATE", "DEPLOYMENT", "CONTEXT PATH", "NAME", "VERSION")]
    rows += [(api["id"], api["state"], api["deploymentState"], api["contextPath"], api["name"],
              api["version"]) for api in apis]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        _out("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False))
             + "  " + str(row[-1]))
    return 0


def _export(client: AdminClient, args: argparse.Namespace) -> int:
    document, notes = export_document(Gateway.read(client), args.api, args.with_secrets)
    fmt = args.format or ("json" if (args.output or "").endswith(".json") else "yaml")
    text = dump(document, fmt, header="mcpgatedctl export (mcpgatedctl apply -f FILE)\n"
                + "\n".join(notes))
    if args.output:
        path = Path(args.output)
        try:
            # secrets or not, the file is the operator's: 0600 like the admin token
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
                stream.write(text)
        except OSError as e:
            raise CtlError(f"-o {args.output}: {e.strerror}") from None
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    for note in notes:
        _err(f"note: {note}")
    return 0


def _show(change: Change) -> None:
    for text in change.lines():
        _out(text)


def _reconcile(client: AdminClient, args: argparse.Namespace) -> int:
    document = read_document(args.file)
    importing = args.command == "import"
    changes = plan(document, Gateway.read(client), prune=getattr(args, "prune", False),
                   update=not importing)
    created, updated, removed = changes.counts()
    for change in changes.items:
        if change.sign == NOTE or args.dry_run:
            _show(change)
    if not created + updated + removed:
        _out(f"no changes: the gateway already has what {args.file} says")
        return 0
    counts = f"{created} to create, {updated} to update, {removed} to remove"
    if args.dry_run:
        _out(f"dry run: {counts}; nothing was changed")
        return 0
    execute(changes, client, _show)
    _out(f"done: {created} created, {updated} updated, {removed} removed")
    return 0


def _logs_command(client: AdminClient, args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= _logs.PAGE:
        raise CtlError(f"--limit must be from 1 to {_logs.PAGE}")
    if args.interval <= 0:
        raise CtlError("--interval must be more than 0 seconds")
    api_id = Gateway.read(client).find(args.api)["id"] if args.api else None
    entries = _logs.recent(client, api_id, args.limit)
    for entry in entries:
        _out(_logs.show(entry, args.json))
    if args.follow:
        last = max((int(entry["id"]) for entry in entries), default=0)
        _logs.follow(client, api_id, last, args.interval,
                     lambda entry: _out(_logs.show(entry, args.json)))
    return 0


_COMMANDS = {"apis": _apis, "export": _export, "import": _reconcile, "apply": _reconcile,
             "logs": _logs_command}
