"""The admin panel: a static page at `/admin` over the REST API, and its live events at `WS /ws/admin`.

The page (`web/static/admin/index.html`) holds no data: requested with no key it is served to
anyone, and on a keyed hub its script shows a sign-in form. The key typed there is checked by
asking for `/admin` again with it (an admin key gets the page, a wrong key 401, a tenant key 404,
as for the other admin routes), kept in the tab's sessionStorage, and sent as
`Authorization: Bearer` on every REST call and as `?token=` on the socket, which needs an admin key
when keys are configured. `/admin?token=<key>` still works: the key is checked the same way and the
script moves it out of the URL. The page's script, style sheet and icon (`/admin/{file}`) are
shipped code with no data in them, and are public like `/openapi.json`. Only the files of
`web/static/admin` are served, by exact name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hub.errors import HubError, NotFound
from web.auth import Caller
from web.base import ApiHandler
from web.sockets import HubSocket

STATIC = Path(__file__).resolve().parent / "static" / "admin"
PAGE = "index.html"

# What the page's scripts may do: talk to this hub only, run no inline code, never be framed.
_PAGE_POLICY = (
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


def _assets() -> dict[str, Path]:
    """The public files of the panel, by name: every file of `STATIC` except the page."""
    return {p.name: p for p in STATIC.iterdir() if p.is_file() and p.name != PAGE}


_ASSETS = _assets()


class AdminPageHandler(ApiHandler):
    """`GET /admin`: the admin panel's page. Web loop.

    With no key it is served to anyone (it asks for one); a key, as a header or `?token=`, must be
    an admin key: a wrong one is 401 and a tenant's 404, which is how the page checks a key.
    """

    route = "/admin"
    token_in_query = True

    def authenticate(self) -> Caller:
        """The caller of the key the request carries; with none on a keyed hub, an anonymous
        caller (no tenant, not admin), who gets the page that asks for a key.

        Raises:
            Unauthorized: the key is wrong.
        """
        if self._bearer() is None and not self.keys.open:
            return Caller(admin=False)
        return super().authenticate()

    def get(self) -> None:
        assert self.caller is not None
        if self.caller.tenant is not None:
            raise NotFound("no route /admin")
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", _PAGE_POLICY)
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "no-referrer")  # the URL may carry the key
        self.finish((STATIC / PAGE).read_bytes())


class AdminAssetHandler(ApiHandler):
    """`GET /admin/{file}`: the panel's script, style sheet and icon (public: shipped code, no data)."""

    route = "/admin/{path}"
    public = True

    def get(self, path: str) -> None:
        target = _ASSETS.get(path)  # an exact name: no path of any shape leads elsewhere
        if target is None:
            raise NotFound("no such file")
        self.set_header("Content-Type", _TYPES.get(target.suffix, "application/octet-stream"))
        self.set_header("Cache-Control", "no-cache")
        self.finish(target.read_bytes())


class AdminSocket(HubSocket):
    """`WS /ws/admin`: `server_status`, `instance_status` (session instances of per_session
    servers), `catalog_changed` and `pins_changed` (a server's tools differ from those pinned, or no
    longer: `hub.pins`) of every tenant (admin key). Web loop."""

    route = "/ws/admin"
    instance_events = True
    pin_events = True

    async def get(self) -> None:  # type: ignore[override]
        try:
            self.caller = self.authenticate()
            if not self.caller.admin:
                raise NotFound("no route /ws/admin")
        except HubError as exc:
            self.refuse(exc)
            return
        await super().get()

    def wants(self, tenant: str) -> bool:
        """Every tenant's events (router thread)."""
        return True


ROUTES: list[tuple[str, Any]] = [
    (r"/admin/?", AdminPageHandler),
    (r"/admin/(.+)", AdminAssetHandler),
    (r"/ws/admin", AdminSocket),
]
