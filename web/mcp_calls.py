"""The facade's own path for `tools/call`, over Streamable HTTP and over stdio, in both eras.

Why: the SDK's server stack costs each call more than the rest of the hub together. Over HTTP, a
call of a 2025-11-25 session opened an SSE response with its own task group and memory streams,
and went through the session's dispatcher and the low-level server's validation both ways (about
7 tasks and 50 loop callbacks per call), which made MCP Hub half as fast as `mcp-proxy`
(bench/bench_peer.py); over stdio the same dispatcher and validation made the facade's call
twice a direct one (bench/bench_facade.py). A *lane* serves the one message that matters for
speed, `tools/call`, itself: it takes the message off the wire before the SDK sees it, calls
`Facade.call`, and writes the call's progress, log messages, server requests and answer.

What a lane takes: only a message that is certainly a well-formed `tools/call`, checked with the
SDK's own validators (`validate_client_request`; for 2026-07-28 `classify_inbound_request`, and
over HTTP the Host/Origin, `Accept` and `Mcp-*` header checks). Everything else, and so every
protocol error, goes to the SDK, which stays the one authority on them. It also takes what
belongs to its calls: a client's answer to a server request it sent (ids `hub-r-N`), and
`notifications/cancelled` for one of its calls.

HTTP (`HttpLane`): the answer is one JSON body when nothing precedes it, else an SSE stream. A
call holds its 2025-11-25 session's idle timer as the SDK's own requests do (`IdleHold`, one of
the seams around the SDK's private names in `hub/seams.py`);
ending a session cancels its calls; a session serves only the key that opened it. A 2026-07-28
call is cancelled when its client closes the connection (that era's cancellation), a 2025-11-25
call only by `notifications/cancelled` (the spec: a disconnect is not a cancellation). A call
that runs `keepalive` seconds (`gateway.mcp_keepalive_interval`, default 15) without anything to
send commits to SSE and sends a comment as often, so proxies with an idle-read timeout keep the
connection, as the SDK does for 2026-07-28 (every 15 s).

stdio (`StdioLane`): one line in, lines out on the same writer as the SDK's (whole lines, written
on one loop, never interleave). A 2025-11-25 call is taken once the client's `initialize` has
gone by; a 2026-07-28 one when it carries the era's envelope.

Thread: everything here runs on the serving loop, except `CallRequester`'s methods, which run on
the called server's loop and hand their work over.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

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
from mcp_types import DEFAULT_NEGOTIATED_VERSION, PROTOCOL_VERSION_META_KEY, SERVER_INFO_META_KEY
from mcp_types.methods import validate_client_request
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION, MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

import hub
from hub import jsontext, seams
from hub.errors import InvalidText, MalformedJson, NotJson
from web.facade import Facade, tool_result_json

if TYPE_CHECKING:
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from mcp.server.transport_security import TransportSecuritySettings
    from tornado.web import RequestHandler

log = logging.getLogger(__name__)

_SERVER_INFO = {SERVER_INFO_META_KEY: {"name": "mcp-hub", "version": hub.__version__}}
_PARAM_PREFIX = MCP_PARAM_HEADER_PREFIX.lower()
_SSE_HEADERS = (
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache, no-transform"),
    ("X-Accel-Buffering", "no"),
)


def _encode(message: Mapping[str, Any]) -> bytes:
    return jsontext.dumps(message).encode()  # always JSON, whatever a server answered


def refusal(data: bytes) -> tuple[dict[str, Any], bool] | None:
    """The JSON-RPC error that answers a message from a client at the edge, before a lane or the
    SDK sees it, and whether it is owed an answer (a notification is not); None if it is fine.
    JSON the hub cannot take (`hub.jsontext`: too deep, `NaN`, too many digits) is a parse error
    (-32700, id null); a string that is not valid Unicode text is invalid params (-32602, with the
    request's id). What is not JSON at all the SDK answers, as it does every protocol error."""
    if not data.strip():
        return None  # (the SDK says what an empty body is)
    try:
        message = jsontext.parse(data, "message")
        jsontext.check(message, "message", data)
    except NotJson:
        return None
    except InvalidText as exc:
        request_id = message.get("id") if isinstance(message, dict) else None
        valid = isinstance(request_id, str | int) and not isinstance(request_id, bool)
        if not valid or jsontext.scrub(request_id) != request_id:  # (a lone surrogate in the id too)
            request_id = None
        owed = not (isinstance(message, dict) and "method" in message and "id" not in message)
        error = {"code": types.INVALID_PARAMS, "message": exc.message}
        return {"jsonrpc": "2.0", "id": request_id, "error": error}, owed
    except MalformedJson as exc:
        return {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": types.PARSE_ERROR, "message": exc.message},
        }, True
    return None


def _message(data: bytes) -> dict[str, Any] | None:
    """`data` as one JSON-RPC 2.0 message object, else None (the SDK judges it)."""
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return message if isinstance(message, dict) and message.get("jsonrpc") == "2.0" else None


# --------------------------------------------------------------------------- what every lane shares


@dataclass(frozen=True)
class CallRequest:
    """A `tools/call` a lane takes."""

    id: str | int
    name: str
    arguments: Mapping[str, Any]
    progress_token: str | int | None
    modern: bool  # 2026-07-28 (else 2025-11-25)
    log_levels: frozenset[str]
    owner: str | None = None  # whose calls and server requests these are (an HTTP session id)


def parse_call(
    message: dict[str, Any], version: str, modern: bool, owner: str | None = None
) -> CallRequest | None:
    """`message` as a call a lane may take (its shape checked by the SDK's own validator for
    `version`), else None."""
    request_id = message.get("id")
    params = message.get("params")
    if isinstance(request_id, bool) or not isinstance(request_id, (str, int)) or not isinstance(params, dict):
        return None
    try:
        validate_client_request("tools/call", version, params)
    except (ValueError, KeyError, ValidationError):
        return None
    meta = params.get("_meta") or {}
    return CallRequest(
        id=request_id,
        name=params["name"],
        arguments=params.get("arguments") or {},
        progress_token=meta.get("progressToken"),
        modern=modern,
        log_levels=allowed_log_levels(version, meta),
        owner=owner,
    )


class CallStream(Protocol):
    """Where a call's messages go (serving loop)."""

    def emit(self, message: Mapping[str, Any]) -> None:
        """A notification or server request of the call, before its answer."""

    def answer(self, message: Mapping[str, Any], code: int | None = None) -> None:
        """The call's answer (JSON-RPC error `code` if it is an error); the stream ends."""

    def cancelled(self) -> None:
        """The client cancelled the call: end without an answer."""

    def close(self) -> None:
        """The call is over, however it ended."""


class Asks:
    """Server requests a lane sent its clients mid-call, waiting for their answers (serving loop)."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[str | None, asyncio.Future[dict[str, Any]]]] = {}
        self._ids = itertools.count(1)

    async def ask(self, stream: CallStream, owner: str | None, request: Any) -> dict[str, Any]:
        """Send `request` on `stream`; the client's result (an error answer raises `MCPError`)."""
        ask_id = f"hub-r-{next(self._ids)}"
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ask_id] = (owner, answer)
        try:
            body = request.model_dump(mode="json", by_alias=True, exclude_none=True)
            stream.emit({"jsonrpc": "2.0", "id": ask_id, **body})
            message = await answer
        finally:
            self._pending.pop(ask_id, None)
        if "error" in message:
            error = types.ErrorData.model_validate(message["error"])
            raise MCPError(code=error.code, message=error.message, data=error.data)
        return message["result"]

    def answered(self, message: dict[str, Any], owner: str | None) -> bool:
        """Deliver `message` if it answers one of these requests (of `owner`)."""
        ask_id = message.get("id")
        pending = self._pending.get(ask_id) if isinstance(ask_id, str) else None
        if pending is None or pending[0] != owner or not ("result" in message or "error" in message):
            return False
        if not pending[1].done():
            pending[1].set_result(message)
        return True


