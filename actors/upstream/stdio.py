"""The stdio upstream transport: spawn an MCP server and speak JSON-RPC lines over its pipes.

The SDK's `stdio_client` hides the process; the hub needs its pid, its exit, its stderr (into a
size-capped log file), protection against orphans, and tolerance of junk on stdout. So this
module spawns the child itself and hands the SDK a pair of memory streams, which `mcp.Client`
accepts as a transport. Everything here runs on the owning server's asyncio loop.

Spawning costs the hub little however many servers it runs: `subprocess` uses vfork() (no
`preexec_fn`), the parent-death signal comes from a tiny exec shim (`setpriv`, or bubblewrap's
`--die-with-parent` when the server is sandboxed, see `actors.sandbox`), and the child's exit is
seen through a pidfd on the loop, not by a waiting thread. Whatever else must wrap the command
(a sandbox, limits) is an exec shim in its argv too, built in its own module.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
from mcp.shared.message import SessionMessage

from actors.notification_gate import NotificationGate
from actors.rawcall import RawChannel
from actors.reaper import ProcessRegistry
from actors.sandbox import Sandbox, sandbox_group
from hub import jsontext

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
_FLOOD_PAUSE = 0.1  # seconds a flooding server's stdout is not read, after each notification dropped
_LINE_LIMIT = 64 * 1024 * 1024  # largest JSON-RPC line accepted from a server
_CLOSE_GRACE = 2.0  # seconds between closing stdin, SIGTERM and SIGKILL
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")  # colours, cursor moves, controls


class SpawnError(Exception):
    """The command could not be started (not found, not executable, a missing cwd): a problem of
    the configuration or the host, which retrying cannot fix. `error` is the `OSError`."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


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


