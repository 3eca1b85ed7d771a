"""Rebalancing (issue 21, item 5; docs/cluster.md, "Rebalancing"): when the live set changes, each
replica starts the servers it gained and stops those it lost, so every server runs exactly once.

The first tests drive `Rebalancer` with a fake node and fake tenants (no processes); the others
run real hubs against a real `redis-server` (the `redis_server` fixture): in-process `Hub`s, and a
`python -m hub serve` replica that is SIGKILLed. Waits are on each hub's events (its
`EventBoard`) and on each node's snapshots, with deadlines: never a sleep.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import pykka
import pytest
from conftest import cluster_section, config_of, server, wait_until

from actors.models import ServerState, ServerStatus
from actors.tenant import TenantActorProxy
from hub import placement
from hub.cluster import ClusterNode, ClusterView
from hub.config import parse_config
from hub.rebalance import Rebalancer
from hub.runtime import Hub
from web.rest import cluster_health

HEARTBEAT = 1.0  # seconds (the key lives 3 s): a loaded machine must not drop a replica by mistake
NAMES = {"acme": ["a0", "a1", "a2", "a3"], "beta": ["b0", "b1", "b2"]}
EVERY = {(t, s) for t, names in NAMES.items() for s in names}


# --------------------------------------------------------------------------- the logic, no processes


class _Node:
    """What `Rebalancer` reads of a `ClusterNode`: its id and the live set."""

    def __init__(self, replica_id: str, members: Iterable[str]) -> None:
        self.replica_id = replica_id
        self.members = tuple(sorted(members))

    def view(self) -> ClusterView:
        return ClusterView(self.replica_id, self.members, True, None, time.time())

    def elsewhere(self, tenant: str, servers: Iterable[str]) -> dict[str, str]:
        live = {*self.members, self.replica_id}
        return {
            s: "elsewhere"
            for s in servers
            if placement.owner(live, tenant, s) != self.replica_id  # as ClusterNode.elsewhere
        }


class _Tenant:
    """A tenant's asks as `Rebalancer` makes them, answered from a set of running servers."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.running: set[str] = set()
        self.asks: list[str] = []

    def _answer(self, value: Any) -> pykka.Future[Any]:
        future: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
        future.set(value)
        return future

    def _status(self, server: str) -> ServerStatus:
        state = ServerState.RUNNING if server in self.running else ServerState.STOPPED
        return ServerStatus(self.name, server, state)

    def start_servers(self, elsewhere: Mapping[str, str] | None = None) -> pykka.Future[Any]:
        self.asks.append("start_servers")
        config = parse_config(_yaml()).tenants[self.name]
        starts = [n for n, c in config.servers.items() if c.enabled and not c.on_demand]
        self.running |= {n for n in starts if n not in (elsewhere or {})}
        return self._answer({})

    def status(self, server: str) -> pykka.Future[Any]:
        return self._answer(self._status(server))

    def start_server(self, server: str) -> pykka.Future[Any]:
        self.asks.append(f"start {server}")
        self.running.add(server)
        return self._answer(self._status(server))

    def stop_server(self, server: str) -> pykka.Future[Any]:
        self.asks.append(f"stop {server}")
        self.running.discard(server)
        return self._answer(self._status(server))

    def stop_servers(self) -> pykka.Future[Any]:
        self.running.clear()
        return self._answer({})


def _yaml() -> str:
    servers = {f"s{i}": "{command: x}" for i in range(12)}
    servers["lazy"] = "{command: x, lifecycle: on_demand}"
    servers["idle"] = "{command: x, enabled: false}"
    body = ", ".join(f"{k}: {v}" for k, v in servers.items())
    return f"tenants: {{acme: {{servers: {{{body}}}}}}}\n"


def _rebalancer(node: _Node, tenant: _Tenant) -> Rebalancer:
    config = parse_config(_yaml())
    return Rebalancer(cast(ClusterNode, node), lambda name: cast(TenantActorProxy, tenant), lambda: config)


def _share(replica: str, live: Iterable[str]) -> set[str]:
    names = list(parse_config(_yaml()).tenants["acme"].servers)
    starts = [n for n in names if n not in ("lazy", "idle")]
    return set(placement.share(replica, list(live), {"acme": starts})["acme"])


