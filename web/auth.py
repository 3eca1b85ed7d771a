"""Who is calling: the configured keys, the caller a request's key (or OAuth access token) acts as,
and the client session a request names with an `Mcp-Hub-Session` header.

A key is sent as `Authorization: Bearer <key>` (or, for pages and WebSockets a browser opens, as
`?token=`); it is compared with every configured key in constant time, and only a hash prefix of
it (`key_id`) is ever logged or kept. A tenant key acts in its tenant, an admin key (or an open hub,
one without keys) in every tenant. A bearer value that is no key but a JWT is an OAuth access
token, verified by `web.oauth_tokens` for the resource the request is for; it acts in its tenant,
for its subject, with what its scopes give (`auth.scopes`). See docs/security.md. Pure functions
and immutable data: any thread (handlers call them on the web loop), except `Keys.ready` (web loop).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any

import tornado.web

from hub.config import HubConfig
from hub.config_auth import EVERYTHING, Grant
from hub.errors import BadRequest, Unauthorized
from web.oauth_tokens import LEEWAY, AccessToken, Resource, TokenVerifier, looks_like_jwt

SESSION_HEADER = "Mcp-Hub-Session"
_SESSION_VALUE = re.compile(r"[\x21-\x7e]{1,128}")


@dataclass(frozen=True)
class Caller:
    """Who a request acts as: an admin (every tenant) or one tenant; for whom (`subject`: a token's
    user, a key's `subject` or its id), and what it may call (`grants`: allowed if any grant allows,
    `hub.config_auth.Grant`). `key_id` never holds the key; an access token's is
    `<tenant>:token:<hash of its subject>`, and `expires_at` its expiry (seconds since the epoch;
    None for a key)."""

    admin: bool
    tenant: str | None = None
    key_id: str | None = None
    subject: str | None = None
    grants: tuple[Grant, ...] = (EVERYTHING,)
    expires_at: float | None = None

    def sees(self, tenant: str) -> bool:
        """Whether this caller may see `tenant` at all."""
        return self.admin or self.tenant == tenant

    @property
    def unrestricted(self) -> bool:
        """Whether it may call everything of the tenants it sees (no listing needs filtering)."""
        return any(grant.unrestricted for grant in self.grants)

    def may(self, server: str, name: str | None) -> bool:
        """Whether it may list and call `server.name` (a tool or a prompt); `name` None: the
        server's resources."""
        return any(grant.allows(server, name) for grant in self.grants)


def header_session(value: str | None, caller: Caller | None) -> str | None:
    """The hub's session id for an `Mcp-Hub-Session` header value (None without one), scoped to
    the caller's key, so one key cannot reach another key's instances.

    Raises:
        BadRequest: the value is not 1 to 128 visible ASCII characters.
    """
    if value is None:
        return None
    if not _SESSION_VALUE.fullmatch(value):
        raise BadRequest(f"the {SESSION_HEADER} header must be 1 to 128 visible ASCII characters")
    owner = caller.key_id if caller is not None and caller.key_id else "open"
    return f"header:{owner}:{value}"


def key_id(key: str) -> str:
    """A short stable id of a key for logs and audit (a hash prefix, never the key)."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class Keys:
    """The configured keys and whom each acts as, and the OAuth issuers whose access tokens are
    accepted beside them; `authenticate` compares keys in constant time."""

    def __init__(self, config: HubConfig) -> None:
        self.open = not config.has_keys
        self.config = config
        self.tokens = TokenVerifier(config.auth.issuers) if config.auth.oauth else None
        self._entries: list[tuple[Any, Caller]] = []
        for k in config.auth.admin_keys:
            kid = f"admin:{key_id(k.reveal())}"
            self._entries.append((k, Caller(True, None, kid, kid)))
        for tenant in config.tenants.values():
            for entry in tenant.api_keys:
                kid = f"{tenant.name}:{key_id(entry.key.reveal())}"
                caller = Caller(False, tenant.name, kid, entry.subject or kid, (entry.grant,))
                self._entries.append((entry.key, caller))

    def by_key_id(self, wanted: str) -> Caller | None:
        """The caller of a configured key, by its id (`None` once the key is gone)."""
        return next((c for _, c in self._entries if c.key_id == wanted), None)

    def still_valid(self, caller: Caller) -> bool:
        """Whether `caller` may still act: its key is still configured, or its access token has
        not expired and its tenant and OAuth are still configured (after a reload)."""
        if caller.expires_at is None:
            return self.by_key_id(caller.key_id or "") is not None
        alive = time.time() < caller.expires_at + LEEWAY
        return alive and self.tokens is not None and caller.tenant in self.config.tenants

    async def ready(self, token: str | None, resource: Resource) -> None:
        """Fetch what verifying `token` needs (its issuer's signing keys), if it is an access token
        that needs any. Web loop; never raises."""
        if token and self.tokens is not None and looks_like_jwt(token):
            await self.tokens.ready(token, resource)

    def authenticate(self, token: str | None, resource: Resource | None = None) -> Caller:
        """The caller a bearer token acts as: a configured key's, else, where OAuth is configured,
        an access token's for a request to `resource` (await `ready` first: the issuer's keys).

        Raises:
            Unauthorized: keys are configured and the token is missing or matches none, or is an
                access token that is refused (the message says why).
        """
        if self.open:
            return Caller(admin=True)
        if not token:
            raise Unauthorized("missing key: send 'Authorization: Bearer <key>'")
        found = None
        for secret, caller in self._entries:  # every key is compared: no early exit to time
            if secret.matches(token) and found is None:
                found = caller
        if found is not None:
            return found
        if self.tokens is not None and looks_like_jwt(token):
            if resource is None:
                raise Unauthorized("invalid token: access tokens are not accepted here")
            return self._token_caller(self.tokens.verify(token, resource))
        raise Unauthorized("invalid key")

    def _token_caller(self, token: AccessToken) -> Caller:
        """The caller of a verified access token (its tenant must be one of this hub's)."""
        if token.tenant not in self.config.tenants:
            raise Unauthorized(f"invalid token: its tenant {token.tenant[:100]!r} is not one of this hub's")
        kid = f"{token.tenant}:token:{hashlib.sha256(token.subject.encode()).hexdigest()[:12]}"
        grants = self.config.auth.grant_of(token.scopes)
        return Caller(False, token.tenant, kid, token.subject, grants, token.expires_at)


def bearer_token(handler: tornado.web.RequestHandler, allow_query: bool = False) -> str | None:
    """The key a request carries: `Authorization: Bearer <key>`, else, where `allow_query` (pages
    and WebSockets a browser opens, which cannot send a header), the `?token=` query argument."""
    scheme, _, token = handler.request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return handler.get_query_argument("token", None) if allow_query else None


_KEYS: tuple[HubConfig, Keys] | None = None


def keys_for(config: HubConfig) -> Keys:
    """The keys of `config`, rebuilt only when the configuration changes (a reload)."""
    global _KEYS
    cached = _KEYS
    if cached is None or cached[0] is not config:
        cached = _KEYS = (config, Keys(config))
    return cached[1]
