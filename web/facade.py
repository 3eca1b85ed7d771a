"""The MCP facade: one tenant's running servers as one MCP "super-server" (README.md, "MCP
facade: one MCP server per tenant").

Built on the `mcp` SDK's low-level `Server`, which serves both protocol eras (2025-11-25
sessions and 2026-07-28). Handlers run on the serving loop (stdio: the main thread's loop; HTTP:
the web loop); calls go to the servers' loops through `Hub.call_tool_async`, other hub asks to a
thread. One facade object serves any number of sessions; `tenant_of(ctx)` says whose they are,
and `session_of(ctx)` which client session a request belongs to (the key of its own instances of
per_session servers: see `hub.instances`).

What the facade is made of, each in its module: its names for the servers' tools, prompts and
resources (`web.facade_names`), each tenant's tools as it shows them (`web.facade_tools`), telling
clients that lists changed (`web.facade_changes`), and the client of a call as the called server
sees it (`web.mcp_requester`). `tools/call` mostly arrives through the lanes (`web.mcp_calls`),
which call `Facade.call` directly.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Mapping
from typing import Any

import mcp.types as types
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler
from mcp.shared.exceptions import MCPError

import hub
from actors.models import CatalogChanged, Event, ServerCatalog, ToolResult
from hub import seams
from hub.errors import BadRequest, HubError, NotFound
from hub.runtime import Hub
from web.facade_changes import ListChanges
from web.facade_names import facade_name, facade_uri, upstream_uri
from web.facade_tools import ToolView, ToolViews
from web.mcp_requester import ClientOfCall

log = logging.getLogger(__name__)
Ctx = ServerRequestContext[Any, Any]


def mcp_error(exc: HubError) -> MCPError:
    """The one mapping of hub errors to JSON-RPC errors (for requests that are not tool calls)."""
    if isinstance(exc, NotFound):
        return MCPError(code=types.INVALID_PARAMS, message=exc.message)
    if isinstance(exc, BadRequest):
        return MCPError(code=types.INVALID_PARAMS, message=exc.message)
    return MCPError(code=types.INTERNAL_ERROR, message=f"{exc.code}: {exc.message}")


# The tenant of the HTTP request being served: the SDK asks for a tool's input schema (to check
# `Mcp-Param-*` headers) without the request's context, so the bridge sets this first.
CURRENT_TENANT: contextvars.ContextVar[str | None] = contextvars.ContextVar("mcp_hub_tenant", default=None)


def tool_result_json(result: ToolResult) -> dict[str, Any]:
    """A tool result as the `result` of a `tools/call` answer (2025-11-25 shape)."""
    answer: dict[str, Any] = {"content": list(result.content), "isError": result.is_error}
    if result.structured_content is not None:
        answer["structuredContent"] = result.structured_content
    return answer


class Facade:
    """The super-server. Thread: its handlers run on the serving loop.

    Args:
        hub_: the running hub.
        tenant_of: the tenant of a request (fixed for stdio; from the HTTP request for HTTP).
        key_of: the key id of a request, for the audit log.
        session_of: the client session of a request (None: none; calls of per_session servers
            then use the shared instance).
    """

    def __init__(
        self,
        hub_: Hub,
        tenant_of: Callable[[Ctx], str],
        key_of: Callable[[Ctx], str | None] = lambda ctx: None,
        session_of: Callable[[Ctx], str | None] = lambda ctx: None,
    ) -> None:
        self.hub = hub_
        self.tenant_of = tenant_of
        self.key_of = key_of
        self.session_of = session_of
        self.sep = hub_.config.gateway.tool_name_separator
        self.bus = InMemorySubscriptionBus()
        self.changes = ListChanges(self.bus)
        self.views = ToolViews(self.sep)  # dropped on each catalog change (router thread)
        self.server = Server(
            "mcp-hub",
            version=hub.__version__,
            instructions="MCP Hub: the tools, resources and prompts of this tenant's MCP servers. "
            "Names are <server>__<name>.",
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
            on_list_resources=self.list_resources,
            on_list_resource_templates=self.list_resource_templates,
            on_read_resource=self.read_resource,
            on_list_prompts=self.list_prompts,
            on_get_prompt=self.get_prompt,
            on_subscriptions_listen=ListenHandler(self.bus),
            get_tool_input_schema=self.input_schema,
        )
        # The SDK wraps every message in an OpenTelemetry span by default; the hub reports through
        # Prometheus metrics and its audit log instead, and the span costs each call's hot path.
        seams.drop_otel_middleware(self.server)

    def init_options(self) -> Any:
        """Initialization options that advertise list_changed for tools, prompts and resources."""
        return self.server.create_initialization_options(
            NotificationOptions(tools_changed=True, prompts_changed=True, resources_changed=True)
        )

    # ------------------------------------------------------------------ live catalog

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start relaying catalog changes (router thread → `loop`) to connected clients."""
        self.changes.loop = loop
        self.hub.board.add_listener(self._on_event)

    def detach(self) -> None:
        """Stop relaying catalog changes."""
        self.hub.board.remove_listener(self._on_event)

    def _on_event(self, event: Event) -> None:
        """Board listener (router thread): drop the tenant's tool view, tell its clients."""
        if isinstance(event, CatalogChanged):
            self.views.drop(event.catalog.tenant)
            self.changes.changed(event.catalog.tenant)

    # ------------------------------------------------------------------ helpers

    async def _blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
        except HubError as exc:
            raise mcp_error(exc) from None

    async def _catalogs(self, ctx: Ctx) -> tuple[str, tuple[ServerCatalog, ...]]:
        tenant = self.tenant_of(ctx)
        self.changes.remember(ctx, tenant)
        return tenant, await self._blocking(self.hub.catalogs, tenant)

    async def view(self, tenant: str) -> ToolView:
        """`tenant`'s tools as shown here (cached until the tenant's catalog changes)."""
        view = self.views.get(tenant)
        if view is None:
            generation = self.views.generation
            view = self.views.keep(tenant, generation, await self._blocking(self.hub.catalogs, tenant))
        return view

    def input_schema(self, name: str) -> Mapping[str, Any] | None:
        """The input schema of facade tool `name` of the tenant being served over HTTP (the SDK checks
        `Mcp-Param-*` headers against it); None when unknown, then the SDK checks nothing."""
        tenant = CURRENT_TENANT.get()
        return None if tenant is None else self.input_schema_of(tenant, name)

    def input_schema_of(self, tenant: str, name: str) -> Mapping[str, Any] | None:
        """The input schema of `tenant`'s facade tool `name`, None when unknown.

        Runs on the web loop; the first lookup after a catalog change asks the router (a blocking
        ask of well under a millisecond), later ones are a dict lookup.
        """
        view = self.views.get(tenant)
        if view is None:
            view = self.views.keep(tenant, self.views.generation, self.hub.catalogs(tenant))
        return view.schemas.get(name)

    # ------------------------------------------------------------------ handlers

    async def list_tools(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        """Every tool of the tenant's running servers, under its facade name."""
        tenant = self.tenant_of(ctx)
        self.changes.remember(ctx, tenant)
        return types.ListToolsResult(tools=list((await self.view(tenant)).tools))

    async def call_tool(self, ctx: Ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        """Route a call to its server; progress comes back to the caller as it happens."""
        tenant = self.tenant_of(ctx)
        self.changes.remember(ctx, tenant)
        result = await self.call(
            tenant,
            params.name,
            params.arguments or {},
            ClientOfCall(ctx, asyncio.get_running_loop()),
            key=self.key_of(ctx),
            session=self.session_of(ctx),
        )
        return types.CallToolResult.model_validate(tool_result_json(result))

    async def call(
        self,
        tenant: str,
        name: str,
        arguments: Mapping[str, Any],
        requester: Any,
        key: str | None = None,
        session: str | None = None,
    ) -> ToolResult:
        """Call facade tool `name` of `tenant` (the one tool call path of every facade transport).

        A failure of the server (it failed, timed out, is down, or a quota is hit) is a tool result
        with `isError`, so the model sees why. Messages name the tool as the client does (`name`),
        never by its catalog id.

        Raises:
            MCPError: an unknown tool, or arguments the tool's schema refuses (INVALID_PARAMS).
        """
        tool_id = (await self.view(tenant)).ids.get(name)
        if tool_id is None:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {name}")
        try:
            return await self.hub.call_tool_async(
                tenant, tool_id, arguments, requester, key=key, session=session, shown_as=name
            )
        except NotFound:  # the catalog changed since the view: as unknown as a name never listed
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {name}") from None
        except BadRequest as exc:
            raise mcp_error(exc) from None
        except HubError as exc:
            return ToolResult(
                tool=tool_id,
                is_error=True,
                content=({"type": "text", "text": f"{exc.code}: {exc.message}"},),
            )

    async def list_resources(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        """Every resource, under its facade URI."""
        _, catalogs = await self._catalogs(ctx)
        resources = [
            types.Resource.model_validate({**r.raw, "uri": facade_uri(c.server, r.raw["uri"])})
            for c in catalogs
            for r in c.resources
        ]
        return types.ListResourcesResult(resources=resources)

    async def list_resource_templates(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        """Every resource template, under its facade URI template."""
        _, catalogs = await self._catalogs(ctx)
        templates = [
            types.ResourceTemplate.model_validate(
                {**r.raw, "uriTemplate": facade_uri(c.server, r.raw["uriTemplate"])}
            )
            for c in catalogs
            for r in c.resource_templates
        ]
        return types.ListResourceTemplatesResult(resource_templates=templates)

    async def read_resource(
        self, ctx: Ctx, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        """Read from the owning server, and give the contents their facade URIs."""
        tenant = self.tenant_of(ctx)
        try:
            server, uri = upstream_uri(str(params.uri))
        except NotFound as exc:
            raise mcp_error(exc) from None
        result = await self._blocking(self.hub.read_resource, tenant, uri, server, self.session_of(ctx))
        for content in result.get("contents", []):
            if "uri" in content:
                content["uri"] = facade_uri(server, content["uri"])
        return types.ReadResourceResult.model_validate(result)

    async def list_prompts(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        """Every prompt, under its facade name."""
        _, catalogs = await self._catalogs(ctx)
        prompts = [
            types.Prompt.model_validate({**p.raw, "name": facade_name(c.server, p.name, self.sep)})
            for c in catalogs
            for p in c.prompts
        ]
        return types.ListPromptsResult(prompts=prompts)

    async def get_prompt(self, ctx: Ctx, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        """Get a prompt from its server."""
        tenant, catalogs = await self._catalogs(ctx)
        ids = {facade_name(c.server, p.name, self.sep): p.id for c in catalogs for p in c.prompts}
        if params.name not in ids:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown prompt: {params.name}")
        result = await self._blocking(
            self.hub.get_prompt, tenant, ids[params.name], params.arguments or {}, self.session_of(ctx)
        )
        return types.GetPromptResult.model_validate(result)
