"""The stdio upstream transport: speak JSON-RPC lines over a spawned server's pipes.

The SDK's `stdio_client` hides the process; the hub needs its pid, its exit, its stderr (into a
size-capped log file), protection against orphans, and tolerance of junk on stdout. So the hub
spawns the child itself (`actors.upstream.process`) and this module hands the SDK a pair of
memory streams, which `mcp.Client` accepts as a transport. Every stdout line passes the
server's notification gate, then the hub's own channel (`actors.upstream.rawcall`), before the
SDK parses what is left. Everything here runs on the owning server's asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp.types as types
from mcp.shared.message import SessionMessage

from actors.notification_gate import NotificationGate
from actors.reaper import ProcessRegistry
from actors.sandbox import Sandbox
from actors.upstream import process
from actors.upstream.errlog import CappedLog
from actors.upstream.process import BASE_ENV_KEYS, SpawnError, child_environment
from actors.upstream.rawcall import RawChannel
from hub import jsontext

__all__ = [
    "BASE_ENV_KEYS",
    "CappedLog",
    "SpawnError",
    "StdioProcess",
    "child_environment",
    "stdio_transport",
]

log = logging.getLogger(__name__)

_FLOOD_PAUSE = 0.1  # seconds a flooding server's stdout is not read, after each notification dropped
_LINE_LIMIT = 64 * 1024 * 1024  # largest JSON-RPC line accepted from a server
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")  # colours, cursor moves, controls


@dataclass
class StdioProcess:
    """A running child: its process, whether it ended, the hub's own channel to it, its stderr."""

    process: subprocess.Popen[bytes]
    exited: asyncio.Event
    channel: RawChannel
    stderr: _StderrProtocol
    sandboxed: bool = False  # `process` is bwrap, and the server runs in its namespaces
    stdout_closed: asyncio.Event = field(default_factory=asyncio.Event)  # the hub reads no more of it
    broken: str | None = None  # why the hub stopped reading stdout while the child may still run

    @property
    def pid(self) -> int:
        """The child's pid (also its process group id)."""
        return self.process.pid

    async def last_words(self, lines: int = 5, wait: float = 0.5) -> list[str]:
        """The last `lines` non-blank lines the child wrote to stderr (control characters dropped,
        each cut at 300 characters), once its stderr has closed or after `wait` seconds (a
        grandchild may hold it open). For saying why an exited child exited."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stderr.closed.wait(), wait)
        text = _CONTROL.sub("", bytes(self.stderr.tail).decode("utf-8", "replace"))
        kept = [line.strip()[:300] for line in text.splitlines() if line.strip()]
        return kept[-lines:] if lines else []


class _StdinProtocol(asyncio.BaseProtocol):
    """Flow control of the child's stdin pipe (on the server's loop)."""

    def __init__(self) -> None:
        self.writable = asyncio.Event()
        self.writable.set()
        self.lost = False

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.writable.set()


class _StderrProtocol(asyncio.Protocol):
    """The child's stderr, straight into its capped log (on the server's loop): no task needed.
    Its last few KiB are kept too (`tail`), to say why the child exited."""

    TAIL_BYTES = 4096

    def __init__(self, errlog: CappedLog) -> None:
        self._errlog = errlog
        self.tail = bytearray()
        self.closed = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self._errlog.write(data)
        self.tail += data[-self.TAIL_BYTES :]
        del self.tail[: -self.TAIL_BYTES]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


@dataclass
class _Pipes:
    """The loop's ends of the child's three pipes."""

    stdout: asyncio.StreamReader
    stdout_transport: asyncio.ReadTransport
    stdin: _StdinProtocol
    stdin_transport: asyncio.WriteTransport
    opened: list[asyncio.BaseTransport]

    def close(self) -> None:
        """Close every pipe transport (idempotent)."""
        for opened in self.opened:
            opened.close()


async def _connect(
    popen: subprocess.Popen[bytes], errlog: CappedLog, registry: ProcessRegistry | None, sandboxed: bool
) -> tuple[StdioProcess, _Pipes]:
    """Connect the child's pipes to this loop and watch for its exit; if that fails (or a stop
    cancels it), kill the child and close everything before raising."""
    loop = asyncio.get_running_loop()
    opened: list[asyncio.BaseTransport] = []
    try:
        stdout = asyncio.StreamReader(limit=_LINE_LIMIT)
        assert popen.stdin is not None and popen.stdout is not None and popen.stderr is not None
        stdout_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stdout), popen.stdout
        )
        opened.append(stdout_transport)
        transport, stderr = await loop.connect_read_pipe(lambda: _StderrProtocol(errlog), popen.stderr)
        opened.append(transport)
        stdin_transport, stdin = await loop.connect_write_pipe(_StdinProtocol, popen.stdin)
        opened.append(stdin_transport)

        async def drained() -> None:
            await stdin.writable.wait()  # (set again once the pipe is lost)

        channel = RawChannel(stdin_transport.write, drained)
        child = StdioProcess(popen, asyncio.Event(), channel, stderr, sandboxed)

        def exited() -> None:
            with contextlib.suppress(ValueError):  # (reaped after the transport ended: log closed)
                errlog.note(f"process {popen.pid} exited with code {popen.returncode}")
            child.exited.set()

        process.watch_exit(popen, exited)
    except BaseException:  # (a stop while it starts cancels this): nothing may stay open
        for transport_opened in opened:
            transport_opened.close()
        for pipe in (popen.stdin, popen.stdout, popen.stderr):  # those no transport took yet
            if pipe is not None:
                pipe.close()
        process.kill_now(popen)
        if registry is not None:
            registry.discard(popen.pid)
        raise
    return child, _Pipes(stdout, stdout_transport, stdin, stdin_transport, opened)


class _Pumps:
    """The two tasks between the child's pipes and the SDK's memory streams (on the server's loop)."""

    def __init__(
        self, child: StdioProcess, pipes: _Pipes, errlog: CappedLog, gate: NotificationGate | None
    ) -> None:
        self._child = child
        self._pipes = pipes
        self._errlog = errlog
        self._gate = gate
        self._flooding = False
        self._junk = 0
        self._to_sdk, self.read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](16)
        self.write_stream, self._from_sdk = anyio.create_memory_object_stream[SessionMessage](16)

    async def stdout(self) -> None:
        """Read the child's stdout until it closes or breaks; hand the SDK what is not the hub's."""
        child = self._child
        async with self._to_sdk:
            try:
                while (line := await self._readline()) is not None:
                    if not await self._take(line):
                        return
            finally:
                child.channel.close()  # the hub's own calls in flight fail as the SDK's do
                child.stdout_closed.set()

    async def _readline(self) -> bytes | None:
        """The next stdout line, or None at its end (closed, or a line over `_LINE_LIMIT`)."""
        try:
            line = await self._pipes.stdout.readline()
        except (ValueError, asyncio.LimitOverrunError):
            # The protocol is broken from here on (the rest of the line would read as junk, its
            # answer is lost): a crash, which the owner restarts.
            self._child.broken = f"wrote a line over {_LINE_LIMIT // 2**20} MiB to stdout"
            self._errlog.note(f"{self._child.broken}: connection dropped")
            return None
        return line or None

    async def _take(self, line: bytes) -> bool:
        """One stdout line: past the gate, to the hub's own channel, else to the SDK as a message
        (junk is noted and skipped); False once the SDK's end is closed."""
        if self._gate is not None and not self._gate.admit_line(line):
            self._hold_back()
            return True
        if not line.strip() or await self._child.channel.take(line):
            return True
        try:
            message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
        except ValueError:
            message = _repaired(line)
        if message is None:
            # Junk on stdout (a stray print): skipped, so the session survives it.
            self._junk += 1
            if self._junk <= 20:
                self._errlog.note(f"ignored a stdout line that is not JSON-RPC: {line[:200]!r}")
            return True
        try:
            await self._to_sdk.send(SessionMessage(message))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return False
        return True

    def _hold_back(self) -> None:
        """A notification was dropped: the server sends faster than its gate lets through. Stop
        reading its stdout for a while (what is buffered is still read): the pipe fills and the
        server's writes wait, so a flood costs the hub what it reads, not what the server writes."""
        if not self._flooding:
            self._flooding = True
            self._pipes.stdout_transport.pause_reading()
            asyncio.get_running_loop().call_later(_FLOOD_PAUSE, self._read_again)

    def _read_again(self) -> None:
        self._flooding = False
        if not self._pipes.stdout_transport.is_closing():
            self._pipes.stdout_transport.resume_reading()

    async def stdin(self) -> None:
        """Write the SDK's messages to the child's stdin, one JSON line each, as the pipe takes them."""
        pipes = self._pipes
        async with self._from_sdk:
            async for session_message in self._from_sdk:
                data = _serialized(session_message.message)
                if pipes.stdin.lost or pipes.stdin_transport.is_closing():
                    return
                pipes.stdin_transport.write(data.encode() + b"\n")
                await pipes.stdin.writable.wait()


