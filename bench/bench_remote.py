"""Benchmark of a remote (Streamable HTTP) server through the hub, against the direct call and
against the same server as a stdio child of the hub, measured in the same run (issue 24).

Run from the repository root after the README's install command:

    python bench/bench_remote.py [--calls 200] [--clients 32] [--seconds 2] [--rounds 3]

One SDK-built test server (`tests/servers/testserver.py --http`) serves Streamable HTTP; one hub
(`python -m hub serve`) has it twice in one tenant: `remote` (`transport: http`, its URL) and
`local` (the same server as a stdio child). Three paths, in each protocol era (`legacy`: 2025-11-25
sessions; `2026-07-28`):
- direct: `mcp.Client` to the server's URL, tool `echo`;
- hub, stdio child: `mcp.Client` to the hub's `/mcp`, tool `local__echo`;
- hub, HTTP upstream: the same, tool `remote__echo`;
- TCP relay: `mcp.Client` through `servers/tcp_relay.py`, a relay with no logic at all in front of
  the server (tool `echo`): the floor of any one more process on a call's path, so the hub's own
  cost reads as the HTTP upstream's figure less the relay's;
- minimal Python proxy (2026-07-28 only): `mcp.Client` through `servers/min_proxy.py`, tool
  `remote__echo`: the least a gateway written in Python does per call (HTTP and JSON read and
  written on both sides, the tool renamed, the id swapped; no key, quota, audit or validation):
  the floor of a Python gateway on the same loop as the hub's.
Latency: `--calls` sequential calls on each, the three clients taking turns 20 calls at a time.
The hub's CPU time per call on each path is read from `/proc` around each turn (its own cost,
whatever the machine's load). Throughput: `--clients` callers at once on each path for
`--seconds`, the paths taking turns for `--rounds` rounds. Both so that a change of the
machine's speed (a shared VM) falls on all alike.
Issue 24's targets for the HTTP upstream: p50 <= 1.3x direct and calls/s >= 0.75x direct.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from _common import (
    ROOT,
    Caller,
    cpu_seconds,
    free_port,
    http_test_server,
    percentiles,
    rotate,
    served_hub,
    start_tenant,
    timed_calls,
    wait_port,
    write_hub_config,
)
from mcp import Client

TEST_SERVER = str(ROOT / "tests" / "servers" / "testserver.py")
RELAY = str(ROOT / "bench" / "servers" / "tcp_relay.py")
MIN_PROXY = str(ROOT / "bench" / "servers" / "min_proxy.py")
Paths = dict[str, tuple[str, str]]  # a path's name: the URL its client calls, and the tool


async def latency(
    paths: Paths, mode: str, calls: int, hub: int, batch: int = 20
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Seconds of each of `calls` sequential echo calls on each path, taking turns `batch` at a
    time; and the CPU seconds the hub's process (`hub`, a pid) spent on each path's calls."""
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            path: await stack.enter_async_context(Client(url, mode=mode, cache=None))  # type: ignore[arg-type]
            for path, (url, _) in paths.items()
        }
        for path, client in clients.items():
            await timed_calls(client, paths[path][1], 0)
        samples: dict[str, list[float]] = {path: [] for path in paths}
        cpu = dict.fromkeys(paths, 0.0)
        while len(samples["direct"]) < calls:
            n = min(batch, calls - len(samples["direct"]))
            for path, client in clients.items():
                began = cpu_seconds(hub)
                samples[path] += await timed_calls(client, paths[path][1], n, warm=0)
                cpu[path] += cpu_seconds(hub) - began
        return samples, cpu


async def throughput(paths: Paths, mode: str, clients: int, seconds: float, rounds: int) -> dict[str, float]:
    """Calls per second of each path with `clients` callers at once (one session each)."""
    async with contextlib.AsyncExitStack() as stack:
        pools: dict[str, list[Caller]] = {}
        for path, (url, tool) in paths.items():
            sessions = [
                await stack.enter_async_context(Client(url, mode=mode, cache=None)) for _ in range(clients)
            ]  # type: ignore[arg-type]

            def caller(session: Client, tool: str = tool) -> Caller:
                return lambda: session.call_tool(tool, {"text": "hello"})

            pools[path] = [caller(s) for s in sessions]
            await asyncio.gather(*(call() for call in pools[path]))  # (every session warm)
        totals = await rotate(pools, rounds, seconds)
        return {path: done / took for path, (done, took) in totals.items()}


def _report(
    mode: str, samples: dict[str, list[float]], cpu: dict[str, float], rates: dict[str, float]
) -> None:
    print(f"\n{mode}: p50 / p99 ms of sequential calls, hub CPU ms per call, calls/s of concurrent callers")
    for path in samples:
        p50, p99 = percentiles(samples[path])
        used = cpu[path] * 1000 / len(samples[path])
        print(f"  {path:24} {p50:7.3f} / {p99:7.3f}   {used:5.2f}   {rates[path]:8.1f} calls/s")
    d50, _ = percentiles(samples["direct"])
    for path in list(samples)[1:]:
        p50, _ = percentiles(samples[path])
        print(f"  ratio {path} / direct: p50 {p50 / d50:.2f}, calls/s {rates[path] / rates['direct']:.2f}")
    print("  (issue 24's targets for the HTTP upstream: p50 <= 1.3, calls/s >= 0.75)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with http_test_server() as direct, tempfile.TemporaryDirectory() as tmp:
        servers = {
            "local": {"command": "python", "args": [TEST_SERVER]},
            "remote": {"transport": "http", "url": direct},
        }
        config = write_hub_config(Path(tmp) / "hub.yaml", {"default": {"servers": servers}}, f"{tmp}/data")
        with served_hub(config) as (hub, url):
            started = start_tenant(url)
            assert started == {"local": "running", "remote": "running"}, started
            with in_front(RELAY, direct) as relayed, in_front(MIN_PROXY, direct) as proxied:
                paths: Paths = {
                    "direct": (direct, "echo"),
                    "hub, stdio child": (url + "/mcp", "local__echo"),
                    "hub, HTTP upstream": (url + "/mcp", "remote__echo"),
                    "TCP relay (no logic)": (relayed, "echo"),
                }
                for mode in ("legacy", "2026-07-28"):
                    if mode == "2026-07-28":  # (the minimal proxy speaks only this era's JSON answers)
                        paths["minimal Python proxy"] = (proxied, "remote__echo")
                    samples, cpu = asyncio.run(latency(paths, mode, args.calls, hub.pid))
                    rates = asyncio.run(throughput(paths, mode, args.clients, args.seconds, args.rounds))
                    _report(mode, samples, cpu, rates)


@contextlib.contextmanager
def in_front(script: str, url: str) -> Iterator[str]:
    """`script` (`servers/tcp_relay.py` or `servers/min_proxy.py`) in front of the server at `url`
    while the block runs: `url` through it."""
    target = int(url.split(":")[2].split("/")[0])
    port = free_port()
    relay = subprocess.Popen([sys.executable, script, str(port), str(target)])
    try:
        wait_port(port)
        yield url.replace(f":{target}/", f":{port}/")
    finally:
        relay.kill()
        relay.wait(30)


if __name__ == "__main__":
    main()
