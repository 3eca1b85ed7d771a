"""The `tools/call` lane of the Streamable HTTP facade (`HttpLane`): which POSTs it takes from
the SDK's transport, and the response of each call it serves (`web.mcp_calls` says why lanes
exist and what they take).

A call's answer is one JSON body when nothing precedes it, else an SSE stream. A call holds its
2025-11-25 session's idle timer as the SDK's own requests do (`IdleHold`, one of the seams around
the SDK's private names in `hub/seams.py`); ending a session cancels its calls; a session serves
only the key that opened it. A 2026-07-28 call is cancelled when its client closes the connection
(that era's cancellation), a 2025-11-25 call only by `notifications/cancelled` (the spec: a
disconnect is not a cancellation). A call that runs `keepalive` seconds
(`gateway.mcp_keepalive_interval`, default 15) without anything to send commits to SSE and sends
a comment as often, so proxies with an idle-read timeout keep the connection, as the SDK does for
2026-07-28 (every 15 s). A call's `Idempotency-Key` header (its client's, or the one the shipped
HAProxy sets) goes with it to `Facade.call` (`hub.idempotency`); a call without one costs one
header lookup more.

Thread: the web loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from mcp.server.streamable_http import check_accept_headers
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_PARAM_HEADER_PREFIX,
    InboundModernRoute,
    classify_inbound_request,
    validate_mcp_param_headers,
    x_mcp_header_map,
)
from mcp_types import DEFAULT_NEGOTIATED_VERSION
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from hub import seams
from hub.idempotency import HEADER
from hub.permissions import Who
from web.facade import Facade
from web.facade_scope import Scope
from web.mcp_calls import CallRequest, Calls, answer_call, cancel_call, parse_call, start_call
from web.mcp_requester import Asks
from web.mcp_wire import encode

if TYPE_CHECKING:
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from mcp.server.transport_security import TransportSecuritySettings
    from tornado.httputil import HTTPServerRequest
    from tornado.web import RequestHandler

_PARAM_PREFIX = MCP_PARAM_HEADER_PREFIX.lower()
_ROUTING_HEADERS = ("MCP-Protocol-Version", "Mcp-Method", "Mcp-Name")  # (the SDK's, as it refuses repeats)
_ANNOTATED: dict[int, tuple[Any, bool]] = {}  # id(schema) -> (schema, whether it has `x-mcp-header`s)
_ANNOTATED_KEPT = 4096


def _annotated(schema: Any) -> bool:
    """Whether an input schema declares `Mcp-Param-*` headers (an `x-mcp-header`): without one,
    the SDK's `validate_mcp_param_headers` has nothing to compare and accepts any request, so
    the lane need not walk the schema for each call. Remembered per schema object."""
    known = _ANNOTATED.get(id(schema))
    if known is not None and known[0] is schema:
        return known[1]
    if len(_ANNOTATED) >= _ANNOTATED_KEPT:
        _ANNOTATED.clear()
    annotated = bool(x_mcp_header_map(schema))
    _ANNOTATED[id(schema)] = (schema, annotated)
    return annotated


_SSE_HEADERS = (
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache, no-transform"),
    ("X-Accel-Buffering", "no"),
)


def _allowed(value: str, patterns: list[str]) -> bool:
    """`value` is one of `patterns`, or matches one ending in `:*` with any port."""
    return value in patterns or any(p.endswith(":*") and value.startswith(p[:-1]) for p in patterns)


class Responder(Protocol):
    """Where the lane writes a call's response: a Tornado handler's (`HandlerResponder`), or the
    short way's own (`web.mcp_fast`). Web loop."""

    request: HTTPServerRequest
    lane_call: asyncio.Future[Any] | None  # a 2026-07-28 call: its client closing cancels it

    def set_status(self, status_code: int) -> Any: ...
    def set_header(self, name: str, value: str) -> Any: ...
    def write(self, chunk: bytes) -> Any: ...
    def flush(self) -> asyncio.Future[None]: ...
    def finish(self, chunk: bytes | None = None) -> Any: ...
    def finished(self) -> bool:
        """Whether the response is finished (or its connection closed): nothing more is written."""

    def nodelay(self) -> None:
        """Each write leaves at once (no Nagle: an SSE event waits for no delayed ACK)."""


