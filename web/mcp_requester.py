"""How a called server reaches the facade client whose call it serves: progress, log messages,
and server requests (sampling, elicitation), whose answers come back to the server.

A server reaches its caller through a `Requester` (`actors.server`), whose methods run on the
server's loop and hand their work over to the serving loop. For a call a lane serves
(`web.mcp_calls`) that is a `CallRequester`, which writes on the call's `CallStream`; `Asks` holds
the server requests sent mid-call until the client answers them through the lane (ids `hub-r-N`),
on the serving loop; a 2026-07-28 client cannot be sent requests, so its call is parked instead
(`web.mcp_input`). For a call the SDK serves it is a `ClientOfCall`, which goes through the SDK's
session.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING, Any

import mcp.types as types
from mcp.shared.exceptions import MCPError, NoBackChannelError

from web.mcp_input import Parking

if TYPE_CHECKING:
    from web.facade import Ctx
    from web.mcp_calls import CallRequest, CallStream
    from web.mcp_input import ParkedCall


class Asks:
    """Server requests a lane sent its clients mid-call, waiting for their answers, and its
    2026-07-28 calls parked on them (`parked`) (serving loop)."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[str | None, asyncio.Future[dict[str, Any]]]] = {}
        self._ids = itertools.count(1)
        self.parked = Parking()

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
    hand their work to the serving loop. A 2026-07-28 call's `stream` and `call` are those of its
    latest round (`web.mcp_input`)."""

    def __init__(
        self, stream: CallStream, call: CallRequest, asks: Asks, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.stream = stream
        self.call = call
        self.asks = asks
        self.loop = loop
        self.parked: ParkedCall | None = None  # a 2026-07-28 call's rounds
        # Whether its client takes URL-mode elicitations (a 2025-11-25 session that declared them).
        self.url_elicitation = call.url_elicitation and not call.modern

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
        if self.call.modern:  # a 2026-07-28 client cannot be asked mid-call: the call is parked
            if self.parked is None:
                raise NoBackChannelError(request.method)
            parked = self.parked.ask(request, result_type)
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(parked, self.loop))
        asked = self.asks.ask(self.stream, self.call.owner, request)
        raw = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(asked, self.loop))
        return result_type.model_validate(raw, by_name=False)


class ClientOfCall:
    """The facade session a tool call the SDK serves came from, as the server's loop sees it (the
    `Requester` of `actors.server`).

    Each method runs on the server's loop and hands its work to the facade's loop. Sampling and
    elicitation reach 2025-11-25 sessions; a 2026-07-28 session cannot be asked mid-call this way,
    so the server gets an error it can handle.
    """

    def __init__(self, ctx: Ctx, loop: asyncio.AbstractEventLoop, levels: frozenset[str]) -> None:
        self.ctx = ctx
        self.loop = loop
        self.levels = levels  # the log levels its session asked for (`web.facade_logging`)

    async def _on_facade_loop(self, coro: Any) -> Any:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def progress(self, value: float, total: float | None, message: str | None) -> None:
        await self._on_facade_loop(self.ctx.session.report_progress(value, total, message))

    async def ask(self, request: Any, result_type: type[Any]) -> Any:
        return await self._on_facade_loop(self.ctx.session.send_request(request, result_type))

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        if params.level not in self.levels:
            return
        await self._on_facade_loop(
            self.ctx.session.send_log_message(
                params.level, params.data, logger=params.logger, related_request_id=self.ctx.request_id
            )
        )
