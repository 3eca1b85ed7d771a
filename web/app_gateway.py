"""The WebSocket gateway of the apps of `plugins_dir` (`web.apps`): `WS /ws/app/{app_id}/{tenant_id}`
(README.md, "Apps and the WebSocket gateway").

It speaks JSON text frames `{"type", "id"?, "data"}` (`web.sockets`): `app_ready` is answered with
`app_state` (the app, its config, the tenant's catalog and servers), `tool_call` with
`tool_progress` frames and a `tool_result` or an `error`. Handlers run on the web loop; tool calls
run on the servers' loops through `Hub.call_tool_async`, concurrently, each cancelled if its
connection closes. Each connection is a client session: its calls of per_session servers run on
its own instances, which stop when it closes.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

from actors.models import ServerStatus
from hub.errors import BadRequest, HubError, NotFound
from web.sockets import HubSocket

if TYPE_CHECKING:
    from web.apps import AppRegistry

log = logging.getLogger("web.apps")  # (its log lines kept their name when it moved here)


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
                user=self.caller.subject,
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


ROUTES: list[tuple[str, Any]] = [(r"/ws/app/([^/]+)/([^/]+)", AppSocket)]
