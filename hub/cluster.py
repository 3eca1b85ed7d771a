"""Cluster membership: this replica's heartbeat in Redis, the live replicas, and its share.

A replica holds one key in Redis, `mcp-hub:replica:<replica id>`, set with a time to live of
`cluster.ttl` (3 heartbeats) and renewed every `cluster.heartbeat` seconds by a thread of its own
(`cluster-heartbeat`), never by an actor or the web loop. The live set is the replicas whose key
exists: a SCAN over that prefix, so expiry is Redis's own clock and no replica's. A replica that
stops cleanly deletes its key (only if it still holds it); one that dies leaves the live set when
its key expires. The key's value says who holds it (`token`, random per process), so two replicas
given one id are noticed and logged.

`hub.placement` turns the live set into each replica's share of the servers; `ClusterNode.elsewhere`
is what a tenant's start leaves to other replicas, and `hub.rebalance` moves servers when the live
set changes. Redis is imported only here, and only when a
`ClusterNode` is made: a hub without `cluster:` never imports it.

Threads: `join` and `leave` run on the thread that starts and stops the hub; the heartbeat on
`cluster-heartbeat`; `view`, `share`, `members()` and `elsewhere(..., members)` read the last
snapshot and never block on Redis, so any thread (the web loop too) may call them;
`members(refresh=True)` and `elsewhere` without `members` ask Redis on the caller's thread (a
blocking one: `Hub.start_tenant`'s). `wait_for` blocks its caller until a snapshot satisfies it:
`hub.rebalance` watches the live set with it, on a thread of its own.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from hub import placement
from hub.config_cluster import ClusterConfig

if TYPE_CHECKING:
    import redis

__all__ = ["KEY_PREFIX", "ClusterNode", "ClusterUnavailable", "ClusterView", "describe"]

log = logging.getLogger(__name__)

KEY_PREFIX = "mcp-hub:replica:"
# Deletes a replica's key only if it still holds it (a replica given the same id may hold it now).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class ClusterUnavailable(RuntimeError):
    """Redis could not be reached when the replica joined: it cannot know its share."""


@dataclass(frozen=True)
class ClusterView:
    """What this replica last saw of the cluster (a snapshot; any thread).

    Attributes:
        replica_id: this replica's id.
        members: the live replicas' ids, sorted (this one included while it holds its key).
        redis_ok: whether the last heartbeat reached Redis.
        error: why it did not (None when it did).
        seen_at: when (`time.time()`) this snapshot was taken.
    """

    replica_id: str
    members: tuple[str, ...]
    redis_ok: bool
    error: str | None
    seen_at: float
    urls: Mapping[str, str] = field(default_factory=dict)  # each live replica's advertised URL


class ClusterNode:
    """This hub as one replica of a cluster: its heartbeat, the live set, its share of the servers.

    Args:
        config: the `cluster:` section.
    """

    def __init__(self, config: ClusterConfig) -> None:
        import redis  # here, not at the top: a hub without `cluster:` never imports it

        self.config = config
        self.replica_id = config.resolved_replica_id()
        self.errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        # A call to Redis must give up before the key expires, so a slow Redis reads as a lost one.
        timeout = max(min(config.heartbeat, 5.0), 0.05)
        self.redis: redis.Redis = redis.Redis.from_url(
            config.redis_url.reveal(),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
        )
        self._key = KEY_PREFIX + self.replica_id
        self._token = uuid.uuid4().hex
        self._holder = {
            "id": self.replica_id,
            "token": self._token,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        self._value = json.dumps(self._holder)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._joined = False  # whether this replica wrote its key (so `leave` deletes it)
        self._changed = threading.Condition()
        self._view = ClusterView(self.replica_id, (), False, "not joined yet", time.time())
        self.members_changed_at = time.monotonic()  # when the live set last changed

    # ------------------------------------------------------------------ lifecycle

    def advertise(self, url: str) -> None:
        """The URL the other replicas reach this one at (before `join`: it goes in the key)."""
        self._holder["url"] = url
        self._value = json.dumps(self._holder)

    def join(self) -> ClusterNode:
        """Write this replica's key and read the live set once (on the caller's thread), then start
        the heartbeat thread.

        Raises:
            ClusterUnavailable: Redis cannot be reached (the message says why, never the URL).
        """
        try:
            holder = self.redis.get(self._key)
            if holder is not None and json.loads(str(holder)).get("token") != self._token:
                log.warning(
                    "cluster: replica id %r is already held (another replica with this id, or this "
                    "replica's previous process within its ttl): give each replica its own "
                    "cluster.replica_id",
                    self.replica_id,
                )
        except self.errors as exc:
            raise ClusterUnavailable(f"cluster: cannot reach Redis: {describe(exc)}") from exc
        except ValueError:
            pass  # (a value this code did not write: overwritten below)
        self._joined = True
        self._beat()
        if not self._view.redis_ok:
            raise ClusterUnavailable(f"cluster: cannot reach Redis: {self._view.error}")
        log.info("cluster: joined as %r; live replicas: %s", self.replica_id, ", ".join(self._view.members))
        self._thread = threading.Thread(target=self._run, name="cluster-heartbeat", daemon=True)
        self._thread.start()
        return self

    def leave(self) -> None:
        """Stop the heartbeat and delete this replica's key (if it still holds it), so the others
        see it gone at once. Idempotent; never raises (a Redis out of reach is logged)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.ttl + 5)
            self._thread = None
        if not self._joined:
            self.redis.close()
            return
        self._joined = False
        try:
            self.redis.eval(_RELEASE, 1, self._key, self._value)  # type: ignore[no-untyped-call]
        except self.errors as exc:
            log.warning(
                "cluster: could not delete this replica's key (it expires in %gs): %s",
                self.config.ttl,
                describe(exc),
            )
        finally:
            self.redis.close()

    def _run(self) -> None:
        """The heartbeat (on `cluster-heartbeat`): renew the key, read the live set, wait."""
        while not self._stop.wait(self.config.heartbeat):
            self._beat()

    def _beat(self) -> None:
        """One heartbeat: renew the key for `ttl`, then read the live set; record what was seen."""
        try:
            self.redis.set(self._key, self._value, px=max(1, round(self.config.ttl * 1000)))
            members, urls = self._scan()
        except self.errors as exc:
            self._record(replace(self._view, redis_ok=False, error=describe(exc), seen_at=time.time()))
            return
        self._record(ClusterView(self.replica_id, members, True, None, time.time(), urls))

    def _scan(self) -> tuple[tuple[str, ...], dict[str, str]]:
        """The live replicas' ids, and the URL each advertises (in its key's value)."""
        keys = sorted({str(k) for k in self.redis.scan_iter(match=KEY_PREFIX + "*", count=1000)})
        urls = {}
        for key, value in zip(keys, self.redis.mget(keys) if keys else [], strict=True):
            try:
                url = json.loads(str(value)).get("url") if value is not None else None
            except (ValueError, AttributeError):
                url = None
            if isinstance(url, str):
                urls[key[len(KEY_PREFIX) :]] = url
        return tuple(k[len(KEY_PREFIX) :] for k in keys), urls

    def _record(self, view: ClusterView) -> None:
        old = self._view
        if view.redis_ok != old.redis_ok and old.error != "not joined yet":
            if view.redis_ok:
                log.warning("cluster: Redis reachable again")
            else:
                log.error(
                    "cluster: Redis unreachable (keeping the servers this replica runs): %s", view.error
                )
        if view.members != old.members and view.redis_ok:
            log.info("cluster: live replicas now %s", ", ".join(view.members) or "none")
            self.members_changed_at = time.monotonic()  # (servers move for a while: `hub.failover`)
        with self._changed:
            self._view = view
            self._changed.notify_all()

    # ------------------------------------------------------------------ what it sees

    def view(self) -> ClusterView:
        """The last snapshot of the cluster; never blocks on Redis."""
        return self._view

    def members(self, refresh: bool = False) -> tuple[str, ...]:
        """The live replicas' ids. With `refresh`, read from Redis now (blocking: not on a loop);
        if Redis cannot be reached, the last snapshot."""
        if refresh:
            try:
                members, urls = self._scan()
            except self.errors as exc:
                log.warning(
                    "cluster: reading the live replicas failed, using the last seen: %s", describe(exc)
                )
            else:
                self._record(
                    replace(
                        self._view, members=members, redis_ok=True, error=None, seen_at=time.time(), urls=urls
                    )
                )
        return self._view.members

    def wait_for(self, predicate: Callable[[ClusterView], bool], timeout: float) -> bool:
        """Wait (blocking) until a snapshot satisfies `predicate`; whether one did within `timeout`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self._view):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def poke(self) -> None:
        """Wake every `wait_for` now, to check its predicate again (a watcher that stops)."""
        with self._changed:
            self._changed.notify_all()

    def share(
        self, servers: Mapping[str, Iterable[str]], members: Iterable[str] | None = None
    ) -> dict[str, frozenset[str]]:
        """Per tenant (tenant -> its server names), the servers this replica runs among `members`
        (default: the last live set)."""
        live = self._view.members if members is None else tuple(members)
        return placement.share(self.replica_id, live, servers)

    def elsewhere(
        self, tenant: str, servers: Iterable[str], members: Iterable[str] | None = None
    ) -> dict[str, str]:
        """Of `tenant`'s `servers`, those another replica runs, each with a reason that names it.

        The live set is `members`, else read from Redis now (blocking: `Hub.start_tenant`'s thread,
        never a loop), else, with Redis out of reach, the last one seen.
        """
        live = {*(self.members(refresh=True) if members is None else members), self.replica_id}
        out = {}
        for server in servers:
            chosen = placement.owner(live, tenant, server)
            if chosen != self.replica_id:
                out[server] = f"elsewhere: replica {chosen} runs it"
        return out


def describe(exc: BaseException) -> str:
    """One line about a Redis failure; redis-py's messages name the host and port, not the password."""
    return f"{type(exc).__name__}: {exc}"[:300]


def node_of(config: ClusterConfig | None) -> ClusterNode | None:
    """The cluster node of a hub configured with `cluster:`, else None (and Redis is not imported)."""
    return None if config is None else ClusterNode(config)
