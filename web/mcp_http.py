"""The MCP facade over Streamable HTTP, hosted by Tornado (no second web server).

`/mcp` serves the caller's tenant (a tenant key's own; an admin key or an open hub: `default`,
or `?tenant=` for an admin) and `/tenants/{t}/mcp` a named one (another tenant's is 404). The
SDK's `StreamableHTTPSessionManager` speaks the protocol (both eras); `McpHandler` bridges a
Tornado request to its ASGI entry point. The manager runs inside `async with manager.run()` in
one task of the web loop for the service's whole life (`McpEndpoint.run`).

Sessions (the key of a client's own instances of per_session servers): a 2025-11-25 client's
`Mcp-Session-Id` (its instances stop when the SDK discards the session: `DELETE`, the SDK's idle
timeout, shutdown); a 2026-07-28 client has no session unless it sends an `Mcp-Hub-Session`
header (scoped to its key, shared with REST requests carrying the same header; its instances stop
after `idle_timeout`, or on `DELETE /api/sessions/{id}`). Without either, the shared instance.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable
from typing import Any

from mcp.server.transport_security import TransportSecuritySettings

from hub import jsontext, seams
from hub.errors import HubError, NotFound, QuotaExceeded
from hub.runtime import Hub
from web.base import SESSION_HEADER, ApiHandler, header_session
from web.facade import CURRENT_TENANT, Ctx, Facade, mcp_error
from web.mcp_calls import CallRequest, HttpLane, refusal
from web.mcp_sessions import SessionLimits, is_initialized_notice, opens_session

log = logging.getLogger(__name__)


def key_of(ctx: Ctx) -> str | None:
    """The key id the bridge put in the ASGI scope (for the audit log)."""
    return (getattr(ctx.request, "scope", None) or {}).get("mcp_hub_key")


def tenant_of(ctx: Ctx) -> str:
    """The tenant the bridge put in the ASGI scope of the HTTP request that carried this message."""
    request = ctx.request
    scope = getattr(request, "scope", None) or {}
    return scope["mcp_hub_tenant"]


def session_of(ctx: Ctx) -> str | None:
    """The client session the bridge put in the ASGI scope (None: the request has none)."""
    return (getattr(ctx.request, "scope", None) or {}).get("mcp_hub_session")


def request_id_of(body: bytes | None) -> Any:
    """The id of the JSON-RPC request in a POST body (`None` for a notification, a batch, junk)."""
    try:
        message = json.loads(body or b"")
    except (ValueError, RecursionError):
        return None
    return message.get("id") if isinstance(message, dict) and "method" in message else None


def answer_of(chunk: bytes, request_id: Any) -> bytes | None:
    """The JSON of an SSE chunk that is the response to request `request_id`, else `None`."""
    if request_id is None or not chunk.startswith(b"event: message"):
        return None
    for line in chunk.splitlines():
        if line.startswith(b"data: "):
            try:
                message = json.loads(line[6:])
            except ValueError:
                return None
            if (
                isinstance(message, dict)
                and message.get("id") == request_id
                and "method" not in message
                and ("result" in message or "error" in message)
            ):
                return line[6:]
            return None
    return None


class McpEndpoint:
    """The facade and its session manager, shared by every HTTP listener. Thread: the web loop."""

    def __init__(self, hub_: Hub, host: str) -> None:
        self.hub = hub_
        self.facade = Facade(hub_, tenant_of, key_of, session_of)
        self._ending: set[asyncio.Future[int]] = set()
        gateway = hub_.config.gateway
        # Host and Origin are checked, exactly, for every route before a request gets here
        # (`web/edge.py`); the SDK's own check matched by prefix and only on loopback.
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
        self.manager = seams.EndAwareSessionManager(
            self._session_ended,
            app=self.facade.server,
            security_settings=security,
            session_idle_timeout=gateway.mcp_session_idle_timeout,
        )
        self.lane = HttpLane(self.facade, self.manager, security, gateway.mcp_keepalive_interval)
        self.limits = SessionLimits(gateway, self.manager.end)
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()

    def _session_ended(self, session_id: str) -> None:
        """A 2025-11-25 session ended (web loop): cancel its calls, stop its instances, off the loop."""
        self.lane.ended(session_id)
        self.limits.ended(session_id)
        try:
            future = asyncio.get_running_loop().run_in_executor(
                None, self.hub.end_session, f"http:{session_id}"
            )
        except RuntimeError:  # shutting down (no executor, no loop): the hub stops every instance
            return
        self._ending.add(future)
        future.add_done_callback(self._ended)

    def _ended(self, future: asyncio.Future[int]) -> None:
        self._ending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("stopping the instances of an ended session failed", exc_info=future.exception())

    async def run(self) -> None:
        """Run the session manager until `stop` (enter and exit in this one task)."""
        self.facade.attach(asyncio.get_running_loop())
        try:
            async with self.manager.run():
                self._ready.set()
                await self._stop.wait()
        finally:
            self.facade.detach()

    async def ready(self) -> None:
        """Wait until the manager runs."""
        await self._ready.wait()

    def stop(self) -> None:
        """End every MCP session."""
        self._stop.set()


class McpHandler(ApiHandler):
    """`GET|POST|DELETE /mcp` and `/tenants/{t}/mcp`: the Streamable HTTP facade (ASGI bridge)."""

    route = "/mcp"

    def initialize(self) -> None:
        self._disconnected = asyncio.Event()
        self.lane_call: asyncio.Future[Any] | None = None  # a 2026-07-28 call served by the lane

    def prepare(self) -> None:
        super().prepare()
        endpoint: McpEndpoint | None = self.application.settings.get("mcp")
        sdk_session = self.request.headers.get("Mcp-Session-Id")
        key = self.caller.key_id if self.caller else None
        if endpoint is None or not sdk_session or endpoint.lane.foreign(sdk_session, key):
            return
        if not (self.request.method == "POST" and is_initialized_notice(self.request.body)):
            endpoint.limits.used(sdk_session)

    def on_connection_close(self) -> None:
        self._disconnected.set()  # an ASGI `http.disconnect`: cancels the request in 2026 sessions
        if self.lane_call is not None:
            self.lane_call.cancel()  # the same for a 2026-07-28 call served by the lane

    async def get(self, tenant: str | None = None) -> None:
        await self._bridge(tenant)

    async def post(self, tenant: str | None = None) -> None:
        """A `tools/call` (or what belongs to one) that the lane takes, else the SDK's transport."""
        endpoint = self._endpoint()
        served = self._tenant(tenant)
        refused = refusal(self.request.body or b"")  # bad JSON or text: answered here, at the edge
        if refused is not None:
            self.set_status(400)
            self.set_header("Content-Type", "application/json")
            self.finish(jsontext.dumps(refused[0]))
            return
        key = self.caller.key_id if self.caller else None
        taken = endpoint.lane.admit(self, key, served)
        if isinstance(taken, CallRequest):
            seams.no_transforms(self)  # no gzip (see `_bridge`)
            await endpoint.lane.serve(self, taken, served, key, self._session())
        elif taken:  # a client's answer to a server request, or a cancellation
            self.set_status(202)
            self.finish()
        else:
            await self._bridge(tenant)

    async def delete(self, tenant: str | None = None) -> None:
        await self._bridge(tenant)

    def _endpoint(self) -> McpEndpoint:
        endpoint: McpEndpoint | None = self.application.settings.get("mcp")
        if endpoint is None:
            raise NotFound("the MCP endpoint is not running")
        return endpoint

    def _tenant(self, tenant: str | None) -> str:
        assert self.caller is not None
        return self.tenant_for(tenant) if tenant is not None else self.calling_tenant()

    def _session(self) -> str | None:
        """The session of this request: the SDK's `Mcp-Session-Id` (2025-11-25), else the
        `Mcp-Hub-Session` header, else None."""
        sdk_session = self.request.headers.get("Mcp-Session-Id")
        if sdk_session:
            return f"http:{sdk_session}"
        return header_session(self.request.headers.get(SESSION_HEADER), self.caller)

    async def _bridge(self, tenant: str | None) -> None:
        # No gzip here: the SSE events of a call are small and each is flushed at once, so
        # compressing them costs CPU and latency and saves nothing.
        seams.no_transforms(self)
        endpoint = self._endpoint()
        request = self.request
        key = self.caller.key_id if self.caller else None
        sdk_session = request.headers.get("Mcp-Session-Id")
        if endpoint.lane.foreign(sdk_session, key):  # opened with another key: not found, as the SDK says
            self.set_status(404)
            self.set_header("Content-Type", "application/json")
            self.finish(b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Session not found"}}')
            return
        served = self._tenant(tenant)
        opening = opens_session(request.method, sdk_session, request.headers.get("MCP-Protocol-Version"))
        if opening:
            refusal = endpoint.limits.refusal(key, served)
            if refusal is not None:
                self._refuse_jsonrpc(refusal)
                return
            endpoint.limits.opening(key, served, 1)

        def answered() -> None:
            """The response starts: the session is open (and counted) or will not be."""
            nonlocal opening
            if opening:
                opening = False
                endpoint.limits.opening(key, served, -1)

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
        served: str,
        key: str | None,
        sdk_session: str | None,
        answered: Callable[[], None],
    ) -> None:
        """Hand the request to the SDK's session manager, as ASGI; `answered` is called when
        its response starts."""
        request = self.request
        host, _, port = (request.host or "").rpartition(":")
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": request.protocol,
            "path": request.path,
            "raw_path": request.path.encode(),
            "root_path": "",
            "query_string": request.query.encode(),
            "headers": [
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.get_all()
            ],
            "client": (request.remote_ip, 0),
            "server": (host or request.host, int(port) if port.isdigit() else 80),
            "mcp_hub_tenant": served,
            "mcp_hub_key": key,
            "mcp_hub_session": self._session(),
        }
        body_sent = False
        request_id = request_id_of(request.body) if request.method == "POST" else None

        async def receive() -> dict[str, Any]:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": request.body or b"", "more_body": False}
            await self._disconnected.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                # Each SSE event must leave at once: with Nagle's algorithm on (Tornado's default
                # until a response finishes), an event written right after the headers waits for
                # the client's delayed ACK, tens of milliseconds.
                seams.set_nodelay(self)
                self.clear()
                self.clear_header("Content-Type")  # the SDK says what this response is, not our default
                self.set_status(message["status"])
                seen = set()
                for raw_name, raw_value in message.get("headers", []):
                    name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
                    if name.lower() == "mcp-session-id" and not sdk_session:
                        endpoint.lane.opened(value, key)  # a new session, which only `key` may use
                        endpoint.limits.opened(value, key, served)
                    if name.lower() in seen:
                        self.add_header(name, value)
                    else:
                        self.set_header(name, value)
                        seen.add(name.lower())
                answered()
            elif message["type"] == "http.response.body":
                if seams.is_finished(self):
                    return
                body = message.get("body") or b""
                if message.get("more_body") and not seams.headers_written(self):
                    answer = answer_of(body, request_id)
                    if answer is not None:
                        # The first event of the stream is already the answer: send it as a plain
                        # JSON response (the protocol allows either). A client reads a JSON body to
                        # its end and keeps the connection; it drops an SSE stream it stops reading,
                        # which cost a new TCP connection for every call.
                        self.set_header("Content-Type", "application/json")
                        self.clear_header("X-Accel-Buffering")
                        self.finish(answer)
                        return
                if body:
                    self.write(body)
                if message.get("more_body"):
                    await self.flush()  # SSE: each event leaves at once
                else:
                    self.finish()  # now, not when the SDK's request task winds down

        CURRENT_TENANT.set(scope["mcp_hub_tenant"])  # this request's task only
        await endpoint.manager.handle_request(scope, receive, send)  # type: ignore[arg-type]
        if not seams.is_finished(self):
            self.finish()


class TenantMcpHandler(McpHandler):
    """`/tenants/{t}/mcp`: the facade of a named tenant."""

    route = "/tenants/{tenant}/mcp"


ROUTES: list[tuple[str, type[ApiHandler]]] = [
    (r"/mcp", McpHandler),
    (r"/tenants/([^/]+)/mcp", TenantMcpHandler),
]
