"""
The web console: static files under C{/ui/} on the admin listener.

The files ship inside the package (C{mcpgated/admin/ui}) and are read once,
when the admin resource is built at startup, so serving them does no file
I/O on the reactor thread. They carry no data and need no token; every data
call the console makes goes to the admin API with the token the operator
signed in with. The C{/ui} paths are kept out of the Klein route map, which
stays exactly the admin API (all of it behind the token but C{/health} and
C{/openapi.json}, all of it in C{/openapi.json}).
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import attrs
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

PREFIX = b"ui"

_TYPES = {
    "html": b"text/html; charset=utf-8",
    "js": b"text/javascript; charset=utf-8",
    "mjs": b"text/javascript; charset=utf-8",
    "css": b"text/css; charset=utf-8",
    "json": b"application/json",
    "svg": b"image/svg+xml",
    "png": b"image/png",
    "ico": b"image/x-icon",
    "txt": b"text/plain; charset=utf-8",
}

# Same-origin only: no inline script or style, no third-party anything, not
# framable. Chart.js draws on a canvas and sets styles through the CSSOM.
CSP = (b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       b"connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
       b"frame-ancestors 'none'")


@attrs.frozen
class StaticFile:
    body: bytes
    content_type: bytes
    etag: bytes


def content_type(name: str) -> bytes:
    base = name.rsplit("/", 1)[-1]
    if base.upper().startswith(("LICENSE", "COPYING", "NOTICE")):
        return _TYPES["txt"]  # vendor/LICENSE.chart.js is a licence, not a script
    return _TYPES.get(base.rsplit(".", 1)[-1].lower(), b"application/octet-stream")


def _walk(folder: Any, prefix: str = "") -> Iterable[Tuple[str, bytes]]:
    for entry in folder.iterdir():
        name = prefix + entry.name
        if entry.is_dir():
            if entry.name != "__pycache__":
                yield from _walk(entry, name + "/")
        elif not entry.name.endswith((".py", ".pyc")):
            yield name, entry.read_bytes()


def load_files() -> Dict[str, StaticFile]:
    """
    Every file of the console, by its path under C{/ui/}.
    """
    folder = resources.files("mcpgated.admin") / "ui"
    files = {}
    for name, body in _walk(folder):
        etag = b'"' + hashlib.sha256(body).hexdigest()[:32].encode("ascii") + b'"'
        files[name] = StaticFile(body, content_type(name), etag)
    return files


class ConsoleResource(Resource):
    """
    C{/ui/...}: the preloaded files, GET and HEAD only.
    """

    isLeaf = True

    def __init__(self, files: Dict[str, StaticFile]) -> None:
        super().__init__()
        self.files = files

    def render(self, request: IRequest) -> bytes:
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"referrer-policy", b"no-referrer")
        request.setHeader(b"x-frame-options", b"DENY")
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"allow", b"GET, HEAD")
            request.setHeader(b"content-type", _TYPES["txt"])
            return b"method not allowed\n"
        segments: List[bytes] = list(request.postpath[1:])  # after "ui"
        if not segments:
            # /ui -> /ui/ (relative, so it also works under a path prefix)
            request.setResponseCode(301)
            request.setHeader(b"location", b"ui/")
            return b""
        name = b"/".join(segments).decode("utf-8", "replace") or "index.html"
        found = self.files.get(name)
        if found is None:
            request.setResponseCode(404)
            request.setHeader(b"content-type", _TYPES["txt"])
            return b"no such file in the web console\n"
        request.setHeader(b"content-type", found.content_type)
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"etag", found.etag)
        if found.content_type.startswith(b"text/html"):
            request.setHeader(b"content-security-policy", CSP)
        if found.etag in (request.getHeader(b"if-none-match") or b"").replace(b" ", b"").split(b","):
            request.setResponseCode(304)
            return b""
        if request.method == b"HEAD":
            request.setHeader(b"content-length", str(len(found.body)).encode("ascii"))
            return b""
        return found.body


class AdminRoot(Resource):
    """
    The admin listener's root: C{/ui} to the console, the rest to the admin
    API (which sees the request as if it were the root itself).
    """

    isLeaf = True

    def __init__(self, api: IResource, console: Optional[ConsoleResource] = None) -> None:
        super().__init__()
        self.api = api
        self.console = console if console is not None else ConsoleResource(load_files())

    def render(self, request: IRequest) -> Union[bytes, int]:
        if request.postpath and request.postpath[0] == PREFIX:
            return self.console.render(request)
        answer: Union[bytes, int] = self.api.render(request)  # bytes, or NOT_DONE_YET
        return answer


def gateway_addresses(listeners: Iterable[Any], public_url: Optional[str]) -> Dict[str, Any]:
    """
    Where MCP clients reach the gateway, for the console's "point a client
    at ..." hints: the configured public URL and each bound gateway listener
    (C{host} is L{None} for a wildcard address: the console uses the host
    it was loaded from).
    """
    found = []
    for listener in listeners:
        if listener.role != "gateway" or listener.port is None:
            continue
        address = listener.port.getHost()
        host = getattr(address, "host", None)
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 -- reads a bound address, binds nothing
            host = None
        kind = listener.description.split(":", 1)[0].lower()
        found.append({"scheme": "https" if kind in ("ssl", "tls") else "http",
                      "host": host, "port": getattr(address, "port", None)})
    return {"publicUrl": public_url, "listeners": found}
