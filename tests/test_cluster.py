"""Cluster mode, item 1 of issue 21 (docs/cluster.md): membership in a real Redis and placement.

Placement is a pure function (no processes); the rest runs hubs in cluster mode against a real
`redis-server` (the `redis_server` fixture): in-process `Hub`s for the share each replica runs,
and `python -m hub serve` for `/health` and for a replica killed without a chance to leave.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
import redis
from conftest import CLUSTER_SECRET, ROOT, cluster_section, config_of, server

from actors.models import ServerState
from hub import placement
from hub.cluster import KEY_PREFIX, ClusterNode, ClusterUnavailable
from hub.config import ConfigError, parse_config
from hub.config_cluster import ClusterConfig
from hub.runtime import Hub

HEARTBEAT = 0.2  # seconds: the key lives 0.6 s
SERVERS = [(f"t{i % 7}", f"s{i}") for i in range(1000)]


# --------------------------------------------------------------------------- placement (pure)


def test_placement_is_the_same_whatever_the_order_of_the_replicas_and_in_every_process() -> None:
    replicas = ["a", "b", "c"]
    placed = placement.assign(replicas, SERVERS)
    assert placement.assign(list(reversed(replicas)), SERVERS) == placed
    # Another interpreter (another hash salt) places every server the same way.
    code = "from hub import placement; print(placement.owner(['a', 'b', 'c'], 't1', 's8'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert other.stdout.strip() == placed[("t1", "s8")]
    assert placement.owner([], "t", "s") is None
    with pytest.raises(ValueError):
        placement.assign([], SERVERS)


def test_placement_spreads_1000_servers_over_3_replicas_evenly() -> None:
    counts = Counter(placement.assign(["a", "b", "c"], SERVERS).values())
    assert set(counts) == {"a", "b", "c"}
    assert all(333 - 60 <= n <= 333 + 60 for n in counts.values()), counts


def test_a_replica_that_joins_takes_only_its_share_and_one_that_leaves_gives_up_only_its_own() -> None:
    before = placement.assign(["a", "b", "c"], SERVERS)
    joined = placement.assign(["a", "b", "c", "d"], SERVERS)
    moved = [s for s in SERVERS if before[s] != joined[s]]
    assert all(joined[s] == "d" for s in moved)  # nothing moves between the replicas already there
    assert 250 - 60 <= len(moved) <= 250 + 60  # about a quarter: d's share
    left = placement.assign(["a", "c"], SERVERS)
    moved = [s for s in SERVERS if before[s] != left[s]]
    assert {before[s] for s in moved} == {"b"}  # only b's servers move
    assert all(left[s] == before[s] for s in SERVERS if before[s] != "b")


def test_a_replicas_share_is_what_placement_gives_it() -> None:
    servers = {"acme": ["x", "y", "z"], "beta": ["x"]}
    shares = [placement.share(r, ["a", "b", "c"], servers) for r in ("a", "b", "c")]
    for tenant, names in servers.items():
        owned = [name for share in shares for name in share[tenant]]
        assert sorted(owned) == sorted(names)  # each server in exactly one share
    assert placement.share("a", [], servers) == {t: frozenset(n) for t, n in servers.items()}  # alone: all


# --------------------------------------------------------------------------- configuration


def test_the_cluster_section_its_defaults_and_its_errors() -> None:
    config = parse_config(
        "tenants: {}\ncluster: {redis_url: 'redis://:pw@127.0.0.1:1/0', "
        f"secret: {CLUSTER_SECRET}, heartbeat: 2}}\n"
    )
    assert config.cluster is not None
    assert config.cluster.ttl == 6.0
    assert config.cluster.resolved_replica_id() == f"{os.uname().nodename}-{os.getpid()}"
    assert "pw" not in repr(config.cluster)  # the URL is a secret
    assert CLUSTER_SECRET not in repr(config.cluster)  # and so is the secret
    assert config.cluster.advertised("0.0.0.0", 8080) == f"http://{os.uname().nodename}:8080"
    assert config.cluster.advertised("127.0.0.1", 8080) == "http://127.0.0.1:8080"
    assert parse_config("tenants: {}\n").cluster is None
    with pytest.raises(ConfigError) as caught:
        parse_config(
            "tenants: {}\ncluster: {redis_url: x, secret: too-short-a-secret, replica_id: 'a b', "
            "heartbeat: 0, port: 1, advertise_url: 'ftp://x'}\n"
        )
    text = str(caught.value)
    for problem in (
        "cluster.replica_id: must match",
        "cluster.heartbeat: must be >=",
        "cluster.port: unknown",
        "cluster.secret: must be at least 32 characters",
        "cluster.advertise_url: must match",
    ):
        assert problem in text, text
    assert "too-short" not in text  # (a secret is never echoed)
    with pytest.raises(ConfigError, match=r"cluster\.secret: 'secret' is required"):
        parse_config("tenants: {}\ncluster: {redis_url: x}\n")


def test_a_hub_without_a_cluster_section_never_imports_redis(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import web.app, web.rest, hub.service  # the whole service, its /health included
        from hub.config import parse_config
        from hub.runtime import Hub
        hub = Hub(parse_config("tenants: {{default: {{}}}}"), data_dir={str(tmp_path)!r}).start()
        assert hub.cluster is None
        hub.start_tenant("default")
        hub.stop()
        print("redis" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- membership in Redis


def _cluster(url: str, replica: str, heartbeat: float = HEARTBEAT) -> dict[str, object]:
    return cluster_section(url, replica, heartbeat)


def test_replicas_join_see_each_other_and_one_that_stops_leaves_at_once(redis_server: str) -> None:
    a = ClusterNode(ClusterConfig.model_validate(_cluster(redis_server, "a"))).join()
    b = ClusterNode(ClusterConfig.model_validate(_cluster(redis_server, "b"))).join()
    try:
        assert b.view().members == ("a", "b") and b.view().redis_ok
        assert a.wait_for(lambda v: v.members == ("a", "b"), 5)  # a's next heartbeat sees b
        client = redis.Redis.from_url(redis_server)
        assert 0 < client.pttl(KEY_PREFIX + "a") <= 600  # 3 heartbeats
        b.leave()
        assert client.exists(KEY_PREFIX + "b") == 0  # deleted at once, not left to expire
        assert a.wait_for(lambda v: v.members == ("a",), 5)
        client.close()
    finally:
        a.leave()
        b.leave()


def test_a_replica_that_cannot_reach_redis_starts_nothing(tmp_path: Path) -> None:
    import socket

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))  # bound, never listening: connections to it are refused
        url = f"redis://127.0.0.1:{unused.getsockname()[1]}/0"
        hub = Hub(
            config_of({"acme": {"servers": {"x": server()}}}, cluster=_cluster(url, "a")), data_dir=tmp_path
        )
        with pytest.raises(ClusterUnavailable, match="cannot reach Redis"):
            hub.start()
        hub.stop()  # (a hub whose start failed still stops cleanly)


def test_serve_without_redis_exits_1_with_one_line_that_never_shows_the_url(tmp_path: Path) -> None:
    import socket

    from helpers.served import write_config

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"redis://:redis-password-123@127.0.0.1:{unused.getsockname()[1]}/0"
        config = write_config(tmp_path, {"acme": {"servers": {"x": server()}}}, cluster=_cluster(url, "a"))
        argv = [sys.executable, "-m", "hub", "serve", "--config", str(config), "--port", "0"]
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 1
    assert "mcp-hub: cluster: cannot reach Redis: " in done.stderr.splitlines()[-1]
    assert "redis-password-123" not in done.stderr + done.stdout


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_hub_stdio_ignores_the_cluster_section_and_serves_every_server_of_its_tenant(
    tmp_path: Path,
) -> None:
    import socket

    import yaml
    from helpers.facade import facade, write_config

    config = write_config(tmp_path, {"t": {"servers": {"one": server(), "two": server()}}}, auto_start=True)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))  # no Redis there: a replica could not even start
        data = yaml.safe_load(config.read_text())
        data["cluster"] = _cluster(f"redis://127.0.0.1:{unused.getsockname()[1]}/0", "a")
        config.write_text(yaml.safe_dump(data))
        async with facade(config, "t", "legacy") as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
    assert {"one__pid", "two__pid"} <= names


def test_three_replicas_each_run_their_share_and_together_every_server_once(
    redis_server: str, tmp_path: Path
) -> None:
    names = {"acme": [f"a{i}" for i in range(4)], "beta": [f"b{i}" for i in range(3)]}
    tenants = {t: {"servers": {s: server() for s in servers}} for t, servers in names.items()}
    replicas = ("r1", "r2", "r3")
    hubs = [
        # (a longer heartbeat here: on a loaded machine a replica must not drop out while tenants start)
        Hub(config_of(tenants, cluster=_cluster(redis_server, r, heartbeat=1.0)), data_dir=tmp_path / r)
        for r in replicas
    ]
    try:
        for hub in hubs:
            hub.start()
        nodes = [hub.cluster for hub in hubs]
        assert all(node is not None and node.members(refresh=True) == replicas for node in nodes)
        outcomes = [{t: hub.start_tenant(t) for t in tenants} for hub in hubs]  # after all joined
        running: Counter[tuple[str, str]] = Counter()
        for hub, node, outcome in zip(hubs, nodes, outcomes, strict=True):
            assert node is not None
            # (`servers()` lists the whole cluster's servers, each with the replica that runs it)
            mine = {
                (s.tenant, s.server)
                for s in hub.servers()
                if s.state is ServerState.RUNNING and s.replica == node.replica_id
            }
            assert mine == {(t, s) for t, owned in node.share(names).items() for s in owned}
            running.update(mine)
            for tenant, servers in names.items():
                for name in servers:
                    owner = placement.owner(replicas, tenant, name)
                    if owner != node.replica_id:
                        assert outcome[tenant][name] == f"elsewhere: replica {owner} runs it"
        every = {(t, s) for t, servers in names.items() for s in servers}
        assert set(running) == every and set(running.values()) == {1}  # all of them, each exactly once
    finally:
        for hub in hubs:
            hub.stop()
    client = redis.Redis.from_url(redis_server)
    assert list(client.scan_iter(match=KEY_PREFIX + "*")) == []  # each deleted its key as it stopped
    # and withdrew what it published of its servers (`hub.cluster_catalog`)
    assert all(client.hlen(key) == 0 for key in client.scan_iter(match="mcp-hub:servers:*"))
    client.close()


def test_health_reports_the_replica_and_a_killed_replica_leaves_within_the_ttl(
    redis_server: str, tmp_path: Path
) -> None:
    from helpers.served import start_hub, write_config

    folder = tmp_path / "killed"
    folder.mkdir()
    tenants = {"acme": {"servers": {f"a{i}": server() for i in range(5)}}}
    node = ClusterNode(ClusterConfig.model_validate(_cluster(redis_server, "stays"))).join()
    served = start_hub(write_config(folder, tenants, cluster=_cluster(redis_server, "dies")), folder)
    try:
        assert node.wait_for(lambda v: v.members == ("dies", "stays"), 5)
        health = served.get("/health")
        assert health.status == 200
        cluster = health.body["components"]["cluster"]
        expected = len(
            placement.share("dies", ["dies", "stays"], {"acme": list(tenants["acme"]["servers"])})["acme"]
        )
        assert cluster == {
            "replica_id": "dies",
            "members": ["dies", "stays"],
            "servers_owned": expected,
            "servers_running": 0,  # (its tenant was not started)
            "redis": "reachable",
            "quotas": "shared",
        }
        served.proc.send_signal(signal.SIGKILL)  # no chance to delete its key: it must expire
        served.proc.wait(10)
        assert node.wait_for(lambda v: v.members == ("stays",), 3 * HEARTBEAT + 2 * HEARTBEAT + 1)
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait(10)
        served.proc.stdout.close()  # type: ignore[union-attr]
        node.leave()
