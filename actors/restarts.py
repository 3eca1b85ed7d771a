"""`Restarts`: a crashed server is restarted after a backoff that doubles with each crash in a row.

Tenacity's exponential wait, up to `backoff_max`: `max_retries` times in state `backoff`, then in
state `failed` (like Kubernetes' CrashLoopBackOff), unless `restart: limited` stops there. A run
that lasted, or a start by hand, begins a fresh count. Every wait is on the server's loop, never
on an actor thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import tenacity

from actors.describe import describe
from actors.limits import LimitError
from actors.models import ServerState
from actors.sandbox import SandboxError
from actors.upstream.process import SpawnError

if TYPE_CHECKING:
    from actors.server import ServerSupervisor

log = logging.getLogger("actors.server")  # the server's own logger: log lines keep the name filtered on


class Crash(Exception):
    """The connection ended, or never came up: restart after backoff."""


class Stopped(Exception):
    """A stop was requested while backing off."""


class RetryNow(Exception):
    """A start by hand while backing off (or failed): restart at once, with a fresh count."""


class Misconfigured(Exception):
    """The server cannot start whatever the retries (its command cannot be spawned): fail at once."""


def configuration_problem(exc: BaseException) -> Exception | None:
    """The problem inside `exc` (an exception group too) that retrying cannot fix, if any."""
    if isinstance(exc, SandboxError | LimitError | Misconfigured):
        return exc
    if isinstance(exc, SpawnError):
        return Misconfigured(f"failed to start: {describe(exc.error)}")
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = configuration_problem(inner)
            if found is not None:
                return found
    return None


class Restarts:
    """The restart loop of one server's supervisor.

    Every method runs on the server's loop (thread `server-<tenant>-<name>`).
    """

    def __init__(self, supervisor: ServerSupervisor) -> None:
        self._supervisor = supervisor
        self._retry_now = asyncio.Event()  # a start by hand while failed: retry without waiting
        self._crashes = 0  # crashes in a row, as tenacity counted them before its sleep

    def retry_now(self) -> None:
        """A start by hand: cut the current wait short, with a fresh count."""
        self._retry_now.set()

    async def run(self, run_once: Callable[[], Awaitable[bool]]) -> None:
        """Run `run_once` (one connection: True if it crashed after running stably, False if it
        was stopped, `Crash` if it crashed early) again and again, backing off between runs.

        Returns once a run was stopped.

        Raises:
            Crash: `restart: limited`, and `max_retries` used up.
            Stopped: a stop was requested while backing off.
        """
        orch = self._supervisor.orchestrator
        while True:
            limited = orch.restart == "limited"
            retrying = tenacity.AsyncRetrying(
                stop=tenacity.stop_after_attempt(orch.max_retries + 1) if limited else tenacity.stop_never,
                wait=tenacity.wait_exponential(multiplier=orch.backoff_initial, max=orch.backoff_max),
                retry=tenacity.retry_if_exception_type(Crash),
                before_sleep=self._count_crash,
                sleep=self._backoff,
                reraise=True,
            )
            try:
                async for attempt in retrying:
                    with attempt:
                        stable = await run_once()
            except RetryNow:
                continue
            if not stable:
                return  # stopped
            self._crashes = 0  # it crashed after running stably: a fresh count
            with contextlib.suppress(RetryNow):
                await self._backoff(orch.backoff_initial)

    def _count_crash(self, state: tenacity.RetryCallState) -> None:
        """Tenacity's before_sleep: how many times in a row it crashed, for `_backoff`."""
        self._crashes = state.attempt_number

    async def _backoff(self, seconds: float) -> None:
        """Tenacity's sleep: wait `seconds` before the next restart, in state `backoff` (or
        `failed`: it crashed more than `max_retries` times in a row), its status saying when
        (`retry_at`).

        Raises:
            Stopped: a stop was requested meanwhile.
            RetryNow: a start by hand cut the wait short (a fresh count).
        """
        supervisor = self._supervisor
        failed = self._crashes if self._crashes > supervisor.orchestrator.max_retries else 0
        self._crashes = 0
        self._retry_now.clear()
        supervisor.set_state(
            ServerState.FAILED if failed else ServerState.BACKOFF,
            restarts=supervisor.status.restarts + 1,
            last_error=supervisor.crash_reason or supervisor.status.last_error,
            retry_at=time.time() + seconds,
        )
        if failed:
            log.error(
                "%s/%s crashed %d times in a row (%s): retrying in %g s",
                supervisor.tenant,
                supervisor.config.name,
                failed,
                supervisor.status.last_error,
                round(seconds, 1),
            )
        stop = supervisor.stop_requested
        waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._retry_now.wait())}
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
        if stop.is_set():
            raise Stopped
        if self._retry_now.is_set():
            raise RetryNow
