"""Benchmark of the REST API against direct MCP clients, measured in the same run.

Run from the repository root after the README's install command:

    python bench/bench_rest.py [--calls 1000] [--seconds 10] [--clients 64] [--servers 10]

Prints:
- p50/p99 of one `echo` call through `POST /api/tools/{name}` on a listening hub (`python -m hub
  serve`, one HTTP keep-alive connection) and through a direct `mcp.Client` over stdio to the same
  kind of server (the SDK-built test server), and their ratio (target p50 ≤ 1.3);
- aggregate throughput of `--clients` concurrent HTTP clients spread over `--servers` echo servers
  behind the hub, against the same number of concurrent callers on direct clients of as many
  servers (target ≥ 0.7 of direct).

Direct and REST calls take turns (latency 20 calls at a time, throughput one second at a time), so
that the drift of a shared machine falls on both alike; a failed call stops the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import platform
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from _common import ROOT, Caller, percentiles, rotate, served_hub, timed_calls, write_hub_config
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

TEST_SERVER = str(ROOT / "tests" / "servers" / "testserver.py")


class RawHttp:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: the load generator should cost the
    machine as little as possible (a 2-core machine runs the client, the hub and the servers)."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.host, self.port = host, int(port)

    async def __aenter__(self) -> RawHttp:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()

    async def post(self, path: str, body: object) -> tuple[int, bytes]:
        data = json.dumps(body).encode()
        self.writer.write(
            b"POST %s HTTP/1.1\r\nHost: %s:%d\r\n"  # (a Host the hub answers to: see web/edge.py)
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (path.encode(), self.host.encode(), self.port, len(data), data)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return int(head.split(b" ", 2)[1]), await self.reader.readexactly(length)


@contextlib.asynccontextmanager
async def direct_clients(count: int) -> AsyncIterator[list[Client]]:
    """`count` direct mcp.Clients, each to its own test server over stdio."""
    async with contextlib.AsyncExitStack() as stack:
        devnull = stack.enter_context(open(os.devnull, "w"))  # noqa: SIM115 - closed by the stack
        clients = []
        for _ in range(count):
            params = StdioServerParameters(command=sys.executable, args=[TEST_SERVER])
            clients.append(
                await stack.enter_async_context(Client(stdio_client(params, errlog=devnull), cache=None))
            )
        yield clients


@contextlib.contextmanager
def bench_hub(servers: int, data_dir: str) -> Iterator[str]:
    """A served hub with `servers` test servers in tenant `bench`, all running: its URL."""
    tenants = {
        "bench": {
            "quotas": {"max_concurrent_calls": None},
            "servers": {f"echo{i}": {"command": "python", "args": [TEST_SERVER]} for i in range(servers)},
        }
    }
    config = write_hub_config(Path(data_dir) / "bench.yaml", tenants, data_dir, auto_start=True)
    with served_hub(config) as (_, url):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with urllib.request.urlopen(url + "/api/servers") as answer:
                states = [s["state"] for s in json.load(answer)["servers"]]
            if states.count("running") == servers:
                break
            time.sleep(0.2)
        yield url


async def latency(url: str, calls: int, batch: int = 20) -> tuple[list[float], list[float]]:
    """p50-ready samples of `calls` sequential echo calls, direct and through REST, taking turns
    `batch` calls at a time (so that the machine's drift falls on both)."""
    async with direct_clients(1) as (client,), RawHttp(url) as http:
        path = "/api/tools/echo0.echo?tenant=bench"

        async def rest_call() -> None:
            status, body = await http.post(path, {"text": "hello"})
            assert status == 200, body

        for _ in range(50):
            await client.call_tool("echo", {"text": "warm"})
            await rest_call()
        direct: list[float] = []
        rest: list[float] = []
        while len(direct) < calls:
            direct += await timed_calls(client, "echo", min(batch, calls - len(direct)), warm=0)
            for _ in range(min(batch, calls - len(rest))):
                began = time.perf_counter()
                await rest_call()
                rest.append(time.perf_counter() - began)
        return direct, rest


async def throughput(url: str, clients: int, servers: int, seconds: float) -> dict[str, list[float]]:
    """`[calls, seconds]` of `clients` callers over `servers` servers, direct and through REST,
    taking turns one second at a time for `seconds` rounds. A failed call raises."""
    async with direct_clients(servers) as pool, contextlib.AsyncExitStack() as stack:
        connections = [await stack.enter_async_context(RawHttp(url)) for _ in range(clients)]

        def rest_call(http: RawHttp, path: str) -> Caller:
            async def call() -> None:
                status, body = await http.post(path, {"text": "x"})
                if status != 200:
                    raise RuntimeError(f"REST call failed: {status} {body[:200]!r}")

            return call

        pools: dict[str, list[Caller]] = {
            "direct": [
                functools.partial(pool[i % servers].call_tool, "echo", {"text": "x"}) for i in range(clients)
            ],
            "rest": [
                rest_call(http, f"/api/tools/echo{i % servers}.echo?tenant=bench")
                for i, http in enumerate(connections)
            ],
        }
        return await rotate(pools, max(1, round(seconds)), 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--servers", type=int, default=10)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as data_dir, bench_hub(args.servers, data_dir) as url:
        direct, rest = asyncio.run(latency(url, args.calls))
        rates = asyncio.run(throughput(url, args.clients, args.servers, args.seconds))
    d50, d99 = percentiles(direct)
    r50, r99 = percentiles(rest)
    print(f"\necho call, {args.calls} sequential calls (p50 / p99 ms):")
    print(f"  direct mcp.Client (stdio)       {d50:7.3f} / {d99:7.3f}")
    print(f"  REST POST /api/tools/{{name}}     {r50:7.3f} / {r99:7.3f}")
    print(f"  ratio REST/direct               {r50 / d50:7.2f} / {r99 / d99:7.2f}   (target p50 <= 1.3)")
    d_rate, r_rate = (calls / took for calls, took in (rates["direct"], rates["rest"]))
    print(f"\nthroughput, {args.clients} callers over {args.servers} servers, {args.seconds:g} s each:")
    print(f"  direct mcp.Clients              {d_rate:9.0f} calls/s")
    print(f"  REST through the hub            {r_rate:9.0f} calls/s")
    print(f"  ratio REST/direct               {r_rate / d_rate:9.2f}   (target >= 0.7)")


if __name__ == "__main__":
    main()
