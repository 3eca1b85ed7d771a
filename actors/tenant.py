"""`TenantActor`: owns a tenant's servers, enforces its quotas, relays their events to the router.

Quotas: `max_servers` (servers started at once) is checked when a server starts; `max_tools` trims
the catalog the router sees (`actors.tool_quota`); `max_concurrent_calls` and
`max_calls_per_minute` are enforced per call by the tenant's `CallGate` (`actors.call_gate`),
which routes carry, so a call never waits in the tenant's inbox.

Servers with `lifecycle: on_demand` are not started with their tenant; the hub's call path asks
`wake_server` when a call finds one stopped.

Servers with `per_session: true` run one *instance* per client session: the hub's call path asks
`session_instance(server, session)`, and the tenant starts (or wakes) a `ServerActor` of its own
for that `(server, session)` (`actors.session_instances`), so no instance is ever shared with
another tenant. `max_sessions_per_server` bounds how many run at once. `end_session` stops a
session's instances. The server's own actor (the *shared* instance) still serves calls that come
without a session, and lists the catalog (from its cache, or from the first discovery of any
instance).

Servers with `per_user: true` run the same way, one instance per user (the session
`user:<subject>`, see `hub.user_servers`), each started with its user's own `user_env` values.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import assert_never, cast

import pykka
from pykka.typing import ActorMemberMixin, proxy_method

from actors.call_gate import CallGate
from actors.catalog_cache import cache_path, safe_name
from actors.limits import LimitError
from actors.models import (
    CatalogChanged,
    InstanceCatalogChanged,
    InstanceStateChanged,
    NotificationsDropped,
    PinnedToolsChanged,
    ResourceUpdated,
    ServerCatalog,
    ServerCrashed,
    ServerLogMessage,
    ServerStateChanged,
    ServerStatus,
    session_label,
)
from actors.reaper import ProcessRegistry
from actors.sandbox import SandboxSite
from actors.server import (
    Listener,
    ServerActorProxy,
    ServerEndpoint,
    ServerEvent,
    ServerSpec,
    start_server_actor,
    tell,
)
from actors.server_spec import NO_STORES, ServerStores
from actors.session_instances import SessionInstances
from actors.tenant_info import ACTIVE, TenantInfo, TenantLease, changed_servers, lease_of, started_by_reload
from actors.tool_quota import ToolQuota
from hub import timeouts
from hub.config import OrchestratorConfig, SecretMap, ServerConfig, TenantConfig
from hub.errors import NotFound, NotRunning, QuotaExceeded
from hub.pins import PinPolicy

__all__ = ["CallGate", "TenantActor", "TenantActorProxy", "TenantInfo", "TenantLease"]

log = logging.getLogger(__name__)


class TenantActor(pykka.ThreadingActor):
    """One tenant. Asked by the router and the frontend; tells events up to `listener`.

    Runs on its own actor thread; owns one `ServerActor` per configured server, and the session
    instances of its per_session servers.
    """

    def __init__(
        self,
        config: TenantConfig,
        orchestrator: OrchestratorConfig,
        listener: Listener,
        registry: ProcessRegistry | None,
        log_dir: Path,
        stores: ServerStores = NO_STORES,
        sandbox_site: SandboxSite | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self._orch = orchestrator
        self._listener = listener
        self._registry = registry
        self._log_dir = log_dir
        self._stores = stores  # catalog caches and pinned tools
        self._sandbox_site = sandbox_site  # None: stdio servers run unsandboxed
        self._gate = CallGate(config.quotas)
        self._servers: dict[str, ServerActorProxy] = {}
        self._statuses: dict[str, ServerStatus] = {}
        self._floors: dict[str, int] = {}  # a server's first seq: anything older is a predecessor's
        self._tools = ToolQuota(config.name)
        self._instances = SessionInstances(config.name)
        self._log_levels: dict[str, str | None] = {}  # per server (kept across reloads that replace it)

    @property
    def _stop_timeout(self) -> float:
        """Seconds a server may take to stop (a start too: it may first wait out a stop)."""
        return timeouts.SERVER_STOP_ASK + self._orch.shutdown_grace

    def on_start(self) -> None:
        self._confine()
        # Every server actor started, then every first status and catalog asked, then awaited:
        # the asks overlap instead of waiting for each other (it matters with many servers).
        asked = [(name, self._start_server_actor(name)) for name in self.config.servers]
        for name, (status, catalog) in asked:
            self._record_server(name, status, catalog)

    def on_stop(self) -> None:
        self.stop_servers()
        for proxy in self._servers.values():
            proxy.actor_ref.stop(timeout=timeouts.ACTOR_STOP)

    def _confine(self) -> None:
        """Make (or update) the tenant's cgroup, which bounds its servers' memory and processes
        together (`max_memory_mb`, `max_processes`; on this actor's thread)."""
        cgroups = self._sandbox_site.cgroups if self._sandbox_site is not None else None
        if cgroups is not None:
            try:
                cgroups.tenant(self.config.name, self.config.quotas)
            except LimitError as exc:
                log.error("%s: max_memory_mb and max_processes are not enforced: %s", self.config.name, exc)

    def _spec(self, name: str, session: str | None = None, user_env: SecretMap | None = None) -> ServerSpec:
        """What server `name` (or its instance for `session`, with a per_user one's `user_env`) is
        started with."""
        folder = self._log_dir / self.config.name
        if session is None:
            log_path = folder / f"{name}.log"
        else:
            log_path = folder / f"{name}.sessions" / f"{safe_name(session_label(session))}.log"
        root = self._stores.cache_dir
        cached = cache_path(root, self.config.name, name) if root else None
        server, pins = self.config.servers[name], PinPolicy(self._stores.pins, self.config.pinning_of(name))
        orch, site, level, env = self._orch, self._sandbox_site, self._log_levels.get(name), self.config.env
        spec = ServerSpec(self.config.name, server, env, orch, log_path, cached, session, site, level)
        return replace(spec, user_env=user_env or spec.user_env, pinning=pins)

    def _add_server(self, name: str) -> None:
        self._record_server(name, *self._start_server_actor(name))

    def _start_server_actor(
        self, name: str
    ) -> tuple[pykka.Future[ServerStatus], pykka.Future[ServerCatalog]]:
        """Start the server's actor (not the server); ask its status and its first catalog."""
        proxy = start_server_actor(self._spec(name), self.actor_ref, self._registry)
        self._servers[name] = proxy
        return proxy.status(), proxy.catalog()  # (an on_demand server's catalog: its cached one)

    def _record_server(
        self, name: str, status: pykka.Future[ServerStatus], catalog: pykka.Future[ServerCatalog]
    ) -> None:
        self._statuses[name] = status.get(timeout=timeouts.ASK)
        self._floors[name] = self._statuses[name].seq
        first = catalog.get(timeout=timeouts.ASK)
        if not first.empty:
            self._tools.within(first, self.config.quotas)

    def _remove_server(self, name: str) -> None:
        self._instances.stop(lambda server, session: server == name, self._stop_timeout)
        proxy = self._servers.pop(name)
        proxy.stop_server(retire=True).get(timeout=self._stop_timeout)
        proxy.actor_ref.stop(timeout=timeouts.ACTOR_STOP)
        self._statuses.pop(name, None)
        self._tools.forget(name)

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
        removed = [name for name in old.servers if name not in config.servers]
        added = [name for name in config.servers if name not in old.servers]
        changed = changed_servers(old, config)
        restart, start = started_by_reload(self._statuses, config, orchestrator.auto_start, changed, added)
        for name in [*removed, *(name for name in config.servers if name in changed)]:
            self._remove_server(name)
        self.config = config
        self._orch = orchestrator  # for the servers (re)started from now on
        self._gate.update(config.quotas)
        self._confine()
        outcome = dict.fromkeys(removed, "removed")
        for name in config.servers:
            if name not in changed and name not in added:
                outcome[name] = "unchanged"
                continue
            self._add_server(name)
            if name in start:
                self.start_server(name)
            outcome[name] = "added" if name in added else "restarted" if name in restart else "changed"
        return self.lease(), outcome

    # ------------------------------------------------------------------ events from servers

    def on_receive(self, message: ServerEvent) -> None:
        """Events told by the servers (on this actor's thread): record, apply quotas, relay up."""
        match message:
            case InstanceStateChanged(status=status):
                if self._instances.on_status(status):  # (also for instances dropped: their last words)
                    tell(self._listener, message)
            case InstanceCatalogChanged(catalog=catalog):
                self._on_instance_catalog(catalog)
            case ServerStateChanged(status=status):
                self._on_status(message)
            case CatalogChanged(catalog=catalog):
                self._on_catalog(catalog)
            case (
                ServerCrashed()
                | NotificationsDropped()
                | ServerLogMessage()
                | ResourceUpdated()
                | PinnedToolsChanged()
            ):
                if message.server in self._servers:  # (else a server removed by a reload: its last words)
                    tell(self._listener, message)
            case _:
                assert_never(message)

    def _on_status(self, message: ServerStateChanged) -> None:
        server = message.status.server
        if server not in self._servers:
            return  # a server removed by a reload, still telling its last words
        if message.status.seq < self._floors[server]:
            return  # a replaced server's last status
        if message.status.seq >= self._statuses[server].seq:  # (a stop's answer may be newer already)
            self._statuses[server] = message.status
        tell(self._listener, message)  # (all of them, in order: the router sees each step)

    def _on_catalog(self, catalog: ServerCatalog) -> None:
        known = self._tools.known(catalog.server)
        if catalog.server not in self._servers:
            return  # a server removed by a reload, still telling its last words
        if known is not None and catalog.seq < known.seq:
            return  # older than what is known (a replaced server's last catalog)
        tell(self._listener, CatalogChanged(self._tools.within(catalog, self.config.quotas)))

    def _on_instance_catalog(self, catalog: ServerCatalog) -> None:
        """A session instance discovered its server's offer."""
        known = self._tools.known(catalog.server)
        if catalog.server not in self._servers or catalog.empty:
            return  # a removed server; or an instance that stopped (its server keeps its listing)
        if known is not None and (known.same_offer(catalog) or catalog.seq < known.seq):
            return
        # The server had no catalog (no cache yet), or a session's discovery found a new offer:
        # list it as the server's (it is also in the cache file now).
        listed = self._tools.within(replace(catalog, cached=True), self.config.quotas)
        tell(self._listener, CatalogChanged(listed))

    # ------------------------------------------------------------------ asks

    def lease(self) -> TenantLease:
        """The gate and endpoints the router needs to route calls of this tenant."""
        endpoints = {
            name: proxy.get_endpoint().get(timeout=timeouts.ASK) for name, proxy in self._servers.items()
        }
        return lease_of(self.config, self._gate, endpoints)

    def listed(self, server: str) -> ServerCatalog | None:
        """The server's catalog as the router should list it (within `max_tools`), if any."""
        return self._tools.listed(server)

    def _proxy(self, server: str) -> ServerActorProxy:
        if server not in self._servers:
            raise NotFound(f"no server '{server}' in tenant '{self.config.name}'")
        return self._servers[server]

    def set_log_level(self, server: str, level: str | None) -> list[concurrent.futures.Future[None]]:
        """Remember `level` for `server` and its instances (later ones too): futures of each applying it."""
        proxies = [self._proxy(server), *self._instances.of(server)]
        self._log_levels[server] = level
        return [future.get(timeout=timeouts.ASK) for future in [p.set_log_level(level) for p in proxies]]

    def start_server(self, server: str) -> ServerStatus:
        """Start one server (enabled or not: an explicit start is the operator's choice).

        Raises:
            NotFound: no such server.
            QuotaExceeded: `max_servers` servers already run.
        """
        proxy = self._proxy(server)
        status = self._statuses[server]
        if status.state in ACTIVE and not self.config.servers[server].on_demand:
            return status  # (an on_demand server may be stopping for idleness: ask it)
        self._check_max_servers(server)
        status = proxy.start_server().get(timeout=self._stop_timeout)
        if status.seq >= self._statuses[server].seq:
            self._statuses[server] = status
        return status

    def _check_max_servers(self, server: str) -> None:
        limit = self.config.quotas.max_servers
        active = sum(1 for name, s in self._statuses.items() if s.state in ACTIVE and name != server)
        if limit is not None and active >= limit:
            raise QuotaExceeded(
                f"tenant '{self.config.name}' already runs {active} servers (max_servers {limit})",
                retry_after=60.0,
            )

    def wake_server(self, server: str) -> ServerStatus:
        """Start an on_demand server for a call that found it stopped (idempotent).

        The server is asked even when its last known state is active: the caller saw it stopped,
        and the server knows best (it may be stopping for idleness, which the start waits out).
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

    def start_servers(self, elsewhere: Mapping[str, str] | None = None) -> dict[str, ServerStatus | str]:
        """Start every enabled server that is not on_demand nor `elsewhere` (name: why); per server,
        its status, or why not (`disabled`, `on_demand`, `per_session`, `quota_exceeded: ...`)."""
        outcome: dict[str, ServerStatus | str] = {}
        for name, config in self.config.servers.items():
            left = self._left_stopped(name, config) or (elsewhere or {}).get(name)
            outcome[name] = left if left is not None else self._try_start(name)
        return outcome

    def _left_stopped(self, name: str, config: ServerConfig) -> str | None:
        """Why `start_servers` leaves server `name` stopped (None: it starts it)."""
        if not config.enabled:
            return "disabled"
        if config.per_session or config.per_user:
            # No catalog yet (no cache): run the shared instance once to discover it; it stops
            # when idle like any on_demand server. Sessions then start their own instances.
            kind = "per_user" if config.per_user else "per_session"
            return kind if self.listed(name) is not None else None
        return "on_demand" if config.on_demand else None

    def _try_start(self, name: str) -> ServerStatus | str:
        try:
            return self.start_server(name)
        except QuotaExceeded as exc:
            return f"quota_exceeded: {exc.message}"

    def stop_server(self, server: str) -> ServerStatus:
        """Stop one server (and its session instances) and wait until its processes are gone."""
        self._instances.stop(lambda name, session: name == server, self._stop_timeout)
        status = self._proxy(server).stop_server().get(timeout=self._stop_timeout)
        self._statuses[server] = status
        return status

    def restart_server(self, server: str) -> ServerStatus:
        """Stop then start one server (a new process)."""
        self.stop_server(server)
        return self.start_server(server)

    def stop_servers(self) -> dict[str, str]:
        """Stop every server and session instance at once (in parallel) and wait for all;
        per-server final state."""
        self._instances.stop(lambda server, session: True, self._stop_timeout)
        futures = {name: proxy.stop_server() for name, proxy in self._servers.items()}
        outcome = {}
        for name, future in futures.items():
            try:
                status = future.get(timeout=self._stop_timeout)
                self._statuses[name] = status
                outcome[name] = status.state.value
            except Exception as exc:  # isolation: one stuck server must not stop the others' report
                log.exception("stopping %s/%s failed", self.config.name, name)
                outcome[name] = f"error: {exc}"
        return outcome

    def status(self, server: str) -> ServerStatus:
        """One server's latest status."""
        return self._proxy(server).status().get(timeout=timeouts.ASK)

    def info(self) -> TenantInfo:
        """The tenant with its quotas, usage and servers."""
        statuses = tuple(self._statuses[name] for name in self.config.servers)
        instances = {
            name: self._instances.count(name)
            for name, config in self.config.servers.items()
            if config.per_session or config.per_user
        }
        cgroups = self._sandbox_site.cgroups if self._sandbox_site is not None else None
        return TenantInfo(
            self.config.name,
            self.config.description,
            self.config.quotas,
            statuses,
            self._tools.tools,
            self._tools.hidden,
            self._gate.in_flight,
            self._gate.calls_last_minute(),
            MappingProxyType(instances),
            MappingProxyType(cgroups.usage(self.config.name) if cgroups is not None else {}),
        )

    # ------------------------------------------------------------------ session instances

    def session_instance(
        self, server: str, session: str, user_env: SecretMap | None = None
    ) -> tuple[ServerEndpoint, ServerStatus]:
        """The instance of per_session `server` for `session` (of a per_user one: for the user
        `session` names, with their `user_env`): started if new, woken if it is stopping for
        idleness. Returns at once; the caller waits for `running` on the events.

        Raises:
            NotFound: no such server.
            NotRunning: it is not an enabled per_session (or per_user) server, or the session ended.
            QuotaExceeded: `max_sessions_per_server` instances of it already run.
        """
        self._proxy(server)
        config = self.config.servers[server]
        if not ((config.per_session or config.per_user) and config.enabled):
            raise NotRunning(f"server '{server}' of tenant '{self.config.name}' is not a per_session server")
        proxy = self._instances.instance(
            config,
            session,
            self.config.quotas.max_sessions_per_server,
            lambda: start_server_actor(self._spec(server, session, user_env), self.actor_ref, self._registry),
        )
        endpoint = proxy.get_endpoint().get(timeout=timeouts.ASK)
        status = proxy.start_server().get(timeout=self._stop_timeout)
        self._instances.started((server, session), status)
        return endpoint, status

    def repin(self, server: str) -> None:
        """The server's pinned tools changed (an admin approved or rejected them): it and its
        session instances screen their last catalogs again (`hub.pins`); returns once they have."""
        proxies = [self._proxy(server), *self._instances.of(server)]
        endpoints = [proxy.get_endpoint().get(timeout=timeouts.ASK) for proxy in proxies]
        for future in [endpoint.rescreen() for endpoint in endpoints]:
            future.result(timeout=timeouts.ASK)

    def end_session(self, session: str, server: str | None = None) -> int:
        """Stop every instance of `session` (its client went away; only `server`'s if given: a user
        changed its values) and wait until their processes are gone; how many there were. A session
        that ended (no `server`) gets no instance from now on."""
        if server is None:
            self._instances.ended(session)
        return self._instances.stop(
            lambda name, owner: owner == session and server in (None, name), self._stop_timeout
        )

    def instances(self) -> tuple[ServerStatus, ...]:
        """The latest status of every session instance, in configuration order of their servers."""
        return self._instances.statuses(self.config.servers)


class TenantActorProxy(ActorMemberMixin, pykka.ActorProxy[TenantActor]):
    """A `TenantActor`'s proxy as the router hands it out: each ask's future typed with its result."""

    reconfigure = proxy_method(TenantActor.reconfigure)
    lease = proxy_method(TenantActor.lease)
    listed = proxy_method(TenantActor.listed)
    start_server = proxy_method(TenantActor.start_server)
    wake_server = proxy_method(TenantActor.wake_server)
    start_servers = proxy_method(TenantActor.start_servers)
    stop_server = proxy_method(TenantActor.stop_server)
    restart_server = proxy_method(TenantActor.restart_server)
    stop_servers = proxy_method(TenantActor.stop_servers)
    status = proxy_method(TenantActor.status)
    info = proxy_method(TenantActor.info)
    session_instance = proxy_method(TenantActor.session_instance)
    set_log_level = proxy_method(TenantActor.set_log_level)
    end_session = proxy_method(TenantActor.end_session)
    repin = proxy_method(TenantActor.repin)
    instances = proxy_method(TenantActor.instances)


def tenant_proxy(ref: pykka.ActorRef[TenantActor]) -> TenantActorProxy:
    """The typed proxy of a started `TenantActor`."""
    return cast(TenantActorProxy, ref.proxy())
