"""OAuth 2.1 access tokens (JWTs) as credentials, beside the static keys: the hub as a resource server.

A bearer value that is no configured key and looks like a JWT is checked by `TokenVerifier.verify`
against the trusted issuers: `auth.issuers` (hub/config_auth.py `IssuerConfig`) and the local
ones registered here. What is checked, in order:

- the signature algorithm (`alg` in the header) is an asymmetric one (`ASYMMETRIC`): never
  `none` nor HS* (a shared secret is no proof of an issuer);
- `iss` is one issuer's, exactly;
- the signature, with the issuer's key of the token's `kid` (or each of its keys of the right
  type without one); a key whose JWK names its `alg` only verifies that algorithm;
- `exp` (required) and `nbf`/`iat`, with `LEEWAY` seconds for clocks apart;
- `aud` holds the issuer's configured `audience`, else the resource the request is for
  (`Resource`: the hub's URL plus an MCP path, `.../mcp`, `.../tenants/acme/mcp`), or the hub's
  URL itself;
- the subject claim (`sub` by default) is a string, and the token names a tenant (the issuer's
  `tenant`, or its `tenant_claim`).

Scopes come from `scopes_claim` (a space-separated string or a list of strings). `verify` answers
an `AccessToken`; `web.auth.Keys` makes it a `Caller` (checking the tenant exists). Every refusal
is an `Unauthorized` whose message says why (expired, another audience, unknown issuer, bad
signature...) and never holds the token.

Keys: a configured issuer's JWKS is fetched from its `jwks_uri` (or its discovered metadata), cached
and refetched on rotation (`web.oauth_jwks.JwksCache`). Fetching is async and verifying is not:
a handler first awaits `TokenVerifier.ready(token, resource)`, which fetches what the token needs,
then calls `verify`, which only reads the cache.

Extension point, for the built-in authorization server (`auth.server`): it registers itself as one
more issuer whose key set is local, not fetched::

    unregister = register_local_issuer(Issuer.local(jwks=lambda: signing_keys.public_jwks()))

`jwks` is called at each verification and returns a JWKS document (`{"keys": [...]}`, public keys
only; return the same object while the keys do not change and its parse is reused). Its tokens
carry the tenant in claim `tenant`, the scopes in `scope` (space-separated) and the user in `sub`;
their `aud` is checked like any issuer's without a configured audience. `Issuer.local`'s `issuer`
is the `iss` its tokens carry; None (the default) means the hub's own URL as the request reaches
it (`gateway.public_url`, else the Host's name and the bound port), which is what the protected
resource metadata then names as the authorization server.

Runs on the web loop (`ready` awaits fetches; `verify` is pure computation, any thread).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from hub.config_auth import IssuerConfig
from hub.errors import Unauthorized
from web.oauth_jwks import Fetch, JwksCache, SigningKey, fetch_json, parse_jwks

ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
_KEY_TYPE = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}  # algorithm prefix -> JWK kty
LEEWAY = 30.0  # seconds of clock skew allowed on exp, nbf and iat
_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_QUOTED_MAX = 100  # characters of a token's own value (an issuer, a kid) a message repeats


def looks_like_jwt(value: str) -> bool:
    """Whether `value` has a JWT's shape (three base64url parts; the last may be empty)."""
    return _JWT.fullmatch(value) is not None


def _refused(reason: str) -> Unauthorized:
    return Unauthorized(f"invalid token: {reason}")


def _quoted(value: Any) -> str:
    return repr(str(value)[:_QUOTED_MAX])


@dataclass(frozen=True)
class Resource:
    """What a request is for: `base`, the hub's URL (`gateway.public_url`, else the Host's name and
    the bound port), and `url`, the resource (base plus an MCP path, else the base itself)."""

    base: str
    url: str

    @property
    def audiences(self) -> tuple[str, ...]:
        """The `aud` values a token for this resource may carry (without a configured audience)."""
        return tuple(dict.fromkeys((self.url, self.base, self.base + "/")))


