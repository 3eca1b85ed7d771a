"""The built-in authorization server's login and consent page, `/oauth/login`.

`/authorize` (the SDK's handler, then `HubOAuthProvider.authorize`) sends the user's browser
here with `?request=<id>`. `GET` shows a form (`web/static/oauth/login.html`): who asks (the
client's name or id, and where it returns), the tenant (the one the resource names, or the
user's own) and the scopes asked, then user and password. `POST` checks, in order: the request is
still pending; the CSRF token (a per-request value, in the form and in a `SameSite=Strict` cookie
set with the form, equal to the request's); "Deny" (back to the client with `access_denied`);
the rate limit (`hub.login_limiter`: 5 wrong passwords a minute per user and address, 429); the
password (`hub.passwords`, off the web loop); then the provider grants a code and the browser is
sent to the client's `redirect_uri` with `code`, `state` and `iss`. A wrong password shows the
form again with an error (401); a user who may not grant what is asked sees why (403).

Handlers run on the web loop.
"""

from __future__ import annotations

import functools
import hmac
import html
import logging
import math
from pathlib import Path
from string import Template

from hub.oauth_provider import LoginRefused, PendingLogin
from hub.passwords import verify_password
from web.base import ApiHandler
from web.oauth_server import LOGIN_PATH, auth_server

log = logging.getLogger(__name__)

CSRF_COOKIE = "mcp_hub_login"
_PAGE = Path(__file__).parent / "static" / "oauth" / "login.html"


@functools.cache
def _template() -> Template:
    return Template(_PAGE.read_text(encoding="utf-8"))


def _cookie(login: PendingLogin) -> str:
    """The CSRF cookie of one login (one per request: two sign-ins in two tabs do not clash)."""
    return f"{CSRF_COOKIE}_{login.id[:16]}"


class LoginHandler(ApiHandler):
    """`GET|POST /oauth/login`: sign in and allow (or deny) a client's authorization request."""

    route = LOGIN_PATH
    public = True

    def get(self) -> None:
        server = auth_server(self)
        login = server.provider.login(self.get_query_argument("request", ""))
        if login is None:
            self._gone()
            return
        secure = self.request.protocol == "https"
        self.set_cookie(
            _cookie(login),
            login.csrf,
            path=LOGIN_PATH,
            httponly=True,
            samesite="Strict",
            secure=secure,
            max_age=600,
        )
        self._page(login)

    async def post(self) -> None:
        server = auth_server(self)
        login = server.provider.login(self.get_body_argument("request", ""))
        if login is None:
            self._gone()
            return
        if not self._csrf_ok(login):
            self._page(login, "This form is stale or was not sent from this page: sign in again.", 400)
            return
        if self.get_body_argument("action", "allow") == "deny":
            self.redirect(server.provider.deny(login))
            return
        user = self.get_body_argument("username", "").strip()[:128]
        address = self.request.remote_ip or "-"
        limiter = server.limiter
        wait = limiter.retry_after(user, address)
        if wait > 0:
            self.set_header("Retry-After", str(math.ceil(wait)))
            self._page(login, f"Too many failed sign-ins: try again in {math.ceil(wait)} s.", 429, user)
            return
        users = self.hub.config.auth.server.users
        stored = users[user].password_hash.reveal() if user in users else None
        if not await self.blocking(verify_password, stored, self.get_body_argument("password", "")):
            limiter.failed(user, address)
            log.warning(
                "failed sign-in %s from %s",
                f"of user {user}" if user in users else "of an unknown user",
                address,
            )
            self._page(login, "Wrong user or password.", 401, user)
            return
        limiter.succeeded(user, address)
        try:
            target = server.provider.grant(login, user)
        except LoginRefused as exc:
            self._page(login, f"{exc}.", 403, user)
            return
        log.info("user %s allowed client %s", user, login.client.client_id)
        self.redirect(target)

    def _csrf_ok(self, login: PendingLogin) -> bool:
        sent, cookie = self.get_body_argument("csrf", ""), self.get_cookie(_cookie(login), "")
        expected = login.csrf.encode()
        return hmac.compare_digest(sent.encode(), expected) & hmac.compare_digest(
            (cookie or "").encode(), expected
        )

    def _page(self, login: PendingLogin, error: str = "", status: int = 200, user: str = "") -> None:
        params = login.params
        client = login.client
        text = _template().substitute(
            client=html.escape(client.client_name or client.client_id),
            tenant=html.escape(login.tenant or "your own"),
            scopes=html.escape(
                ", ".join(params.scopes) if params.scopes else "everything your user may grant"
            ),
            redirect=html.escape(str(params.redirect_uri)),
            error=f'<p class="error" role="alert">{html.escape(error)}</p>' if error else "",
            action=LOGIN_PATH,
            request=html.escape(login.id),
            csrf=html.escape(login.csrf),
            username=html.escape(user),
        )
        self._html(text, status)

    def _gone(self) -> None:
        text = (
            "<!doctype html><title>Sign-in expired - MCP Hub</title><p>This sign-in request is unknown or "
            "has expired (they last 10 minutes). Start again from your application.</p>"
        )
        self._html(text, 400)

    def _html(self, text: str, status: int) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        # No frame may show it (a consent page in a hidden frame would be clickjacking), no script.
        self.set_header("X-Frame-Options", "DENY")
        self.set_header(
            "Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
        )
        # Not no-referrer: under it a browser sends `Origin: null` with the form's POST, which the
        # edge refuses (403 origin_not_allowed). same-origin still sends no referrer to the client.
        self.set_header("Referrer-Policy", "same-origin")
        self.finish(text)


ROUTES: list[tuple[str, type[ApiHandler]]] = [(r"/oauth/login", LoginHandler)]