def test_a_replica_stops_what_a_newcomer_wins_and_starts_what_a_leaver_had() -> None:
    node, tenant = _Node("a", ["a", "b"]), _Tenant("acme")
    rebalancer = _rebalancer(node, tenant)
    rebalancer.start_tenant("acme")
    assert tenant.running == _share("a", ["a", "b"])
    node.members = ("a", "b", "c")  # c joins: a stops what c wins, and only that
    moved = rebalancer.rebalance()
    assert tenant.running == _share("a", ["a", "b", "c"])
    lost = _share("a", ["a", "b"]) - _share("a", ["a", "b", "c"])
    assert lost and moved == len(lost) and tenant.asks[1:] == [f"stop {n}" for n in sorted(lost)]
    node.members = ("a", "c")  # b leaves: a starts what it now ranks first for
    tenant.asks.clear()
    rebalancer.rebalance()
    gained = _share("a", ["a", "c"]) - _share("a", ["a", "b", "c"])
    assert gained and tenant.asks == [f"start {n}" for n in sorted(gained)]
    assert tenant.running == _share("a", ["a", "c"])
    assert "lazy" not in tenant.running and "idle" not in tenant.running  # left alone
    node.members = ("a",)  # alone: everything that starts with its tenant, nothing more
    rebalancer.rebalance()
    assert tenant.running == {f"s{i}" for i in range(12)}
    assert rebalancer.rebalance() == 0  # nothing changed: nothing moves


def test_a_replica_that_started_everything_alone_converges_when_it_sees_the_other() -> None:
    node, tenant = _Node("a", ["a"]), _Tenant("acme")  # b joined at the same moment, unseen yet
    rebalancer = _rebalancer(node, tenant)
    rebalancer.start_tenant("acme")
    assert tenant.running == {f"s{i}" for i in range(12)}
    node.members = ("a", "b")
    rebalancer.rebalance()
    assert tenant.running == _share("a", ["a", "b"])


def test_servers_started_by_hand_and_stopped_tenants_are_left_alone() -> None:
    node, tenant = _Node("a", ["a", "b"]), _Tenant("acme")
    rebalancer = _rebalancer(node, tenant)
    rebalancer.start_tenant("acme")
    by_hand = sorted(_share("b", ["a", "b"]))[0]  # b's, started here by hand
    tenant.running.add(by_hand)
    node.members = ("a", "b", "c")
    rebalancer.rebalance()
    assert by_hand in tenant.running  # placement never gave it to a: not a's to stop
    rebalancer.stop_tenant("acme")
    node.members = ("a",)
    tenant.asks.clear()
    assert rebalancer.rebalance() == 0 and tenant.asks == []  # a stopped tenant is not restarted


# --------------------------------------------------------------------------- real hubs, real Redis


def _tenants() -> dict[str, dict[str, object]]:
    return {t: {"servers": {s: server() for s in names}} for t, names in NAMES.items()}


def _replica(url: str, replica: str, folder: Path) -> Hub:
    cluster = cluster_section(url, replica, HEARTBEAT)
    config = config_of(_tenants(), cluster=cluster, orchestrator={"auto_start": True})
    return Hub(config, data_dir=folder / replica)


def _running(hub: Hub, *states: ServerState) -> set[tuple[str, str]]:
    """The servers `hub` runs (or in one of `states`), as its events last said (never blocks)."""
    out = set()
    for tenant, server_name in EVERY:
        status = hub.board.status(tenant, server_name)
        if status is not None and status.state in (states or (ServerState.RUNNING,)):
            out.add((tenant, server_name))
    return out


def _active(hub: Hub) -> set[tuple[str, str]]:
    """The servers `hub` runs or has not stopped: starting, running, in backoff or failed."""
    return _running(hub, *(s for s in ServerState if s is not ServerState.STOPPED))


def _share_of(replica: str, live: Iterable[str]) -> set[tuple[str, str]]:
    return {(t, s) for t, names in placement.share(replica, list(live), NAMES).items() for s in names}


def _wait_running(hub: Hub, servers: set[tuple[str, str]], timeout: float) -> None:
    """Wait (on the hub's events) until `hub` runs exactly `servers`, and nothing else starts."""

    def runs_exactly() -> bool:
        return _running(hub) == servers == _active(hub)

    assert hub.board.wait_for(runs_exactly, timeout), (_active(hub), servers)


def _settle(hubs: list[Hub], timeout: float) -> None:
    """Wait until each hub sees exactly the others and runs exactly its share of that live set;
    then every server runs exactly once."""
    live = tuple(sorted(h.cluster.replica_id for h in hubs if h.cluster is not None))
    deadline = time.monotonic() + timeout
    for hub in hubs:
        node = hub.cluster
        assert node is not None
        left = deadline - time.monotonic()
        assert node.wait_for(lambda v: v.members == live, left), (node.replica_id, node.view(), live)
        _wait_running(hub, _share_of(node.replica_id, live), deadline - time.monotonic())
    counts = Counter(s for hub in hubs for s in _active(hub))
    assert set(counts) == EVERY and set(counts.values()) == {1}, counts
    for hub in hubs:
        assert hub.cluster is not None
        configured = {t: tuple(names) for t, names in NAMES.items()}
        health = cluster_health(hub.cluster, configured, hub.servers())  # what /health says
        assert health["members"] == list(live)
        assert health["servers_owned"] == len(_share_of(hub.cluster.replica_id, live))
        assert health["servers_running"] == health["servers_owned"]


