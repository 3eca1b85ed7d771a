"""Benchmark of the actor runtime: call overhead against a direct client, and start-up of many servers.

Run from the repository root after the README's install command:

    python bench/bench_runtime.py [--calls 1000] [--servers 100]

Prints, in one run:
- p50/p99 of an `echo` tool call through the hub's Python API (`Hub.call_tool`) and through a
  direct `mcp.Client` to the same kind of server (the test server, SDK-built, over stdio), and
  their ratio (target ≤ 1.2);
- the time for one hub to bring N stdio echo servers (`bench/servers/echo_stdlib.py`, standard
  library only) to `running` (target ≤ 10 s for 100 on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _common import SANDBOX, percentiles, timed_calls
from mcp import Client, StdioServerParameters

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hub.config import parse_config  # noqa: E402
from hub.runtime import Hub  # noqa: E402

TEST_SERVER = str(ROOT / "tests" / "servers" / "testserver.py")
ECHO_STDLIB = str(ROOT / "bench" / "servers" / "echo_stdlib.py")


async def direct_calls(calls: int) -> list[float]:
    """Latency of `echo` through a direct mcp.Client over stdio (the baseline)."""
    params = StdioServerParameters(command=sys.executable, args=[TEST_SERVER])
    with open(os.devnull, "w") as devnull:
        from mcp.client.stdio import stdio_client

        async with Client(stdio_client(params, errlog=devnull), cache=None) as client:
            return await timed_calls(client, "echo", calls, warm=50)


def hub_calls(calls: int, data_dir: str) -> list[float]:
    """Latency of the same call through `Hub.call_tool` (router ask + gate + server loop)."""
    config = parse_config(
        yaml.safe_dump(
            {
                "tenants": {"bench": {"servers": {"echo": {"command": "python", "args": [TEST_SERVER]}}}},
                "orchestrator": {"sandbox": SANDBOX},
            }
        )
    )
    samples = []
    with Hub(config, data_dir=data_dir) as hub:
        hub.start_tenant("bench")
        for _ in range(50):
            hub.call_tool("bench", "echo.echo", {"text": "warm"})
        for _ in range(calls):
            began = time.perf_counter()
            hub.call_tool("bench", "echo.echo", {"text": "hello"})
            samples.append(time.perf_counter() - began)
    return samples


def start_many(count: int, data_dir: str) -> tuple[float, float, int]:
    """Seconds until `count` servers run, seconds to stop them all, and how many ran."""
    servers = {
        f"echo{i}": {"command": "python", "args": [ECHO_STDLIB], "protocol": "legacy"} for i in range(count)
    }
    config = parse_config(
        yaml.safe_dump(
            {
                "tenants": {"bench": {"servers": servers}},
                "orchestrator": {"startup_timeout": 60, "sandbox": SANDBOX},
            }
        )
    )
    hub = Hub(config, data_dir=data_dir).start()
    try:
        began = time.perf_counter()
        outcome = hub.start_tenant("bench", timeout=120)
        ready = time.perf_counter() - began
        running = sum(1 for state in outcome.values() if state == "running")
    finally:
        began = time.perf_counter()
        hub.stop()
        stopped = time.perf_counter() - began
    return ready, stopped, running


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--servers", type=int, default=100)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as data_dir:
        direct = asyncio.run(direct_calls(args.calls))
        via_hub = hub_calls(args.calls, data_dir)
        d50, d99 = percentiles(direct)
        h50, h99 = percentiles(via_hub)
        print(f"\necho call over stdio, {args.calls} calls (p50 / p99 ms):")
        print(f"  direct mcp.Client      {d50:7.3f} / {d99:7.3f}")
        print(f"  Hub.call_tool          {h50:7.3f} / {h99:7.3f}")
        print(f"  ratio hub/direct       {h50 / d50:7.2f} / {h99 / d99:7.2f}   (target p50 <= 1.2)")
        ready, stopped, running = start_many(args.servers, data_dir)
        print(
            f"\n{args.servers} stdio echo servers (stdlib): {running} running after {ready:.2f} s "
            f"(target <= 10 s); all stopped in {stopped:.2f} s"
        )


if __name__ == "__main__":
    main()
