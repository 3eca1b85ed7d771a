"""The MCP facade's live catalog: telling a tenant's connected clients that its lists changed.

When a tenant's servers start, stop, crash or change their lists, the router tells the board
(`CatalogChanged`, on its thread); `ListChanges.changed` hands that to the serving loop, which
sends 2025-11-25 sessions that have listed something `notifications/*/list_changed` and publishes
the change on the tenant's subscription bus, where 2026-07-28 clients of that tenant hear it on
their `subscriptions/listen` stream (each tenant has its bus and its listen handler: no client
hears of another tenant's changes).
"""

from __future__ import annotations

import asyncio
from typing import Any

from mcp.server import ServerRequestContext
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    PromptsListChanged,
    ResourcesListChanged,
    ToolsListChanged,
)


class ListChanges:
    """The clients to tell of each tenant's list changes. Serving loop, except `changed`."""

    def __init__(self) -> None:
        self._buses: dict[str, tuple[InMemorySubscriptionBus, ListenHandler]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None  # the serving loop, once attached
        self._sessions: dict[str, set[Any]] = {}  # tenant → 2025-era sessions that have listed
        self._tasks: set[asyncio.Future[None]] = set()

    def bus(self, tenant: str) -> InMemorySubscriptionBus:
        """`tenant`'s subscription bus (2026-07-28 listeners of its clients hear what it carries)."""
        return self._bus(tenant)[0]

    def listen_handler(self, tenant: str) -> ListenHandler:
        """The SDK's `subscriptions/listen` handler of `tenant`'s clients (on its bus)."""
        return self._bus(tenant)[1]

    def _bus(self, tenant: str) -> tuple[InMemorySubscriptionBus, ListenHandler]:
        pair = self._buses.get(tenant)
        if pair is None:
            bus = InMemorySubscriptionBus()
            pair = self._buses[tenant] = (bus, ListenHandler(bus))
        return pair

    def remember(self, ctx: ServerRequestContext[Any, Any], tenant: str) -> None:
        """The session of `ctx` made a request of `tenant`: a 2025-11-25 one is told of changes
        from now on."""
        if not ctx.protocol_version.startswith("2026"):
            self._sessions.setdefault(tenant, set()).add(ctx.session)

    def changed(self, tenant: str) -> None:
        """`tenant`'s catalog changed (router thread): tell its clients, on the serving loop."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._schedule, tenant)

    def _schedule(self, tenant: str) -> None:
        task = asyncio.ensure_future(self._tell(tenant))
        self._tasks.add(task)  # a reference until done, so the task is not collected mid-way
        task.add_done_callback(self._tasks.discard)

    async def _tell(self, tenant: str) -> None:
        """Tell the tenant's clients that lists changed: 2025 sessions directly, 2026 through the bus."""
        pair = self._buses.get(tenant)
        if pair is not None:
            for event in (ToolsListChanged(), PromptsListChanged(), ResourcesListChanged()):
                await pair[0].publish(event)
        for session in list(self._sessions.get(tenant, ())):
            try:
                await session.send_tool_list_changed()
                await session.send_prompt_list_changed()
                await session.send_resource_list_changed()
            except Exception:  # the session is gone: forget it
                self._sessions.get(tenant, set()).discard(session)