@functools.cache
def _death_signal_shim() -> tuple[str, ...]:
    """The argv prefix that makes a child SIGKILLed when its parent thread dies: util-linux's
    `setpriv --pdeathsig KILL --` (one small exec, no interpreter), or () if it is not installed.

    Why not a `preexec_fn`: any `preexec_fn` forces a real fork() of the hub, whose cost grows with
    its memory and threads (measured: 33 ms of hub CPU per child at 3,000 threads and 330 MiB,
    against 0.2 ms for the vfork() that `subprocess` uses when there is no `preexec_fn`). Without
    the shim, the orphan watchdog (`actors.reaper`) alone keeps children from outliving the hub.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        log.info("setpriv (util-linux) not found: orphan protection relies on the watchdog alone")
        return ()
    try:
        usage = subprocess.run([setpriv, "--help"], capture_output=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    if b"--pdeathsig" not in usage:
        log.info("%s has no --pdeathsig: orphan protection relies on the watchdog alone", setpriv)
        return ()
    return (setpriv, "--pdeathsig", "KILL", "--")


def _through_shim(executable: str, env: Mapping[str, str], cwd: str | None) -> str | None:
    """`executable` as the shim should exec it, or None when the child should be spawned directly.

    The shim execs the command itself, so a command that cannot run would only show as exit code
    126 or 127; checking first keeps `OSError` from `Popen` (not found, not executable, bad cwd):
    whatever this check doubts is spawned directly, and `Popen` decides.
    """
    if cwd is not None and not os.path.isdir(cwd):
        return None
    if "/" in executable:  # relative to the child's cwd, which the shim shares
        path = os.path.join(cwd, executable) if cwd is not None else executable
        return executable if os.path.isfile(path) and os.access(path, os.X_OK) else None
    found = shutil.which(executable, path=env.get("PATH", os.defpath))
    return found if found is not None and os.path.isabs(found) else None


def _located(executable: str, env: Mapping[str, str], cwd: str | None) -> str:
    """`executable` as a shim should exec it; where there is none, the `OSError` that `Popen`
    would raise for it (a sandboxed command is never spawned directly, so `Popen` cannot)."""
    found = _through_shim(executable, env, cwd)
    if found is not None:
        return found
    if cwd is not None and not os.path.isdir(cwd):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), cwd)
    path = os.path.join(cwd, executable) if cwd is not None and "/" in executable else executable
    if "/" in executable and os.path.isfile(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), executable)
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), executable)


def _spawn(
    command: str,
    args: tuple[str, ...],
    env: dict[str, str],
    cwd: str | None,
    sandbox: Sandbox | None = None,
    limits: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """Start the child in a new session (its own process group), with three pipes; `limits` is
    the argv prefix of `actors.limits.shim` (it execs the rest once in its cgroup).

    No `preexec_fn`, so `subprocess` spawns with vfork(): cheap however big the hub is.
    """
    executable = resolve_command(command)
    if sandbox is not None:  # bwrap execs it, and dies with this thread (--die-with-parent)
        argv = sandbox.wrap(_located(executable, env, cwd), args, cwd)
    else:
        shim = _death_signal_shim()
        if limits:  # (the limits shim execs the command: Popen never sees it, so check it here)
            argv = [*shim, _located(executable, env, cwd), *args]
        else:
            target = _through_shim(executable, env, cwd) if shim else None
            argv = [*shim, target, *args] if target is not None else [executable, *args]
    return subprocess.Popen(
        [*limits, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
        close_fds=True,
    )


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


def _watch_exit(popen: subprocess.Popen[bytes], on_exit: Callable[[], None]) -> None:
    """Call `on_exit` on this loop once the child has exited and been reaped (`returncode` set).

    A pidfd (Linux >= 5.3) becomes readable when the child exits: the loop's selector watches it,
    so no thread waits per child (asyncio's default `ThreadedChildWatcher` takes one each). Where
    `pidfd_open` is refused (an old kernel or seccomp profile), a thread per child waits instead.
    """
    loop = asyncio.get_running_loop()
    try:
        pidfd = os.pidfd_open(popen.pid)
    except OSError as exc:
        log.debug("pidfd_open refused (%s): a thread waits for process %d", exc, popen.pid)
        _watch_exit_in_thread(popen, on_exit, loop)
        return

    def readable() -> None:
        if popen.poll() is None:  # (spurious wake-up)
            return
        loop.remove_reader(pidfd)
        os.close(pidfd)
        on_exit()

    loop.add_reader(pidfd, readable)


def _watch_exit_in_thread(
    popen: subprocess.Popen[bytes], on_exit: Callable[[], None], loop: asyncio.AbstractEventLoop
) -> None:
    def wait() -> None:
        """Runs on its own thread until the child exits."""
        popen.wait()
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            loop.call_soon_threadsafe(on_exit)

    threading.Thread(target=wait, name=f"waitpid-{popen.pid}", daemon=True).start()


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
        popen = _spawn(command, args, env, cwd, sandbox, limits)
    except OSError as exc:
        raise SpawnError(exc) from exc
    if registry is not None:
        registry.add(popen.pid)
    loop = asyncio.get_running_loop()
    transports: list[asyncio.BaseTransport] = []
    try:
        stdout = asyncio.StreamReader(limit=_LINE_LIMIT)
        assert popen.stdin is not None and popen.stdout is not None and popen.stderr is not None
        stdout_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stdout), popen.stdout
        )
        transports.append(stdout_transport)
        transport, stderr = await loop.connect_read_pipe(lambda: _StderrProtocol(errlog), popen.stderr)
        transports.append(transport)
        stdin_transport, stdin = await loop.connect_write_pipe(_StdinProtocol, popen.stdin)
        transports.append(stdin_transport)

        async def drained() -> None:
            await stdin.writable.wait()  # (set again once the pipe is lost)

        channel = RawChannel(stdin_transport.write, drained)  # type: ignore[attr-defined]
        child = StdioProcess(popen, asyncio.Event(), channel, stderr, sandbox is not None)

        def exited() -> None:
            with contextlib.suppress(ValueError):  # (reaped after the transport ended: log closed)
                errlog.note(f"process {popen.pid} exited with code {popen.returncode}")
            child.exited.set()

        _watch_exit(popen, exited)
    except BaseException:  # (a stop while it starts cancels this): nothing may stay open
        for opened in transports:
            opened.close()
        for pipe in (popen.stdin, popen.stdout, popen.stderr):  # those no transport took yet
            if pipe is not None:
                pipe.close()
        _kill_now(popen)
        if registry is not None:
            registry.discard(popen.pid)
        raise
    on_spawn(child)
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](16)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](16)

    flooding = False

    def read_again() -> None:
        nonlocal flooding
        flooding = False
        if not stdout_transport.is_closing():
            stdout_transport.resume_reading()

    def hold_back() -> None:
        """A notification was dropped: the server sends faster than its gate lets through. Stop
        reading its stdout for a while (what is buffered is still read): the pipe fills and the
        server's writes wait, so a flood costs the hub what it reads, not what the server writes."""
        nonlocal flooding
        if not flooding:
            flooding = True
            stdout_transport.pause_reading()
            loop.call_later(_FLOOD_PAUSE, read_again)

    async def pump_stdout() -> None:
        junk = 0
        async with read_writer:
            try:
                while True:
                    try:
                        line = await stdout.readline()
                    except (ValueError, asyncio.LimitOverrunError):
                        # The protocol is broken from here on (the rest of the line would read
                        # as junk, its answer is lost): a crash, which the owner restarts.
                        child.broken = f"wrote a line over {_LINE_LIMIT // 2**20} MiB to stdout"
                        errlog.note(f"{child.broken}: connection dropped")
                        return
                    if not line:
                        return
                    if gate is not None and not gate.admit_line(line):
                        hold_back()
                        continue
                    if not line.strip() or await child.channel.take(line):
                        continue
                    try:
                        message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                    except ValueError:
                        message = _repaired(line)
                    if message is None:
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
                child.stdout_closed.set()

    async def pump_stdin() -> None:
        async with write_reader:
            async for session_message in write_reader:
                data = _serialized(session_message.message)
                if stdin.lost or stdin_transport.is_closing():
                    return
                stdin_transport.write(data.encode() + b"\n")  # type: ignore[attr-defined]
                await stdin.writable.wait()

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pump_stdout)
            tasks.start_soon(pump_stdin)
            try:
                yield read_stream, write_stream
            finally:
                with anyio.CancelScope(shield=True):
                    await _stop(child, stdin_transport)
                    if registry is not None:
                        registry.discard(popen.pid)
                tasks.cancel_scope.cancel()
    finally:
        for opened in transports:
            opened.close()
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


def _kill_now(popen: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's group and reap the child (blocks for as long as the kernel takes)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signal.SIGKILL)
    popen.wait()


async def _stop(child: StdioProcess, stdin: asyncio.BaseTransport) -> None:
    """Close stdin, wait, SIGTERM the group, wait, SIGKILL the group."""
    process = child.process
    if process.returncode is None:
        stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(child.exited.wait(), _CLOSE_GRACE)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        # bwrap passes no signal on: SIGTERM goes to the sandbox's own group; SIGKILL to bwrap's
        # kills the sandbox's init (--die-with-parent), and with it every process inside.
        inside = sandbox_group(process.pid) if child.sandboxed and sig == signal.SIGTERM else None
        try:
            os.killpg(inside or process.pid, sig)  # the whole group: grandchildren too
        except (ProcessLookupError, PermissionError):
            break
        if process.returncode is not None and sig == signal.SIGTERM:
            # The leader is gone; give the rest of its group a moment before SIGKILL.
            await asyncio.sleep(0.05)
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(child.exited.wait(), _CLOSE_GRACE)
