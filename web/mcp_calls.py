"""The facade's own path for `tools/call` over Streamable HTTP, in both protocol eras.

Why: through the SDK's transport every call of a 2025-11-25 session opened a server-sent-events
response with its own task group and memory streams, and went through the session's dispatcher and
the low-level server's validation both ways (about 7 tasks and 50 loop callbacks per call); that
made MCP Hub half as fast as `mcp-proxy` (bench/bench_peer.py). This module serves the one message
that matters for speed, `tools/call`, straight from the Tornado handler: the answer leaves as one
JSON body when nothing precedes it, as an SSE stream when progress, log messages or (2025-11-25)
the server's own requests come first.

What it takes: only a POST that is certainly a well-formed `tools/call` (headers, Host/Origin,
body size, the request's shape checked by the SDK's own `validate_client_request`), of a live
2025-11-25 session opened with the same key, or with a valid 2026-07-28 envelope and `Mcp-*`
headers (the SDK's `classify_inbound_request` and `validate_mcp_param_headers`). Everything else,
and so every protocol error, goes to the SDK's transport, which stays the one authority on them.
It also takes what belongs to its calls: a client's answer to a server request it sent, and
`notifications/cancelled` for one of its calls.

It keeps the SDK's session semantics: a call holds its session's idle timer as the SDK's own
requests do (`_Hold`, which reads the transport's private `_requests_in_flight` and
`_idle_timeout`, checked against `mcp` 2.3.0); ending a session cancels its calls; a 2026-07-28
call is cancelled when its client closes the connection (that era's cancellation), a 2025-11-25
call only by `notifications/cancelled` (the spec: a disconnect is not a cancellation). A call that
runs 15 s without anything to send commits to SSE and sends a comment every 15 s, so proxies with
an idle-read timeout keep the connection, as the SDK does for 2026-07-28.

Thread: everything here runs on the web loop, except `_Call`'s `Requester` methods, which run on
the called server's loop and hand their work over.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import mcp.types as types
from mcp.server.connection import allowed_log_levels
from mcp.server.streamable_http import check_accept_headers
from mcp.shared.exceptions import MCPError, NoBackChannelError
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_PARAM_HEADER_PREFIX,
    InboundModernRoute,
    classify_inbound_request,
    find_duplicated_routing_header,
    validate_mcp_param_headers,
)
from mcp_types import DEFAULT_NEGOTIATED_VERSION, SERVER_INFO_META_KEY
from mcp_types.methods import validate_client_request
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

import hub
from web.facade import Facade, tool_result_json

if TYPE_CHECKING:
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from mcp.server.transport_security import TransportSecuritySettings
    from tornado.web import RequestHandler

log = logging.getLogger(__name__)

PING_INTERVAL = 15.0
"""Seconds before a silent call commits to SSE, and between its keep-alive comments."""

_SERVER_INFO = {SERVER_INFO_META_KEY: {"name": "mcp-hub", "version": hub.__version__}}
_PARAM_PREFIX = MCP_PARAM_HEADER_PREFIX.lower()
_SSE_HEADERS = (
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache, no-transform"),
    ("X-Accel-Buffering", "no"),
)


def _allowed(value: str, patterns: list[str]) -> bool:
    """`value` is one of `patterns`, or matches one ending in `:*` with any port."""
    return value in patterns or any(p.endswith(":*") and value.startswith(p[:-1]) for p in patterns)


def _event(message: Mapping[str, Any]) -> bytes:
    return b"event: message\r\ndata: " + json.dumps(message, separators=(",", ":")).encode() + b"\r\n\r\n"


@dataclass(frozen=True)
class CallRequest:
    """A `tools/call` POST this module takes: what `Lane.admit` found in it."""

    id: str | int
    name: str
    arguments: Mapping[str, Any]
    progress_token: str | int | None
    modern: bool
    log_levels: frozenset[str]
    session_id: str | None  # the 2025-11-25 session (None: 2026-07-28)


@dataclass
class _Session:
    """A 2025-11-25 session the SDK opened through this endpoint."""

    key: str | None  # the key id that opened it: only that key may use it
    calls: dict[Any, asyncio.Future[Any]] = field(default_factory=dict)  # request id → call


class Lane:
    """The `tools/call` path of every HTTP listener of one facade. Thread: the web loop."""

    def __init__(
        self, facade: Facade, manager: StreamableHTTPSessionManager, security: TransportSecuritySettings
    ) -> None:
        self.facade = facade
        self.manager = manager
        self.security = security
        self.sessions: dict[str, _Session] = {}
        self.asks: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] = {}  # id → (session, answer)
        self._ask_ids = itertools.count(1)

    # ------------------------------------------------------------------ sessions

    def opened(self, session_id: str, key: str | None) -> None:
        """The SDK opened a session for a request made with `key`."""
        self.sessions[session_id] = _Session(key)

    def ended(self, session_id: str) -> None:
        """The SDK discarded a session: its calls are cancelled."""
        session = self.sessions.pop(session_id, None)
        if session is not None:
            for call in session.calls.values():
                call.cancel()

    def foreign(self, session_id: str | None, key: str | None) -> bool:
        """Whether `session_id` was opened with another key than `key` (then it is not found)."""
        session = self.sessions.get(session_id) if session_id else None
        return session is not None and session.key != key

    # ------------------------------------------------------------------ admission

    def _secure(self, headers: Any) -> bool:
        """Content-Type, Accept, and (DNS-rebinding protection on) Host and Origin, as the SDK checks."""
        if not headers.get("Content-Type", "").lower().startswith("application/json"):
            return False
        security = self.security
        if security.enable_dns_rebinding_protection:
            host = headers.get("Host")
            if not host or not _allowed(host, security.allowed_hosts):
                return False
            origin = headers.get("Origin")
            if origin and not _allowed(origin, security.allowed_origins):
                return False
        return True

    def admit(
        self, handler: RequestHandler, key: str | None, tenant: str
    ) -> CallRequest | dict[str, Any] | None:
        """What this module does with a POST: a `CallRequest` to serve, a client's answer to a
        server request (already delivered: answer 202), or None (the SDK's transport serves it)."""
        request = handler.request
        headers = request.headers
        body = request.body
        if not body or len(body) > self.manager.max_request_body_size or not self._secure(headers):
            return None
        has_json, has_sse = check_accept_headers(request)  # type: ignore[arg-type]
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):
            return None
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return None
        version = headers.get("MCP-Protocol-Version")
        modern = version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS
        session_id = None if modern else headers.get("Mcp-Session-Id")
        if not modern and not self._live(session_id, key):
            return None
        method = message.get("method")
        if method is None:
            return self._answered(message, session_id)
        if method == "notifications/cancelled":
            return self._cancelled(message, session_id)
        if method != "tools/call" or not (has_json and has_sse):
            return None
        request_id = message.get("id")
        if isinstance(request_id, bool) or not isinstance(request_id, (str, int)):
            return None
        params = message.get("params")
        if not isinstance(params, dict):
            return None
        try:
            validate_client_request("tools/call", version or DEFAULT_NEGOTIATED_VERSION, params)
        except (ValueError, KeyError, ValidationError):
            return None
        arguments = params.get("arguments") or {}
        meta = params.get("_meta") or {}
        if modern and not self._modern_ok(request, message, params["name"], arguments, tenant):
            return None
        return CallRequest(
            id=request_id,
            name=params["name"],
            arguments=arguments,
            progress_token=meta.get("progressToken"),
            modern=modern,
            log_levels=allowed_log_levels(version or DEFAULT_NEGOTIATED_VERSION, meta),
            session_id=session_id,
        )

    def _live(self, session_id: str | None, key: str | None) -> bool:
        """A 2025-11-25 session this module may serve: open, opened by `key`, not ending."""
        session = self.sessions.get(session_id) if session_id else None
        if session is None or session.key != key:
            return False
        transport = self.manager._server_instances.get(session_id)  # type: ignore[arg-type]
        if transport is None or transport.is_terminated:
            return False
        return transport.idle_scope is None or not transport.idle_scope.cancel_called

    def _modern_ok(
        self, request: Any, message: dict[str, Any], name: str, arguments: Mapping[str, Any], tenant: str
    ) -> bool:
        """A 2026-07-28 request the SDK would serve: version, envelope, routing and `Mcp-Param-*` headers."""
        pairs = request.headers.get_all()
        if find_duplicated_routing_header(pairs) is not None:
            return False
        headers = {k.lower(): v for k, v in request.headers.get_all()}
        if headers.get("mcp-protocol-version") not in MODERN_PROTOCOL_VERSIONS:
            return False
        if not isinstance(classify_inbound_request(message, headers=headers), InboundModernRoute):
            return False
        if arguments or any(h.startswith(_PARAM_PREFIX) for h in headers):
            schema = self.facade.input_schema_of(tenant, name)
            if schema is not None and validate_mcp_param_headers(schema, arguments, headers) is not None:
                return False
        return True

    def _answered(self, message: dict[str, Any], session_id: str | None) -> dict[str, Any] | None:
        """A client's answer to a server request this module sent (else None: the SDK's)."""
        ask_id = message.get("id")
        pending = self.asks.get(ask_id) if isinstance(ask_id, str) else None
        if pending is None or pending[0] != session_id or not ("result" in message or "error" in message):
            return None
        if not pending[1].done():
            pending[1].set_result(message)
        return message

    def _cancelled(self, message: dict[str, Any], session_id: str | None) -> dict[str, Any] | None:
        """`notifications/cancelled` for a call of this module (else None: the SDK's)."""
        params = message.get("params")
        session = self.sessions.get(session_id) if session_id else None
        if session is None or not isinstance(params, dict):
            return None
        call = session.calls.get(params.get("requestId"))
        if call is None:
            return None
        call.cancel()
        return message

    # ------------------------------------------------------------------ serving

    async def serve(
        self, handler: RequestHandler, call: CallRequest, tenant: str, key: str | None, session: str | None
    ) -> None:
        """Serve one admitted call on `handler`'s response."""
        stream = _Call(self, handler, call, asyncio.get_running_loop())
        task = asyncio.ensure_future(
            self.facade.call(tenant, call.name, call.arguments, stream, key, session)
        )
        owner = self.sessions.get(call.session_id) if call.session_id else None
        if owner is not None:
            owner.calls[call.id] = task
        if call.modern:
            handler.lane_call = task  # type: ignore[attr-defined]  # its client closing cancels it
        try:
            with _Hold(self.manager, call.session_id):
                result = await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():  # this handler itself is cancelled
                raise
            stream.cancelled()
        except MCPError as exc:
            stream.answer(
                {
                    "jsonrpc": "2.0",
                    "id": call.id,
                    "error": exc.error.model_dump(mode="json", exclude_none=True),
                },
                exc.error.code,
            )
        except Exception:
            log.exception("tool call %r failed in the facade", call.name)
            error = {"code": types.INTERNAL_ERROR, "message": "internal error"}
            stream.answer({"jsonrpc": "2.0", "id": call.id, "error": error}, types.INTERNAL_ERROR)
        else:
            answer = tool_result_json(result)
            if call.modern:
                answer["resultType"] = "complete"
                answer["_meta"] = _SERVER_INFO
            stream.answer({"jsonrpc": "2.0", "id": call.id, "result": answer})
        finally:
            stream.close()
            if owner is not None:
                owner.calls.pop(call.id, None)

    async def ask(self, stream: _Call, request: Any) -> dict[str, Any]:
        """Send a server request on `stream` and wait for its client's answer (2025-11-25 only)."""
        ask_id = f"hub-r-{next(self._ask_ids)}"
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.asks[ask_id] = (stream.call.session_id or "", answer)
        try:
            stream.emit(
                {
                    "jsonrpc": "2.0",
                    "id": ask_id,
                    **request.model_dump(mode="json", by_alias=True, exclude_none=True),
                }
            )
            message = await answer
        finally:
            self.asks.pop(ask_id, None)
        if "error" in message:
            error = types.ErrorData.model_validate(message["error"])
            raise MCPError(code=error.code, message=error.message, data=error.data)
        return message["result"]


