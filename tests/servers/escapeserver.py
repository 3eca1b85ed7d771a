"""An MCP server (stdio, `mcp.server.MCPServer`) whose tool tries to escape its sandbox.

Tool `escape` attempts, as an untrusted server of one tenant would, to reach what belongs to the
hub or to another tenant, and reports each attempt without judging it: the test decides what
counts as an escape (it also checks the host side: a file written, a process killed).

    python tests/servers/escapeserver.py

Attempts (each a key of the structured result, valued `{"ok": bool, "detail": str}`):

- `environ:PID`, `cmdline:PID`: read `/proc/PID/environ` and `/proc/PID/cmdline` (detail: the
  text, NULs as spaces);
- `scan`: read every `/proc/*/environ` and list the pids whose environment holds `needle`;
- `pids`: list `/proc` (detail: the pids seen, space-separated); ok if it lists any of `pids`;
- `signal0:PID`: `kill(PID, 0)` (may it signal PID at all); `kill:PID`: `kill(PID, SIGTERM)`;
- `read:PATH`: read a file (its text) or list a folder (its names);
- `write:PATH`: create the file PATH with the text `escaped`;
- `connect:PORT`: open a TCP connection to 127.0.0.1:PORT;
- `whoami`: HOME, the working directory and its own pid (detail, as JSON).
"""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path
from typing import Any

from mcp.server import MCPServer

server = MCPServer("escape")


def _attempt(action: Any) -> dict[str, Any]:
    try:
        return {"ok": True, "detail": str(action())[:4000]}
    except Exception as exc:  # every failure is an answer here
        return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}


def _read(path: str) -> str:
    target = Path(path)
    if target.is_dir():
        return " ".join(sorted(p.name for p in target.iterdir()))
    return target.read_bytes().replace(b"\0", b" ").decode(errors="replace")


def _write(path: str) -> str:
    Path(path).write_text("escaped")
    return "written"


def _pids() -> list[str]:
    return sorted((e for e in os.listdir("/proc") if e.isdigit()), key=int)


def _scan(needle: str) -> str:
    found = []
    for pid in _pids():
        try:
            if needle.encode() in Path(f"/proc/{pid}/environ").read_bytes():
                found.append(pid)
        except OSError:
            continue
    if not found:
        raise LookupError("no readable environment holds the needle")
    return " ".join(found)


def _listed(wanted: list[int]) -> str:
    seen = _pids()
    if not set(map(str, wanted)) & set(seen):
        raise LookupError(f"none of {wanted} listed in /proc: {' '.join(seen)}")
    return " ".join(seen)


def _connect(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=3):
        return "connected"


@server.tool(description="Try each escape and report what happened.")
def escape(
    pids: list[int],
    needle: str = "",
    signal0: list[int] | None = None,
    kill: list[int] | None = None,
    read: list[str] | None = None,
    write: list[str] | None = None,
    connect: list[int] | None = None,
) -> dict[str, Any]:
    """Each attempt's outcome, by name."""
    out: dict[str, Any] = {}
    for pid in pids:
        out[f"environ:{pid}"] = _attempt(lambda pid=pid: _read(f"/proc/{pid}/environ"))
        out[f"cmdline:{pid}"] = _attempt(lambda pid=pid: _read(f"/proc/{pid}/cmdline"))
    out["pids"] = _attempt(lambda: _listed(pids))
    if needle:
        out["scan"] = _attempt(lambda: _scan(needle))
    for pid in signal0 or ():
        out[f"signal0:{pid}"] = _attempt(lambda pid=pid: os.kill(pid, 0) or "may signal")
    for pid in kill or ():
        out[f"kill:{pid}"] = _attempt(lambda pid=pid: os.kill(pid, signal.SIGTERM) or "sent SIGTERM")
    for path in read or ():
        out[f"read:{path}"] = _attempt(lambda path=path: _read(path))
    for path in write or ():
        out[f"write:{path}"] = _attempt(lambda path=path: _write(path))
    for port in connect or ():
        out[f"connect:{port}"] = _attempt(lambda port=port: _connect(port))
    me = {"home": os.environ.get("HOME"), "cwd": os.getcwd(), "pid": os.getpid()}
    out["whoami"] = {"ok": True, "detail": json.dumps(me)}
    return out


if __name__ == "__main__":
    server.run("stdio")
