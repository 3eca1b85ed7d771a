"""The stdio upstream transport: spawn an MCP server and speak JSON-RPC lines over its pipes.

The SDK's `stdio_client` hides the process; the hub needs its pid, its exit, its stderr (into a
size-capped log file), protection against orphans, and tolerance of junk on stdout. So this
module spawns the child itself and hands the SDK a pair of memory streams, which `mcp.Client`
accepts as a transport. Everything here runs on the owning server's asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
from mcp.shared.message import SessionMessage

from actors.rawcall import RawChannel
from actors.reaper import ProcessRegistry, set_parent_death_signal

log = logging.getLogger(__name__)

# Only these variables of the hub's own environment reach a child: never a secret of the hub.
BASE_ENV_KEYS = (
    "HOME",
    "LOGNAME",
    "PATH",
    "SHELL",
    "TERM",
    "USER",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
)
_LINE_LIMIT = 64 * 1024 * 1024  # largest JSON-RPC line accepted from a server
_CLOSE_GRACE = 2.0  # seconds between closing stdin, SIGTERM and SIGKILL


def child_environment(*layers: Mapping[str, str]) -> dict[str, str]:
    """A minimal base taken from the hub's environment, then each layer (tenant env, server env)."""
    env = {k: os.environ[k] for k in BASE_ENV_KEYS if k in os.environ}
    for layer in layers:
        env.update(layer)
    return env


def resolve_command(command: str) -> str:
    """`python`/`python3` mean the hub's own interpreter; anything else is looked up as given."""
    return sys.executable if command in ("python", "python3") else command


class CappedLog:
    """A log file capped at `max_bytes`: when full it is renamed to `<name>.1` and started anew.

    Written from one loop only.
    """

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "ab")  # noqa: SIM115 - closed by close()
        self._size = self._file.tell()

    def write(self, data: bytes) -> None:
        """Append `data`, rotating first if it would pass the cap."""
        if self._size + len(data) > self.max_bytes and self._size:
            self._file.close()
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            self._file = open(self.path, "ab")  # noqa: SIM115
            self._size = 0
        self._file.write(data[-self.max_bytes :])
        self._file.flush()
        self._size += min(len(data), self.max_bytes)

    def note(self, text: str) -> None:
        """Append a line written by the hub itself (marked, so it is told apart from the server's)."""
        self.write(f"[mcp-hub] {text}\n".encode())

    def close(self) -> None:
        """Close the file."""
        self._file.close()


@dataclass
class StdioProcess:
    """A running child: its process, whether it ended, and the hub's own channel to it."""

    process: asyncio.subprocess.Process
    exited: asyncio.Event
    channel: RawChannel

    @property
    def pid(self) -> int:
        """The child's pid (also its process group id)."""
        return self.process.pid


@contextlib.asynccontextmanager
async def stdio_transport(
    command: str,
    args: tuple[str, ...],
    env: dict[str, str],
    cwd: str | None,
    errlog: CappedLog,
    registry: ProcessRegistry | None,
    on_spawn: Callable[[StdioProcess], None],
) -> AsyncIterator[tuple[Any, Any]]:
    """Spawn the server and yield `(read_stream, write_stream)` for `mcp.Client`.

    The read stream ends when the child's stdout closes (it exited or closed it), which the SDK
    turns into "connection closed" for every request in flight. On exit the child is stopped the
    spec's way: stdin closed, then SIGTERM to its group, then SIGKILL.

    Raises:
        OSError: the command cannot be started (not found, not executable, bad cwd).
    """
    process = await asyncio.create_subprocess_exec(
        resolve_command(command),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=set_parent_death_signal,
        limit=_LINE_LIMIT,
    )
    assert process.stdin is not None
    child = StdioProcess(process, asyncio.Event(), RawChannel(process.stdin.write, process.stdin.drain))
    if registry is not None:
        registry.add(process.pid)
    on_spawn(child)
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](16)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](16)

    async def pump_stdout() -> None:
        assert process.stdout is not None
        junk = 0
        async with read_writer:
            try:
                while True:
                    try:
                        line = await process.stdout.readline()
                    except (ValueError, asyncio.LimitOverrunError):
                        errlog.note(f"stdout line longer than {_LINE_LIMIT} bytes: connection dropped")
                        return
                    if not line:
                        return
                    if not line.strip() or await child.channel.take(line):
                        continue
                    try:
                        message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                    except ValueError:
                        # Junk on stdout (a stray print): skipped, so the session survives it.
                        junk += 1
                        if junk <= 20:
                            errlog.note(f"ignored a stdout line that is not JSON-RPC: {line[:200]!r}")
                        continue
                    try:
                        await read_writer.send(SessionMessage(message))
                    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                        return
            finally:
                child.channel.close()  # the hub's own calls in flight fail as the SDK's do

    async def pump_stdin() -> None:
        assert process.stdin is not None
        async with write_reader:
            async for session_message in write_reader:
                data = session_message.message.model_dump_json(by_alias=True, exclude_unset=True)
                try:
                    process.stdin.write(data.encode() + b"\n")
                    await process.stdin.drain()
                except (BrokenPipeError, ConnectionResetError):
                    return

    async def pump_stderr() -> None:
        assert process.stderr is not None
        while chunk := await process.stderr.read(65536):
            errlog.write(chunk)

    async def watch_exit() -> None:
        code = await process.wait()
        errlog.note(f"process {process.pid} exited with code {code}")
        child.exited.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(pump_stdout)
        tasks.start_soon(pump_stdin)
        tasks.start_soon(pump_stderr)
        tasks.start_soon(watch_exit)
        try:
            yield read_stream, write_stream
        finally:
            with anyio.CancelScope(shield=True):
                await _stop(child)
                if registry is not None:
                    registry.discard(process.pid)
            tasks.cancel_scope.cancel()


async def _stop(child: StdioProcess) -> None:
    """Close stdin, wait, SIGTERM the group, wait, SIGKILL the group."""
    process = child.process
    if process.returncode is None and process.stdin is not None:
        with contextlib.suppress(OSError, RuntimeError):
            process.stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(child.exited.wait(), _CLOSE_GRACE)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)  # the whole group: grandchildren too
        except (ProcessLookupError, PermissionError):
            break
        if process.returncode is not None and sig == signal.SIGTERM:
            # The leader is gone; give the rest of its group a moment before SIGKILL.
            await asyncio.sleep(0.05)
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(child.exited.wait(), _CLOSE_GRACE)
