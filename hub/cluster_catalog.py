"""One catalog across a cluster: each replica publishes the servers it runs to Redis, and mirrors
what the others publish into its router (docs/cluster.md).

Layout in Redis: a hash per tenant, `mcp-hub:servers:<tenant>`, with one field per server and
replica that runs it, `<server>@<replica id>`, whose value is the server's status and catalog as
JSON (`hub.cluster_wire.published_json`); the field is deleted when the replica stops running the
server (an on_demand or per_session server's stays, stopped, with its catalog: it starts when
called, on the replica placement gives it). Each write is announced on the channel
`mcp-hub:servers` (`<tenant>\\n<server>\\n<replica>`).

- `Publisher` is a board listener: it takes the statuses and catalogs of this replica's servers
  (on the router's thread, never blocking) and writes them on a thread of its own,
  `cluster-publish`, the latest of each server only. A write Redis refuses is tried again at the
  next heartbeat. At start it deletes what an earlier process with this replica id left.
- `Mirror`, on `cluster-mirror`, reads every tenant's hash once, then follows the channel and
  tells the router each server another replica publishes or stops publishing
  (`RemoteServerChanged`), and the live set when the heartbeat sees it change (`ReplicasChanged`).
  After Redis comes back it reads every hash again: nothing is missed while it was away.

Redis is reached only through the `ClusterNode`'s client settings (its URL is a secret and never
logged).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from actors.models import CatalogChanged, Event, ServerCatalog, ServerState, ServerStateChanged, ServerStatus
from actors.remote_servers import RemoteServer, RemoteServerChanged, ReplicasChanged
from hub.cluster import ClusterNode, describe
from hub.cluster_wire import published_json, published_of

if TYPE_CHECKING:
    import pykka

__all__ = ["CHANNEL", "CONTROL", "HASH_PREFIX", "Mirror", "Publisher"]

log = logging.getLogger(__name__)

HASH_PREFIX = "mcp-hub:servers:"
CHANNEL = "mcp-hub:servers"
CONTROL = "mcp-hub:control"  # what one replica was asked that all must do (`hub.replica`)


def _field(server: str, replica: str) -> str:
    return f"{server}@{replica}"


class Publisher:
    """This replica's servers, published to Redis (see the module).

    Args:
        node: this replica's cluster node (its Redis client and id).
        tenants: the configured tenants' names, now.
    """

    def __init__(self, node: ClusterNode, tenants: Callable[[], Iterable[str]]) -> None:
        self._node = node
        self._tenants = tenants
        self._lock = threading.Condition()
        self._statuses: dict[tuple[str, str], ServerStatus] = {}
        self._catalogs: dict[tuple[str, str], ServerCatalog] = {}
        self._pending: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Delete what an earlier process with this id published, then publish on `cluster-publish`."""
        self._withdraw()
        self._thread = threading.Thread(target=self._run, name="cluster-publish", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Publish what is pending, then stop (the hub's servers are stopped by then: their fields
        are deleted)."""
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=self._node.config.ttl + 5)
            self._thread = None
        self._withdraw()

    def _withdraw(self) -> None:
        """Delete every field this replica id published, and say so (blocking: Redis round trips)."""
        redis, me = self._node.redis, self._node.replica_id
        try:
            for tenant in self._tenants():
                stale = [str(f) for f in redis.hkeys(HASH_PREFIX + tenant) if str(f).endswith("@" + me)]
                if stale:
                    redis.hdel(HASH_PREFIX + tenant, *stale)
                    for field in stale:
                        redis.publish(CHANNEL, f"{tenant}\n{field.rpartition('@')[0]}\n{me}")
        except self._node.errors as exc:
            log.warning("cluster: could not withdraw what this replica published: %s", describe(exc))

    def on_event(self, event: Event) -> None:
        """Board listener (router thread): remember a status or catalog of this replica's servers."""
        if isinstance(event, ServerStateChanged) and event.status.session is None:
            key = (event.status.tenant, event.status.server)
            with self._lock:
                self._statuses[key] = event.status
                if event.status.state is ServerState.STOPPED and event.status.lifecycle == "always":
                    self._catalogs.pop(key, None)  # (an on_demand one's stays listed: it starts when called)
                self._pending.add(key)
                self._lock.notify_all()
        elif isinstance(event, CatalogChanged) and not event.remote:
            key = (event.catalog.tenant, event.catalog.server)
            with self._lock:
                self._catalogs[key] = event.catalog
                if key in self._statuses:
                    self._pending.add(key)
                    self._lock.notify_all()

    def _run(self) -> None:
        """The writes (on `cluster-publish`)."""
        while True:
            with self._lock:
                while not self._pending and not self._stop.is_set():
                    self._lock.wait()
                pending, self._pending = self._pending, set()
                work = [(key, self._statuses.get(key), self._catalogs.get(key)) for key in pending]
            if work:
                try:
                    self._write(work)
                except self._node.errors as exc:
                    log.warning(
                        "cluster: publishing %d servers failed, trying again: %s", len(work), describe(exc)
                    )
                    with self._lock:
                        self._pending.update(key for key, _, _ in work)
                    if self._stop.wait(self._node.config.heartbeat):
                        return
                    continue
            if self._stop.is_set():
                return

    def _write(self, work: list[tuple[tuple[str, str], ServerStatus | None, ServerCatalog | None]]) -> None:
        me = self._node.replica_id
        pipe = self._node.redis.pipeline(transaction=False)
        for (tenant, server), status, catalog in work:
            field = _field(server, me)
            if status is None or (
                status.state is ServerState.STOPPED and (catalog is None or status.lifecycle == "always")
            ):
                pipe.hdel(HASH_PREFIX + tenant, field)
            else:
                pipe.hset(HASH_PREFIX + tenant, field, json.dumps(published_json(status, catalog)))
            pipe.publish(CHANNEL, f"{tenant}\n{server}\n{me}")
        pipe.execute()


class Mirror:
    """What the other replicas publish, told to this replica's router (see the module).

    Args:
        node: this replica's cluster node.
        tenants: the configured tenants' names, now.
        router: the router's actor ref (told, never asked).
    """

    def __init__(
        self,
        node: ClusterNode,
        tenants: Callable[[], Iterable[str]],
        router: Callable[[], pykka.ActorRef[Any]],
        control: Callable[[dict[str, Any]], None] = lambda _: None,
    ) -> None:
        self._node = node
        self._control = control  # told each control message of another replica (quick: it queues it)
        self._tenants = tenants
        self._router = router
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._members: tuple[str, ...] | None = None
        self.synced = threading.Event()  # set once every hash was read (tests wait on it)

    def start(self) -> None:
        """Follow the others on `cluster-mirror`."""
        self._thread = threading.Thread(target=self._run, name="cluster-mirror", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following (within a second)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            pubsub = self._node.redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(CHANNEL, CONTROL)
                self._tell_members()
                for tenant in self._tenants():  # (after subscribing: nothing published since is missed)
                    for field, value in published_all(self._node, tenant).items():
                        self._tell(tenant, field, value)
                self.synced.set()
                while not self._stop.is_set():
                    self._tell_members()
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None and message.get("type") == "message":
                        if str(message["channel"]) == CONTROL:
                            self._on_control(str(message["data"]))
                        else:
                            self._on_message(str(message["data"]))
            except self._node.errors as exc:
                log.warning(
                    "cluster: following the other replicas failed, again in one heartbeat: %s", describe(exc)
                )
                self._stop.wait(self._node.config.heartbeat)
            finally:
                with contextlib.suppress(*self._node.errors):
                    pubsub.close()

    def _tell_members(self) -> None:
        members = self._node.view().members
        if members != self._members:
            self._members = members
            self._send(ReplicasChanged(frozenset(members)))

    def _on_control(self, data: str) -> None:
        try:
            message = json.loads(data)
            origin = message["from"]
        except (ValueError, KeyError, TypeError):
            log.warning("cluster: a malformed control message ignored")
            return
        if origin != self._node.replica_id:
            self._control(message)

    def _on_message(self, data: str) -> None:
        parts = data.split("\n")
        if len(parts) != 3 or parts[2] == self._node.replica_id:
            return
        tenant, server, replica = parts
        field = _field(server, replica)
        self._tell(tenant, field, self._node.redis.hget(HASH_PREFIX + tenant, field))

    def _tell(self, tenant: str, field: str, value: Any) -> None:
        server, _, replica = field.rpartition("@")
        if not server or replica == self._node.replica_id:
            return
        entry = None
        if value is not None:
            try:
                status, catalog = published_of(json.loads(value), tenant, server)
            except ValueError as exc:
                log.warning("cluster: ignoring what %s published of %s/%s: %s", replica, tenant, server, exc)
                return
            entry = RemoteServer.of(replica, status, catalog)
        self._send(RemoteServerChanged(tenant, server, replica, entry))

    def _send(self, message: RemoteServerChanged | ReplicasChanged) -> None:
        try:
            self._router().tell(message)
        except Exception:  # (the router stopped: the hub stops)
            self._stop.set()


def published_all(node: ClusterNode, tenant: str) -> dict[str, Any]:
    """Every field of `tenant`'s hash (blocking: a Redis round trip)."""
    return {str(k): v for k, v in node.redis.hgetall(HASH_PREFIX + tenant).items()}
