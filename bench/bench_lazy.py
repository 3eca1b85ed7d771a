"""Benchmark of on_demand servers: the cold first call, and what idle servers cost.

Run from the repository root after the README's install command:

    python bench/bench_lazy.py [--cold 10] [--calls 200] [--servers 200] [--busy 5]

Prints, in one run:
- the first call to a stopped on_demand server (spawn, handshake, discovery, then the call)
  through `Hub.call_tool`, against a direct `mcp.Client` doing the same (spawn, handshake, call)
  measured in the same run, for the SDK-built test server and for the standard-library echo
  server (`bench/servers/echo_stdlib.py`), and a warm call through the hub against a direct warm
  call; p50 of `--cold` cold calls and `--calls` warm ones;
- the first call of a new session to a `per_session` server (its own instance: spawn, handshake,
  discovery, then the call), each right after a direct cold call, and ending that session (until
  its process is gone);
- the resident memory (RSS) of a hub process plus all its child processes with `--servers`
  configured echo servers of which `--busy` are called continuously, once with every server
  `always` (all running) and once `on_demand` (the other servers stopped, listed from the cache
  the `always` run wrote). Each scenario runs in a fresh process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from _common import SANDBOX, percentiles, timed_calls
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hub.config import parse_config  # noqa: E402
from hub.runtime import Hub  # noqa: E402

TEST_SERVER = str(ROOT / "tests" / "servers" / "testserver.py")
ECHO_STDLIB = str(ROOT / "bench" / "servers" / "echo_stdlib.py")
SERVERS = {
    "testserver (mcp SDK)": {"command": "python", "args": [TEST_SERVER]},
    "echo_stdlib": {"command": "python", "args": [ECHO_STDLIB], "protocol": "legacy"},
}


# --------------------------------------------------------------------------- latency


async def direct_cold(spec: dict[str, Any], times: int) -> list[float]:
    """Spawn, handshake and one `echo` call with a direct mcp.Client, `times` times."""
    params = StdioServerParameters(command=sys.executable, args=spec["args"])
    mode = spec.get("protocol", "auto")
    samples = []
    with open(os.devnull, "w") as devnull:
        for _ in range(times):
            began = time.perf_counter()
            async with Client(stdio_client(params, errlog=devnull), mode=mode, cache=None) as client:
                await client.call_tool("echo", {"text": "cold"})
                samples.append(time.perf_counter() - began)
    return samples


async def direct_warm(spec: dict[str, Any], calls: int) -> list[float]:
    """Warm `echo` calls on one direct mcp.Client."""
    params = StdioServerParameters(command=sys.executable, args=spec["args"])
    with open(os.devnull, "w") as devnull:
        async with Client(
            stdio_client(params, errlog=devnull), mode=spec.get("protocol", "auto"), cache=None
        ) as client:
            return await timed_calls(client, "echo", calls, warm=50)


def cold_and_warm(spec: dict[str, Any], times: int, calls: int, data_dir: str) -> dict[str, list[float]]:
    """Cold first calls through `Hub.call_tool` to a stopped on_demand server, each right after a
    direct cold call (so that load from elsewhere hits both alike); then warm calls both ways."""
    config = parse_config(
        yaml.safe_dump(
            {
                "orchestrator": {"sandbox": SANDBOX},
                "tenants": {"bench": {"servers": {"lazy": {**spec, "lifecycle": "on_demand"}}}},
            }
        )
    )
    out: dict[str, list[float]] = {"direct_cold": [], "hub_cold": [], "hub_warm": []}
    with Hub(config, data_dir=data_dir) as hub:
        hub.start_server("bench", "lazy")  # once by hand: its catalog is cached from now on
        for _ in range(times):
            hub.stop_server("bench", "lazy")
            out["direct_cold"] += asyncio.run(direct_cold(spec, 1))
            began = time.perf_counter()
            hub.call_tool("bench", "lazy.echo", {"text": "cold"})
            out["hub_cold"].append(time.perf_counter() - began)
        for _ in range(50):
            hub.call_tool("bench", "lazy.echo", {"text": "warm"})
        for _ in range(calls):
            began = time.perf_counter()
            hub.call_tool("bench", "lazy.echo", {"text": "hello"})
            out["hub_warm"].append(time.perf_counter() - began)
    out["direct_warm"] = asyncio.run(direct_warm(spec, calls))
    return out


def session_cold(spec: dict[str, Any], times: int, data_dir: str) -> dict[str, list[float]]:
    """First calls of `times` new sessions to a per_session server, each right after a direct cold
    call; and `Hub.end_session` of each (returns once its process is gone)."""
    config = parse_config(
        yaml.safe_dump(
            {
                "orchestrator": {"sandbox": SANDBOX},
                "tenants": {"bench": {"servers": {"ps": {**spec, "per_session": True}}}},
            }
        )
    )
    out: dict[str, list[float]] = {"direct_cold": [], "session_cold": [], "end_session": []}
    with Hub(config, data_dir=data_dir) as hub:
        hub.start_tenant("bench")  # the shared instance discovers the catalog once
        for i in range(times):
            out["direct_cold"] += asyncio.run(direct_cold(spec, 1))
            began = time.perf_counter()
            hub.call_tool("bench", "ps.echo", {"text": "cold"}, session=f"bench:{i}")
            out["session_cold"].append(time.perf_counter() - began)
            began = time.perf_counter()
            hub.end_session(f"bench:{i}")
            out["end_session"].append(time.perf_counter() - began)
    return out


# --------------------------------------------------------------------------- memory


def rss_kib(pid: int) -> int:
    """The resident set size of process `pid`, in KiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(root: int) -> list[int]:
    """Every live descendant of process `root`."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def scenario(lifecycle: str, count: int, busy: int, seconds: float, data_dir: str) -> dict[str, Any]:
    """One hub with `count` echo servers of `lifecycle`, `busy` of them called for `seconds`: its RSS."""
    spec = {"command": "python", "args": [ECHO_STDLIB], "protocol": "legacy", "lifecycle": lifecycle}
    servers = {f"echo{i}": spec for i in range(count)}
    config = parse_config(
        yaml.safe_dump(
            {
                "tenants": {"bench": {"servers": servers}},
                "orchestrator": {"startup_timeout": 60, "data_dir": data_dir, "sandbox": SANDBOX},
            }
        )
    )
    began = time.perf_counter()
    hub = Hub(config).start()
    try:
        hub.start_tenant("bench", timeout=180)  # starts the `always` ones; on_demand ones stay stopped
        ready = time.perf_counter() - began
        listed = len(hub.tools("bench"))
        stop = threading.Event()
        calls = [0] * busy

        def caller(i: int) -> None:
            while not stop.is_set():
                hub.call_tool("bench", f"echo{i}.echo", {"text": "busy"})
                calls[i] += 1

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(busy)]
        for thread in threads:
            thread.start()
        time.sleep(seconds)  # the load runs meanwhile; a benchmark, not a test
        processes = descendants(os.getpid())
        hub_rss = rss_kib(os.getpid())
        children_rss = sum(rss_kib(pid) for pid in processes)
        stop.set()
        for thread in threads:
            thread.join(30)
        running = sum(1 for s in hub.servers("bench") if s.state.value == "running")
        return {
            "lifecycle": lifecycle,
            "ready_s": ready,
            "listed_tools": listed,
            "running": running,
            "processes": len(processes),
            "threads": threading.active_count(),
            "hub_mib": hub_rss / 1024,
            "children_mib": children_rss / 1024,
            "calls": sum(calls),
        }
    finally:
        hub.stop()


def run_scenario(lifecycle: str, args: argparse.Namespace, data_dir: str) -> dict[str, Any]:
    """`scenario` in a fresh interpreter, so that each hub's memory is its own."""
    command = [
        sys.executable,
        __file__,
        "--scenario",
        lifecycle,
        "--servers",
        str(args.servers),
        "--busy",
        str(args.busy),
        "--data-dir",
        data_dir,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=900)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", type=int, default=10)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--servers", type=int, default=200)
    parser.add_argument("--busy", type=int, default=5)
    parser.add_argument("--scenario", choices=["always", "on_demand"], help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scenario:
        print(json.dumps(scenario(args.scenario, args.servers, args.busy, 3.0, args.data_dir)))
        return

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as data_dir:
        print(f"\nfirst call to a stopped server, {args.cold} cold calls; warm calls: {args.calls} (p50 ms)")
        for name, spec in SERVERS.items():
            samples = cold_and_warm(spec, args.cold, args.calls, str(Path(data_dir) / name))
            d_cold, h_cold, d_warm, h_warm = (
                percentiles(samples[k])[0] for k in ("direct_cold", "hub_cold", "direct_warm", "hub_warm")
            )
            print(f"  {name}:")
            print(f"    cold, direct mcp.Client (spawn + handshake + call)  {d_cold:8.1f}")
            print(f"    cold, Hub.call_tool on a stopped on_demand server  {h_cold:8.1f}")
            print(f"    ratio hub/direct, cold                             {h_cold / d_cold:8.2f}")
            print(f"    warm, direct mcp.Client                            {d_warm:8.3f}")
            print(f"    warm, Hub.call_tool                                {h_warm:8.3f}")
            print(f"    ratio hub/direct, warm                             {h_warm / d_warm:8.2f}")
            print(f"    cold / warm through the hub                        {h_cold / h_warm:8.0f}x")
            sessions = session_cold(spec, args.cold, str(Path(data_dir) / f"{name}-sessions"))
            d_cold, s_cold, s_end = (
                percentiles(sessions[k])[0] for k in ("direct_cold", "session_cold", "end_session")
            )
            print(f"    cold, direct mcp.Client (same run)                 {d_cold:8.1f}")
            print(f"    cold, first call of a new session (per_session)    {s_cold:8.1f}")
            print(f"    ratio hub/direct, new session                      {s_cold / d_cold:8.2f}")
            print(f"    Hub.end_session until its process is gone          {s_end:8.1f}")

        shared = str(Path(data_dir) / "scale")
        eager = run_scenario("always", args, shared)  # also writes every server's catalog cache
        lazy = run_scenario("on_demand", args, shared)
        print(f"\n{args.servers} configured echo servers (stdlib), {args.busy} called continuously:")
        print(
            f"  {'':10} {'running':>8} {'tools':>6} {'procs':>6} {'threads':>8} {'hub MiB':>8} "
            f"{'children':>9} {'total MiB':>10} {'ready s':>8}"
        )
        for row in (eager, lazy):
            total = row["hub_mib"] + row["children_mib"]
            print(
                f"  {row['lifecycle']:10} {row['running']:8d} {row['listed_tools']:6d} {row['processes']:6d} "
                f"{row['threads']:8d} {row['hub_mib']:8.1f} {row['children_mib']:9.1f} {total:10.1f} "
                f"{row['ready_s']:8.2f}"
            )
        ratio = (lazy["hub_mib"] + lazy["children_mib"]) / (eager["hub_mib"] + eager["children_mib"])
        print(f"  ratio on_demand / always, total RSS: {ratio:.3f}")


if __name__ == "__main__":
    main()
