"""`ServerActor`: one supervised MCP server, on a private asyncio loop in its own thread.

The actor's own thread only answers lifecycle asks (`launch`, `halt`, `relaunch`, `status`); the
upstream connection lives on the server's loop, owned by one long-lived supervisor task that
connects, discovers, waits for a crash or a stop, and restarts with exponential backoff (waiting
on the loop, never on an actor thread; after `max_retries` crashes in a row the server is `failed`
and, unless `restart: limited`, still retried ever less often, like Kubernetes' CrashLoopBackOff).
A broken stdout (a line over the limit, closed while the child runs) is a crash too, and each
server's notifications pass a token bucket (`actors.notification_gate`). Calls reach the loop directly
through a `ServerEndpoint` (thread-safe), so a slow call never blocks any actor's inbox.

Events go up as tells to the `listener` (the tenant): `ServerStateChanged`, `ServerCrashed`,
`CatalogChanged`, `NotificationsDropped`.

Every server caches its catalog on disk at each live discovery (`actors.catalog_cache`); an
on_demand server (`lifecycle: on_demand`) lists that cache while it is stopped, and stops itself
after `idle_timeout` seconds without a call: a timer on its own loop, re-armed as calls end.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

import mcp.types as types
import pykka
import tenacity
from mcp import Client, MCPError
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

import hub
from actors.catalog_cache import CatalogCache, spec_key
from actors.limits import LimitError, ServerCgroup
from actors.limits import shim as limits_shim
from actors.models import (
    CatalogChanged,
    InstanceCatalogChanged,
    InstanceStateChanged,
    NamedEntry,
    NotificationsDropped,
    ServerCatalog,
    ServerCrashed,
    ServerState,
    ServerStateChanged,
    ServerStatus,
    StoppedReason,
    ToolEntry,
    ToolResult,
    session_label,
)
from actors.notification_gate import NotificationGate
from actors.rawcall import ErrorAnswer, RawChannel, modern_envelope
from actors.reaper import ProcessRegistry
from actors.sandbox import Sandbox, SandboxError, SandboxSite, host_support, sandbox_for
from actors.stdio import CappedLog, SpawnError, StdioProcess, child_environment, stdio_transport
from hub import jsontext, seams
from hub.config import OrchestratorConfig, SecretMap, ServerConfig, redact
from hub.errors import BadRequest, CallTimeout, HubError, NotRunning, UpstreamError

log = logging.getLogger(__name__)
T = TypeVar("T")

_MAX_PAGES = 1000  # bound on pagination, against a server that returns cursors forever
_SEQ = itertools.count(1)
_STOP_TIMEOUT = 10.0
_PING_INTERVAL = 10.0  # seconds between liveness pings of a remote handshake-era server
_PING_TIMEOUT = 5.0  # an upper bound for one server's stop: stdin, SIGTERM, SIGKILL graces
_EXIT_GRACE = 1.0  # seconds a child whose stdout closed has to exit before that is its crash


class Listener(Protocol):
    """What a server tells its events to: a pykka `ActorRef` (the tenant), or a test double."""

    def tell(self, message: Any) -> None: ...


class Requester(Protocol):
    """The client a call came from (a facade session): takes the call's progress and log messages,
    and answers the server's own requests (sampling, elicitation). Called on the server's loop."""

    async def progress(self, value: float, total: float | None, message: str | None) -> None: ...

    async def ask(self, request: Any, result_type: type[Any]) -> Any: ...

    async def log(self, params: types.LoggingMessageNotificationParams) -> None: ...


def tell(listener: Listener, message: Any) -> bool:
    """Tell `listener` an event; False if it is gone (an event to a stopped actor is dropped)."""
    try:
        listener.tell(message)
    except pykka.ActorDeadError:
        return False
    return True


class _Crash(Exception):
    """The connection ended, or never came up: restart after backoff."""


class _Stopped(Exception):
    """A stop was requested while backing off."""


_STABLE_AFTER = 10.0  # seconds in `running` (at least backoff_max) after which a crash starts a fresh count


class _RetryNow(Exception):
    """A start by hand while backing off (or failed): restart at once, with a fresh count."""


class _Misconfigured(Exception):
    """The server cannot start whatever the retries (its command cannot be spawned): fail at once."""


def _configuration_problem(exc: BaseException) -> Exception | None:
    """The problem inside `exc` (an exception group too) that retrying cannot fix, if any."""
    if isinstance(exc, SandboxError | LimitError | _Misconfigured):
        return exc
    if isinstance(exc, SpawnError):
        return _Misconfigured(f"failed to start: {_describe(exc.error)}")
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _configuration_problem(inner)
            if found is not None:
                return found
    return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MCPError):
        return f"MCP error {exc.code}: {exc.message}"
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {exc.filename}"
    if isinstance(exc, SpawnError):
        return _describe(exc.error)
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return str(exc) or type(exc).__name__


@dataclass(frozen=True)
class ServerSpec:
    """Everything a server needs to know about itself, as its tenant hands it over."""

    tenant: str
    config: ServerConfig
    tenant_env: SecretMap  # the tenant's credentials; the server's own `env` overrides them
    orchestrator: OrchestratorConfig
    log_path: Path  # the server's stderr log file
    cache_path: Path | None = None  # its catalog cache file (None: no cache)
    session: str | None = None  # a per_session server's instance: the session it serves
    sandbox_site: SandboxSite | None = None  # the hub's sandbox facts (None: run unsandboxed)


def initial_status(tenant: str, config: ServerConfig, session: str | None = None) -> ServerStatus:
    """The status of a server that has not run yet (newer than any status of a server it replaces)."""
    return ServerStatus(
        tenant,
        config.name,
        ServerState.STOPPED,
        transport=config.transport,
        lifecycle=config.lifecycle,
        stopped_reason=StoppedReason.NEVER_USED if config.on_demand else None,
        seq=next(_SEQ),
        session=session,
    )


class ServerEndpoint:
    """The thread-safe way in to a server's loop; held by routes.

    Every method may be called from any thread; each returns a `concurrent.futures.Future` whose
    work runs on the server's loop.
    """

    def __init__(self, supervisor: ServerSupervisor, loop: asyncio.AbstractEventLoop) -> None:
        self._supervisor = supervisor
        self._loop = loop

    def submit(self, coro: Awaitable[T]) -> concurrent.futures.Future[T]:
        """Run `coro` on the server's loop.

        Raises:
            NotRunning: the server's actor has stopped (a session instance that was removed).
        """
        try:
            return asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        except RuntimeError:  # the loop is closed
            if asyncio.iscoroutine(coro):
                coro.close()
            raise NotRunning(f"server '{self._supervisor.config.name}' is gone") from None

    def call_tool(
        self, name: str, arguments: dict[str, Any], requester: Requester | None = None
    ) -> concurrent.futures.Future[ToolResult]:
        """Call the server's tool `name` (its own name, not the catalog id)."""
        return self.submit(self._supervisor.call_tool(name, arguments, requester))

    def read_resource(self, uri: str) -> concurrent.futures.Future[dict[str, Any]]:
        """Read a resource of the server; the result is the MCP `ReadResourceResult` as JSON."""
        return self.submit(self._supervisor.request("read_resource", uri))

    def get_prompt(self, name: str, arguments: dict[str, str]) -> concurrent.futures.Future[dict[str, Any]]:
        """Get a prompt of the server; the result is the MCP `GetPromptResult` as JSON."""
        return self.submit(self._supervisor.request("get_prompt", name, arguments))


