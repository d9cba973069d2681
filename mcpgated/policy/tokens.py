"""
Bearer tokens of C{JWT} and C{OAUTH2} plans: the gateway as an OAuth
resource server (the "terminating" mode of the MCP authorization spec).

- C{JWT}: the signature is checked against the plan's C{publicKey} or the
  keys at its C{jwksUrl} (fetched through the gateway's own agent, cached,
  fetched again when a token names an unknown C{kid}, at most once per
  C{jwks_refetch_interval} seconds); then C{iss}, C{aud}, C{exp} (required),
  C{nbf} and C{iat}, with C{leeway} seconds of clock skew. Only the plan's asymmetric C{algorithms} are accepted.
- C{OAUTH2}: RFC 7662 introspection, a form POST of the token to the plan's
  C{introspectionUrl} with the plan's client credentials (HTTP Basic);
  C{active} must be true, then C{exp}, C{nbf}, C{iss} and C{aud} are checked
  as the answer and the plan allow.

C{aud} must name the plan's C{audience}, or, when the plan names none, the
API's public resource URL (L{expected_audience}: the C{resource} of the
metadata the gateway serves for it); only C{anyAudience: true} skips it. Answers are cached by a hash of the
  token until the token expires, at most C{cacheSeconds} (default 5
  minutes); inactive ones for C{negative_ttl} seconds.

Scopes come from C{scope} (space-separated) or C{scp} (a list), or the plan's
C{scopeClaim}; all claims are kept for access-control rules.

Tokens are never logged, and never kept: the caches hold hashes.
A key set or introspection endpoint that cannot be reached refuses the
request with 503 (a L{Refusal}, not L{InvalidToken}: the token may be fine).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any, Callable, Coroutine, Dict, FrozenSet, List, Mapping, Optional, Tuple
from urllib.parse import quote_plus, urlencode

import attrs
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.error import ConnectError
from twisted.logger import Logger
from twisted.web.client import ResponseNeverReceived
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from zope.interface import implementer

from mcpgated.jsonrpc import Refusal
from mcpgated.policy.auth import ITokenVerifier, InvalidToken, TokenInfo
from mcpgated.webclient import fetch

log = Logger()

# algorithm family -> JWK key type; symmetric algorithms and "none" are never accepted
_KEY_TYPES = {
    "RS256": "RSA", "RS384": "RSA", "RS512": "RSA",
    "PS256": "RSA", "PS384": "RSA", "PS512": "RSA",
    "ES256": "EC", "ES384": "EC", "ES512": "EC",
    "EdDSA": "OKP", "Ed25519": "OKP",
}
_MAX_TOKEN = 16 * 1024


def unavailable(what: str) -> Refusal:
    return Refusal(503, f"The bearer token could not be checked ({what}); retry later",
                   outcome="gateway_error")


def _b64(segment: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("the token is not a well-formed JWT") from None


def _json_object(data: bytes) -> Dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidToken("the token is not a well-formed JWT") from None
    if not isinstance(value, dict):
        raise InvalidToken("the token is not a well-formed JWT")
    return value


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _strings(value: Any) -> List[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def scopes_of(claims: Mapping[str, Any], claim: Optional[str] = None) -> FrozenSet[str]:
    """
    The scopes a token grants: C{scope} (space-separated), else C{scp}
    (a list or a string), or only the named claim.
    """
    for name in ([claim] if claim else ["scope", "scp"]):
        value = claims.get(name)
        if isinstance(value, str):
            return frozenset(value.split())
        if isinstance(value, list):
            return frozenset(s for v in value if isinstance(v, str) for s in v.split())
    return frozenset()


def _time_checks(claims: Mapping[str, Any], now: float, leeway: float, require_exp: bool) -> None:
    exp = _number(claims.get("exp"))
    if exp is None:
        if require_exp or "exp" in claims:
            raise InvalidToken("the token has no valid expiry (exp)")
    elif now > exp + leeway:
        raise InvalidToken("the token has expired")
    nbf = claims.get("nbf")
    if nbf is not None:
        value = _number(nbf)
        if value is None or now + leeway < value:
            raise InvalidToken("the token is not valid yet (nbf)")
    iat = claims.get("iat")
    if iat is not None:
        value = _number(iat)
        if value is None or now + leeway < value:
            raise InvalidToken("the token was issued in the future (iat)")


def expected_audience(config: Mapping[str, Any], resource: Optional[str]) -> Optional[List[str]]:
    """
    The audiences a token must name (one of them) for a plan: the plan's
    C{audience}, else the API's public resource URL C{resource} (what its
    protected-resource metadata advertises, and what a spec-following
    client asks the authorization server for, RFC 8707). L{None} only when
    the plan says C{anyAudience: true}. An empty list (no resource known)
    accepts no token.
    """
    if config.get("audience"):
        return list(config["audience"])
    if config.get("anyAudience") is True:
        return None
    return [resource] if resource else []


def _audience_check(claims: Mapping[str, Any], config: Mapping[str, Any],
                    resource: Optional[str]) -> None:
    expected = expected_audience(config, resource)
    if expected is None:
        return
    if not set(_strings(claims.get("aud"))) & set(expected):
        raise InvalidToken("the token was not issued for this API (aud)")


def _issuer_check(claims: Mapping[str, Any], issuer: Optional[str], required: bool) -> None:
    if not issuer:
        return
    value = claims.get("iss")
    if value is None and not required:
        return
    if value != issuer:
        raise InvalidToken("the token's issuer is not accepted (iss)")


def _info(claims: Mapping[str, Any], scopes: FrozenSet[str]) -> TokenInfo:
    subject = claims.get("sub")
    client = claims.get("client_id", claims.get("azp"))
    return TokenInfo(subject=subject if isinstance(subject, str) else None, scopes=scopes,
                     claims=dict(claims), client_id=client if isinstance(client, str) else None,
                     expires_at=_number(claims.get("exp")))


@attrs.define
class _KeySet:
    keys: List[Any]
    expires: float
    last_forced: float = float("-inf")
    failed: bool = False  # never fetched: asked again after the refetch interval

    def find(self, kid: Optional[str], alg: str) -> List[Any]:
        """
        The keys that may have signed a token: the one its C{kid} names,
        or, without a C{kid}, every key for its algorithm.
        """
        fitting = [k for k in self.keys if k.key_type == _KEY_TYPES[alg] and k.alg in (None, alg)]
        if kid is not None:
            return [k for k in fitting if k.kid == kid][:1]
        return fitting[:20]


@implementer(ITokenVerifier)
@attrs.define
class TokenVerifier:
    """
    @ivar clock: the reactor's time.
    @ivar upstreams: the gateway's L{mcpgated.proxy.upstream.UpstreamPool}:
        every request goes through its agent.
    """

    clock: IReactorTime
    upstreams: Any
    leeway: float = 30.0
    jwks_ttl: float = 300.0
    jwks_refetch_interval: float = 10.0
    introspection_ttl: float = 300.0
    negative_ttl: float = 10.0
    timeout: float = 10.0
    max_bytes: int = 512 * 1024
    max_entries: int = 10000
    _jwks: Dict[str, _KeySet] = attrs.field(factory=dict)
    _pems: Dict[str, Any] = attrs.field(factory=dict)
    _introspections: Dict[bytes, Tuple[float, Optional[Dict[str, Any]]]] = attrs.field(factory=dict)
    _waiting: Dict[Any, List["Deferred[Any]"]] = attrs.field(factory=dict)

    async def verify(self, token: str, plan: Any, resource: Optional[str] = None) -> TokenInfo:
        """
        @param resource: the API's public resource URL, the audience a token
            must name when the plan sets none (L{expected_audience}).
        """
        config = plan.configuration or {}
        if len(token) > _MAX_TOKEN:
            raise InvalidToken("the token is too large")
        if plan.security == "JWT":
            return await self._jwt(token, config, resource)
        if plan.security == "OAUTH2":
            return await self._introspected(token, config, resource)
        raise InvalidToken("this plan takes no bearer tokens")

    # --- JWT ------------------------------------------------------------------------------

    async def _jwt(self, token: str, config: Mapping[str, Any], resource: Optional[str]) -> TokenInfo:
        parts = token.split(".")
        if len(parts) != 3:
            raise InvalidToken("the token is not a signed JWT")
        header = _json_object(_b64(parts[0]))
        unverified = _json_object(_b64(parts[1]))
        alg = header.get("alg")
        allowed = [a for a in config.get("algorithms", ()) if a in _KEY_TYPES]
        if not isinstance(alg, str) or alg not in allowed:
            raise InvalidToken("the token's signing algorithm is not accepted")
        # a token of another issuer costs no key fetch
        _issuer_check(unverified, config.get("issuer"), required=True)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("the token's key id (kid) is malformed")
        if "publicKey" in config:
            key = self._pem_key(config["publicKey"])
            if key is None or key.key_type != _KEY_TYPES[alg]:
                raise InvalidToken("the token's signing algorithm does not fit the plan's key")
            candidates = [key]
        else:
            candidates = await self._jwks_keys(config["jwksUrl"], kid, alg)
        for key in candidates:
            try:
                verified = jws.deserialize_compact(token, key, algorithms=[alg])
                break
            except (JoseError, ValueError, TypeError):
                continue
        else:
            raise InvalidToken("the token's signature is invalid")
        claims = _json_object(verified.payload or b"")
        _issuer_check(claims, config.get("issuer"), required=True)
        _audience_check(claims, config, resource)
        _time_checks(claims, self.clock.seconds(), self.leeway, require_exp=True)
        return _info(claims, scopes_of(claims, config.get("scopeClaim")))

    def _pem_key(self, pem: str) -> Any:
        if pem in self._pems:
            return self._pems[pem]
        key = None
        for kind in (RSAKey, ECKey, OKPKey):
            try:
                key = kind.import_key(pem)
                break
            except Exception:  # noqa: BLE001, S112 -- joserfc raises many kinds on a key of another type
                continue
        if key is None:
            log.error("a JWT plan's publicKey cannot be loaded")
        if len(self._pems) >= 1000:
            self._pems.clear()
        self._pems[pem] = key
        return key

    async def _jwks_keys(self, url: str, kid: Optional[str], alg: str) -> List[Any]:
        now = self.clock.seconds()
        entry = self._jwks.get(url)
        fetched = False
        if entry is None or entry.expires <= now:
            await self._shared(("jwks", url), lambda: self._load_jwks(url))
            entry = self._jwks.get(url)
            fetched = True
        if entry is None or entry.failed:
            raise unavailable("the signing keys could not be fetched")
        keys = entry.find(kid, alg)
        if not keys and not fetched and now - entry.last_forced >= self.jwks_refetch_interval:
            # a key the gateway does not know yet: the issuer may have rotated
            entry.last_forced = now
            await self._shared(("jwks", url), lambda: self._load_jwks(url))
            entry = self._jwks.get(url, entry)
            keys = entry.find(kid, alg)
        if not keys:
            raise InvalidToken("the token's signing key is unknown")
        return keys

    async def _load_jwks(self, url: str) -> None:
        """
        Fetch the key set; on failure keep the previous one (tried again
        after C{jwks_refetch_interval}).
        """
        previous = self._jwks.get(url)
        try:
            status, body = await self._request("GET", url, Headers({b"accept": [b"application/json"]}))
            if status != 200:
                raise ValueError(f"HTTP {status}")
            document = json.loads(body)
            if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
                raise ValueError("not a JWK set")
            keys = []
            for item in document["keys"]:
                if not isinstance(item, dict) or item.get("use", "sig") != "sig":
                    continue
                try:
                    keys.append(KeySet.registry_cls.import_key(item))
                except Exception:  # noqa: BLE001, S112 -- a key the gateway cannot use is skipped
                    continue
            for key in keys:
                if key.is_private:
                    raise ValueError("the set holds private keys")
        except Exception as e:  # noqa: BLE001 -- any failure keeps the previous set, logged
            log.warn("fetching the JWK set {url} failed: {reason}", url=url, reason=str(e) or type(e).__name__)
            retry = self.clock.seconds() + self.jwks_refetch_interval
            if previous is not None:
                previous.expires = retry
            else:
                self._jwks[url] = _KeySet([], retry, failed=True)
            return
        entry = _KeySet(keys, self.clock.seconds() + self.jwks_ttl)
        if previous is not None:
            entry.last_forced = previous.last_forced
        if len(self._jwks) >= 1000 and url not in self._jwks:
            self._jwks.clear()
        self._jwks[url] = entry

    # --- OAuth 2 introspection ------------------------------------------------------------

    async def _introspected(self, token: str, config: Mapping[str, Any],
                            resource: Optional[str]) -> TokenInfo:
        url = config["introspectionUrl"]
        # per endpoint and client: what one client may learn is not another's
        digest = hashlib.sha256("\0".join((url, config.get("clientId", ""), config.get("clientSecret", ""),
                                           token)).encode("utf-8")).digest()
        now = self.clock.seconds()
        entry = self._introspections.get(digest)
        if entry is not None and entry[0] > now:
            answer = entry[1]
        else:
            self._introspections.pop(digest, None)
            answer = await self._shared(("introspect", digest),
                                        lambda: self._introspect(digest, token, config))
        if answer is None:
            raise InvalidToken("the token is not active")
        _time_checks(answer, self.clock.seconds(), self.leeway, require_exp=False)
        _issuer_check(answer, config.get("issuer"), required=False)
        _audience_check(answer, config, resource)
        return _info(answer, scopes_of(answer))

    async def _introspect(self, digest: bytes, token: str,
                          config: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        """
        Ask the introspection endpoint; cache and return the answer
        (L{None}: not active).
        """
        url = config["introspectionUrl"]
        headers = Headers({b"accept": [b"application/json"],
                           b"content-type": [b"application/x-www-form-urlencoded"]})
        if config.get("clientId") is not None:
            # RFC 6749 section 2.3.1: both form-encoded, then Basic
            pair = f"{quote_plus(config['clientId'])}:{quote_plus(config.get('clientSecret', ''))}"
            headers.setRawHeaders(b"authorization",
                                  [b"Basic " + base64.b64encode(pair.encode("utf-8"))])
        body = urlencode({"token": token, "token_type_hint": "access_token"}).encode("ascii")
        try:
            status, data = await self._request("POST", url, headers, body)
        except Exception as e:  # noqa: BLE001 -- no answer, whatever the cause: 503, logged
            log.warn("token introspection at {url} failed: {reason}", url=url,
                     reason=str(e) or type(e).__name__)
            raise unavailable("the introspection endpoint did not answer") from None
        if status != 200:
            log.warn("token introspection at {url} answered HTTP {status}", url=url, status=status)
            raise unavailable(f"the introspection endpoint answered {status}")
        try:
            answer = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            answer = None
        if not isinstance(answer, dict):
            log.warn("token introspection at {url} did not answer a JSON object", url=url)
            raise unavailable("the introspection endpoint answered garbage")
        now = self.clock.seconds()
        if answer.get("active") is not True:
            self._remember(digest, now + self.negative_ttl, None)
            return None
        lifetime = float(config.get("cacheSeconds", self.introspection_ttl))
        exp = _number(answer.get("exp"))
        if exp is not None:
            lifetime = min(lifetime, exp - now)
        if lifetime > 0:
            self._remember(digest, now + lifetime, answer)
        return answer

    def _remember(self, digest: bytes, until: float, answer: Optional[Dict[str, Any]]) -> None:
        if len(self._introspections) >= self.max_entries:
            now = self.clock.seconds()
            self._introspections = {k: v for k, v in self._introspections.items() if v[0] > now}
            if len(self._introspections) >= self.max_entries:
                self._introspections.clear()
        self._introspections[digest] = (until, answer)

    # --- plumbing -------------------------------------------------------------------------

    def _shared(self, key: Any, work: Callable[[], Coroutine[Any, Any, Any]]) -> "Deferred[Any]":
        """
        Run C{work} once for everyone asking for C{key} meanwhile; each
        gets its result.
        """
        d: "Deferred[Any]" = Deferred()
        waiters = self._waiting.get(key)
        if waiters is not None:
            waiters.append(d)
            return d
        self._waiting[key] = [d]

        def settle(result: Any) -> None:
            for waiter in self._waiting.pop(key, []):
                if not waiter.called:  # a waiter whose client left was cancelled
                    if isinstance(result, Failure):
                        waiter.errback(result)
                    else:
                        waiter.callback(result)

        Deferred.fromCoroutine(work()).addBoth(settle)
        return d

    async def _request(self, method: str, url: str, headers: Headers,
                       body: Optional[bytes] = None) -> Tuple[int, bytes]:
        """
        One call to the issuer (keys, introspection: reads, safe to repeat);
        a connection that fails before any answer is tried once more on a
        fresh one.
        """
        for attempt in (1, 2):
            try:
                reply = await fetch(self.upstreams.default_agent(), self.clock, method, url, headers,
                                    body=body, max_bytes=self.max_bytes, timeout=self.timeout)
            except (ResponseNeverReceived, ConnectError) as e:
                if attempt == 2:
                    raise
                log.info("{method} {url}: no answer ({reason}); trying once more", method=method,
                         url=url, reason=str(e) or type(e).__name__)
                continue
            return reply.status, reply.body
        raise AssertionError("unreachable")
