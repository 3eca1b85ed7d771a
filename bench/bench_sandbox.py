"""Benchmark of the sandbox (issue 17): what bubblewrap costs a stdio server's start and its calls.

Run from the repository root after the README's install command:

    python bench/bench_sandbox.py [--servers 100] [--rounds 3] [--calls 1000]

Prints, in one run:
- the seconds until one hub has N stdio echo servers (`bench/servers/echo_stdlib.py`, standard
  library only) `running`, with the sandbox off and on (a fresh hub each time, the same
  configuration but `sandbox.enabled`), the two taking turns for `--rounds` rounds; the median of
  each and their ratio sandboxed / unsandboxed; the hub's CPU per start, the servers' own CPU, their
  processes and memory (RSS, and PSS: shared pages divided among the processes sharing them), and
  the seconds to stop them;
- p50/p99 of sequential `echo` calls through `Hub.call_tool` to an unsandboxed and to a sandboxed
  server of the same hub, and through a direct `mcp.Client` to the same server (the baseline of the
  other benchmarks), the three taking turns 20 calls at a time so that the machine's drift falls on
  all of them; the ratio sandboxed / unsandboxed (target: 1 within noise) and each / direct. The
  noise is shown as the ratio of the unsandboxed path's own two halves (alternate turns).

The sandboxed hub runs with `sandbox.required: true`, so nothing is measured unsandboxed by
mistake; on a host that cannot sandbox (`actors.sandbox.host_support()`), it says so and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from _common import ROOT, SANDBOX, marked, percentiles
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

sys.path.insert(0, str(ROOT))

from actors.sandbox import host_support
from hub.config import parse_config
from hub.runtime import Hub

ECHO_STDLIB = str(ROOT / "bench" / "servers" / "echo_stdlib.py")
TURN = 20  # calls per path per turn
TICKS = os.sysconf("SC_CLK_TCK")


def sandbox(enabled: bool) -> dict[str, Any]:
    """The `sandbox` settings of one side: the bench's binds either way; required when enabled."""
    return {**SANDBOX, "enabled": enabled, "required": enabled}


def echo_server(tag: str, **extra: Any) -> dict[str, Any]:
    return {"command": "python", "args": [ECHO_STDLIB, tag], "protocol": "legacy", **extra}


def rusage_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def memory_mib(pid: int, field: str) -> float:
    """`Rss` or `Pss` (shared pages divided among their sharers) of process `pid`, in MiB."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_ms(pid: int) -> float:
    """CPU of process `pid` so far, its reaped children's included, in milliseconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return 1000 * sum(int(f) for f in fields[11:15]) / TICKS  # utime, stime, cutime, cstime


def comm(pid: int | None) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def start_many(count: int, sandboxed: bool, data_dir: str) -> dict[str, float]:
    """Start `count` echo servers in a fresh hub, then stop them: the figures of that one round."""
    tag = f"bench-sandbox-{uuid.uuid4().hex[:12]}"
    servers = {f"echo{i}": echo_server(tag) for i in range(count)}
    config = parse_config(
        yaml.safe_dump(
            {
                "tenants": {"bench": {"servers": servers}},
                "orchestrator": {"startup_timeout": 60, "sandbox": sandbox(sandboxed)},
            }
        )
    )
    round_: dict[str, float] = {}
    hub = Hub(config, data_dir=data_dir).start()
    try:
        cpu, began = rusage_s(resource.RUSAGE_SELF), time.perf_counter()
        outcome = hub.start_tenant("bench", timeout=120)
        round_["ready_s"] = time.perf_counter() - began
        round_["hub_cpu_ms"] = 1000 * (rusage_s(resource.RUSAGE_SELF) - cpu) / count
        round_["running"] = sum(1 for state in outcome.values() if state == "running")
        # The pid the hub holds is bwrap's when the server is sandboxed (python's otherwise).
        round_["boxed"] = sum(1 for s in hub.servers("bench") if comm(s.pid) == "bwrap")
        pids = marked(tag)
        python = [p for p in pids if comm(p) != "bwrap"]
        round_["processes"] = len(pids) / count
        # Their CPU until running (with a sandbox: bwrap's two processes and python).
        round_["server_cpu_ms"] = sum(cpu_ms(p) for p in pids) / count
        bwrap = [p for p in pids if comm(p) == "bwrap"]
        for field in ("Rss", "Pss"):
            key = field.lower()
            round_[f"server_{key}_mib"] = statistics.median(memory_mib(p, field) for p in python)
            round_[f"bwrap_{key}_mib"] = sum(memory_mib(p, field) for p in bwrap) / count
    finally:
        began = time.perf_counter()
        hub.stop()
        round_["stopped_s"] = time.perf_counter() - began
    round_["left"] = len(marked(tag))
    return round_


def hub_turn(hub: Hub, tool: str, calls: int) -> list[float]:
    """Seconds of each of `calls` sequential `Hub.call_tool` calls (runs on a worker thread)."""
    samples = []
    for _ in range(calls):
        began = time.perf_counter()
        hub.call_tool("calls", tool, {"text": "hello"})
        samples.append(time.perf_counter() - began)
    return samples


async def client_turn(client: Any, calls: int) -> list[float]:
    samples = []
    for _ in range(calls):
        began = time.perf_counter()
        await client.call_tool("echo", {"text": "hello"})
        samples.append(time.perf_counter() - began)
    return samples