def test_replicas_share_the_servers_a_newcomer_takes_its_share_and_a_leaver_hands_over_its_own(
    redis_server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hub.rebalance")
    settle = 3 * HEARTBEAT + 30  # a heartbeat to see the change, then starts and stops
    r1 = _replica(redis_server, "r1", tmp_path)
    r2 = _replica(redis_server, "r2", tmp_path)
    r3 = _replica(redis_server, "r3", tmp_path)
    started: list[Hub] = []
    try:
        # r1 starts alone and starts everything; r2 joins and starts its share; r1 stops r2's share.
        for hub in (r1, r2):
            hub.start()
            started.append(hub)
        assert _share_of("r2", ["r1", "r2"])  # (so something had to move)
        _settle([r1, r2], settle)
        for tenant, name in _share_of("r2", ["r1", "r2"]):  # one log line per move
            line = f"cluster: rebalance: stopping {tenant}/{name}: replica r2 runs it now"
            assert line in caplog.messages
        # r3 joins: what it wins moves to it, from whichever replica had it; nothing else moves.
        before = {h.cluster.replica_id: _running(h) for h in (r1, r2) if h.cluster is not None}
        r3.start()
        started.append(r3)
        _settle([r1, r2, r3], settle)
        won = _share_of("r3", ["r1", "r2", "r3"])
        assert won
        for hub in (r1, r2):
            assert hub.cluster is not None
            assert _running(hub) == before[hub.cluster.replica_id] - won  # stopped only what r3 won
            for tenant, name in won & before[hub.cluster.replica_id]:
                assert hub.server(tenant, name).state is ServerState.STOPPED
        # r2 stops cleanly (its key is deleted at once): its servers start on r1 and r3.
        had = _running(r2)
        r2.stop()
        started.remove(r2)
        _settle([r1, r3], settle)
        assert had <= _running(r1) | _running(r3)
    finally:
        for hub in started:
            hub.stop()
    moves = [r.getMessage() for r in caplog.records if "cluster: rebalance:" in r.getMessage()]
    assert any("stopping" in m and "replica r3 runs it now" in m for m in moves), moves
    assert any("starting" in m and "this replica runs it now" in m for m in moves), moves


def test_the_servers_of_a_sigkilled_replica_run_on_the_survivor_within_ttl_and_start_time(
    redis_server: str, tmp_path: Path
) -> None:
    from helpers.served import start_hub, write_config

    folder = tmp_path / "dies"
    folder.mkdir()
    stays = _replica(redis_server, "stays", tmp_path)
    cluster = cluster_section(redis_server, "dies", HEARTBEAT)
    config = write_config(folder, _tenants(), cluster=cluster, orchestrator={"auto_start": True})
    stays.start()
    served = None
    try:
        served = start_hub(config, folder)
        node = stays.cluster
        assert node is not None
        assert node.wait_for(lambda v: v.members == ("dies", "stays"), 10)
        mine, theirs = _share_of("stays", ["dies", "stays"]), _share_of("dies", ["dies", "stays"])
        assert theirs
        _wait_running(stays, mine, 3 * HEARTBEAT + 30)

        def dies_runs_its_share() -> bool:
            cluster = served.get("/health").body["components"]["cluster"]
            return cluster["servers_running"] == cluster["servers_owned"] == len(theirs)

        # (another process, whose /health is the only way to ask: polled, with a deadline)
        assert wait_until(dies_runs_its_share, 30)  # so each server runs exactly once
        served.proc.send_signal(signal.SIGKILL)  # its key is not deleted: it must expire
        killed = time.monotonic()
        served.proc.wait(10)
        limit = node.config.ttl + HEARTBEAT + 20  # ttl + one heartbeat + the start time
        _wait_running(stays, EVERY, limit)
        assert time.monotonic() - killed <= limit
        assert node.view().members == ("stays",)
    finally:
        if served is not None:
            if served.proc.poll() is None:
                served.proc.kill()
                served.proc.wait(10)
            served.proc.stdout.close()  # type: ignore[union-attr]
        stays.stop()