class ServerSupervisor:
    """The loop side of a server: owns the connection, the child process, and the state.

    Every method runs on the server's loop (thread `server-<tenant>-<name>`), except `status`,
    which any thread may read (the snapshot is replaced, never mutated).
    """

    def __init__(self, spec: ServerSpec, listener: Listener, registry: ProcessRegistry | None) -> None:
        self.tenant = spec.tenant
        self.config = spec.config
        self.session = spec.session
        self._tenant_env = spec.tenant_env
        self._orch = spec.orchestrator
        self._listener = listener
        self._registry = registry
        self._sandbox_site = spec.sandbox_site
        self.log_path = spec.log_path
        tenant, config = spec.tenant, spec.config
        self.status = initial_status(tenant, config, spec.session)
        self._client: Client | None = None
        self._spawned: RawChannel | None = None  # the hub's own channel to the child last spawned
        self._cgroup: ServerCgroup | None = None  # the cgroup of the child last spawned (`actors.limits`)
        self._channel: RawChannel | None = None  # ... once its connection is up: tools/call goes there
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._retry_now = asyncio.Event()  # a start by hand while failed: retry without waiting
        self._crashes = 0  # crashes in a row, as tenacity counted them before its sleep
        self._running_since: float | None = None  # (monotonic) when this connection reached running
        self._lost = asyncio.Event()
        self._lost_reason = ""
        self._inflight: set[asyncio.Task[Any]] = set()
        self._watches: set[asyncio.Task[None]] = set()  # of the children spawned: exit, stdout
        self._aborted: set[asyncio.Task[Any]] = set()
        self._requesters: dict[asyncio.Task[Any], Requester] = {}  # calls in flight from a facade
        self._refreshing: asyncio.Task[None] | None = None
        self._dirty = False
        self._catalog = ServerCatalog(tenant, config.name)
        self._crash_reason: str | None = None
        self._stop_reason = StoppedReason.STOPPED
        orch = spec.orchestrator
        self._gate = NotificationGate(orch.notification_rate, orch.notification_burst, self._report_drops)
        # The cache file (every server writes it, so a switch to on_demand keeps the catalog), the
        # last live catalog as cached, and the idle timer (on_demand only).
        self._cache = (
            CatalogCache(spec.cache_path, tenant, config.name, spec_key(config, spec.tenant_env))
            if spec.cache_path is not None
            else None
        )
        self._lists_cached = config.on_demand and config.enabled  # a disabled server lists nothing
        self._cached: ServerCatalog | None = None  # (with seq 0: compared by content)
        if self._cache is not None and self._lists_cached:
            # Read here, on the tenant's thread, so the tenant has it before anyone can ask.
            self._cached = self._cache.load()
            if self._cached is not None:
                self._catalog = replace(self._cached, seq=next(_SEQ))
                self.status = replace(self.status, catalog="cached", tools=len(self._cached.tools))
        self._idle_handle: asyncio.TimerHandle | None = None
        self._idle_stop: asyncio.Task[None] | None = None
        self._last_used = 0.0

    # ------------------------------------------------------------------ state

    def _set(self, state: ServerState, **changes: Any) -> None:
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
            new = ServerStatus(**{**fields, "seq": next(_SEQ)})
            self.status = new
            tell(self._listener, InstanceStateChanged(new) if self.session else ServerStateChanged(new))

    @property
    def catalog(self) -> ServerCatalog:
        """The catalog last published (any thread may read it: it is replaced, never mutated)."""
        return self._catalog

    def _publish_catalog(self, catalog: ServerCatalog, kind: str | None) -> None:
        """Tell the tenant the catalog; `kind` is what the status shows: live, cached or None."""
        if kind == "live" and self._cache is not None:
            cached = replace(catalog, cached=True, seq=0)
            if cached != self._cached:  # the last discovery, listed while an on_demand server is stopped
                self._cache.save(cached)
                self._cached = cached
        changed = not catalog.same_offer(self._catalog)
        self._catalog = replace(catalog, seq=next(_SEQ))
        if changed and self.session is not None:  # an instance's offer: its tenant decides
            tell(self._listener, InstanceCatalogChanged(self.session, self._catalog))
        elif changed:  # (an on_demand server going from cached to live and back changes nothing)
            tell(self._listener, CatalogChanged(self._catalog))
        self._set(self.status.state, tools=len(catalog.tools), catalog=kind)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start supervising unless already started (idempotent); a server `failed` and waiting
        for its next automatic restart is restarted now, with a fresh count."""
        if self._task is not None and not self._task.done():
            if self.status.state is ServerState.FAILED and not self._stop.is_set():
                self._set(ServerState.STARTING, last_error=None, restarts=0)
                self._retry_now.set()
            return
        self._stop = asyncio.Event()
        self._stop_reason = StoppedReason.STOPPED
        self._crash_reason = None
        self._set(ServerState.STARTING, last_error=None, restarts=0)
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
            self._lists_cached = False
        task = self._task
        if task is None and self.status.state is ServerState.STOPPED:
            if retire and not self._catalog.empty:
                self._publish_catalog(ServerCatalog(self.tenant, self.config.name), None)
            return  # never started (keeps `never_used`), or already stopped
        self._stop_reason = reason
        self._stop.set()
        self._cancel_idle()
        if task is not None:
            if self.status.state is ServerState.STARTING:
                task.cancel()  # do not wait out startup_timeout to stop a server still starting
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._task is task:  # else a wake started a new run meanwhile: that one stands
            self._task = None
            self._set(ServerState.STOPPED, stopped_reason=reason)
        if retire and not self._catalog.empty:
            self._publish_catalog(ServerCatalog(self.tenant, self.config.name), None)

    async def _supervise(self) -> None:
        """Connect, run until a crash or a stop, and restart after a backoff that doubles with each
        crash in a row, up to `backoff_max` (tenacity's exponential wait): `max_retries` times in
        state `backoff`, then in state `failed` (like Kubernetes' CrashLoopBackOff), unless
        `restart: limited` stops there. A run that lasted, or a start by hand, begins a fresh count."""
        orch = self._orch
        try:
            while True:
                limited = orch.restart == "limited"
                retrying = tenacity.AsyncRetrying(
                    stop=tenacity.stop_after_attempt(orch.max_retries + 1)
                    if limited
                    else tenacity.stop_never,
                    wait=tenacity.wait_exponential(multiplier=orch.backoff_initial, max=orch.backoff_max),
                    retry=tenacity.retry_if_exception_type(_Crash),
                    before_sleep=self._count_crash,
                    sleep=self._backoff,
                    reraise=True,
                )
                try:
                    async for attempt in retrying:
                        with attempt:
                            stable = await self._run_once()
                except _Crash as crash:  # (`restart: limited`, and `max_retries` used up)
                    self._set(ServerState.FAILED, last_error=str(crash))
                    log.error(
                        "%s/%s failed after %d restarts: %s",
                        self.tenant,
                        self.config.name,
                        self.status.restarts,
                        crash,
                    )
                    return
                except _RetryNow:
                    continue
                if not stable:
                    break  # stopped
                self._crashes = 0  # it crashed after running stably: a fresh count
                with contextlib.suppress(_RetryNow):
                    await self._backoff(orch.backoff_initial)
        except _Stopped:
            pass
        except (SandboxError, LimitError, _Misconfigured) as exc:  # retrying cannot help
            self._set(ServerState.FAILED, last_error=str(exc))
            log.error("%s/%s not started: %s", self.tenant, self.config.name, exc)
            return
        except Exception as exc:  # isolation boundary: a supervisor bug must not kill the loop
            log.exception("supervisor of %s/%s failed", self.tenant, self.config.name)
            self._set(ServerState.FAILED, last_error=f"internal error: {_describe(exc)}")
            return
        self._set(ServerState.STOPPED, stopped_reason=self._stop_reason)

    def _count_crash(self, state: tenacity.RetryCallState) -> None:
        """Tenacity's before_sleep: how many times in a row it crashed, for `_backoff`."""
        self._crashes = state.attempt_number

    async def _backoff(self, seconds: float) -> None:
        """Tenacity's sleep: wait `seconds` before the next restart, in state `backoff` (or
        `failed`: it crashed more than `max_retries` times in a row), its status saying when
        (`retry_at`).

        Raises:
            _Stopped: a stop was requested meanwhile.
            _RetryNow: a start by hand cut the wait short (a fresh count).
        """
        failed = self._crashes if self._crashes > self._orch.max_retries else 0
        self._crashes = 0
        self._retry_now.clear()
        self._set(
            ServerState.FAILED if failed else ServerState.BACKOFF,
            restarts=self.status.restarts + 1,
            last_error=self._crash_reason or self.status.last_error,
            retry_at=time.time() + seconds,
        )
        if failed:
            log.error(
                "%s/%s crashed %d times in a row (%s): retrying in %g s",
                self.tenant,
                self.config.name,
                failed,
                self.status.last_error,
                round(seconds, 1),
            )
        waits = {asyncio.ensure_future(self._stop.wait()), asyncio.ensure_future(self._retry_now.wait())}
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
        if self._stop.is_set():
            raise _Stopped
        if self._retry_now.is_set():
            raise _RetryNow

    async def _run_once(self) -> bool:
        """One connection: start, discover, serve until stop (→ True/False) or crash (→ `_Crash`).

        Returns:
            True if it ran stably (long enough to earn a fresh retry budget) before crashing,
            False if it was stopped.
        """
        self._set(ServerState.STARTING)
        sandbox = self._sandbox()
        self._lost = asyncio.Event()
        self._lost_reason = ""
        errlog = CappedLog(self.log_path, self._orch.log_max_bytes)
        self._running_since = None
        reason: str | None = None
        try:
            async with contextlib.AsyncExitStack() as stack:
                stack.callback(errlog.close)
                reason = await self._serve(stack, errlog, sandbox)
        except (SandboxError, LimitError, _Misconfigured):
            raise
        except Exception as exc:  # tearing down a broken connection; why it broke is already known
            log.debug("%s/%s: teardown: %s", self.tenant, self.config.name, _describe(exc))
            if reason is None and not self._stop.is_set():
                reason = _describe(exc)
        finally:
            self._client = None
            self._cancel_idle()
            self._gate.flush()
            if self._lists_cached and self._cached is not None:
                if not self._catalog.cached:
                    self._publish_catalog(self._cached, "cached")
            elif not self._catalog.empty:
                self._publish_catalog(ServerCatalog(self.tenant, self.config.name), None)
        if reason is None:
            return False
        self._crash_reason = reason
        # Stable: it ran (reached `running`) for a while. A start that fails slowly (npx retrying
        # an unreachable registry for a minute) never earns a fresh retry budget.
        ran = time.monotonic() - self._running_since if self._running_since is not None else 0.0
        stable = ran >= max(self._orch.backoff_max, _STABLE_AFTER)
        tell(self._listener, ServerCrashed(self.tenant, self.config.name, reason, self.status.restarts))
        log.warning("%s/%s crashed: %s", self.tenant, self.config.name, reason)
        if stable:
            return True
        raise _Crash(reason)

    async def _serve(
        self, stack: contextlib.AsyncExitStack, errlog: CappedLog, sandbox: Sandbox | None
    ) -> str | None:
        """Connect and serve until stopped (→ None) or the connection ends (→ why)."""
        try:
            async with asyncio.timeout(self._orch.startup_timeout):
                client = await stack.enter_async_context(await self._client_for(errlog, stack, sandbox))
                self._client = client
                catalog = await self._discover(client)
                self._channel = self._open_channel(client)
        except TimeoutError:
            return f"did not start within {self._orch.startup_timeout:g} s"
        except Exception as exc:
            if self._stop.is_set():
                return None
            problem = _configuration_problem(exc)
            if problem is not None:
                raise problem from None
            await self._await_exit()
            return f"failed to start: {self._lost_reason or _describe(exc)}"
        # Catalog first: whoever sees `running` can already resolve the server's tools.
        self._publish_catalog(catalog, "live")
        self._running_since = time.monotonic()
        self._set(
            ServerState.RUNNING,
            started_at=time.time(),
            protocol_version=client.protocol_version,
            last_error=None,
        )
        self._last_used = asyncio.get_running_loop().time()
        self._arm_idle(self.config.idle_seconds)
        log.info(
            "%s/%s running (pid %s, %d tools)",
            self.tenant,
            self.config.name,
            self.status.pid,
            len(catalog.tools),
        )
        stop_wait = asyncio.ensure_future(self._stop.wait())
        lost_wait = asyncio.ensure_future(self._lost.wait())
        listening = asyncio.ensure_future(self._listen(client))
        pinging = asyncio.ensure_future(self._ping(client))
        try:
            await asyncio.wait({stop_wait, lost_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (stop_wait, lost_wait, listening, pinging):
                waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening
            self._client = None
            self._channel = None
        if self._stop.is_set():
            self._abort_inflight(f"server '{self.config.name}' is stopping")
            return None
        reason = self._lost_reason or "connection lost"
        self._abort_inflight(f"server '{self.config.name}' crashed during the call: {reason}")
        return reason

    def _sandbox(self) -> Sandbox | None:
        """The sandbox of the next start of a stdio server (None: unsandboxed).

        Raises:
            SandboxError: it cannot be built, or is required and this host cannot give it.
        """
        if self.config.transport != "stdio":
            return None
        return sandbox_for(self._sandbox_site, self.tenant, self.config.sandbox, self.config.cwd)

    async def _client_for(
        self, errlog: CappedLog, stack: contextlib.AsyncExitStack, sandbox: Sandbox | None
    ) -> Client:
        config = self.config
        if config.transport == "stdio":
            assert config.command is not None
            env = child_environment(sandbox.environment if sandbox else {}, self._tenant_env, config.env)
            if sandbox is None and self._sandbox_site is not None and config.sandbox.enabled:
                errlog.note(f"running unsandboxed: {host_support().detail}")
            self._cgroup = self._confinement()
            if self._cgroup is not None:
                stack.callback(self._cgroup.remove)  # (once the process is gone: the stack unwinds)
            target: Any = stdio_transport(
                config.command,
                config.args,
                env,
                config.cwd,
                errlog,
                self._registry,
                self._on_spawn,
                sandbox,
                limits_shim(self._cgroup, config.sandbox.limits),
                self._gate,
            )
        else:
            assert config.url is not None
            headers = config.headers.reveal()
            errlog.note(f"connecting to {config.url} ({config.transport})")
            if config.transport == "sse":
                target = sse_client(config.url, headers=headers)
            else:
                http = await stack.enter_async_context(seams.mcp_http_client(headers))
                target = streamable_http_client(config.url, http_client=http)
        return Client(
            target,
            mode=config.protocol,  # type: ignore[arg-type]
            cache=None,
            message_handler=self._on_message,
            sampling_callback=self._on_sampling,
            elicitation_callback=self._on_elicitation,
            logging_callback=self._on_log,
            log_level="debug",  # 2026-07-28 servers log only for requests that opt in
            client_info=types.Implementation(name="mcp-hub", version=hub.__version__),
        )

    def _open_channel(self, client: Client) -> RawChannel | None:
        """The hub's own channel for tool calls to a stdio server, set up for the era just negotiated."""
        channel = self._spawned if self.config.transport == "stdio" else None
        if channel is not None:
            modern = client.protocol_version in MODERN_PROTOCOL_VERSIONS
            channel.envelope = modern_envelope(client.protocol_version) if modern else None
            channel.on_log = self._on_raw_log
        return channel

    async def _ping(self, client: Client) -> None:
        """Liveness of a remote (http/sse) server on a handshake-era connection: a failed ping is a crash.

        A stdio server's death is seen at once from its process; 2026-07-28 has no ping, so a
        remote modern server is found dead by the next call.
        """
        if self.config.transport == "stdio" or client.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return
        while True:
            await asyncio.sleep(_PING_INTERVAL)
            try:
                async with asyncio.timeout(_PING_TIMEOUT):
                    await client.send_ping()
            except Exception as exc:
                why = "no answer" if isinstance(exc, TimeoutError) else _describe(exc)
                self._mark_lost(f"ping failed: {why}")
                return

    def _mark_lost(self, reason: str) -> None:
        """The connection is gone (on this loop): the supervisor will restart it."""
        if not self._lost.is_set():
            self._lost_reason = reason
            self._lost.set()

    def _confinement(self) -> ServerCgroup | None:
        """The cgroup of the next start of this stdio server (None: it needs none, or the host
        gives the hub no cgroups: see `actors.limits`).

        Raises:
            LimitError: it cannot be made or its limits set.
        """
        cgroups = self._sandbox_site.cgroups if self._sandbox_site is not None else None
        limits = self.config.sandbox.limits
        if cgroups is None or not cgroups.needed(self.tenant, limits):
            return None
        return cgroups.server(self.tenant, self.config.name, limits)

    def _killed_for_memory(self, group: ServerCgroup | None) -> str | None:
        """ "killed: out of memory (limit 256 MB)" if the kernel's OOM killer killed a process of
        this start's cgroup, naming the limit reached (its own, its tenant's, or the host's)."""
        if group is None or not group.out_of_memory():
            return None
        own = self.config.sandbox.limits.memory_mb
        cgroups = self._sandbox_site.cgroups if self._sandbox_site is not None else None
        quotas = cgroups.quotas(self.tenant) if cgroups is not None else None
        if own is not None and group.hit_own_memory_limit():
            return f"killed: out of memory (limit {own} MB)"
        if quotas is not None and quotas.max_memory_mb is not None:
            return f"killed: out of memory (tenant limit {quotas.max_memory_mb} MB, quotas.max_memory_mb)"
        return "killed: out of memory"

    def _on_spawn(self, child: StdioProcess) -> None:
        self._set(ServerState.STARTING, pid=child.pid)
        self._spawned = child.channel
        group = self._cgroup

        async def watch() -> None:
            await child.exited.wait()
            reason = f"process {child.pid} exited with code {child.process.returncode}"
            killed = self._killed_for_memory(group)
            if killed is not None:
                reason = f"{killed}: {reason}"
            words = await child.last_words()
            if words:  # (an npm 404, a Python traceback: often the only clue, and in the log alone)
                said = redact(" | ".join(words), self._tenant_env, self.config.env)
                reason += f"; its last stderr lines: {said}"
            self._mark_lost(reason)

        async def watch_stdout() -> None:
            """The hub reads no more of the child's stdout: unless the child exits (then `watch`
            says why), the channel is broken while it runs, which is a crash too."""
            await child.stdout_closed.wait()
            if child.broken is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(child.exited.wait(), _EXIT_GRACE)
                if child.exited.is_set():
                    return
            if self._spawned is child.channel:
                self._mark_lost(child.broken or "closed its stdout but kept running")

        loop = asyncio.get_running_loop()
        for task in (loop.create_task(watch()), loop.create_task(watch_stdout())):
            self._watches.add(task)
            task.add_done_callback(self._watches.discard)

    def _report_drops(self, count: int) -> None:
        """The notification gate dropped `count` notifications in its last interval (on this loop)."""
        log.warning(
            "%s/%s: dropped %d notifications in %g s (over orchestrator.notification_rate %g/s, burst %d)",
            self.tenant,
            self.config.name,
            count,
            self._gate.interval,
            self._gate.rate or 0,
            self._gate.burst,
        )
        tell(self._listener, NotificationsDropped(self.tenant, self.config.name, count))

    async def _await_exit(self) -> None:
        """A connection just closed: give the child's exit (and its last stderr lines, for which
        `watch` waits up to 0.5 s) up to 1 s to be recorded, to say why."""
        if self.status.pid is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), 1.0)

    def _abort_inflight(self, reason: str) -> None:
        """Fail every call in flight at once with an upstream error naming `reason`."""
        for task in list(self._inflight):
            self._aborted.add(task)
            task.cancel(reason)

    # ------------------------------------------------------------------ discovery

    def _capabilities(self, client: Client) -> types.ServerCapabilities:
        """The server's capabilities, or all of them when unknown (then every list is tried).

        A pinned 2026-07-28 connection skips `server/discover` and synthesizes empty capabilities.
        """
        if self.config.protocol in MODERN_PROTOCOL_VERSIONS:
            return types.ServerCapabilities(
                tools=types.ToolsCapability(list_changed=True),
                resources=types.ResourcesCapability(list_changed=True),
                prompts=types.PromptsCapability(list_changed=True),
            )
        return client.server_capabilities

    async def _discover(self, client: Client) -> ServerCatalog:
        caps = self._capabilities(client)
        wanted = self.config.capabilities
        tools: tuple[ToolEntry, ...] = ()
        resources: tuple[NamedEntry, ...] = ()
        templates: tuple[NamedEntry, ...] = ()
        prompts: tuple[NamedEntry, ...] = ()
        if caps.tools is not None and "tools" in wanted:
            raw = await _all_pages(client.list_tools, "tools")
            tools = tuple(self._tool_entry(t) for t in raw if self.config.tools.admits(t.name))
        if caps.resources is not None and "resources" in wanted:
            resources = tuple(
                self._named(r.name, r) for r in await _all_pages(client.list_resources, "resources")
            )
            templates = tuple(
                self._named(r.name, r)
                for r in await _all_pages(client.list_resource_templates, "resource_templates")
            )
        if caps.prompts is not None and "prompts" in wanted:
            prompts = tuple(self._named(p.name, p) for p in await _all_pages(client.list_prompts, "prompts"))
        return ServerCatalog(self.tenant, self.config.name, tools, resources, templates, prompts)

    def _tool_entry(self, tool: types.Tool) -> ToolEntry:
        return ToolEntry(
            tenant=self.tenant,
            server=self.config.name,
            name=tool.name,
            description=tool.description,
            title=tool.title,
            input_schema=dict(tool.input_schema),
            output_schema=dict(tool.output_schema) if tool.output_schema else None,
            annotations=tool.annotations.model_dump(mode="json", by_alias=True, exclude_none=True)
            if tool.annotations
            else None,
            meta=dict(tool.meta) if tool.meta else None,
        )

    def _named(self, name: str, model: Any) -> NamedEntry:
        raw = model.model_dump(mode="json", by_alias=True, exclude_none=True)
        return NamedEntry(self.tenant, self.config.name, name, raw)

    async def _on_message(self, message: Any) -> None:
        """SDK notification callback (on this loop): refresh the catalog on list_changed."""
        if isinstance(
            message,
            types.ToolListChangedNotification
            | types.ResourceListChangedNotification
            | types.PromptListChangedNotification,
        ):
            self._schedule_refresh()
        elif isinstance(message, Exception):
            log.debug("%s/%s: transport error: %s", self.tenant, self.config.name, message)

    async def _listen(self, client: Client) -> None:
        """On 2026-07-28 connections, list_changed only comes on a `subscriptions/listen` stream."""
        if client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            return  # handshake era: notifications arrive through `_on_message`
        caps = self._capabilities(client)
        wanted = {
            "tools_list_changed": bool(caps.tools and caps.tools.list_changed),
            "prompts_list_changed": bool(caps.prompts and caps.prompts.list_changed),
            "resources_list_changed": bool(caps.resources and caps.resources.list_changed),
        }
        if not any(wanted.values()):
            return
        try:
            async with client.listen(
                tools_list_changed=wanted["tools_list_changed"],
                prompts_list_changed=wanted["prompts_list_changed"],
                resources_list_changed=wanted["resources_list_changed"],
            ) as subscription:
                # The stream has no replay, and the server was `running` (callable) before the
                # ack: look once more, or a change made meanwhile would go unseen until the next.
                self._schedule_refresh()
                async for _event in subscription:
                    self._schedule_refresh()
        except Exception as exc:  # the catalog then only refreshes on restart; say so once
            log.info("%s/%s: no list_changed stream: %s", self.tenant, self.config.name, _describe(exc))

    def _schedule_refresh(self) -> None:
        """Re-discover soon; changes that arrive during a refresh cause one more (none is lost)."""
        self._dirty = True
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        while self._dirty:
            self._dirty = False
            client = self._client
            if client is None:
                return
            try:
                catalog = await self._discover(client)
            except Exception as exc:  # a failed refresh keeps the last catalog; a crash is handled apart
                log.warning(
                    "%s/%s: catalog refresh failed: %s", self.tenant, self.config.name, _describe(exc)
                )
                return
            if self._client is client:
                self._publish_catalog(catalog, "live")

    # ------------------------------------------------------------------ idle stop (on_demand)

    def _arm_idle(self, delay: float) -> None:
        """Check for idleness in `delay` seconds (an on_demand server that runs, with an idle_timeout)."""
        if not self.config.on_demand or self.config.idle_seconds <= 0:
            return
        if self.status.state is not ServerState.RUNNING or self._stop.is_set():
            return
        self._idle_handle = asyncio.get_running_loop().call_later(delay, self._idle_check)

    def _cancel_idle(self) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None

    def _touch(self) -> None:
        """A call ended: restart the idle clock (the timer re-arms itself for the time left)."""
        self._last_used = asyncio.get_running_loop().time()
        if self._idle_handle is None:
            self._arm_idle(self.config.idle_seconds)

    def _idle_check(self) -> None:
        """The idle timer fired (on this loop): stop the server if no call came for idle_timeout."""
        self._idle_handle = None
        if self._inflight or self.status.state is not ServerState.RUNNING or self._stop.is_set():
            return  # a call in flight re-arms the timer when it ends
        loop = asyncio.get_running_loop()
        idle = loop.time() - self._last_used
        if idle < self.config.idle_seconds:
            self._arm_idle(self.config.idle_seconds - idle)
            return
        log.info(
            "%s/%s: no call for %g s (idle_timeout): stopping", self.tenant, self.config.name, round(idle, 3)
        )
        self._idle_stop = loop.create_task(self.stop(StoppedReason.IDLE), name=f"idle-{self.config.name}")

    # ------------------------------------------------------------------ calls

    async def _guarded(
        self, what: str, run: Callable[[Client], Awaitable[T]], requester: Requester | None = None
    ) -> T:
        """Run `run(client)` as a call in flight: bounded by `call_timeout`, failed at once on a crash."""
        client = self._client
        if client is None or self.status.state is not ServerState.RUNNING:
            raise NotRunning(f"server '{self.config.name}' is {self.status.state.value}")
        if self._stop.is_set():
            raise NotRunning(f"server '{self.config.name}' is stopping")
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        if requester is not None:
            self._requesters[task] = requester
        try:
            async with asyncio.timeout(self.config.call_timeout):
                return await run(client)
        except TimeoutError:
            raise CallTimeout(
                f"{what} on server '{self.config.name}' timed out after {self.config.call_timeout:g} s"
            ) from None
        except asyncio.CancelledError as cancelled:
            if task in self._aborted:
                raise UpstreamError(str(cancelled.args[0]) if cancelled.args else "server stopped") from None
            raise
        except MCPError as exc:
            if exc.code == types.CONNECTION_CLOSED and not isinstance(exc, ErrorAnswer):
                if self.config.transport != "stdio":
                    self._mark_lost("connection closed")
                await self._await_exit()
                reason = self._lost_reason or "connection closed"
                raise UpstreamError(
                    f"server '{self.config.name}' crashed during the call: {reason}"
                ) from None
            if exc.code == types.INVALID_PARAMS:
                raise BadRequest(
                    f"server '{self.config.name}' rejected the arguments: {exc.message}"
                ) from None
            raise UpstreamError(
                f"server '{self.config.name}' answered with an error: {exc.message}"
            ) from None
        except HubError:
            raise
        except Exception as exc:  # a response that broke the protocol (validation), a transport error
            if self.config.transport != "stdio" and not isinstance(exc, ValueError):
                self._mark_lost(f"transport error: {_describe(exc)}")
            raise UpstreamError(f"server '{self.config.name}' failed: {_describe(exc)}") from None
        finally:
            self._inflight.discard(task)
            self._aborted.discard(task)
            self._requesters.pop(task, None)
            self._touch()

    async def call_tool(
        self, name: str, arguments: dict[str, Any], requester: Requester | None = None
    ) -> ToolResult:
        """Call tool `name` of this server and return its result in the REST shape.

        A stdio server is called through the hub's own channel (`actors.rawcall`); others through
        the SDK client.
        """
        progress = requester.progress if requester is not None else None
        channel = self._channel
        if channel is not None:
            params = {"name": name, "arguments": arguments}
            raw = await self._guarded(
                f"tool '{name}'", lambda c: channel.request("tools/call", params, progress), requester
            )
            return self._raw_tool_result(name, raw)
        jsontext.check(arguments)  # (BadRequest: what the SDK could not write must not reach it)
        result = await self._guarded(
            f"tool '{name}'",
            lambda c: c.call_tool(name, arguments, progress_callback=progress),  # type: ignore[arg-type]
            requester,
        )
        return ToolResult(
            tool=f"{self.config.name}.{name}",
            is_error=bool(result.is_error),
            content=tuple(
                b.model_dump(mode="json", by_alias=True, exclude_none=True) for b in result.content
            ),
            structured_content=result.structured_content,
        )

    def _raw_tool_result(self, name: str, raw: dict[str, Any]) -> ToolResult:
        """A `tools/call` result read off the wire, checked for the shape every client relies on."""
        where = f"server '{self.config.name}' answered tool '{name}'"
        kind = raw.get("resultType", "complete")
        if kind != "complete":
            raise UpstreamError(f"{where} with a '{kind}' result, which the hub cannot relay")
        content = raw.get("content")
        if not isinstance(content, list) or not all(
            isinstance(block, dict) and isinstance(block.get("type"), str) for block in content
        ):
            raise UpstreamError(f"{where} without a valid 'content' list")
        structured = raw.get("structuredContent")
        if structured is not None and not isinstance(structured, dict):
            raise UpstreamError(f"{where} with 'structuredContent' that is not an object")
        return ToolResult(
            tool=f"{self.config.name}.{name}",
            is_error=bool(raw.get("isError")),
            content=tuple(content),
            structured_content=structured,
        )

    # ------------------------------------------------------------------ the server's own requests

    def _requester(self) -> Requester | None:
        """The client of the most recent call in flight that came with one (a legacy server does
        not say which call its request belongs to)."""
        return next(reversed(self._requesters.values()), None)

    async def _ask_client(self, request: Any, result_type: type[Any]) -> Any:
        requester = self._requester()
        if requester is None:
            return types.ErrorData(
                code=types.INVALID_REQUEST,
                message="no client can answer: only a call in flight from an MCP facade session can",
            )
        try:
            return await requester.ask(request, result_type)
        except MCPError as exc:
            return exc.error
        except Exception as exc:  # the client went away or cannot answer in its protocol era
            return types.ErrorData(
                code=types.INTERNAL_ERROR, message=f"the client could not answer: {_describe(exc)}"
            )

    async def _on_sampling(self, context: Any, params: types.CreateMessageRequestParams) -> Any:
        """The server asks for an LLM completion: ask the client whose call is in flight."""
        result_type = types.CreateMessageResultWithTools if params.tools else types.CreateMessageResult
        return await self._ask_client(types.CreateMessageRequest(params=params), result_type)

    async def _on_elicitation(self, context: Any, params: types.ElicitRequestParams) -> Any:
        """The server asks the user for input: ask the client whose call is in flight."""
        return await self._ask_client(types.ElicitRequest(params=params), types.ElicitResult)

    async def _on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        """A log message of the server: to the client of the call in flight, if any."""
        requester = self._requester()
        if requester is not None:
            try:
                await requester.log(params)
            except Exception as exc:  # a log that cannot be delivered is not worth failing a call
                log.debug("%s/%s: log message dropped: %s", self.tenant, self.config.name, _describe(exc))

    async def _on_raw_log(self, params: dict[str, Any]) -> None:
        """A log message taken off a stdio server's wire by the hub's own channel."""
        try:
            parsed = types.LoggingMessageNotificationParams.model_validate(params, by_name=False)
        except ValueError:
            log.debug("%s/%s: malformed log message dropped", self.tenant, self.config.name)
            return
        await self._on_log(parsed)

    async def request(self, method: str, *args: Any) -> dict[str, Any]:
        """Another request of the client (`read_resource`, `get_prompt`), its result as JSON.

        Raises:
            BadRequest: an argument holds text that is not valid Unicode (the SDK could not write
                it: the request fails here, and the server is never blamed for it).
        """
        for arg in args:
            jsontext.check(arg, "arguments" if isinstance(arg, dict) else "the request")
        result = await self._guarded(method, lambda c: getattr(c, method)(*args))
        return result.model_dump(mode="json", by_alias=True, exclude_none=True)


async def _all_pages(fetch: Callable[..., Awaitable[Any]], attr: str) -> list[Any]:
    """Every item of a paginated list; a server that does not implement the list has none."""
    items: list[Any] = []
    cursor = None
    for _ in range(_MAX_PAGES):
        try:
            page = await fetch(cursor=cursor)
        except MCPError as exc:
            if exc.code == types.METHOD_NOT_FOUND:
                return items
            raise
        items.extend(getattr(page, attr))
        cursor = page.next_cursor
        if not cursor:
            break
    return items


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
            self._on_loop(self.supervisor.stop(), _STOP_TIMEOUT + self.supervisor._orch.shutdown_grace)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
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

    def launch(self) -> ServerStatus:
        """Begin supervising (returns at once, or once a stop in progress is done; watch
        `ServerStateChanged` for `running`). Idempotent: a running server is left alone."""
        return self._on_loop(self.supervisor.wake(), _STOP_TIMEOUT + self.supervisor._orch.shutdown_grace)

    def halt(self, retire: bool = False) -> ServerStatus:
        """Stop the server and wait until its process is gone.

        `retire`: it is being removed or replaced (a reload), so its cached catalog is withdrawn.
        """
        stop = self.supervisor.stop(retire=retire)
        self._on_loop(stop, _STOP_TIMEOUT + self.supervisor._orch.shutdown_grace)
        return self.supervisor.status

    def relaunch(self) -> ServerStatus:
        """Stop, then start again (a new process, restart counters reset)."""
        self.halt()
        return self.launch()

    def status(self) -> ServerStatus:
        """The latest status snapshot."""
        return self.supervisor.status

    def catalog(self) -> ServerCatalog:
        """The catalog last published (an on_demand server's cached one from the start)."""
        return self.supervisor.catalog