class HandlerResponder:
    """A `Responder` over a Tornado handler (which holds the call in `lane_call`). Web loop."""

    def __init__(self, handler: RequestHandler) -> None:
        self.handler = handler
        self.request = handler.request
        self.set_status = handler.set_status
        self.set_header = handler.set_header
        self.write = handler.write
        self.flush = handler.flush
        self.finish = handler.finish

    @property
    def lane_call(self) -> asyncio.Future[Any] | None:
        return self.handler.lane_call  # type: ignore[attr-defined, no-any-return]

    @lane_call.setter
    def lane_call(self, call: asyncio.Future[Any] | None) -> None:
        self.handler.lane_call = call  # type: ignore[attr-defined]

    def finished(self) -> bool:
        return seams.is_finished(self.handler)

    def nodelay(self) -> None:
        seams.set_nodelay(self.handler)


@dataclass
class _Session:
    """A 2025-11-25 session the SDK opened through this endpoint."""

    key: str | None  # the key id that opened it: only that key may use it
    scope: Scope  # what it was opened to see: only there may it be used
    calls: Calls = field(default_factory=dict)  # request id → call
    url_elicitation: bool = False  # its client declared `elicitation.url` (it may be sent a URL)


class HttpLane:
    """The `tools/call` path of every HTTP listener of one facade. Thread: the web loop."""

    def __init__(
        self,
        facade: Facade,
        manager: StreamableHTTPSessionManager,
        security: TransportSecuritySettings,
        keepalive: float = 15.0,
    ) -> None:
        self.facade = facade
        self.manager = manager
        self.security = security
        self.keepalive = keepalive
        self.sessions: dict[str, _Session] = {}
        self.asks = Asks()

    # ------------------------------------------------------------------ sessions

    def opened(self, session_id: str, key: str | None, scope: Scope, url_elicitation: bool = False) -> None:
        """The SDK opened a session for a request made with `key` to `scope` (by a client that
        takes URL-mode elicitations, if `url_elicitation`)."""
        self.sessions[session_id] = _Session(key, scope, url_elicitation=url_elicitation)

    def ended(self, session_id: str) -> None:
        """The SDK discarded a session: its calls are cancelled."""
        session = self.sessions.pop(session_id, None)
        if session is not None:
            for call in session.calls.values():
                call.cancel()

    def foreign(self, session_id: str | None, key: str | None, scope: Scope) -> bool:
        """Whether `session_id` was opened with another key than `key`, or on another endpoint than
        `scope`'s (then it is not found)."""
        session = self.sessions.get(session_id) if session_id else None
        return session is not None and (session.key != key or session.scope != scope)

    # ------------------------------------------------------------------ admission

    def admit(
        self, request: HTTPServerRequest, key: str | None, scope: Scope, message: dict[str, Any] | None
    ) -> CallRequest | bool:
        """What this lane does with a POST whose body holds JSON-RPC `message` (`mcp_wire.screen`;
        None: none): a `CallRequest` to serve; True if it was a client's answer to a server
        request or a cancellation of a call of this lane (answer 202); False if the SDK's
        transport serves it."""
        message = message if self._readable(request) else None
        if message is None:
            return False
        version = request.headers.get("MCP-Protocol-Version")
        modern = version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS
        method = message.get("method")
        session_id = None
        if not modern:
            session_id = request.headers.get("Mcp-Session-Id")
            session = self._live(session_id, key, scope)
            if session is None:
                return False
            if method is None:
                return self.asks.answered(message, session_id)
            if method == "notifications/cancelled":
                return cancel_call(message, session.calls)
        has_json, has_sse = check_accept_headers(request)  # type: ignore[arg-type]
        if method != "tools/call" or not (has_json and has_sse):
            return False
        call = parse_call(message, version or DEFAULT_NEGOTIATED_VERSION, modern, session_id)
        if call is None or (modern and not self._modern_ok(request, message, call, scope)):
            return False
        return call

    def _readable(self, request: Any) -> bool:
        """Whether this lane may read the body of a POST: of a size the SDK takes, and it passes
        the SDK's transport checks."""
        size = len(request.body or b"")
        return 0 < size <= self.manager.max_request_body_size and self._secure(request.headers)

    def _secure(self, headers: Any) -> bool:
        """Content-Type, and (DNS-rebinding protection on) Host and Origin, as the SDK checks them."""
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

    def _live(self, session_id: str | None, key: str | None, scope: Scope) -> _Session | None:
        """The 2025-11-25 session this lane may serve: open, opened by `key` to `scope`, not ending."""
        session = self.sessions.get(session_id) if session_id else None
        if session is None or session.key != key or session.scope != scope:
            return None
        transport = seams.session_transport(self.manager, session_id)
        if transport is None or transport.is_terminated:
            return None
        if transport.idle_scope is not None and transport.idle_scope.cancel_called:
            return None
        return session

    def _modern_ok(self, request: Any, message: dict[str, Any], call: CallRequest, scope: Scope) -> bool:
        """A 2026-07-28 request the SDK would serve: version, envelope, routing and `Mcp-Param-*` headers.

        Tornado's headers fold names case-insensitively and keep every line of a repeated one: a
        routing header sent twice is refused here as `find_duplicated_routing_header` refuses it,
        and the ladder reads the others through them (`classify_inbound_request` reads only the
        routing headers, none of them repeated by then)."""
        headers = request.headers
        if any(len(headers.get_list(name)) > 1 for name in _ROUTING_HEADERS):
            return False
        if headers.get("mcp-protocol-version") not in MODERN_PROTOCOL_VERSIONS:
            return False
        if not isinstance(classify_inbound_request(message, headers=headers), InboundModernRoute):
            return False
        if call.arguments or any(name.lower().startswith(_PARAM_PREFIX) for name in headers):
            schema = self.facade.input_schema_of(scope, call.name)
            if schema is not None and _annotated(schema):
                lowered = {k.lower(): v for k, v in headers.get_all()}
                if validate_mcp_param_headers(schema, call.arguments, lowered) is not None:
                    return False
        return True

    # ------------------------------------------------------------------ serving

    async def serve(
        self,
        handler: Responder,
        call: CallRequest,
        scope: Scope,
        caller: Who | None,
        session: str | None,
    ) -> None:
        """Serve one admitted call of `caller` on `handler`'s response."""
        owner = self.sessions.get(call.owner) if call.owner else None
        calls = owner.calls if owner is not None else {}  # 2026-07-28: no cancellation finds a call
        if owner is not None and owner.url_elicitation:
            call = replace(call, url_elicitation=True)
        keyed = handler.request.headers.get_list(HEADER)  # (a balancer may send it again: `hub.idempotency`)
        if keyed:
            call = replace(call, idempotency_key=tuple(keyed))
        stream = _HttpCall(handler, call, asyncio.get_running_loop(), self.keepalive)
        with seams.IdleHold(self.manager, call.owner):
            task = start_call(self.facade, stream, call, self.asks, scope, caller, session, calls)
            if call.modern:
                handler.lane_call = task  # its client closing cancels it
            await answer_call(stream, call, task, calls)


