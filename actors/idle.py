"""`IdleTimer`: an on_demand server stops itself after `idle_timeout` seconds without a call.

A timer on the server's own loop, armed when the server reaches `running` and re-armed as calls
end; it never fires while a call is in flight, nor while the hub holds resource subscriptions
of the server (their updates only come while it runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from actors.models import ServerState, StoppedReason

if TYPE_CHECKING:
    from actors.server import ServerSupervisor

log = logging.getLogger("actors.server")  # the server's own logger: log lines keep the name filtered on


class IdleTimer:
    """The idle timer of one server's supervisor.

    Every method runs on the server's loop (thread `server-<tenant>-<name>`), but
    `touched_elsewhere`.
    """

    def __init__(self, supervisor: ServerSupervisor) -> None:
        self._supervisor = supervisor
        self._handle: asyncio.TimerHandle | None = None
        self._stopping: asyncio.Task[None] | None = None  # (held: the loop keeps only weak refs)
        self._last_used = 0.0

    def start(self) -> None:
        """The server just reached `running`: the idle clock starts now."""
        self._last_used = asyncio.get_running_loop().time()
        self.arm(self._supervisor.config.idle_seconds)

    def arm(self, delay: float) -> None:
        """Check for idleness in `delay` seconds (an on_demand server that runs, with an idle_timeout)."""
        supervisor = self._supervisor
        if not supervisor.config.on_demand or supervisor.config.idle_seconds <= 0:
            return
        if supervisor.status.state is not ServerState.RUNNING or supervisor.stopping:
            return
        self._handle = asyncio.get_running_loop().call_later(delay, self._check)

    def cancel(self) -> None:
        """Disarm the timer (the server stops or its connection ended)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def touch(self) -> None:
        """A call ended: restart the idle clock (the timer re-arms itself for the time left)."""
        self._last_used = asyncio.get_running_loop().time()
        if self._handle is None:
            self.arm(self._supervisor.config.idle_seconds)

    def touched_elsewhere(self, home: asyncio.AbstractEventLoop) -> None:
        """A call on a caller's loop ended (that loop: `ServerCalls.here`): the idle clock restarts
        (`loop.time()` is `time.monotonic()`); a timer not armed is armed on the server's loop `home`."""
        self._last_used = time.monotonic()
        config = self._supervisor.config
        if self._handle is None and config.on_demand and config.idle_seconds > 0:
            with contextlib.suppress(RuntimeError):  # (the server's loop is closed)
                home.call_soon_threadsafe(self._rearm)

    def _rearm(self) -> None:
        if self._handle is None:
            self.arm(self._supervisor.config.idle_seconds)

    def _check(self) -> None:
        """The idle timer fired (on this loop): stop the server if no call came for idle_timeout."""
        self._handle = None
        supervisor = self._supervisor
        if supervisor.calls.busy or supervisor.status.state is not ServerState.RUNNING or supervisor.stopping:
            return  # a call in flight re-arms the timer when it ends
        if supervisor.subscriptions.uris:
            return  # the last unsubscribe (a call) re-arms it
        config = supervisor.config
        loop = asyncio.get_running_loop()
        idle = loop.time() - self._last_used
        if idle < config.idle_seconds:
            self.arm(config.idle_seconds - idle)
            return
        log.info(
            "%s/%s: no call for %g s (idle_timeout): stopping", supervisor.tenant, config.name, round(idle, 3)
        )
        self._stopping = loop.create_task(supervisor.stop(StoppedReason.IDLE), name=f"idle-{config.name}")
