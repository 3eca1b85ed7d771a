"""The hub runtime: start and stop the actor tree as one flat script, and the Python API.

```python
from hub.config import load_config
from hub.runtime import Hub

with Hub(load_config("config/hub.yaml")) as hub:
    hub.start_tenant("default")                                 # and wait until its servers run
    print([t.id for t in hub.tools("default")])                 # ['sqlite-demo.query', ...]
    result = hub.call_tool("default", "sqlite-demo.query", {"sql": "SELECT * FROM users LIMIT 10"})
    print(result.structured_content["rows"])
```

Every method is called from the user's thread (any thread but an asyncio loop's: on a loop, await
`call_tool_async`); they ask the actors with timeouts.

The concerns live in modules named after them, and `Hub` hands work to one object per concern:
`hub.events` (the `EventBoard` that threads wait on), `hub.routes` (the route cache),
`hub.calls` (the call path: validation, quotas, metrics, audit), `hub.wakes` (on_demand servers
started for a call and waited for) and `hub.instances` (per_session servers: each session's own
instance, stopped by `end_session` when its client goes away); `hub.reload` applies a new
configuration. The call path is async; the blocking `call_tool`, `read_resource` and `get_prompt`
run it on the caller's thread, on a loop borrowed from the hub (`hub.loops`, opened and closed
with the hub).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pykka

from actors.limits import CgroupTree, limit_support
from actors.models import ServerCatalog, ServerState, ServerStatus, ToolEntry, ToolResult
from actors.reaper import ProcessRegistry
from actors.router import Route, RouterActor, RouterActorProxy, router_proxy
from actors.sandbox import SandboxSite, host_support
from actors.server import Requester
from actors.server_spec import ServerStores
from actors.tenant import TenantActor, TenantActorProxy, TenantInfo
from hub import offers, reload, timeouts
from hub.audit import AuditLog
from hub.calls import CallPath, InFlight
from hub.cluster import node_of
from hub.config import HubConfig, load_config
from hub.credentials import CredentialStore
from hub.errors import ShuttingDown
from hub.events import EventBoard, WakeKey
from hub.instances import SessionInstances
from hub.log import log_tail
from hub.loops import HubLoops
from hub.metrics import HubMetrics
from hub.permissions import Permits
from hub.pins import PinStore
from hub.rebalance import Rebalancer
from hub.replica import replica_parts
from hub.routes import RouteCache
from hub.upstream import UpstreamRequests
from hub.user_servers import UserServers
from hub.wakes import Wakes

__all__ = ["EventBoard", "Hub", "WakeKey"]

log = logging.getLogger(__name__)

_SETTLED = (ServerState.RUNNING, ServerState.FAILED, ServerState.STOPPED)


class Hub:
    """MCP Hub in-process: the actor tree plus a blocking Python API.

    Args:
        config: a validated configuration.
        data_dir: where server logs go; `config.orchestrator.data_dir` by default.

    Attributes:
        board: the router's events and the latest statuses (`hub.events`).
        routes: the route cache (`hub.routes`).
        calls: the call path that `call_tool` and friends delegate to (`hub.calls`).
        wakes: starts of on_demand servers that calls wait for (`hub.wakes`).
        sessions: the session instances of per_session servers (`hub.instances`).
        users: per_user servers' instances and their users' values (`hub.user_servers`).
        upstream: completions, log levels and resource subscriptions of servers (`hub.upstream`).
        in_flight: the requests in flight, which `stop` lets finish.
        loops: the asyncio loops the blocking calls run the call path on (`hub.loops`).
    """

    def __init__(self, config: HubConfig, data_dir: str | Path | None = None) -> None:
        self.config = config
        self.data_dir = Path(data_dir or config.orchestrator.data_dir)
        self.board = EventBoard()
        self._registry: ProcessRegistry | None = None
        self._cgroups: CgroupTree | None = None  # the servers' cgroups (`actors.limits`), from start
        self._router: RouterActorProxy | None = None
        self.started_at: float | None = None
        self._reload_lock = threading.Lock()
        self.metrics = HubMetrics()
        self.audit = AuditLog(config.audit)
        self.pins = PinStore(self.data_dir / "pins")  # servers' pinned tools (`hub.pins`; `hub.pinning`)
        # Routes resolved by the router, reused until the catalog changes (saves two thread hops per call).
        self.routes = RouteCache()
        self.in_flight = InFlight()
        self.loops = HubLoops()
        self.cluster = node_of(config.cluster)  # None: the hub runs alone (docs/cluster.md)
        self.rebalancer = Rebalancer(self.cluster, self._tenant, lambda: self.config, lambda: self.router)
        self.replica = replica_parts(self.cluster, self)
        # The lambdas look `_tenant` and `config` up at each use: a reload replaces the configuration.
        self.wakes = Wakes(
            self.board,
            self.metrics,
            tenant=lambda name: self._tenant(name),
            start_instance=lambda key: self.sessions.start(key),
            startup_timeout=lambda: self.config.orchestrator.startup_timeout,
            ask_timeout=timeouts.ASK,
        )
        self.sessions = SessionInstances(
            self.board, self.wakes, lambda name: self._tenant(name), timeouts.ASK
        )
        store = CredentialStore.of(self.data_dir)  # (per_user servers' values: `hub.credentials`)
        self.users = UserServers(lambda: self.config, store, lambda name: self._tenant(name))
        self.sessions.user_env = self.users.env_for
        self.calls = CallPath(
            lambda: self.router,
            self.routes,
            self.wakes,
            self.sessions,
            self.metrics,
            lambda: self.audit,
            self.in_flight,
            timeouts.ASK,
            self.loops,
            self.replica,
            self.users,
        )
        self.upstream = UpstreamRequests(self.calls, lambda: self.router, timeouts.ASK)
        self.board.add_listener(self.routes.on_event)
        self.board.add_listener(self.metrics.on_event)
        self.board.add_listener(self.sessions.on_event)  # before the wakes: a gone instance is not called
        self.board.add_listener(self.wakes.on_event)
        if self.replica is not None:
            self.board.add_listener(self.replica.publisher.on_event)
            self.metrics.quota_state = self.replica.quotas.state

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Hub:
        """Start the watchdog, the router and every tenant; start servers if `auto_start`."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.cluster is not None:
            self.cluster.join()  # (first: a replica that cannot reach Redis starts nothing)
        self.loops.start()
        self._registry = ProcessRegistry()
        sandbox = host_support()  # probed once per process, before any server needs it
        if sandbox.available:
            log.info("stdio servers can be sandboxed: %s", sandbox.detail)
        else:
            log.warning("stdio servers cannot be sandboxed on this host: %s", sandbox.detail)
        self._cgroups = CgroupTree.create()  # (None where the host gives the hub no cgroups)
        log.info("resource limits: %s", limit_support().detail)
        for path in limit_support().unenforced(self.config):
            log.warning("resource limits: %s is not enforced on this host", path)
        remote = self.replica.remote if self.replica is not None else None  # (a cluster's replica)
        orch, stores = self.config.orchestrator, ServerStores(self.cache_dir, self.pins)
        ref = RouterActor.start(orch, self._registry, self.log_dir, stores, self.sandbox_site, remote)
        self._router = router_proxy(ref)
        self._router.subscribe(self.board).get(timeout=timeouts.ASK)
        for tenant in self.config.tenants.values():
            self._router.add_tenant(tenant).get(timeout=timeouts.ASK)
        for status in self.servers():
            self.metrics.count_on_demand(status)  # never-used ones have told no event yet
        self.started_at = time.time()
        if self.replica is not None:
            self.replica.start()
        self.rebalancer.start()  # (watches the live set: a cluster's replica only)
        if self.config.orchestrator.auto_start:
            for name in self.config.tenants:
                self.start_tenant(name, wait=False)
        return self

    def stop(self) -> None:
        """Refuse new calls, let calls in flight finish (up to `shutdown_grace`), then stop every
        server (calls still in flight get an error), every actor, and the watchdog."""
        self.rebalancer.stop()  # (first: no server moves while the tree comes down)
        grace = self.config.orchestrator.shutdown_grace
        still = self.in_flight.drain(grace)
        if still:
            log.warning("stopping with %d calls still in flight after %g s", still, grace)
        try:
            if self._router is not None:
                self._router.actor_ref.stop(timeout=timeouts.LIFECYCLE)
        finally:
            self.wakes.abandon(ShuttingDown("the hub is shutting down"))
            self.loops.stop()
            if self._registry is not None:
                self._registry.close()
            if self._cgroups is not None:
                self._cgroups.remove()
            self.audit.close()
            if self.replica is not None:
                self.replica.stop()
            if self.cluster is not None:
                self.cluster.leave()
            leftover = [
                a
                for a in pykka.ActorRegistry.get_all()
                if isinstance(a, RouterActor | TenantActor) or "ServerActor" in type(a).__name__
            ]
            if leftover:
                log.error("actors still alive after stop: %s", leftover)

    def reload(self, config: HubConfig) -> dict[str, Any]:
        """Apply a new, already valid configuration without a restart.

        Tenants added are started (their servers if `auto_start`), removed ones stopped; in the
        others, servers added are started if their tenant's servers run or `auto_start`, removed
        ones stopped, changed ones replaced, unchanged ones keep their process and calls in
        flight. Keys, quotas and the audit settings apply at once; `gateway` changes (host, ports)
        need a restart and are reported.

        Returns:
            `{"tenants": {t: added|removed|updated|unchanged}, "restart_needed": [...],
            "servers": {t: {s: added|removed|restarted|changed|unchanged}}}`; a tenant is
            `unchanged` when its configuration (description, keys, env, quotas, servers) is equal.
        """
        with self._reload_lock:
            return reload.apply(self, config, timeouts.ASK)

    def reload_file(self) -> dict[str, Any]:
        """Read the configuration file again (`config.source`) and apply it with `reload`.

        Raises:
            ConfigError: the file is invalid; nothing changed.
        """
        return self.reload(load_config(self.config.source))

    def __enter__(self) -> Hub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def log_dir(self) -> Path:
        """Where each server's stderr log lives: `<data_dir>/logs/<tenant>/<server>.log`."""
        return self.data_dir / "logs"

    @property
    def sandbox_site(self) -> SandboxSite:
        """What every server's sandbox hides (the data directories, the configuration file, the
        audit log, the hub's home), and where tenant homes live: `<data_dir>/homes/<tenant>`."""
        config = self.config
        return SandboxSite.of_hub(
            [self.data_dir, config.orchestrator.data_dir], [config.source, config.audit.file], self._cgroups
        )

    @property
    def cache_dir(self) -> Path:
        """Where servers' catalogs are cached: `<data_dir>/catalogs/<tenant>/<server>.json`."""
        return self.data_dir / "catalogs"

    @property
    def router(self) -> RouterActorProxy:
        """The router's proxy (raises `ShuttingDown` once the hub stops)."""
        if self._router is None or self.in_flight.stopping:
            raise ShuttingDown("the hub is shutting down")
        return self._router

    @property
    def _stopping(self) -> bool:
        """Whether the hub stops (new calls are refused); any thread."""
        return self.in_flight.stopping

    def _tenant(self, name: str) -> TenantActorProxy:
        return self.router.tenant(name).get(timeout=timeouts.ASK)

    # ------------------------------------------------------------------ servers

    def start_tenant(self, tenant: str, wait: bool = True, timeout: float | None = None) -> dict[str, str]:
        """Start every enabled server of `tenant`; with `wait`, until each runs or has failed.

        Returns:
            Per server, its state (or why it did not start).
        """
        outcome = self.rebalancer.start_tenant(tenant)  # (a replica's share only: `hub.rebalance`)
        started = {name: s for name, s in outcome.items() if isinstance(s, ServerStatus)}
        if wait:
            self.wait_settled(started.values(), timeout)
        return {name: (self._state(s) if isinstance(s, ServerStatus) else s) for name, s in outcome.items()}

    def stop_tenant(self, tenant: str) -> dict[str, str]:
        """Stop every server of `tenant`; per server, its final state."""
        return self.rebalancer.stop_tenant(tenant)

    def start_server(
        self, tenant: str, server: str, wait: bool = True, timeout: float | None = None
    ) -> ServerStatus:
        """Start one server; with `wait`, until it runs or has failed."""
        status = self._tenant(tenant).start_server(server).get(timeout=timeouts.ASK)
        if wait:
            self.wait_settled([status], timeout)
        return self.server(tenant, server)

    def stop_server(self, tenant: str, server: str) -> ServerStatus:
        """Stop one server and wait until its process is gone."""
        return self._tenant(tenant).stop_server(server).get(timeout=timeouts.LIFECYCLE)

    def restart_server(
        self, tenant: str, server: str, wait: bool = True, timeout: float | None = None
    ) -> ServerStatus:
        """Stop then start one server (a new process)."""
        status = self._tenant(tenant).restart_server(server).get(timeout=timeouts.LIFECYCLE)
        if wait:
            self.wait_settled([status], timeout)
        return self.server(tenant, server)

    def server(self, tenant: str, server: str) -> ServerStatus:
        """One server's status."""
        return self._tenant(tenant).status(server).get(timeout=timeouts.ASK)

    def servers(self, tenant: str | None = None) -> tuple[ServerStatus, ...]:
        """Statuses of one tenant's servers, or of all."""
        return self.router.statuses(tenant).get(timeout=timeouts.ASK)

    def tenants(self) -> tuple[TenantInfo, ...]:
        """Every tenant with quotas, usage and servers."""
        names = self.router.tenant_names().get(timeout=timeouts.ASK)
        return tuple(self.tenant(n) for n in names)

    def tenant(self, tenant: str) -> TenantInfo:
        """One tenant with quotas, usage and servers."""
        return self._tenant(tenant).info().get(timeout=timeouts.ASK)

    def _state(self, since: ServerStatus) -> str:
        latest = self.board.status(since.tenant, since.server)
        return (latest if latest is not None and latest.seq >= since.seq else since).state.value

    def wait_settled(self, since: Iterable[ServerStatus], timeout: float | None = None) -> bool:
        """Wait until each server, from the given snapshots on, is running, failed or stopped.

        The default timeout covers every retry timing out plus every backoff.
        """
        orch = self.config.orchestrator
        if timeout is None:  # (past max_retries a server is `failed`: settled, though still retried)
            initial, cap = orch.backoff_initial, orch.backoff_max
            waits = sum(min(initial * 2.0 ** min(i, 60), cap) for i in range(orch.max_retries))
            timeout = (orch.max_retries + 1) * (orch.startup_timeout + 5) + waits + 5  # (+ stop graces)
        since = list(since)

        def settled() -> bool:
            for old in since:
                new = self.board.status(old.tenant, old.server)
                current = new if new is not None and new.seq >= old.seq else old
                if current.state not in _SETTLED or current.seq < old.seq:
                    return False
            return True

        return self.board.wait_for(settled, timeout)

    # ------------------------------------------------------------------ catalog and calls

    def tools(self, tenant: str | None = None) -> tuple[ToolEntry, ...]:
        """The tool catalog of one tenant, or of all tenants."""
        return self.router.tools(tenant).get(timeout=timeouts.ASK)

    def catalogs(self, tenant: str | None = None) -> tuple[ServerCatalog, ...]:
        """Full server catalogs (tools, resources, resource templates, prompts)."""
        return self.router.catalogs(tenant).get(timeout=timeouts.ASK)

    def resources(self, tenant: str) -> list[dict[str, Any]]:
        """Resources of a tenant's running servers, each with its `server`."""
        return [{**r.raw, "server": c.server} for c in self.catalogs(tenant) for r in c.resources]

    def resource_templates(self, tenant: str) -> list[dict[str, Any]]:
        """Resource templates of a tenant's running servers, each with its `server`."""
        return [{**r.raw, "server": c.server} for c in self.catalogs(tenant) for r in c.resource_templates]

    def read_resource(
        self,
        tenant: str,
        uri: str,
        server: str | None = None,
        session: str | None = None,
        caller: Permits | None = None,
        user: str | None = None,
    ) -> dict[str, Any]:
        """Read `uri` from `server`, else from the server that offers it (as a resource, else by a
        template); from `session`'s own instance of a per_session server (`user`'s of a per_user
        one); of the servers whose resources `caller` may read (`hub.permissions`: another is as
        unknown as none). Raises what `hub.upstream.resource_owner` raises."""
        catalogs = self.catalogs(tenant)
        return offers.read_resource(self.calls, tenant, catalogs, uri, server, session, caller, user)

    def prompts(self, tenant: str) -> list[dict[str, Any]]:
        """Prompts of a tenant's running servers, each with its catalog id as `name`."""
        return [{**p.raw, "name": p.id, "server": p.server} for c in self.catalogs(tenant) for p in c.prompts]

    def get_prompt(
        self,
        tenant: str,
        prompt_id: str,
        arguments: Mapping[str, str],
        session: str | None = None,
        caller: Permits | None = None,
        user: str | None = None,
    ) -> dict[str, Any]:
        """Get prompt `server.name` of `tenant` with `arguments` (from `session`'s own instance of a
        per_session server), if `caller` may (else it is as unknown as none: `hub.permissions`)."""
        catalogs = self.catalogs(tenant)
        return offers.get_prompt(self.calls, tenant, catalogs, prompt_id, arguments, session, caller, user)

    def server_log(self, tenant: str, server: str, tail: int = 100) -> list[str]:
        """The last `tail` lines of a server's stderr log (its rotated file included if needed),
        with the values of the tenant's and the server's `env` shown as `********`."""
        self.server(tenant, server)  # NotFound for an unknown server or tenant
        config = self.config.tenants[tenant]
        path = self.log_dir / tenant / f"{server}.log"
        return log_tail(
            path, tail, self.config.orchestrator.log_max_bytes, config.env, config.servers[server].env
        )

    def route(self, tenant: str, tool_id: str) -> Route:
        """The route of `tool_id` in `tenant` (cached until the catalog changes).

        Raises:
            NotFound: no such tool in the tenant's catalog.
        """
        return self.calls.prepare(tenant, tool_id).route

    def cached_route(self, tenant: str, tool_id: str) -> Route | None:
        """The cached route, if any, without asking the router (safe on an event loop)."""
        prepared = self.routes.get(tenant, tool_id)
        return prepared.route if prepared else None

    def call_tool(
        self,
        tenant: str,
        tool_id: str,
        arguments: Mapping[str, Any] | None = None,
        key: str | None = None,
        session: str | None = None,
    ) -> ToolResult:
        """Call catalog tool `server.tool` of `tenant` and wait for its result (any thread but a loop's).

        `session`: the client session the call belongs to; a per_session server's tool then runs
        on that session's own instance (started by its first call). Without it, the server's
        shared instance answers.

        Raises:
            NotFound: no such tool in the tenant's catalog.
            BadRequest: the arguments do not satisfy the tool's input schema (the message names the path).
            QuotaExceeded: a call quota of the tenant is exhausted (carries `retry_after`).
            NotRunning, UpstreamError, CallTimeout: as the server answered.
            ShuttingDown: the hub is stopping.
            RuntimeError: called on a thread that runs an asyncio loop (await `call_tool_async` there).
        """
        return self.calls.call_tool(tenant, tool_id, arguments, key, session)

    async def call_tool_async(
        self,
        tenant: str,
        tool_id: str,
        arguments: Mapping[str, Any] | None = None,
        requester: Requester | None = None,
        key: str | None = None,
        session: str | None = None,
        shown_as: str | None = None,
        user: str | None = None,
    ) -> ToolResult:
        """`call_tool` for code on an asyncio loop (the web frontend): never blocks the loop.

        `requester`, if given (the MCP facade's session), takes progress and log messages and
        answers the server's sampling and elicitation requests. Cancelling the awaiting task
        cancels the call on the server's loop (and the server gets `notifications/cancelled`).
        `shown_as`: the name the caller knows the tool by (the MCP facade's `<server>__<tool>`),
        used in error messages instead of the catalog id; the audit log keeps the catalog id.
        `user`: the caller's subject (a per_user server's tool runs on that user's instance).
        """
        return await self.calls.call_tool_async(
            tenant, tool_id, arguments, requester, key, session, shown_as, user=user
        )

    def end_session(self, session: str) -> int:
        """A client session ended (an MCP facade session closed, a WebSocket closed): stop its
        instances of per_session servers, in every tenant, and wait until their processes are gone.
        Calls waiting for one of its instances to start fail. Blocks: any thread but a loop's.

        Returns:
            How many instances were stopped.
        """
        return self.sessions.end(session)

    def instances(self, tenant: str | None = None) -> tuple[ServerStatus, ...]:
        """Session instances of per_session servers that run or start now (of `tenant`), as last
        told; never blocks."""
        return self.board.instances(tenant)
