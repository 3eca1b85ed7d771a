"""On-demand wakes: start a stopped server (or a session's instance) for a call, and wait for it.

A call (tool, resource, prompt) that finds its on_demand server stopped asks the tenant to start it
and waits, on the caller's loop (the web loop, or one the blocking API borrows: `hub.loops`), for
the server's `running` status on the `EventBoard`.
Concurrent first calls share one start (one `concurrent.futures` future per `WakeKey`); a start
that fails answers them all with its reason. A session's instance of a per_session server is
started and waited for the same way, keyed by `(tenant, server, session)`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from actors.models import Event, InstanceStateChanged, ServerState, ServerStateChanged, ServerStatus
from hub.errors import CallTimeout, HubError, NotRunning, UpstreamError
from hub.events import EventBoard, WakeKey
from hub.metrics import HubMetrics

log = logging.getLogger(__name__)

_WAKE_MARGIN = 5.0  # beyond startup_timeout, for spawning and the events to arrive


@dataclass
class _Waking:
    """A start of an on_demand server that calls wait for; `since` is the status its ask was
    answered with (None until then). Mutable, guarded by `Wakes._lock`; never crosses actors."""

    future: concurrent.futures.Future[ServerStatus]
    since: ServerStatus | None = None


class Wakes:
    """The starts of on_demand servers and session instances that calls wait for.

    Args:
        board: where the servers' statuses arrive (`on_event` must be one of its listeners).
        metrics: counts the starts.
        tenant: a tenant's proxy by name (a blocking router ask).
        start_instance: starts a session's instance and returns its status (blocking; see
            `SessionInstances.start`).
        startup_timeout: the configured `startup_timeout` now (it may be reloaded).
        ask_timeout: how long an ask of a tenant may take, in seconds.
    """

    def __init__(
        self,
        board: EventBoard,
        metrics: HubMetrics,
        tenant: Callable[[str], Any],
        start_instance: Callable[[WakeKey], ServerStatus],
        startup_timeout: Callable[[], float],
        ask_timeout: float,
    ) -> None:
        self._board = board
        self._metrics = metrics
        self._tenant = tenant
        self._start_instance = start_instance
        self._startup_timeout = startup_timeout
        self._ask_timeout = ask_timeout
        self.starts: dict[WakeKey, _Waking] = {}  # guarded by `_lock`
        self._lock = threading.Lock()

    def running(self, tenant: str, server: str) -> bool:
        """Whether the latest status told of the server is `running` (any thread, never blocks)."""
        status = self._board.status(tenant, server)
        return status is not None and status.state is ServerState.RUNNING

    async def wake_async(self, tenant: str, server: str, session: str | None = None) -> None:
        """Start an on_demand server (or `session`'s instance of a per_session one) for a call and
        wait until it runs (on an asyncio loop: the ask runs in its executor, the wait on the loop).

        Raises:
            UpstreamError: it failed to start (the message says why).
            NotRunning: it is restarting after a crash, or was stopped or reconfigured meanwhile.
            QuotaExceeded: the tenant's `max_servers` servers (or `max_sessions_per_server`
                instances) already run.
            CallTimeout: it did not start within `startup_timeout` (plus a margin).
        """
        key = (tenant, server, session)
        future, first = self.pending(key)
        if first:
            await asyncio.get_running_loop().run_in_executor(None, self.ask, key)
        timeout = self._startup_timeout() + _WAKE_MARGIN
        waiter = asyncio.wrap_future(future)
        try:
            done, _ = await asyncio.wait({waiter}, timeout=timeout)
        finally:
            waiter.cancel()  # only this waiter's view: the shared start cannot be cancelled
        if not done:
            raise CallTimeout(f"server '{server}' did not start within {timeout:g} s")
        try:
            waiter.result()
        except HubError as exc:
            raise copy.copy(exc) from None  # one exception per waiter: they may run on different loops

    def pending(self, key: WakeKey) -> tuple[concurrent.futures.Future[ServerStatus], bool]:
        """The start of `key` that calls wait for, and whether this caller must ask for it.

        Any thread; never blocks (safe on a loop). Concurrent first calls share one start.
        """
        with self._lock:
            pending = self.starts.get(key)
            if pending is not None:
                return pending.future, False
            future: concurrent.futures.Future[ServerStatus] = concurrent.futures.Future()
            future.set_running_or_notify_cancel()  # a waiter that gives up cannot cancel it for the others
            self.starts[key] = _Waking(future)
            return future, True

    def ask(self, key: WakeKey) -> None:
        """Ask the tenant to start the server (or the session's instance), then settle the start if
        its outcome is already known.

        Blocks on the ask: runs on a caller's thread or in an executor, never on a loop.
        """
        tenant, server, session = key
        try:
            if session is None:
                status = self._tenant(tenant).wake_server(server).get(timeout=self._ask_timeout)
            else:
                status = self._start_instance(key)
        except HubError as exc:
            self._settle(key, exc)
            return
        except Exception as exc:  # isolation: an ask that timed out or an actor that died; calls must hear
            log.exception("starting %s/%s on demand failed", tenant, server)
            self._settle(key, UpstreamError(f"server '{server}' could not be started: {exc}"))
            return
        if status.state is ServerState.STARTING:
            if session is None:
                self._metrics.on_demand_starts.labels(tenant, server).inc()
                log.info("%s/%s: starting on demand", tenant, server)
            else:
                self._metrics.instance_starts.labels(tenant, server).inc()
        with self._lock:
            pending = self.starts.get(key)
            if pending is None:
                return
            pending.since = status
        # The outcome may already be known: from the answer itself, or from events told meanwhile.
        self._check(status)
        board = self._board
        latest = board.status(tenant, server) if session is None else board.instance_status(key)
        if latest is not None:
            self._check(latest)

    def on_event(self, event: Event) -> None:
        """Board listener (router thread): a server's status may settle a start that calls wait for."""
        if self.starts and isinstance(event, ServerStateChanged | InstanceStateChanged):
            self._check(event.status)

    def _check(self, status: ServerStatus) -> None:
        """Settle the pending start of the status's server if `status` decides it (any thread)."""
        key = status.instance_key
        with self._lock:
            pending = self.starts.get(key)
            since = pending.since if pending is not None else None
        if since is None or status.seq < since.seq or status.state is ServerState.STARTING:
            return  # not asked yet, an older status, or still starting
        where = f"server '{status.server}' of tenant '{status.tenant}'"
        if status.session is not None:
            where = f"the instance of {where} for this session"
        outcome: ServerStatus | HubError
        if status.state is ServerState.RUNNING:
            outcome = status
        elif status.state is ServerState.BACKOFF and status.seq == since.seq:
            outcome = NotRunning(f"{where} is restarting after a crash: {status.last_error or 'unknown'}")
        elif status.state is ServerState.STOPPED:
            outcome = NotRunning(f"{where} was stopped while it was starting")
        else:  # backoff or failed after the start: the attempt failed
            reason = (status.last_error or status.state.value).removeprefix("failed to start: ")
            outcome = UpstreamError(f"{where} failed to start: {reason}")
        self._settle(key, outcome)

    def _settle(self, key: WakeKey, outcome: ServerStatus | HubError) -> None:
        with self._lock:
            pending = self.starts.pop(key, None)
        if pending is None:
            return  # settled already
        if isinstance(outcome, HubError):
            pending.future.set_exception(outcome)
        else:
            pending.future.set_result(outcome)

    def abandon(
        self,
        error: HubError,
        tenant: str | None = None,
        servers: set[str] | None = None,
        session: str | None = None,
    ) -> None:
        """Fail the pending starts of `servers` of `tenant` (None: all of them), or of `session`'s
        instances: the hub stops, they were removed or reconfigured, or the session ended (any
        thread)."""
        with self._lock:
            keys = [
                key
                for key in self.starts
                if (tenant is None or key[0] == tenant)
                and (servers is None or key[1] in servers)
                and (session is None or key[2] == session)
            ]
        for key in keys:
            self._settle(key, error)
