"""The process of a stdio server: its environment, its spawn, the watch on its exit, its stop.

Spawning costs the hub little however many servers it runs: `subprocess` uses vfork() (no
`preexec_fn`), the parent-death signal comes from a tiny exec shim (`setpriv`, or bubblewrap's
`--die-with-parent` when the server is sandboxed, see `actors.sandbox`), and the child's exit is
seen through a pidfd on the loop, not by a waiting thread. Whatever else must wrap the command
(a sandbox, limits) is an exec shim in its argv too, built in its own module.

`spawn` and `kill_now` block briefly on the calling thread; `watch_exit` and `stop` run on the
owning server's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence

from actors.sandbox import Sandbox, sandbox_group
from hub import timeouts

log = logging.getLogger("actors.upstream.stdio")  # (one logger for the stdio transport)

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
        usage = subprocess.run(
            [setpriv, "--help"], capture_output=True, timeout=timeouts.SANDBOX_PROBE
        ).stdout
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


def spawn(
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


def watch_exit(popen: subprocess.Popen[bytes], on_exit: Callable[[], None]) -> None:
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


def kill_now(popen: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's group and reap the child (blocks for as long as the kernel takes)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signal.SIGKILL)
    popen.wait()


async def stop(
    popen: subprocess.Popen[bytes], exited: asyncio.Event, stdin: asyncio.BaseTransport, sandboxed: bool
) -> None:
    """Stop the child the spec's way: close its stdin, wait, SIGTERM its group, wait, SIGKILL its
    group (`exited` is set once it has exited and been reaped; `sandboxed`: `popen` is bwrap)."""
    if popen.returncode is None:
        stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(exited.wait(), timeouts.CLOSE_GRACE)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        # bwrap passes no signal on: SIGTERM goes to the sandbox's own group; SIGKILL to bwrap's
        # kills the sandbox's init (--die-with-parent), and with it every process inside.
        inside = sandbox_group(popen.pid) if sandboxed and sig == signal.SIGTERM else None
        try:
            os.killpg(inside or popen.pid, sig)  # the whole group: grandchildren too
        except (ProcessLookupError, PermissionError):
            break
        if popen.returncode is not None and sig == signal.SIGTERM:
            # The leader is gone; give the rest of its group a moment before SIGKILL.
            await asyncio.sleep(0.05)
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(exited.wait(), timeouts.CLOSE_GRACE)
