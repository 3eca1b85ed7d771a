"""Apps: the apps of `plugins_dir`, and the app listing (README.md, "Apps and the WebSocket
gateway").

An app is a folder with a `manifest.json` (validated by `schemas/manifest.schema.json`; a bad one is
reported and skipped, the rest are served) directly under `plugins_dir` or one level deeper (so
`plugins/examples/<app>` is found). Its files are served under `/apps/{id}/` (`web.app_files`,
which never serves a path outside the app's folder) and it calls tools through the WebSocket
gateway (`web.app_gateway`). `GET /api/apps` lists these apps and the MCP Apps of running servers
(`web.mcp_apps`).

Handlers run on the web loop; the registry is read once, at start.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.config import validation_problems
from hub.errors import NotFound
from hub.runtime import Hub
from web import app_gateway
from web import responses as api
from web.app_files import AppFileHandler
from web.auth import Caller
from web.base import ApiHandler
from web.mcp_apps import ui_apps

log = logging.getLogger(__name__)


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

    def to_json(self) -> api.PluginApp:
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


class AppsHandler(ApiHandler):
    """`GET /api/apps`: the apps the caller may use: those of `plugins_dir` and the MCP Apps of
    running servers (an admin also sees the apps that were skipped)."""

    route = "/api/apps"

    async def get(self) -> None:
        assert self.caller is not None
        registry: AppRegistry = self.application.settings["apps"]
        apps: list[api.App] = [a.to_json() for a in registry.visible(self.caller, self.hub)]
        ui = await self.blocking(ui_apps, self.hub, self.visible_tenants(), self.caller)
        apps += [a.to_json() for a in ui]
        body: api.AppList = {"apps": apps}
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
                for app in await self.blocking(ui_apps, self.hub, [tenant], self.caller):
                    if app.id == app_id:
                        self.reply(app.to_json())
                        return
            raise NotFound(f"no app '{app_id}'")
        registry: AppRegistry = self.application.settings["apps"]
        self.reply(registry.get(app_id, self.caller, self.hub).to_json())


ROUTES: list[tuple[str, Any]] = [
    (r"/api/apps", AppsHandler),
    (r"/api/apps/([^/]+)", AppHandler),
    (r"/apps/([^/]+)/?", AppFileHandler),
    (r"/apps/([^/]+)/(.+)", AppFileHandler),
    *app_gateway.ROUTES,
]
