"""The MCP facade: one tenant's running servers as one MCP "super-server", or one of them as it
is (README.md, "MCP facade").

Built on the `mcp` SDK's low-level `Server`, which serves both protocol eras (2025-11-25
sessions and 2026-07-28). Handlers run on the serving loop (stdio: the main thread's loop; HTTP:
the web loop); calls and other requests go to the servers' loops through the hub's async call
path, other hub asks to a thread. One facade object serves any number of sessions;
`scope_of(ctx)` says what they see (`web.facade_scope.Scope`: a tenant's servers, or one server
of it), and `session_of(ctx)` which client session a request belongs to (the key of its own
instances of per_session servers: see `hub.instances`).

What the facade is made of, each in its module: what a scope sees and how it names things
(`web.facade_scope`, `web.facade_names`), each scope's tools as it shows them
(`web.facade_tools`), telling clients that lists changed (`web.facade_changes`), the servers'
log messages and each session's level (`web.facade_logging`), resource subscriptions
(`web.facade_subscriptions`), and the client of a call as the called server sees it
(`web.mcp_requester`). `tools/call` mostly arrives through the lanes (`web.mcp_calls`), which call
`Facade.call` directly.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import mcp.types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.models import InitializationOptions
from mcp.shared.exceptions import MCPError
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

import hub
from actors.models import CatalogChanged, Event, ToolResult
from hub import idempotency, seams
from hub.errors import BadRequest, HubError, NotFound
from hub.permissions import Who
from hub.runtime import Hub
from web.facade_changes import ListChanges
from web.facade_logging import LogLevels
from web.facade_scope import AGGREGATED_INSTRUCTIONS, Scope
from web.facade_subscriptions import Subscriptions
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


# The scope of the HTTP request being served (or of the stdio facade): the SDK asks for a tool's
# input schema (to check `Mcp-Param-*` headers) and for the `initialize` answer without the
# request's context, so the bridge sets this first (the task of a new session copies it).
CURRENT_SCOPE: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("mcp_hub_scope", default=None)


def tool_result_json(result: ToolResult) -> dict[str, Any]:
    """A tool result as the `result` of a `tools/call` answer (2025-11-25 shape)."""
    answer: dict[str, Any] = {"content": list(result.content), "isError": result.is_error}
    if result.structured_content is not None:
        answer["structuredContent"] = result.structured_content
    return answer


class _FacadeServer(Server[Any]):
    """The SDK's low-level server, answering `initialize` with what the scope being served is told
    (its capabilities and instructions: `web.facade_scope`)."""

    facade: Facade

    def create_initialization_options(self, *args: Any, **kwargs: Any) -> InitializationOptions:
        options = super().create_initialization_options(*args, **kwargs)
        scope = CURRENT_SCOPE.get()
        if scope is None:
            return options
        view = self.facade.view_now(scope)
        return options.model_copy(
            update={"capabilities": view.capabilities, "instructions": view.instructions}
        )


class Facade:
    """The super-server. Thread: its handlers run on the serving loop.

    Args:
        hub_: the running hub.
        scope_of: what a request sees (fixed for stdio; from the HTTP request for HTTP).
        caller_of: who makes a request (`web.auth.Caller`), for the audit log (what it may use is
            in its scope already).
        session_of: the client session of a request (None: none; calls of per_session servers
            then use the shared instance).
        key_of: the values of a request's `Idempotency-Key` header (HTTP; none: no key).
    """

    def __init__(
        self,
        hub_: Hub,
        scope_of: Callable[[Ctx], Scope],
        caller_of: Callable[[Ctx], Who | None] = lambda ctx: None,
        session_of: Callable[[Ctx], str | None] = lambda ctx: None,
        key_of: Callable[[Ctx], Sequence[str]] = lambda ctx: (),
    ) -> None:
        self.hub = hub_
        self.scope_of = scope_of
        self.caller_of = caller_of
        self.session_of = session_of
        self.key_of = key_of
        self.sep = hub_.config.gateway.tool_name_separator
        self.changes = ListChanges()
        self.views = ToolViews(self.sep)  # dropped on each catalog change (router thread)
        self.logs = LogLevels(hub_)
        self.subscriptions = Subscriptions(hub_, self.changes)
        with warnings.catch_warnings():  # (logging/setLevel is gone in 2026-07-28; 2025-11-25 has it)
            warnings.simplefilter("ignore")
            self.server = _FacadeServer(
                "mcp-hub",
                version=hub.__version__,
                instructions=AGGREGATED_INSTRUCTIONS,
                on_list_tools=self.list_tools,
                on_call_tool=self.call_tool,
                on_list_resources=self.list_resources,
                on_list_resource_templates=self.list_resource_templates,
                on_read_resource=self.read_resource,
                on_subscribe_resource=self.subscribe,
                on_unsubscribe_resource=self.unsubscribe,
                on_list_prompts=self.list_prompts,
                on_get_prompt=self.get_prompt,
                on_completion=self.complete,
                on_set_logging_level=self.set_level,
                on_subscriptions_listen=self.listen,
                get_tool_input_schema=self.input_schema,
            )
        self.server.facade = self
        self.server.add_request_handler("server/discover", types.RequestParams, self.discover)
        # The SDK wraps every message in an OpenTelemetry span by default; the hub reports through
        # Prometheus metrics and its audit log instead, and the span costs each call's hot path.
        seams.drop_otel_middleware(self.server)

    def init_options(self, scope: Scope) -> InitializationOptions:
        """The `initialize` answer of `scope`'s clients (for the stdio facade, which serves one)."""
        token = CURRENT_SCOPE.set(scope)
        try:
            return self.server.create_initialization_options()
        finally:
            CURRENT_SCOPE.reset(token)

    # ------------------------------------------------------------------ live catalog

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start relaying catalog changes, log messages and resource updates (router thread →
        `loop`) to connected clients."""
        self.changes.loop = self.logs.loop = self.subscriptions.loop = loop
        self.hub.board.add_listener(self._on_event)

    def detach(self) -> None:
        """Stop relaying catalog changes."""
        self.hub.board.remove_listener(self._on_event)

    def _on_event(self, event: Event) -> None:
        """Board listener (router thread): drop the tenant's views, tell its clients."""
        if isinstance(event, CatalogChanged):
            self.views.drop(event.catalog.tenant)
            self.changes.changed(event.catalog.tenant)
        self.logs.heard(event)
        self.subscriptions.heard(event)

    def session_ended(self, session: str) -> None:
        """Client session `session` ended (serving loop): its log level and subscriptions go."""
        self.logs.ended(session)
        self.subscriptions.ended(session)

    # ------------------------------------------------------------------ helpers

    async def _blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
        except HubError as exc:
            raise mcp_error(exc) from None

    async def _upstream(self, scope: Scope, server: str, submit: Callable[[Any], Any], ctx: Ctx) -> Any:
        """`submit(endpoint)` to `server` of `scope` through the hub's call path (quotas, wakes,
        session instances), its JSON answer; hub errors as JSON-RPC errors."""
        try:
            return await self.hub.calls.server_request_async(
                scope.tenant, server, submit, self.session_of(ctx), user=self._user(ctx)
            )
        except HubError as exc:
            raise mcp_error(exc) from None

    def _user(self, ctx: Ctx) -> str | None:
        """The user a request acts for (its caller's subject: a per_user server runs their instance)."""
        caller = self.caller_of(ctx)
        return caller.subject if caller is not None else None

    async def _view_of(self, ctx: Ctx) -> tuple[Scope, ToolView]:
        scope = self.scope_of(ctx)
        self.changes.remember(ctx, scope.tenant)
        return scope, await self.view(scope)

    async def view(self, scope: Scope) -> ToolView:
        """What `scope` shows (cached until its tenant's catalog changes)."""
        view = self.views.get(scope)
        if view is None:
            generation = self.views.generation
            view = self.views.keep(scope, generation, await self._blocking(self.hub.catalogs, scope.tenant))
        return view

    def view_now(self, scope: Scope) -> ToolView:
        """What `scope` shows, from the serving loop without awaiting: the first look after a
        catalog change asks the router (a blocking ask of well under a millisecond), later ones are
        a dict lookup."""
        view = self.views.get(scope)
        if view is None:
            view = self.views.keep(scope, self.views.generation, self.hub.catalogs(scope.tenant))
        return view

    def input_schema(self, name: str) -> Mapping[str, Any] | None:
        """The input schema of tool `name` of the scope being served over HTTP (the SDK checks
        `Mcp-Param-*` headers against it); None when unknown, then the SDK checks nothing."""
        scope = CURRENT_SCOPE.get()
        return None if scope is None else self.input_schema_of(scope, name)

    def input_schema_of(self, scope: Scope, name: str) -> Mapping[str, Any] | None:
        """The input schema of `scope`'s tool `name`, None when unknown."""
        return self.view_now(scope).schemas.get(name)

    # ------------------------------------------------------------------ handlers

    async def discover(self, ctx: Ctx, params: types.RequestParams) -> types.DiscoverResult:
        """`server/discover` (2026-07-28): the scope's capabilities and instructions."""
        _, view = await self._view_of(ctx)
        return types.DiscoverResult(
            supported_versions=list(MODERN_PROTOCOL_VERSIONS),
            capabilities=view.capabilities,
            instructions=view.instructions,
        )

    async def list_tools(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        """Every tool the scope sees, under the name it shows."""
        _, view = await self._view_of(ctx)
        return types.ListToolsResult(tools=list(view.tools))

    async def call_tool(self, ctx: Ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        """Route a call to its server; progress comes back to the caller as it happens."""
        scope = self.scope_of(ctx)
        self.changes.remember(ctx, scope.tenant)
        session = self.session_of(ctx)
        result = await self.call(
            scope,
            params.name,
            params.arguments or {},
            ClientOfCall(ctx, asyncio.get_running_loop(), self.logs.allowed(session)),
            caller=self.caller_of(ctx),
            session=session,
            idempotency_key=self.key_of(ctx),
        )
        return types.CallToolResult.model_validate(tool_result_json(result))

    async def call(
        self,
        scope: Scope,
        name: str,
        arguments: Mapping[str, Any],
        requester: Any,
        caller: Who | None = None,
        session: str | None = None,
        idempotency_key: Sequence[str] = (),
    ) -> ToolResult:
        """Call tool `name` of `scope` (the one tool call path of every facade transport).

        A failure of the server (it failed, timed out, is down, or a quota is hit) is a tool result
        with `isError`, so the model sees why; so is a call refused as a duplicate. Messages name
        the tool as the client does (`name`), never by its catalog id. A tool `scope`'s caller may
        not call is not in its view: as unknown as one that does not exist. One not listed while
        the cluster settles waits for its server (`_moving`). `idempotency_key`: the
        values of the request's `Idempotency-Key` header (HTTP; none: the call is not keyed), as
        for REST (`hub.idempotency`).

        Raises:
            MCPError: an unknown tool, arguments the tool's schema refuses, a bad `Idempotency-Key`
                (INVALID_PARAMS).
        """
        tool_id = (await self.view(scope)).ids.get(name) or self._moving(scope, name)
        if tool_id is None:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {name}")
        try:
            if idempotency_key:
                return await self._keyed_call(
                    scope, name, tool_id, arguments, requester, caller, session, idempotency_key
                )
            return await self.hub.calls.call_tool_async(
                scope.tenant, tool_id, arguments, requester, session=session, shown_as=name, caller=caller
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

    def _moving(self, scope: Scope, name: str) -> str | None:
        """While the cluster settles, the catalog id `name` stands for if it names a configured
        server's tool (one whose replica died is not listed until a survivor runs it: the call
        then waits for it, `hub.failover`, as REST's does); else None."""
        if self.hub.replica is None or self.hub.replica.settling() <= 0:
            return None
        tenant = self.hub.config.tenants.get(scope.tenant)
        return scope.tool_id(name, self.sep, tenant.servers if tenant is not None else ())

    async def _keyed_call(
        self,
        scope: Scope,
        name: str,
        tool_id: str,
        arguments: Mapping[str, Any],
        requester: Any,
        caller: Who | None,
        session: str | None,
        header: Sequence[str],
    ) -> ToolResult:
        """`call` of a request with an `Idempotency-Key` (`hub.idempotency`: a call sent again runs
        again only if its tool is read-only or idempotent; `BadRequest`: a bad key)."""
        key = idempotency.parse_key(list(header))
        assert key is not None
        keyed = idempotency.keyed_call(self.hub, scope.tenant, tool_id, arguments, key, shown_as=name)
        return await keyed.run(
            lambda admit: self.hub.calls.call_tool_async(
                scope.tenant,
                tool_id,
                arguments,
                requester,
                session=session,
                shown_as=name,
                admit=admit,
                caller=caller,
            )
        )

    async def list_resources(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        """Every resource the scope sees, under the URI it shows."""
        scope, view = await self._view_of(ctx)
        resources = [
            types.Resource.model_validate({**r.raw, "uri": scope.uri(c.server, r.raw["uri"])})
            for c in view.catalogs
            for r in c.resources
        ]
        return types.ListResourcesResult(resources=resources)

    async def list_resource_templates(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        """Every resource template the scope sees, under the URI template it shows."""
        scope, view = await self._view_of(ctx)
        templates = [
            types.ResourceTemplate.model_validate(
                {**r.raw, "uriTemplate": scope.uri(c.server, r.raw["uriTemplate"])}
            )
            for c in view.catalogs
            for r in c.resource_templates
        ]
        return types.ListResourceTemplatesResult(resource_templates=templates)

    async def _resource_server(self, ctx: Ctx, uri: str) -> tuple[Scope, str, str]:
        """`(scope, server, the server's own URI)` of a URI the client was shown.

        Raises:
            MCPError: not a URI of a server this scope sees.
        """
        scope, view = await self._view_of(ctx)
        try:
            server, own = scope.upstream(uri)
        except NotFound as exc:
            raise mcp_error(exc) from None
        if view.catalog(server) is None or not scope.may(server, None):
            raise mcp_error(NotFound(f"unknown resource {uri!r}"))
        return scope, server, own

    async def read_resource(
        self, ctx: Ctx, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        """Read from the owning server, and give the contents the URIs the scope shows."""
        scope, server, uri = await self._resource_server(ctx, str(params.uri))
        result = await self._upstream(scope, server, lambda e: e.read_resource(uri), ctx)
        for content in result.get("contents", []):
            if "uri" in content:
                content["uri"] = scope.uri(server, content["uri"])
        return types.ReadResourceResult.model_validate(result)

    async def subscribe(self, ctx: Ctx, params: types.SubscribeRequestParams) -> types.EmptyResult:
        """Subscribe this session to a resource's updates (one upstream subscription per resource)."""
        scope, server, uri = await self._resource_server(ctx, str(params.uri))
        try:
            await self.subscriptions.subscribe(ctx, scope, server, uri, self.session_of(ctx))
        except HubError as exc:
            raise mcp_error(exc) from None
        return types.EmptyResult()

    async def unsubscribe(self, ctx: Ctx, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        """End this session's subscription to a resource."""
        scope, server, uri = await self._resource_server(ctx, str(params.uri))
        try:
            await self.subscriptions.unsubscribe(scope, server, uri, self.session_of(ctx))
        except HubError as exc:
            raise mcp_error(exc) from None
        return types.EmptyResult()

    async def listen(
        self, ctx: Ctx, params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        """`subscriptions/listen` (2026-07-28): list changes of the tenant, and updates of the
        resources it names (each subscribed on its server while the stream lasts)."""
        scope, view = await self._view_of(ctx)
        uris = params.notifications.resource_subscriptions or ()
        shown = {}
        for uri in uris:
            try:
                server, own = scope.upstream(uri)
            except NotFound:
                continue  # (honored and never fires, as the SDK does for a URI it does not know)
            if view.catalog(server) is not None and scope.may(server, None):
                shown[uri] = (server, own)
        return await self.subscriptions.listen(ctx, scope, shown, params)

    async def list_prompts(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        """Every prompt the scope sees, under the name it shows."""
        scope, view = await self._view_of(ctx)
        prompts = [
            types.Prompt.model_validate({**p.raw, "name": scope.name(c.server, p.name, self.sep)})
            for c in view.catalogs
            for p in c.prompts
        ]
        return types.ListPromptsResult(prompts=prompts)

    async def get_prompt(self, ctx: Ctx, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        """Get a prompt from its server."""
        scope, view = await self._view_of(ctx)
        if params.name not in view.prompts:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown prompt: {params.name}")
        server, name = view.prompts[params.name]
        arguments = dict(params.arguments or {})
        result = await self._upstream(scope, server, lambda e: e.get_prompt(name, arguments), ctx)
        return types.GetPromptResult.model_validate(result)

    async def complete(self, ctx: Ctx, params: types.CompleteRequestParams) -> types.CompleteResult:
        """Completions for an argument of a prompt or resource template, from the server that owns it
        (a server that offers no completions: none)."""
        ref = params.ref
        if isinstance(ref, types.PromptReference):
            scope, view = await self._view_of(ctx)
            if ref.name not in view.prompts:
                raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown prompt: {ref.name}")
            server, name = view.prompts[ref.name]
            own: dict[str, Any] = {"type": "ref/prompt", "name": name}
        else:
            scope, server, uri = await self._resource_server(ctx, ref.uri)
            view = await self.view(scope)
            own = {"type": "ref/resource", "uri": uri}
        catalog = view.catalog(server)
        if catalog is None or "completions" not in (getattr(catalog, "capabilities", None) or {}):
            return types.CompleteResult(completion=types.Completion(values=[]))
        argument = {"name": params.argument.name, "value": params.argument.value}
        context = dict(params.context.arguments or {}) if params.context else None
        try:
            result = await self.hub.upstream.complete(
                scope.tenant, server, own, argument, context, self.session_of(ctx)
            )
        except HubError as exc:
            raise mcp_error(exc) from None
        return types.CompleteResult.model_validate(result)

    async def set_level(self, ctx: Ctx, params: types.SetLevelRequestParams) -> types.EmptyResult:
        """`logging/setLevel` (2025-11-25): the lowest level of log messages this session gets;
        the servers it sees are asked for the lowest level any session asked for."""
        scope, view = await self._view_of(ctx)
        await self.logs.set_level(ctx.session, scope, view, self.session_of(ctx), params.level)
        return types.EmptyResult()
