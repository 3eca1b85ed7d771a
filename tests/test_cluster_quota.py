"""Cluster-wide call quotas (issue 21, item 3): `hub.cluster_quota.SharedQuotas` on real
`ClusterNode`s (one per replica) against a real `redis-server`, with threads on every replica
calling at once; and what each replica does when Redis is lost, and when it is back.
"""

from __future__ import annotations

import logging
import math
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis
from conftest import cluster_section, missing, wait_until

from hub.cluster import ClusterNode
from hub.cluster_quota import KEY_PREFIX, SharedQuotas, Ticket
from hub.config_cluster import ClusterConfig
from hub.config_model import Quotas
from hub.errors import QuotaExceeded

HEARTBEAT = 0.2
LEASE = 30.0


class RedisProcess:
    """A `redis-server` on a fixed free port that a test may stop and start again."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing("redis-server (Debian's redis-server)")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.argv = [binary, "--save", "", "--appendonly", "no", "--port", str(self.port)]
        self.argv += ["--bind", "127.0.0.1", "--dir", str(folder)]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis.from_url(self.url, socket_timeout=1, decode_responses=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        assert wait_until(self._answers, 10)

    def _answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
        self.client.close()


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    """`redis_server`, as a process the test may stop and start again."""
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def replicas(redis_server: str) -> Iterator[Callable[..., list[SharedQuotas]]]:
    """`make(n)`: n replicas (joined `ClusterNode`s, each with its `SharedQuotas`) on `redis_server`."""
    with ExitStack() as stack:
        yield lambda n, **more: _replicas(stack, redis_server, n, **more)


def _replicas(stack: ExitStack, url: str, n: int, on_redis_loss: str = "local") -> list[SharedQuotas]:
    out = []
    for i in range(n):
        node = ClusterNode(ClusterConfig.model_validate(cluster_section(url, f"r{i}", HEARTBEAT))).join()
        stack.callback(node.leave)
        quotas = SharedQuotas(node, on_redis_loss)  # type: ignore[arg-type]
        stack.callback(quotas.close)
        out.append(quotas)
    assert wait_until(lambda: all(len(q._node.view().members) == n for q in out), 5)
    return out


def _hammer(replicas: list[SharedQuotas], threads: int, body: Callable[[SharedQuotas], None]) -> None:
    """Run `body(replica)` on `threads` threads per replica, all starting at once."""
    start = threading.Barrier(threads * len(replicas))
    failures: list[BaseException] = []

    def run(replica: SharedQuotas) -> None:
        start.wait(5)
        try:
            body(replica)
        except BaseException as exc:  # (reported below, on the test's thread)
            failures.append(exc)

    workers = [threading.Thread(target=run, args=(r,)) for r in replicas for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(15)
    assert not failures, failures


def _try(replica: SharedQuotas, quotas: Quotas, lease: float = LEASE) -> Ticket | QuotaExceeded | None:
    try:
        return replica.acquire("acme", quotas, lease)
    except QuotaExceeded as exc:
        return exc


# --------------------------------------------------------------------------- counted in Redis


def test_max_calls_per_minute_admits_exactly_n_across_all_replicas(replicas) -> None:
    cluster = replicas(3)
    quotas = Quotas(max_calls_per_minute=20)
    admitted: list[Ticket] = []
    refused: list[QuotaExceeded] = []

    def body(replica: SharedQuotas) -> None:
        for _ in range(10):
            got = _try(replica, quotas)
            (refused if isinstance(got, QuotaExceeded) else admitted).append(got)  # type: ignore[arg-type]

    _hammer(cluster, 4, body)  # 120 attempts on 3 replicas
    assert len(admitted) == 20 and len(refused) == 100
    assert {t.shared for t in admitted} == {True}
    assert (
        "made 20 calls in the last minute across the cluster (max_calls_per_minute 20)" in refused[0].message
    )
    # The oldest call leaves the window in a little under 60 s.
    assert all(55 < exc.retry_after <= 60 for exc in refused)
    assert cluster[0].state() == "shared"
    client = cluster[0]._redis
    assert client.zcard(f"{KEY_PREFIX}acme:calls") == 20
    assert 55_000 < client.pttl(f"{KEY_PREFIX}acme:calls") <= 60_000  # an idle tenant's key expires


def test_max_concurrent_calls_holds_at_most_k_across_replicas_and_released_slots_are_reused(replicas) -> None:
    cluster = replicas(3)
    quotas = Quotas(max_concurrent_calls=4)
    lock = threading.Lock()
    held = {"now": 0, "max": 0, "admitted": 0}

    def body(replica: SharedQuotas) -> None:
        for _ in range(40):
            got = _try(replica, quotas)
            if isinstance(got, Ticket):
                with lock:
                    held["now"] += 1
                    held["max"] = max(held["max"], held["now"])
                    held["admitted"] += 1
                assert replica._redis.zcard(f"{KEY_PREFIX}acme:slots") <= 4  # (what Redis counts)
                with lock:
                    held["now"] -= 1
                replica.release(got)

    _hammer(cluster, 3, body)  # 9 threads, 360 attempts
    assert held["max"] <= 4
    assert held["admitted"] > 4  # slots given back were taken again
    # Four held (on different replicas): a fifth is refused on any replica, until one is released.
    tickets = [cluster[i % 3].acquire("acme", quotas, LEASE) for i in range(4)]
    for replica in cluster:
        refused = _try(replica, quotas)
        assert isinstance(refused, QuotaExceeded)
        assert "has 4 calls in flight across the cluster (max_concurrent_calls 4)" in refused.message
        assert 0.1 <= refused.retry_after <= 1.0
    cluster[0].release(tickets[0])  # type: ignore[arg-type]
    assert isinstance(cluster[2].acquire("acme", quotas, LEASE), Ticket)


def test_a_dead_replicas_slots_free_themselves_after_the_lease(replicas) -> None:
    dead, alive = replicas(2)
    quotas = Quotas(max_concurrent_calls=2)
    for _ in range(2):
        assert dead.acquire("acme", quotas, lease=0.5) is not None  # never released
    dead._node.leave()  # (the replica is gone: nobody will release them)
    started = time.monotonic()
    assert isinstance(_try(alive, quotas), QuotaExceeded)
    assert wait_until(lambda: isinstance(_try(alive, quotas), Ticket), 5)
    assert 0.3 < time.monotonic() - started < 3


def test_a_tenant_without_call_quotas_gets_none_and_writes_nothing(replicas) -> None:
    (replica,) = replicas(1)
    assert replica.acquire("acme", Quotas(), LEASE) is None
    assert replica.acquire("acme", Quotas(max_servers=3, max_tools=10), LEASE) is None
    assert replica._redis.keys(KEY_PREFIX + "*") == []
    # Rate only: no slot to give back (release writes nothing).
    ticket = replica.acquire("acme", Quotas(max_calls_per_minute=5), LEASE)
    assert ticket is not None and not ticket.slot
    assert replica._redis.keys(KEY_PREFIX + "*") == [f"{KEY_PREFIX}acme:calls"]


# --------------------------------------------------------------------------- Redis lost


def test_without_redis_each_replica_enforces_its_share_then_redis_counts_again(
    redis_process: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    quotas = Quotas(max_calls_per_minute=5, max_concurrent_calls=10)
    with ExitStack() as stack:
        a, b = _replicas(stack, redis_process.url, 2, "local")
        assert isinstance(a.acquire("acme", quotas, LEASE), Ticket)
        caplog.set_level(logging.INFO, logger="hub.cluster_quota")
        redis_process.stop()
        # The first call after the loss fails over to the local count at once (the breaker opens).
        first = a.acquire("acme", quotas, LEASE)
        assert isinstance(first, Ticket) and not first.shared
        assert a.state() == "local"
        assert wait_until(lambda: b.state() == "local" and not b._node.view().redis_ok, 5)
        share = math.ceil(5 / 2)  # max_calls_per_minute 5 over 2 replicas
        for replica, taken in ((a, 1), (b, 0)):
            started = time.monotonic()
            got = [_try(replica, quotas) for _ in range(6)]
            assert time.monotonic() - started < 0.5  # a dead Redis costs nothing per call
            tickets = [t for t in got if isinstance(t, Ticket)]
            assert len(tickets) == share - taken
            refusal = got[-1]
            assert isinstance(refusal, QuotaExceeded)
            assert "(max_calls_per_minute 3) on this replica" in refusal.message
            assert "over 2 replicas while Redis is unreachable" in refusal.message
            for ticket in tickets:
                replica.release(ticket)
        ours = [r for r in caplog.records if r.name == "hub.cluster_quota"]
        warnings = [r for r in ours if r.levelno == logging.WARNING]
        assert len(warnings) == 2  # one per replica, however many calls
        assert not any("127.0.0.1" in r.getMessage() for r in warnings)  # (never where Redis is)

        redis_process.start()
        assert wait_until(lambda: a.state() == "shared" and b.state() == "shared", 5)
        assert sum(r.levelno == logging.INFO for r in caplog.records if r.name == "hub.cluster_quota") == 2
        ticket = b.acquire("acme", Quotas(max_concurrent_calls=1), LEASE)
        assert ticket is not None and ticket.shared
        assert redis_process.client.zcard(f"{KEY_PREFIX}acme:slots") == 1
        b.release(ticket)
        assert redis_process.client.zcard(f"{KEY_PREFIX}acme:slots") == 0


def test_without_redis_refuse_refuses_only_tenants_with_call_quotas(redis_process: RedisProcess) -> None:
    with ExitStack() as stack:
        (replica,) = _replicas(stack, redis_process.url, 1, "refuse")
        redis_process.stop()
        assert wait_until(lambda: replica.state() == "refusing", 5)
        refused = _try(replica, Quotas(max_concurrent_calls=10))
        assert isinstance(refused, QuotaExceeded)
        why = "Redis is unreachable (cluster.on_redis_loss: refuse)"
        assert refused.message == f"the call quotas of tenant 'acme' cannot be counted: {why}"
        assert replica.acquire("acme", Quotas(max_servers=1), LEASE) is None
        redis_process.start()
        assert wait_until(lambda: replica.state() == "shared", 5)
        assert isinstance(replica.acquire("acme", Quotas(max_concurrent_calls=10), LEASE), Ticket)
