"""Rebalancing: the servers of its started tenants that a replica runs, kept to its share as the
live set of the cluster changes.

`Rebalancer` starts tenants for `Hub.start_tenant` and remembers, per tenant started on this
replica (and not stopped since), the servers placement gave it (`hub.placement`, over the live set
read from Redis at that moment). When the live set changes (a replica joins, leaves cleanly, or its
key expires after it died), it places those tenants again over the new live set and moves what
changed hands, one log line per move:

- a server it now owns and did not (a replica left): started, through its tenant, as a tenant start
  starts it (unless it already runs here, started by hand);
- a server it owned and no longer does (a replica joined): handed over (`hub.handover`: it keeps
  serving until the newcomer runs it, then its new calls go there and its calls in flight end
  here), then stopped with the ordinary stop path;
- servers that do not start with their tenant (disabled, `on_demand`, `per_session`), and servers
  started or stopped by hand that placement never gave it, are left alone.

Starting a tenant and rebalancing hold one lock, and each reads the live set inside it, so the
one that runs last decides with the newest live set: replicas that start at once and do not yet
see each other may both start a server, and each stops what it does not own as soon as its
heartbeat sees the other (within one heartbeat). Without `cluster:` the rebalancer only starts
tenants, and starts no thread.

Threads: `start_tenant` and `stop_tenant` run on the caller's thread (blocking, as the `Hub` API);
the watch on `cluster-rebalance`, a thread of its own: never an actor thread nor the web loop, and
not the heartbeat's (a stop may take seconds, and a heartbeat held that long would let this
replica's key expire).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Mapping

from actors.models import ServerState, ServerStatus
from actors.router import RouterActorProxy
from actors.tenant import TenantActorProxy
from hub import placement, timeouts
from hub.cluster import ClusterNode
from hub.config import HubConfig, ServerConfig
from hub.errors import HubError
from hub.handover import Handover

__all__ = ["Rebalancer"]

log = logging.getLogger(__name__)


class Rebalancer:
    """Which servers of its tenants this replica runs: placed when a tenant starts, moved when the
    live set changes.

    Args:
        node: this replica's cluster node (None: the hub runs alone, and nothing is ever moved).
        tenant: the proxy of a tenant, by name (raises `NotFound`).
        config: the hub's configuration as it is now (a reload replaces it).
    """

    def __init__(
        self,
        node: ClusterNode | None,
        tenant: Callable[[str], TenantActorProxy],
        config: Callable[[], HubConfig],
        router: Callable[[], RouterActorProxy] | None = None,
    ) -> None:
        self._node = node
        self._tenant = tenant
        self._config = config
        self._lock = threading.Lock()  # one placement at a time: a tenant's start, or a rebalance
        self._owned: dict[str, frozenset[str]] = {}  # per started tenant: the servers placed here
        self._seen: tuple[str, ...] | None = None  # the live set last rebalanced for
        self._stop = threading.Event()
        # With the router: a server a newcomer wins is handed over (drained) before it stops here.
        self._handover = (
            Handover(node, router, lambda: config().orchestrator.startup_timeout, self._stop)
            if node is not None and router is not None
            else None
        )
        self._thread: threading.Thread | None = None
        self.moves = 0  # servers started or stopped by rebalancing so far

    def _servers(self, tenant: str) -> Mapping[str, ServerConfig]:
        """The configured servers of `tenant` (none: no such tenant, or removed by a reload)."""
        tenants = self._config().tenants
        return tenants[tenant].servers if tenant in tenants else {}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Watch the live set on `cluster-rebalance` (nothing without a cluster)."""
        if self._node is None:
            return
        self._seen = self._node.view().members
        self._thread = threading.Thread(target=self._run, name="cluster-rebalance", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (first, as the hub stops: nothing moves while the tree comes down)."""
        self._stop.set()
        if self._node is not None:
            self._node.poke()
        if self._thread is not None:
            self._thread.join(timeout=timeouts.LIFECYCLE)
            if self._thread.is_alive():
                log.error("cluster: the rebalancing thread did not stop within %g s", timeouts.LIFECYCLE)
            self._thread = None

    # ------------------------------------------------------------------ tenants

    def start_tenant(self, tenant: str) -> dict[str, ServerStatus | str]:
        """Start `tenant`'s servers that start with it and that placement gives this replica
        (blocking: the caller's thread); per server, its status or why it did not start."""
        proxy = self._tenant(tenant)
        if self._node is None:
            return proxy.start_servers().get(timeout=timeouts.ASK)
        with self._lock:
            names = list(self._servers(tenant))
            elsewhere = self._node.elsewhere(tenant, names)  # (the live set read from Redis now)
            outcome = proxy.start_servers(elsewhere).get(timeout=timeouts.ASK)
            self._owned[tenant] = frozenset(n for n in names if n not in elsewhere)
        return outcome

    def stop_tenant(self, tenant: str) -> dict[str, str]:
        """Stop every server of `tenant` and forget it: no rebalancing starts its servers again until
        it is started again. Per server, its final state."""
        proxy = self._tenant(tenant)
        with self._lock:
            self._owned.pop(tenant, None)
        return proxy.stop_servers().get(timeout=timeouts.LIFECYCLE)

    def reloaded(self, added: Mapping[str, Iterable[str]]) -> None:
        """After a reload (the caller's thread): of the servers it added to tenants started here
        (their tenant starts them, as on a lone hub), keep those placement gives this replica and
        stop the others, which their own replicas run."""
        node = self._node
        if node is None:
            return
        with self._lock:
            live = {*node.view().members, node.replica_id}
            for tenant, names in added.items():
                if tenant not in self._owned:
                    continue
                configs, mine = self._servers(tenant), set(self._owned[tenant])
                proxy = self._tenant(tenant)
                for name in names:
                    config = configs.get(name)
                    if config is None or not config.enabled or config.on_demand or config.per_session:
                        continue
                    owner = placement.owner(live, tenant, name)
                    if owner == node.replica_id:
                        mine.add(name)
                    elif proxy.status(name).get(timeout=timeouts.ASK).state is not ServerState.STOPPED:
                        log.info("cluster: reload: %s/%s added; replica %s runs it", tenant, name, owner)
                        self._ask(tenant, name, functools.partial(_stop, proxy))
                self._owned[tenant] = frozenset(mine)

    # ------------------------------------------------------------------ the watch

    def _run(self) -> None:
        """The watch (on `cluster-rebalance`): wait for a change of the live set, then rebalance."""
        node = self._node
        assert node is not None
        while not self._stop.is_set():
            node.wait_for(lambda v: self._stop.is_set() or v.members != self._seen, timeout=3600)
            if self._stop.is_set():
                return
            try:
                self.rebalance()
            except Exception:  # isolation: the watch must outlive one failed rebalance
                log.exception("cluster: rebalancing failed; trying again in one heartbeat")
                self._seen = None
                self._stop.wait(node.config.heartbeat)

    def rebalance(self) -> int:
        """Place every started tenant again over the last live set and move what changed hands
        (blocking: `cluster-rebalance`, or a test's thread); how many servers moved."""
        node = self._node
        if node is None:
            return 0
        moved = 0
        with self._lock:
            view = node.view()
            self._seen = view.members
            live = {*view.members, node.replica_id}
            for tenant, owned in list(self._owned.items()):
                configs = self._servers(tenant)
                if not configs:  # (removed by a reload)
                    del self._owned[tenant]
                    continue
                now, count = self._move(tenant, owned, live, configs, view.members)
                self._owned[tenant] = now
                moved += count
            self.moves += moved
        return moved

    def _move(
        self,
        tenant: str,
        owned: frozenset[str],
        live: set[str],
        configs: Mapping[str, ServerConfig],
        members: tuple[str, ...],
    ) -> tuple[frozenset[str], int]:
        """Start what `tenant` gained, hand over and stop what it lost; its new share (with what is
        still to be handed over) and how many moved."""
        movable = {n for n, c in configs.items() if c.enabled and not c.on_demand and not c.per_session}
        owners = {name: placement.owner(live, tenant, name) for name in movable}
        me = self._node.replica_id if self._node is not None else ""
        now = frozenset(n for n in movable if owners[n] == me)
        lost, gained = sorted((owned & movable) - now), sorted(now - owned)
        if not lost and not gained:
            return now, 0
        proxy = self._tenant(tenant)
        moved = sum(self._start(tenant, proxy, name, live) for name in gained)
        stopped, later = self._hand_over(tenant, proxy, {n: owners[n] or "" for n in lost}, configs, members)
        return now | later, moved + stopped

    def _hand_over(
        self,
        tenant: str,
        proxy: TenantActorProxy,
        moves: dict[str, str],
        configs: Mapping[str, ServerConfig],
        members: tuple[str, ...],
    ) -> tuple[int, set[str]]:
        """Hand the servers of `moves` (name -> the replica that wins it) that run here over, then
        stop them; how many stopped, and those to hand over at the next placement."""
        moves = {
            n: r
            for n, r in moves.items()
            if proxy.status(n).get(timeout=timeouts.ASK).state is not ServerState.STOPPED
        }
        later = self._handover.drain(tenant, moves, configs, members) if self._handover and moves else set()
        stopped = 0
        for name, replica in moves.items():
            if name not in later:
                log.info("cluster: rebalance: stopping %s/%s: replica %s runs it now", tenant, name, replica)
                stopped += self._ask(
                    tenant, name, lambda n: proxy.stop_server(n).get(timeout=timeouts.LIFECYCLE)
                )
        return stopped, later

    def _start(self, tenant: str, proxy: TenantActorProxy, name: str, live: set[str]) -> int:
        """Start `name`, won by this replica (unless it runs here already); 1 if it was started."""
        if proxy.status(name).get(timeout=timeouts.ASK).state is not ServerState.STOPPED:
            return 0  # (already here: started by hand, or still failing and retried)
        log.info(
            "cluster: rebalance: starting %s/%s: this replica runs it now (live: %s)",
            tenant,
            name,
            ", ".join(sorted(live)),
        )
        return self._ask(tenant, name, lambda n: proxy.start_server(n).get(timeout=timeouts.ASK))

    @staticmethod
    def _ask(tenant: str, name: str, ask: Callable[[str], ServerStatus]) -> int:
        """One move asked of the tenant: 1 if it was made, 0 (logged) if the tenant refused it."""
        try:
            ask(name)
        except HubError as exc:  # (max_servers reached here; the server gone by a reload)
            log.warning("cluster: rebalance: %s/%s not moved: %s", tenant, name, exc.message)
            return 0
        return 1


def _stop(proxy: TenantActorProxy, name: str) -> ServerStatus:
    """Stop `name` through its tenant and wait for its process to be gone (blocking)."""
    return proxy.stop_server(name).get(timeout=timeouts.LIFECYCLE)
