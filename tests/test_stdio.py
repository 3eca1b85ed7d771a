"""The stdio transport on its own: a real child served over its pipes, and reaped when it ends."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest
from conftest import MARK, TEST_SERVER, process_gone
from mcp import Client

from actors.upstream.stdio import CappedLog, StdioProcess, child_environment, stdio_transport


async def _serve_once(log_path: Path) -> tuple[StdioProcess, set[str]]:
    """Spawn the test server, list its tools, close: the child and the tools it listed."""
    spawned: list[StdioProcess] = []
    errlog = CappedLog(log_path, 1 << 20)
    env = child_environment({"MCP_HUB_TEST_MARK": MARK})
    transport = stdio_transport("python", (TEST_SERVER,), env, None, errlog, None, spawned.append)
    try:
        async with Client(transport, mode="legacy", cache=None) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
    finally:
        errlog.close()
    return spawned[0], tools


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "pidfd-refused"])
def test_a_child_is_served_then_reaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pidfd: bool) -> None:
    if not pidfd:  # as under an old kernel or a seccomp profile: a thread waits for the child

        def refused(pid: int, flags: int = 0) -> int:
            raise OSError(errno.ENOSYS, "pidfd_open refused")

        monkeypatch.setattr(os, "pidfd_open", refused)
    child, tools = asyncio.run(_serve_once(tmp_path / "server.log"))
    assert {"echo", "pid", "sleep"} <= tools
    assert child.exited.is_set() and child.process.returncode == 0  # it exited on stdin's close
    assert process_gone(child.pid)
    assert f"process {child.pid} exited with code 0" in (tmp_path / "server.log").read_text()
