"""A cluster answers as one hub (issue 21, items 2 and 4): three real replicas (`python -m hub
serve`) on a real Redis; every replica lists every server, with the replica that runs it, and
forwards calls of the servers another replica runs to it over the internal channel.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import cluster_section, server, server_pids, wait_until
from helpers.served import ServedHub, start_hub, stop_hub, write_config

HEARTBEAT = 0.5
REPLICAS = ("r1", "r2", "r3")
SERVERS = tuple(f"s{i}" for i in range(6))


def _tenants() -> dict[str, Any]:
    return {"acme": {"servers": {name: server() for name in SERVERS}}}


@pytest.fixture
def cluster(redis_server: str, tmp_path: Path) -> Iterator[dict[str, ServedHub]]:
    """Three replicas of one cluster, every server running somewhere."""
    hubs: dict[str, ServedHub] = {}
    try:
        for replica in REPLICAS:
            folder = tmp_path / replica
            folder.mkdir()
            section = cluster_section(redis_server, replica, HEARTBEAT)
            config = write_config(folder, _tenants(), cluster=section, orchestrator={"auto_start": True})
            hubs[replica] = start_hub(config, folder)
        # (replicas that start at once may both start a server until their heartbeats see each other)
        assert wait_until(lambda: _converged(hubs), 60), _states(hubs)
        yield hubs
    finally:
        for hub in hubs.values():
            assert stop_hub(hub) == 0, hub.log()[-3000:]


def _servers(hub: ServedHub) -> dict[str, dict[str, Any]]:
    answer = hub.get("/api/servers?tenant=acme")
    assert answer.status == 200, answer.text
    return {s["server"]: s for s in answer.body["servers"]}


def _settled(hub: ServedHub) -> bool:
    """Every server runs, as this replica lists it, on a replica that lists itself as its runner."""
    listed = _servers(hub)
    return all(s["state"] == "running" and s["replica"] in REPLICAS for s in listed.values())


def _converged(hubs: dict[str, ServedHub]) -> bool:
    """Every replica lists every server running, each on the same replica, and each runs once."""
    if not all(_settled(h) for h in hubs.values()):
        return False
    views = [{n: (s["replica"], s["pid"]) for n, s in _servers(h).items()} for h in hubs.values()]
    return all(v == views[0] for v in views) and len(server_pids()) == len(SERVERS)


def _tools(hub: ServedHub) -> list[dict[str, Any]]:
    answer = hub.get("/api/tools?tenant=acme")
    assert answer.status == 200, answer.text
    return list(answer.body["tools"])


def _states(hubs: dict[str, ServedHub]) -> str:
    return json.dumps(
        {r: {n: (s["state"], s["replica"]) for n, s in _servers(h).items()} for r, h in hubs.items()}
    )


def test_every_replica_lists_every_server_once_and_calls_reach_each_through_any(
    cluster: dict[str, ServedHub],
) -> None:
    views = {replica: _servers(hub) for replica, hub in cluster.items()}
    runs = {name: status["replica"] for name, status in views["r1"].items()}
    for view in views.values():  # the same catalog everywhere: the same runner and process per server
        assert {n: (s["replica"], s["pid"]) for n, s in view.items()} == {
            n: (s["replica"], s["pid"]) for n, s in views["r1"].items()
        }
    assert len(set(runs.values())) >= 2, runs  # (spread over the replicas)
    assert len(server_pids()) == len(SERVERS)  # each server runs exactly once across the cluster
    tools = {r: sorted(t["name"] for t in _tools(h)) for r, h in cluster.items()}
    assert tools["r1"] == tools["r2"] == tools["r3"], tools
    assert {f"{name}.echo" for name in SERVERS} <= set(tools["r1"])
    for replica, hub in cluster.items():
        for name in SERVERS:
            answer = hub.post(f"/api/tools/{name}.echo/call?tenant=acme", {"text": f"{replica}->{name}"})
            assert answer.status == 200, answer.text
            assert answer.body["structured_content"] == {"text": f"{replica}->{name}"}