class _HttpCall:
    """The response of one HTTP call: a JSON body if the answer comes first, else an SSE stream."""

    def __init__(
        self, handler: Responder, call: CallRequest, loop: asyncio.AbstractEventLoop, keepalive: float
    ) -> None:
        self.handler = handler
        self.call = call
        self.loop = loop
        self.interval = keepalive
        self.streaming = False
        self.done = False
        self._ping = loop.call_later(keepalive, self._keepalive)

    def _start_stream(self) -> None:
        handler = self.handler
        handler.set_status(200)
        for name, value in _SSE_HEADERS:
            handler.set_header(name, value)
        if self.call.owner:
            handler.set_header("Mcp-Session-Id", self.call.owner)
        handler.nodelay()  # each event leaves at once (see web.mcp_bridge)
        self.streaming = True

    def _write(self, chunk: bytes) -> None:
        if not self.streaming:
            self._start_stream()
        self.handler.write(chunk)
        self.handler.flush().add_done_callback(_quiet)

    def _open(self) -> bool:
        return not self.done and not self.handler.finished()

    def emit(self, message: Mapping[str, Any]) -> None:
        if self._open():
            self._write(b"event: message\r\ndata: " + encode(message) + b"\r\n\r\n")

    def _keepalive(self) -> None:
        if self._open():
            self._write(b": ping\r\n\r\n")
            self._ping = self.loop.call_later(self.interval, self._keepalive)

    def answer(self, message: Mapping[str, Any], code: int | None = None) -> None:
        handler = self.handler
        if not self._open():
            return
        self.done = True
        if self.streaming:
            handler.finish(b"event: message\r\ndata: " + encode(message) + b"\r\n\r\n")
            return
        status = ERROR_CODE_HTTP_STATUS.get(code, 200) if code is not None and self.call.modern else 200
        handler.set_status(status)
        handler.set_header("Content-Type", "application/json")
        if self.call.owner:
            handler.set_header("Mcp-Session-Id", self.call.owner)
        handler.finish(encode(message))

    def cancelled(self) -> None:
        if self._open():
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