class CallRequester:
    """The `Requester` (`actors.server`) of a lane's call: its methods run on the server's loop and
    hand their work to the serving loop."""

    def __init__(
        self, stream: CallStream, call: CallRequest, asks: Asks, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.stream = stream
        self.call = call
        self.asks = asks
        self.loop = loop

    async def progress(self, value: float, total: float | None, message: str | None) -> None:
        if self.call.progress_token is None:
            return
        params: dict[str, Any] = {"progressToken": self.call.progress_token, "progress": value}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        notification = {"jsonrpc": "2.0", "method": "notifications/progress", "params": params}
        self.loop.call_soon_threadsafe(self.stream.emit, notification)

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        if params.level in self.call.log_levels:
            body = params.model_dump(mode="json", by_alias=True, exclude_none=True)
            notification = {"jsonrpc": "2.0", "method": "notifications/message", "params": body}
            self.loop.call_soon_threadsafe(self.stream.emit, notification)

    async def ask(self, request: Any, result_type: type[Any]) -> Any:
        if self.call.modern:  # a 2026-07-28 client cannot be asked mid-call
            raise NoBackChannelError(request.method)
        asked = self.asks.ask(self.stream, self.call.owner, request)
        raw = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(asked, self.loop))
        return result_type.model_validate(raw, by_name=False)


