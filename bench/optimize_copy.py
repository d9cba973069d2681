#!/usr/bin/env python3
"""
Copy mcpgated/ to another folder and apply the hot-path changes that
bench/README.md recommends, so each can be measured against the working
tree without touching it:

    python3 bench/optimize_copy.py /tmp/opt-form  form
    python3 bench/optimize_copy.py /tmp/opt-all   form trusted logjson host
    python3 bench/run.py --patched form=/tmp/opt-form --patched all=/tmp/opt-all

Each change is a set of exact text replacements, applied all or none; one
whose text is no longer in the tree is reported and skipped (the code moved
on, or the change is already in: all five were merged in 81742da).
"""

import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHANGES = {
    # twisted.web.server.Request.__init__ copies the *site's* flag onto every
    # request, so CappedRequest's class attribute never takes effect and each
    # POST's Content-Type goes through email.message.
    "form": [(
        "mcpgated/site.py",
        "        Site.__init__(self, resource)\n",
        "        Site.__init__(self, resource, parsePOSTFormSubmission=False)\n",
    )],
    # No trusted proxies (the default): do not parse the peer address with
    # ipaddress twice per request to find that out.
    "trusted": [(
        "mcpgated/proxy/headers.py",
        "def is_trusted(address: Optional[str], networks: Iterable) -> bool:\n"
        "    if not address:\n",
        "def is_trusted(address: Optional[str], networks: Iterable) -> bool:\n"
        "    if not address or not networks:\n",
    )],
    # json.dumps with options builds a JSONEncoder on every call.
    "logjson": [
        ("mcpgated/logs.py",
         '        line = json.dumps(fields, separators=(",", ":"), default=str) + "\\n"\n',
         '        line = _ENCODER.encode(fields) + "\\n"\n'),
        ("mcpgated/logs.py",
         'DAEMON_LOG = "mcpgated.log"\n',
         'DAEMON_LOG = "mcpgated.log"\n'
         '_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)\n'),
    ],
    # Agent copies the whole Headers object (re-validating every name and
    # value) just to add Host when the caller did not set it.
    "host": [(
        "mcpgated/proxy/resource.py",
        "        headers = upstream_request_headers(request.requestHeaders, peer, origin,\n"
        "                                           self.trusted_proxies)\n"
        "        body = request.content.getvalue()\n",
        "        headers = upstream_request_headers(request.requestHeaders, peer, origin,\n"
        "                                           self.trusted_proxies)\n"
        "        headers.setRawHeaders(b\"host\", [backend.origin.partition(\"://\")[2]"
        ".encode(\"latin-1\")])\n"
        "        body = request.content.getvalue()\n",
    )],
    # Exchange -> Relay -> done/on_data closures -> Exchange is a reference
    # cycle: every exchange (request, headers, tracker, ...) waited for the
    # cyclic GC instead of being freed when it ended.
    "cycles": [(
        "mcpgated/proxy/resource.py",
        "                     path=exchange.request.path, reason=reason.getErrorMessage())\n"
        "        self._log(exchange, outcome)\n",
        "                     path=exchange.request.path, reason=reason.getErrorMessage())\n"
        "        self._log(exchange, outcome)\n"
        "        exchange.relay = None\n",
    ), (
        # Relay -> WatchedProducer -> lambda -> Relay: the same, per stream.
        "mcpgated/proxy/relay.py",
        "        self.producer = WatchedProducer(self.transport, self.clock, lambda: self._on_data(0))\n",
        "        self.producer = WatchedProducer(self.transport, self.clock, partial(self._on_data, 0))\n",
    ), (
        "mcpgated/proxy/relay.py",
        "from typing import Any, Callable, Optional\n",
        "from functools import partial\nfrom typing import Any, Callable, Optional\n",
    )],
}


def apply(root, name):
    """
    Apply one change to the tree at root, all its replacements or none.
    Returns whether it was applied.
    """
    texts = {}
    for path, old, new in CHANGES[name]:
        text = texts.get(path, (root / path).read_text())
        if text.count(old) != 1:
            return False
        texts[path] = text.replace(old, new)
    for path, text in texts.items():
        (root / path).write_text(text)
    return True


def main(argv):
    if len(argv) < 1:
        sys.exit(__doc__)
    dest, names = Path(argv[0]), argv[1:]
    src = REPO / "mcpgated"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest / "mcpgated", ignore=shutil.ignore_patterns("__pycache__"))
    for name in names:
        if apply(dest, name):
            print(f"{name}: applied")
        else:
            print(f"{name}: not applied (the code changed; already done?)", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
