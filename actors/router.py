"""`RouterActor`: the catalog across tenants, and where a call of `(tenant, "server.tool")` goes.

The router never runs a call: it resolves a name to a `Route` (the server's endpoint and the
tenant's call gate), and the caller runs the call on the server's loop. Its catalog is kept up to
date by the events its tenants tell it; it relays every event to its subscribers.

Unknown names and names of other tenants are the same `NotFound`: a tenant cannot learn what
another tenant has.

A stopped on_demand server's catalog (from its cache) resolves like any other; its route says
`on_demand`, and the caller starts the server before the call (see `Hub`). A per_session server's
route says `per_session` too: a caller with a session calls its own instance instead, which it gets
from the tenant. Instance events (`InstanceStateChanged`), a server's log messages that belong to
no call (`ServerLogMessage`) and its resources' updates (`ResourceUpdated`) are relayed as they come.
"""

from __future__ import annotations

import concurrent.futures
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, assert_never, cast

import pykka
from pykka.typing import ActorMemberMixin, proxy_method

from actors.call_gate import CallGate
from actors.calls import pending_approval
from actors.describe import unlisted
from actors.models import (
    CatalogChanged,
    Event,
    InstanceStateChanged,
    NamedEntry,
    NotificationsDropped,
    PinnedToolsChanged,
    ResourceUpdated,
    ServerCatalog,
    ServerCrashed,
    ServerLogMessage,
    ServerState,
    ServerStateChanged,
    ServerStatus,
    ToolEntry,
)
from actors.reaper import ProcessRegistry
from actors.remote_servers import (
    RemoteServer,
    RemoteServerChanged,
    RemoteServers,
    RemoteStatusChanged,
    ReplicasChanged,
)
from actors.sandbox import SandboxSite
from actors.server import Listener, Requester, ServerEndpoint, tell
from actors.server_spec import NO_STORES, ServerStores
from actors.tenant import TenantActor, TenantActorProxy, TenantLease, tenant_proxy
from hub import timeouts
from hub.config import OrchestratorConfig, TenantConfig
from hub.errors import NotFound, NotRunning

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """Where one call goes: resolved by the router, run by the caller on the server's loop."""

    tenant: str
    entry: ToolEntry
    endpoint: ServerEndpoint
    gate: CallGate
    call_timeout: float
    on_demand: bool = False  # the caller starts the server if it is stopped
    per_session: bool = False  # a caller with a session calls its own instance (`Hub`)

    @property
    def server(self) -> str:
        """The server's name."""
        return self.entry.server

    @property
    def name(self) -> str:
        """The tool's own name on its server."""
        return self.entry.name

    def call_tool(
        self, arguments: dict[str, Any], requester: Requester | None = None
    ) -> concurrent.futures.Future[Any]:
        """Start the call on the server's loop (the caller holds the gate around it)."""
        return self.endpoint.call_tool(self.name, arguments, requester)


