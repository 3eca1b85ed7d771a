"""`SharedQuotas`: a tenant's call quotas (`max_calls_per_minute`, `max_concurrent_calls`) counted
across a cluster's replicas in Redis, instead of per replica by `actors.call_gate.CallGate`.

One Lua script checks and takes a call atomically, on Redis's clock (`TIME`), so the replicas'
clocks do not matter. Per tenant it keeps two sorted sets:

- `mcp-hub:quota:<tenant>:calls`: the call starts of the sliding 60 s window (score: start, ms);
- `mcp-hub:quota:<tenant>:slots`: the calls in flight (score: when their lease ends, ms). A slot is
  removed by `release`, or trimmed once its lease has ended: a replica that dies holding slots
  frees them after `lease` seconds without anyone releasing them.

Both are trimmed by the script as it runs, and expire (PEXPIRE) when their last entry would, so an
idle tenant leaves nothing behind.

Without Redis (the node's last heartbeat failed, or a call to Redis did), `cluster.on_redis_loss`
decides: `local`, each replica enforces its share, the quotas divided by the live replicas it last
saw (rounded up), on a `CallGate` per tenant; `refuse`, the calls of tenants with these quotas are
refused. After a failed call, Redis is not tried again before a heartbeat newer than the failure
reaches it (a circuit breaker: a dead Redis costs nothing per call).

Redis is imported only when a `SharedQuotas` is made (cluster mode).

Threads: `acquire` and `release` block on a Redis round trip (at most the 0.5 s socket timeout):
call them from a thread that may block (an executor), never from a loop. `state` any thread.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from actors.call_gate import CallGate
from hub.cluster import ClusterNode, describe
from hub.config_model import Quotas
from hub.errors import QuotaExceeded

if TYPE_CHECKING:
    import redis

__all__ = ["KEY_PREFIX", "SharedQuotas", "Ticket"]

log = logging.getLogger(__name__)

KEY_PREFIX = "mcp-hub:quota:"
WINDOW_MS = 60_000
REDIS_TIMEOUT = 0.5  # seconds: a lost Redis must not hold a call for long

# KEYS: the tenant's calls (window) and slots sets. ARGV: max_calls_per_minute (0: none),
# max_concurrent_calls (0: none), the lease (ms), the call's unique member.
# Returns {1} when the call was taken, else {0, 'concurrent' | 'rate', count, retry after (ms)}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, conc, lease, id = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
if conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local held = redis.call('ZCARD', KEYS[2])
  if held >= conc then
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    return {0, 'concurrent', held, tonumber(first[2]) - now}
  end
end
if rate > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000)
  local made = redis.call('ZCARD', KEYS[1])
  if made >= rate then
    local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {0, 'rate', made, tonumber(first[2]) + 60000 - now}
  end
  redis.call('ZADD', KEYS[1], now, id)
  redis.call('PEXPIRE', KEYS[1], 60000)
end
if conc > 0 then
  redis.call('ZADD', KEYS[2], now + lease, id)
  if redis.call('PTTL', KEYS[2]) < lease then
    redis.call('PEXPIRE', KEYS[2], lease)
  end
end
return {1}
"""


@dataclass(frozen=True)
class Ticket:
    """One call taken by `SharedQuotas.acquire`; give it to `release` when the call ends.

    Attributes:
        tenant: the tenant whose call it is.
        member: the call's unique id (its member in the Redis sets).
        shared: whether it was counted in Redis (else by this replica's local share).
        slot: whether it holds a concurrency slot (the tenant has `max_concurrent_calls`).
    """

    tenant: str
    member: str
    shared: bool
    slot: bool = True


