"""The MCP facade over Streamable HTTP: the `/mcp` handlers, hosted by Tornado.

`/mcp` serves the caller's tenant (a tenant key's own; an admin key or an open hub: `default`,
or `?tenant=` for an admin) and `/tenants/{t}/mcp` a named one (another tenant's is 404), each as
one super-server; `/tenants/{t}/servers/{s}/mcp` serves one server of a tenant as it is, under
its own names (an unknown server is 404; `web.facade_scope`). A 2025-11-25 session serves only the
key and the endpoint that opened it. A POST
the `tools/call` lane takes (`web.mcp_lane_http`) is served by it; every other request goes to
the SDK's `StreamableHTTPSessionManager` (both eras) through the ASGI bridge (`web.mcp_bridge`).
The manager, the lane and the session limits live in `web.mcp_endpoint`.

Sessions (the key of a client's own instances of per_session servers): a 2025-11-25 client's
`Mcp-Session-Id` (its instances stop when the SDK discards the session: `DELETE`, the SDK's idle
timeout, shutdown); a 2026-07-28 client has no session unless it sends an `Mcp-Hub-Session`
header (scoped to its key, shared with REST requests carrying the same header; its instances stop
after `idle_timeout`, or on `DELETE /api/sessions/{id}`). Without either, the shared instance.
How many 2025-11-25 sessions a key or a tenant may hold: `web.mcp_sessions`.

Handlers run on the web loop.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from hub import jsontext, seams
from hub.errors import HubError, NotFound, QuotaExceeded
from web.base import SESSION_HEADER, ApiHandler, header_session
from web.facade import CURRENT_SCOPE, mcp_error
from web.facade_scope import Scope, unknown_server
from web.mcp_bridge import AsgiExchange, asgi_scope, request_id_of
from web.mcp_calls import CallRequest, takes_url_elicitation
from web.mcp_endpoint import McpEndpoint
from web.mcp_lane_http import HandlerResponder
from web.mcp_sessions import is_initialized_notice, opens_session
from web.mcp_wire import screen

_SESSION_NOT_FOUND = b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Session not found"}}'


class McpHandler(ApiHandler):
    """`GET|POST|DELETE /mcp`, `/tenants/{t}/mcp` and `/tenants/{t}/servers/{s}/mcp`: the
    Streamable HTTP facade (ASGI bridge)."""

    route = "/mcp"

    def initialize(self) -> None:
        self._disconnected = asyncio.Event()
        self.lane_call: asyncio.Future[Any] | None = None  # a 2026-07-28 call served by the lane
        self._served: Scope | None = None  # what this request sees, once worked out (`_scope`)

    async def prepare(self) -> None:
        await super().prepare()
        endpoint: McpEndpoint | None = self.application.settings.get("mcp")
        sdk_session = self.request.headers.get("Mcp-Session-Id")
        key = self.caller.key_id if self.caller else None
        if endpoint is None or not sdk_session:
            return
        try:
            if endpoint.lane.foreign(sdk_session, key, self._scope(*self.path_args)):
                return
        except NotFound:  # (answered by the method)
            return
        if not (self.request.method == "POST" and is_initialized_notice(self.request.body)):
            endpoint.limits.used(sdk_session)

    def on_connection_close(self) -> None:
        self._disconnected.set()  # an ASGI `http.disconnect`: cancels the request in 2026 sessions
        if self.lane_call is not None:
            self.lane_call.cancel()  # the same for a 2026-07-28 call served by the lane

    async def get(self, tenant: str | None = None, server: str | None = None) -> None:
        if await self._passed_on():
            return
        await self._bridge(self._scope(tenant, server))

    async def post(self, tenant: str | None = None, server: str | None = None) -> None:
        """A `tools/call` (or what belongs to one) that the lane takes, else the SDK's transport."""
        endpoint = self._endpoint()
        served = self._scope(tenant, server)
        if await self._passed_on():
            return
        refused, message = screen(self.request.body or b"")  # bad JSON or text: answered here, at the edge
        if refused is not None:
            self.set_status(400)
            self.set_header("Content-Type", "application/json")
            self.finish(jsontext.dumps(refused[0]))
            return
        key = self.caller.key_id if self.caller else None
        taken = endpoint.lane.admit(self.request, key, served, message)
        if isinstance(taken, CallRequest):
            seams.no_transforms(self)  # no gzip (see `_bridge`)
            await endpoint.lane.serve(HandlerResponder(self), taken, served, self.caller, self._session())
        elif taken:  # a client's answer to a server request, or a cancellation
            self.set_status(202)
            self.finish()
        else:
            await self._bridge(served)

    async def delete(self, tenant: str | None = None, server: str | None = None) -> None:
        if await self._passed_on():
            return
        await self._bridge(self._scope(tenant, server))

    async def _passed_on(self) -> bool:
        """In a cluster, a request of a session another replica holds is passed on there
        (`web.cluster_sessions`); whether it was."""
        endpoint = self._endpoint()
        return endpoint.homes is not None and await endpoint.homes.pass_on(self, endpoint)

    def _endpoint(self) -> McpEndpoint:
        endpoint: McpEndpoint | None = self.application.settings.get("mcp")
        if endpoint is None:
            raise NotFound("the MCP endpoint is not running")
        return endpoint

    def _scope(self, tenant: str | None = None, server: str | None = None) -> Scope:
        """What this request sees: the tenant it names (or the caller's), or one server of it; of
        those, what the caller may use (`hub.permissions`).

        Raises:
            NotFound: the tenant is not this caller's, or has no such server.
        """
        if self._served is not None:  # (`prepare` worked it out: the path's tenant and server)
            return self._served
        assert self.caller is not None
        tenant = self.tenant_for(tenant) if tenant is not None else self.calling_tenant()
        scope = Scope.of(tenant, server, self.caller.grants)
        if server is not None and server not in self.hub.config.tenants[scope.tenant].servers:
            raise unknown_server(scope)
        self._served = scope
        return scope

    def _session(self) -> str | None:
        """The session of this request: the SDK's `Mcp-Session-Id` (2025-11-25), else the
        `Mcp-Hub-Session` header, else None."""
        sdk_session = self.request.headers.get("Mcp-Session-Id")
        if sdk_session:
            return f"http:{sdk_session}"
        return header_session(self.request.headers.get(SESSION_HEADER), self.caller)

    async def _bridge(self, served: Scope) -> None:
        """Hand the request to the SDK, within the session limits of the key and the tenant."""
        # No gzip here: the SSE events of a call are small and each is flushed at once, so
        # compressing them costs CPU and latency and saves nothing.
        seams.no_transforms(self)
        endpoint = self._endpoint()
        request = self.request
        key = self.caller.key_id if self.caller else None
        sdk_session = request.headers.get("Mcp-Session-Id")
        if endpoint.lane.foreign(sdk_session, key, served):  # another key's or endpoint's: not found
            self.set_status(404)
            self.set_header("Content-Type", "application/json")
            self.finish(_SESSION_NOT_FOUND)
            return
        opening = opens_session(request.method, sdk_session, request.headers.get("MCP-Protocol-Version"))
        if opening:
            refused = endpoint.limits.refusal(key, served.tenant)
            if refused is not None:
                self._refuse_jsonrpc(refused)
                return
            endpoint.limits.opening(key, served.tenant, 1)

        def answered() -> None:
            """The response starts: the session is open (and counted) or will not be."""
            nonlocal opening
            if opening:
                opening = False
                endpoint.limits.opening(key, served.tenant, -1)

        try:
            await self._serve(endpoint, served, key, sdk_session, answered)
        finally:
            answered()

    def _refuse_jsonrpc(self, exc: HubError) -> None:
        """Answer with `exc`'s status and a JSON-RPC error body (what an MCP client reads)."""
        error = mcp_error(exc).error
        body = {
            "jsonrpc": "2.0",
            "id": request_id_of(self.request.body),
            "error": {"code": error.code, "message": error.message},
        }
        self.set_status(exc.status)
        if isinstance(exc, QuotaExceeded):
            self.set_header("Retry-After", str(max(1, math.ceil(exc.retry_after))))
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    async def _serve(
        self,
        endpoint: McpEndpoint,
        served: Scope,
        key: str | None,
        sdk_session: str | None,
        answered: Callable[[], None],
    ) -> None:
        """Hand the request to the SDK's session manager, as ASGI; `answered` is called when
        its response starts."""

        def opened(session_id: str) -> Awaitable[Any] | None:  # a new session, which only `key` may use
            return endpoint.opened(session_id, key, served, takes_url_elicitation(self.request.body))

        scope = asgi_scope(self.request, served, self.caller, self._session())
        exchange = AsgiExchange(self, self._disconnected, None if sdk_session else opened, answered)
        CURRENT_SCOPE.set(served)  # this request's task only (and a session it opens)
        await endpoint.manager.handle_request(scope, exchange.receive, exchange.send)  # type: ignore[arg-type]
        if not seams.is_finished(self):
            self.finish()


class TenantMcpHandler(McpHandler):
    """`/tenants/{t}/mcp`: the facade of a named tenant."""

    route = "/tenants/{tenant}/mcp"


class ServerMcpHandler(McpHandler):
    """`/tenants/{t}/servers/{s}/mcp`: one server of a tenant, under its own names."""

    route = "/tenants/{tenant}/servers/{server}/mcp"


ROUTES: list[tuple[str, type[ApiHandler]]] = [
    (r"/mcp", McpHandler),
    (r"/tenants/([^/]+)/mcp", TenantMcpHandler),
    (r"/tenants/([^/]+)/servers/([^/]+)/mcp", ServerMcpHandler),
]
