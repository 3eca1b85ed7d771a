"""Benchmark of the MCP facade against direct MCP clients, measured in the same run.

Run from the repository root after the README's install command:

    python bench/bench_facade.py [--calls 500] [--mode auto|legacy|2026-07-28]

Prints p50/p99 of an `echo` call (the SDK-built test server) four ways, and the ratios:
- direct `mcp.Client` over stdio, and through the hub's stdio facade (`python -m hub stdio`);
- direct `mcp.Client` over Streamable HTTP to the server served by the SDK (uvicorn), and through
  the hub's HTTP facade (`python -m hub serve`, `/mcp`), the hub reaching the server over stdio.
and the one-server endpoint (`/tenants/default/servers/echo/mcp`, tool `echo`) against the
aggregated HTTP facade (`/mcp`, tool `echo__echo`) of the same hub.
Each pair is measured interleaved: both clients are open at once and take turns, 20 calls at a
time, so that a change in the machine's speed during the run (a shared VM) falls on both alike.
Targets: each facade at most 2 times its direct baseline; the one-server endpoint at most the
aggregated facade's cost (ratio <= 1, within the run's noise).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
from pathlib import Path

from _common import (
    ROOT,
    http_test_server,
    percentiles,
    served_hub,
    start_tenant,
    timed_calls,
    write_hub_config,
)
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

TEST_SERVER = str(ROOT / "tests" / "servers" / "testserver.py")


async def measure_pair(
    base: object,
    facade: object,
    mode: str,
    calls: int,
    batch: int = 20,
    tools: tuple[str, str] = ("echo", "echo__echo"),
) -> tuple[list[float], list[float]]:
    """Latency of `calls` echo calls through each of two clients (calling `tools`), taking turns
    `batch` at a time."""
    async with (
        Client(base, mode=mode, cache=None) as direct,  # type: ignore[arg-type]
        Client(facade, mode=mode, cache=None) as hub,  # type: ignore[arg-type]
    ):
        await timed_calls(direct, tools[0], 0)
        await timed_calls(hub, tools[1], 0)
        direct_samples: list[float] = []
        hub_samples: list[float] = []
        while len(direct_samples) < calls:
            n = min(batch, calls - len(direct_samples))
            direct_samples += await timed_calls(direct, tools[0], n, warm=0)
            hub_samples += await timed_calls(hub, tools[1], n, warm=0)
        return direct_samples, hub_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--mode", default="auto", choices=["auto", "legacy", "2026-07-28"])
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"client mode {args.mode}"
    )
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as devnull:
        server = {"command": "python", "args": [TEST_SERVER]}
        tenants = {"default": {"servers": {"echo": server}}}
        config = write_hub_config(Path(tmp) / "hub.yaml", tenants, f"{tmp}/data")
        direct = StdioServerParameters(command=sys.executable, args=[TEST_SERVER])
        facade = StdioServerParameters(
            command=sys.executable,
            args=["-m", "hub", "stdio", "--config", str(config), "--tenant", "default"],
            env={**os.environ, "LOG_LEVEL": "WARNING"},
            cwd=str(ROOT),
        )
        results["direct stdio"], results["stdio facade"] = asyncio.run(
            measure_pair(
                stdio_client(direct, errlog=devnull),
                stdio_client(facade, errlog=devnull),
                args.mode,
                args.calls,
            )
        )
        with http_test_server() as direct_url, served_hub(config) as (_, url):
            assert start_tenant(url) == {"echo": "running"}
            results["direct HTTP"], results["HTTP facade"] = asyncio.run(
                measure_pair(direct_url, url + "/mcp", args.mode, args.calls)
            )
            one = url + "/tenants/default/servers/echo/mcp"
            results["aggregated"], results["one-server"] = asyncio.run(
                measure_pair(url + "/mcp", one, args.mode, args.calls, tools=("echo__echo", "echo"))
            )
    print(f"\necho call, {args.calls} sequential calls (p50 / p99 ms):")
    for name, samples in results.items():
        p50, p99 = percentiles(samples)
        print(f"  {name:14} {p50:7.3f} / {p99:7.3f}")
    for facade_name, base, target in (
        ("stdio facade", "direct stdio", 2),
        ("HTTP facade", "direct HTTP", 2),
        ("one-server", "aggregated", 1),
    ):
        f50, f99 = percentiles(results[facade_name])
        b50, b99 = percentiles(results[base])
        print(f"  ratio {facade_name} / {base}: {f50 / b50:.2f} / {f99 / b99:.2f}   (target <= {target})")


if __name__ == "__main__":
    main()
