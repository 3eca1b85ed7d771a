"""Handing servers over to the replica that joins (docs/cluster.md, "Rebalancing").

When a replica joins, placement gives it some of the servers the others run. The replica that ran
such a server does not stop it at once: it goes on serving it until the newcomer runs it (as the
newcomer publishes), then routes the server's new calls there, waits for its own calls in flight
to end (up to the server's `call_timeout`, at most `DRAIN_MAX` seconds), and only then stops it.
Meanwhile the newcomer forwards the calls it gets to the old owner (`RemoteServers.chosen`: a
replica that runs a server is preferred to one that starts it), so no call finds the server down.

A newcomer that does not run the server within `startup_timeout` plus three heartbeats (its start
failed, or it died) does not hold it up: the server is stopped here as placement says. A change of
the live set while waiting ends the wait: the servers not handed over yet are placed again.

Runs on the rebalancer's thread (`cluster-rebalance`), blocking; the router is asked.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Mapping

from actors.calls import ServerEndpoint
from actors.router import RouterActorProxy
from hub import timeouts
from hub.cluster import ClusterNode
from hub.config import ServerConfig

__all__ = ["DRAIN_MAX", "Handover"]

log = logging.getLogger(__name__)

DRAIN_MAX = 60.0  # the longest a handed-over server's calls in flight are waited for
POLL = 0.05  # how often the newcomers' published states are read while waiting for them


class Handover:
    """Servers handed over to the replicas that win them (see the module).

    Args:
        node: this replica's cluster node (its live set, its heartbeat).
        router: the router's proxy (looked up at each use).
        startup_timeout: how long a server may take to start, as configured now.
        stopped: set as the hub stops (the waits end at once).
    """

    def __init__(
        self,
        node: ClusterNode,
        router: Callable[[], RouterActorProxy],
        startup_timeout: Callable[[], float],
        stopped: threading.Event,
    ) -> None:
        self._node = node
        self._router = router
        self._startup_timeout = startup_timeout
        self._stopped = stopped

    def drain(
        self,
        tenant: str,
        moves: Mapping[str, str],
        configs: Mapping[str, ServerConfig],
        members: tuple[str, ...],
    ) -> set[str]:
        """Hand each server of `moves` (name -> the replica that wins it) over, and return once
        each can be stopped here; the servers whose move must wait for the next placement (the
        live set changed from `members` meanwhile), which must not be stopped."""
        router = self._router()
        deadline = time.monotonic() + self._startup_timeout() + 3 * self._node.config.heartbeat
        waiting, ready = dict(moves), {}
        while waiting:
            for name in router.running_at(tenant, waiting).get(timeout=timeouts.ASK):
                ready[name] = waiting.pop(name)
            if not waiting:
                break
            if self._node.view().members != members or self._stopped.is_set():
                return set(waiting)
            if time.monotonic() > deadline:
                for name, replica in sorted(waiting.items()):
                    log.warning(
                        "cluster: rebalance: replica %s does not run %s/%s yet; stopping it here anyway",
                        replica,
                        tenant,
                        name,
                    )
                break
            self._stopped.wait(POLL)
        self._settle(router, tenant, ready, configs)
        return set()

    def _settle(
        self,
        router: RouterActorProxy,
        tenant: str,
        ready: Mapping[str, str],
        configs: Mapping[str, ServerConfig],
    ) -> None:
        """Route the `ready` servers' calls to their new replicas, then wait for the calls in
        flight here to end."""
        drains: dict[str, concurrent.futures.Future[bool]] = {}
        for name, replica in sorted(ready.items()):
            endpoint = router.server_route(tenant, name, running=False).get(timeout=timeouts.ASK)[0]
            router.hand_over(tenant, name, replica).get(timeout=timeouts.ASK)
            log.info("cluster: rebalance: handing %s/%s over to replica %s", tenant, name, replica)
            if isinstance(endpoint, ServerEndpoint):
                drains[name] = endpoint.settled(min(configs[name].call_timeout, DRAIN_MAX))
        for name, drained in drains.items():
            try:
                if not drained.result(timeout=DRAIN_MAX + timeouts.ASK):
                    log.warning(
                        "cluster: rebalance: %s/%s has calls in flight still; stopping it", tenant, name
                    )
            except Exception as exc:  # (the server stopped or crashed meanwhile: nothing to wait for)
                log.debug("cluster: rebalance: %s/%s not drained: %r", tenant, name, exc)
