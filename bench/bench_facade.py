"""Benchmark of the MCP facade against direct MCP clients, measured in the same run.

Run from the repository root after the README's install command:

    python bench/bench_facade.py [--calls 500] [--mode auto|legacy|2026-07-28]

Prints p50/p99 of an `echo` call (the SDK-built test server) four ways, and the ratios:
- direct `mcp.Client` over stdio, and through the hub's stdio facade (`python -m hub stdio`);
- direct `mcp.Client` over Streamable HTTP to the server served by the SDK (uvicorn), and through
  the hub's HTTP facade (`python -m hub serve`, `/mcp`), the hub reaching the server over stdio.
Targets: each facade at most 2 times its direct baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from _common import ROOT, free_port, percentiles, served_hub, timed_calls, wait_port, write_hub_config
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

TEST_SERVER = str(ROOT / "tests" / "servers" / "testserver.py")


async def measure(target: object, mode: str, tool: str, calls: int) -> list[float]:
    """Latency of `calls` echo calls through one client."""
    async with Client(target, mode=mode, cache=None) as client:  # type: ignore[arg-type]
        return await timed_calls(client, tool, calls)


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
        results["direct stdio"] = asyncio.run(
            measure(stdio_client(direct, errlog=devnull), args.mode, "echo", args.calls)
        )
        facade = StdioServerParameters(
            command=sys.executable,
            args=["-m", "hub", "stdio", "--config", str(config), "--tenant", "default"],
            env={**os.environ, "LOG_LEVEL": "WARNING"},
            cwd=str(ROOT),
        )
        results["stdio facade"] = asyncio.run(
            measure(stdio_client(facade, errlog=devnull), args.mode, "echo__echo", args.calls)
        )
        port = free_port()
        server_proc = subprocess.Popen(
            [sys.executable, TEST_SERVER, "--http", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with served_hub(config) as (_, url):
                request = urllib.request.Request(url + "/api/tenants/default/start", data=b"", method="POST")
                with urllib.request.urlopen(request) as answer:
                    assert json.load(answer)["servers"] == {"echo": "running"}
                wait_port(port)
                results["direct HTTP"] = asyncio.run(
                    measure(f"http://127.0.0.1:{port}/mcp", args.mode, "echo", args.calls)
                )
                facade_url = url + "/mcp"
                results["HTTP facade"] = asyncio.run(measure(facade_url, args.mode, "echo__echo", args.calls))
        finally:
            server_proc.send_signal(signal.SIGTERM)
            server_proc.wait(30)
    print(f"\necho call, {args.calls} sequential calls (p50 / p99 ms):")
    for name, samples in results.items():
        p50, p99 = percentiles(samples)
        print(f"  {name:14} {p50:7.3f} / {p99:7.3f}")
    for facade_name, base in (("stdio facade", "direct stdio"), ("HTTP facade", "direct HTTP")):
        f50, f99 = percentiles(results[facade_name])
        b50, b99 = percentiles(results[base])
        print(f"  ratio {facade_name} / {base}: {f50 / b50:.2f} / {f99 / b99:.2f}   (target <= 2)")


if __name__ == "__main__":
    main()