class _Hold:
    """Holds a 2025-11-25 session's idle timer while one of its calls runs, as the SDK's
    `StreamableHTTPServerTransport.handle_request` does for its own requests."""

    def __init__(self, manager: StreamableHTTPSessionManager, session_id: str | None) -> None:
        transport = manager._server_instances.get(session_id) if session_id else None  # type: ignore[arg-type]
        self.transport = transport if transport is not None and transport.idle_scope is not None else None

    def __enter__(self) -> None:
        transport = self.transport
        if transport is not None:
            transport._requests_in_flight += 1
            transport.idle_scope.deadline = math.inf  # type: ignore[union-attr]

    def __exit__(self, *exc: Any) -> None:
        transport = self.transport
        if transport is not None:
            transport._requests_in_flight -= 1
            if not transport._requests_in_flight and transport._idle_timeout is not None:
                transport.idle_scope.deadline = anyio.current_time() + transport._idle_timeout  # type: ignore[union-attr]


class _Call:
    """The response of one call: a JSON body if the answer comes first, else an SSE stream. Also
    the call's `Requester` (`actors.server`): its three methods run on the server's loop."""

    def __init__(
        self, lane: Lane, handler: RequestHandler, call: CallRequest, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.lane = lane
        self.handler = handler
        self.call = call
        self.loop = loop
        self.streaming = False
        self.done = False
        self._ping = loop.call_later(PING_INTERVAL, self._keepalive)

    # -- Requester (server's loop)

    async def progress(self, value: float, total: float | None, message: str | None) -> None:
        if self.call.progress_token is None:
            return
        params: dict[str, Any] = {"progressToken": self.call.progress_token, "progress": value}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        self.loop.call_soon_threadsafe(
            self.emit, {"jsonrpc": "2.0", "method": "notifications/progress", "params": params}
        )

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        if params.level in self.call.log_levels:
            body = params.model_dump(mode="json", by_alias=True, exclude_none=True)
            self.loop.call_soon_threadsafe(
                self.emit, {"jsonrpc": "2.0", "method": "notifications/message", "params": body}
            )

    async def ask(self, request: Any, result_type: type[Any]) -> Any:
        if self.call.modern:  # a 2026-07-28 client cannot be asked mid-call
            raise NoBackChannelError(request.method)
        raw = await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(self.lane.ask(self, request), self.loop)
        )
        return result_type.model_validate(raw, by_name=False)

    # -- the response (web loop)

    def _start_stream(self) -> None:
        handler = self.handler
        handler.set_status(200)
        for name, value in _SSE_HEADERS:
            handler.set_header(name, value)
        if self.call.session_id:
            handler.set_header("Mcp-Session-Id", self.call.session_id)
        stream = getattr(handler.request.connection, "stream", None)
        if stream is not None:
            stream.set_nodelay(True)  # each event leaves at once (see web.mcp_http)
        self.streaming = True

    def _write(self, chunk: bytes) -> None:
        if not self.streaming:
            self._start_stream()
        self.handler.write(chunk)
        self.handler.flush().add_done_callback(_quiet)

    def emit(self, message: Mapping[str, Any]) -> None:
        """Send a notification or server request of the call (before its answer)."""
        if not self.done and not self.handler._finished:
            self._write(_event(message))

    def _keepalive(self) -> None:
        if not self.done and not self.handler._finished:
            self._write(b": ping\r\n\r\n")
            self._ping = self.loop.call_later(PING_INTERVAL, self._keepalive)

    def answer(self, message: Mapping[str, Any], code: int | None = None) -> None:
        """End the response with the call's answer (JSON-RPC `code` if it is an error)."""
        handler = self.handler
        if self.done or handler._finished:
            return
        self.done = True
        if self.streaming:
            handler.finish(_event(message))
            return
        status = ERROR_CODE_HTTP_STATUS.get(code, 200) if code is not None and self.call.modern else 200
        handler.set_status(status)
        handler.set_header("Content-Type", "application/json")
        if self.call.session_id:
            handler.set_header("Mcp-Session-Id", self.call.session_id)
        handler.finish(json.dumps(message, separators=(",", ":")))

    def cancelled(self) -> None:
        """The client cancelled the call: end the response without an answer."""
        if not self.done and not self.handler._finished:
            self.done = True
            if not self.streaming:
                self._start_stream()
            self.handler.finish()

    def close(self) -> None:
        self.done = True
        self._ping.cancel()


def _quiet(future: asyncio.Future[Any]) -> None:
    """Retrieve a flush's error (the client went away: nothing to do)."""
    if not future.cancelled():
        future.exception()
