"""Failover of forwarded tool calls in a cluster (docs/cluster.md).

A call forwarded to the replica that runs its server fails at once with an upstream error when
that replica goes away during it (its channel breaks: SIGKILL, a crash, a network cut), cannot be
reached, or answers that the server no longer runs there (it moved). Such a call is tried once
more, on whichever replica runs the server next, when the tool says a retry is harmless: its
annotations have `readOnlyHint: true` or `idempotentHint: true`. The retry waits for the catalog
to route the tool elsewhere (the lost replica's key expires, a survivor starts the server and
publishes it), within the call's own timeout; any other call keeps its clear error.

Runs on the caller's loop; the waits are woken by the route cache, which every catalog change
clears (`hub.routes.RouteCache.watch`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from actors.models import ToolEntry
from hub.cluster_link import RemoteEndpoint, ReplicaLost
from hub.errors import HubError, NotRunning, UpstreamError
from hub.routes import Prepared, RouteCache

__all__ = ["forwarded_elsewhere", "harmless_to_retry", "lost_replica"]

log = logging.getLogger(__name__)


def harmless_to_retry(entry: ToolEntry) -> bool:
    """Whether the tool says calling it twice does no harm (`readOnlyHint` or `idempotentHint`)."""
    annotations = entry.annotations or {}
    return annotations.get("readOnlyHint") is True or annotations.get("idempotentHint") is True


def lost_replica(prepared: Prepared, exc: HubError) -> str | None:
    """The replica a forwarded call was lost with (it went away, or the server moved), else None."""
    endpoint = prepared.route.endpoint
    if isinstance(endpoint, RemoteEndpoint) and isinstance(exc, ReplicaLost | NotRunning):
        return endpoint.replica
    return None


async def forwarded_elsewhere(
    routes: RouteCache, prepare: Callable[[], Awaitable[Prepared]], lost: str, timeout: float, shown: str
) -> Prepared:
    """The tool's route once it no longer goes to replica `lost` (waiting for catalog changes).

    Raises:
        UpstreamError: no other replica took the server over within `timeout` seconds.
    """
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()

    def wake() -> None:  # (any thread: the router's, when a catalog changes)
        loop.call_soon_threadsafe(changed.set)

    routes.watch(wake)
    try:
        async with asyncio.timeout(timeout):
            while True:
                changed.clear()
                try:
                    prepared = await prepare()
                except HubError:  # (not listed yet: its new replica has not started it)
                    prepared = None
                endpoint = prepared.route.endpoint if prepared is not None else None
                if prepared is not None and getattr(endpoint, "replica", None) != lost:
                    log.info("cluster: retrying a call of %s, lost with replica %s", shown, lost)
                    return prepared
                await changed.wait()
    except TimeoutError:
        raise UpstreamError(
            f"tool '{shown}': replica '{lost}', which ran its server, went away, and no other replica "
            f"took the server over within {timeout:g} s"
        ) from None
    finally:
        routes.unwatch(wake)
