"""The cluster section of the configuration: `ClusterConfig`, how a replica finds the others.

Absent (the default), the hub runs alone and never imports or reaches Redis. Present, the hub is
one replica of a cluster whose membership lives in Redis (`hub.cluster`).

Pure data: safe to use from any thread.
"""

from __future__ import annotations

import os
import socket

from pydantic import Field

from hub.config_fields import ConfigModel, SecretKey

TTL_HEARTBEATS = 3  # a replica leaves the live set after this many heartbeats missed


class ClusterConfig(ConfigModel):
    """Run this hub as one replica of a cluster (docs/cluster.md). Each replica keeps a key with a
    time to live in Redis (3 heartbeats long) and renews it every heartbeat; the replicas whose key
    lives are the cluster, and a rendezvous hash of (tenant, server) over their ids decides which
    one runs each server: a replica starts only its share when tenants start, and moves servers
    when replicas join or leave. Every replica must read the same configuration. Not yet:
    forwarding calls to the replica that runs a server, cluster-wide quotas (docs/cluster.md says
    what works)."""

    redis_url: SecretKey = Field(
        description="Secret. The Redis that holds the cluster's membership: `redis://[:password@]host"
        ":port/db` (or `rediss://` for TLS). Clusters that share one Redis use different databases.",
    )
    replica_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="This replica's id, unique in the cluster; placement hashes it, so a replica "
        "restarted with the same id gets the same servers. Default: `<hostname>-<pid>`.",
    )
    heartbeat: float = Field(
        default=5.0,
        ge=0.05,
        le=3600,
        description="Seconds between two renewals of this replica's key. The key lives 3 heartbeats: a "
        "replica that stops renewing (killed, frozen, cut off from Redis) leaves the cluster within "
        "that time; one that stops cleanly deletes its key at once.",
    )

    @property
    def ttl(self) -> float:
        """Seconds a replica's key lives after its last renewal (`TTL_HEARTBEATS` heartbeats)."""
        return TTL_HEARTBEATS * self.heartbeat

    def resolved_replica_id(self) -> str:
        """`replica_id`, else `<hostname>-<pid>`: stable for the life of the process."""
        return self.replica_id or f"{socket.gethostname()}-{os.getpid()}"
