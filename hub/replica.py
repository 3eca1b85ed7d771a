"""A cluster replica's parts beyond its membership: the servers it publishes, those it mirrors
from the others, the channel that forwards requests to them, and the tenants' call quotas
counted across the cluster (docs/cluster.md).

Made only for a hub with `cluster:`. Threads: `start` and `stop` on the thread that starts and
stops the hub; the parts run on `cluster-publish`, `cluster-mirror` and `cluster-link`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actors.remote_servers import RemoteServers
from hub.cluster import ClusterNode
from hub.cluster_catalog import Mirror, Publisher
from hub.cluster_link import Links
from hub.cluster_quota import SharedQuotas
from hub.config import HubConfig

__all__ = ["ReplicaParts", "replica_parts"]


class ReplicaParts:
    """The publisher, the mirror and the links of one replica.

    Args:
        node: this replica's cluster node.
        config: the hub's configuration now (a reload replaces it).
        router: the router's actor ref (the mirror tells it what the others run).
    """

    def __init__(self, node: ClusterNode, config: Callable[[], HubConfig], router: Callable[[], Any]) -> None:
        assert node.config.secret is not None
        self.links = Links(node, node.config.secret)
        self.remote = RemoteServers(node.replica_id, self.links.endpoint)  # (the router's, from its start)
        tenants = lambda: tuple(config().tenants)  # noqa: E731
        self.publisher = Publisher(node, tenants)
        self.mirror = Mirror(node, tenants, router)
        self.quotas = SharedQuotas(node, node.config.on_redis_loss)  # (its state: /health, /metrics)

    def start(self) -> None:
        """Open for forwarding, publish this replica's servers, follow the others'."""
        self.links.start()
        self.publisher.start()
        self.mirror.start()

    def stop(self) -> None:
        """Stop following, withdraw what this replica published, close the channels."""
        self.mirror.stop()
        self.publisher.stop()
        self.links.stop()
        self.quotas.close()


def replica_parts(
    node: ClusterNode | None, config: Callable[[], HubConfig], router: Callable[[], Any]
) -> ReplicaParts | None:
    """The parts of a cluster's replica (None: the hub runs alone)."""
    return None if node is None else ReplicaParts(node, config, router)
