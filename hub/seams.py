"""Every use of a private name of the `mcp` SDK or of Tornado, in one place.

The hub reaches past the public API of two libraries it does not own: the `mcp` SDK (2.3) and
Tornado (6.6). Each such reach is a small function here, whose docstring says what the library
does and why the hub needs it; no other module touches a `_`-prefixed name of either library.
`setup.cfg` pins both to the minor version these were read in, and `tests/test_seams.py` checks
that every name listed in `PRIVATE_NAMES` still exists, naming the one an upgrade removed.

Upgrading either library: bump the pin, run `pytest tests/test_seams.py`, then read each function
below against the new source before trusting it.

Thread: whatever thread calls a function; the SDK ones that touch a session run on the web loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import httpx2
import tornado.web
from mcp.server import Server
from mcp.server._otel import OpenTelemetryMiddleware
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared import _httpx_utils
from tornado import http1connection


@dataclass(frozen=True)
class PrivateName:
    """One private name this module relies on.

    `where` says how to find it: `module` (an attribute of the module `owner`), `class` (an
    attribute of the class `owner`, e.g. a method), `instance` (set on each instance of the class
    `owner`, e.g. in its `__init__`) or `annotation` (declared in the class `owner`'s annotations
    and set on instances later, e.g. per request).
    """

    owner: object
    name: str
    where: Literal["module", "class", "instance", "annotation"]

    def __str__(self) -> str:
        owner = getattr(self.owner, "__qualname__", None) or getattr(self.owner, "__name__", "?")
        module = getattr(self.owner, "__module__", None)
        return f"{module}.{owner}.{self.name}" if module else f"{owner}.{self.name}"


PRIVATE_NAMES: tuple[PrivateName, ...] = (
    # mcp 2.3
    PrivateName(_httpx_utils, "create_mcp_http_client", "module"),
    PrivateName(OpenTelemetryMiddleware, "__call__", "class"),  # mcp.server._otel
    PrivateName(StreamableHTTPSessionManager, "_discard_session", "class"),
    PrivateName(StreamableHTTPSessionManager, "_server_instances", "instance"),
    PrivateName(StreamableHTTPServerTransport, "_requests_in_flight", "instance"),
    PrivateName(StreamableHTTPServerTransport, "_idle_timeout", "instance"),
    # tornado 6.6
    PrivateName(tornado.web.RequestHandler, "_finished", "instance"),
    PrivateName(tornado.web.RequestHandler, "_headers_written", "instance"),
    PrivateName(tornado.web.RequestHandler, "_reason", "instance"),
    PrivateName(tornado.web.RequestHandler, "_transforms", "annotation"),
    PrivateName(http1connection.HTTP1Connection, "stream", "instance"),  # not in HTTPConnection's API
)
"""Every private name used below: `tests/test_seams.py` checks each still exists."""


# ---------------------------------------------------------------------------------- mcp: client


def mcp_http_client(headers: dict[str, str] | None = None) -> httpx2.AsyncClient:
    """An HTTP client for a Streamable HTTP upstream, made as the SDK makes its own.

    `mcp.shared._httpx_utils.create_mcp_http_client` (mcp 2.3) builds an `httpx2.AsyncClient`
    with the SDK's timeouts (30 s, and 300 s to read, for long SSE streams) and no redirect
    following. The hub needs a client of its own to send a server's configured `headers`, and
    wants the SDK's defaults rather than a second opinion on them. Enter it as a context manager.
    """
    return _httpx_utils.create_mcp_http_client(headers=headers)


# ---------------------------------------------------------------------------------- mcp: server


def drop_otel_middleware(server: Server[Any]) -> None:
    """Remove the SDK's OpenTelemetry span from every message `server` handles.

    The low-level `Server` (mcp 2.3) puts `mcp.server._otel.OpenTelemetryMiddleware` in its
    public `middleware` list by default; the class itself is private. The hub reports through
    Prometheus metrics and its audit log, and the span costs each call's hot path.
    """
    server.middleware = [m for m in server.middleware if not isinstance(m, OpenTelemetryMiddleware)]


class EndAwareSessionManager(StreamableHTTPSessionManager):
    """The SDK's Streamable HTTP session manager, which also says when a 2025-11-25 session ends,
    however it ends (`DELETE`, its idle timeout, a crash, shutdown). Thread: the web loop.

    It overrides `StreamableHTTPSessionManager._discard_session` (mcp 2.3: the one place the SDK
    forgets a session, after its transport's task ends), so the hub can stop the session's
    per_session instances and cancel its calls. A later SDK without it would leave a session's
    instances to their `idle_timeout`.
    """

    def __init__(self, on_end: Callable[[str], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_end = on_end

    async def _discard_session(self, session_id: str, transport: StreamableHTTPServerTransport) -> None:
        try:
            await super()._discard_session(session_id, transport)
        finally:
            self._on_end(session_id)

    def end(self, session_id: str) -> None:
        """End `session_id` now, as its idle timeout would: its task ends and discards it."""
        transport = session_transport(self, session_id)
        if transport is not None and transport.idle_scope is not None:  # set: the hub gives an idle timeout
            transport.idle_scope.cancel()


def session_transport(
    manager: StreamableHTTPSessionManager, session_id: str | None
) -> StreamableHTTPServerTransport | None:
    """The transport of the live 2025-11-25 session `session_id` of `manager`, else None.

    `StreamableHTTPSessionManager._server_instances` (mcp 2.3) is the SDK's table of sessions,
    by `Mcp-Session-Id`; a session leaves it when discarded. The hub reads it to serve a session's
    `tools/call` itself (its HTTP lane), to hold the session's idle timer meanwhile, and to end a
    session early.
    """
    return manager._server_instances.get(session_id) if session_id else None


class IdleHold:
    """Holds a 2025-11-25 session's idle timer while one of the hub's own calls runs in it, as
    the SDK's transport does for its own requests. Use as `with IdleHold(manager, session_id):`.
    Thread: the web loop.

    `StreamableHTTPServerTransport.handle_request` (mcp 2.3) counts the requests in flight in
    `_requests_in_flight`, pushes `idle_scope.deadline` to infinity while any runs, and sets it
    to now + `_idle_timeout` when the last one ends. The hub's HTTP lane answers `tools/call`
    without that method, so it keeps the same count, or a long call would let the SDK expire
    its session mid-call (or a call ending early would shorten one the SDK holds).
    """

    def __init__(self, manager: StreamableHTTPSessionManager, session_id: str | None) -> None:
        transport = session_transport(manager, session_id)
        self.transport = transport if transport is not None and transport.idle_scope is not None else None

    def __enter__(self) -> None:
        transport = self.transport
        if transport is not None:
            transport._requests_in_flight += 1
            transport.idle_scope.deadline = math.inf  # type: ignore[union-attr]

    def __exit__(self, *exc: object) -> None:
        transport = self.transport
        if transport is not None:
            transport._requests_in_flight -= 1
            if not transport._requests_in_flight and transport._idle_timeout is not None:
                deadline = anyio.current_time() + transport._idle_timeout
                transport.idle_scope.deadline = deadline  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------- tornado


def is_finished(handler: tornado.web.RequestHandler) -> bool:
    """Whether `handler`'s response is finished (`finish()` was called, or the connection closed).

    Tornado 6.6 keeps this in `RequestHandler._finished` with no public reader; writing after it
    raises. The hub's streamed answers (the MCP facade's SSE events, keep-alive comments) are
    written from callbacks that may run after the client went away, and must then write nothing.
    """
    return handler._finished


def headers_written(handler: tornado.web.RequestHandler) -> bool:
    """Whether `handler` already sent its status line and headers (its first `flush()`).

    Tornado 6.6 keeps this in `RequestHandler._headers_written`. The MCP facade turns an SSE
    stream whose first event is the answer into a plain JSON response, which it can do only while
    nothing has been sent.
    """
    return handler._headers_written


def reason(handler: tornado.web.RequestHandler) -> str:
    """The reason phrase of `handler`'s status ("Not Found"), as `set_status` chose it.

    Tornado 6.6 keeps it in `RequestHandler._reason` with no public reader. The hub's JSON error
    body uses it as the message of an `HTTPError` raised without one.
    """
    return handler._reason


def no_transforms(handler: tornado.web.RequestHandler) -> None:
    """Send `handler`'s response as written: no gzip or other output transform.

    Tornado 6.6 applies the application's transforms (gzip with `compress_response`) from the
    per-request list `RequestHandler._transforms`, set when the request starts, with no public way
    to opt one response out. The MCP facade's SSE events are small and each is flushed at once:
    compressing them costs CPU and latency and saves nothing.
    """
    handler._transforms = []


def set_nodelay(handler: tornado.web.RequestHandler) -> None:
    """Turn off Nagle's algorithm on `handler`'s connection, so each flushed event leaves at once.

    Tornado 6.6 turns it off only when a response finishes; the `IOStream` that could do it
    sooner is the `stream` attribute of `HTTP1Connection`, which the `HTTPConnection` interface
    (`request.connection`) does not expose. Without it an SSE event written right after the
    headers waits for the client's delayed ACK, tens of milliseconds. A connection without a
    stream (not HTTP/1) is left as it is.
    """
    stream = getattr(handler.request.connection, "stream", None)
    if stream is not None:
        stream.set_nodelay(True)


def server_connections(server: Any) -> set[Any]:
    """The connections `server` (a Tornado `HTTPServer`) closes on `close_all_connections`, and
    removes one from on `on_close`.

    Tornado 6.6 keeps them in `HTTPServer._connections` with no public way to add one: the hub's
    own connections (`web.lean_http`) are added and removed there as Tornado's are.
    """
    connections: set[Any] = server._connections
    return connections


def prefill(stream: Any, data: bytes) -> None:
    """Put `data` in front of what `stream` (a Tornado `IOStream`) reads next.

    Tornado 6.6 keeps what a stream has read and not yet delivered in `BaseIOStream._read_buffer`
    (and its length in `_read_buffer_size`), with no public way to put bytes back. A connection
    the hub's own reader hands over to Tornado (`web.lean_http`) has read bytes Tornado must see
    first.
    """
    if data:
        stream._read_buffer += data
        stream._read_buffer_size += len(data)
