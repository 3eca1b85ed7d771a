"""`/api/me/credentials/{server}`: the caller's own values for a per_user server's `user_env`.

The caller is the user its key (or token) acts for (`Caller.subject`); its tenant is its key's, or
for an admin the one `?tenant=` names (default `default`). A server that is not an enabled
per_user server of that tenant is 404 like an unknown one. Values go in (PUT) and are forgotten
(DELETE), never out: every answer lists the variable names and whether each is set. Setting or
forgetting stops the user's running instance, so that their next call starts one with the new
values. The store's file is read and written off the web loop (`blocking`); nothing here logs a
value (and the access log has no bodies).

`GET /me/credentials/{server}` is a page for the same (`web/static/me`): like the admin panel's,
it holds no data, asks for the user's key and keeps it in the tab's sessionStorage; its inputs are
password fields, never prefilled. It is where a tool error and a URL-mode elicitation send a user
who has not set their values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hub.config import ServerConfig
from hub.errors import BadRequest, UserRequired
from web import responses_me as api
from web.base import ApiHandler

_SEGMENT = r"([^/]+)"
STATIC = Path(__file__).resolve().parent / "static" / "me"
# What the page may do: its own script, this hub's API, no inline code, never framed.
_PAGE_POLICY = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_MAX_VALUE = 64 * 1024  # (a token, a login, a key file's text: not a payload)


class CredentialsHandler(ApiHandler):
    """`GET|PUT|DELETE /api/me/credentials/{server}`: which variables are set, set some, forget all."""

    route = "/api/me/credentials/{server}"

    def _target(self, server: str) -> tuple[str, str, ServerConfig]:
        """(tenant, user, server config) of this request.

        Raises:
            NotFound: no per_user server of that name in the caller's tenant.
            UserRequired: the caller acts for no user (an open hub).
        """
        assert self.caller is not None
        tenant = self.calling_tenant()
        config = self.hub.users.per_user(tenant, server)
        if self.caller.subject is None:
            raise UserRequired("credentials belong to a user: call with a key (its `subject`) or a token")
        return tenant, self.caller.subject, config

    def _answer(self, config: ServerConfig, names: set[str]) -> api.Credentials:
        variables: list[api.CredentialVariable] = [{"name": n, "set": n in names} for n in config.user_env]
        return {"server": config.name, "variables": variables}

    async def get(self, server: str) -> None:
        tenant, user, config = self._target(server)
        names = await self.blocking(self.hub.users.store.names, tenant, user, server)
        self.reply(self._answer(config, names))

    async def put(self, server: str) -> None:
        tenant, user, config = self._target(server)
        values = _values(self.json_object(), config)
        names = await self.blocking(self.hub.users.store.update, tenant, user, server, values)
        await self.blocking(self.hub.users.stop, tenant, user, server)
        self.reply(self._answer(config, names))

    async def delete(self, server: str) -> None:
        tenant, user, config = self._target(server)
        await self.blocking(self.hub.users.store.forget, tenant, user, server)
        await self.blocking(self.hub.users.stop, tenant, user, server)
        self.reply(self._answer(config, set()))


def _values(body: dict[str, Any], config: ServerConfig) -> dict[str, str]:
    """The body's values, each a variable `config` declares in `user_env` and a string.

    Raises:
        BadRequest: another name, a value that is not a string or too long, or no value at all.
    """
    undeclared = sorted(name for name in body if name not in config.user_env)
    if undeclared:
        declared = ", ".join(config.user_env) or "none"
        raise BadRequest(
            f"server '{config.name}' does not take {', '.join(undeclared)} from its users "
            f"(its user_env: {declared})"
        )
    for name, value in body.items():
        if not isinstance(value, str) or not value or len(value) > _MAX_VALUE or "\x00" in value:
            raise BadRequest(f"{name} must be a non-empty string (no NUL) of at most {_MAX_VALUE} characters")
    if not body:
        raise BadRequest(
            f"the body names no variable (server '{config.name}' takes {', '.join(config.user_env)})"
        )
    return dict(body)


class CredentialsPageHandler(ApiHandler):
    """`GET /me/credentials/{server}`: the page where a user sets their values (public: no data)."""

    route = "/me/credentials/{server}"
    public = True

    def get(self, server: str) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", _PAGE_POLICY)
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "no-referrer")
        self.finish((STATIC / "index.html").read_bytes())


class CredentialsScriptHandler(ApiHandler):
    """`GET /me/me.js`: the page's script (public: shipped code, no data)."""

    route = "/me/me.js"
    public = True

    def get(self) -> None:
        self.set_header("Content-Type", "text/javascript; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish((STATIC / "me.js").read_bytes())


ROUTES: list[tuple[str, type[ApiHandler]]] = [
    (rf"/api/me/credentials/{_SEGMENT}", CredentialsHandler),
    (rf"/me/credentials/{_SEGMENT}", CredentialsPageHandler),
    (r"/me/me.js", CredentialsScriptHandler),
]