@dataclass(frozen=True)
class Issuer:
    """An authorization server whose tokens the hub accepts; its keys are fetched (`jwks_uri`, or
    discovered) unless `local_jwks` gives them. `issuer` None: the hub's own URL."""

    issuer: str | None
    audience: str | None = None
    tenant: str | None = None
    tenant_claim: str | None = None
    subject_claim: str = "sub"
    scopes_claim: str = "scope"
    jwks_uri: str | None = None
    local_jwks: Callable[[], Mapping[str, Any]] | None = None

    @classmethod
    def of(cls, config: IssuerConfig) -> Issuer:
        """A configured issuer (`auth.issuers`)."""
        return cls(
            config.issuer,
            config.audience,
            config.tenant,
            config.tenant_claim,
            config.subject_claim,
            config.scopes_claim,
            config.jwks_uri,
        )

    @classmethod
    def local(cls, jwks: Callable[[], Mapping[str, Any]], issuer: str | None = None) -> Issuer:
        """An issuer in this process (the built-in authorization server): tenant in claim `tenant`,
        scopes in `scope`, keys from `jwks()`."""
        return cls(issuer, tenant_claim="tenant", local_jwks=jwks)

    def name(self, resource: Resource) -> str:
        """The `iss` its tokens carry for a request to `resource`."""
        return self.issuer if self.issuer is not None else resource.base


@dataclass(frozen=True)
class AccessToken:
    """What a verified token says: who (`subject`), in which tenant, with which scopes, until when
    (`expires_at`, seconds since the epoch), issued by `issuer`."""

    issuer: str
    tenant: str
    subject: str
    scopes: tuple[str, ...]
    expires_at: float


_LOCAL_LOCK = threading.Lock()
_LOCAL: list[Issuer] = []


def register_local_issuer(issuer: Issuer) -> Callable[[], None]:
    """Trust `issuer`'s tokens (one in this process, with `local_jwks`) from now on, on every
    hub of the process; the function returned withdraws it."""
    with _LOCAL_LOCK:
        _LOCAL.append(issuer)

    def unregister() -> None:
        with _LOCAL_LOCK:
            if issuer in _LOCAL:
                _LOCAL.remove(issuer)

    return unregister