def start_call(
    facade: Facade,
    stream: CallStream,
    call: CallRequest,
    asks: Asks,
    tenant: str,
    key: str | None,
    session: str | None,
    calls: dict[Any, asyncio.Future[Any]],
) -> asyncio.Future[Any]:
    """Start a call a lane took (`Facade.call`); it is in `calls` under its id at once, where
    `notifications/cancelled` finds it, until `answer_call` is done with it."""
    requester = CallRequester(stream, call, asks, asyncio.get_running_loop())
    task = asyncio.ensure_future(facade.call(tenant, call.name, call.arguments, requester, key, session))
    calls[call.id] = task
    return task


async def answer_call(
    stream: CallStream, call: CallRequest, task: asyncio.Future[Any], calls: dict[Any, asyncio.Future[Any]]
) -> None:
    """Wait for a started call and write its answer (or nothing, if its client cancelled it)."""
    try:
        result = await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():  # this coroutine itself is cancelled
            raise
        stream.cancelled()
    except MCPError as exc:
        error = exc.error.model_dump(mode="json", exclude_none=True)
        stream.answer({"jsonrpc": "2.0", "id": call.id, "error": error}, exc.error.code)
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
        if calls.get(call.id) is task:
            del calls[call.id]


def _cancel(message: dict[str, Any], calls: Mapping[Any, asyncio.Future[Any]]) -> bool:
    """Cancel the call a `notifications/cancelled` names, if it is one of `calls`."""
    params = message.get("params")
    call = calls.get(params.get("requestId")) if isinstance(params, dict) else None
    if call is None:
        return False
    call.cancel()
    return True


# --------------------------------------------------------------------------- Streamable HTTP


def _allowed(value: str, patterns: list[str]) -> bool:
    """`value` is one of `patterns`, or matches one ending in `:*` with any port."""
    return value in patterns or any(p.endswith(":*") and value.startswith(p[:-1]) for p in patterns)


@dataclass
class _Session:
    """A 2025-11-25 session the SDK opened through this endpoint."""

    key: str | None  # the key id that opened it: only that key may use it
    calls: dict[Any, asyncio.Future[Any]] = field(default_factory=dict)  # request id → call


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

    def admit(self, handler: RequestHandler, key: str | None, tenant: str) -> CallRequest | bool:
        """What this lane does with a POST: a `CallRequest` to serve; True if it was a client's
        answer to a server request or a cancellation of a call of this lane (answer 202); False
        if the SDK's transport serves it."""
        request = handler.request
        headers = request.headers
        body = request.body
        if not body or len(body) > self.manager.max_request_body_size or not self._secure(headers):
            return False
        message = _message(body)
        if message is None:
            return False
        version = headers.get("MCP-Protocol-Version")
        modern = version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS
        session_id = None if modern else headers.get("Mcp-Session-Id")
        session = None if modern else self._live(session_id, key)
        if not modern and session is None:
            return False
        method = message.get("method")
        if session is not None and method is None:
            return self.asks.answered(message, session_id)
        if session is not None and method == "notifications/cancelled":
            return _cancel(message, session.calls)
        has_json, has_sse = check_accept_headers(request)  # type: ignore[arg-type]
        if method != "tools/call" or not (has_json and has_sse):
            return False
        call = parse_call(message, version or DEFAULT_NEGOTIATED_VERSION, modern, session_id)
        if call is None or (modern and not self._modern_ok(request, message, call, tenant)):
            return False
        return call

    def _live(self, session_id: str | None, key: str | None) -> _Session | None:
        """The 2025-11-25 session this lane may serve: open, opened by `key`, not ending."""
        session = self.sessions.get(session_id) if session_id else None
        if session is None or session.key != key:
            return None
        transport = seams.session_transport(self.manager, session_id)
        if transport is None or transport.is_terminated:
            return None
        if transport.idle_scope is not None and transport.idle_scope.cancel_called:
            return None
        return session

    def _modern_ok(self, request: Any, message: dict[str, Any], call: CallRequest, tenant: str) -> bool:
        """A 2026-07-28 request the SDK would serve: version, envelope, routing and `Mcp-Param-*` headers."""
        if find_duplicated_routing_header(request.headers.get_all()) is not None:
            return False
        headers = {k.lower(): v for k, v in request.headers.get_all()}
        if headers.get("mcp-protocol-version") not in MODERN_PROTOCOL_VERSIONS:
            return False
        if not isinstance(classify_inbound_request(message, headers=headers), InboundModernRoute):
            return False
        if call.arguments or any(h.startswith(_PARAM_PREFIX) for h in headers):
            schema = self.facade.input_schema_of(tenant, call.name)
            if schema is not None and validate_mcp_param_headers(schema, call.arguments, headers) is not None:
                return False
        return True

    # ------------------------------------------------------------------ serving

    async def serve(
        self, handler: RequestHandler, call: CallRequest, tenant: str, key: str | None, session: str | None
    ) -> None:
        """Serve one admitted call on `handler`'s response."""
        owner = self.sessions.get(call.owner) if call.owner else None
        calls = owner.calls if owner is not None else {}  # 2026-07-28: no cancellation finds a call
        stream = _HttpCall(handler, call, asyncio.get_running_loop(), self.keepalive)
        with seams.IdleHold(self.manager, call.owner):
            task = start_call(self.facade, stream, call, self.asks, tenant, key, session, calls)
            if call.modern:
                handler.lane_call = task  # type: ignore[attr-defined]  # its client closing cancels it
            await answer_call(stream, call, task, calls)


