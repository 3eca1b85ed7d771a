"""The hot path of a tool call to a stdio server: the hub writes the request and reads its answer.

The SDK's `Client` owns the connection: the handshake, discovery, list_changed, the server's own
requests (sampling, elicitation) and its log messages. Only `tools/call` goes around it. The SDK
builds a request model, passes it through its dispatcher's memory streams, validates the answer
against the era's schema and the tool's output schema, and builds a result model that the hub
turns straight back into JSON. For an echo call that was about as much CPU as everything else the
hub does for the call. Here the request is one JSON line on the child's stdin, and its answer is
taken off stdout before the SDK parses it.

Ids and progress tokens are strings `hub-N`, which the SDK (integer ids) never uses, so the two
share one pipe without ever taking each other's answers. The server's log messages are taken here
too: they say nothing of the call they belong to, so they must reach the caller in the order they
came, before the answer that ends the call. Everything here runs on the server's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import mcp.types as types
from mcp import MCPError

import hub
from hub import jsontext
from hub.errors import BadRequest

log = logging.getLogger(__name__)

ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]

_MARK = b'"hub-'  # every answer and progress notification of this channel carries one of its ids
_LOG = b'"notifications/message"'

# What the hub's SDK client declares (it answers sampling and elicitation for the calling
# session); a 2026-07-28 request carries its client's envelope in `_meta`.
_CAPABILITIES: dict[str, Any] = {"sampling": {}, "elicitation": {"form": {}, "url": {}}}


class ErrorAnswer(MCPError):
    """The server answered with a JSON-RPC error (its code may even be the SDK's CONNECTION_CLOSED,
    -32000, the first code of the range servers may use: this one is an answer, not a closing)."""


def modern_envelope(protocol_version: str) -> dict[str, Any]:
    """The `_meta` keys every 2026-07-28 request carries (the era has no handshake)."""
    return {
        "io.modelcontextprotocol/protocolVersion": protocol_version,
        "io.modelcontextprotocol/clientInfo": {"name": "mcp-hub", "version": hub.__version__},
        "io.modelcontextprotocol/clientCapabilities": _CAPABILITIES,
        "io.modelcontextprotocol/logLevel": "debug",  # servers of this era log only when asked
    }


def encoded(message: dict[str, Any]) -> bytes:
    """`message` as one line of UTF-8 JSON.

    Raises:
        BadRequest: the caller's arguments cannot be written as JSON (`InvalidText`: a lone
            surrogate; else `NaN`, or what is no JSON type): the call fails, the server is fine.
    """
    try:
        return (
            json.dumps(message, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode() + b"\n"
        )
    except UnicodeEncodeError:
        jsontext.check(message["params"].get("arguments"), "arguments")
        jsontext.check(message["params"], "params")
        raise BadRequest("the request is not valid Unicode text") from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise BadRequest(f"the arguments cannot be sent as JSON: {exc}") from None


def parsed(line: bytes) -> dict[str, Any] | None:
    """`line` as a JSON object (a lone surrogate in it as U+FFFD, as UTF-8 can carry it), or None."""
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict):
        return None
    return jsontext.scrub(message) if jsontext.has_lone_escape(line) else message


async def deliver_progress(progress: ProgressFn, params: dict[str, Any]) -> None:
    """Hand a progress notification's `params` to the caller's `progress` (a malformed one is
    dropped, as the SDK drops it; a caller that went away costs the call nothing)."""
    try:
        value = float(params["progress"])
    except (KeyError, TypeError, ValueError):
        return
    try:
        await progress(value, params.get("total"), params.get("message"))
    except Exception as exc:  # the caller went away: the call itself still gets its answer
        log.debug("progress not delivered: %s", exc)


class RawChannel:
    """Requests written straight to a stdio server, answered without the SDK session.

    `write` puts one line on the child's stdin; `drain` waits for the pipe to take it. `take` is
    fed every stdout line first and keeps those that answer this channel.
    """

    def __init__(self, write: Callable[[bytes], None], drain: Callable[[], Awaitable[None]]) -> None:
        self._write = write
        self._drain = drain
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._progress: dict[str, ProgressFn] = {}
        self.envelope: dict[str, Any] | None = None  # set once the era is known (2026-07-28 only)
        self.on_log: Callable[[dict[str, Any]], Awaitable[None]] | None = None  # log messages, in order
        self.closed = False

    async def request(
        self, method: str, params: dict[str, Any], progress: ProgressFn | None = None
    ) -> dict[str, Any]:
        """Send a request and return its `result`.

        Raises:
            ErrorAnswer: the server answered with an error.
            MCPError: the connection closed (CONNECTION_CLOSED).
        """
        if self.closed:
            raise MCPError(types.CONNECTION_CLOSED, "Connection closed")
        rid = f"hub-{next(self._ids)}"
        meta = dict(self.envelope or ())
        if progress is not None:
            meta["progressToken"] = rid
            self._progress[rid] = progress
        if meta:
            params = {**params, "_meta": meta}
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            line = encoded({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
            try:
                self._write(line)
                await self._drain()
            except (BrokenPipeError, ConnectionResetError, RuntimeError):
                pass  # the child is gone: its stdout closing answers the future
            try:
                return await future
            except asyncio.CancelledError:
                self._cancel(rid)
                raise
        finally:
            self._pending.pop(rid, None)
            self._progress.pop(rid, None)

    def _cancel(self, rid: str) -> None:
        """Tell the server to stop working on `rid` (the caller gave up, or it timed out)."""
        if self.closed:
            return
        note = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": rid}}
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, RuntimeError):
            self._write(json.dumps(note).encode() + b"\n")

    async def take(self, line: bytes) -> bool:
        """True if `line` was this channel's (an answer, a progress or log notification), now handled.

        Every stdout line of the server comes here first: a line that names none of the
        channel's ids (nor a log message, when logs are taken) is refused before it is parsed.
        """
        if not ((_MARK in line and self._pending) or (_LOG in line and self.on_log is not None)):
            return False
        message = parsed(line)
        if message is None:
            return False
        rid = message.get("id")
        if isinstance(rid, str) and "method" not in message:
            return self._answered(rid, message)
        method = message.get("method")
        if method == "notifications/message":
            return await self._logged(message)
        if method == "notifications/progress":
            return await self._progressed(message.get("params") or {})
        return False

    def _answered(self, rid: str, message: dict[str, Any]) -> bool:
        """The answer `message` to request `rid`: its future gets the result, or the error."""
        future = self._pending.get(rid)
        if future is None:
            return rid.startswith("hub-")  # the answer to a call already given up
        if future.done():
            return True
        error = message.get("error")
        result = message.get("result")
        if isinstance(error, dict):
            code = int(error.get("code", types.INTERNAL_ERROR))
            future.set_exception(ErrorAnswer(code, str(error.get("message", "")), error.get("data")))
        elif isinstance(result, dict):
            future.set_result(result)
        else:
            future.set_exception(ValueError("an answer with neither a result nor an error"))
        return True

    async def _logged(self, message: dict[str, Any]) -> bool:
        """A log message of the server: to `on_log`, in the order it came (False: not taken)."""
        if self.on_log is None or "id" in message:
            return False
        params = message.get("params")
        if isinstance(params, dict):
            await self.on_log(params)
        return True

    async def _progressed(self, params: dict[str, Any]) -> bool:
        """A progress notification: to the caller whose request carries its token, if any."""
        progress = self._progress.get(params.get("progressToken"))  # type: ignore[arg-type]
        if progress is None:
            return False
        await deliver_progress(progress, params)
        return True

    def close(self) -> None:
        """The connection ended: every request in flight fails as the SDK's would."""
        self.closed = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(MCPError(types.CONNECTION_CLOSED, "Connection closed"))