class SharedQuotas:
    """Tenant-wide call quotas across a cluster's replicas, counted in Redis.

    Args:
        node: this replica's cluster node (its heartbeat says whether Redis is reachable, and how
            many replicas share the quotas when it is not).
        on_redis_loss: `local` (enforce this replica's share) or `refuse`, while Redis is unreachable.
    """

    def __init__(self, node: ClusterNode, on_redis_loss: Literal["local", "refuse"] = "local") -> None:
        import redis  # here, not at the top: a hub without `cluster:` never imports it

        self._node = node
        self._on_loss = on_redis_loss
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        # A client of its own, with a short timeout: the heartbeat's may wait a whole heartbeat.
        self._redis: redis.Redis = redis.Redis.from_url(
            node.config.redis_url.reveal(),
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
            decode_responses=True,
        )
        self._script: Any = self._redis.register_script(_ACQUIRE)
        self._lock = threading.Lock()
        self._failed_at: float | None = None  # (`time.time()`) of the last failed call to Redis
        self._logged: str = "shared"  # the state last logged
        self._gates: dict[str, CallGate] = {}  # per tenant, its local share while Redis is lost

    def close(self) -> None:
        """Close the connections to Redis (at the hub's stop)."""
        self._redis.close()

    # ------------------------------------------------------------------ state

    def state(self) -> Literal["shared", "local", "refusing"]:
        """What the quotas are counted by now: Redis ('shared'), this replica's share after Redis was
        lost ('local'), or nothing: calls with quotas are refused ('refusing'). Any thread, never
        blocks (on Redis)."""
        view = self._node.view()
        failed = self._failed_at
        usable = view.redis_ok and (failed is None or view.seen_at > failed)
        now: Literal["shared", "local", "refusing"] = (
            "shared" if usable else "local" if self._on_loss == "local" else "refusing"
        )
        with self._lock:
            was, self._logged = self._logged, now
        if now != was:
            if now == "shared":
                log.info("cluster: quotas counted across the cluster in Redis again")
            elif now == "local":
                log.warning(
                    "cluster: Redis unreachable: each replica enforces its share of the tenants' "
                    "quotas (cluster.on_redis_loss: local)"
                )
            else:
                log.warning(
                    "cluster: Redis unreachable: calls of tenants with call quotas are refused "
                    "(cluster.on_redis_loss: refuse)"
                )
        return now

    # ------------------------------------------------------------------ calls

    def acquire(self, tenant: str, quotas: Quotas, lease: float) -> Ticket | None:
        """Take one call of `tenant` cluster-wide (blocking: a Redis round trip; call it in an
        executor).

        Args:
            tenant: the tenant's name.
            quotas: its quotas (only `max_calls_per_minute` and `max_concurrent_calls` count here).
            lease: seconds a concurrency slot is held at most: a replica that dies without
                releasing it frees it then. Longer than the longest call.

        Returns:
            The ticket to `release`, or None when the tenant has neither quota (Redis untouched).

        Raises:
            QuotaExceeded: either quota would be exceeded across the cluster (or this replica's share
                of it while Redis is lost), or Redis is lost with `on_redis_loss: refuse`.
        """
        rate, conc = quotas.max_calls_per_minute, quotas.max_concurrent_calls
        if rate is None and conc is None:
            return None
        member = uuid.uuid4().hex
        if self.state() == "shared":
            try:
                answer = self._script(
                    keys=[self._key(tenant, "calls"), self._key(tenant, "slots")],
                    args=[rate or 0, conc or 0, max(1, round(lease * 1000)), member],
                )
            except self._errors as exc:
                self._failed_at = time.time()
                log.debug("cluster: counting a call of %r in Redis failed: %s", tenant, describe(exc))
            else:
                if int(answer[0]) != 1:
                    raise _exceeded(tenant, quotas, str(answer[1]), int(answer[2]), int(answer[3]))
                return Ticket(tenant, member, shared=True, slot=conc is not None)
        return self._acquire_locally(tenant, quotas, member)

    def release(self, ticket: Ticket) -> None:
        """Give the concurrency slot back (blocking; never raises: a failure is logged, and the lease
        ends anyway)."""
        if not ticket.shared:
            with self._lock:
                gate = self._gates.get(ticket.tenant)
            if gate is not None:
                gate.give_back()
            return
        if not ticket.slot or self.state() != "shared":
            return  # (without Redis, the slot's lease frees it)
        try:
            self._redis.zrem(self._key(ticket.tenant, "slots"), ticket.member)
        except self._errors as exc:
            self._failed_at = time.time()
            log.warning(
                "cluster: could not release a call slot of %r (its lease frees it): %s",
                ticket.tenant,
                describe(exc),
            )

    def _acquire_locally(self, tenant: str, quotas: Quotas, member: str) -> Ticket:
        """Without Redis: refuse (`refuse`), or take a call of this replica's share (`local`)."""
        if self._on_loss == "refuse":
            raise QuotaExceeded(
                f"the call quotas of tenant '{tenant}' cannot be counted: Redis is unreachable "
                "(cluster.on_redis_loss: refuse)",
                retry_after=max(1.0, self._node.config.heartbeat),
            )
        replicas = max(1, len(self._node.view().members))
        share = quotas.model_copy(
            update={
                "max_calls_per_minute": _part(quotas.max_calls_per_minute, replicas),
                "max_concurrent_calls": _part(quotas.max_concurrent_calls, replicas),
            }
        )
        with self._lock:
            gate = self._gates.setdefault(tenant, CallGate(share))
        try:
            gate.take(tenant, share)
        except QuotaExceeded as exc:
            raise QuotaExceeded(
                f"{exc.message} on this replica: its share of the cluster's quotas over {replicas} "
                "replicas while Redis is unreachable",
                retry_after=exc.retry_after,
            ) from None
        return Ticket(tenant, member, shared=False)

    @staticmethod
    def _key(tenant: str, what: str) -> str:
        return f"{KEY_PREFIX}{tenant}:{what}"


def _part(limit: int | None, replicas: int) -> int | None:
    """A replica's share of a cluster-wide limit, rounded up."""
    return None if limit is None else math.ceil(limit / replicas)


def _exceeded(tenant: str, quotas: Quotas, which: str, count: int, retry_ms: int) -> QuotaExceeded:
    """The refusal the script's answer describes, with CallGate's wording."""
    if which == "concurrent":
        return QuotaExceeded(
            f"tenant '{tenant}' has {count} calls in flight across the cluster "
            f"(max_concurrent_calls {quotas.max_concurrent_calls})",
            retry_after=max(0.1, min(1.0, retry_ms / 1000)),
        )
    return QuotaExceeded(
        f"tenant '{tenant}' made {count} calls in the last minute across the cluster "
        f"(max_calls_per_minute {quotas.max_calls_per_minute})",
        retry_after=max(0.1, retry_ms / 1000),
    )
