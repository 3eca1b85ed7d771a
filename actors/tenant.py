"""`TenantActor`: owns a tenant's servers, enforces its quotas, relays their events to the router.

Quotas: `max_servers` (servers started at once) is checked when a server starts; `max_tools` trims
the catalog the router sees (tools past the quota, in configuration order, are left out and
logged); `max_concurrent_calls` and `max_calls_per_minute` are enforced per call by the tenant's
`CallGate`, which routes carry, so a call never waits in the tenant's inbox.

Servers with `lifecycle: on_demand` are not started with their tenant; the hub's call path asks
`wake_server` when a call finds one stopped.

Servers with `per_session: true` run one *instance* per client session: the hub's call path asks
`session_instance(server, session)`, and the tenant starts (or wakes) a `ServerActor` of its own
for that `(server, session)`, keyed by both and owned here, so no instance is ever shared with
another tenant. `max_sessions_per_server` bounds how many run at once. `end_session` stops a
session's instances; an instance that stops by itself (idle, failed) is dropped when its
`InstanceStateChanged` says so. The server's own actor (the *shared* instance) still serves calls
that come without a session, and lists the catalog (from its cache, or from the first discovery of
any instance).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

import pykka

from actors.catalog_cache import cache_path, safe_name
from actors.limits import LimitError
from actors.models import (
    CatalogChanged,
    InstanceCatalogChanged,
    InstanceStateChanged,
    ServerCatalog,
    ServerState,
    ServerStateChanged,
    ServerStatus,
    session_label,
)
from actors.reaper import ProcessRegistry
from actors.sandbox import SandboxSite
from actors.server import Listener, ServerActor, ServerEndpoint, ServerSpec, tell
from hub.config import OrchestratorConfig, Quotas, TenantConfig
from hub.errors import NotFound, NotRunning, QuotaExceeded

if TYPE_CHECKING:  # the REST answers' types (a type-only import: actors never import web at run time)
    from web import responses as api

log = logging.getLogger(__name__)

_ACTIVE = (ServerState.STARTING, ServerState.RUNNING, ServerState.BACKOFF)
_ASK_TIMEOUT = 30.0


class CallGate:
    """Per-tenant call quotas: concurrency and a sliding one-minute rate window.

    Thread-safe: entered by whatever thread makes a call (web loop, Python API callers).
    """

    def __init__(self, quotas: Quotas) -> None:
        self._quotas = quotas
        self._lock = threading.Lock()
        self._in_flight = 0
        self._recent: collections.deque[float] = collections.deque()

    def update(self, quotas: Quotas) -> None:
        """Apply new quotas (a reload); calls in flight and the last minute's count are kept."""
        with self._lock:
            self._quotas = quotas

    @property
    def in_flight(self) -> int:
        """Calls of the tenant in flight now."""
        return self._in_flight

    def calls_last_minute(self) -> int:
        """Calls started in the last 60 s."""
        with self._lock:
            self._expire(time.monotonic())
            return len(self._recent)

    def _expire(self, now: float) -> None:
        while self._recent and now - self._recent[0] >= 60.0:
            self._recent.popleft()

    @contextmanager
    def admit(self, tenant: str) -> Iterator[None]:
        """Hold one call slot for the duration of the block.

        Raises:
            QuotaExceeded: `max_concurrent_calls` or `max_calls_per_minute` would be exceeded.
        """
        quotas = self._quotas
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            if quotas.max_concurrent_calls is not None and self._in_flight >= quotas.max_concurrent_calls:
                raise QuotaExceeded(
                    f"tenant '{tenant}' has {self._in_flight} calls in flight "
                    f"(max_concurrent_calls {quotas.max_concurrent_calls})",
                    retry_after=1.0,
                )
            if quotas.max_calls_per_minute is not None and len(self._recent) >= quotas.max_calls_per_minute:
                raise QuotaExceeded(
                    f"tenant '{tenant}' made {len(self._recent)} calls in the last minute "
                    f"(max_calls_per_minute {quotas.max_calls_per_minute})",
                    retry_after=max(0.1, 60.0 - (now - self._recent[0])),
                )
            self._in_flight += 1
            self._recent.append(now)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1