class _HttpCall:
    """The response of one HTTP call: a JSON body if the answer comes first, else an SSE stream."""

    def __init__(
        self, handler: RequestHandler, call: CallRequest, loop: asyncio.AbstractEventLoop, keepalive: float
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
        seams.set_nodelay(handler)  # each event leaves at once (see web.mcp_http)
        self.streaming = True

    def _write(self, chunk: bytes) -> None:
        if not self.streaming:
            self._start_stream()
        self.handler.write(chunk)
        self.handler.flush().add_done_callback(_quiet)

    def _open(self) -> bool:
        return not self.done and not seams.is_finished(self.handler)

    def emit(self, message: Mapping[str, Any]) -> None:
        if self._open():
            self._write(b"event: message\r\ndata: " + _encode(message) + b"\r\n\r\n")

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
            handler.finish(b"event: message\r\ndata: " + _encode(message) + b"\r\n\r\n")
            return
        status = ERROR_CODE_HTTP_STATUS.get(code, 200) if code is not None and self.call.modern else 200
        handler.set_status(status)
        handler.set_header("Content-Type", "application/json")
        if self.call.owner:
            handler.set_header("Mcp-Session-Id", self.call.owner)
        handler.finish(_encode(message))

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


# --------------------------------------------------------------------------- stdio


class StdioLane:
    """The `tools/call` path of the stdio facade: `take` sees each line from the client before the
    SDK does. Thread: the serving loop (the main thread's)."""

    def __init__(self, facade: Facade, tenant: str, write: Callable[[bytes], None]) -> None:
        self.facade = facade
        self.tenant = tenant
        self.write = write
        self.asks = Asks()
        self.calls: dict[Any, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        self._version: str | None = None  # the 2025-11-25 era's version, once `initialize` went by
        self.serving = False  # set once the hub runs: until then every line is the SDK's

    def take(self, line: bytes) -> bool:
        """Serve `line` if it is this lane's, or refuse it (`refusal`); False: the SDK reads it."""
        refused = refusal(line)
        if refused is not None:
            answer, owed = refused
            if owed:
                self.write(_encode(answer) + b"\n")
            return True
        if b'"tools/call"' not in line and b"hub-r-" not in line and b'"notifications/cancelled"' not in line:
            if self._version is None and b'"initialize"' in line:
                self._initializing(line)
            return False
        message = _message(line) if self.serving else None
        if message is None:
            return False
        method = message.get("method")
        if method is None:
            return self.asks.answered(message, None)
        if method == "notifications/cancelled":
            return _cancel(message, self.calls)
        if method != "tools/call":
            return False
        meta = (message.get("params") or {}).get("_meta") if isinstance(message.get("params"), dict) else None
        if isinstance(meta, dict) and PROTOCOL_VERSION_META_KEY in meta:  # the 2026-07-28 envelope
            verdict = classify_inbound_request(message)
            if not isinstance(verdict, InboundModernRoute):
                return False
            call = parse_call(message, verdict.protocol_version, modern=True)
        elif self._version is not None:
            call = parse_call(message, self._version, modern=False)
        else:
            return False
        if call is None or call.id in self.calls:
            return False
        stream = _LineCall(self.write)
        started = start_call(self.facade, stream, call, self.asks, self.tenant, "stdio", "stdio", self.calls)
        task = asyncio.ensure_future(answer_call(stream, call, started, self.calls))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def _initializing(self, line: bytes) -> None:
        """Note the version an `initialize` request will settle on (the SDK answers it)."""
        message = _message(line)
        if message is not None and message.get("method") == "initialize":
            params = message.get("params")
            asked = params.get("protocolVersion") if isinstance(params, dict) else None
            self._version = asked if asked in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION

    def close(self) -> None:
        """The client is gone: cancel the calls in flight."""
        for task in list(self._tasks):
            task.cancel()


class _LineCall:
    """The messages of one stdio call: each a line on the client's wire."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self.write = write
        self.done = False

    def emit(self, message: Mapping[str, Any]) -> None:
        if not self.done:
            self.write(_encode(message) + b"\n")

    def answer(self, message: Mapping[str, Any], code: int | None = None) -> None:
        if not self.done:
            self.done = True
            self.write(_encode(message) + b"\n")

    def cancelled(self) -> None:
        self.done = True  # a cancelled request gets no answer

    def close(self) -> None:
        self.done = True
