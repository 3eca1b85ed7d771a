"""A cluster replica's parts beyond its membership: the servers it publishes, those it mirrors
from the others, the channel that forwards requests to them, the tenants' call quotas counted
across the cluster, and what one replica is asked that all must do (docs/cluster.md).

Control: a reload (`POST /api/admin/reload`, SIGHUP) and a tenant's start or stop
(`POST /api/tenants/{t}/start|stop`) asked of one replica are announced on the channel
`mcp-hub:control`; every other replica does the same with its own copy of the configuration file
(a reload) or its own share of the tenant's servers (a start), on a thread of its own
(`cluster-control`), one at a time, in the order they came. What a replica does because another
announced it is not announced again. Threads: `start`, `stop` and `announce` on the caller's
thread (blocking); the parts on `cluster-publish`, `cluster-mirror`, `cluster-link` and
`cluster-control`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pykka

from actors.models import ResourceUpdated, ServerStatus
from actors.remote_servers import RemoteServers
from hub import timeouts
from hub.cluster import ClusterNode, describe
from hub.cluster_catalog import CONTROL, Mirror, Publisher
from hub.cluster_link import Links
from hub.cluster_quota import SharedQuotas
from hub.cluster_wire import published_of
from hub.errors import HubError

if TYPE_CHECKING:
    from hub.runtime import Hub

__all__ = ["ReplicaParts", "replica_parts"]

log = logging.getLogger(__name__)

OPERATIONS = ("reload", "start_tenant", "stop_tenant")


class ReplicaParts:
    """The publisher, the mirror, the links, the shared quotas and the control of one replica.

    Args:
        node: this replica's cluster node.
        hub: the hub it is part of (its configuration now, its router, what control asks of it).
    """

    def __init__(self, node: ClusterNode, hub: Hub) -> None:
        assert node.config.secret is not None
        self._node = node
        self._hub = hub
        self.links = Links(node, node.config.secret, self._updated)
        self.remote = RemoteServers(node.replica_id, self.links.endpoint)  # (the router's, from its start)
        tenants = lambda: tuple(hub.config.tenants)  # noqa: E731
        self.publisher = Publisher(node, tenants)
        self.mirror = Mirror(node, tenants, lambda: hub.router.actor_ref, self._queued)
        self.quotas = SharedQuotas(node, node.config.on_redis_loss)  # (its state: /health, /metrics)
        self._control: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="cluster-control", daemon=True)
        self._started = False

    def start(self) -> None:
        """Open for forwarding, publish this replica's servers, follow the others'."""
        self._started = True
        self.links.start()
        self._hub.sessions.elsewhere.append(self.links.end_session)  # (its instances on the others)
        self.publisher.start()
        self._worker.start()
        self.mirror.start()

    def stop(self) -> None:
        """Stop following, withdraw what this replica published, close the channels (nothing to do
        for a replica that never started: its hub could not join the cluster)."""
        if not self._started:
            self.quotas.close()
            return
        self.mirror.stop()
        self._control.put(None)
        self._worker.join(timeout=30)
        self.publisher.stop()
        self.links.stop()
        self.quotas.close()

    def _updated(self, event: ResourceUpdated) -> None:
        """An update of a resource subscribed on another replica (a channel's loop): told to the
        router, which relays it as a local server's (to the facade's subscribed sessions)."""
        with contextlib.suppress(HubError, pykka.ActorDeadError):  # (the hub stops: no one to tell)
            self._hub.router.actor_ref.tell(event)

    def settling(self) -> float:
        """Seconds left of the time the servers may be moving after the live set last changed (a
        ttl, a heartbeat and a server's start): a call that finds its server not running then waits
        for it instead of failing (`hub.failover`); 0 once the cluster has settled. Any thread."""
        config = self._node.config
        window = config.ttl + config.heartbeat + self._hub.config.orchestrator.startup_timeout
        return max(0.0, self._node.members_changed_at + window - time.monotonic())

    def server_action(self, tenant: str, server: str, action: str, wait: bool) -> ServerStatus | None:
        """A start, stop or restart of `server` asked of this replica, done by the replica it is for
        (`RouterActor.replica_for`): its status there; None: it is for this one. Blocking: any
        thread but a loop's."""
        replica = self._hub.router.replica_for(tenant, server).get(timeout=timeouts.ASK)
        if replica is None:
            return None
        op = {"op": "lifecycle", "tenant": tenant, "server": server, "action": action, "wait": wait}
        answer: Any = self.links.forward(replica, op).result(timeout=timeouts.LIFECYCLE + timeouts.ASK)
        return replace(published_of(answer, tenant, server)[0], replica=replica)

    # ------------------------------------------------------------------ control

    def announce(self, op: str, tenant: str | None = None) -> None:
        """Tell every other replica to do what this one was asked (blocking; a Redis out of reach is
        logged: the others then do not hear of it)."""
        message = json.dumps({"from": self._node.replica_id, "op": op, "tenant": tenant})
        try:
            self._node.redis.publish(CONTROL, message)
        except self._node.errors as exc:
            log.error("cluster: could not tell the other replicas to %s: %s", op, describe(exc))

    def _queued(self, message: dict[str, Any]) -> None:
        """The mirror heard another replica's announcement (on `cluster-mirror`): do it, in turn."""
        self._control.put(message)

    def _work(self) -> None:
        """The announcements of the others, one at a time (on `cluster-control`)."""
        while (message := self._control.get()) is not None:
            op, tenant, origin = message.get("op"), message.get("tenant"), message.get("from")
            log.info(
                "cluster: replica %s asks every replica to %s%s", origin, op, f" {tenant}" if tenant else ""
            )
            try:
                if op == "reload":
                    self._hub.reload_file()
                elif op == "start_tenant" and isinstance(tenant, str):
                    self._hub.start_tenant(tenant, wait=False)
                elif op == "stop_tenant" and isinstance(tenant, str):
                    self._hub.stop_tenant(tenant)
                else:
                    log.warning("cluster: an unknown control message ignored: %r", op)
            except HubError as exc:  # (a file made invalid meanwhile, a tenant not configured here)
                log.error("cluster: could not %s as replica %s asked: %s", op, origin, exc.message)
            except Exception:  # isolation: the worker must outlive one failure
                log.exception("cluster: %s as replica %s asked failed", op, origin)


def replica_parts(node: ClusterNode | None, hub: Hub) -> ReplicaParts | None:
    """The parts of a cluster's replica (None: the hub runs alone)."""
    return None if node is None else ReplicaParts(node, hub)
