"""Benchmark of a cluster (docs/cluster.md): the cost of forwarding a call to the replica that
runs its server, and the throughput of three replicas against one hub, measured in the same run.

Run from the repository root after the README's install command (it needs Debian's
`redis-server`, which tests/setup.sh installs):

    python bench/bench_cluster.py [--calls 1000] [--seconds 10] [--clients 32] [--servers 6]

Starts a `redis-server`, three replicas (`python -m hub serve` with `cluster:`) sharing `--servers`
test servers of one tenant, and a lone hub (no `cluster:`) with as many servers. Prints:
- p50/p99 of one `echo` call through `POST /api/tools/{name}` on replica r1, to a server r1 runs
  and to one another replica runs (forwarded over the internal channel), taking turns 20 calls at
  a time; the difference of the p50s (target <= +1 ms);
- aggregate calls/s of `--clients` HTTP keep-alive clients over every server: against the lone hub,
  and spread over the three replicas (each call on the replica a client is connected to, forwarded
  when another runs its server), taking turns one second at a time; their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from _common import ROOT, Caller, free_port, percentiles, rotate, served_hub, wait_port, write_hub_config
from bench_rest import RawHttp

TEST_SERVER = str(ROOT / "tests" / "servers" / "testserver.py")
SECRET = "bench-cluster-secret-0123456789abcdef"
REPLICAS = ("r1", "r2", "r3")


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A `redis-server` without persistence on a free loopback port: its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("bench_cluster needs redis-server (bash tests/setup.sh installs it)")
    port = free_port()
    argv = [binary, "--save", "", "--appendonly", "no", "--port", str(port), "--bind", "127.0.0.1"]
    proc = subprocess.Popen([*argv, "--dir", str(folder)], stdout=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.load(answer)


def _tenants(servers: int) -> dict[str, Any]:
    echo = {"command": "python", "args": [TEST_SERVER]}
    return {"bench": {"servers": {f"echo{i}": dict(echo) for i in range(servers)}}}


@contextlib.contextmanager
def cluster(folder: Path, servers: int) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """Three replicas on one Redis, every server running exactly once: their URLs, and which
    replica runs each server."""
    with redis_server(folder) as redis_url, contextlib.ExitStack() as stack:
        urls = {}
        for replica in REPLICAS:
            data = folder / replica
            data.mkdir()
            config = write_hub_config(data / "hub.yaml", _tenants(servers), data, auto_start=True)
            text = yaml.safe_load(config.read_text())
            text["cluster"] = {
                "redis_url": redis_url,
                "secret": SECRET,
                "replica_id": replica,
                "heartbeat": 1,
            }
            config.write_text(yaml.safe_dump(text))
            urls[replica] = stack.enter_context(served_hub(config))[1]
        deadline, steady = time.monotonic() + 120, 0
        while steady < 15:  # (3 s, 3 heartbeats, unchanged: replicas that started at once converged)
            health = [_get(url + "/health")["components"]["cluster"] for url in urls.values()]
            listed = _get(urls["r1"] + "/api/servers?tenant=bench")["servers"]
            settled = sum(h["servers_running"] for h in health) == servers and all(
                s["state"] == "running" for s in listed
            )
            steady = steady + 1 if settled else 0
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not settle: {health}")
            time.sleep(0.2)
        yield urls, {s["server"]: s["replica"] for s in listed}


@contextlib.contextmanager
def lone_hub(folder: Path, servers: int) -> Iterator[str]:
    """A hub without `cluster:`, with the same servers, all running: its URL."""
    config = write_hub_config(folder / "lone.yaml", _tenants(servers), folder / "lone", auto_start=True)
    with served_hub(config) as (_, url):
        while [s["state"] for s in _get(url + "/api/servers")["servers"]].count("running") < servers:
            time.sleep(0.2)
        yield url


async def latency(url: str, local: str, remote: str, calls: int, batch: int = 20) -> dict[str, list[float]]:
    """Samples of sequential echo calls through one replica, to a server it runs and to one another
    replica runs, taking turns `batch` calls at a time."""
    samples: dict[str, list[float]] = {"local": [], "forwarded": []}
    async with RawHttp(url) as http:

        async def call(server: str) -> float:
            began = time.perf_counter()
            status, body = await http.post(f"/api/tools/{server}.echo?tenant=bench", {"text": "hello"})
            if status != 200:
                raise RuntimeError(f"call failed: {status} {body[:200]!r}")
            return time.perf_counter() - began

        for _ in range(50):
            await call(local)
            await call(remote)
        while len(samples["local"]) < calls:
            for name, server in (("local", local), ("forwarded", remote)):
                samples[name] += [await call(server) for _ in range(batch)]
    return samples


async def throughput(
    lone: str, replicas: list[str], clients: int, servers: int, seconds: float
) -> dict[str, Any]:
    """`[calls, seconds]` of `clients` callers over every server: against the lone hub, and spread
    over the replicas, taking turns one second at a time."""
    async with contextlib.AsyncExitStack() as stack:

        def caller(http: RawHttp, server: str) -> Caller:
            async def call() -> None:
                status, body = await http.post(f"/api/tools/{server}.echo?tenant=bench", {"text": "x"})
                if status != 200:
                    raise RuntimeError(f"call failed: {status} {body[:200]!r}")

            return call

        pools: dict[str, list[Caller]] = {"lone hub": [], "3 replicas": []}
        for i in range(clients):
            server = f"echo{i % servers}"
            pools["lone hub"].append(caller(await stack.enter_async_context(RawHttp(lone)), server))
            spread = await stack.enter_async_context(RawHttp(replicas[i % len(replicas)]))
            pools["3 replicas"].append(caller(spread, server))
        return await rotate(pools, max(1, round(seconds)), 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--servers", type=int, default=6)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp, cluster(Path(tmp), args.servers) as (urls, runs):
        local = next(s for s, r in runs.items() if r == "r1")
        remote = next(s for s, r in runs.items() if r != "r1")
        samples = asyncio.run(latency(urls["r1"], local, remote, args.calls))
        with lone_hub(Path(tmp), args.servers) as lone:
            rates = asyncio.run(
                throughput(lone, list(urls.values()), args.clients, args.servers, args.seconds)
            )
    l50, l99 = percentiles(samples["local"])
    f50, f99 = percentiles(samples["forwarded"])
    print(f"\necho call through replica r1, {args.calls} sequential calls each (p50 / p99 ms):")
    print(f"  to a server r1 runs             {l50:7.3f} / {l99:7.3f}")
    print(f"  to a server {runs[remote]} runs (forwarded) {f50:7.3f} / {f99:7.3f}")
    print(f"  forwarded - local               {f50 - l50:+7.3f} / {f99 - l99:+7.3f}   (target p50 <= +1 ms)")
    lone_rate, spread_rate = (calls / took for calls, took in (rates["lone hub"], rates["3 replicas"]))
    print(f"\nthroughput, {args.clients} callers over {args.servers} servers, {args.seconds:g} s each:")
    print(f"  one hub (no cluster)            {lone_rate:9.0f} calls/s")
    print(f"  3 replicas, callers spread      {spread_rate:9.0f} calls/s")
    print(f"  ratio 3 replicas / one hub      {spread_rate / lone_rate:9.2f}   (on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