def local_issuers() -> tuple[Issuer, ...]:
    """The local issuers registered now."""
    with _LOCAL_LOCK:
        return tuple(_LOCAL)


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of `token`, not yet verified (to pick the issuer and the key)."""
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise _refused("not a well-formed JWT") from None
    return header, claims


def _scopes(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list | tuple):
        return tuple(s for s in value if isinstance(s, str))
    return ()


class TokenVerifier:
    """The issuers of a configuration (and the local ones) and their keys. Web loop (`ready`);
    `verify` any thread."""

    def __init__(self, issuers: Iterable[IssuerConfig], fetch: Fetch = fetch_json) -> None:
        self.issuers = tuple(Issuer.of(i) for i in issuers)
        self._caches = {i.issuer: JwksCache(i.issuer, i.jwks_uri, fetch) for i in self.issuers if i.issuer}
        self._local_keys: dict[int, tuple[Any, tuple[SigningKey, ...]]] = {}

    def _issuer_of(self, iss: Any, resource: Resource) -> Issuer | None:
        if not isinstance(iss, str):
            return None
        return next((i for i in (*self.issuers, *local_issuers()) if i.name(resource) == iss), None)

    async def ready(self, token: str, resource: Resource) -> None:
        """Fetch the keys `token`'s issuer needs to verify it, if it needs any (web loop); never
        raises (`verify` says what is wrong)."""
        try:
            header, claims = _unverified(token)
        except Unauthorized:
            return
        issuer = self._issuer_of(claims.get("iss"), resource)
        cache = self._caches.get(issuer.issuer) if issuer is not None and issuer.issuer else None
        if cache is not None and issuer is not None and issuer.local_jwks is None:
            kid = header.get("kid")
            await cache.refresh(kid if isinstance(kid, str) else None)

    def verify(self, token: str, resource: Resource) -> AccessToken:
        """What `token` says, once verified for a request to `resource`.

        Raises:
            Unauthorized: the token is refused; the message says why.
        """
        header, claims = _unverified(token)
        alg = header.get("alg")
        if alg not in ASYMMETRIC:
            raise _refused(
                f"the algorithm {_quoted(alg)} is not accepted (asymmetric signatures only: "
                f"{', '.join(ASYMMETRIC)})"
            )
        issuer = self._issuer_of(claims.get("iss"), resource)
        if issuer is None:
            raise _refused(
                f"the issuer {_quoted(claims.get('iss'))} is not one this hub trusts (auth.issuers)"
            )
        kid = header.get("kid")
        payload = self._decode(token, alg, self._candidates(issuer, kid, alg), issuer, resource)
        return self._access_token(payload, issuer, resource)

    def _keys(self, issuer: Issuer) -> tuple[SigningKey, ...]:
        if issuer.local_jwks is not None:
            document = issuer.local_jwks()
            cached = self._local_keys.get(id(issuer))
            if cached is None or cached[0] is not document:
                cached = self._local_keys[id(issuer)] = (document, parse_jwks(document))
            return cached[1]
        cache = self._caches[issuer.issuer or ""]
        if not cache.keys and cache.error is not None:
            raise _refused(
                f"the signing keys of issuer {issuer.issuer} could not be fetched (see the hub's log)"
            )
        return cache.keys

    def _candidates(self, issuer: Issuer, kid: Any, alg: str) -> list[SigningKey]:
        """The issuer's keys that may have signed a token of `kid` and `alg`."""
        kty = _KEY_TYPE[alg[:2]]
        keys = [
            k
            for k in self._keys(issuer)
            if (kid is None or k.kid == kid) and k.kty == kty and k.alg in (None, alg)
        ]
        if not keys:
            named = f" {_quoted(kid)}" if kid is not None else ""
            raise _refused(f"signed with a key{named} that its issuer does not publish (for {alg})")
        return keys

    def _decode(
        self, token: str, alg: str, keys: list[SigningKey], issuer: Issuer, resource: Resource
    ) -> dict[str, Any]:
        audiences = [issuer.audience] if issuer.audience else list(resource.audiences)
        for key in keys:
            try:
                payload: dict[str, Any] = jwt.decode(
                    token,
                    key.key,
                    algorithms=[alg],
                    audience=audiences,
                    issuer=issuer.name(resource),
                    leeway=LEEWAY,
                    options={"require": ["exp", "iss", "aud"]},
                )
                return payload
            except jwt.InvalidSignatureError:
                continue  # (another key of the issuer's may have signed it)
            except jwt.PyJWTError as exc:
                raise _refused(_reason(exc, audiences)) from None
        raise _refused("bad signature")

    def _access_token(self, payload: dict[str, Any], issuer: Issuer, resource: Resource) -> AccessToken:
        subject = payload.get(issuer.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise _refused(f"no subject (claim {_quoted(issuer.subject_claim)})")
        tenant = issuer.tenant or payload.get(issuer.tenant_claim or "")
        if not isinstance(tenant, str) or not tenant:
            raise _refused(f"no tenant (claim {_quoted(issuer.tenant_claim)})")
        scopes = _scopes(payload.get(issuer.scopes_claim))
        name = issuer.name(resource)
        if issuer.local_jwks is None:  # another issuer's users are its own: "alice" of two IdPs differ
            subject = f"{name}#{subject}"
        return AccessToken(name, tenant, subject, scopes, float(payload["exp"]))


def _reason(exc: jwt.PyJWTError, audiences: list[str]) -> str:
    """Why PyJWT refused a token, in words that do not repeat it."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "it has expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "it is not valid yet (nbf or iat in the future)"
    if isinstance(exc, jwt.InvalidAudienceError):
        return f"it is for another audience (this resource is {audiences[0]!r})"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "wrong issuer"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"it has no {exc.claim!r} claim"
    if isinstance(exc, jwt.InvalidIssuedAtError | jwt.DecodeError):
        return "malformed claims (exp, nbf or iat not a number)"
    return "it cannot be verified"
