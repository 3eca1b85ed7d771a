"""An MCP server (stdio, `mcp.server.MCPServer`) that uses as much as it is asked: memory,
processes, CPU. For the tests of resource limits (`actors.limits`).

    python tests/servers/hogserver.py

Tools:

- `allocate(mb)`: allocate and touch `mb` MiB more, and keep it (result: the MiB held, and
  "MemoryError" if an allocation failed, after which it holds none);
- `spawn(n)`: start up to `n` `sleep` processes at once; result: how many started and the first
  error, after which they are killed;
- `spin(seconds)`: busy-loop for `seconds` of wall time; result: the CPU seconds it got;
- `ping()`: "pong".
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

from mcp.server import MCPServer

server = MCPServer("hog")
_held: list[bytearray] = []


@server.tool(description="Allocate and touch `mb` MiB more, and keep it.")
def allocate(mb: int) -> dict[str, Any]:
    try:
        for _ in range(mb):
            _held.append(bytearray(b"x" * (1 << 20)))  # (written: resident, not only reserved)
    except MemoryError:  # (an rlimit refused it; what was allocated is let go)
        _held.clear()
        return {"held_mb": 0, "error": "MemoryError"}
    return {"held_mb": len(_held), "error": None}


@server.tool(description="Start up to `n` sleep processes at once, then kill them.")
def spawn(n: int) -> dict[str, Any]:
    children: list[subprocess.Popen[bytes]] = []
    error = None
    try:
        for _ in range(n):
            children.append(subprocess.Popen(["sleep", "60"]))
    except OSError as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        for child in children:
            child.kill()
            child.wait()
    return {"started": len(children), "error": error}


@server.tool(description="Busy-loop for `seconds` of wall time; return the CPU seconds it got.")
def spin(seconds: float) -> dict[str, Any]:
    wall, cpu = time.monotonic(), time.thread_time()
    while time.monotonic() - wall < seconds:
        pass
    return {"cpu": time.thread_time() - cpu, "wall": time.monotonic() - wall}


@server.tool(description="Answer pong.")
def ping() -> str:
    return "pong"


if __name__ == "__main__":
    server.run("stdio")
