"""The calls a client makes to one server (tools, resources, prompts): `ServerEndpoint`, the
thread-safe way in to the server's loop that routes hold, and `ServerCalls`, the calls guarded.

Each call is a call in flight: bounded by `call_timeout`, failed at once with an upstream error
when the server crashes or stops, its errors mapped onto the hub's (`hub.errors`). A stdio or
Streamable HTTP server's tools are called through the hub's own channel (`actors.upstream.rawcall`,
`actors.upstream.httpcall`), an SSE server's through the SDK client.

A Streamable HTTP server's tool call runs on the caller's own loop (`ServerCalls.here`), without
the hop to the server's loop and back (issue 24), kept and bounded as the others are.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Awaitable, Callable, Collection, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import mcp.types as types
from mcp import Client, MCPError

from actors.describe import describe
from actors.models import ServerState, ToolResult
from actors.relay import Requester
from actors.upstream.httpcall import BadAnswer, Channel, HttpChannel, SessionExpired, Unreachable
from actors.upstream.rawcall import ErrorAnswer
from hub import handoff, jsontext
from hub.errors import (
    BadRequest,
    CallTimeout,
    HubError,
    NotRunning,
    ServerStopped,
    ToolPendingApproval,
    UpstreamError,
)

if TYPE_CHECKING:
    from actors.server import ServerSupervisor

T = TypeVar("T")

INPUT_ROUNDS = 16  # the most `input_required` rounds one call may take (the SDK client's default is 8)


class ServerEndpoint:
    """The thread-safe way in to a server's loop; held by routes.

    Every method may be called from any thread; each returns a `concurrent.futures.Future` whose
    work runs on the server's loop.
    """

    def __init__(self, supervisor: ServerSupervisor, loop: asyncio.AbstractEventLoop) -> None:
        self._supervisor = supervisor
        self._loop = loop

    @property
    def running(self) -> bool:
        """Whether the server runs and takes calls now (a snapshot: any thread)."""
        supervisor = self._supervisor
        return supervisor.status.state is ServerState.RUNNING and not supervisor.stopping

    def submit(self, coro: Awaitable[T]) -> concurrent.futures.Future[T]:
        """Run `coro` on the server's loop.

        Raises:
            NotRunning: the server's actor has stopped (a session instance that was removed).
        """
        try:
            return asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        except RuntimeError:  # the loop is closed
            if asyncio.iscoroutine(coro):
                coro.close()
            raise NotRunning(f"server '{self._supervisor.config.name}' is gone") from None

    def call_tool(
        self, name: str, arguments: dict[str, Any], requester: Requester | None = None
    ) -> concurrent.futures.Future[ToolResult]:
        """Call the server's tool `name` (its own name, not the catalog id)."""
        return self.submit(self._supervisor.calls.call_tool(name, arguments, requester))

    def call_tool_here(
        self, name: str, arguments: dict[str, Any], requester: Requester | None = None
    ) -> Coroutine[Any, Any, ToolResult] | None:
        """`call_tool` run on the calling loop itself (`ServerCalls.here`), if the server can take
        such a call now; else None (then `call_tool`). On a loop that serves clients for as long
        as the hub runs (`hub.loops.serve_calls_here`), never the server's."""
        here = self._supervisor.calls.here(name, arguments, requester, self._loop)
        return None if here is None else self._here_or_there(here, name, arguments, requester)

    async def _here_or_there(
        self,
        here: Awaitable[ToolResult | None],
        name: str,
        arguments: dict[str, Any],
        requester: Requester | None,
    ) -> ToolResult:
        """The call on this loop, or, if it needs the server's loop after all (None: its session
        ended, its channel closed), once more there."""
        result = await here
        if result is None:
            result = await handoff.landed(self.call_tool(name, arguments, requester))
        return result

    def read_resource(self, uri: str) -> concurrent.futures.Future[dict[str, Any]]:
        """Read a resource of the server; the result is the MCP `ReadResourceResult` as JSON."""
        return self.submit(self._supervisor.calls.request("read_resource", uri))

    def get_prompt(self, name: str, arguments: dict[str, str]) -> concurrent.futures.Future[dict[str, Any]]:
        """Get a prompt of the server; the result is the MCP `GetPromptResult` as JSON."""
        return self.submit(self._supervisor.calls.request("get_prompt", name, arguments))

    def complete(self, params: types.CompleteRequestParams) -> concurrent.futures.Future[dict[str, Any]]:
        """Ask the server for completions; the result is the MCP `CompleteResult` as JSON."""
        return self.submit(self._supervisor.calls.complete(params))

    def subscribe(self, uri: str) -> concurrent.futures.Future[None]:
        """Subscribe to the updates of the server's resource `uri` (`actors.subscriptions`)."""
        return self.submit(self._supervisor.subscriptions.subscribe(uri))

    def unsubscribe(self, uri: str) -> concurrent.futures.Future[None]:
        """Drop the subscription to the server's resource `uri` (`actors.subscriptions`)."""
        return self.submit(self._supervisor.subscriptions.unsubscribe(uri))

    def rescreen(self) -> concurrent.futures.Future[None]:
        """Screen the server's last catalog against its pins again (an admin changed them)."""

        async def rescreen() -> None:
            self._supervisor.listing.rescreen()

        return self.submit(rescreen())

    def settled(self, grace: float) -> concurrent.futures.Future[bool]:
        """Wait up to `grace` seconds for the server's calls in flight to end (a handover drains it
        this way before stopping it); whether they did."""
        return self.submit(self._supervisor.calls.settled(grace))