@dataclass(frozen=True)
class TenantLease:
    """What the router keeps of a tenant: its gate and its servers' endpoints (thread-safe objects)."""

    tenant: str
    gate: CallGate
    endpoints: Mapping[str, ServerEndpoint]
    call_timeouts: Mapping[str, float]
    on_demand: Mapping[str, bool]  # started by a call when stopped (on_demand and enabled)
    per_session: Mapping[str, bool]  # one instance per session (per_session and enabled)


@dataclass(frozen=True)
class TenantInfo:
    """A tenant as the API shows it (never its keys or env)."""

    name: str
    description: str
    quotas: Quotas
    servers: tuple[ServerStatus, ...]
    tools: int
    hidden_tools: int
    calls_in_flight: int
    calls_last_minute: int
    instances: Mapping[str, int] = field(default_factory=dict)  # per_session server → instances
    resources: Mapping[str, int | None] = field(default_factory=dict)  # max_memory_mb, max_processes used

    def to_json(self) -> api.Tenant:
        """JSON-ready dict: quotas with their usage, and the servers."""
        active = sum(1 for s in self.servers if s.state in _ACTIVE)
        usage = {
            "max_servers": active,
            "max_tools": self.tools,
            "max_concurrent_calls": self.calls_in_flight,
            "max_calls_per_minute": self.calls_last_minute,
            "max_sessions_per_server": max(self.instances.values(), default=0),
            "max_memory_mb": self.resources.get("max_memory_mb"),  # (None: no cgroup counts it)
            "max_processes": self.resources.get("max_processes"),
        }
        return {
            "name": self.name,
            "description": self.description,
            "quotas": cast(
                "api.TenantQuotas",
                {k: {"limit": getattr(self.quotas, k), "used": v} for k, v in usage.items()},
            ),
            "hidden_tools": self.hidden_tools,
            "servers": [s.to_json() for s in self.servers],
        }


