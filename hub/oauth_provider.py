"""The built-in OAuth 2.1 authorization server's provider: the `mcp` SDK's
`OAuthAuthorizationServerProvider`, whose HTTP handlers (`mcp.server.auth.routes`) do the protocol
(request validation, PKCE S256, client authentication, error answers) and call this for the state.

- **Clients**: registered dynamically (kept in `data_dir/oauth/clients.json`), or named by the URL
  of their metadata document (`hub.oauth_cimd`). A client may ask for any scope of `auth.scopes`:
  what a token gets is decided by its user.
- **Authorization**: `authorize` checks the RFC 8707 `resource` (one of the hub's resource URLs:
  `issuer`, `issuer/mcp`, `issuer/tenants/{t}/mcp`, `issuer/tenants/{t}/servers/{s}/mcp`; none
  given: the issuer itself) and parks the request as a `PendingLogin`; the login page
  (`web.oauth_login`) shows it, checks the user's password and calls `grant` (or `deny`), which
  makes a one-use code good for `CODE_SECONDS`.
- **Tokens**: access tokens are ES256 JWTs (`hub.oauth_keys`) with `iss`, `sub` (the user), `aud`
  (the resource), `exp`, `nbf`, `iat`, `jti`, `scope`, `tenant` (the user's) and `client_id`;
  refresh tokens are random, kept by hash, rotated at each use (the old one stops working) and
  live `auth.server.refresh_token_ttl`. A user removed from the configuration, or moved to
  another tenant than the token's resource names, gets no more tokens.
- **Revocation**: of a refresh token, it; of an access token, the refresh token minted with it
  (the access token itself is a self-contained JWT: it stays valid until it expires).

Thread: the web loop (the SDK's handlers run there through the ASGI bridge).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    IdentityAssertionParams,
    RefreshToken,
    RegistrationError,
    TokenError,
    construct_redirect_uri,
)
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from hub.config import HubConfig
from hub.config_auth import UserConfig
from hub.oauth_cimd import ClientDocuments, is_document_url
from hub.oauth_keys import SigningKey, jwks_of, load_signing_key
from hub.oauth_store import OAuthStore, RefreshRecord, token_hash

CODE_SECONDS = 300.0  # an authorization code's life
LOGIN_SECONDS = 600.0  # how long a login page stays good for
MAX_CLIENTS = 10_000  # dynamic registration needs no credentials: bound what it can fill
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
_RESOURCE_PATH = re.compile(r"(?:/mcp|/tenants/([^/]+)/mcp|/tenants/([^/]+)/servers/([^/]+)/mcp)?")


class LoginRefused(Exception):
    """A user whose password was right but who cannot grant what is asked (the page says why)."""


@dataclass(frozen=True)
class PendingLogin:
    """An authorization request waiting for its user at the login page."""

    id: str
    client: OAuthClientInformationFull
    params: AuthorizationParams
    issuer: str  # the issuer the client asked
    resource: str  # the canonical resource (`aud` of its tokens)
    tenant: str | None  # the tenant the resource names (None: the user's own)
    csrf: str
    expires_at: float


def resource_target(resource: str | None, issuer: str) -> tuple[str, str | None]:
    """`(aud, tenant)` of an RFC 8707 `resource`: its canonical form and the tenant its path names.

    Raises:
        AuthorizeError: `invalid_target`: not one of the hub's resource URLs.
    """
    if resource is None:
        return issuer, None
    parts = urlsplit(resource)
    base = f"{parts.scheme.lower()}://{parts.netloc.lower()}"
    path = parts.path.rstrip("/")
    match = _RESOURCE_PATH.fullmatch(path)
    if base != issuer.lower() or parts.query or parts.fragment or match is None:
        raise AuthorizeError("invalid_target", f"{resource} is not a resource of this hub ({issuer})")
    # Whether the tenant (and its server) exists is not said here, to anyone: the user's tenant must
    # be the one named (`grant`), and a server it lacks is 404 to the token like to a key.
    return issuer + path, match.group(1) or match.group(2)


def issuer_problem(config: HubConfig, host: str) -> str | None:
    """Why the built-in server cannot run with this configuration on `host`, or None: OAuth wants
    an https issuer, except on loopback (RFC 8414; the SDK refuses any other)."""
    if not config.auth.server.enabled:
        return None
    public = config.gateway.public_url
    where = urlsplit(public).hostname if public else host
    if (public or "").startswith("https://") or where in _LOOPBACK:
        return None
    return (
        f"auth.server is enabled and its issuer would be {public or f'http://{host}'}: an OAuth issuer "
        "must be https (or loopback); set gateway.public_url to the https URL clients reach the hub at"
    )


def allowed_scopes(config: HubConfig, user: UserConfig) -> tuple[str, ...]:
    """The scopes `user` may grant: its own list, else every scope of `auth.scopes`."""
    return user.scopes if user.scopes is not None else tuple(config.auth.scopes)


class HubAuthorizationCode(AuthorizationCode):
    """An authorization code, with the user's tenant at login."""

    tenant: str


