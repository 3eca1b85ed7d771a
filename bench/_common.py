"""What the benchmarks share (they run as scripts: `python bench/<name>.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
# What the benchmark servers run from, shown read-only in their sandboxes (see actors/sandbox.py).
SANDBOX = {"binds": [{"path": str(ROOT / folder / "servers"), "mode": "ro"} for folder in ("bench", "tests")]}


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 of `samples` (seconds), in milliseconds."""
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def marked(tag: str) -> list[int]:
    """Pids of the processes whose command line carries `tag` (the servers of one run)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if tag.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


async def timed_calls(client: Any, tool: str, calls: int, warm: int = 30) -> list[float]:
    """Seconds of each of `calls` sequential `echo`-style calls of `tool` on an open `mcp.Client`,
    after `warm` calls that are not counted."""
    for _ in range(warm):
        await client.call_tool(tool, {"text": "warm"})
    samples = []
    for _ in range(calls):
        began = time.perf_counter()
        await client.call_tool(tool, {"text": "hello"})
        samples.append(time.perf_counter() - began)
    return samples


def cpu_seconds(pid: int) -> float:
    """The CPU time (user + system) process `pid` has used so far, in seconds (Linux `/proc`)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_hub_config(path: Path, tenants: dict[str, Any], data_dir: str | Path, **orchestrator: Any) -> Path:
    """A hub configuration of `tenants` at `path`: no extra listeners, data under `data_dir`."""
    path.write_text(
        yaml.safe_dump(
            {
                "tenants": tenants,
                "gateway": {"mcp_port": None, "websocket_port": None},
                "orchestrator": {"sandbox": SANDBOX, **orchestrator, "data_dir": str(data_dir)},
            }
        )
    )
    return path


@contextlib.contextmanager
def served_hub(config: Path, stderr: Any = subprocess.DEVNULL) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`python -m hub serve` of `config` on an ephemeral port (log level WARNING): the process and
    its base URL. On the way out it gets SIGTERM (unless it already ended) and is waited for."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "serve", "--config", str(config), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        cwd=ROOT,
        env={**os.environ, "LOG_LEVEL": "WARNING"},
    )
    assert proc.stdout
    try:
        line = proc.stdout.readline()
        match = re.search(r"(http://\S+)", line)
        if match is None:
            raise RuntimeError(f"the hub did not start (it printed {line!r})")
        yield proc, match.group(1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        proc.stdout.close()


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    """Wait until something listens on `port` of 127.0.0.1."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


Caller = Callable[[], Awaitable[Any]]


async def window(callers: list[Caller], seconds: float) -> tuple[int, float]:
    """Calls made by `callers` calling at once for `seconds`, and the seconds it took."""
    done = 0
    began = time.monotonic()

    async def one(call: Caller) -> None:
        nonlocal done
        while time.monotonic() < began + seconds:
            await call()
            done += 1

    await asyncio.gather(*(one(c) for c in callers))
    return done, time.monotonic() - began


async def rotate(pools: dict[str, list[Caller]], rounds: int, seconds: float) -> dict[str, list[float]]:
    """`[calls, seconds]` of each pool, the pools taking turns `seconds` at a time for `rounds`
    rounds (so that the machine's drift falls on all of them)."""
    totals = {name: [0.0, 0.0] for name in pools}
    for _ in range(rounds):
        for name, callers in pools.items():
            calls, took = await window(callers, seconds)
            totals[name][0] += calls
            totals[name][1] += took
    return totals


@contextlib.contextmanager
def http_test_server() -> Iterator[str]:
    """The SDK-built test server (tests/servers/testserver.py) serving Streamable HTTP on a free
    loopback port, while the block runs; its MCP URL."""
    port = free_port()
    server = ROOT / "tests" / "servers" / "testserver.py"
    proc = subprocess.Popen(
        [sys.executable, str(server), "--http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def start_tenant(url: str, tenant: str = "default") -> dict[str, str]:
    """Start `tenant`'s servers on the hub at `url` (an open hub); each one's state."""
    request = urllib.request.Request(f"{url}/api/tenants/{tenant}/start", data=b"", method="POST")
    with urllib.request.urlopen(request) as answer:
        servers: dict[str, str] = json.load(answer)["servers"]
    return servers
