"""The auth section of the configuration and the keys of a tenant: who may call, and what.

- `auth.admin_keys`: bearer keys that see every tenant.
- a tenant's `api_keys`: each a key (a string) or an object with the key and what it may call
  (`allow`/`deny` globs over `server.tool`) and whom it acts for (`subject`).
- `auth.scopes`: the OAuth scopes the hub knows, each an allow/deny grant like a key's.
- `auth.issuers`: external OAuth authorization servers whose JWT access tokens the hub accepts.
- `auth.server`: the built-in authorization server, for deployments without an identity provider
  (its users, in the configuration, with hashed passwords).

What a grant means (`Grant.allows`): tools and prompts are matched as `server.name`; a server's
resources are matched as `server.*` (the whole server: a grant of one tool gives no resources).
docs/security.md ("Who may call what") has the user's view.

Pure data: safe to use from any thread.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from hub.config_fields import EMPTY_MAPPING, ConfigModel, Keys, Name, NonEmpty, SecretKey

Glob = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_*?\[\]!.-]+$")]
_EVERYTHING = ("*",)


class Grant(ConfigModel):
    """What a key or a scope may call: catalog ids matching an `allow` glob and no `deny` glob."""

    allow: tuple[Glob, ...] = Field(
        default=_EVERYTHING,
        description="Globs over `server.tool` (and `server.prompt`; `server.*` also gives the "
        "server's resources) the holder may list and call. Default: everything of its tenant.",
    )
    deny: tuple[Glob, ...] = Field(
        default=(), description="Globs taken out of what `allow` gives (deny wins)."
    )

    @property
    def unrestricted(self) -> bool:
        """Whether the grant gives everything of its tenant."""
        return "*" in self.allow and not self.deny

    def allows(self, server: str, name: str | None) -> bool:
        """Whether `server.name` may be listed and called; `name` None: the server's resources."""
        target = f"{server}.{name}" if name is not None else f"{server}.*"
        if name is None:  # resources go with the whole server: only a glob naming all of it
            allowed = any(_whole_server(glob, server) for glob in self.allow)
            return allowed and not any(_whole_server(glob, server) for glob in self.deny)
        allowed = any(fnmatch.fnmatchcase(target, glob) for glob in self.allow)
        return allowed and not any(fnmatch.fnmatchcase(target, glob) for glob in self.deny)


def _whole_server(glob: str, server: str) -> bool:
    return glob == "*" or fnmatch.fnmatchcase(f"{server}.*", glob)


EVERYTHING = Grant()


def _key_entries(value: Any) -> Any:
    """A plain string is a key with every permission; an entry that expanded to "" is no key."""
    if not isinstance(value, list | tuple):
        return value
    entries = [{"key": v} if isinstance(v, str) else v for v in value]
    return [e for e in entries if not (isinstance(e, dict) and e.get("key") == "")]


class TenantKey(ConfigModel):
    """A tenant's bearer key: what it may call, and whom it acts for."""

    key: SecretKey
    subject: Name | None = Field(
        default=None,
        description="The user this key acts for (per_user servers' credentials, the audit log). "
        "Default: the key's id (a hash prefix).",
    )
    allow: tuple[Glob, ...] = Grant.model_fields["allow"].default
    deny: tuple[Glob, ...] = ()

    @property
    def grant(self) -> Grant:
        return Grant(allow=self.allow, deny=self.deny)


TenantKeys = Annotated[
    tuple[TenantKey, ...],
    BeforeValidator(_key_entries),
    WithJsonSchema(
        {"type": "array", "items": {"anyOf": [{"type": "string"}, TenantKey.model_json_schema()]}}
    ),
    Field(
        description="Bearer keys that act as this tenant: a string (everything of the tenant) or "
        "{key, subject, allow, deny}. An entry that expands to an empty string is ignored "
        "(so ${KEY:-} is an optional key)."
    ),
]


class ScopeConfig(Grant):
    """An OAuth scope the hub knows: what a token carrying it may call."""

    description: str = ""


class IssuerConfig(ConfigModel):
    """An external OAuth 2.1 authorization server whose JWT access tokens the hub accepts."""

    issuer: Annotated[str, Field(pattern="^https?://")] = Field(
        description="The issuer URL, exactly as in its tokens' `iss` claim."
    )
    jwks_uri: Annotated[str, Field(pattern="^https?://")] | None = Field(
        default=None,
        description="Where its signing keys are. Default: from its metadata "
        "(issuer + /.well-known/oauth-authorization-server, then openid-configuration).",
    )
    audience: NonEmpty | None = Field(
        default=None,
        description="The `aud` its tokens must carry. Default: the resource URL the request is for "
        "(gateway.public_url + the path, or gateway.public_url itself).",
    )
    tenant: Name | None = Field(default=None, description="The tenant all its tokens act in.")
    tenant_claim: NonEmpty | None = Field(
        default=None, description="Or: the claim that names the tenant a token acts in."
    )
    subject_claim: NonEmpty = "sub"
    scopes_claim: NonEmpty = Field(
        default="scope", description="The claim with the token's scopes (a space-separated string or a list)."
    )


class UserConfig(ConfigModel):
    """A user of the built-in authorization server."""

    password_hash: SecretKey = Field(
        description="The password's hash, as `python -m hub hash-password` prints it (never the password)."
    )
    tenant: Name = Field(description="The tenant the user's tokens act in.")
    scopes: tuple[NonEmpty, ...] | None = Field(
        default=None, description="The scopes the user may grant (of auth.scopes). Default: all of them."
    )


class AuthServerConfig(ConfigModel):
    """The built-in OAuth 2.1 authorization server (authorization code with PKCE, dynamic client
    registration and Client ID Metadata Documents, refresh, revocation). Its signing keys are made
    once and kept in data_dir/oauth."""

    enabled: bool = False
    users: Annotated[Mapping[Name, UserConfig], AfterValidator(MappingProxyType)] = Field(
        default_factory=lambda: MappingProxyType({}), json_schema_extra=EMPTY_MAPPING
    )
    access_token_ttl: float = Field(default=3600.0, gt=0, description="Seconds an access token lives.")
    refresh_token_ttl: float = Field(default=30 * 86400.0, gt=0, description="Seconds a refresh token lives.")


class AuthConfig(ConfigModel):
    """Admin keys, OAuth scopes and issuers; tenant keys live on their tenants."""

    admin_keys: Keys = ()
    scopes: Annotated[Mapping[NonEmpty, ScopeConfig], AfterValidator(MappingProxyType)] = Field(
        default_factory=lambda: MappingProxyType({}),
        description="OAuth scopes by name. None configured: a valid token may call everything of its "
        "tenant. Some configured: a token may call what its scopes give, and nothing without one.",
        json_schema_extra=EMPTY_MAPPING,
    )
    issuers: tuple[IssuerConfig, ...] = ()
    server: AuthServerConfig = Field(default_factory=AuthServerConfig)

    @property
    def oauth(self) -> bool:
        """Whether OAuth access tokens are accepted (an issuer, or the built-in server)."""
        return bool(self.issuers) or self.server.enabled

    def grant_of(self, scopes: tuple[str, ...]) -> tuple[Grant, ...]:
        """What a token with `scopes` may call: each known scope's grant (everything if none is
        configured; nothing if some are and the token has none of them)."""
        if not self.scopes:
            return (EVERYTHING,)
        return tuple(self.scopes[s] for s in scopes if s in self.scopes)
