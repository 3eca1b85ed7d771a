"""The short way for the MCP facade's `tools/call` POSTs (`FastLane`): a call the lane takes
(`web.mcp_lane_http`) served from the HTTP connection's message delegate, with no Tornado
`RequestHandler` (issue 24: the handler's machinery was a tenth of the hub's CPU per call).

It takes only a request that `web.mcp_http.McpHandler` would serve through the lane with no
error, and serves it the same way: a POST to `/mcp`, `/tenants/{t}/mcp` or
`/tenants/{t}/servers/{s}/mcp` with no query and no escapes in its path; without
`Mcp-Session-Id` (a 2026-07-28 call, or a 2025-11-25 request the lane would not take anyway);
from a `Host` and `Origin` the edge serves (`web.edge`); carrying a configured key, or none on an
open hub (not an OAuth access token); to a tenant and server the key sees; no cluster (which may
pass a request on); not draining; a body within `gateway.max_body_bytes` that the lane admits
as a call. Anything else, every refusal and error included, goes to the application as it came,
and its handler answers it: one error mapping, one code path for everything unusual. The
response's headers, the access line and the HTTP metric are the handler's (`web.base`).

Thread: the web loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import Any

import tornado
from tornado import httputil

from hub.errors import BadRequest, Unauthorized
from web.auth import SESSION_HEADER, Caller, header_session, keys_for
from web.base import INTERNAL_MESSAGE, log_access
from web.edge import policy_for
from web.facade_scope import Scope
from web.mcp_calls import CallRequest
from web.mcp_endpoint import McpEndpoint
from web.mcp_wire import screen

log = logging.getLogger(__name__)

# McpHandler's three routes (`web.mcp_http.ROUTES`), and the names their access lines give them.
_NAME = r"([\w.~-]+)"  # (ASCII, no escapes: a path argument is then the path's text as it came)
_PATH = re.compile(rf"/mcp|/tenants/{_NAME}/mcp|/tenants/{_NAME}/servers/{_NAME}/mcp", re.ASCII)
_ROUTES = ("/mcp", "/tenants/{tenant}/mcp", "/tenants/{tenant}/servers/{server}/mcp")
_SERVER = "TornadoServer/" + tornado.version
_INTERNAL = json.dumps({"error": {"code": "internal_error", "message": INTERNAL_MESSAGE}})


class FastLane(httputil.HTTPServerConnectionDelegate):
    """The application behind the short way: what it does not take goes to `app` untouched."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        return _Request(self.app, server_conn, request_conn)

    def on_close(self, server_conn: object) -> None:
        self.app.on_close(server_conn)


class _Request(httputil.HTTPMessageDelegate):
    """One request: a candidate's body is held until it is whole, then served here or handed on."""

    def __init__(self, app: Any, server_conn: object, connection: httputil.HTTPConnection) -> None:
        self.app = app
        self.server_conn = server_conn
        self.connection = connection
        self.inner: httputil.HTTPMessageDelegate | None = None
        self.start_line: httputil.RequestStartLine | None = None
        self.headers: httputil.HTTPHeaders | None = None
        self.request: httputil.HTTPServerRequest | None = None
        self.chunks: list[bytes] = []

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Any:
        if (
            isinstance(start_line, httputil.RequestStartLine)
            and start_line.method == "POST"
            and "Mcp-Session-Id" not in headers
            and _PATH.fullmatch(start_line.path)
        ):
            self.start_line, self.headers = start_line, headers
            self.request = httputil.HTTPServerRequest(  # (now: its time is the handler's)
                connection=self.connection,
                server_connection=self.server_conn,
                start_line=start_line,
                headers=headers,
            )
            return None
        return self._hand_on().headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        if self.inner is not None:
            return self.inner.data_received(chunk)
        self.chunks.append(chunk)
        return None

    def finish(self) -> None:
        if self.inner is not None:
            self.inner.finish()
            return
        assert self.start_line is not None and self.headers is not None and self.request is not None
        body = b"".join(self.chunks)
        self.chunks = []
        if not self._serve(self.request, body):
            inner = self._hand_on()
            inner.headers_received(self.start_line, self.headers)
            if body:
                inner.data_received(body)
            inner.finish()

    def on_connection_close(self) -> None:
        if self.inner is not None:
            self.inner.on_connection_close()

    def _hand_on(self) -> httputil.HTTPMessageDelegate:
        self.inner = self.app.start_request(self.server_conn, self.connection)
        return self.inner

    def _serve(self, request: httputil.HTTPServerRequest, body: bytes) -> bool:
        """Serve the request here if it is one the short way takes (False: it is not)."""
        settings = self.app.settings
        endpoint: McpEndpoint | None = settings.get("mcp")
        if endpoint is None or endpoint.homes is not None or settings.get("draining"):
            return False
        hub = settings["hub"]
        if not body or len(body) > hub.config.gateway.max_body_bytes:
            return False
        who = _who(hub.config, settings["bound_host"], request.headers)
        match = _PATH.fullmatch(request.path)
        scope = _scope(hub.config, who[0], match) if who is not None and match is not None else None
        if who is None or match is None or scope is None:
            return False
        refused, message = screen(body)
        if refused is not None:
            return False
        request.body = body
        caller, session = who
        call = endpoint.lane.admit(request, caller.key_id, scope, message)
        if not isinstance(call, CallRequest):
            return False
        response = _Response(request, hub, _route(match), caller)
        self.connection.set_close_callback(response.closed)  # type: ignore[attr-defined]  # (HTTP1Connection)
        response.task = asyncio.ensure_future(response.serve(endpoint, call, scope, session))
        return True


