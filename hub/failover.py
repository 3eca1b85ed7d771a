"""Failover of tool calls in a cluster (docs/cluster.md): calls that find their server moving wait
for it, and calls lost with a replica are tried again when that does no harm.

Two cases:

- **The call never reached a server**: its tool is not listed or its server does not run here
  (`not_found`, `server_not_running`) while the cluster is settling after its live set changed
  (a replica joined, left or died: servers stop on one replica and start on another, for up to a
  ttl, a heartbeat and a server's start). The call waits for its tool to be routed again, then
  runs, whatever the tool: nothing ran yet; and so again if the next route is found stopping too
  (a replica that rejoins wins servers back), up to `ATTEMPTS` attempts in all. Once the cluster
  has settled, those errors are answered at once, as on a lone hub.
- **The call was lost with the replica it was forwarded to** (its channel broke mid-call, or the
  replica cannot be reached): it is tried once more, on whichever replica runs the server next,
  only if the tool says a retry is harmless (`readOnlyHint: true` or `idempotentHint: true`);
  within the call's own timeout. Any other call keeps its clear upstream error, at once.

Runs on the caller's loop; the waits are woken by the route cache, which every catalog change
clears (`hub.routes.RouteCache.watch`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from actors.models import ToolEntry
from hub.cluster_link import RemoteEndpoint, ReplicaLost
from hub.errors import HubError, NotFound, NotRunning, ServerStopped
from hub.routes import Prepared, RouteCache

__all__ = ["ATTEMPTS", "attempts", "harmless_to_retry", "never_ran", "rerouted", "retry"]

log = logging.getLogger(__name__)


def harmless_to_retry(entry: ToolEntry) -> bool:
    """Whether the tool says calling it twice does no harm (`readOnlyHint` or `idempotentHint`)."""
    annotations = entry.annotations or {}
    return annotations.get("readOnlyHint") is True or annotations.get("idempotentHint") is True


Unwanted = Callable[[Prepared], bool]
T = TypeVar("T")
ATTEMPTS = 4  # a call's attempts at most, the first included


def never_ran(exc: HubError) -> bool:
    """Whether a call that failed with `exc` never reached a server (its tool is not listed, its
    server does not run, or nothing was sent to the replica it was forwarded to)."""
    return isinstance(exc, NotRunning | NotFound) or (isinstance(exc, ReplicaLost) and not exc.sent)


def retry(prepared: Prepared, exc: HubError, settling: float) -> tuple[Unwanted, float] | None:
    """Whether a call of `prepared` that failed with `exc` is tried again: which next routes will
    not do, and how long to wait for another; None: it is not tried again."""
    endpoint = prepared.route.endpoint
    harmless = harmless_to_retry(prepared.route.entry)
    if settling and (never_ran(exc) or (harmless and isinstance(exc, ServerStopped))):
        # (its server is moving: not the same endpoint again, unless it runs now: one that was
        # starting here, a replica that rejoined and wins its servers back)
        return (lambda p: p.route.endpoint is endpoint and not getattr(endpoint, "running", False)), settling
    if isinstance(endpoint, RemoteEndpoint) and (
        never_ran(exc) or (harmless and isinstance(exc, ReplicaLost))
    ):
        lost = endpoint.replica
        return (lambda p: getattr(p.route.endpoint, "replica", None) == lost), prepared.route.call_timeout
    return None


async def attempts(
    prepared: Prepared,
    call: Callable[[Prepared], Awaitable[T]],
    settling: Callable[[], float],
    reroute: Callable[[Unwanted, float, str, HubError], Awaitable[Prepared]],
    shown: str,
) -> T:
    """`call(prepared)`, tried again as `retry` says on the route `reroute` finds next: while the call
    never reached a server, up to `ATTEMPTS` times in all (servers that move may be found stopping
    more than once); after it was lost mid-way, once."""
    lost = False  # (whether an attempt was lost mid-way: a harmless call is tried once more only)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await call(prepared)
        except HubError as exc:
            again = retry(prepared, exc, settling())
            if again is None or attempt == ATTEMPTS or (lost and not never_ran(exc)):
                raise
            lost = lost or not never_ran(exc)
            prepared = await reroute(*again, shown, exc)
    raise AssertionError("unreachable")


async def rerouted(
    routes: RouteCache,
    prepare: Callable[[], Awaitable[Prepared]],
    unwanted: Unwanted | None,
    timeout: float,
    shown: str,
    failed: HubError,
) -> Prepared:
    """The tool's route once it resolves (to one not `unwanted`, if given: the endpoint or the
    replica the call failed on), waiting for catalog changes for up to `timeout` seconds.

    Raises:
        HubError: `failed` (what the call failed with), if no route came within `timeout`.
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
                    prepared: Prepared | None = await prepare()
                except HubError:  # (not listed yet: its new replica has not started it)
                    prepared = None
                if prepared is not None and (unwanted is None or not unwanted(prepared)):
                    log.info("cluster: %s routed again (%s)", shown, failed.code)
                    return prepared
                await changed.wait()
    except TimeoutError:
        raise failed from None
    finally:
        routes.unwatch(wake)