class RouterActor(pykka.ThreadingActor):
    """The root of the actor tree: owns the tenants, holds the catalog.

    Runs on its own actor thread. Asked by the hub runtime and the frontend; told events by the
    tenants; tells them on to `subscribers`.
    """

    def __init__(
        self,
        orchestrator: OrchestratorConfig,
        registry: ProcessRegistry | None,
        log_dir: Path,
        stores: ServerStores = NO_STORES,
        sandbox_site: SandboxSite | None = None,
        remote: RemoteServers | None = None,
    ) -> None:
        super().__init__()
        self._remote = remote  # a cluster's replica: the servers the others run (`actors.remote_servers`)
        self._orch = orchestrator
        self._registry = registry
        self._log_dir = log_dir
        self._stores = stores  # catalog caches and pinned tools, for every server
        self._sandbox_site = sandbox_site
        self._tenants: dict[str, TenantActorProxy] = {}
        self._leases: dict[str, TenantLease] = {}
        self._catalogs: dict[tuple[str, str], ServerCatalog] = {}
        self._statuses: dict[tuple[str, str], ServerStatus] = {}
        self._tools: dict[tuple[str, str], ToolEntry] = {}
        # Every tool a server has offered, so a call to a server that is down now says so (409).
        self._known: dict[tuple[str, str], str] = {}
        self._subscribers: list[Listener] = []
        self._handovers: dict[tuple[str, str], str] = {}  # servers this replica hands over, to whom

    def on_stop(self) -> None:
        for name in list(self._tenants):
            self.remove_tenant(name)

    # ------------------------------------------------------------------ tenants

    def add_tenant(self, config: TenantConfig) -> None:
        """Start a tenant actor (its servers stay stopped) and keep its lease."""
        ref = TenantActor.start(
            config,
            self._orch,
            self.actor_ref,
            self._registry,
            self._log_dir,
            self._stores,
            self._sandbox_site,
        )
        proxy = tenant_proxy(ref)
        self._tenants[config.name] = proxy
        # All asked at once, then awaited: the tenant answers them back to back.
        lease = proxy.lease()
        statuses = [(server, proxy.status(server)) for server in config.servers]
        listed = [proxy.listed(server) for server in config.servers]
        self._leases[config.name] = lease.get(timeout=timeouts.ASK)
        for server, status in statuses:
            self._statuses[(config.name, server)] = status.get(timeout=timeouts.ASK)
        for future in listed:  # on_demand servers' cached catalogs: listed from the start
            catalog = future.get(timeout=timeouts.ASK)
            if catalog is not None:
                self._install(catalog)
                self._relay(CatalogChanged(catalog))

    def remove_tenant(self, name: str) -> None:
        """Stop a tenant, its servers and their processes; forget its catalog."""
        proxy = self._tenants.pop(name, None)
        if proxy is None:
            return
        self._leases.pop(name, None)
        proxy.actor_ref.stop(timeout=timeouts.TENANT_ACTOR_STOP)
        for key in [k for k in self._catalogs if k[0] == name]:
            self._drop_catalog(key)
        for key in [k for k in self._statuses if k[0] == name]:
            del self._statuses[key]
        if self._remote is not None:
            self._remote.forget(name)

    def update_tenant(self, lease: TenantLease, servers: tuple[str, ...]) -> None:
        """A tenant was reconfigured: its new lease; forget servers it no longer has, and take the
        status of those it added or replaced (newer than anything their predecessors said)."""
        self._leases[lease.tenant] = lease
        for key in [k for k in self._statuses if k[0] == lease.tenant and k[1] not in servers]:
            del self._statuses[key]
            self._drop_catalog(key)
            if self._remote is not None:
                self._remote.forget(*key)
        tenant = self._tenants[lease.tenant]
        for server in servers:
            key = (lease.tenant, server)
            status = tenant.status(server).get(timeout=timeouts.ASK)
            known = self._statuses.get(key)
            if known is None or status.seq > known.seq:  # added or replaced: its own catalog, if any
                self._statuses[key] = status
                had = key in self._catalogs
                self._drop_catalog(key)
                catalog = tenant.listed(server).get(timeout=timeouts.ASK)
                if catalog is not None:
                    self._install(catalog)
                if had or catalog is not None:
                    self._relay(CatalogChanged(catalog or ServerCatalog(lease.tenant, server)))

    def tenant(self, name: str) -> TenantActorProxy:
        """The tenant's proxy, for lifecycle asks that may block (they must not block the router)."""
        if name not in self._tenants:
            raise NotFound(f"no tenant '{name}'")
        return self._tenants[name]

    def tenant_names(self) -> tuple[str, ...]:
        """Every tenant id, in configuration order."""
        return tuple(self._tenants)

    def subscribe(self, listener: Listener) -> None:
        """Tell `listener` every event from now on (it must be quick: it runs on the router thread)."""
        self._subscribers.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        """Stop telling `listener`."""
        if listener in self._subscribers:
            self._subscribers.remove(listener)

    # ------------------------------------------------------------------ events

    def on_receive(self, message: Event | RemoteServerChanged | ReplicasChanged) -> None:
        """Events told by tenants (on the router thread): update the catalog, relay to subscribers.
        In a cluster, what the other replicas run, told by the mirror (`hub.cluster_catalog`)."""
        if isinstance(message, RemoteServerChanged | ReplicasChanged):
            self._on_remote(message)
            return
        match message:
            case CatalogChanged(catalog=catalog):
                key = (catalog.tenant, catalog.server)
                known_catalog = self._catalogs.get(key)
                if key not in self._statuses or (
                    known_catalog is not None and catalog.seq < known_catalog.seq
                ):
                    return  # a tenant or server that is gone, or an older catalog
                self._install(catalog)
            case ServerStateChanged(status=status):
                known = self._statuses.get((status.tenant, status.server))
                if known is None or status.seq < known.seq:
                    return  # a tenant or server that is gone, or an older status
                self._statuses[(status.tenant, status.server)] = status
                if status.state is ServerState.STOPPED:
                    self._handovers.pop((status.tenant, status.server), None)
            case (
                ServerCrashed()
                | InstanceStateChanged()
                | NotificationsDropped()
                | PinnedToolsChanged()
                | ServerLogMessage()
                | ResourceUpdated()
            ):
                pass  # relayed as they come
            case _:
                assert_never(message)
        self._relay(message)

    def _on_remote(self, message: RemoteServerChanged | ReplicasChanged) -> None:
        """Record what another replica runs; relay the catalog of each server whose view changed,
        and its status as listed here when that changed."""
        remote = self._remote
        if remote is None:
            return
        if isinstance(message, ReplicasChanged):
            keys = {k for k in remote.members(message.members, dry=True) if k in self._statuses}
            before = {k: (self._catalog_of(k), self._listed(k)) for k in keys}
            remote.members(message.members)
        else:
            key = (message.tenant, message.server)
            if key not in self._statuses:
                return  # (a tenant or server this replica's configuration does not have)
            keys = {key}
            before = {key: (self._catalog_of(key), self._listed(key))}
            remote.update(message)
        for key in keys:
            catalog, status = self._catalog_of(key), self._listed(key)
            if catalog is None or catalog != before[key][0]:
                self._relay(CatalogChanged(catalog or ServerCatalog(*key), remote=True))
            if status != before[key][1]:
                self._relay(RemoteStatusChanged(status))

    def _listed(self, key: tuple[str, str]) -> ServerStatus:
        """`key`'s status as this replica lists it: the replica's that runs it, or its own."""
        chosen = self._chosen(key)
        return chosen.status if chosen is not None else self._own(self._statuses[key])

    def _chosen(self, key: tuple[str, str]) -> RemoteServer | None:
        """The other replica that speaks for `key`, if one does (`RemoteServers.chosen`)."""
        lease = self._leases.get(key[0])
        if self._remote is None or lease is None or key[1] not in lease.endpoints:
            return None
        local = self._statuses.get(key)
        if lease.on_demand[key[1]] or lease.per_session[key[1]]:  # (placed, started where they are called)
            if local is not None and local.state is not ServerState.STOPPED and not lease.per_session[key[1]]:
                return None  # (it runs here already: started before the replica placement gives it joined)
            return self._remote.placed(key, local, self._catalogs.get(key))
        return self._remote.chosen(key, local, True, self._handovers.get(key))

    def hand_over(self, tenant: str, server: str, replica: str | None) -> None:
        """Route `server`'s new calls to `replica` once it runs it, while this replica drains and
        stops its own (`hub.handover`); None: no longer (also once it stopped here)."""
        key = (tenant, server)
        if replica is None:
            self._handovers.pop(key, None)
        else:
            self._handovers[key] = replica
        if key in self._statuses:  # (routes cached on the web loops are dropped: they go there now)
            self._relay(CatalogChanged(self._catalog_of(key) or ServerCatalog(tenant, server), remote=True))

    def replica_for(self, tenant: str, server: str) -> str | None:
        """The replica a start, stop or restart of `server` asked of this one is for: another that
        runs it (as listed here), or that placement gives it while it runs nowhere; None: this one."""
        key = (tenant, server)
        if self._remote is None or key not in self._statuses:
            return None
        chosen = self._chosen(key)
        if chosen is not None:
            return chosen.replica
        if self._statuses[key].state is not ServerState.STOPPED:
            return None
        return self._remote.owner(key)

    def running_at(self, tenant: str, servers: dict[str, str]) -> frozenset[str]:
        """Of `servers` (name -> a replica), those that replica runs, as it publishes."""
        remote = self._remote
        if remote is None:
            return frozenset()
        return frozenset(name for name, replica in servers.items() if remote.runs((tenant, name), replica))

    def _catalog_of(self, key: tuple[str, str]) -> ServerCatalog | None:
        """The catalog listed for `key`: this replica's, or the one of the replica that runs it."""
        chosen = self._chosen(key)
        return chosen.catalog if chosen is not None else self._catalogs.get(key)

    def _install(self, catalog: ServerCatalog) -> None:
        key = (catalog.tenant, catalog.server)
        self._drop_catalog(key)
        self._catalogs[key] = catalog
        for tool in catalog.tools:
            self._tools[(catalog.tenant, tool.id)] = tool
            self._known[(catalog.tenant, tool.id)] = catalog.server

    def _relay(self, message: Any) -> None:
        for subscriber in list(self._subscribers):
            try:
                alive = tell(subscriber, message)
            except Exception:  # isolation: a broken subscriber must not take the router down
                log.exception("subscriber %r failed", subscriber)
                alive = True
            if not alive:
                self._subscribers.remove(subscriber)

    def _drop_catalog(self, key: tuple[str, str]) -> None:
        old = self._catalogs.pop(key, None)
        if old is not None:
            for tool in old.tools:
                self._tools.pop((old.tenant, tool.id), None)

    # ------------------------------------------------------------------ queries

    def resolve(self, tenant: str, tool_id: str) -> Route:
        """The route of catalog id `server.tool` for `tenant`.

        Raises:
            NotFound: no such tool in this tenant's catalog (whatever other tenants have).
        """
        entry = self._tools.get((tenant, tool_id))
        server = tool_id.partition(".")[0]
        if self._remote is not None:
            chosen = self._chosen((tenant, server))
            if chosen is not None and tool_id in chosen.tools:
                return self._forwarded(tenant, chosen, chosen.tools[tool_id])
        if entry is None:
            listed = self._catalogs.get((tenant, server))
            if listed is not None and tool_id.partition(".")[2] in listed.held:  # (`hub.pins`)
                raise pending_approval(server, tool_id.partition(".")[2])
            self._require_running(tenant, self._known.get((tenant, tool_id)))
            raise NotFound(f"no tool '{tool_id}' in tenant '{tenant}'{self._no_catalog(tenant, tool_id)}")
        lease = self._leases[tenant]
        return Route(
            tenant,
            entry,
            lease.endpoints[entry.server],
            lease.gate,
            lease.call_timeouts[entry.server],
            lease.on_demand[entry.server],
            lease.per_session[entry.server],
        )

    def _forwarded(self, tenant: str, chosen: RemoteServer, entry: ToolEntry) -> Route:
        """The route of a tool another replica runs: its calls go there (`hub.cluster_link`)."""
        assert self._remote is not None
        lease = self._leases[tenant]
        endpoint = self._remote.endpoint(chosen.replica, tenant, entry.server)
        per_session = lease.per_session[entry.server]  # (its replica runs the caller's session's instance)
        return Route(
            tenant, entry, endpoint, lease.gate, lease.call_timeouts[entry.server], False, per_session
        )

    def server_route(
        self, tenant: str, server: str, running: bool = True
    ) -> tuple[ServerEndpoint, CallGate, float, bool, bool]:
        """A server's endpoint, its tenant's gate, its call timeout, whether it starts on demand,
        and whether it runs per session (for resources and prompts).

        `running` False: the route of a stopped server too (for what its loop takes stopped).

        Raises:
            NotFound: no such server in the tenant.
            NotRunning: it is not running, and not an on_demand server (unless not `running`).
        """
        lease = self._leases.get(tenant)
        if lease is None or server not in lease.endpoints:
            raise NotFound(f"no server '{server}' in tenant '{tenant}'")
        on_demand = lease.on_demand[server]
        chosen = self._chosen((tenant, server))
        if chosen is not None and self._remote is not None:
            endpoint = self._remote.endpoint(chosen.replica, tenant, server)
            return (endpoint, lease.gate, lease.call_timeouts[server], False, lease.per_session[server])
        if running and not on_demand:
            self._require_running(tenant, server)
        return (
            lease.endpoints[server],
            lease.gate,
            lease.call_timeouts[server],
            on_demand,
            lease.per_session[server],
        )

    def _no_catalog(self, tenant: str, tool_id: str) -> str:
        """Why an unknown tool may exist after all (`actors.describe.unlisted`); nothing of another
        tenant is ever looked at."""
        server = tool_id.partition(".")[0]
        status, lease = self._statuses.get((tenant, server)), self._leases.get(tenant)
        if status is None or lease is None or (tenant, server) in self._catalogs:
            return ""
        return unlisted(status, bool(lease.on_demand.get(server)))

    def _require_running(self, tenant: str, server: str | None) -> None:
        status = self._statuses.get((tenant, server)) if server else None
        if status is not None and status.state is not ServerState.RUNNING:
            raise NotRunning(f"server '{server}' of tenant '{tenant}' is {status.state.value}")

    def tools(self, tenant: str | None = None) -> tuple[ToolEntry, ...]:
        """The tool catalog of one tenant, or of all (in configuration order)."""
        return tuple(t for c in self._ordered(tenant) for t in c.tools)

    def catalogs(self, tenant: str | None = None) -> tuple[ServerCatalog, ...]:
        """Whole server catalogs (tools, resources, templates, prompts)."""
        return tuple(self._ordered(tenant))

    def prompts(self, tenant: str) -> tuple[NamedEntry, ...]:
        """Prompts of one tenant."""
        return tuple(p for c in self._ordered(tenant) for p in c.prompts)

    def statuses(self, tenant: str | None = None) -> tuple[ServerStatus, ...]:
        """Server statuses of one tenant, or of all (in a cluster, as the replica that runs each says)."""
        return tuple(self._listed(key) for key in self._statuses if tenant is None or key[0] == tenant)

    def _own(self, status: ServerStatus) -> ServerStatus:
        """`status` of a server of this replica, which says so in a cluster (unless stopped)."""
        if self._remote is None or status.state is ServerState.STOPPED:
            return status
        return replace(status, replica=self._remote.replica_id)

    def _ordered(self, tenant: str | None) -> list[ServerCatalog]:
        if tenant is not None and tenant not in self._tenants:
            raise NotFound(f"no tenant '{tenant}'")
        # In configuration order (statuses are created in that order), whatever order servers started in.
        if self._remote is None:
            return [
                self._catalogs[k]
                for k in self._statuses
                if k in self._catalogs and (tenant is None or k[0] == tenant)
            ]
        listed = (self._catalog_of(k) for k in self._statuses if tenant is None or k[0] == tenant)
        return [c for c in listed if c is not None]