def _who(config: Any, bound_host: str, headers: httputil.HTTPHeaders) -> tuple[Caller, str | None] | None:
    """The caller and the `Mcp-Hub-Session` session of a request the edge serves and whose key
    is configured (or none needed); None for anything else (the handler answers it)."""
    host = headers.get("Host")
    if host is None or policy_for(config.gateway, bound_host).refusal(host, headers.get("Origin")):
        return None
    keys = keys_for(config)
    if keys.tokens is not None:
        return None
    try:
        caller = keys.authenticate(_bearer(headers))
        return caller, header_session(headers.get(SESSION_HEADER), caller)
    except (Unauthorized, BadRequest):
        return None


def _route(match: re.Match[str]) -> str:
    """The route of a request whose path `match`ed (its name in access lines and metrics)."""
    return _ROUTES[2 if match[3] is not None else 1 if match[1] is not None else 0]


def _bearer(headers: httputil.HTTPHeaders) -> str | None:
    """The key of `Authorization: Bearer <key>` (as `web.auth.bearer_token`)."""
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _scope(config: Any, caller: Caller, match: re.Match[str]) -> Scope | None:
    """What the request sees (as `McpHandler._scope`), or None where the handler says 404."""
    tenant = match[1] or match[2] or caller.tenant or "default"
    server = match[3]
    if not caller.sees(tenant) or tenant not in config.tenants:
        return None
    if server is not None and server not in config.tenants[tenant].servers:
        return None
    return Scope.of(tenant, server, caller.grants)


_DATE: list[Any] = [0, ""]  # (the second, and its `Date` header: one formatting a second)


def _date() -> str:
    now = int(time.time())
    if _DATE[0] != now:
        _DATE[0], _DATE[1] = now, httputil.format_timestamp(now)
    return str(_DATE[1])


class _Response:
    """The `web.mcp_lane_http.Responder` of a request served the short way: the handler's headers,
    written on the request's connection; the access line and metric when it finishes."""

    def __init__(self, request: httputil.HTTPServerRequest, hub: Any, route: str, caller: Caller) -> None:
        self.request = request
        self.hub = hub
        self.route = route
        self.caller = caller
        self.lane_call: asyncio.Future[Any] | None = None
        self.task: asyncio.Future[None] | None = None  # (`serve`'s, held while it runs)
        self.status = 200
        self.headers = httputil.HTTPHeaders()
        self.headers["Server"] = _SERVER
        self.headers["Content-Type"] = "application/json; charset=utf-8"
        self.headers["Date"] = _date()
        self.headers["X-Content-Type-Options"] = "nosniff"
        self.headers["Cache-Control"] = "no-store"
        self.pending: list[bytes] = []
        self.started = False  # the status line and headers are written
        self.done = False  # finished, or the connection closed

    async def serve(
        self, endpoint: McpEndpoint, call: CallRequest, scope: Scope, session: str | None
    ) -> None:
        try:
            await endpoint.lane.serve(self, call, scope, self.caller, session)
        except Exception:
            log.error("uncaught error in POST %s", self.route, exc_info=True)
            if not self.started and not self.done:
                self.status = 500
                self.headers["Content-Type"] = "application/json; charset=utf-8"
                self.finish(_INTERNAL.encode())
        if not self.done:
            self.finish()

    def closed(self) -> None:
        """The client went away: nothing more is written; a 2026-07-28 call is cancelled."""
        if not self.done:
            self.done = True
            self._log()
        if self.lane_call is not None:
            self.lane_call.cancel()

    def set_status(self, status_code: int) -> None:
        self.status = status_code

    def set_header(self, name: str, value: str) -> None:
        self.headers[name] = value

    def write(self, chunk: bytes) -> None:
        self.pending.append(chunk)

    def flush(self) -> asyncio.Future[None]:
        chunk = b"".join(self.pending)
        self.pending = []
        connection = self.request.connection
        assert connection is not None
        if self.started:
            return connection.write(chunk)  # type: ignore[return-value]
        self.started = True
        start = httputil.ResponseStartLine("", self.status, httputil.responses.get(self.status, "Unknown"))
        return connection.write_headers(start, self.headers, chunk)  # type: ignore[return-value]

    def finish(self, chunk: bytes | None = None) -> None:
        if self.done:
            return
        if chunk:
            self.pending.append(chunk)
        if not self.started:
            self.headers["Content-Length"] = str(sum(len(part) for part in self.pending))
        self.flush().add_done_callback(_quiet)
        self.done = True
        connection = self.request.connection
        assert connection is not None
        connection.set_close_callback(None)  # type: ignore[attr-defined]
        connection.finish()
        self._log()

    def finished(self) -> bool:
        return self.done

    def nodelay(self) -> None:
        stream = getattr(self.request.connection, "stream", None)  # (HTTP1Connection's)
        if stream is not None:
            stream.set_nodelay(True)

    def _log(self) -> None:
        log_access(self.hub, self.request, self.route, self.status, self.caller)


def _quiet(future: asyncio.Future[Any]) -> None:
    """Retrieve a write's error (the client went away: nothing to do)."""
    if not future.cancelled():
        future.exception()
