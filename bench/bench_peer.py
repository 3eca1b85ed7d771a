"""Peer comparison: the same echo tool directly, through MCP Hub's HTTP facade, and through
`mcp-proxy`, in one run (issue 9, item 3).

Run from the repository root after the README's install command:

    python bench/bench_peer.py [--calls 500] [--concurrency 8] [--json FILE]

`mcp-proxy` (PyPI, the most used Python MCP proxy) requires `mcp<2`, so it is installed into its
own virtualenv, `bench/.venv-mcp-proxy` (made on first use: needs PyPI). Both proxies expose the
same stdio server (`bench/servers/echo_stdlib.py`) over Streamable HTTP; the client is the `mcp`
SDK's `Client` in every case, in `legacy` mode (2025-11-25: the era both proxies and the server
speak), and once more to MCP Hub in `2026-07-28` mode (what an `mcp` 2.x client in its default
`auto` mode speaks to the hub; `mcp-proxy` has no such era). Printed: p50/p99 of sequential
calls, calls/s of one sequential client and of `--concurrency` clients at once, and each
proxy's ratio to the direct call. Target: MCP Hub at least as fast as `mcp-proxy`.

Every measure is taken by all paths in turn (latency 20 calls at a time, throughput one second
at a time, five rounds), so that the drift of a shared machine falls on all of them alike.
Throughput is measured twice: by `--concurrency` SDK clients spread over `--processes` processes
(in one Python process they would be capped at one core and measure themselves), and by
`--concurrency` raw keep-alive HTTP connections that POST a pre-encoded call (`RawConnection`, a
load generator far cheaper per call than the proxies), which shows what each proxy itself can
carry. The SDK clients cost more CPU per call than either proxy, so on a small machine their
figure says as much about the client as about the proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import multiprocessing
import os
import platform
import signal
import subprocess
import sys
import tempfile
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    ROOT,
    Caller,
    free_port,
    percentiles,
    rotate,
    served_hub,
    timed_calls,
    wait_port,
    write_hub_config,
)
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

ECHO_STDLIB = str(ROOT / "bench" / "servers" / "echo_stdlib.py")
PROXY_VENV = ROOT / "bench" / ".venv-mcp-proxy"
MCP_PROXY = "mcp-proxy==0.13.0"


def proxy_executable() -> Path:
    """`mcp-proxy` in its own virtualenv (made and installed on first use)."""
    exe = PROXY_VENV / "bin" / "mcp-proxy"
    if not exe.exists():
        print(f"installing {MCP_PROXY} into {PROXY_VENV} ...")
        venv.create(PROXY_VENV, with_pip=True)
        subprocess.run([str(PROXY_VENV / "bin" / "pip"), "install", "--quiet", MCP_PROXY], check=True)
    return exe


ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
}


class RawConnection:
    """One keep-alive HTTP/1.1 connection that POSTs pre-encoded JSON-RPC messages: a load
    generator far cheaper per call than any proxy measured, so that it does not cap the rate."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.host, _, rest = url.removeprefix("http://").partition(":")
        port, _, path = rest.partition("/")
        self.port, self.path, self.headers = int(port), "/" + path, dict(headers)

    async def __aenter__(self) -> RawConnection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.writer.close()

    async def post(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        head = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        self.writer.write(
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: {len(body)}\r\n"
            f"{head}\r\n".encode()
            + body
        )
        status = int((await self.reader.readline()).split()[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            return status, headers, await self.reader.readexactly(int(headers["content-length"]))
        chunks = []
        while size := int((await self.reader.readline()).strip() or b"0", 16):
            chunks.append(await self.reader.readexactly(size))
            await self.reader.readline()
        await self.reader.readline()
        return status, headers, b"".join(chunks)


async def open_raw(url: str, tool: str, mode: str) -> tuple[RawConnection, bytes]:
    """A raw connection ready to call `tool` (a 2025-11-25 session opened on it first), and the
    encoded call it POSTs."""
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    meta: dict[str, Any] = {}
    if mode == "legacy":
        connection = await RawConnection(url, headers).__aenter__()
        initialize = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "bench", "version": "1"},
            },
        }
        _, answer, _ = await connection.post(json.dumps(initialize).encode())
        connection.headers.update(
            {"Mcp-Session-Id": answer["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"}
        )
        await connection.post(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
    else:
        headers.update({"MCP-Protocol-Version": mode, "Mcp-Method": "tools/call", "Mcp-Name": tool})
        connection = await RawConnection(url, headers).__aenter__()
        meta = {"_meta": ENVELOPE}
    params = {"name": tool, "arguments": {"text": "x"}, **meta}
    return connection, json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
    ).encode()


@dataclass(frozen=True)
class Target:
    """One way to call the echo tool: over HTTP at `url`, else by spawning `command` (stdio)."""

    name: str
    tool: str
    mode: str
    url: str | None = None
    command: tuple[str, ...] = ()

    def make(self, stack: contextlib.ExitStack) -> Any:
        """An `mcp.Client` target."""
        if self.url is not None:
            return self.url
        errlog = stack.enter_context(open(os.devnull, "w"))  # noqa: SIM115  (closed by the stack)
        return stdio_client(
            StdioServerParameters(command=self.command[0], args=list(self.command[1:])), errlog=errlog
        )


def raw_caller(connection: RawConnection, body: bytes) -> Caller:
    async def call() -> None:
        status, _, answer = await connection.post(body)
        if status != 200 or b'"result"' not in answer:
            raise RuntimeError(f"{connection.path}: {status} {answer[:200]!r}")

    return call


async def opened_client(stack: contextlib.AsyncExitStack, sync: contextlib.ExitStack, t: Target) -> Any:
    client = await stack.enter_async_context(Client(t.make(sync), mode=t.mode, cache=None))
    assert (await client.call_tool(t.tool, {"text": "hello"})).content[0].text == "hello"
    return client


async def sdk_worker(targets: list[Target], clients: int, rounds: int, ready: Any) -> dict[str, list[float]]:
    """One worker process's share of the SDK-client throughput: `clients` clients per target,
    all targets in turn, starting when every worker is ready."""
    with contextlib.ExitStack() as sync:
        async with contextlib.AsyncExitStack() as stack:
            pools: dict[str, list[Caller]] = {}
            for t in targets:
                opened = [await opened_client(stack, sync, t) for _ in range(clients)]
                pools[t.name] = [functools.partial(c.call_tool, t.tool, {"text": "x"}) for c in opened]
            await asyncio.to_thread(ready.wait)
            return await rotate(pools, rounds, 1.0)


def run_sdk_worker(targets: list[Target], clients: int, rounds: int, ready: Any, out: Any) -> None:
    out.put(asyncio.run(sdk_worker(targets, clients, rounds, ready)))


def sdk_rates(targets: list[Target], concurrency: int, processes: int, rounds: int = 5) -> dict[str, float]:
    """Calls per second of `concurrency` SDK clients per target, spread over `processes` processes
    (one Python process caps its clients at one core: it would measure itself, not the proxies)."""
    context = multiprocessing.get_context("spawn")
    ready, out = context.Barrier(processes), context.Queue()
    shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    workers = [context.Process(target=run_sdk_worker, args=(targets, n, rounds, ready, out)) for n in shares]
    for worker in workers:
        worker.start()
    totals = [out.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join(60)
    # Each process's windows run at the same time as the others': add their calls, not their seconds.
    return {
        t.name: sum(r[t.name][0] for r in totals) / (sum(r[t.name][1] for r in totals) / processes)
        for t in targets
    }


async def measure(
    targets: list[Target], calls: int, concurrency: int, rounds: int = 5, batch: int = 20
) -> dict[str, dict[str, Any]]:
    """Latency and raw-connection throughput of every target, each measure taken by all in turn."""
    results: dict[str, dict[str, Any]] = {t.name: {"samples": []} for t in targets}
    with contextlib.ExitStack() as sync:
        async with contextlib.AsyncExitStack() as stack:
            # Latency: one client each, `batch` sequential calls at a time.
            singles = [await opened_client(stack, sync, t) for t in targets]
            for single, t in zip(singles, targets, strict=True):
                await timed_calls(single, t.tool, 0)
            while len(results[targets[0].name]["samples"]) < calls:
                for single, t in zip(singles, targets, strict=True):
                    results[t.name]["samples"] += await timed_calls(single, t.tool, batch, warm=0)
            # Throughput of `concurrency` raw connections each.
            raw_pools: dict[str, list[Caller]] = {}
            for t in targets:
                if t.url is not None:
                    raw_pools[t.name] = []
                    for _ in range(concurrency):
                        connection, body = await open_raw(t.url, t.tool, t.mode)
                        stack.push_async_callback(connection.__aexit__, None, None, None)
                        raw_pools[t.name].append(raw_caller(connection, body))
            for name, (done, took) in (await rotate(raw_pools, rounds, 1.0)).items():
                results[name]["raw"] = done / took
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--processes", type=int, default=2, help="processes the SDK clients run in")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    proxy = proxy_executable()
    version = subprocess.run([str(proxy), "--version"], capture_output=True, text=True).stdout.strip()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"mcp-proxy {version or MCP_PROXY}"
    )
    server = [sys.executable, "-S", ECHO_STDLIB]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tenants = {"default": {"servers": {"echo": {"command": server[0], "args": server[1:]}}}}
        config = write_hub_config(Path(tmp) / "hub.yaml", tenants, f"{tmp}/data", auto_start=True)
        port = free_port()
        peer = subprocess.Popen(
            [str(proxy), "--port", str(port), "--log-level", "WARNING", "--", *server],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with served_hub(config) as (_, url):
                wait_port(port)
                proxy_url = f"http://127.0.0.1:{port}/mcp"
                targets = [
                    Target("direct (stdio)", "echo", "legacy", command=tuple(server)),
                    Target("MCP Hub HTTP facade", "echo__echo", "legacy", url + "/mcp"),
                    Target("MCP Hub, 2026-07-28", "echo__echo", "2026-07-28", url + "/mcp"),
                    Target("mcp-proxy", "echo", "legacy", proxy_url),
                ]
                results = asyncio.run(measure(targets, args.calls, args.concurrency))
                for name, rate in sdk_rates(targets, args.concurrency, args.processes).items():
                    results[name]["concurrent"] = rate
        finally:
            peer.send_signal(signal.SIGTERM)
            peer.wait(30)
    figures = report(results, args.concurrency)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


def report(results: dict[str, dict[str, Any]], concurrency: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    print(
        f"\necho call: p50 / p99 ms, calls/s of one client, of {concurrency} SDK clients, "
        f"of {concurrency} raw HTTP connections"
    )
    for name, r in results.items():
        p50, p99 = percentiles(r["samples"])
        rate = len(r["samples"]) / sum(r["samples"])
        figures[name] = {
            "p50_ms": p50,
            "p99_ms": p99,
            "calls_per_s": rate,
            "concurrent_calls_per_s": r["concurrent"],
            "raw_calls_per_s": r.get("raw"),
        }
        raw = f"{r['raw']:7.0f}/s" if "raw" in r else "      -"
        print(f"  {name:20} {p50:7.2f} / {p99:7.2f}   {rate:7.0f}/s   {r['concurrent']:7.0f}/s   {raw}")
    base = figures["direct (stdio)"]
    for name in ("MCP Hub HTTP facade", "MCP Hub, 2026-07-28", "mcp-proxy"):
        p50, p99 = figures[name]["p50_ms"] / base["p50_ms"], figures[name]["p99_ms"] / base["p99_ms"]
        print(f"  ratio {name} / direct: p50 {p50:.2f}, p99 {p99:.2f}")
    peer = figures["mcp-proxy"]
    for name, era in (("MCP Hub HTTP facade", "both legacy"), ("MCP Hub, 2026-07-28", "hub 2026-07-28")):
        hub = figures[name]
        print(
            f"  MCP Hub / mcp-proxy ({era}): p50 {hub['p50_ms'] / peer['p50_ms']:.2f}, "
            f"throughput {hub['concurrent_calls_per_s'] / peer['concurrent_calls_per_s']:.2f}x (SDK), "
            f"{hub['raw_calls_per_s'] / peer['raw_calls_per_s']:.2f}x (raw)   "
            "(target: p50 ratio <= 1, throughput >= 1)"
        )
    return figures


if __name__ == "__main__":
    main()