class RouterActorProxy(ActorMemberMixin, pykka.ActorProxy[RouterActor]):
    """The `RouterActor`'s proxy as the hub holds it: each ask's future typed with its result."""

    add_tenant = proxy_method(RouterActor.add_tenant)
    remove_tenant = proxy_method(RouterActor.remove_tenant)
    update_tenant = proxy_method(RouterActor.update_tenant)
    tenant = proxy_method(RouterActor.tenant)
    tenant_names = proxy_method(RouterActor.tenant_names)
    subscribe = proxy_method(RouterActor.subscribe)
    unsubscribe = proxy_method(RouterActor.unsubscribe)
    resolve = proxy_method(RouterActor.resolve)
    server_route = proxy_method(RouterActor.server_route)
    tools = proxy_method(RouterActor.tools)
    catalogs = proxy_method(RouterActor.catalogs)
    prompts = proxy_method(RouterActor.prompts)
    statuses = proxy_method(RouterActor.statuses)
    hand_over = proxy_method(RouterActor.hand_over)
    running_at = proxy_method(RouterActor.running_at)
    replica_for = proxy_method(RouterActor.replica_for)


def router_proxy(ref: pykka.ActorRef[RouterActor]) -> RouterActorProxy:
    """The typed proxy of a started `RouterActor`."""
    return cast(RouterActorProxy, ref.proxy())
