"""`Subscriptions`: what the hub asked one server to send on its own, kept across its restarts: log
messages from a level up, and the updates of the resources it subscribed to.

The hub's facade decides what to ask (it counts its clients' sessions); a server only does what it
is told, idempotently, and does it again on each new connection (a restart, an on_demand wake):

- **Log level.** On a handshake-era (2025-11-25) connection whose server declares `logging`, the
  level is sent as `logging/setLevel`, now if it runs and at each start; a stopped server only
  remembers it (it is never woken for it). `None` sends nothing: the server keeps its default
  from its next start on. On a 2026-07-28 connection `logging/setLevel` is deprecated (SEP-2577):
  a server logs only within a request that opts in with the `_meta` key
  `io.modelcontextprotocol/logLevel`, at that level and up. The SDK client stamps one opt-in,
  fixed when it connects, on every request (the hub's `Client(log_level="debug")`), and the hub's
  own `tools/call` channel stamps the same; the hub keeps opting in at `debug` whatever the
  level, so every message at or above any level reaches the hub, and the facade filters per
  session. There, the level is only remembered (for a restart that lands on the handshake era).
- **Resource subscriptions.** A set of the server's own URIs. On a handshake-era connection each
  is sent as `resources/subscribe` (`resources/unsubscribe` when dropped) and sent again at each
  start; updates come as `notifications/resources/updated` (`Discovery.on_message`). On a
  2026-07-28 connection, a `subscriptions/listen` stream of its own carries the URIs: opened at
  each start, and re-opened whenever the set changes (the new stream is acknowledged before the
  old one closes, so no update falls between them). Either way each update reaches the client's
  message handler (`Discovery.on_message`: the SDK hands it a listen stream's events too) and
  goes up as a `ResourceUpdated` event. A server with subscriptions is not stopped for idleness: its updates
  only come while it runs.

Every method runs on the server's loop (thread `server-<tenant>-<name>`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, get_args

import mcp.types as types
from mcp import Client
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

from actors.describe import describe
from actors.models import ResourceUpdated, ServerState
from hub.errors import BadRequest, UpstreamError

if TYPE_CHECKING:
    from actors.server import ServerSupervisor

log = logging.getLogger("actors.server")  # the server's own logger: log lines keep the name filtered on

LOG_LEVELS: tuple[str, ...] = get_args(types.LoggingLevel)  # from debug up to emergency


class Subscriptions:
    """The standing requests of the hub to one server: its log level and its resource subscriptions.

    Args:
        supervisor: the server's supervisor.
        log_level: the level its tenant remembers for it (None: the server's default).
    """

    def __init__(self, supervisor: ServerSupervisor, log_level: str | None = None) -> None:
        self._supervisor = supervisor
        self.log_level = log_level
        self.uris: set[str] = set()  # the server's own URIs the hub subscribed to
        self._stream: asyncio.Task[None] | None = None  # the 2026-07-28 listen stream of `uris`
        self._relisten = asyncio.Lock()  # one re-open at a time (a lock binds to the loop that uses it)

    # ------------------------------------------------------------------ what the server declares

    def declares(self, client: Client, capability: str) -> bool:
        """Whether the server declares `capability` (`logging`, `completions`, `subscribe`: the
        `resources.subscribe` flag). A pinned 2026-07-28 connection knows no capabilities: True."""
        if self._supervisor.config.protocol in MODERN_PROTOCOL_VERSIONS:
            return True
        caps = client.server_capabilities
        if capability == "subscribe":
            return bool(caps.resources and caps.resources.subscribe)
        return getattr(caps, capability, None) is not None

    def _modern(self, client: Client) -> bool:
        return client.protocol_version in MODERN_PROTOCOL_VERSIONS

    # ------------------------------------------------------------------ asks of the hub

    async def set_log_level(self, level: str | None) -> None:
        """Remember `level` and send it to the server if it runs on a handshake-era connection and
        declares `logging`. A failure is logged, never raised: the level stays remembered."""
        if level is not None and level not in LOG_LEVELS:
            raise BadRequest(f"unknown log level {level!r}: one of {', '.join(LOG_LEVELS)}")
        self.log_level = level
        client = self._supervisor.client  # (set once connected: before `running`, see `connected`)
        if client is not None and not self._supervisor.stopping:
            await self._send_level(client)

    async def subscribe(self, uri: str) -> None:
        """Subscribe to the updates of the server's resource `uri` (idempotent; on a running server).

        Raises:
            BadRequest: the server does not declare `resources.subscribe`.
            NotRunning, UpstreamError, CallTimeout: as the server answered.
        """
        supervisor = self._supervisor
        await supervisor.calls.guarded("resources/subscribe", lambda client: self._subscribe(client, uri))

    async def unsubscribe(self, uri: str) -> None:
        """Drop the subscription to `uri` (idempotent). A stopped server only forgets it."""
        if uri not in self.uris:
            return
        supervisor = self._supervisor
        if (
            supervisor.client is None
            or supervisor.status.state is not ServerState.RUNNING
            or supervisor.stopping
        ):
            self.uris.discard(uri)  # (a stopping one does not start again with it)
            return
        await supervisor.calls.guarded("resources/unsubscribe", lambda client: self._unsubscribe(client, uri))

    async def _subscribe(self, client: Client, uri: str) -> None:
        name = self._supervisor.config.name
        if not self.declares(client, "subscribe"):
            raise BadRequest(f"server '{name}' does not support resource subscriptions")
        if uri in self.uris:
            return
        self.uris.add(uri)
        try:
            if self._modern(client):
                await self._listen(client)
            else:
                await _request(client, types.SubscribeRequest(params=types.SubscribeRequestParams(uri=uri)))
        except BaseException:
            self.uris.discard(uri)
            raise

    async def _unsubscribe(self, client: Client, uri: str) -> None:
        self.uris.discard(uri)
        if self._modern(client):
            await self._listen(client)
        else:
            await _request(client, types.UnsubscribeRequest(params=types.UnsubscribeRequestParams(uri=uri)))

    # ------------------------------------------------------------------ each connection

    async def connected(self, client: Client) -> None:
        """A new connection is up (before the server is `running`): apply the log level and the
        subscriptions again. Failures are logged: a server that refuses them still runs."""
        try:
            await self._send_level(client)
            if self._modern(client):
                await self._listen(client)
            else:
                for uri in sorted(self.uris):
                    await _request(
                        client, types.SubscribeRequest(params=types.SubscribeRequestParams(uri=uri))
                    )
        except Exception as exc:
            self._warn("could not subscribe again", exc)

    def connection_ended(self) -> None:
        """The connection is gone: so is its listen stream."""
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None

    def updated(self, uri: str) -> None:
        """The server said resource `uri` changed: up as a `ResourceUpdated`."""
        supervisor = self._supervisor
        supervisor.tell(ResourceUpdated(supervisor.tenant, supervisor.config.name, supervisor.session, uri))

    async def _send_level(self, client: Client) -> None:
        level = self.log_level
        if level is None or self._modern(client) or not self.declares(client, "logging"):
            return
        request = types.SetLevelRequest(params=types.SetLevelRequestParams(level=level))  # type: ignore[arg-type]
        try:
            async with asyncio.timeout(self._supervisor.config.call_timeout):
                await _request(client, request)
        except Exception as exc:
            self._warn(f"could not set the log level to {level}", exc)

    async def _listen(self, client: Client) -> None:
        """(2026-07-28) Open a listen stream of the current URIs (none: close it), acknowledged
        before the previous stream closes.

        Raises:
            UpstreamError: the server refused the stream or did not acknowledge it.
        """
        async with self._relisten:
            old = self._stream
            if self.uris:
                acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                stream = asyncio.ensure_future(self._stream_of(client, sorted(self.uris), acked))
                try:
                    await asyncio.wait({acked, stream}, return_when=asyncio.FIRST_COMPLETED)
                    if not acked.done() or acked.exception() is not None:
                        raise _refused(self._supervisor.config.name, acked)
                except BaseException:  # (refused, or the call timed out): the old stream stays
                    stream.cancel()
                    raise
                self._stream = stream
            else:
                self._stream = None
            if old is not None:
                old.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await old

    async def _stream_of(self, client: Client, uris: Iterable[str], acked: asyncio.Future[None]) -> None:
        """One listen stream: acknowledged (`acked`), then open until cancelled or lost. Its events
        are only drained: the SDK also hands each to the client's message handler, which tells
        them up (`Discovery.on_message`), as in the handshake era."""
        try:
            async with client.listen(resource_subscriptions=list(uris)) as stream:
                acked.set_result(None)
                async for _event in stream:
                    pass
        except Exception as exc:
            if not acked.done():
                acked.set_exception(exc)
            elif self._stream is asyncio.current_task() and self._supervisor.client is not None:
                self._warn("resource subscriptions lost until the next start", exc)

    def _warn(self, what: str, exc: BaseException) -> None:
        supervisor = self._supervisor
        log.warning("%s/%s: %s: %s", supervisor.tenant, supervisor.config.name, what, describe(exc))


async def _request(client: Client, request: Any) -> None:
    """Send `request` (answered by an empty result) through the SDK session: the client's own
    methods for these are deprecated (SEP-2577) and warn at each call."""
    await client.session.send_request(request, types.EmptyResult)


def _refused(name: str, acked: asyncio.Future[None]) -> Exception:
    error = acked.exception() if acked.done() else None
    why = describe(error) if error is not None else "no acknowledgment"
    return UpstreamError(f"server '{name}' refused the resource subscriptions: {why}")