@contextlib.asynccontextmanager
async def stdio_transport(
    command: str,
    args: tuple[str, ...],
    env: dict[str, str],
    cwd: str | None,
    errlog: CappedLog,
    registry: ProcessRegistry | None,
    on_spawn: Callable[[StdioProcess], None],
    sandbox: Sandbox | None = None,
    limits: Sequence[str] = (),
    gate: NotificationGate | None = None,
) -> AsyncIterator[tuple[Any, Any]]:
    """Spawn the server and yield `(read_stream, write_stream)` for `mcp.Client` (on its loop).

    The read stream ends when the child's stdout closes (it exited or closed it) or breaks (a
    line over `_LINE_LIMIT`: `StdioProcess.broken` says so), which the SDK turns into "connection
    closed" for every request in flight; `StdioProcess.stdout_closed` is set then, for the owner
    to restart a child that is still alive. Notifications past `gate` are dropped unparsed. On
    exit the child is stopped the spec's way: stdin closed, then SIGTERM to its group, then SIGKILL.

    Raises:
        SpawnError: the command cannot be started (not found, not executable, bad cwd).
        SandboxError: the command would not be visible in its sandbox.
    """
    try:
        popen = process.spawn(command, args, env, cwd, sandbox, limits)
    except OSError as exc:
        raise SpawnError(exc) from exc
    if registry is not None:
        registry.add(popen.pid)
    child, pipes = await _connect(popen, errlog, registry, sandbox is not None)
    on_spawn(child)
    pumps = _Pumps(child, pipes, errlog, gate)
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pumps.stdout)
            tasks.start_soon(pumps.stdin)
            try:
                yield pumps.read_stream, pumps.write_stream
            finally:
                with anyio.CancelScope(shield=True):
                    await process.stop(popen, child.exited, pipes.stdin_transport, child.sandboxed)
                    if registry is not None:
                        registry.discard(popen.pid)
                tasks.cancel_scope.cancel()
    finally:
        pipes.close()
        if popen.returncode is None:
            # Only if stopping was cut short: kill it, and leave the exit watch to reap it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGKILL)


def _repaired(line: bytes) -> Any:
    """A JSON-RPC message the SDK refused only for a lone surrogate in it (`"\\ud800"`, which
    pydantic does not parse), with U+FFFD in its place; None for anything else (junk)."""
    if not jsontext.has_lone_escape(line):
        return None
    try:
        return types.jsonrpc_message_adapter.validate_python(jsontext.scrub(json.loads(line)), by_name=False)
    except (ValueError, RecursionError):
        return None


def _serialized(message: Any) -> str:
    """A message of the hub's SDK client as a JSON line. Text no UTF-8 writer can encode (a lone
    surrogate, say in a client's answer to the server's sampling request) is the hub's problem,
    not the server's: it is written as U+FFFD rather than ending the connection. (Arguments of
    calls never get here with one: `ServerSupervisor` refuses them first.)"""
    try:
        return message.model_dump_json(by_alias=True, exclude_unset=True)
    except ValueError as exc:  # pydantic's PydanticSerializationError
        log.warning("a message to the server held text that is not valid Unicode (%s): replaced", exc)
        return jsontext.dumps(message.model_dump(mode="json", by_alias=True, exclude_unset=True))
