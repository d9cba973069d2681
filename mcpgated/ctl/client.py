"""
The admin API as C{mcpgatedctl} reaches it: where it is (C{--admin-url},
C{MCPGATED_ADMIN_URL} or the daemon's ports file), the token (a file or
C{MCPGATED_ADMIN_TOKEN}, never the command line), and JSON calls whose
refusals become one L{AdminError}.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Mapping, Optional

import attrs

DEFAULT_ADMIN_URL = "http://127.0.0.1:8083"  # [admin] listen's default
URL_ENV = "MCPGATED_ADMIN_URL"
TOKEN_ENV = "MCPGATED_ADMIN_TOKEN"  # noqa: S105 -- the variable's name, not a token
TIMEOUT = 30.0


class CtlError(Exception):
    """
    What stops a command, said in one line.
    """


class AdminError(CtlError):
    """
    The admin API refused a call: its status, message and the field it
    names (C{{"error": ..., "field": ...}}).
    """

    def __init__(self, status: int, message: str, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def __str__(self) -> str:
        where = f" ({self.field})" if self.field else ""
        return f"the admin API answered {self.status}{where}: {self.message}"


def admin_url(given: Optional[str], ports_file: Optional[str],
              environ: Mapping[str, str]) -> str:
    """
    The admin API's base URL: C{--admin-url}, else C{MCPGATED_ADMIN_URL},
    else the first admin port of the daemon's ports file on loopback, else
    the default listener.
    """
    url = given or environ.get(URL_ENV)
    if url:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CtlError(f"--admin-url {url!r} is not an http:// or https:// URL")
        return url.rstrip("/")
    if ports_file:
        try:
            ports = json.loads(Path(ports_file).read_text("utf-8"))
            port = int(ports["admin"][0])
        except OSError as e:
            raise CtlError(f"--ports-file {ports_file}: {e.strerror}") from None
        except (ValueError, KeyError, IndexError, TypeError):
            raise CtlError(f"--ports-file {ports_file}: not the daemon's ports file "
                           '({"admin": [port], ...})') from None
        return f"http://127.0.0.1:{port}"
    return DEFAULT_ADMIN_URL


def admin_token(token_file: Optional[str], environ: Mapping[str, str]) -> str:
    """
    The admin token from C{--token-file}, else C{MCPGATED_ADMIN_TOKEN}.
    """
    if token_file:
        try:
            token = Path(token_file).read_text("utf-8").strip()
        except OSError as e:
            raise CtlError(f"--token-file {token_file}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise CtlError(f"--token-file {token_file}: not a text file") from None
        if not token:
            raise CtlError(f"--token-file {token_file} is empty")
        return token
    token = environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise CtlError(f"no admin token: give --token-file FILE (e.g. var/admin.token) or set "
                       f"{TOKEN_ENV}")
    return token


@attrs.define
class AdminClient:
    """
    JSON calls to the admin API with the bearer token.
    """

    base: str
    token: str = attrs.field(repr=False)
    timeout: float = TIMEOUT

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """
        One call; its JSON answer (L{None} for an empty one).

        @raise AdminError: for an answer of 400 or more.
        @raise CtlError: when the admin API cannot be reached.
        """
        data = None if body is None else json.dumps(body).encode("utf-8")
        # the base URL's scheme is checked (http or https) by admin_url
        request = urllib.request.Request(self.base + path, data=data, method=method)  # noqa: S310
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 -- http(s) checked
                raw = response.read()
        except urllib.error.HTTPError as e:
            raise _refusal(e.code, e.read()) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise CtlError(f"cannot reach the admin API at {self.base}: {reason}") from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise CtlError(f"{method} {path}: the admin API answered something that is not "
                           "JSON") from None

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, body)

    def put(self, path: str, body: Any) -> Any:
        return self.call("PUT", path, body)

    def delete(self, path: str) -> Any:
        return self.call("DELETE", path)


def _refusal(status: int, raw: bytes) -> AdminError:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        field = body.get("field")
        return AdminError(status, body["error"], field if isinstance(field, str) else None)
    return AdminError(status, raw.decode("utf-8", "replace").strip()[:200] or "no message")


def quoted(segment: str) -> str:
    """
    An id as one URL path segment.
    """
    return urllib.parse.quote(segment, safe="")
