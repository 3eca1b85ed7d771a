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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from _common import ROOT, percentiles, served_hub, timed_calls, write_hub_config
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
            b"POST %s HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (path.encode(), len(data), data)
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


async def latency_direct(calls: int) -> list[float]:
    async with direct_clients(1) as (client,):
        return await timed_calls(client, "echo", calls, warm=50)


async def latency_rest(url: str, calls: int) -> list[float]:
    async with RawHttp(url) as http:
        for _ in range(50):
            await http.post("/api/tools/echo0.echo?tenant=bench", {"text": "warm"})
        samples = []
        for _ in range(calls):
            began = time.perf_counter()
            status, body = await http.post("/api/tools/echo0.echo?tenant=bench", {"text": "hello"})
            samples.append(time.perf_counter() - began)
            assert status == 200, body
        return samples


async def throughput_direct(clients: int, servers: int, seconds: float) -> tuple[int, int]:
    async with direct_clients(servers) as pool:
        done = errors = 0
        deadline = time.perf_counter() + seconds

        async def worker(i: int) -> None:
            nonlocal done, errors
            client = pool[i % servers]
            while time.perf_counter() < deadline:
                try:
                    await client.call_tool("echo", {"text": "x"})
                    done += 1
                except Exception:
                    errors += 1

        await asyncio.gather(*(worker(i) for i in range(clients)))
        return done, errors


async def throughput_rest(url: str, clients: int, servers: int, seconds: float) -> tuple[int, int]:
    done = errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        nonlocal done, errors
        path = f"/api/tools/echo{i % servers}.echo?tenant=bench"
        async with RawHttp(url) as http:  # one keep-alive connection per client
            while time.perf_counter() < deadline:
                status, _ = await http.post(path, {"text": "x"})
                if status == 200:
                    done += 1
                else:
                    errors += 1

    await asyncio.gather(*(worker(i) for i in range(clients)))
    return done, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--servers", type=int, default=10)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    direct = asyncio.run(latency_direct(args.calls))
    direct_done, direct_errors = asyncio.run(throughput_direct(args.clients, args.servers, args.seconds))
    with tempfile.TemporaryDirectory() as data_dir, bench_hub(args.servers, data_dir) as url:
        rest = asyncio.run(latency_rest(url, args.calls))
        rest_done, rest_errors = asyncio.run(throughput_rest(url, args.clients, args.servers, args.seconds))
    d50, d99 = percentiles(direct)
    r50, r99 = percentiles(rest)
    print(f"\necho call, {args.calls} sequential calls (p50 / p99 ms):")
    print(f"  direct mcp.Client (stdio)       {d50:7.3f} / {d99:7.3f}")
    print(f"  REST POST /api/tools/{{name}}     {r50:7.3f} / {r99:7.3f}")
    print(f"  ratio REST/direct               {r50 / d50:7.2f} / {r99 / d99:7.2f}   (target p50 <= 1.3)")
    d_rate, r_rate = direct_done / args.seconds, rest_done / args.seconds
    print(f"\nthroughput, {args.clients} concurrent callers over {args.servers} servers, {args.seconds:g} s:")
    print(f"  direct mcp.Clients              {d_rate:9.0f} calls/s ({direct_errors} errors)")
    print(f"  REST through the hub            {r_rate:9.0f} calls/s ({rest_errors} errors)")
    print(f"  ratio REST/direct               {r_rate / d_rate:9.2f}   (target >= 0.7)")


if __name__ == "__main__":
    main()
