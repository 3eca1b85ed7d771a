"""Idempotency keys of tool calls: the `Idempotency-Key` request header (IETF draft
httpapi-idempotency-key-header) on `POST /api/tools/{name}[/call]` and on a POST of the MCP
facade over HTTP that carries one `tools/call` (`web.facade.Facade.call`; docs/cluster.md,
"Failover of calls"). The shipped HAProxy sets one on a tool call whose client sent none.

A client, or a load balancer whose replica died mid-request, may send a keyed request again. The
hub that receives a keyed call records the key, per tenant, before the call runs: with the replica
that received it and a fingerprint of the call (SHA-256 of the tool id and the canonical JSON of
its arguments). In a cluster the record is in Redis, shared by the replicas
(`SET mcp-hub:idem:<tenant>:<sha256 of the key> <record> NX PX <ttl>`); on a lone hub, in a bounded
dict in memory. Both keep it for `hub.timeouts.IDEMPOTENCY_KEY_TTL` (10 minutes). Then:

- a key not seen: the call runs;
- a key seen with another call (another tool, other arguments): `IdempotencyKeyReused` (422);
- a key seen with the same call, of a tool that says a second run does no harm (`readOnlyHint` or
  `idempotentHint`: `hub.failover.harmless_to_retry`): the call runs again;
- a key seen with the same call of any other tool: `DuplicateCall` (409), naming the replica that
  received it first: it may have run there, and the hub does not run it twice.

A call that fails before it reaches a server (bad arguments, unknown tool, server not running, a
quota, the hub stopping) forgets the record it made, so the client may send it again with the same
key. With Redis out of reach the call runs unguarded (a warning, once per loss); Redis is not
tried again before a heartbeat newer than the failure reaches Redis.

Threads: `claim` and `forget` block on a Redis round trip in a cluster: `KeyedCall` runs them in
the loop's executor, never on the loop. The in-memory store never blocks beyond its lock.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from actors.models import ToolEntry
from hub import timeouts
from hub.cluster import ClusterNode, describe
from hub.errors import (
    BadRequest,
    DuplicateCall,
    IdempotencyKeyReused,
    NotFound,
    NotRunning,
    QuotaExceeded,
    ShuttingDown,
)
from hub.failover import harmless_to_retry

if TYPE_CHECKING:
    from hub.runtime import Hub

__all__ = ["HEADER", "KEY_PREFIX", "IdempotencyKeys", "KeyedCall", "keyed_call", "parse_key"]

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
KEY_PREFIX = "mcp-hub:idem:"
MAX_KEY_LENGTH = 255
MAX_REMEMBERED = 100_000  # keys a lone hub remembers at most (the oldest are forgotten first)
# Errors that say the call never reached a server: its record is forgotten.
NEVER_RAN = (BadRequest, NotFound, NotRunning, QuotaExceeded, ShuttingDown)
# Deletes a record only if this claim still holds it.
_FORGET = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"

T = TypeVar("T")


def parse_key(values: list[str]) -> str | None:
    """The key of a request's `Idempotency-Key` header values (None: no header). A Structured
    Field string (`"..."`) is taken without its quotes.

    Raises:
        BadRequest: more than one header, or a key that is empty, longer than 255 characters or not
            printable ASCII.
    """
    if not values:
        return None
    if len(values) > 1:
        raise BadRequest(f"send one {HEADER} header, not {len(values)}")
    key = values[0].strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not key:
        raise BadRequest(f"the {HEADER} header is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise BadRequest(f"the {HEADER} header is longer than {MAX_KEY_LENGTH} characters")
    if not all(" " <= c <= "~" for c in key):
        raise BadRequest(f"the {HEADER} header must be printable ASCII")
    return key


def fingerprint(tool_id: str, arguments: Mapping[str, Any]) -> str:
    """SHA-256 of the tool id and the canonical JSON of its arguments (sorted keys, no spaces)."""
    text = json.dumps([tool_id, arguments], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Record:
    """What is kept of a key: who received its call first, and which call it was.

    Attributes:
        replica: the replica that received it (None: a lone hub).
        fingerprint: `fingerprint` of its call.
        token: unique to the claim that wrote it (so that only it forgets it).
    """

    replica: str | None
    fingerprint: str
    token: str

    def encoded(self) -> str:
        return json.dumps({"replica": self.replica, "fingerprint": self.fingerprint, "token": self.token})

    @staticmethod
    def decoded(text: str) -> Record | None:
        try:
            data = json.loads(text)
            return Record(data.get("replica"), str(data["fingerprint"]), str(data.get("token", "")))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None  # (not written by this code: treated as a new key)


class IdempotencyKeys:
    """The keys seen by this hub (lone) or by the cluster (in Redis). See the module.

    Args:
        node: this replica's cluster node (its Redis client, its id, its heartbeat), or None on a
            lone hub: the keys are then kept in memory.
        ttl: how long a key is remembered, in seconds.
    """

    def __init__(self, node: ClusterNode | None, ttl: float = timeouts.IDEMPOTENCY_KEY_TTL) -> None:
        self._node = node
        self._ttl = ttl
        self._lock = threading.Lock()
        self._memory: OrderedDict[str, tuple[float, Record]] = OrderedDict()  # (expiry, record), oldest first
        self._failed_at: float | None = None  # (`time.time()`) of the last failed call to Redis

    @property
    def replica(self) -> str | None:
        """The replica that records keys (None: a lone hub)."""
        return self._node.replica_id if self._node is not None else None

    @property
    def ttl(self) -> float:
        """How long a key is remembered, in seconds."""
        return self._ttl

    @property
    def shared(self) -> bool:
        """Whether claims go to Redis (a cluster): blocking, to be run in an executor."""
        return self._node is not None

    def claim(self, tenant: str, key: str, record: Record) -> Record | None:
        """Record `key` of `tenant` as `record` unless it is known: None if it was new (or Redis
        could not be reached), else the record it already had. Blocking in a cluster."""
        name = _name(tenant, key)
        if self._node is None:
            return self._claim_in_memory(name, record)
        if not self._redis_usable():
            return None
        redis = self._node.redis
        try:
            for _ in range(2):  # (a record that expires between the two commands: once more)
                if redis.set(name, record.encoded(), nx=True, px=max(1, round(self._ttl * 1000))):
                    return None
                found = redis.get(name)
                if found is not None:
                    return Record.decoded(str(found))
        except self._node.errors as exc:
            self._lost(exc)
        return None

    def forget(self, tenant: str, key: str, record: Record) -> None:
        """Forget `key` if `record`'s claim still holds it (its call never ran). Blocking in a
        cluster; never raises."""
        name = _name(tenant, key)
        if self._node is None:
            with self._lock:
                kept = self._memory.get(name)
                if kept is not None and kept[1].token == record.token:
                    del self._memory[name]
            return
        try:
            self._node.redis.eval(_FORGET, 1, name, record.encoded())  # type: ignore[no-untyped-call]
        except self._node.errors as exc:
            log.debug("idempotency: a key could not be forgotten (it expires): %s", describe(exc))

    def _claim_in_memory(self, name: str, record: Record) -> Record | None:
        now = time.monotonic()
        with self._lock:
            while self._memory:  # (oldest first: each key lives the same ttl)
                oldest = next(iter(self._memory.values()))
                if oldest[0] > now and len(self._memory) < MAX_REMEMBERED:
                    break
                self._memory.popitem(last=False)
            kept = self._memory.get(name)
            if kept is not None:
                return kept[1]
            self._memory[name] = (now + self._ttl, record)
            return None

    def _redis_usable(self) -> bool:
        """Whether to try Redis: not since a failure, until a heartbeat newer than it reached it."""
        assert self._node is not None
        failed = self._failed_at
        if failed is None:
            return True
        view = self._node.view()
        if view.redis_ok and view.seen_at > failed:
            self._failed_at = None
            log.info("idempotency: keys recorded in Redis again")
            return True
        return False

    def _lost(self, exc: BaseException) -> None:
        with self._lock:
            first, self._failed_at = self._failed_at is None, time.time()
        if first:
            log.warning(
                "idempotency: Redis unreachable: keyed tool calls run without their key recorded "
                "until it is back: %s",
                describe(exc),
            )


def _name(tenant: str, key: str) -> str:
    return f"{KEY_PREFIX}{tenant}:{hashlib.sha256(key.encode()).hexdigest()}"


class KeyedCall:
    """One tool call carrying an `Idempotency-Key` (on the web loop).

    Args:
        keys: the hub's keys.
        tenant: the calling tenant.
        tool_id: the tool's catalog id as requested.
        arguments: its arguments.
        key: the request's key (`parse_key`).
        shown_as: the tool's name in messages (the facade's name for it; default: its entry's id).
    """

    def __init__(
        self,
        keys: IdempotencyKeys,
        tenant: str,
        tool_id: str,
        arguments: Mapping[str, Any],
        key: str,
        shown_as: str | None = None,
    ) -> None:
        self._keys = keys
        self._tenant = tenant
        self._key = key
        self._shown_as = shown_as
        self._record = Record(keys.replica, fingerprint(tool_id, arguments), uuid.uuid4().hex)
        self._claimed = False

    async def run(self, call: Callable[[Callable[[ToolEntry], Awaitable[None]]], Awaitable[T]]) -> T:
        """`call(admit)`, where the call path awaits `admit(entry)` once its tool's route is
        resolved, before the call runs; the record is forgotten if the call never reached a server."""
        try:
            return await call(self.admit)
        except NEVER_RAN:
            if self._claimed:
                await self._blocking(self._keys.forget, self._tenant, self._key, self._record)
            raise

    async def admit(self, entry: ToolEntry) -> None:
        """Claim the key for this call of `entry`'s tool, or refuse it (see the module).

        Raises:
            IdempotencyKeyReused: the key was used for another call.
            DuplicateCall: the same call was received before and its tool is not harmless to run twice.
        """
        known = await self._blocking(self._keys.claim, self._tenant, self._key, self._record)
        if known is None:
            self._claimed = True
            return
        if known.fingerprint != self._record.fingerprint:
            raise IdempotencyKeyReused(
                f"the {HEADER} of this request was used within the last "
                f"{self._keys.ttl / 60:g} minutes for another call (another tool or other "
                "arguments): send a new key for a new call"
            )
        if harmless_to_retry(entry):
            log.info("idempotency: %s sent again: run again (its tool is read-only or idempotent)", entry.id)
            return
        where = f"on replica '{known.replica}'" if known.replica else "on this hub"
        tool = self._shown_as or entry.id
        raise DuplicateCall(
            f"this call of tool '{tool}' with this {HEADER} was received before {where} and may "
            "already have run: the hub does not run a tool twice unless it is marked read-only or "
            "idempotent (readOnlyHint, idempotentHint); send a new key to call it again"
        )

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        if not self._keys.shared:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


_KEYS: weakref.WeakKeyDictionary[Hub, IdempotencyKeys] = weakref.WeakKeyDictionary()
_KEYS_LOCK = threading.Lock()


def keyed_call(
    hub_: Hub,
    tenant: str,
    tool_id: str,
    arguments: Mapping[str, Any],
    key: str,
    shown_as: str | None = None,
) -> KeyedCall:
    """A `KeyedCall` on the hub's one `IdempotencyKeys` (made on first use)."""
    with _KEYS_LOCK:
        keys = _KEYS.get(hub_)
        if keys is None:
            keys = _KEYS[hub_] = IdempotencyKeys(hub_.cluster)
    return KeyedCall(keys, tenant, tool_id, arguments, key, shown_as)