class HubOAuthProvider:
    """The provider (web loop).

    Args:
        config_of: the hub's configuration as it is now (users and scopes change with a reload).
        issuer_of: the issuer URL as it is now (`gateway.public_url`, else the bound URL).
        folder: `data_dir/oauth`.
        documents: where client metadata documents are fetched (tests pass one allowing http).
    """

    def __init__(
        self,
        config_of: Callable[[], HubConfig],
        issuer_of: Callable[[], str],
        folder: Path,
        documents: ClientDocuments | None = None,
    ) -> None:
        self.config_of = config_of
        self.issuer_of = issuer_of
        self.key: SigningKey = load_signing_key(folder)
        self._jwks = jwks_of(self.key)
        self.store = OAuthStore(folder)
        self.documents = documents or ClientDocuments()
        self.pending: dict[str, PendingLogin] = {}
        self.codes: dict[str, HubAuthorizationCode] = {}

    def reload(self) -> None:
        """Read the signing key, the clients and the refresh tokens again from the folder (a restore
        replaced them); codes and logins in progress are dropped."""
        folder = self.store.folder
        self.key = load_signing_key(folder)
        self._jwks = jwks_of(self.key)
        self.store = OAuthStore(folder)
        self.pending.clear()
        self.codes.clear()

    def jwks(self) -> dict[str, Any]:
        """The public key set access tokens verify with (the same object while the key is: a
        verifier may keep its parse)."""
        return self._jwks

    # ------------------------------------------------------------------ clients

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        client = self.store.clients.get(client_id)
        if client is None and is_document_url(client_id):
            client = await self.documents.get(client_id)
        if client is None:
            return None
        scopes = " ".join(self.config_of().auth.scopes) or None  # the user decides, not the client
        return client.model_copy(update={"scope": scopes})

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        if len(self.store.clients) >= MAX_CLIENTS:
            raise RegistrationError("invalid_client_metadata", "this server has too many clients registered")
        self.store.clients[client_info.client_id] = client_info
        await self.store.save_clients()

    # ------------------------------------------------------------------ authorization

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        issuer = self.issuer_of()
        resource, tenant = resource_target(params.resource, issuer)
        now = time.monotonic()
        self.pending = {k: p for k, p in self.pending.items() if p.expires_at > now}
        request_id, csrf = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        login = PendingLogin(request_id, client, params, issuer, resource, tenant, csrf, now + LOGIN_SECONDS)
        self.pending[login.id] = login
        return f"{issuer}/oauth/login?request={login.id}"

    def login(self, request_id: str) -> PendingLogin | None:
        """The pending login `request_id` names, while it is good."""
        login = self.pending.get(request_id)
        return login if login is not None and login.expires_at > time.monotonic() else None

    def grant(self, login: PendingLogin, username: str) -> str:
        """`username` (whose password was checked) allows `login`: a code, and the URL that takes
        it to the client.

        Raises:
            LoginRefused: the user is not of the tenant the resource names, or may grant none of
                the scopes asked.
        """
        config = self.config_of()
        user = config.auth.server.users[username]
        if login.tenant is not None and login.tenant != user.tenant:
            raise LoginRefused(f"user {username} cannot give access to tenant {login.tenant}")
        allowed = allowed_scopes(config, user)
        asked = login.params.scopes
        scopes = [s for s in asked if s in allowed] if asked is not None else list(allowed)
        if asked and not scopes:
            raise LoginRefused(f"user {username} may grant none of the scopes asked ({', '.join(asked)})")
        if self.pending.pop(login.id, None) is None:  # (another tab's POST was first)
            raise LoginRefused("this sign-in was already completed")
        code = HubAuthorizationCode(
            code=secrets.token_urlsafe(32),
            scopes=scopes,
            expires_at=time.time() + CODE_SECONDS,
            client_id=login.client.client_id,
            code_challenge=login.params.code_challenge,
            redirect_uri=login.params.redirect_uri,
            redirect_uri_provided_explicitly=login.params.redirect_uri_provided_explicitly,
            resource=login.resource,
            subject=username,
            tenant=user.tenant,
        )
        self.codes = {c: v for c, v in self.codes.items() if v.expires_at > time.time()}
        self.codes[code.code] = code
        return construct_redirect_uri(
            str(login.params.redirect_uri), code=code.code, state=login.params.state, iss=login.issuer
        )

    def deny(self, login: PendingLogin) -> str:
        """The user declined: the URL that tells the client so."""
        self.pending.pop(login.id, None)
        return construct_redirect_uri(
            str(login.params.redirect_uri),
            error="access_denied",
            error_description="the user declined",
            state=login.params.state,
            iss=login.issuer,
        )

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> HubAuthorizationCode | None:
        code = self.codes.get(authorization_code)
        return code if code is not None and code.client_id == client.client_id else None

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: HubAuthorizationCode
    ) -> OAuthToken:
        if self.codes.pop(authorization_code.code, None) is None:  # one use
            raise TokenError("invalid_grant", "authorization code does not exist")
        resource = authorization_code.resource or self.issuer_of()
        return await self._mint(
            client.client_id, authorization_code.subject or "", authorization_code.scopes, resource
        )

    # ------------------------------------------------------------------ tokens

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> RefreshToken | None:
        record = self.store.refresh.get(token_hash(refresh_token))
        if record is None or record.client_id != client.client_id:
            return None
        return RefreshToken(
            token=refresh_token,
            client_id=record.client_id,
            scopes=list(record.scopes),
            expires_at=record.expires_at,
            resource=record.resource,
            subject=record.subject,
        )

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        if self.store.refresh.pop(token_hash(refresh_token.token), None) is None:  # rotated: one use
            raise TokenError("invalid_grant", "refresh token does not exist")
        resource = refresh_token.resource or self.issuer_of()
        return await self._mint(client.client_id, refresh_token.subject or "", scopes, resource)

    async def load_access_token(self, token: str) -> AccessToken | None:
        try:
            claims = self.key.verify(token, self.issuer_of())
        except jwt.InvalidTokenError:
            return None
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id", "")),
            scopes=str(claims.get("scope", "")).split(),
            expires_at=int(claims["exp"]),
            resource=str(claims.get("aud", "")),
            subject=str(claims["sub"]),
            claims=claims,
        )

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        if isinstance(token, RefreshToken):
            self.store.refresh.pop(token_hash(token.token), None)
        else:
            jti = (token.claims or {}).get("jti")
            self.store.refresh = {d: r for d, r in self.store.refresh.items() if r.access_jti != jti}
        await self.store.save_refresh()

    async def exchange_identity_assertion(
        self, client: OAuthClientInformationFull, params: IdentityAssertionParams
    ) -> OAuthToken:
        raise TokenError("unsupported_grant_type", "this server has no identity-assertion grant")

    async def _mint(self, client_id: str, subject: str, scopes: list[str], resource: str) -> OAuthToken:
        """An access token and a new refresh token for `subject`, as the configuration is now.

        Raises:
            TokenError: `invalid_grant`: the user is gone, or no longer of the resource's tenant.
        """
        config = self.config_of()
        issuer = self.issuer_of()
        user = config.auth.server.users.get(subject)
        try:
            _, tenant = resource_target(resource, issuer)
        except AuthorizeError:
            raise TokenError("invalid_grant", "the token's resource is no longer one of this hub's") from None
        if user is None or (tenant is not None and tenant != user.tenant):
            raise TokenError("invalid_grant", "the user no longer exists or no longer has access")
        allowed = allowed_scopes(config, user)
        scopes = [s for s in scopes if s in allowed]
        ttl = config.auth.server.access_token_ttl
        now = int(time.time())
        jti = secrets.token_urlsafe(16)
        claims = {
            "iss": issuer,
            "sub": subject,
            "aud": resource,
            "exp": now + int(ttl),
            "nbf": now,
            "iat": now,
            "jti": jti,
            "scope": " ".join(scopes),
            "tenant": user.tenant,
            "client_id": client_id,
        }
        refresh = secrets.token_urlsafe(32)
        expires = now + int(config.auth.server.refresh_token_ttl)
        self.store.refresh[token_hash(refresh)] = RefreshRecord(
            client_id, subject, tuple(scopes), resource, expires, jti
        )
        await self.store.save_refresh()
        return OAuthToken(
            access_token=self.key.sign(claims),
            expires_in=int(ttl),
            scope=" ".join(scopes) or None,
            refresh_token=refresh,
        )
