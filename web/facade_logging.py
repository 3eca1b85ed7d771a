"""The servers' log messages through the facade, and the level each client session asked for
(`logging/setLevel`, 2025-11-25).

Each session that sets a level gets the messages at or above it: those of its own calls (the lanes
and `web.mcp_requester` filter them with `LogLevels.allowed`) and those that belong to no call
(`ServerLogMessage` events: a server logging on its own), from every server its scope sees and
its caller may use as a whole (`hub.permissions`, as for the server's resources; a session
instance's only to its own session). A server is asked for the lowest level any session
that sees it asked for, and told again when that changes (a session sets another level or ends);
a server that starts later is told when its catalog arrives. A session that never set a level gets
its calls' messages at every level, as before, and no others.

A 2026-07-28 client has no `logging/setLevel`: it opts in per request (`_meta`), which the lanes
and the SDK honour for the messages of that request's call; messages of no call have nowhere to go
in that era.

Serving loop, except `heard`, a board listener (router thread).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from actors.models import CatalogChanged, Event, ServerLogMessage
from hub.errors import HubError
from web.facade_scope import Scope

if TYPE_CHECKING:
    from hub.runtime import Hub
    from web.facade_tools import ToolView

log = logging.getLogger(__name__)

LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
ALL_LEVELS = frozenset(LEVELS)


def at_or_above(level: str) -> frozenset[str]:
    """The levels at or above `level` (an unknown level: every one)."""
    return frozenset(LEVELS[LEVELS.index(level) :]) if level in LEVELS else ALL_LEVELS


def declares_logging(capabilities: Mapping[str, Any] | None) -> bool:
    """Whether a server's declared capabilities include `logging`."""
    return isinstance(capabilities, Mapping) and "logging" in capabilities


@dataclass
class _Listener:
    """A session that set a level: where its messages go, and which it wants."""

    session: Any  # the SDK's session object, to send on
    scope: Scope
    level: str


class LogLevels:
    """Each session's level, the level each server was asked for, and the delivery of messages
    that belong to no call. Serving loop, except `heard` (router thread)."""

    def __init__(self, hub_: Hub) -> None:
        self.hub = hub_
        self.loop: asyncio.AbstractEventLoop | None = None  # the serving loop, once attached
        self._listeners: dict[str, _Listener] = {}  # client session → its level
        self._asked: dict[tuple[str, str], str | None] = {}  # (tenant, server) → level it was asked for
        self._tasks: set[asyncio.Future[None]] = set()

    def allowed(self, session: str | None) -> frozenset[str]:
        """The levels `session` gets from its own calls."""
        listener = self._listeners.get(session) if session is not None else None
        return ALL_LEVELS if listener is None else at_or_above(listener.level)

    async def set_level(
        self, sdk_session: Any, scope: Scope, view: ToolView, session: str | None, level: str
    ) -> None:
        """`session` asked for `level` and above; ask the servers it sees for what they must send."""
        key = session if session is not None else f"sdk:{id(sdk_session)}"
        self._listeners[key] = _Listener(sdk_session, scope, level)
        servers = [c.server for c in view.catalogs if declares_logging(getattr(c, "capabilities", None))]
        await self._ask(scope.tenant, servers)

    def ended(self, session: str) -> None:
        """`session` ended: its level no longer counts."""
        listener = self._listeners.pop(session, None)
        if listener is not None:
            tenant = listener.scope.tenant
            self._spawn(self._ask(tenant, [s for t, s in self._asked if t == tenant]))

    def _lowest(self, tenant: str, server: str) -> str | None:
        """The lowest level asked for by the sessions that see `server` (None: none asks)."""
        levels = [
            LEVELS.index(listener.level)
            for listener in self._listeners.values()
            if listener.scope.tenant == tenant and listener.scope.server in (None, server)
        ]
        return LEVELS[min(levels)] if levels else None

    async def _ask(self, tenant: str, servers: list[str]) -> None:
        """Tell each of `servers` the level it must now send, if that changed."""
        for server in servers:
            level = self._lowest(tenant, server)
            if (tenant, server) in self._asked and self._asked[(tenant, server)] == level:
                continue
            self._asked[(tenant, server)] = level
            try:
                await self.hub.upstream.set_log_level(tenant, server, level)
            except HubError as exc:  # (the server is gone or cannot be asked: it is told when it returns)
                self._asked.pop((tenant, server), None)
                log.info("%s/%s: could not set its log level: %s", tenant, server, exc.message)

    def heard(self, event: Event) -> None:
        """A board event (router thread): a log message of no call, or a catalog that may be of a
        server to tell the level."""
        loop = self.loop
        if loop is None or loop.is_closed() or not self._listeners:
            return
        if isinstance(event, ServerLogMessage):
            loop.call_soon_threadsafe(self._deliver, event)
        elif isinstance(event, CatalogChanged) and declares_logging(
            getattr(event.catalog, "capabilities", None)
        ):
            catalog = event.catalog
            if (catalog.tenant, catalog.server) not in self._asked:
                loop.call_soon_threadsafe(self._spawn, self._ask(catalog.tenant, [catalog.server]))

    def _deliver(self, event: ServerLogMessage) -> None:
        """Send `event` to each session that wants it (serving loop)."""
        params = dict(event.params)
        level = params.get("level")
        for key, listener in list(self._listeners.items()):
            scope = listener.scope
            if scope.tenant != event.tenant or scope.server not in (None, event.server):
                continue
            if not scope.may(event.server, None):  # (what a server says on its own: the whole server's)
                continue
            if (event.session is not None and event.session != key) or level not in at_or_above(
                listener.level
            ):
                continue
            logger = params.get("logger")
            if scope.server is None:  # aggregated: the logger names the server it came from
                logger = f"{event.server}/{logger}" if logger else event.server
            self._spawn(self._send(key, listener, level, params.get("data"), logger))

    async def _send(self, key: str, listener: _Listener, level: Any, data: Any, logger: Any) -> None:
        try:
            await listener.session.send_log_message(level, data, logger=logger)
        except Exception:  # the session is gone: forget it
            if self._listeners.get(key) is listener:
                self.ended(key)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)  # a reference until done, so the task is not collected mid-way
        task.add_done_callback(self._tasks.discard)
