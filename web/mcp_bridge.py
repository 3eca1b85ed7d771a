"""The ASGI bridge: one Tornado request handed to the SDK's `StreamableHTTPSessionManager` as an
ASGI request, and the SDK's response written back through Tornado (no second web server).

The bridge puts what the request sees (a `web.facade_scope.Scope`, with what its caller may
use), its caller (`web.auth.Caller`) and client session in the ASGI scope (`mcp_hub_scope`,
`mcp_hub_caller`, `mcp_hub_session`), where the facade's handlers read them back from the request
context (`scope_of`, `caller_of`, `session_of`; its `Idempotency-Key` header: `key_of`). A
response whose first SSE event is already the answer to the request goes out as one JSON body
instead (`answer_of`).

Thread: the web loop (the facade's handlers that read the scope run there too).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import tornado.httputil
import tornado.web

from hub import seams
from web.auth import Caller
from web.facade import Ctx
from web.facade_scope import Scope


def caller_of(ctx: Ctx) -> Caller | None:
    """The caller the bridge put in the ASGI scope (for the audit log: its key id and subject)."""
    return (getattr(ctx.request, "scope", None) or {}).get("mcp_hub_caller")


def scope_of(ctx: Ctx) -> Scope:
    """What the HTTP request that carried this message sees (the bridge put it in the ASGI scope)."""
    request = ctx.request
    scope = getattr(request, "scope", None) or {}
    return scope["mcp_hub_scope"]


def session_of(ctx: Ctx) -> str | None:
    """The client session the bridge put in the ASGI scope (None: the request has none)."""
    return (getattr(ctx.request, "scope", None) or {}).get("mcp_hub_session")


def key_of(ctx: Ctx) -> list[str]:
    """The values of the `Idempotency-Key` header of the HTTP request that carried this message."""
    headers = getattr(ctx.request, "headers", None)
    return headers.getlist("idempotency-key") if headers is not None else []


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
    data = next((line[6:] for line in chunk.splitlines() if line.startswith(b"data: ")), None)
    if data is None:
        return None
    try:
        message = json.loads(data)
    except ValueError:
        return None
    answers = (
        isinstance(message, dict)
        and message.get("id") == request_id
        and "method" not in message
        and ("result" in message or "error" in message)
    )
    return data if answers else None


def asgi_scope(
    request: tornado.httputil.HTTPServerRequest,
    served: Scope | None,
    caller: Caller | None,
    session: str | None,
) -> dict[str, Any]:
    """The ASGI scope of `request`, with what the facade reads back from it (`served` None: a
    request for another ASGI app than the facade's, such as the OAuth server's)."""
    host, _, port = (request.host or "").rpartition(":")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": request.protocol,
        "path": request.path,
        "raw_path": request.path.encode(),
        "root_path": "",
        "query_string": request.query.encode(),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.get_all()],
        "client": (request.remote_ip, 0),
        "server": (host or request.host, int(port) if port.isdigit() else 80),
        "mcp_hub_scope": served,
        "mcp_hub_caller": caller,
        "mcp_hub_session": session,
    }


class AsgiExchange:
    """The ASGI `receive` and `send` of one request, on `handler`'s response (web loop).

    Args:
        handler: the request's handler, which writes the response.
        disconnected: set when the client closes the connection (an ASGI `http.disconnect`).
        opened: called with the id of a session the response opens (None: the request has one);
            what it returns, the response's body waits for (a cluster's record of the session).
        answered: called when the response starts.
    """

    def __init__(
        self,
        handler: tornado.web.RequestHandler,
        disconnected: asyncio.Event,
        opened: Callable[[str], Awaitable[Any] | None] | None,
        answered: Callable[[], None],
    ) -> None:
        self.handler = handler
        self.disconnected = disconnected
        self.opened = opened
        self.recording: Awaitable[Any] | None = None  # (`opened`'s, until the body waited for it)
        self.answered = answered
        self.body_sent = False
        request = handler.request
        self.request_id = request_id_of(request.body) if request.method == "POST" else None

    async def receive(self) -> dict[str, Any]:
        """The request's body at once, then (when the client goes) `http.disconnect`."""
        if not self.body_sent:
            self.body_sent = True
            return {"type": "http.request", "body": self.handler.request.body or b"", "more_body": False}
        await self.disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        """Write what the SDK sends: the status and headers, then the body."""
        if message["type"] == "http.response.start":
            self._start(message)
        elif message["type"] == "http.response.body":
            await self._body(message)

    def _start(self, message: dict[str, Any]) -> None:
        handler = self.handler
        # Each SSE event must leave at once: with Nagle's algorithm on (Tornado's default until a
        # response finishes), an event written right after the headers waits for the client's
        # delayed ACK, tens of milliseconds.
        seams.set_nodelay(handler)
        handler.clear()
        handler.clear_header("Content-Type")  # the SDK says what this response is, not our default
        handler.set_status(message["status"])
        seen = set()
        for raw_name, raw_value in message.get("headers", []):
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            if name.lower() == "mcp-session-id" and self.opened is not None:
                self.recording = self.opened(value)
            if name.lower() in seen:
                handler.add_header(name, value)
            else:
                handler.set_header(name, value)
                seen.add(name.lower())
        self.answered()

    async def _body(self, message: dict[str, Any]) -> None:
        handler = self.handler
        if self.recording is not None:
            recording, self.recording = self.recording, None
            await recording
        if seams.is_finished(handler):
            return
        body = message.get("body") or b""
        if message.get("more_body") and not seams.headers_written(handler):
            answer = answer_of(body, self.request_id)
            if answer is not None:
                # The first event of the stream is already the answer: send it as a plain JSON
                # response (the protocol allows either). A client reads a JSON body to its end and
                # keeps the connection; it drops an SSE stream it stops reading, which cost a new
                # TCP connection for every call.
                handler.set_header("Content-Type", "application/json")
                handler.clear_header("X-Accel-Buffering")
                handler.finish(answer)
                return
        if body:
            handler.write(body)
        if message.get("more_body"):
            await handler.flush()  # SSE: each event leaves at once
        else:
            handler.finish()  # now, not when the SDK's request task winds down
