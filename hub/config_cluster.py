"""The cluster section of the configuration: `ClusterConfig`, how a replica finds the others.

Absent (the default), the hub runs alone and never imports or reaches Redis. Present, the hub is
one replica of a cluster whose membership lives in Redis (`hub.cluster`).

Pure data: safe to use from any thread.
"""

from __future__ import annotations

import os
import socket
from typing import Annotated, Literal

from pydantic import Field, PlainValidator, WithJsonSchema

from hub.config_fields import ConfigModel, SecretKey, secret_value
from hub.config_secrets import Secret

TTL_HEARTBEATS = 3  # a replica leaves the live set after this many heartbeats missed
SECRET_MIN_LENGTH = 32
# A secret of at least 32 characters: the JSON Schema checks the length, so a short one gets the
# same `cluster.secret: ...` message as any other invalid value.
LongSecret = Annotated[
    Secret, PlainValidator(secret_value), WithJsonSchema({"type": "string", "minLength": SECRET_MIN_LENGTH})
]


class ClusterConfig(ConfigModel):
    """Run this hub as one replica of a cluster (docs/cluster.md). Each replica keeps a key with a
    time to live in Redis (3 heartbeats long) and renews it every heartbeat; the replicas whose key
    lives are the cluster, and a rendezvous hash of (tenant, server) over their ids decides which
    one runs each server: a replica starts only its share when tenants start, and moves servers
    when replicas join or leave. Each replica publishes its servers' statuses and catalogs to
    Redis, so every replica lists the whole cluster's servers, and forwards a call to the replica
    that runs its server over an internal WebSocket that the cluster's `secret` opens. Every
    replica must read the same configuration. A tenant's `max_calls_per_minute` and
    `max_concurrent_calls` can be counted across the replicas in Redis (`on_redis_loss` says what
    happens without it); docs/cluster.md says what works."""

    redis_url: SecretKey = Field(
        description="Secret. The Redis that holds the cluster's membership: `redis://[:password@]host"
        ":port/db` (or `rediss://` for TLS). Clusters that share one Redis use different databases.",
    )
    secret: LongSecret = Field(
        description="Secret, the same on every replica, at least 32 characters (`openssl rand -hex "
        "32`). It opens the replicas' internal channel (`/cluster/link`), which forwards calls to the "
        "replica that runs their server: a request without it is refused there.",
    )
    advertise_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^/?#\s]+/?$",
        description="How the other replicas reach this one's main listener: `http://host:port`. "
        "Default: `http://<gateway host>:<its port>`, the host name of the machine for a wildcard "
        "host (`0.0.0.0`, `::`). In Kubernetes, `http://${POD_IP}:8080` with POD_IP from the downward API.",
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

    on_redis_loss: Literal["local", "refuse"] = Field(
        default="local",
        description="How a tenant's `max_calls_per_minute` and `max_concurrent_calls`, counted across "
        "the cluster in Redis, are enforced while Redis is unreachable: `local`, each replica enforces "
        "its share (the quota divided by the live replicas it last saw, rounded up); `refuse`, the "
        "calls of tenants with these quotas are refused (429) until Redis is back. Tenants without "
        "them are not affected.",
    )

    @property
    def ttl(self) -> float:
        """Seconds a replica's key lives after its last renewal (`TTL_HEARTBEATS` heartbeats)."""
        return TTL_HEARTBEATS * self.heartbeat

    def resolved_replica_id(self) -> str:
        """`replica_id`, else `<hostname>-<pid>`: stable for the life of the process."""
        return self.replica_id or f"{socket.gethostname()}-{os.getpid()}"

    def advertised(self, host: str, port: int) -> str:
        """`advertise_url`, else the main listener's URL as other machines reach it."""
        if self.advertise_url:
            return self.advertise_url.rstrip("/")
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
