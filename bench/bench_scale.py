"""Scale benchmark: one hub supervising many stdio servers across many tenants (issue 9, items 1, 4).

Run from the repository root after the README's install command:

    python bench/bench_scale.py [--servers 1000] [--tenants 50] [--idle 30] [--no-sandbox] [--json FILE]

Starts `python -m hub serve` (a real process on an ephemeral port, `auto_start`) over N servers
of `bench/servers/echo_stdlib.py` (standard library only, one tool) spread evenly over T tenants,
each in its own sandbox (`sandbox.required: true`: on a host that cannot sandbox, it says so and
exits 1; `--no-sandbox` measures them unsandboxed), then measures, in one run:
- seconds until every server is `running` (target <= 60 s for 1,000), the hub's CPU seconds spent
  until then (per server start), the most threads it had meanwhile, the RSS of one server (its
  python; sandboxed, also its two bwrap processes) and how many servers run in bwrap;
- the hub's RSS without its children (target <= 1 GiB) and its thread count;
- the hub's CPU while idle over `--idle` seconds (target <= 2 % of one core);
- p50/p99 of `GET /api/tools?tenant=` (one tenant), `GET /api/tools` (an admin: every tenant) and a
  facade `tools/list` for one tenant (Streamable HTTP), target p50 <= 20 ms; and of a REST tool call
  at this scale, as a ratio to a direct call to one such server measured in the same run;
- then SIGKILL of the hub: how many of its children are left after 5 s (target 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from _common import ROOT, SANDBOX, marked, percentiles, served_hub, timed_calls, write_hub_config
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

sys.path.insert(0, str(ROOT))

from actors.sandbox import host_support

ECHO_STDLIB = str(ROOT / "bench" / "servers" / "echo_stdlib.py")
TICKS = os.sysconf("SC_CLK_TCK")


def proc_status(pid: int) -> dict[str, str]:
    """`/proc/<pid>/status` as a dict."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def rss_mib(pid: int) -> float:
    return int(proc_status(pid)["VmRSS"].split()[0]) / 1024


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime of the process itself


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as answer:
        return json.load(answer)


def post(url: str, body: Any) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.load(answer)


def timed(fn: Any, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - began)
    return samples


async def facade_lists(url: str, count: int) -> tuple[list[float], int]:
    async with Client(url, mode="auto", cache=None) as client:
        tools = len((await client.list_tools()).tools)
        samples = []
        for _ in range(count):
            began = time.perf_counter()
            await client.list_tools()
            samples.append(time.perf_counter() - began)
        return samples, tools


