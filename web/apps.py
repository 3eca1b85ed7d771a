"""Apps: the apps of `plugins_dir`, their static files, and the app listing (README.md, "Apps and
the WebSocket gateway").

An app is a folder with a `manifest.json` (validated by `schemas/manifest.schema.json`; a bad one is
reported and skipped, the rest are served) directly under `plugins_dir` or one level deeper (so
`plugins/examples/<app>` is found). Its files are served under `/apps/{id}/`; the entry page gets
`window.MCP_HUB_CONFIG` injected. No path outside the app's folder is ever served. `GET /api/apps`
lists these apps and the MCP Apps of running servers (`web.mcp_apps`). The WebSocket gateway the
apps call tools through is `web.app_gateway`.

Handlers run on the web loop; the registry is read once, at start.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hub.config import validation_problems
from hub.errors import NotFound
from hub.runtime import Hub
from web import app_gateway
from web.auth import Caller
from web.base import ApiHandler
from web.mcp_apps import ui_apps

log = logging.getLogger(__name__)

_ENCODED_TRICKS = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)


@dataclass(frozen=True)
class App:
    """One app: its manifest and folder."""

    id: str
    name: str
    folder: Path
    description: str = ""
    version: str = "0.0.0"
    entry: str = "index.html"
    tenants: tuple[str, ...] | None = None  # None: every tenant
    config: dict[str, Any] = field(default_factory=dict)

    def allows(self, tenant: str) -> bool:
        """Whether `tenant` may use the app."""
        return self.tenants is None or tenant in self.tenants

    def to_json(self) -> dict[str, Any]:
        """The app as `/api/apps` shows it."""
        return {
            "id": self.id,
            "kind": "plugin",
            "name": self.name,
            "description": self.description,
            "version": self.version,
            "entry": self.entry,
            "tenants": list(self.tenants) if self.tenants is not None else None,
            "url": f"/apps/{self.id}",
        }


class AppRegistry:
    """The apps found in `plugins_dir` at start, and the problems of those that were skipped."""

    def __init__(self, plugins_dir: str | os.PathLike[str]) -> None:
        self.root = Path(plugins_dir)
        self.apps: dict[str, App] = {}
        self.problems: list[str] = []
        if not self.root.is_dir():
            log.info("no apps: plugins_dir %s does not exist", self.root)
            return
        manifests = sorted([*self.root.glob("*/manifest.json"), *self.root.glob("*/*/manifest.json")])
        for manifest in manifests:
            self._load(manifest)
        for problem in self.problems:
            log.warning("app skipped: %s", problem)

    def _load(self, manifest: Path) -> None:
        where = manifest.relative_to(self.root)
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.problems.append(f"{where}: cannot read: {exc}")
            return
        problems = validation_problems("manifest", data)
        if not problems and data["id"] != manifest.parent.name:
            problems = [f"id: {data['id']!r} differs from the app's folder name {manifest.parent.name!r}"]
        if not problems and data["id"] in self.apps:
            problems = [f"id: {data['id']!r} is already the id of {self.apps[data['id']].folder}"]
        if problems:
            self.problems += [f"{where}: {p}" for p in problems]
            return
        tenants = tuple(data["tenants"]) if "tenants" in data else None
        self.apps[data["id"]] = App(
            id=data["id"],
            name=data["name"],
            folder=manifest.parent.resolve(),
            description=data.get("description", ""),
            version=data.get("version", "0.0.0"),
            entry=data.get("entry", "index.html"),
            tenants=tenants,
            config=data.get("config", {}),
        )

    def visible(self, caller: Caller, hub_: Hub) -> list[App]:
        """The apps `caller` may use (an app whose tenants the caller cannot see is not listed)."""
        return [
            a for a in self.apps.values() if any(a.allows(t) and caller.sees(t) for t in hub_.config.tenants)
        ]

    def get(self, app_id: str, caller: Caller, hub_: Hub) -> App:
        """One app, if `caller` may use it.

        Raises:
            NotFound: unknown, or not for the caller's tenants.
        """
        app = self.apps.get(app_id)
        if app is None or app not in self.visible(caller, hub_):
            raise NotFound(f"no app '{app_id}'")
        return app


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


# --------------------------------------------------------------------------- REST and static files


class AppsHandler(ApiHandler):
    """`GET /api/apps`: the apps the caller may use: those of `plugins_dir` and the MCP Apps of
    running servers (an admin also sees the apps that were skipped)."""

    route = "/api/apps"

    async def get(self) -> None:
        assert self.caller is not None
        registry: AppRegistry = self.application.settings["apps"]
        apps = [a.to_json() for a in registry.visible(self.caller, self.hub)]
        apps += [a.to_json() for a in await self.blocking(ui_apps, self.hub, self.visible_tenants())]
        body: dict[str, Any] = {"apps": apps}
        if self.caller.admin:
            body["problems"] = registry.problems
        self.reply(body)


class AppHandler(ApiHandler):
    """`GET /api/apps/{id}`: an app of `plugins_dir`, or an MCP App (`ui:{tenant}:{server}.{tool}`)."""

    route = "/api/apps/{app_id}"

    async def get(self, app_id: str) -> None:
        assert self.caller is not None
        if app_id.startswith("ui:"):
            tenant = app_id.split(":", 2)[1]
            if tenant in self.visible_tenants():
                for app in await self.blocking(ui_apps, self.hub, [tenant]):
                    if app.id == app_id:
                        self.reply(app.to_json())
                        return
            raise NotFound(f"no app '{app_id}'")
        registry: AppRegistry = self.application.settings["apps"]
        self.reply(registry.get(app_id, self.caller, self.hub).to_json())


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
        caller = self.keys.authenticate(token)
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


ROUTES: list[tuple[str, Any]] = [
    (r"/api/apps", AppsHandler),
    (r"/api/apps/([^/]+)", AppHandler),
    (r"/apps/([^/]+)/?", AppFileHandler),
    (r"/apps/([^/]+)/(.+)", AppFileHandler),
    *app_gateway.ROUTES,
]
