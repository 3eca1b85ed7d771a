"""An app's files (`web.apps`): `GET /apps/{id}` and `/apps/{id}/{path}`.

The entry page gets `window.MCP_HUB_CONFIG` injected (the app, its tenant, its config and the URL
of its WebSocket, `web.app_gateway`). A browser opens the entry page with `?token=`; the answer
sets a signed cookie scoped to the app that lets the page fetch the app's other files without the
key. No path outside the app's folder is ever served (`safe_path`). Handlers run on the web loop.
"""

from __future__ import annotations

import json
import mimetypes
import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from hub.errors import NotFound
from web.auth import Caller
from web.base import ApiHandler

if TYPE_CHECKING:
    from web.apps import App, AppRegistry

_ENCODED_TRICKS = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)


def safe_path(app: App, relative: str) -> Path:
    """The file `relative` inside the app's folder, or `NotFound` for any way out of it.

    Refused: `..` segments, absolute paths, backslashes, NUL, percent-encoded dots, slashes and
    backslashes that survived decoding (double encoding), and symlinks that resolve outside.
    """
    if (
        not relative
        or "\\" in relative
        or "\0" in relative
        or relative.startswith("/")
        or _ENCODED_TRICKS.search(relative)
        or ".." in relative.split("/")
    ):
        raise NotFound("no such file")
    target = (app.folder / relative).resolve()
    if not target.is_relative_to(app.folder) or not target.is_file():
        raise NotFound("no such file")
    return target


class AppFileHandler(ApiHandler):
    """`GET /apps/{id}` and `/apps/{id}/{path}`: an app's files (the key may come as `?token=`).

    The entry page gets `window.MCP_HUB_CONFIG` injected; every file gets its content type and an
    ETag (a matching `If-None-Match` is answered 304).
    """

    route = "/apps/{app_id}/{path}"
    token_in_query = True
    COOKIE = "mcp_hub_app"

    def authenticate(self) -> Caller:
        """The key (header or `?token=`), else the app's cookie.

        A browser opens the entry page with `?token=`, then fetches the app's other files with no
        key: the page's answer sets a signed, HttpOnly, SameSite=Strict cookie scoped to
        `/apps/{id}/` that names the key's id (never the key), valid while that key is configured.
        """
        token = self._bearer()
        path = f"/apps/{quote(self.path_args[0], safe='')}/"
        if token is None and not self.keys.open:
            signed = self.get_signed_cookie(self.COOKIE, max_age_days=1)
            caller = self.keys.by_key_id(signed.decode()) if signed else None
            if caller is not None:
                return caller
        caller = self.keys.authenticate(token, self.resource())
        if token is not None and caller.key_id and self.get_query_argument("token", None):
            self.set_signed_cookie(
                self.COOKIE, caller.key_id, expires_days=1, path=path, httponly=True, samesite="Strict"
            )
        return caller

    def get(self, app_id: str, path: str | None = None) -> None:
        assert self.caller is not None
        registry: AppRegistry = self.application.settings["apps"]
        app = registry.get(app_id, self.caller, self.hub)
        if path is None and not self.request.path.endswith("/"):
            # Relative links of the entry page resolve against /apps/{id}/.
            self.redirect(f"/apps/{app_id}/" + (f"?{self.request.query}" if self.request.query else ""))
            return
        target = safe_path(app, path or app.entry)
        body = target.read_bytes()
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if target == (app.folder / app.entry).resolve():
            body = self._inject(app, body)
        self.set_header("Content-Type", f"{kind}; charset=utf-8" if kind.startswith("text/") else kind)
        self.set_header("Cache-Control", "no-cache")
        self.finish(body)

    def _inject(self, app: App, page: bytes) -> bytes:
        assert self.caller is not None
        tenant = self.get_query_argument("tenant", None) or self.caller.tenant or "default"
        if not (self.caller.sees(tenant) and app.allows(tenant)):
            raise NotFound(f"no app '{app.id}'")
        scheme = "wss" if self.request.protocol == "https" else "ws"
        ws_url = f"{scheme}://{self.request.host}/ws/app/{app.id}/{tenant}"
        token = self.get_query_argument("token", None)
        if token:
            ws_url += f"?token={token}"
        config = {"app_id": app.id, "tenant_id": tenant, "ws_url": ws_url, "config": app.config}
        # "</" cannot end the script element early: JSON escapes it.
        script = (
            "<script>window.MCP_HUB_CONFIG = " + json.dumps(config).replace("</", "<\\/") + ";</script>"
        ).encode()
        marker = page.lower().find(b"<head>")
        if marker >= 0:
            return page[: marker + 6] + script + page[marker + 6 :]
        return script + page