async def direct_calls(count: int, tag: str) -> list[float]:
    """Calls of a direct `mcp.Client` to one echo server over stdio (the baseline of the ratio)."""
    params = StdioServerParameters(command=sys.executable, args=["-S", ECHO_STDLIB, tag])
    async with Client(stdio_client(params), mode="legacy", cache=None) as client:
        return await timed_calls(client, "echo", count, warm=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle CPU measurement")
    parser.add_argument("--requests", type=int, default=100, help="requests per latency figure")
    parser.add_argument("--no-sandbox", action="store_true", help="run the servers unsandboxed")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    tag = f"bench-scale-{uuid.uuid4().hex[:12]}"
    support = host_support()
    sandboxed = not args.no_sandbox
    detail = support.detail if support.available else "UNAVAILABLE"
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{args.servers} servers over {args.tenants} tenants, "
        + (f"sandboxed ({detail})" if sandboxed else "unsandboxed (--no-sandbox)")
    )
    if sandboxed and not support.available:
        print(f"\nthis host cannot sandbox stdio servers, so nothing was measured: {support.detail}")
        print("(--no-sandbox measures them unsandboxed)")
        sys.exit(1)
    per_tenant = -(-args.servers // args.tenants)
    tenants: dict[str, Any] = {}
    for n in range(args.servers):
        tenant = tenants.setdefault(f"t{n // per_tenant}", {"servers": {}})
        tenant["servers"][f"echo{n % per_tenant}"] = {
            "command": "python",
            "args": ["-S", ECHO_STDLIB, tag],  # -S: no site import, a smaller process
            "protocol": "legacy",
        }
    figures: dict[str, Any] = {"servers": args.servers, "tenants": len(tenants), "sandboxed": sandboxed}
    policy = {**SANDBOX, "enabled": sandboxed, "required": sandboxed}
    with tempfile.TemporaryDirectory() as tmp:
        config = write_hub_config(
            Path(tmp) / "hub.yaml",
            tenants,
            f"{tmp}/data",
            auto_start=True,
            startup_timeout=120,
            sandbox=policy,
        )
        began = time.perf_counter()
        with served_hub(config) as (hub, url):
            running = peak_threads = 0
            while time.perf_counter() - began < 600:
                peak_threads = max(peak_threads, int(proc_status(hub.pid)["Threads"]))
                servers = get(url + "/api/servers")["servers"]
                running = sum(1 for s in servers if s["state"] == "running")
                if running == args.servers:
                    break
                time.sleep(0.5)
            figures["ready_s"] = time.perf_counter() - began
            figures["hub_cpu_ready_s"] = cpu_seconds(hub.pid)  # since its start, imports included
            figures["hub_peak_threads"] = peak_threads
            figures["running"] = running
            children = marked(tag)  # sandboxed, each server is bwrap, its init (bwrap too) and python
            pythons = sorted(rss_mib(p) for p in children if comm(p) != "bwrap")
            bwraps = [rss_mib(p) for p in children if comm(p) == "bwrap"]
            figures["server_rss_mib"] = pythons[len(pythons) // 2]
            figures["bwrap_rss_mib"] = sum(bwraps) / max(1, running)  # per server
            figures["in_bwrap"] = sum(1 for s in servers if s.get("pid") and comm(s["pid"]) == "bwrap")
            figures["processes"] = len(children)
            status = proc_status(hub.pid)
            figures["hub_rss_mib"] = rss_mib(hub.pid)
            figures["hub_threads"] = int(status["Threads"])
            time.sleep(3)  # let the start-up settle before measuring idle
            cpu0, wall0 = cpu_seconds(hub.pid), time.perf_counter()
            time.sleep(args.idle)
            figures["idle_cpu_pct"] = 100 * (cpu_seconds(hub.pid) - cpu0) / (time.perf_counter() - wall0)

            one = f"{url}/api/tools?tenant=t0"
            figures["tools_one_tenant"] = percentiles(timed(lambda: get(one), args.requests))
            figures["tools_all"] = percentiles(
                timed(lambda: get(url + "/api/tools"), max(10, args.requests // 5))
            )
            samples, listed = asyncio.run(facade_lists(f"{url}/tenants/t0/mcp", args.requests))
            figures["facade_tools_list"] = percentiles(samples)
            figures["facade_tools"] = listed
            call = f"{url}/api/tools/echo0.echo?tenant=t0"
            figures["rest_call"] = percentiles(timed(lambda: post(call, {"text": "x"}), args.requests))
            figures["direct_call"] = percentiles(asyncio.run(direct_calls(args.requests, tag)))

            hub.send_signal(signal.SIGKILL)
            hub.wait(30)
            time.sleep(5)  # the figure is "children left 5 s after the kill"
            left = marked(tag)
            figures["children_left_after_kill"] = len(left)
            for pid in left:
                os.kill(pid, signal.SIGKILL)
    report(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


def report(f: dict[str, Any]) -> None:
    def ms(pair: tuple[float, float]) -> str:
        return f"{pair[0]:7.2f} / {pair[1]:7.2f} ms"

    print(f"\n{f['running']}/{f['servers']} servers running after {f['ready_s']:.1f} s   (target <= 60 s)")
    cpu = f["hub_cpu_ready_s"]
    print(f"hub CPU until then: {cpu:.1f} s ({1000 * cpu / f['servers']:.1f} ms per server start)")
    print(f"hub threads at most while starting: {f['hub_peak_threads']}")
    print(f"servers whose process is bwrap (sandboxed): {f['in_bwrap']}; their processes: {f['processes']}")
    print(
        f"one echo server: {f['server_rss_mib']:.1f} MiB RSS (python), bwrap's {f['bwrap_rss_mib']:.1f} MiB"
    )
    rss, threads = f["hub_rss_mib"], f["hub_threads"]
    print(f"hub RSS (children excluded): {rss:.0f} MiB, {threads} threads   (target <= 1024 MiB)")
    print(f"hub idle CPU: {f['idle_cpu_pct']:.2f} % of one core   (target <= 2 %)")
    print("latency p50 / p99 (target p50 <= 20 ms for the catalog):")
    print(f"  GET /api/tools?tenant=t0        {ms(f['tools_one_tenant'])}")
    print(f"  GET /api/tools (every tenant)   {ms(f['tools_all'])}")
    print(f"  facade tools/list (t0, {f['facade_tools']} tools) {ms(f['facade_tools_list'])}")
    print(f"  REST tool call at this scale    {ms(f['rest_call'])}")
    print(f"  direct mcp.Client call (stdio)  {ms(f['direct_call'])}")
    ratio = f["rest_call"][0] / f["direct_call"][0]
    print(f"  ratio REST call / direct: {ratio:.1f} (p50)")
    print(f"children left 5 s after SIGKILL of the hub: {f['children_left_after_kill']}   (target 0)")


if __name__ == "__main__":
    main()
