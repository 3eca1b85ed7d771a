"""The hot path of a tool call to a Streamable HTTP server: one POST, its answer read by the hub.

The counterpart of `actors.upstream.rawcall` for remote servers. The SDK's `Client` keeps the
connection (the handshake, discovery, list_changed, pings, the GET stream, everything but
`tools/call`). A call here is one JSON-RPC POST on a pooled keep-alive connection
(`actors.upstream.http1`) carrying the SDK session's `Mcp-Session-Id` (2025-11-25: the hub reads
it off the SDK's own requests, `SessionWatch`) or the era's envelope and routing headers
(2026-07-28: `_meta`, `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`), and its
answer is read as one JSON body or as an SSE stream. On that stream, in the order they come:
progress notifications go to the caller, log messages to the relay (`RequestRelay.on_raw_log`),
the server's own requests (sampling, elicitation, ping) are answered through the relay and the
answer POSTed back, other notifications (list_changed, resource updates) go where the SDK's would
(`Discovery.on_message`); then the result. A stream that ends early after events with ids is
resumed (GET with `Last-Event-ID`) at most twice.

What the channel does not understand is a `BadAnswer` (the call fails with an upstream error
saying what came; the connection is dropped, the server is not blamed further); no connection at
all is `Unreachable`. A 404 on a 2025-11-25 session is `SessionExpired`: the caller renews the
session and tries once more (`actors.renewal`). A caller that gives up (its timeout, a cancel)
closes the answer's connection (the 2026-07-28 cancellation) and, on a 2025-11-25 session, POSTs
`notifications/cancelled`.

Everything here runs on the server's loop, except on a channel's twin (`HttpChannel.here`): the
same channel for a loop whose tool calls skip the hop to the server's loop (`ServerCalls.here`),
with a pool of its own; it runs on that loop and hands other notifications to the server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import mcp.types as types
from mcp import MCPError
from mcp.shared.inbound import encode_header_value, mcp_param_headers, x_mcp_header_map

from actors.models import ServerCatalog
from actors.upstream.http1 import HttpFailure, Pool, Response, header_safe
from actors.upstream.rawcall import ErrorAnswer, ProgressFn, RawChannel, deliver_progress, encoded, parsed
from actors.upstream.sse import SseParser

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 64 * 1024 * 1024  # the largest JSON answer or SSE event accepted, as for a stdio line
_RESUMES = 2  # GETs with Last-Event-ID after a stream ended early
_RETRY_MAX = 2.0  # seconds: the longest `retry:` of the server honoured before resuming
_DRAIN = 5.0  # seconds the rest of a stream is read after its answer, to keep the connection


class BadAnswer(Exception):
    """The server answered in a way the channel does not understand (the call fails)."""


class Unreachable(Exception):
    """No exchange with the server at all (cannot connect, reset before any answer)."""


class SessionExpired(Exception):
    """404 on a request carrying the 2025-11-25 session id: the server ended the session."""


@dataclass
class SessionWatch:
    """The session id of the SDK's client (read off the answer to its `initialize` and off its
    requests by `watch`, an `httpx2` request and response hook); what the channel sends with each
    call. A value that is not visible ASCII (a hostile server's) is never taken."""

    session_id: str | None = None

    async def watch(self, message: Any) -> None:
        value = message.headers.get("mcp-session-id")
        if value and header_safe(value):
            self.session_id = value


@dataclass
class Relayed:
    """Where what a call's stream carries besides its answer goes (on the loop of the call: a
    twin's `on_notification` hands each to the server's loop)."""

    on_log: Callable[[dict[str, Any]], Awaitable[None]]
    on_notification: Callable[[Any], Awaitable[None]]
    answer_request: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass
class _Call:
    rid: str
    progress: ProgressFn | None
    last_event: str | None = None
    retry: float = 0.0
    response: Response | None = None  # the answer being read (the POST's, or a resumed stream's)


class HttpChannel:
    """Tool calls POSTed straight to a Streamable HTTP server, answered without the SDK session.

    Args:
        pool: the keep-alive connections to the server.
        version: the protocol version of the connection.
        watch: the 2025-11-25 session id as the SDK sends it (None in 2026-07-28).
        relayed: where the stream's other messages go.
        catalog: the server's catalog as last discovered, for the 2026-07-28 `Mcp-Param-*` headers.
    """

    def __init__(
        self,
        pool: Pool,
        version: str,
        watch: SessionWatch | None,
        relayed: Relayed,
        catalog: Callable[[], ServerCatalog],
    ) -> None:
        self._pool = pool
        self._version = version
        self._watch = watch
        self._relayed = relayed
        self._catalog = catalog
        self._seen: ServerCatalog | None = None
        self._maps: dict[str, dict[tuple[str, ...], str]] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._twins: dict[asyncio.AbstractEventLoop, HttpChannel] = {}  # by the loop each runs on
        self.envelope: dict[str, Any] | None = None  # set for 2026-07-28 (`rawcall.modern_envelope`)
        self.closed = False

    def here(self, home: asyncio.AbstractEventLoop) -> HttpChannel:
        """This channel's twin for the running loop (a caller's, not the server's loop `home`):
        the same session, envelope and request ids over a pool of its own (made at its first
        call), whose other notifications go to `home`; closed with this channel. Thread: the
        running loop's."""
        loop = asyncio.get_running_loop()
        twin = self._twins.get(loop)
        if twin is None and loop is not home:
            relayed = self._relayed
            notify = functools.partial(_hand_over, relayed.on_notification, home)
            twin = HttpChannel(
                self._pool.twin(),
                self._version,
                self._watch,
                Relayed(relayed.on_log, notify, relayed.answer_request),
                self._catalog,
            )
            twin.envelope = self.envelope
            twin._ids = self._ids  # (one session: ids never repeat across the twins; `next` is atomic)
            self._twins[loop] = twin
            if self.closed:  # (closed meanwhile, on the server's loop: `close` may not have seen it)
                twin.close()
        return twin or self

    async def request(
        self, method: str, params: dict[str, Any], progress: ProgressFn | None = None
    ) -> dict[str, Any]:
        """POST a request and return its `result`.

        Raises:
            ErrorAnswer: the server answered with a JSON-RPC error.
            BadAnswer: an answer the channel does not understand.
            Unreachable: no answer at all.
            SessionExpired: the 2025-11-25 session is gone (404).
            MCPError: the channel is closed (CONNECTION_CLOSED).
        """
        if self.closed:
            raise MCPError(types.CONNECTION_CLOSED, "Connection closed")
        call = _Call(f"hub-{next(self._ids)}", progress)
        meta = dict(self.envelope or ())
        if progress is not None:
            meta["progressToken"] = call.rid
        if meta:
            params = {**params, "_meta": meta}
        body = encoded({"jsonrpc": "2.0", "id": call.rid, "method": method, "params": params})
        headers = self._headers(method, params)
        try:
            try:
                call.response = await self._pool.post(body, headers)
            except HttpFailure as failure:
                raise (BadAnswer if failure.answered else Unreachable)(str(failure)) from None
            return await self._answer(call.response, call, headers)
        except BaseException as exc:
            if call.response is not None:  # (unless read to its end: then it is back in the pool)
                call.response.close()
            if isinstance(exc, asyncio.CancelledError):  # (the request may have reached the server)
                self._cancel(call.rid)
            raise

    def _headers(self, method: str, params: dict[str, Any]) -> dict[str, str]:
        headers = {"MCP-Protocol-Version": self._version}
        if self.envelope is None:
            session = self._watch.session_id if self._watch is not None else None
            if session:
                headers["Mcp-Session-Id"] = session
            return headers
        if not method:
            return headers  # (a message that is no request of the era: its answer, a GET)
        headers["Mcp-Method"] = method
        name = params.get("name")
        if isinstance(name, str):
            headers["Mcp-Name"] = encode_header_value(name)
            arguments = params.get("arguments")
            mapping = self._param_map(name)
            if mapping and isinstance(arguments, dict):
                headers.update(mcp_param_headers(mapping, arguments))
        return headers

    def _param_map(self, name: str) -> dict[tuple[str, ...], str]:
        """The tool's `x-mcp-header` map, from the catalog last discovered (maps made once per catalog)."""
        catalog = self._catalog()
        if catalog is not self._seen:
            self._seen = catalog
            self._maps = {tool.name: x_mcp_header_map(tool.input_schema) for tool in catalog.tools}
        return self._maps.get(name) or {}

    async def _answer(self, response: Response, call: _Call, headers: dict[str, str]) -> dict[str, Any]:
        status = response.status
        if status == 404 and "Mcp-Session-Id" in headers:
            await self._body(response)
            raise SessionExpired(headers["Mcp-Session-Id"])
        kind = response.content_type
        if status == 200 and kind == "text/event-stream":
            return await self._stream(response, call)
        body = await self._body(response)
        if kind == "application/json" and (status == 200 or status >= 400):
            return _json_answer(parsed(body), call.rid, status)
        if 300 <= status < 400:
            where = response.headers.get("location", "?")
            raise BadAnswer(f"answered the call with a redirect (HTTP {status} to {where}), not followed")
        if status == 200:
            raise BadAnswer(f"answered the call with content type {kind or 'none'!r}")
        raise BadAnswer(f"answered the call with HTTP {status}")

    async def _body(self, response: Response) -> bytes:
        try:
            return await response.read(MESSAGE_LIMIT)
        except HttpFailure as failure:
            raise BadAnswer(str(failure)) from None

    async def _stream(self, response: Response, call: _Call) -> dict[str, Any]:
        """The answer on an SSE stream (resumed if it ends early after events with ids)."""
        for attempt in range(_RESUMES + 1):
            chunks = response.stream()
            answer = await self._events(chunks, call)
            if answer is not None:
                self._drain(chunks)
                return answer
            if call.last_event is None or attempt == _RESUMES:
                break
            await asyncio.sleep(min(call.retry, _RETRY_MAX))
            response = call.response = await self._resume(call)
        raise BadAnswer("closed the call's stream before answering")

    async def _events(self, chunks: AsyncGenerator[bytes, None], call: _Call) -> dict[str, Any] | None:
        """Handle the stream's events until the call's answer (None: the stream ended first)."""
        parser = SseParser(MESSAGE_LIMIT)
        try:
            async for chunk in chunks:
                for event in parser.feed(chunk):
                    call.last_event = event.id or call.last_event
                    if event.retry is not None:
                        call.retry = event.retry / 1000
                    if not event.data or event.event != "message":
                        continue  # a priming event (an id to resume from), or one MCP has no use for
                    message = parsed(event.data.encode())
                    if message is None:
                        raise BadAnswer(f"sent an event that is not JSON-RPC: {event.data[:120]!r}")
                    answer = await self._message(message, call)
                    if answer is not None:
                        return answer
        except HttpFailure as failure:
            if call.last_event is None:
                raise BadAnswer(f"broke the call's stream: {failure}") from None
        except ValueError as exc:  # (an event over the limit)
            raise BadAnswer(str(exc)) from None
        return None

    async def _message(self, message: dict[str, Any], call: _Call) -> dict[str, Any] | None:
        """One message of the stream: the call's answer (returned), or relayed."""
        method = message.get("method")
        if method is None:
            if message.get("id") == call.rid:
                return _result(message)
            return None  # (an answer to nothing of this call)
        if "id" in message:
            await self._reply(message)
        elif method == "notifications/progress":
            await self._progressed(message.get("params") or {}, call)
        elif method == "notifications/message":
            if isinstance(message.get("params"), dict):
                await self._relayed.on_log(message["params"])
        else:
            try:
                notification = types.server_notification_adapter.validate_python(message, by_name=False)
            except ValueError:
                return None  # (a notification the SDK would drop too)
            await self._relayed.on_notification(notification)
        return None

    async def _progressed(self, params: dict[str, Any], call: _Call) -> None:
        if call.progress is not None and params.get("progressToken") == call.rid:
            await deliver_progress(call.progress, params)

    async def _reply(self, request: dict[str, Any]) -> None:
        """Answer a request of the server (sampling, elicitation, ping) through the relay, POSTed
        back on the session (the server waits for it before it goes on with the call)."""
        answer = await self._relayed.answer_request(request)
        message = {"jsonrpc": "2.0", "id": request["id"], **answer}
        await self._post_quietly(message)

    async def _post_quietly(self, message: dict[str, Any]) -> None:
        """POST a message that expects no answer (202): a failure is logged, not raised."""
        try:
            response = await self._pool.post(encoded(message), self._headers("", {}))
            await response.read(MESSAGE_LIMIT)
        except HttpFailure as failure:
            log.debug("message to the server not delivered: %s", failure)

    async def _resume(self, call: _Call) -> Response:
        headers = {**self._headers("", {}), "Last-Event-ID": call.last_event or ""}
        try:
            response = await self._pool.get(headers)
        except HttpFailure as failure:
            raise BadAnswer(f"broke the call's stream and could not resume it: {failure}") from None
        if response.status != 200 or response.content_type != "text/event-stream":
            response.close()
            raise BadAnswer(f"broke the call's stream and refused to resume it (HTTP {response.status})")
        return response

    def _drain(self, chunks: AsyncGenerator[bytes, None]) -> None:
        """Read what follows the answer to the stream's end (the server closes it), so that the
        connection is kept; a stream still open after `_DRAIN` seconds is dropped."""

        async def drain() -> None:
            try:
                async with asyncio.timeout(_DRAIN):
                    async for _ in chunks:
                        pass
            except (TimeoutError, HttpFailure):
                pass
            finally:
                await chunks.aclose()  # (the connection closes if not read to its end)

        self._spawn(drain())

    def _cancel(self, rid: str) -> None:
        """Tell a 2025-11-25 server to stop working on `rid` (the caller gave up)."""
        if self.envelope is not None or self.closed:
            return  # 2026-07-28: the closed connection says it
        note = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": rid}}
        self._spawn(self._post_quietly(note))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """The connection ended: no more calls; idle connections closed, background work stopped
        (a twin's on its own loop)."""
        self.closed = True
        self._pool.close()
        for task in list(self._tasks):
            task.cancel()
        for loop, twin in list(self._twins.items()):
            twin.closed = True
            with contextlib.suppress(RuntimeError):  # (that loop is closed: nothing left to close)
                loop.call_soon_threadsafe(twin.close)


async def _hand_over(
    on_notification: Callable[[Any], Awaitable[None]], home: asyncio.AbstractEventLoop, notification: Any
) -> None:
    """A notification a twin's stream carried, handled on the server's loop `home` (in order)."""
    handled = on_notification(notification)
    try:
        asyncio.run_coroutine_threadsafe(handled, home)  # type: ignore[arg-type]
    except RuntimeError:  # the server's loop is closed
        if asyncio.iscoroutine(handled):
            handled.close()


def _json_answer(message: dict[str, Any] | None, rid: str, status: int) -> dict[str, Any]:
    """The `result` of the JSON body `message` answering request `rid` with HTTP `status` (an error
    answer may have a null id: the server could not read the request's).

    Raises:
        ErrorAnswer: a JSON-RPC error.
        BadAnswer: not an answer to `rid`.
    """
    if message is None or ("result" not in message and "error" not in message):
        if status == 200:
            raise BadAnswer("answered the call with a body that is not a JSON-RPC answer")
        raise BadAnswer(f"answered the call with HTTP {status}")
    answered = message.get("id")
    if answered != rid and not (answered is None and "error" in message):
        raise BadAnswer(f"answered the call with the answer to another request (id {answered!r})")
    return _result(message)


def _result(message: dict[str, Any]) -> dict[str, Any]:
    """The `result` of an answer.

    Raises:
        ErrorAnswer: it is an error answer.
        BadAnswer: it has neither a result object nor an error.
    """
    error = message.get("error")
    if isinstance(error, dict):
        try:
            code = int(error.get("code", types.INTERNAL_ERROR))
        except (TypeError, ValueError):
            code = types.INTERNAL_ERROR
        raise ErrorAnswer(code, str(error.get("message", "")), error.get("data"))
    result = message.get("result")
    if not isinstance(result, dict):
        raise BadAnswer("answered the call with neither a result nor an error")
    return result


Channel = RawChannel | HttpChannel  # the hub's own channel to a server, whichever transport
