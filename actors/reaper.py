"""No orphans, even when the hub is SIGKILLed.

Every stdio server runs in its own process group and gets `PR_SET_PDEATHSIG(SIGKILL)` (set by the
`setpriv` exec shim, see `actors.upstream.process`), so a direct child dies with the thread that spawned it.
Grandchildren (``npx`` → ``node``, shell wrappers) would survive that, and so would every child
where `setpriv` is missing, so the hub also starts one small watchdog process,
`python -m actors.reaper`, holding the read end of a pipe. The hub writes `+PGID` when a server's
group starts and `-PGID` when it is gone; when the pipe reaches end-of-file (the hub exited,
however it died), the watchdog sends SIGTERM to every group still listed, SIGKILL a second later,
and exits.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

from hub import timeouts

log = logging.getLogger(__name__)


class ProcessRegistry:
    """The hub's side of the watchdog: registers process groups to kill if the hub dies.

    Thread-safe: server loops on many threads call `add` and `discard`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Started before any server, in its own session so a terminal's Ctrl-C (sent to the hub's
        # process group) does not take the watchdog down before the hub has stopped its children.
        self._watchdog = subprocess.Popen(
            [sys.executable, "-m", "actors.reaper"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
        self.pid = self._watchdog.pid

    def _write(self, line: str) -> None:
        with self._lock:
            stdin = self._watchdog.stdin
            if stdin is None or stdin.closed:
                return
            try:
                stdin.write(line.encode())
                stdin.flush()
            except (BrokenPipeError, ValueError):
                log.warning("the orphan watchdog is gone; children may outlive a killed hub")

    def add(self, pgid: int) -> None:
        """Kill process group `pgid` if the hub dies before calling `discard(pgid)`."""
        self._write(f"+{pgid}\n")

    def discard(self, pgid: int) -> None:
        """Process group `pgid` is gone (or stopped by the hub): forget it."""
        self._write(f"-{pgid}\n")

    def close(self) -> None:
        """Stop the watchdog (it then kills any group still registered)."""
        with self._lock:
            if self._watchdog.stdin and not self._watchdog.stdin.closed:
                self._watchdog.stdin.close()
        try:
            self._watchdog.wait(timeout=timeouts.WATCHDOG_EXIT)
        except subprocess.TimeoutExpired:
            self._watchdog.kill()
            self._watchdog.wait()


def _kill_groups(pgids: set[int], sig: int) -> set[int]:
    alive = set()
    for pgid in pgids:
        try:
            os.killpg(pgid, sig)
            alive.add(pgid)
        except ProcessLookupError:
            pass
        except PermissionError:
            pass
    return alive


def _watch() -> None:
    """Read `+PGID`/`-PGID` lines until EOF, then kill every group still registered."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    groups: set[int] = set()
    for raw in sys.stdin.buffer:
        line = raw.strip()
        if len(line) > 1 and line[1:].isdigit():
            pgid = int(line[1:])
            if line.startswith(b"+"):
                groups.add(pgid)
            elif line.startswith(b"-"):
                groups.discard(pgid)
    alive = _kill_groups(groups, signal.SIGTERM)
    deadline = time.monotonic() + 1.0
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = _kill_groups(alive, 0)
    _kill_groups(alive, signal.SIGKILL)


if __name__ == "__main__":
    _watch()
