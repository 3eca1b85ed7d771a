"""`Discovery`: what a server offers (tools, resources, templates, prompts), as a `ServerCatalog`.

Discovery runs at each start of a connection and again on each list_changed notification (a
handshake-era notification, or an event on a 2026-07-28 `subscriptions/listen` stream); changes
that arrive during a refresh cause one more, so none is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import mcp.types as types
from mcp import Client, MCPError
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

from actors.describe import describe
from actors.models import NamedEntry, ServerCatalog, ToolEntry

if TYPE_CHECKING:
    from actors.server import ServerSupervisor

log = logging.getLogger("actors.server")  # the server's own logger: log lines keep the name filtered on

_MAX_PAGES = 1000  # bound on pagination, against a server that returns cursors forever


class Discovery:
    """Builds one server's catalog, and refreshes it on list_changed.

    Every method runs on the server's loop (thread `server-<tenant>-<name>`).
    """

    def __init__(self, supervisor: ServerSupervisor) -> None:
        self._supervisor = supervisor
        self._refreshing: asyncio.Task[None] | None = None
        self._dirty = False

    def capabilities(self, client: Client) -> types.ServerCapabilities:
        """The server's capabilities, or all of them when unknown (then every list is tried).

        A pinned 2026-07-28 connection skips `server/discover` and synthesizes empty capabilities:
        its catalog then says what the hub assumes (tools, resources, prompts, with list_changed).
        """
        if self._supervisor.config.protocol in MODERN_PROTOCOL_VERSIONS:
            return types.ServerCapabilities(
                tools=types.ToolsCapability(list_changed=True),
                resources=types.ResourcesCapability(list_changed=True),
                prompts=types.PromptsCapability(list_changed=True),
            )
        return client.server_capabilities

    async def discover(self, client: Client) -> ServerCatalog:
        """The catalog the server offers now (only the capabilities its configuration wants)."""
        config = self._supervisor.config
        caps = self.capabilities(client)
        wanted = config.capabilities
        tools: tuple[ToolEntry, ...] = ()
        resources: tuple[NamedEntry, ...] = ()
        templates: tuple[NamedEntry, ...] = ()
        prompts: tuple[NamedEntry, ...] = ()
        if caps.tools is not None and "tools" in wanted:
            raw = await _all_pages(client.list_tools, "tools")
            tools = tuple(self._tool_entry(t) for t in raw if config.tools.admits(t.name))
        if caps.resources is not None and "resources" in wanted:
            resources = tuple(
                self._named(r.name, r) for r in await _all_pages(client.list_resources, "resources")
            )
            templates = tuple(
                self._named(r.name, r)
                for r in await _all_pages(client.list_resource_templates, "resource_templates")
            )
        if caps.prompts is not None and "prompts" in wanted:
            prompts = tuple(self._named(p.name, p) for p in await _all_pages(client.list_prompts, "prompts"))
        return ServerCatalog(
            self._supervisor.tenant,
            config.name,
            tools,
            resources,
            templates,
            prompts,
            capabilities=caps.model_dump(mode="json", by_alias=True, exclude_none=True),
            instructions=client.instructions,
        )

    def _tool_entry(self, tool: types.Tool) -> ToolEntry:
        return ToolEntry(
            tenant=self._supervisor.tenant,
            server=self._supervisor.config.name,
            name=tool.name,
            description=tool.description,
            title=tool.title,
            input_schema=dict(tool.input_schema),
            output_schema=dict(tool.output_schema) if tool.output_schema else None,
            annotations=tool.annotations.model_dump(mode="json", by_alias=True, exclude_none=True)
            if tool.annotations
            else None,
            meta=dict(tool.meta) if tool.meta else None,
        )

    def _named(self, name: str, model: Any) -> NamedEntry:
        raw = model.model_dump(mode="json", by_alias=True, exclude_none=True)
        return NamedEntry(self._supervisor.tenant, self._supervisor.config.name, name, raw)

    async def on_message(self, message: Any) -> None:
        """SDK notification callback (on this loop): refresh the catalog on list_changed; a
        resource's update (handshake era) goes up as a `ResourceUpdated`."""
        if isinstance(message, types.ResourceUpdatedNotification):
            self._supervisor.subscriptions.updated(str(message.params.uri))
        elif isinstance(
            message,
            types.ToolListChangedNotification
            | types.ResourceListChangedNotification
            | types.PromptListChangedNotification,
        ):
            self.schedule_refresh()
        elif isinstance(message, Exception):
            log.debug(
                "%s/%s: transport error: %s", self._supervisor.tenant, self._supervisor.config.name, message
            )

    async def listen(self, client: Client) -> None:
        """On 2026-07-28 connections, list_changed only comes on a `subscriptions/listen` stream."""
        if client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            return  # handshake era: notifications arrive through `on_message`
        caps = self.capabilities(client)
        wanted = {
            "tools_list_changed": bool(caps.tools and caps.tools.list_changed),
            "prompts_list_changed": bool(caps.prompts and caps.prompts.list_changed),
            "resources_list_changed": bool(caps.resources and caps.resources.list_changed),
        }
        if not any(wanted.values()):
            return
        try:
            async with client.listen(
                tools_list_changed=wanted["tools_list_changed"],
                prompts_list_changed=wanted["prompts_list_changed"],
                resources_list_changed=wanted["resources_list_changed"],
            ) as subscription:
                # The stream has no replay, and the server was `running` (callable) before the
                # ack: look once more, or a change made meanwhile would go unseen until the next.
                self.schedule_refresh()
                async for _event in subscription:
                    self.schedule_refresh()
        except Exception as exc:  # the catalog then only refreshes on restart; say so once
            log.info(
                "%s/%s: no list_changed stream: %s",
                self._supervisor.tenant,
                self._supervisor.config.name,
                describe(exc),
            )

    def schedule_refresh(self) -> None:
        """Re-discover soon; changes that arrive during a refresh cause one more (none is lost)."""
        self._dirty = True
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        supervisor = self._supervisor
        while self._dirty:
            self._dirty = False
            client = supervisor.client
            if client is None:
                return
            try:
                catalog = await self.discover(client)
            except Exception as exc:  # a failed refresh keeps the last catalog; a crash is handled apart
                log.warning(
                    "%s/%s: catalog refresh failed: %s",
                    supervisor.tenant,
                    supervisor.config.name,
                    describe(exc),
                )
                return
            if supervisor.client is client:
                supervisor.listing.publish(catalog, "live")


async def _all_pages(fetch: Callable[..., Awaitable[Any]], attr: str) -> list[Any]:
    """Every item of a paginated list; a server that does not implement the list has none."""
    items: list[Any] = []
    cursor = None
    for _ in range(_MAX_PAGES):
        try:
            page = await fetch(cursor=cursor)
        except MCPError as exc:
            if exc.code == types.METHOD_NOT_FOUND:
                return items
            raise
        items.extend(getattr(page, attr))
        cursor = page.next_cursor
        if not cursor:
            break
    return items
