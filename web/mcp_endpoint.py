"""The MCP facade's endpoint over Streamable HTTP: the facade, the SDK's session manager, the
`tools/call` lane and the session limits, shared by every HTTP listener of the hub.

The manager runs inside `async with manager.run()` in one task of the web loop for the service's
whole life (`McpEndpoint.run`). When it discards a 2025-11-25 session (`DELETE`, its idle timeout,
shutdown), the session's lane calls are cancelled and its instances of per_session servers stop.
Thread: the web loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from mcp.server.transport_security import TransportSecuritySettings

from hub import seams
from hub.runtime import Hub
from web.cluster_sessions import SessionHomes
from web.facade import Facade
from web.facade_scope import Scope
from web.mcp_bridge import caller_of, key_of, scope_of, session_of
from web.mcp_lane_http import HttpLane
from web.mcp_sessions import SessionLimits

log = logging.getLogger("web.mcp_http")  # (its log lines kept their name when it moved here)


class McpEndpoint:
    """The facade and its session manager, shared by every HTTP listener. Thread: the web loop."""

    def __init__(self, hub_: Hub, host: str) -> None:
        self.hub = hub_
        self.facade = Facade(hub_, scope_of, caller_of, session_of, key_of)
        self._ending: set[asyncio.Future[int]] = set()
        gateway = hub_.config.gateway
        # Host and Origin are checked, exactly, for every route before a request gets here
        # (`web/edge.py`); the SDK's own check matched by prefix and only on loopback.
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
        self.manager = seams.EndAwareSessionManager(
            self._session_ended,
            app=self.facade.server,
            security_settings=security,
            session_idle_timeout=gateway.mcp_session_idle_timeout,
        )
        self.lane = HttpLane(self.facade, self.manager, security, gateway.mcp_keepalive_interval)
        self.limits = SessionLimits(gateway, self.manager.end)
        # A cluster's replica: where its sessions live, for requests of a session held elsewhere.
        self.homes = (
            SessionHomes(hub_.cluster, gateway.mcp_session_idle_timeout * 2)
            if hub_.cluster is not None
            else None
        )
        if self.homes is not None:  # (a 2026-07-28 call parked here: its retry may reach another)
            self.lane.asks.parked.on_park = self.homes.parked
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()

    def _session_ended(self, session_id: str) -> None:
        """A 2025-11-25 session ended (web loop): cancel its calls, stop its instances, off the loop."""
        self.lane.ended(session_id)
        self.limits.ended(session_id)
        if self.homes is not None:
            self.homes.ended(session_id)
        self.facade.session_ended(f"http:{session_id}")
        try:
            future = asyncio.get_running_loop().run_in_executor(
                None, self.hub.end_session, f"http:{session_id}"
            )
        except RuntimeError:  # shutting down (no executor, no loop): the hub stops every instance
            return
        self._ending.add(future)
        future.add_done_callback(self._ended)

    def _ended(self, future: asyncio.Future[int]) -> None:
        self._ending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("stopping the instances of an ended session failed", exc_info=future.exception())

    def opened(
        self, session_id: str, key: str | None, served: Scope, url_elicitation: bool = False
    ) -> Awaitable[Any] | None:
        """The SDK opened `session_id` for a request of `key` to `served`: only `key` may use it,
        only there, and it counts against the session limits of the tenant until it ends.
        `url_elicitation`: its client declared URL-mode elicitations. What the response waits for
        before its body (a cluster's record of the session's home: None on a lone hub)."""
        self.lane.opened(session_id, key, served, url_elicitation)
        self.limits.opened(session_id, key, served.tenant)
        return self.homes.opened(session_id) if self.homes is not None else None

    async def run(self) -> None:
        """Run the session manager until `stop` (enter and exit in this one task)."""
        self.facade.attach(asyncio.get_running_loop())
        try:
            async with self.manager.run():
                self._ready.set()
                await self._stop.wait()
        finally:
            self.facade.detach()
            if self.homes is not None:
                self.homes.close()

    async def ready(self) -> None:
        """Wait until the manager runs."""
        await self._ready.wait()

    def stop(self) -> None:
        """End every MCP session."""
        self._stop.set()
