"""`ServerActor`: one supervised MCP server, on a private asyncio loop in its own thread.

The actor's own thread only answers lifecycle asks (`start_server`, `stop_server`, `restart_server`,
`status`); the upstream connection lives on the server's loop, owned by one long-lived supervisor
task that connects, discovers, waits for a crash or a stop, and restarts with exponential backoff
(waiting on the loop, never on an actor thread; after `max_retries` crashes in a row the server is
`failed` and, unless `restart: limited`, still retried ever less often, like Kubernetes'
CrashLoopBackOff). A broken stdout (a line over the limit, closed while the child runs) is a crash
too, and each server's notifications pass a token bucket (`actors.notification_gate`). Calls reach
the loop directly through a `ServerEndpoint` (thread-safe), so a slow call never blocks any actor's
inbox.

Events go up as tells to the `listener` (the tenant): `ServerStateChanged`, `ServerCrashed`,
`CatalogChanged`, `NotificationsDropped` (`actors.server_spec`: what a server is started with and
what it tells).

Every server caches its catalog on disk at each live discovery; an on_demand server (`lifecycle:
on_demand`) lists that cache while it is stopped (`actors.listing`), and stops itself after
`idle_timeout` seconds without a call: a timer on its own loop, re-armed as calls end.

`ServerSupervisor` keeps the connection's state machine and hands each concern to one class, all
running on the server's loop: `actors.transport` (the client of each transport, the stdio child's
sandbox, cgroup and watches, pings; the transports themselves are in `actors.upstream`),
`actors.discovery` (the catalog, refreshed on list_changed), `actors.listing` (the catalog told
to the tenant, and its cache), `actors.restarts` (the backoff between restarts), `actors.calls`
(`ServerEndpoint` and the calls in flight), `actors.relay` (the server's own requests, relayed to
the calling client), `actors.subscriptions` (its log level and resource subscriptions, applied
again at each start) and `actors.idle` (the idle timer). The public names stay importable from
here; `ServerActorProxy` types the tenant's asks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import pykka
from mcp import Client
from pykka.typing import ActorMemberMixin, proxy_method

from actors.calls import ServerCalls, ServerEndpoint
from actors.describe import describe as _describe
from actors.discovery import Discovery
from actors.idle import IdleTimer
from actors.limits import LimitError
from actors.listing import CatalogListing
from actors.models import (
    InstanceStateChanged,
    ServerCatalog,
    ServerCrashed,
    ServerState,
    ServerStateChanged,
    ServerStatus,
    StoppedReason,
    session_label,
)
from actors.notification_gate import NotificationGate, report_drops
from actors.reaper import ProcessRegistry
from actors.relay import Requester, RequestRelay
from actors.renewal import SessionRenewal
from actors.restarts import Crash, Misconfigured, Restarts, RetryNow, Stopped, configuration_problem
from actors.sandbox import Sandbox, SandboxError
from actors.server_spec import Listener, ServerEvent, ServerSpec, initial_status, next_seq, tell
from actors.subscriptions import Subscriptions
from actors.transport import Transport
from actors.upstream.errlog import CappedLog
from actors.upstream.httpcall import Channel
from hub import timeouts

__all__ = [
    "Listener",
    "Requester",
    "ServerActor",
    "ServerActorProxy",
    "ServerEndpoint",
    "ServerEvent",
    "ServerSpec",
    "ServerSupervisor",
    "initial_status",
    "start_server_actor",
    "tell",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


_STABLE_AFTER = 10.0  # seconds in `running` (at least backoff_max) after which a crash starts a fresh count


class ServerSupervisor:
    """The loop side of a server: owns the connection, the child process, and the state machine;
    transport, discovery, restarts, calls, the relay of the server's requests and the idle timer
    are its helpers (`transport`, `discovery`, `restarts`, `calls`, `relay`, `idle`).

    Every method runs on the server's loop (thread `server-<tenant>-<name>`), except `status`,
    which any thread may read (the snapshot is replaced, never mutated).
    """

    def __init__(self, spec: ServerSpec, listener: Listener, registry: ProcessRegistry | None) -> None:
        self.tenant = spec.tenant
        self.config = spec.config
        self.session = spec.session
        self.tenant_env = spec.tenant_env
        self.user_env = spec.user_env  # (a per_user instance's: its user's values)
        self.orchestrator = spec.orchestrator
        self._listener = listener
        self.registry = registry
        self.sandbox_site = spec.sandbox_site
        self.log_path = spec.log_path
        tenant, config = spec.tenant, spec.config
        self.status = initial_status(tenant, config, spec.session)
        self.client: Client | None = None
        self.channel: Channel | None = None  # the hub's own channel, once up: tools/call goes there
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._running_since: float | None = None  # (monotonic) when this connection reached running
        self._lost = asyncio.Event()
        self.lost_reason = ""
        self.crash_reason: str | None = None
        self._lapsed = False  # the connection ended: its catalog goes once the status leaves running
        self._stop_reason = StoppedReason.STOPPED
        orch = spec.orchestrator
        self.gate = NotificationGate(orch.notification_rate, orch.notification_burst, self.report_drops)
        # The concerns the state machine hands work to, one class each.
        self.relay = RequestRelay(tenant, config.name, spec.session, self.tell)
        self.subscriptions = Subscriptions(self, spec.log_level)
        self.discovery = Discovery(self)
        self.restarts = Restarts(self)
        self.transport = Transport(self)
        self.calls = ServerCalls(self)
        self.renewal = SessionRenewal(self)
        self.idle = IdleTimer(self)  # (on_demand only)
        self.listing = CatalogListing(self, spec.cache_path, spec.pinning)  # (reads its cache file here)
        self.status = self.listing.first_status(self.status)

    # ------------------------------------------------------------------ state

    def set_state(self, state: ServerState, **changes: Any) -> None:
        old = self.status
        fields = {**old.__dict__, "state": state, **changes}
        if state in (ServerState.STOPPED, ServerState.FAILED, ServerState.BACKOFF):
            fields.update(pid=None, started_at=None, protocol_version=None)
            if fields["catalog"] == "live":
                fields["catalog"] = None
        if state not in (ServerState.FAILED, ServerState.BACKOFF):
            fields["retry_at"] = None
        if state is ServerState.FAILED:
            fields["stopped_reason"] = StoppedReason.CRASHED
        elif state is not ServerState.STOPPED:
            fields["stopped_reason"] = None
        new = ServerStatus(**fields)
        if new != old:
            # One counter for the whole process: a replaced server's statuses stay ordered too.
            new = ServerStatus(**{**fields, "seq": next_seq()})
            self.status = new
            self.tell(InstanceStateChanged(new) if self.session else ServerStateChanged(new))
        if self._lapsed and state is not ServerState.RUNNING:
            # Status first, then the catalog: a router that sees the tools gone already sees the
            # server not running, and answers 409 rather than 404 (unknown tool) meanwhile.
            self._lapsed = False
            self.listing.connection_ended()

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested (and no start since)."""
        return self._stop.is_set()

    @property
    def stop_requested(self) -> asyncio.Event:
        """Set when a stop is requested (a new event at each start)."""
        return self._stop

    def tell(self, event: ServerEvent) -> None:
        """Tell the listener (the tenant) an event of this server."""
        tell(self._listener, event)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start supervising unless already started (idempotent); a server `failed` and waiting
        for its next automatic restart is restarted now, with a fresh count."""
        if self._task is not None and not self._task.done():
            if self.status.state is ServerState.FAILED and not self._stop.is_set():
                self.set_state(ServerState.STARTING, last_error=None, restarts=0)
                self.restarts.retry_now()
            return
        self._stop = asyncio.Event()
        self._stop_reason = StoppedReason.STOPPED
        self.crash_reason = None
        self.set_state(ServerState.STARTING, last_error=None, restarts=0)
        self._task = asyncio.get_running_loop().create_task(
            self._supervise(), name=f"supervise-{self.config.name}"
        )

    async def wake(self) -> ServerStatus:
        """Start, first letting a stop in progress (an idle stop) finish; the status afterwards."""
        task = self._task
        if task is not None and not task.done() and self._stop.is_set():
            await asyncio.wait({task})
        self.start()
        return self.status

    async def stop(self, reason: StoppedReason = StoppedReason.STOPPED, retire: bool = False) -> None:
        """Stop the server (calls in flight fail with an upstream error) and wait until it is down.

        `retire`: the server is being removed or replaced, so its cached catalog is withdrawn too.
        """
        if retire:
            self.listing.retire()
        task = self._task
        if task is None and self.status.state is ServerState.STOPPED:
            if retire:
                self.listing.withdraw()
            return  # never started (keeps `never_used`), or already stopped
        self._stop_reason = reason
        self._stop.set()
        self.idle.cancel()
        if task is not None:
            if self.status.state is ServerState.STARTING:
                task.cancel()  # do not wait out startup_timeout to stop a server still starting
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._task is task:  # else a wake started a new run meanwhile: that one stands
            self._task = None
            self.set_state(ServerState.STOPPED, stopped_reason=reason)
        if retire:
            self.listing.withdraw()

    async def _supervise(self) -> None:
        """Connect, run until a crash or a stop, and restart after a backoff that doubles with each
        crash in a row, up to `backoff_max` (`actors.restarts`): `max_retries` times in state
        `backoff`, then in state `failed` (like Kubernetes' CrashLoopBackOff), unless
        `restart: limited` stops there. A run that lasted, or a start by hand, begins a fresh count."""
        try:
            await self.restarts.run(self._run_once)
        except Crash as crash:  # (`restart: limited`, and `max_retries` used up)
            self.set_state(ServerState.FAILED, last_error=str(crash))
            log.error(
                "%s/%s failed after %d restarts: %s",
                self.tenant,
                self.config.name,
                self.status.restarts,
                crash,
            )
            return
        except Stopped:
            pass
        except (SandboxError, LimitError, Misconfigured) as exc:  # retrying cannot help
            self.set_state(ServerState.FAILED, last_error=str(exc))
            log.error("%s/%s not started: %s", self.tenant, self.config.name, exc)
            return
        except Exception as exc:  # isolation boundary: a supervisor bug must not kill the loop
            log.exception("supervisor of %s/%s failed", self.tenant, self.config.name)
            self.set_state(ServerState.FAILED, last_error=f"internal error: {_describe(exc)}")
            return
        self.set_state(ServerState.STOPPED, stopped_reason=self._stop_reason)

    async def _run_once(self) -> bool:
        """One connection: start, discover, serve until stop (→ True/False) or crash (→ `Crash`).

        Returns:
            True if it ran stably (long enough to earn a fresh retry budget) before crashing,
            False if it was stopped.
        """
        if not self.renewal.pending:  # (a renewed session: still `running`, its catalog listed)
            self.set_state(ServerState.STARTING)
        sandbox = self.transport.sandbox()
        self._lost = asyncio.Event()
        self.lost_reason = ""
        errlog = CappedLog(self.log_path, self.orchestrator.log_max_bytes)
        self._running_since = None
        reason: str | None = None
        try:
            async with contextlib.AsyncExitStack() as stack:
                stack.callback(errlog.close)
                reason = await self._serve(stack, errlog, sandbox)
        except (SandboxError, LimitError, Misconfigured):
            raise
        except Exception as exc:  # tearing down a broken connection; why it broke is already known
            log.debug("%s/%s: teardown: %s", self.tenant, self.config.name, _describe(exc))
            if reason is None and not self._stop.is_set():
                reason = _describe(exc)
        finally:
            self.client = None
            self.idle.cancel()
            self.subscriptions.connection_ended()
            self.gate.flush()
            self._lapsed = not self.renewal.asked  # (`set_state` withdraws the catalog at the next state)
        if reason is None:
            self.renewal.ended()
            return False
        if self.renewal.take():
            raise RetryNow  # at once, not a crash: `actors.renewal`
        self.renewal.ended()
        self.crash_reason = reason
        # Stable: it ran (reached `running`) for a while. A start that fails slowly (npx retrying
        # an unreachable registry for a minute) never earns a fresh retry budget.
        ran = time.monotonic() - self._running_since if self._running_since is not None else 0.0
        stable = ran >= max(self.orchestrator.backoff_max, _STABLE_AFTER)
        self.tell(ServerCrashed(self.tenant, self.config.name, reason, self.status.restarts))
        log.warning("%s/%s crashed: %s", self.tenant, self.config.name, reason)
        if stable:
            return True
        raise Crash(reason)

    async def _serve(
        self, stack: contextlib.AsyncExitStack, errlog: CappedLog, sandbox: Sandbox | None
    ) -> str | None:
        """Connect and serve until stopped (→ None) or the connection ends (→ why)."""
        try:
            async with asyncio.timeout(self.orchestrator.startup_timeout):
                client = await stack.enter_async_context(
                    await self.transport.client_for(errlog, stack, sandbox)
                )
                self.client = client
                catalog = await self.discovery.discover(client)
                self.channel = self.transport.open_channel(client)
                await self.subscriptions.connected(client)
        except TimeoutError:
            return f"did not start within {self.orchestrator.startup_timeout:g} s"
        except Exception as exc:
            if self._stop.is_set():
                return None
            problem = configuration_problem(exc)
            if problem is not None:
                raise problem from None
            await self.await_exit()
            return f"failed to start: {self.lost_reason or _describe(exc)}"
        # Catalog first: whoever sees `running` can already resolve the server's tools.
        self.listing.publish(catalog, "live")
        self._running_since = time.monotonic()
        self.set_state(
            ServerState.RUNNING,
            started_at=time.time(),
            protocol_version=client.protocol_version,
            last_error=None,
        )
        self.idle.start()
        self.renewal.connected(self.channel)
        log.info(
            "%s/%s running (pid %s, %d tools)",
            self.tenant,
            self.config.name,
            self.status.pid,
            len(catalog.tools),
        )
        stop_wait = asyncio.ensure_future(self._stop.wait())
        lost_wait = asyncio.ensure_future(self._lost.wait())
        listening = asyncio.ensure_future(self.discovery.listen(client))
        pinging = asyncio.ensure_future(self.transport.ping(client))
        try:
            await asyncio.wait({stop_wait, lost_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (stop_wait, lost_wait, listening, pinging):
                waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening
            self.client = None
            self.channel = None
        if self._stop.is_set():
            self.calls.abort_all(f"server '{self.config.name}' is stopping")
            return None
        reason = self.lost_reason or "connection lost"
        crashed = f"server '{self.config.name}' crashed during the call: {reason}"
        self.calls.abort_all(crashed, self.renewal.spared())
        return reason

    def mark_lost(self, reason: str) -> None:
        """The connection is gone (on this loop): the supervisor will restart it."""
        if not self._lost.is_set():
            self.lost_reason = reason
            self._lost.set()

    def report_drops(self, count: int) -> None:
        """The notification gate dropped `count` notifications in its last interval (on this loop)."""
        report_drops(self, count)

    async def await_exit(self) -> None:
        """A connection just closed: give the child's exit (and its last stderr lines, for which
        `watch` waits up to 0.5 s) up to 1 s to be recorded, to say why."""
        if self.status.pid is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), 1.0)


class ServerActor(pykka.ThreadingActor):
    """One configured server: lifecycle asks on the actor thread, everything else on its loop.

    Args:
        spec: the server's configuration and where its log goes.
        listener: where events are told (the tenant actor's ref).
        registry: the orphan watchdog's registry (None in tests that do not need it).
    """

    def __init__(self, spec: ServerSpec, listener: Listener, registry: ProcessRegistry | None) -> None:
        super().__init__()
        self.supervisor = ServerSupervisor(spec, listener, registry)
        self._loop = asyncio.new_event_loop()
        self.endpoint = ServerEndpoint(self.supervisor, self._loop)
        label = f"-{session_label(spec.session)}" if spec.session else ""
        self._thread = threading.Thread(
            target=self._run_loop, name=f"server-{spec.tenant}-{spec.config.name}{label}", daemon=True
        )

    def _run_loop(self) -> None:
        """Runs on the server's loop thread for the actor's whole life."""
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def on_start(self) -> None:
        self._thread.start()

    def on_stop(self) -> None:
        try:
            self._on_loop(
                self.supervisor.stop(), timeouts.SERVER_STOP + self.supervisor.orchestrator.shutdown_grace
            )
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=timeouts.LOOP_JOIN)
            if not self._thread.is_alive():
                # Calls submitted while the loop stopped (through an endpoint a caller still held)
                # run now and fail at once (the server is stopped); later ones fail in `submit`.
                self._loop.run_until_complete(asyncio.sleep(0))
                self._loop.run_until_complete(asyncio.sleep(0))
                self._loop.close()

    def _on_loop(self, coro: Awaitable[T], timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)  # type: ignore[arg-type]

    def _call_soon(self, fn: Callable[[], None]) -> None:
        self._loop.call_soon_threadsafe(fn)

    # ------------------------------------------------------------------ asks (actor thread)

    def get_endpoint(self) -> ServerEndpoint:
        """The thread-safe endpoint that routes hold."""
        return self.endpoint

    def start_server(self) -> ServerStatus:
        """Begin supervising (returns at once, or once a stop in progress is done; watch
        `ServerStateChanged` for `running`). Idempotent: a running server is left alone."""
        return self._on_loop(
            self.supervisor.wake(), timeouts.SERVER_STOP + self.supervisor.orchestrator.shutdown_grace
        )

    def stop_server(self, retire: bool = False) -> ServerStatus:
        """Stop the server and wait until its process is gone.

        `retire`: it is being removed or replaced (a reload), so its cached catalog is withdrawn.
        """
        stop = self.supervisor.stop(retire=retire)
        self._on_loop(stop, timeouts.SERVER_STOP + self.supervisor.orchestrator.shutdown_grace)
        return self.supervisor.status

    def restart_server(self) -> ServerStatus:
        """Stop, then start again (a new process, restart counters reset)."""
        self.stop_server()
        return self.start_server()

    def status(self) -> ServerStatus:
        """The latest status snapshot."""
        return self.supervisor.status

    def catalog(self) -> ServerCatalog:
        """The catalog last published (an on_demand server's cached one from the start)."""
        return self.supervisor.listing.catalog

    def set_log_level(self, level: str | None) -> concurrent.futures.Future[None]:
        """Have the supervisor remember `level` (and send it if the server runs): returns at once,
        with the future of that work on the server's loop (never woken for it)."""
        return self.endpoint.submit(self.supervisor.subscriptions.set_log_level(level))


class ServerActorProxy(ActorMemberMixin, pykka.ActorProxy[ServerActor]):
    """A `ServerActor`'s proxy as its tenant holds it: each ask's future typed with its result."""

    get_endpoint = proxy_method(ServerActor.get_endpoint)
    start_server = proxy_method(ServerActor.start_server)
    stop_server = proxy_method(ServerActor.stop_server)
    restart_server = proxy_method(ServerActor.restart_server)
    status = proxy_method(ServerActor.status)
    catalog = proxy_method(ServerActor.catalog)
    set_log_level = proxy_method(ServerActor.set_log_level)


def start_server_actor(
    spec: ServerSpec, listener: Listener, registry: ProcessRegistry | None
) -> ServerActorProxy:
    """Start a `ServerActor` (not its server: `start_server` does) and return its typed proxy."""
    return cast(ServerActorProxy, ServerActor.start(spec, listener, registry).proxy())