async def call_latency(calls: int, data_dir: str) -> tuple[dict[str, list[list[float]]], dict[str, str]]:
    """Per path (direct, unsandboxed, sandboxed), the samples of each of its turns; and which
    process the hub's two servers are (`bwrap` when sandboxed)."""
    tag = f"bench-sandbox-{uuid.uuid4().hex[:12]}"
    servers = {"plain": echo_server(tag, sandbox={"enabled": False}), "boxed": echo_server(tag)}
    config = parse_config(
        yaml.safe_dump(
            {"tenants": {"calls": {"servers": servers}}, "orchestrator": {"sandbox": sandbox(True)}}
        )
    )
    turns: dict[str, list[list[float]]] = {"direct": [], "unsandboxed": [], "sandboxed": []}
    params = StdioServerParameters(command=sys.executable, args=[ECHO_STDLIB, tag])
    with Hub(config, data_dir=data_dir) as hub, open(os.devnull, "w") as devnull:
        outcome = hub.start_tenant("calls", timeout=60)
        if set(outcome.values()) != {"running"}:
            raise RuntimeError(f"the call servers did not start: {outcome}")
        kinds = {s.server: comm(s.pid) for s in hub.servers("calls")}
        async with Client(stdio_client(params, errlog=devnull), mode="legacy", cache=None) as client:
            await client_turn(client, 50)  # warm-up, not counted
            await asyncio.to_thread(hub_turn, hub, "plain.echo", 50)
            await asyncio.to_thread(hub_turn, hub, "boxed.echo", 50)
            for _ in range(-(-calls // TURN)):
                turns["direct"].append(await client_turn(client, TURN))
                turns["unsandboxed"].append(await asyncio.to_thread(hub_turn, hub, "plain.echo", TURN))
                turns["sandboxed"].append(await asyncio.to_thread(hub_turn, hub, "boxed.echo", TURN))
    return turns, kinds


def report_starts(count: int, rounds: list[dict[str, dict[str, float]]]) -> None:
    def median(side: str, key: str) -> float:
        return statistics.median(r[side][key] for r in rounds)

    def both(key: str, form: str = "6.1f") -> str:
        return f"{median('unsandboxed', key):{form}} / {median('sandboxed', key):{form}}"

    print(f"\n{count} stdio echo servers (stdlib) to running; rounds: {len(rounds)}, taking turns; median:")
    for side in ("unsandboxed", "sandboxed"):
        each = ", ".join(f"{r[side]['ready_s']:.2f}" for r in rounds)
        running = min(int(r[side]["running"]) for r in rounds)
        boxed = min(int(r[side]["boxed"]) for r in rounds)
        print(
            f"  {side:<12} {median(side, 'ready_s'):6.2f} s   ({each}; {running} running, {boxed} in bwrap)"
        )
    ratio = median("sandboxed", "ready_s") / median("unsandboxed", "ready_s")
    print(f"  ratio sandboxed/unsandboxed {ratio:5.2f}")
    print("  per server, unsandboxed / sandboxed:")
    print(f"    hub CPU per start                  {both('hub_cpu_ms')} ms")
    print(f"    its processes' CPU until running   {both('server_cpu_ms')} ms")
    print(f"    its processes                      {both('processes')}")
    for key, what in (("rss", "RSS"), ("pss", "PSS")):
        print(f"    {what} of python                      {both(f'server_{key}_mib')} MiB")
        print(f"    {what} of bwrap's two processes       {both(f'bwrap_{key}_mib')} MiB")
    left = max(int(r[side]["left"]) for r in rounds for side in r)
    print(f"  all stopped in {both('stopped_s', '.2f')} s; processes left after the hub stopped: {left}")


def report_calls(calls: int, turns: dict[str, list[list[float]]], kinds: dict[str, str]) -> None:
    figures = {path: percentiles([s for turn in each for s in turn]) for path, each in turns.items()}
    plain = turns["unsandboxed"]
    halves = [percentiles([s for turn in plain[i::2] for s in turn])[0] for i in (0, 1)]

    def ratio(a: str, b: str) -> str:
        return f"{figures[a][0] / figures[b][0]:7.2f} / {figures[a][1] / figures[b][1]:7.2f}"

    print(f"\necho call, {calls} sequential calls per path, {TURN} at a time in turn (p50 / p99 ms):")
    rows = [
        ("direct mcp.Client (stdio)", "direct"),
        (f"Hub.call_tool, unsandboxed ({kinds['plain']})", "unsandboxed"),
        (f"Hub.call_tool, sandboxed ({kinds['boxed']})", "sandboxed"),
    ]
    for label, path in rows:
        print(f"  {label:<38} {figures[path][0]:7.3f} / {figures[path][1]:7.3f}")
    noise = halves[0] / halves[1]
    for label, text in (
        ("ratio sandboxed/unsandboxed", f"{ratio('sandboxed', 'unsandboxed')}   (target p50: 1 in noise)"),
        ("noise: unsandboxed, alternate turns", f"{noise:7.2f}             (p50, one half / the other)"),
        ("ratio unsandboxed/direct", ratio("unsandboxed", "direct")),
        ("ratio sandboxed/direct", ratio("sandboxed", "direct")),
    ):
        print(f"  {label:<38} {text}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="start rounds, each unsandboxed then sandboxed")
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    support = host_support()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"sandbox: {support.detail if support.available else 'UNAVAILABLE'}"
    )
    if not support.available:
        print(f"\nthis host cannot sandbox stdio servers, so nothing was measured: {support.detail}")
        return 1
    with tempfile.TemporaryDirectory() as data_dir:
        rounds = []
        for _ in range(args.rounds):
            rounds.append(
                {
                    side: start_many(args.servers, side == "sandboxed", data_dir)
                    for side in ("unsandboxed", "sandboxed")
                }
            )
        report_starts(args.servers, rounds)
        turns, kinds = asyncio.run(call_latency(args.calls, data_dir))
        report_calls(args.calls, turns, kinds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