def pending_approval(server: str, name: str) -> ToolPendingApproval:
    """The error of a call of a held tool (`hub.pins`)."""
    return ToolPendingApproval(
        f"tool '{name}' of server '{server}' changed since it was approved; an admin must approve the change"
    )


def _aborted(cancelled: asyncio.CancelledError) -> UpstreamError:
    """The error of a call `abort_all` cancelled: its reason, as `ServerStopped` for a stop."""
    reason = str(cancelled.args[0]) if cancelled.args else "server stopped"
    return (ServerStopped if reason.endswith(" is stopping") else UpstreamError)(reason)


class ServerCalls:
    """The calls in flight to one server.

    Every method runs on the server's loop (thread `server-<tenant>-<name>`).
    """

    def __init__(self, supervisor: ServerSupervisor) -> None:
        self._supervisor = supervisor
        self._inflight: set[asyncio.Task[Any]] = set()
        self._aborted: set[asyncio.Task[Any]] = set()
        self._quiet = asyncio.Event()  # set while no call is in flight (on this loop)
        self._quiet.set()
        self._elsewhere: set[asyncio.Task[Any]] = set()  # calls in flight on callers' loops (`here`)
        self._watchers: list[asyncio.Future[None]] = []  # `settled` waiting for those

    @property
    def busy(self) -> bool:
        """Whether a call is in flight."""
        return bool(self._inflight or self._elsewhere)

    async def settled(self, grace: float) -> bool:
        """Wait up to `grace` seconds until no call is in flight; whether it came to that."""
        try:
            async with asyncio.timeout(grace):
                while self._inflight or self._elsewhere:
                    await self._quiet.wait()
                    if self._elsewhere:
                        woken = asyncio.get_running_loop().create_future()
                        self._watchers.append(woken)
                        try:
                            if self._elsewhere:
                                await woken
                        finally:
                            self._watchers.remove(woken)
        except TimeoutError:
            return False
        return True

    def abort_all(self, reason: str, spare: Collection[asyncio.Task[Any]] = ()) -> None:
        """Fail every call in flight at once (but those in `spare`) with an upstream error naming
        `reason` (a call on a caller's loop: there, if it is still in flight when that loop gets to it)."""
        for task in list(self._inflight):
            if task in spare:
                continue
            self._aborted.add(task)
            task.cancel(reason)
        for task in list(self._elsewhere):
            if task not in spare:
                with contextlib.suppress(RuntimeError):  # (its loop is closed: the call is over)
                    task.get_loop().call_soon_threadsafe(self._abort_here, task, reason)

    def _abort_here(self, task: asyncio.Task[Any], reason: str) -> None:
        """`abort_all` for a call on a caller's loop (that loop)."""
        if task in self._elsewhere:
            self._aborted.add(task)
            task.cancel(reason)

    async def guarded(
        self, what: str, run: Callable[[Client], Awaitable[T]], requester: Requester | None = None
    ) -> T:
        """Run `run(client)` as a call in flight: bounded by `call_timeout`, failed at once on a crash."""
        supervisor = self._supervisor
        config = supervisor.config
        await supervisor.renewal.settled(config.call_timeout)  # (a session being renewed: its calls wait)
        client = supervisor.client
        if client is None or supervisor.status.state is not ServerState.RUNNING:
            raise NotRunning(f"server '{config.name}' is {supervisor.status.state.value}")
        if supervisor.stopping:
            raise NotRunning(f"server '{config.name}' is stopping")
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        self._quiet.clear()
        if requester is not None:
            supervisor.relay.add(task, requester)
        try:
            async with asyncio.timeout(config.call_timeout):
                return await run(client)
        except TimeoutError:
            raise CallTimeout(
                f"{what} on server '{config.name}' timed out after {config.call_timeout:g} s"
            ) from None
        except asyncio.CancelledError as cancelled:
            if task in self._aborted:
                raise _aborted(cancelled) from None
            raise
        except MCPError as exc:
            raise await self._mcp_error(exc) from None
        except HubError:
            raise
        except Exception as exc:  # a response that broke the protocol (validation), a transport error
            if config.transport != "stdio" and not isinstance(exc, ValueError):
                supervisor.mark_lost(f"transport error: {describe(exc)}")
            raise UpstreamError(f"server '{config.name}' failed: {describe(exc)}") from None
        finally:
            self._inflight.discard(task)
            if not self._inflight:
                self._quiet.set()
            self._aborted.discard(task)
            supervisor.relay.discard(task)
            supervisor.idle.touch()

    async def _mcp_error(self, exc: MCPError) -> HubError:
        """The hub's error for an MCP error a call met: a closed connection (a crash), bad arguments,
        or the server's error answer."""
        supervisor = self._supervisor
        name = supervisor.config.name
        if exc.code == types.CONNECTION_CLOSED and not isinstance(exc, ErrorAnswer):
            if supervisor.config.transport != "stdio":
                supervisor.mark_lost("connection closed")
            await supervisor.await_exit()
            reason = supervisor.lost_reason or "connection closed"
            return UpstreamError(f"server '{name}' crashed during the call: {reason}")
        return self._answered_error(exc)

    def _answered_error(self, exc: MCPError) -> HubError:
        """The hub's error for the server's error answer (bad arguments, or any other)."""
        name = self._supervisor.config.name
        if exc.code == types.INVALID_PARAMS:
            return BadRequest(f"server '{name}' rejected the arguments: {exc.message}")
        return UpstreamError(f"server '{name}' answered with an error: {exc.message}")

    async def call_tool(
        self, name: str, arguments: dict[str, Any], requester: Requester | None = None
    ) -> ToolResult:
        """Call tool `name` of this server and return its result in the REST shape.

        A stdio or Streamable HTTP server is called through the hub's own channel; an SSE one through
        the SDK client. A tool held by pinning (`hub.pins`) is refused here too, whatever route the
        call took (a session's instance may show a catalog its server's listing does not).
        """
        if name in self._supervisor.listing.catalog.held:
            raise pending_approval(self._supervisor.config.name, name)
        progress = requester.progress if requester is not None else None
        channel = self._supervisor.channel
        if channel is not None:
            params = {"name": name, "arguments": arguments}
            raw = await self.guarded(
                f"tool '{name}'", lambda c: self._channel_call(channel, params, progress), requester
            )
            return self._raw_tool_result(name, raw)
        jsontext.check(arguments)  # (BadRequest: what the SDK could not write must not reach it)
        result = await self.guarded(
            f"tool '{name}'",
            lambda c: c.call_tool(name, arguments, progress_callback=progress),  # type: ignore[arg-type]
            requester,
        )
        return ToolResult(
            tool=f"{self._supervisor.config.name}.{name}",
            is_error=bool(result.is_error),
            content=tuple(
                b.model_dump(mode="json", by_alias=True, exclude_none=True) for b in result.content
            ),
            structured_content=result.structured_content,
        )

    async def _channel_call(self, channel: Channel, params: dict[str, Any], progress: Any) -> dict[str, Any]:
        """A `tools/call` on the hub's own channel (`_raw_rounds`); on a Streamable HTTP server, a
        session the server ended is renewed and the call sent once more (`actors.renewal`)."""
        name = self._supervisor.config.name
        renewal = self._supervisor.renewal
        try:
            with renewal.riding():
                try:
                    return await self._raw_rounds(channel, params, progress)
                except SessionExpired:
                    renewed = await renewal.renew(channel)
                    return await self._raw_rounds(renewed, params, progress)
        except SessionExpired:
            raise UpstreamError(f"server '{name}' ended its new session at once (HTTP 404)") from None
        except BadAnswer as exc:
            raise UpstreamError(f"server '{name}' {exc}") from None
        except Unreachable as exc:
            self._supervisor.mark_lost(f"unreachable: {exc}")
            raise UpstreamError(f"server '{name}' is unreachable: {exc}") from None

    def here(
        self,
        name: str,
        arguments: dict[str, Any],
        requester: Requester | None,
        home: asyncio.AbstractEventLoop,
    ) -> Coroutine[Any, Any, ToolResult | None] | None:
        """A `tools/call` to run on the caller's loop (not `home`, the server's), if the server can
        take one there now: it runs, on the hub's own channel to a Streamable HTTP server, with no
        renewal of its session under way, and `name` is not held; else None. Any thread (what it
        reads are snapshots)."""
        supervisor = self._supervisor
        channel = supervisor.channel
        if (
            not isinstance(channel, HttpChannel)
            or channel.closed
            or supervisor.status.state is not ServerState.RUNNING
            or supervisor.stopping
            or not supervisor.renewal.quiet
            or name in supervisor.listing.catalog.held
        ):
            return None
        return self._here(channel.here(home), name, arguments, requester, home)

    async def _here(
        self,
        channel: HttpChannel,
        name: str,
        arguments: dict[str, Any],
        requester: Requester | None,
        home: asyncio.AbstractEventLoop,
    ) -> ToolResult | None:
        """`call_tool` on the caller's loop (`here`), as `guarded` bounds and maps a call; None if
        it must be made on the server's loop after all: the server ended the session (renewed
        there, the call sent once more), or the channel closed before the call went out."""
        supervisor = self._supervisor
        config = supervisor.config
        task = asyncio.current_task()
        assert task is not None
        self._elsewhere.add(task)
        if requester is not None:
            supervisor.relay.add(task, requester)
        params = {"name": name, "arguments": arguments}
        progress = requester.progress if requester is not None else None
        try:
            with supervisor.renewal.riding():
                async with asyncio.timeout(config.call_timeout):
                    raw = await self._raw_rounds(channel, params, progress)
        except SessionExpired:
            return None
        except TimeoutError:
            raise CallTimeout(
                f"tool '{name}' on server '{config.name}' timed out after {config.call_timeout:g} s"
            ) from None
        except asyncio.CancelledError as cancelled:
            if task not in self._aborted:
                raise
            task.uncancel()  # (the caller's task goes on, with the call's error)
            raise _aborted(cancelled) from None
        except MCPError as exc:
            if exc.code == types.CONNECTION_CLOSED and not isinstance(exc, ErrorAnswer):
                return None  # (closed before it went out: the server's loop says why)
            raise self._answered_error(exc) from None
        except HubError:
            raise
        except Exception as exc:  # a broken answer, no connection, a transport error
            raise self._failed_here(exc, home) from None
        finally:
            self._elsewhere.discard(task)
            self._aborted.discard(task)
            supervisor.relay.discard(task)
            if self._watchers:
                handoff.hand(home, self._wake_watchers)
            supervisor.idle.touched_elsewhere(home)
        return self._raw_tool_result(name, raw)

    def _failed_here(self, exc: Exception, home: asyncio.AbstractEventLoop) -> UpstreamError:
        """The error of a call on a caller's loop that failed below MCP (as `_channel_call` and
        `guarded` map it); a connection that is gone is marked lost on the server's loop."""
        name = self._supervisor.config.name
        if isinstance(exc, BadAnswer):
            return UpstreamError(f"server '{name}' {exc}")
        if isinstance(exc, Unreachable):
            handoff.hand(home, self._supervisor.mark_lost, f"unreachable: {exc}")
            return UpstreamError(f"server '{name}' is unreachable: {exc}")
        if not isinstance(exc, ValueError):
            handoff.hand(home, self._supervisor.mark_lost, f"transport error: {describe(exc)}")
        return UpstreamError(f"server '{name}' failed: {describe(exc)}")

    def _wake_watchers(self) -> None:
        """A call on a caller's loop ended: `settled` looks again (on this loop)."""
        for woken in (w for w in self._watchers if not w.done()):
            woken.set_result(None)

    async def _raw_rounds(self, channel: Channel, params: dict[str, Any], progress: Any) -> dict[str, Any]:
        """A `tools/call` on the hub's channel, through the rounds of a 2026-07-28 server that
        answers `input_required` (it asks for sampling or elicitation that way): each round's
        requests go to the caller (`RequestRelay.answer_inputs`), and the call is sent again with
        their answers and the server's `requestState`, until a result that is not `input_required`
        (at most `INPUT_ROUNDS` rounds)."""
        raw = await channel.request("tools/call", params, progress)
        for _ in range(INPUT_ROUNDS):
            if raw.get("resultType") != "input_required":
                return raw
            again = {
                **params,
                "inputResponses": await self._supervisor.relay.answer_inputs(raw.get("inputRequests")),
            }
            if raw.get("requestState") is not None:
                again["requestState"] = raw["requestState"]
            raw = await channel.request("tools/call", again, progress)
        if raw.get("resultType") != "input_required":
            return raw
        name = self._supervisor.config.name
        raise UpstreamError(f"server '{name}' asked for input more than {INPUT_ROUNDS} times in one call")

    def _raw_tool_result(self, name: str, raw: dict[str, Any]) -> ToolResult:
        """A `tools/call` result read off the wire, checked for the shape every client relies on."""
        where = f"server '{self._supervisor.config.name}' answered tool '{name}'"
        kind = raw.get("resultType", "complete")
        if kind != "complete":
            raise UpstreamError(f"{where} with a '{kind}' result, which the hub cannot relay")
        content = raw.get("content")
        if not isinstance(content, list) or not all(
            isinstance(block, dict) and isinstance(block.get("type"), str) for block in content
        ):
            raise UpstreamError(f"{where} without a valid 'content' list")
        structured = raw.get("structuredContent")
        if structured is not None and not isinstance(structured, dict):
            raise UpstreamError(f"{where} with 'structuredContent' that is not an object")
        return ToolResult(
            tool=f"{self._supervisor.config.name}.{name}",
            is_error=bool(raw.get("isError")),
            content=tuple(content),
            structured_content=structured,
        )

    async def complete(self, params: types.CompleteRequestParams) -> dict[str, Any]:
        """`completion/complete` (already validated), its result as JSON.

        Raises:
            BadRequest: the server does not declare `completions`.
        """
        supervisor = self._supervisor

        async def run(client: Client) -> types.CompleteResult:
            if not supervisor.subscriptions.declares(client, "completions"):
                raise BadRequest(f"server '{supervisor.config.name}' does not support completions")
            return await client.session.send_request(
                types.CompleteRequest(params=params), types.CompleteResult
            )

        result = await self.guarded("completion/complete", run)
        return result.model_dump(mode="json", by_alias=True, exclude_none=True)

    async def request(self, method: str, *args: Any) -> dict[str, Any]:
        """Another request of the client (`read_resource`, `get_prompt`), its result as JSON.

        Raises:
            BadRequest: an argument holds text that is not valid Unicode (the SDK could not write
                it: the request fails here, and the server is never blamed for it).
        """
        for arg in args:
            jsontext.check(arg, "arguments" if isinstance(arg, dict) else "the request")
        result = await self.guarded(method, lambda c: getattr(c, method)(*args))
        return result.model_dump(mode="json", by_alias=True, exclude_none=True)
