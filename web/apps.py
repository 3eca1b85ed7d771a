"""MCP Apps: apps from `plugins_dir`, their static files, and the WebSocket gateway (contract section 6).

An app is a folder with a `manifest.json` (validated by `schemas/manifest.schema.json`; a bad one is
reported and skipped, the rest are served) directly under `plugins_dir` or one level deeper (so
`plugins/examples/<app>` is found). Its files are served under `/apps/{id}/`; the entry page gets
`window.MCP_HUB_CONFIG` injected. No path outside the app's folder is ever served.

The gateway, `WS /ws/app/{app_id}/{tenant_id}`, speaks JSON text frames `{"type", "id"?, "data"}`.
Handlers run on the web loop; tool calls run on the servers' loops through `Hub.call_tool_async`,
concurrently, each cancelled if its connection closes. Each connection is a client session: its
calls of per_session servers run on its own instances, which stop when it closes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from actors.models import ServerStatus
from hub.config import validation_problems
from hub.errors import BadRequest, HubError, NotFound
from hub.runtime import Hub
from web import responses as api
from web.base import ApiHandler, Caller
from web.mcp_apps import ui_apps
from web.sockets import HubSocket

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
        apps: list[api.App] = [a.to_json() for a in registry.visible(self.caller, self.hub)]
        apps += [a.to_json() for a in await self.blocking(ui_apps, self.hub, self.visible_tenants())]
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


# --------------------------------------------------------------------------- the WebSocket gateway


class AppSocket(HubSocket):
    """`WS /ws/app/{app_id}/{tenant_id}`: one app connection. Runs on the web loop."""

    route = "/ws/app/{app_id}/{tenant_id}"

    async def get(self, app_id: str, tenant: str) -> None:  # type: ignore[override]
        try:
            self.caller = self.authenticate()
            registry: AppRegistry = self.application.settings["apps"]
            self.app = registry.get(app_id, self.caller, self.hub)
            if not (
                self.caller.sees(tenant) and self.app.allows(tenant) and tenant in self.hub.config.tenants
            ):
                raise NotFound(f"no tenant '{tenant}' for app '{app_id}'")
        except HubError as exc:
            self.refuse(exc)
            return
        self.tenant = tenant
        await super().get(app_id, tenant)

    def open(self, app_id: str, tenant: str) -> None:  # type: ignore[override]
        self.calls: dict[asyncio.Task[None], Any] = {}
        self.session = f"ws:{uuid.uuid4().hex}"
        super().open()

    def on_close(self) -> None:
        super().on_close()
        for task in list(getattr(self, "calls", {})):
            task.cancel()  # nobody is left to read the answer
        if hasattr(self, "session"):  # its instances of per_session servers stop (off the loop)
            self.loop.run_in_executor(None, self.hub.end_session, self.session)

    def wants(self, tenant: str) -> bool:
        """Only the events of the app's tenant (router thread)."""
        return tenant == self.tenant

    def on_frame(self, frame_id: Any, kind: str, data: Any) -> None:
        if kind == "app_ready":
            self._start(self._app_state(frame_id))
        elif kind == "tool_call":
            self._start(self._tool_call(frame_id, data))
        else:
            super().on_frame(frame_id, kind, data)

    def _start(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.calls[task] = None
        task.add_done_callback(lambda t: self.calls.pop(t, None))

    async def _app_state(self, frame_id: Any) -> None:
        """Answer `app_ready` with the app, its config, the tenant's catalog and servers (web loop)."""
        loop = asyncio.get_running_loop()
        tools, statuses = await asyncio.gather(
            loop.run_in_executor(None, self.hub.tools, self.tenant),
            loop.run_in_executor(None, self.hub.servers, self.tenant),
        )
        self._send(
            "app_state",
            frame_id,
            {
                "app_id": self.app.id,
                "tenant_id": self.tenant,
                "config": self.app.config,
                "tools": [t.to_json() for t in tools],
                "servers": [self._latest(s).to_json() for s in statuses],
            },
        )

    def _latest(self, status: ServerStatus) -> ServerStatus:
        """`status`, or a newer one already told: a `server_status` frame sent while the snapshot
        was on its way must not be undone by this older state (web loop)."""
        told = self.hub.board.status(status.tenant, status.server)
        return told if told is not None and told.seq > status.seq else status

    async def _tool_call(self, frame_id: Any, data: Any) -> None:
        try:
            if not isinstance(data, dict) or not isinstance(data.get("tool_name"), str):
                raise BadRequest('tool_call needs data {"tool_name": string, "arguments": object}')
            arguments = data.get("arguments") or {}
            if not isinstance(arguments, dict):
                raise BadRequest("arguments must be a JSON object")
            result = await self.hub.call_tool_async(
                self.tenant,
                data["tool_name"],
                arguments,
                _Progress(self, frame_id),
                key=self.caller.key_id,
                session=self.session,
            )
        except HubError as exc:
            self._error(frame_id, exc.code, exc.message)
            return
        except Exception:  # isolation: one broken call must not take the connection down
            log.exception("tool_call failed")
            self._error(frame_id, "internal_error", "internal error (see the hub's log)")
            return
        self._send("tool_result", frame_id, result.to_json())


class _Progress:
    """A tool call's progress, as `tool_progress` frames (called on the server's loop)."""

    def __init__(self, socket: AppSocket, frame_id: Any) -> None:
        self.socket = socket
        self.frame_id = frame_id

    async def progress(self, value: float, total: float | None, message: str | None) -> None:
        self.socket.loop.call_soon_threadsafe(
            self.socket._send,
            "tool_progress",
            self.frame_id,
            {"progress": value, "total": total, "message": message},
        )

    async def ask(self, request: Any, result_type: type[Any]) -> Any:
        raise BadRequest("an app connection cannot answer the server's requests")

    async def log(self, params: Any) -> None:
        return None


ROUTES: list[tuple[str, Any]] = [
    (r"/api/apps", AppsHandler),
    (r"/api/apps/([^/]+)", AppHandler),
    (r"/apps/([^/]+)/?", AppFileHandler),
    (r"/apps/([^/]+)/(.+)", AppFileHandler),
    (r"/ws/app/([^/]+)/([^/]+)", AppSocket),
]
