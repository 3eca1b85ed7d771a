"""Per-user servers: a `per_user` server runs one instance per user, with that user's own values.

A call of a per_user server goes to the instance of the caller's user (`web.auth.Caller.subject`:
a token's subject, a key's `subject`, else its id), which is a session instance (`hub.instances`)
whose session is `user:<subject>`; it is started with the server's environment plus the user's
`user_env` values from the credential store (`hub.credentials`), and stops after `idle_timeout`
like any on_demand server.

Before any process starts, `session_for` refuses a call that cannot run: no user (an open hub,
stdio without a key), or a user who has not set every variable (the message names them and where
to set them: `PUT <gateway.public_url>/api/me/credentials/<server>`). A tool call turns that refusal
into a tool error (`isError`; REST 200 with `is_error: true`), so that a model can tell its user.

Any thread; `session_for` and `env_for` read the store's file (run them off a loop).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from hub import timeouts
from hub.config import HubConfig, SecretMap, ServerConfig
from hub.credentials import CredentialStore
from hub.errors import CredentialsMissing, NotFound, UserRequired

if TYPE_CHECKING:
    from actors.tenant import TenantActorProxy
    from hub.events import WakeKey

log = logging.getLogger(__name__)

PREFIX = "user:"


def user_session(subject: str) -> str:
    """The session of `subject`'s instances of per_user servers."""
    return PREFIX + subject


class UserServers:
    """Which instance a per_user server's call runs on, and what it is started with.

    Args:
        config: the hub's configuration now (a reload replaces it).
        store: the users' values.
        tenant: a tenant's proxy by name (a blocking router ask).
    """

    def __init__(
        self,
        config: Callable[[], HubConfig],
        store: CredentialStore,
        tenant: Callable[[str], TenantActorProxy],
    ) -> None:
        self._config = config
        self.store = store
        self._tenant = tenant
        self._told: str | None = None  # the last problem logged (each is logged once)

    def server(self, tenant: str, server: str) -> ServerConfig | None:
        """`server`'s configuration if it is an enabled per_user server of `tenant`, else None."""
        found = self._config().tenants.get(tenant)
        config = found.servers.get(server) if found is not None else None
        return config if config is not None and config.per_user and config.enabled else None

    def per_user(self, tenant: str, server: str) -> ServerConfig:
        """The per_user server `server` of `tenant`.

        Raises:
            NotFound: there is none (unknown, disabled, or not per_user).
        """
        config = self.server(tenant, server)
        if config is None:
            raise NotFound(f"no per_user server '{server}' in tenant '{tenant}'")
        return config

    def where(self, server: str, example: str) -> str:
        """Where a user sets their values for `server` (`example`: a variable): the API and the page."""
        base = self._config().gateway.public_url or ""
        here = "" if base else " of this hub"
        api = f'PUT {base}/api/me/credentials/{server}{here} (body {{"{example}": "..."}})'
        return f"{api} or on the page {base}/me/credentials/{server}{here}"

    def page(self, server: str) -> str | None:
        """The page where a user sets their values for `server` (None without `gateway.public_url`)."""
        base = self._config().gateway.public_url
        return f"{base}/me/credentials/{server}" if base else None

    def session_for(self, tenant: str, server: str, session: str | None, user: str | None) -> str | None:
        """The session a call of `server` runs in: `session` for any other server; for a per_user
        one, its user's (`user:<subject>`), once they have set every variable it declares.

        Raises:
            UserRequired: a per_user server called with no user.
            CredentialsMissing: the user has not set every variable of `user_env`.
            CredentialsUnreadable, NoSecretKey: the user's values cannot be read.
        """
        config = self.server(tenant, server)
        if config is None:
            return session
        if user is None:
            raise UserRequired(
                f"server '{server}' runs with each user's own credentials, and this call has no user: "
                "call it with a key (its `subject` is the user) or a token"
            )
        if config.user_env:
            have = self.store.names(tenant, user, server)
            missing = [name for name in config.user_env if name not in have]
            if missing:
                raise CredentialsMissing(
                    f"server '{server}' needs your own {', '.join(missing)}: set "
                    f"{'it' if len(missing) == 1 else 'them'} with {self.where(server, missing[0])}, "
                    "then call again"
                )
        return user_session(user)

    def health(self) -> str | None:
        """`/health`'s word on the users' values: `ok`, `no_secret_key` or `unreadable` (logged
        once, with the fix); None without per_user servers that take values."""
        config = self._config()
        tenants = [
            t.name
            for t in config.tenants.values()
            if any(s.per_user and s.user_env for s in t.servers.values())
        ]
        if not tenants:
            return None
        problem = self.store.problem(tenants)
        if problem is None:
            return "ok"
        if problem != self._told:
            log.error("per-user credentials: %s", problem)
            self._told = problem
        return "no_secret_key" if self.store.key_problem else "unreadable"

    def env_for(self, key: WakeKey) -> SecretMap | None:
        """The user's values an instance is started with (None: not a per_user server's instance)."""
        tenant, server, session = key
        if session is None or not session.startswith(PREFIX) or self.server(tenant, server) is None:
            return None
        return SecretMap(self.store.values(tenant, session.removeprefix(PREFIX), server))

    def stop(self, tenant: str, user: str, server: str) -> int:
        """Stop `user`'s instance of `server` (its values changed: the next call starts a new one
        with them) and wait until its process is gone; how many stopped (0 or 1). Blocks."""
        return self._tenant(tenant).end_session(user_session(user), server).get(timeout=timeouts.LIFECYCLE)
