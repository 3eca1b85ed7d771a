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

Throughput is measured twice. `--concurrency` SDK clients in this one process cost more CPU per
call than either proxy, so on a small machine they cap the rate near the same figure for both; so
also `--concurrency` raw keep-alive HTTP connections that POST a pre-encoded call (`raw_rate`, a
load generator far cheaper than the proxies), which shows what each proxy itself can carry.
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
import time
import venv
from pathlib import Path
from typing import Any

from _common import ROOT, free_port, percentiles, served_hub, timed_calls, wait_port, write_hub_config
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


async def sequential(target: Any, tool: str, calls: int, mode: str = "legacy") -> list[float]:
    async with Client(target, mode=mode, cache=None) as client:
        assert (await client.call_tool(tool, {"text": "hello"})).content[0].text == "hello"  # type: ignore[union-attr]
        return await timed_calls(client, tool, calls)


async def concurrent(
    make_target: Any, tool: str, clients: int, seconds: float = 5.0, mode: str = "legacy"
) -> float:
    """Calls per second of `clients` clients calling at once for `seconds`."""
    done = 0
    stop = time.monotonic() + seconds

    async def one() -> None:
        nonlocal done
        async with Client(make_target(), mode=mode, cache=None) as client:
            await client.call_tool(tool, {"text": "warm"})
            while time.monotonic() < stop:
                await client.call_tool(tool, {"text": "x"})
                done += 1

    began = time.monotonic()
    await asyncio.gather(*(one() for _ in range(clients)))
    return done / (time.monotonic() - began)


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


async def raw_rate(url: str, tool: str, connections: int, mode: str, seconds: float = 5.0) -> float:
    """Calls per second of `connections` raw keep-alive connections calling at once for `seconds`."""
    base = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    done = 0

    async def one(stop: float) -> None:
        nonlocal done
        if mode == "legacy":
            headers = base
            initialize = {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": ENVELOPE["io.modelcontextprotocol/clientInfo"],
                },
            }
            async with RawConnection(url, headers) as opening:
                _, answer, _ = await opening.post(json.dumps(initialize).encode())
                headers = {
                    **base,
                    "Mcp-Session-Id": answer["mcp-session-id"],
                    "MCP-Protocol-Version": "2025-11-25",
                }
                opening.headers = headers
                await opening.post(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
            meta: dict[str, Any] = {}
        else:
            headers = {**base, "MCP-Protocol-Version": mode, "Mcp-Method": "tools/call", "Mcp-Name": tool}
            meta = {"_meta": ENVELOPE}
        body = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": tool, "arguments": {"text": "x"}, **meta},
            }
        ).encode()
        async with RawConnection(url, headers) as connection:
            while time.monotonic() < stop:
                status, _, answer = await connection.post(body)
                if status != 200 or b'"result"' not in answer:
                    raise RuntimeError(f"{url}: {status} {answer[:200]!r}")
                done += 1

    began = time.monotonic()
    await asyncio.gather(*(one(began + seconds) for _ in range(connections)))
    return done / (time.monotonic() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
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
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as devnull:
        direct = StdioServerParameters(command=server[0], args=server[1:])
        results["direct (stdio)"] = {
            "samples": asyncio.run(sequential(stdio_client(direct, errlog=devnull), "echo", args.calls)),
            "concurrent": asyncio.run(
                concurrent(lambda: stdio_client(direct, errlog=devnull), "echo", args.concurrency)
            ),
        }
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
                for name, target, tool, mode in (
                    ("MCP Hub HTTP facade", url + "/mcp", "echo__echo", "legacy"),
                    ("MCP Hub, 2026-07-28", url + "/mcp", "echo__echo", "2026-07-28"),
                    ("mcp-proxy", f"http://127.0.0.1:{port}/mcp", "echo", "legacy"),
                ):
                    results[name] = {
                        "samples": asyncio.run(sequential(target, tool, args.calls, mode)),
                        "concurrent": asyncio.run(
                            concurrent(lambda t=target: t, tool, args.concurrency, mode=mode)
                        ),
                        "raw": asyncio.run(raw_rate(target, tool, args.concurrency, mode)),
                    }
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
