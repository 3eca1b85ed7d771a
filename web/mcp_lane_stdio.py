"""The `tools/call` lane of the stdio facade (`StdioLane`): which lines from the client it takes
before the SDK reads them (`web.mcp_calls` says why lanes exist and what they take).

One line in, lines out on the same writer as the SDK's (whole lines, written on one loop, never
interleave). A 2025-11-25 call is taken once the client's `initialize` has gone by; a 2026-07-28
one when it carries the era's envelope. `hub.stdio` wires the lane in front of the SDK's reader.

Thread: the serving loop (the main thread's).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from mcp.shared.inbound import InboundModernRoute, classify_inbound_request
from mcp_types import PROTOCOL_VERSION_META_KEY
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION

from hub.permissions import Who
from web.facade import Facade
from web.facade_scope import Scope
from web.mcp_calls import CallRequest, Calls, answer_call, cancel_call, parse_call, start_call
from web.mcp_requester import Asks
from web.mcp_wire import encode, parse_message, refusal


class StdioLane:
    """The `tools/call` path of the stdio facade: `take` sees each line from the client before the
    SDK does. Thread: the serving loop (the main thread's)."""

    def __init__(
        self, facade: Facade, scope: Scope, write: Callable[[bytes], None], caller: Who | None = None
    ) -> None:
        self.facade = facade
        self.scope = scope
        self.caller = caller  # who the client is (its key's, with `hub stdio --key`), for the audit log
        self.write = write
        self.asks = Asks()
        self.calls: Calls = {}
        self._tasks: set[asyncio.Future[None]] = set()
        self._version: str | None = None  # the 2025-11-25 era's version, once `initialize` went by
        self._serving = asyncio.Event()

    @property
    def serving(self) -> bool:
        """Whether the hub runs (set once it does). Until then the lane's calls wait for it: a
        2026-07-28 client has no handshake to wait for, so its first call may come first."""
        return self._serving.is_set()

    @serving.setter
    def serving(self, value: bool) -> None:
        if value:
            self._serving.set()

    def take(self, line: bytes) -> bool:
        """Serve `line` if it is this lane's, or refuse it (`refusal`); False: the SDK reads it."""
        if self._refused(line):
            return True
        if b'"tools/call"' not in line and b"hub-r-" not in line and b'"notifications/cancelled"' not in line:
            if self._version is None and b'"initialize"' in line:
                self._initializing(line)
            return False
        message = parse_message(line)
        if message is None:
            return False
        method = message.get("method")
        if method is None:
            return self.asks.answered(message, None)
        if method == "notifications/cancelled":
            return cancel_call(message, self.calls)
        call = self._call(message) if method == "tools/call" else None
        if call is None or call.id in self.calls:
            return False
        self._start(call)
        return True

    def _refused(self, line: bytes) -> bool:
        """Whether the edge refuses `line` (`refusal`); its answer, if owed, is written."""
        refused = refusal(line)
        if refused is None:
            return False
        answer, owed = refused
        if owed:
            self.write(encode(answer) + b"\n")
        return True

    def _call(self, message: dict[str, Any]) -> CallRequest | None:
        """A `tools/call` message as a call of its era, if this lane may take it."""
        params = message.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        if isinstance(meta, dict) and PROTOCOL_VERSION_META_KEY in meta:  # the 2026-07-28 envelope
            verdict = classify_inbound_request(message)
            if not isinstance(verdict, InboundModernRoute):
                return None
            return parse_call(message, verdict.protocol_version, modern=True)
        if self._version is not None:
            return parse_call(message, self._version, modern=False)
        return None

    def _start(self, call: CallRequest) -> None:
        """Start `call` (once the hub runs); its answer goes out as a line when it is done."""
        stream = _LineCall(self.write)
        if self.serving:
            started = start_call(
                self.facade, stream, call, self.asks, self.scope, self.caller, "stdio", self.calls
            )
            task = asyncio.ensure_future(answer_call(stream, call, started, self.calls))
        else:
            task = asyncio.ensure_future(self._when_serving(stream, call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _when_serving(self, stream: _LineCall, call: CallRequest) -> None:
        await self._serving.wait()
        scope, caller = self.scope, self.caller
        started = start_call(self.facade, stream, call, self.asks, scope, caller, "stdio", self.calls)
        await answer_call(stream, call, started, self.calls)

    def _initializing(self, line: bytes) -> None:
        """Note the version an `initialize` request will settle on (the SDK answers it)."""
        message = parse_message(line)
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
            self.write(encode(message) + b"\n")

    def answer(self, message: Mapping[str, Any], code: int | None = None) -> None:
        if not self.done:
            self.done = True
            self.write(encode(message) + b"\n")

    def cancelled(self) -> None:
        self.done = True  # a cancelled request gets no answer

    def close(self) -> None:
        self.done = True