class TenantActor(pykka.ThreadingActor):
    """One tenant. Asked by the router and the frontend; tells events up to `listener`.

    Runs on its own actor thread; owns one `ServerActor` per configured server.
    """

    def __init__(
        self,
        config: TenantConfig,
        orchestrator: OrchestratorConfig,
        listener: Listener,
        registry: ProcessRegistry | None,
        log_dir: Path,
        cache_dir: Path | None = None,
        sandbox_site: SandboxSite | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self._orch = orchestrator
        self._listener = listener
        self._registry = registry
        self._log_dir = log_dir
        self._cache_dir = cache_dir
        self._sandbox_site = sandbox_site  # None: stdio servers run unsandboxed
        self._gate = CallGate(config.quotas)
        self._servers: dict[str, pykka.ActorProxy[ServerActor]] = {}
        self._statuses: dict[str, ServerStatus] = {}
        self._catalogs: dict[str, ServerCatalog] = {}
        self._hidden: dict[str, int] = {}
        # Session instances of per_session servers, by (server, session), and their last status.
        self._instances: dict[tuple[str, str], pykka.ActorProxy[ServerActor]] = {}
        self._instance_statuses: dict[tuple[str, str], ServerStatus] = {}

    def on_start(self) -> None:
        self._confine()
        # Every server actor started, then every first status and catalog asked, then awaited:
        # the asks overlap instead of waiting for each other (it matters with many servers).
        asked = [(name, self._start_server_actor(name)) for name in self.config.servers]
        for name, (status, catalog) in asked:
            self._record_server(name, status, catalog)

    def _confine(self) -> None:
        """Make (or update) the tenant's cgroup, which bounds its servers' memory and processes
        together (`max_memory_mb`, `max_processes`; on this actor's thread)."""
        cgroups = self._sandbox_site.cgroups if self._sandbox_site is not None else None
        if cgroups is not None:
            try:
                cgroups.tenant(self.config.name, self.config.quotas)
            except LimitError as exc:
                log.error("%s: max_memory_mb and max_processes are not enforced: %s", self.config.name, exc)

    def _add_server(self, name: str) -> None:
        self._record_server(name, *self._start_server_actor(name))

    def _start_server_actor(
        self, name: str
    ) -> tuple[pykka.Future[ServerStatus], pykka.Future[ServerCatalog]]:
        """Start the server's actor (not the server); ask its status and its first catalog."""
        server = self.config.servers[name]
        log_path = self._log_dir / self.config.name / f"{name}.log"
        cached = cache_path(self._cache_dir, self.config.name, name) if self._cache_dir else None
        spec = ServerSpec(
            self.config.name, server, self.config.env, self._orch, log_path, cached, None, self._sandbox_site
        )
        proxy = ServerActor.start(spec, self.actor_ref, self._registry).proxy()
        self._servers[name] = proxy
        return proxy.status(), proxy.catalog()  # (an on_demand server's catalog: its cached one)

    def _record_server(
        self, name: str, status: pykka.Future[ServerStatus], catalog: pykka.Future[ServerCatalog]
    ) -> None:
        self._statuses[name] = status.get(timeout=_ASK_TIMEOUT)
        first = catalog.get(timeout=_ASK_TIMEOUT)
        if not first.empty:
            self._within_tool_quota(first)

    def _remove_server(self, name: str) -> None:
        self._stop_instances(lambda server, session: server == name)
        proxy = self._servers.pop(name)
        proxy.halt(retire=True).get(timeout=_ASK_TIMEOUT + self._orch.shutdown_grace)
        proxy.actor_ref.stop(timeout=_ASK_TIMEOUT)
        self._statuses.pop(name, None)
        self._catalogs.pop(name, None)
        self._hidden.pop(name, None)

    def reconfigure(
        self, config: TenantConfig, orchestrator: OrchestratorConfig
    ) -> tuple[TenantLease, dict[str, str]]:
        """Apply a new configuration of this tenant (a reload).

        Servers removed are stopped; servers whose configuration (or the tenant's env) changed are
        replaced by a new process; unchanged ones keep their process and calls in flight; new ones
        are started if the tenant's servers run or `auto_start`. Quotas apply at once. An
        on_demand server (new or changed) is left for its next call to start.

        Returns:
            The new lease, and per server what happened: added, removed, restarted, unchanged.
        """
        old = self.config
        was_running = any(s.state in _ACTIVE for s in self._statuses.values())
        outcome: dict[str, str] = {}
        for name in [n for n in old.servers if n not in config.servers]:
            self._remove_server(name)
            outcome[name] = "removed"
        env_changed = old.env != config.env
        changed = [
            n
            for n in config.servers
            if n in old.servers and (env_changed or old.servers[n] != config.servers[n])
        ]
        restart = {
            n for n in changed if self._statuses[n].state in _ACTIVE and not config.servers[n].on_demand
        }
        for name in changed:
            self._remove_server(name)
        self.config = config
        self._orch = orchestrator  # for the servers (re)started from now on
        auto_start = orchestrator.auto_start
        self._gate.update(config.quotas)
        self._confine()
        for name in config.servers:
            if name in changed:
                self._add_server(name)
                outcome[name] = "restarted" if name in restart else "changed"
                if name in restart:
                    self.start_server(name)
            elif name not in old.servers:
                self._add_server(name)
                outcome[name] = "added"
                added = config.servers[name]
                if (was_running or auto_start) and added.enabled and not added.on_demand:
                    self.start_server(name)
            else:
                outcome[name] = "unchanged"
        return self.lease(), outcome

    def on_stop(self) -> None:
        self.stop_servers()
        for proxy in self._servers.values():
            proxy.actor_ref.stop(timeout=_ASK_TIMEOUT)

    # ------------------------------------------------------------------ events from servers

    def on_receive(self, message: Any) -> None:
        """Events told by the servers (on this actor's thread): record, apply quotas, relay up."""
        if isinstance(message, InstanceStateChanged | InstanceCatalogChanged):
            self._on_instance_event(message)
            return
        server = (
            message.status.server
            if isinstance(message, ServerStateChanged)
            else getattr(getattr(message, "catalog", None), "server", getattr(message, "server", None))
        )
        if server not in self._servers:
            return  # a server removed by a reload, still telling its last words
        if isinstance(message, ServerStateChanged):
            if message.status.seq < self._statuses[server].seq:
                return  # older than what is known (a replaced server's last status)
            self._statuses[server] = message.status
        elif isinstance(message, CatalogChanged):
            known = self._catalogs.get(server)
            if known is not None and message.catalog.seq < known.seq:
                return  # older than what is known (a replaced server's last catalog)
            message = CatalogChanged(self._within_tool_quota(message.catalog))
        tell(self._listener, message)

    def _on_instance_event(self, message: InstanceStateChanged | InstanceCatalogChanged) -> None:
        """An event of a session instance (this actor's thread)."""
        if isinstance(message, InstanceCatalogChanged):
            catalog = message.catalog
            known = self._catalogs.get(catalog.server)
            if catalog.server not in self._servers or catalog.empty:
                return  # a removed server; or an instance that stopped (its server keeps its listing)
            if known is not None and (known.same_offer(catalog) or catalog.seq < known.seq):
                return
            # The server had no catalog (no cache yet), or a session's discovery found a new offer:
            # list it as the server's (it is also in the cache file now).
            tell(self._listener, CatalogChanged(self._within_tool_quota(replace(catalog, cached=True))))
            return
        status = message.status
        key = (status.server, status.session or "")
        last = self._instance_statuses.get(key)
        if last is not None and status.seq < last.seq:
            return  # older than what is known (e.g. the idle stop of an instance woken since)
        if key in self._instances:
            self._instance_statuses[key] = status
            if status.state in (ServerState.STOPPED, ServerState.FAILED):
                # It stopped by itself (idle, or failed after its retries): it is gone.
                proxy = self._instances.pop(key)
                self._instance_statuses.pop(key, None)
                proxy.actor_ref.stop(block=False)
                log.info(
                    "%s/%s: instance of session %s %s",
                    self.config.name,
                    status.server,
                    session_label(key[1]),
                    status.stopped_reason.value if status.stopped_reason else status.state.value,
                )
        tell(self._listener, message)  # (also for instances already dropped: their last words)

    def _within_tool_quota(self, catalog: ServerCatalog) -> ServerCatalog:
        self._catalogs[catalog.server] = catalog
        limit = self.config.quotas.max_tools
        if limit is None:
            return catalog
        used = sum(
            len(c.tools) - self._hidden.get(s, 0) for s, c in self._catalogs.items() if s != catalog.server
        )
        room = max(0, limit - used)
        hidden = max(0, len(catalog.tools) - room)
        self._hidden[catalog.server] = hidden
        if hidden:
            log.warning(
                "tenant %s: %d tools of server %s left out of the catalog (max_tools %d)",
                self.config.name,
                hidden,
                catalog.server,
                limit,
            )
            return replace(catalog, tools=catalog.tools[:room])
        return catalog

    # ------------------------------------------------------------------ asks

    def lease(self) -> TenantLease:
        """The gate and endpoints the router needs to route calls of this tenant."""
        endpoints = {
            name: proxy.get_endpoint().get(timeout=_ASK_TIMEOUT) for name, proxy in self._servers.items()
        }
        servers = self.config.servers
        timeouts = {name: s.call_timeout for name, s in servers.items()}
        on_demand = {name: s.on_demand and s.enabled for name, s in servers.items()}
        per_session = {name: s.per_session and s.enabled for name, s in servers.items()}
        return TenantLease(
            self.config.name,
            self._gate,
            MappingProxyType(endpoints),
            MappingProxyType(timeouts),
            MappingProxyType(on_demand),
            MappingProxyType(per_session),
        )

    def listed(self, server: str) -> ServerCatalog | None:
        """The server's catalog as the router should list it (within `max_tools`), if any."""
        catalog = self._catalogs.get(server)
        if catalog is None or catalog.empty:
            return None
        hidden = self._hidden.get(server, 0)
        return replace(catalog, tools=catalog.tools[: len(catalog.tools) - hidden]) if hidden else catalog

    def _proxy(self, server: str) -> pykka.ActorProxy[ServerActor]:
        if server not in self._servers:
            raise NotFound(f"no server '{server}' in tenant '{self.config.name}'")
        return self._servers[server]

    def start_server(self, server: str) -> ServerStatus:
        """Start one server (enabled or not: an explicit start is the operator's choice).

        Raises:
            NotFound: no such server.
            QuotaExceeded: `max_servers` servers already run.
        """
        proxy = self._proxy(server)
        status = self._statuses[server]
        if status.state in _ACTIVE and not self.config.servers[server].on_demand:
            return status  # (an on_demand server may be stopping for idleness: ask it)
        self._check_max_servers(server)
        status = proxy.launch().get(timeout=_ASK_TIMEOUT + self._orch.shutdown_grace)
        if status.seq >= self._statuses[server].seq:
            self._statuses[server] = status
        return status

    def _check_max_servers(self, server: str) -> None:
        limit = self.config.quotas.max_servers
        active = sum(1 for name, s in self._statuses.items() if s.state in _ACTIVE and name != server)
        if limit is not None and active >= limit:
            raise QuotaExceeded(
                f"tenant '{self.config.name}' already runs {active} servers (max_servers {limit})",
                retry_after=60.0,
            )

    def wake_server(self, server: str) -> ServerStatus:
        """Start an on_demand server for a call that found it stopped (idempotent).

        The server is asked even when its last known state is active: the caller saw it stopped,
        and the server knows best (it may be stopping for idleness, which the launch waits out).
        Returns at once; the caller waits for `running` on the events.

        Raises:
            NotFound: no such server.
            NotRunning: it is not an enabled on_demand server.
            QuotaExceeded: `max_servers` servers already run.
        """
        self._proxy(server)
        config = self.config.servers[server]
        if not (config.on_demand and config.enabled):
            raise NotRunning(f"server '{server}' of tenant '{self.config.name}' is not running")
        return self.start_server(server)

    def start_servers(self) -> dict[str, ServerStatus | str]:
        """Start every enabled server that is not on_demand; per server, its status, or why it was
        not started (`disabled`, `on_demand`, `quota_exceeded: ...`)."""
        outcome: dict[str, ServerStatus | str] = {}
        for name, config in self.config.servers.items():
            if not config.enabled:
                outcome[name] = "disabled"
                continue
            if config.per_session and self.listed(name) is None:
                # No catalog yet (no cache): run the shared instance once to discover it; it stops
                # when idle like any on_demand server. Sessions then start their own instances.
                try:
                    outcome[name] = self.start_server(name)
                except QuotaExceeded as exc:
                    outcome[name] = f"quota_exceeded: {exc.message}"
                continue
            if config.per_session:
                outcome[name] = "per_session"
                continue
            if config.on_demand:
                outcome[name] = "on_demand"
                continue
            try:
                outcome[name] = self.start_server(name)
            except QuotaExceeded as exc:
                outcome[name] = f"quota_exceeded: {exc.message}"
        return outcome

    def stop_server(self, server: str) -> ServerStatus:
        """Stop one server (and its session instances) and wait until its processes are gone."""
        self._stop_instances(lambda name, session: name == server)
        status = self._proxy(server).halt().get(timeout=_ASK_TIMEOUT + self._orch.shutdown_grace)
        self._statuses[server] = status
        return status

    def restart_server(self, server: str) -> ServerStatus:
        """Stop then start one server (a new process)."""
        self.stop_server(server)
        return self.start_server(server)

    def stop_servers(self) -> dict[str, str]:
        """Stop every server and session instance at once (in parallel) and wait for all;
        per-server final state."""
        self._stop_instances(lambda server, session: True)
        futures = {name: proxy.halt() for name, proxy in self._servers.items()}
        outcome = {}
        for name, future in futures.items():
            try:
                status = future.get(timeout=_ASK_TIMEOUT + self._orch.shutdown_grace)
                self._statuses[name] = status
                outcome[name] = status.state.value
            except Exception as exc:  # isolation: one stuck server must not stop the others' report
                log.exception("stopping %s/%s failed", self.config.name, name)
                outcome[name] = f"error: {exc}"
        return outcome

    def status(self, server: str) -> ServerStatus:
        """One server's latest status."""
        return self._proxy(server).status().get(timeout=_ASK_TIMEOUT)

    def info(self) -> TenantInfo:
        """The tenant with its quotas, usage and servers."""
        statuses = tuple(self._statuses[name] for name in self.config.servers)
        tools = sum(len(c.tools) for c in self._catalogs.values()) - sum(self._hidden.values())
        instances = {
            name: sum(1 for server, _ in self._instances if server == name)
            for name, config in self.config.servers.items()
            if config.per_session
        }
        cgroups = self._sandbox_site.cgroups if self._sandbox_site is not None else None
        return TenantInfo(
            self.config.name,
            self.config.description,
            self.config.quotas,
            statuses,
            tools,
            sum(self._hidden.values()),
            self._gate.in_flight,
            self._gate.calls_last_minute(),
            MappingProxyType(instances),
            MappingProxyType(cgroups.usage(self.config.name) if cgroups is not None else {}),
        )

    # ------------------------------------------------------------------ session instances

    def session_instance(self, server: str, session: str) -> tuple[ServerEndpoint, ServerStatus]:
        """The instance of per_session `server` for `session`: started if new, woken if it is
        stopping for idleness. Returns at once; the caller waits for `running` on the events.

        Raises:
            NotFound: no such server.
            NotRunning: it is not an enabled per_session server.
            QuotaExceeded: `max_sessions_per_server` instances of it already run.
        """
        self._proxy(server)
        config = self.config.servers[server]
        if not (config.per_session and config.enabled):
            raise NotRunning(f"server '{server}' of tenant '{self.config.name}' is not a per_session server")
        key = (server, session)
        proxy = self._instances.get(key)
        if proxy is None:
            limit = self.config.quotas.max_sessions_per_server
            running = sum(1 for name, _ in self._instances if name == server)
            if limit is not None and running >= limit:
                raise QuotaExceeded(
                    f"server '{server}' of tenant '{self.config.name}' already runs {running} session "
                    f"instances (max_sessions_per_server {limit}): end a session, or wait until one "
                    f"is idle for {config.idle_seconds:g} s",
                    retry_after=max(1.0, min(config.idle_seconds or 60.0, 60.0)),
                )
            label = session_label(session)
            log_path = self._log_dir / self.config.name / f"{server}.sessions" / f"{safe_name(label)}.log"
            cached = cache_path(self._cache_dir, self.config.name, server) if self._cache_dir else None
            spec = ServerSpec(
                self.config.name,
                config,
                self.config.env,
                self._orch,
                log_path,
                cached,
                session,
                self._sandbox_site,
            )
            proxy = ServerActor.start(spec, self.actor_ref, self._registry).proxy()
            self._instances[key] = proxy
            log.info("%s/%s: new instance for session %s", self.config.name, server, label)
        endpoint = proxy.get_endpoint().get(timeout=_ASK_TIMEOUT)
        status = proxy.launch().get(timeout=_ASK_TIMEOUT + self._orch.shutdown_grace)
        self._instance_statuses[key] = status
        return endpoint, status

    def end_session(self, session: str) -> int:
        """Stop every instance of `session` (its client went away) and wait until their processes
        are gone; how many there were."""
        return self._stop_instances(lambda server, owner: owner == session)

    def instances(self) -> tuple[ServerStatus, ...]:
        """The latest status of every session instance, in configuration order of their servers."""
        order = {name: i for i, name in enumerate(self.config.servers)}
        keys = sorted(self._instance_statuses, key=lambda k: (order.get(k[0], 0), k[1]))
        return tuple(self._instance_statuses[k] for k in keys)

    def _stop_instances(self, which: Any) -> int:
        """Stop the instances for which `which(server, session)` holds, in parallel; remove them."""
        keys = [key for key in self._instances if which(*key)]
        proxies = [self._instances.pop(key) for key in keys]
        for key in keys:
            self._instance_statuses.pop(key, None)
        futures = [proxy.halt() for proxy in proxies]
        for key, proxy, future in zip(keys, proxies, futures, strict=True):
            try:
                future.get(timeout=_ASK_TIMEOUT + self._orch.shutdown_grace)
            except Exception:  # isolation: one stuck instance must not keep the others running
                log.exception(
                    "stopping %s/%s of session %s failed", self.config.name, key[0], session_label(key[1])
                )
            proxy.actor_ref.stop(timeout=_ASK_TIMEOUT)
        return len(keys)
