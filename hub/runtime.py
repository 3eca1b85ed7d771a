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

Every method is called from the user's thread (any thread); they ask the actors with timeouts.

On demand servers: a call (tool, resource, prompt) that finds its on_demand server stopped asks
the tenant to start it and waits, on the caller's thread or loop, for the server's `running`
status on the `EventBoard`. Concurrent first calls share one start (one `concurrent.futures`
future per server); a start that fails answers them all with its reason.

Per-session servers: a call that comes with a session (`session=`: the MCP facade's session, a
WebSocket app connection, an `Mcp-Hub-Session` header) and whose route says `per_session` goes to
that session's own instance, which the tenant starts on the first such call (`session_instance`)
and which is waited for like an on_demand start, keyed by `(tenant, server, session)`.
`end_session` stops a session's instances when its client goes away. Calls without a session use
the server's own entry, the tenant's shared instance (an on_demand server).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import copy
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import jsonschema
import pykka
from mcp import InvalidUriTemplate, UriTemplate

from actors.limits import CgroupTree, limit_support
from actors.models import (
    CatalogChanged,
    Event,
    InstanceStateChanged,
    ServerCatalog,
    ServerState,
    ServerStateChanged,
    ServerStatus,
    ToolEntry,
    ToolResult,
)
from actors.reaper import ProcessRegistry
from actors.router import Route, RouterActor
from actors.sandbox import SandboxSite, host_support
from actors.server import Requester, ServerEndpoint
from actors.tenant import TenantActor, TenantInfo
from hub.audit import AuditLog
from hub.config import HubConfig, dotted_path, load_config, redact
from hub.errors import BadRequest, CallTimeout, HubError, NotFound, NotRunning, ShuttingDown, UpstreamError
from hub.metrics import HubMetrics

T = TypeVar("T")
log = logging.getLogger(__name__)

_ASK_TIMEOUT = 30.0
_SETTLED = (ServerState.RUNNING, ServerState.FAILED, ServerState.STOPPED)
_WAKE_MARGIN = 5.0  # beyond startup_timeout, for spawning and the events to arrive
_ENDED_SESSIONS = 10_000  # sessions remembered as ended (an instance asked for one is stopped at once)
_GONE = (ServerState.STOPPED, ServerState.FAILED)

WakeKey = tuple[str, str, str | None]  # (tenant, server, session): session None is the server itself


class EventBoard:
    """Collects the router's events and lets threads wait on them.

    `tell` runs on the router thread (it must stay quick); `wait_for` on any other thread.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._statuses: dict[tuple[str, str], ServerStatus] = {}
        self._instances: dict[WakeKey, ServerStatus] = {}  # live session instances
        self.events: list[Event] = []
        self._listeners: list[Callable[[Event], None]] = []

    def tell(self, event: Event) -> None:
        """Record one event and wake the waiters (router thread)."""
        with self._cond:
            if isinstance(event, ServerStateChanged):
                self._statuses[(event.status.tenant, event.status.server)] = event.status
            elif isinstance(event, InstanceStateChanged):
                key = event.status.instance_key
                known = self._instances.get(key)
                if event.status.state in _GONE:
                    self._instances.pop(key, None)
                elif known is None or event.status.seq >= known.seq:
                    self._instances[key] = event.status
            self.events.append(event)
            del self.events[:-1000]
            self._cond.notify_all()
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # isolation: a broken listener must not take the router down
                log.exception("event listener %r failed", listener)

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Call `listener(event)` for every event, on the router thread (it must be quick)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[Event], None]) -> None:
        """Stop calling `listener`."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def status(self, tenant: str, server: str) -> ServerStatus | None:
        """The latest status told for a server, if any."""
        with self._cond:
            return self._statuses.get((tenant, server))

    def instance_status(self, key: WakeKey) -> ServerStatus | None:
        """The latest status told for a live session instance, if any."""
        with self._cond:
            return self._instances.get(key)

    def instances(self, tenant: str | None = None) -> tuple[ServerStatus, ...]:
        """Every live session instance (of `tenant`), as last told."""
        with self._cond:
            return tuple(s for (t, _, _), s in self._instances.items() if tenant is None or t == tenant)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until `predicate()` holds (re-checked on every event); False on timeout."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)


class Hub:
    """MCP Hub in-process: the actor tree plus a blocking Python API.

    Args:
        config: a validated configuration.
        data_dir: where server logs go; `config.orchestrator.data_dir` by default.
    """

    def __init__(self, config: HubConfig, data_dir: str | Path | None = None) -> None:
        self.config = config
        self.data_dir = Path(data_dir or config.orchestrator.data_dir)
        self.board = EventBoard()
        self._registry: ProcessRegistry | None = None
        self._cgroups: CgroupTree | None = None  # the servers' cgroups (`actors.limits`), from start
        self._router: pykka.ActorProxy[RouterActor] | None = None
        self._stopping = False
        self.started_at: float | None = None
        # Routes resolved by the router, reused until the catalog changes (saves two thread hops
        # per call); `_generation` keeps a route resolved before a change from being cached after it.
        self._routes: dict[tuple[str, str], _Prepared] = {}
        self._generation = 0
        self._calls = threading.Condition()
        self._reload_lock = threading.Lock()
        self._calls_in_flight = 0
        self.metrics = HubMetrics()
        self.audit = AuditLog(config.audit)
        # Starts of on_demand servers and session instances that calls wait for.
        self._wakes: dict[WakeKey, _Waking] = {}
        self._wake_lock = threading.Lock()
        # Session instances: their endpoints (dropped when they stop), the tenants each session has
        # instances in, and sessions that ended (guarded by `_wake_lock`).
        self._endpoints: dict[WakeKey, ServerEndpoint] = {}
        self._session_tenants: dict[str, set[str]] = {}
        self._ended: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.board.add_listener(self._forget_routes)
        self.board.add_listener(self.metrics.on_event)
        self.board.add_listener(self._on_status)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Hub:
        """Start the watchdog, the router and every tenant; start servers if `auto_start`."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
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
        self._router = RouterActor.start(
            self.config.orchestrator, self._registry, self.log_dir, self.cache_dir, self.sandbox_site
        ).proxy()
        self._router.subscribe(self.board).get(timeout=_ASK_TIMEOUT)
        for tenant in self.config.tenants.values():
            self._router.add_tenant(tenant).get(timeout=_ASK_TIMEOUT)
        for status in self.servers():
            self.metrics.count_on_demand(status)  # never-used ones have told no event yet
        self.started_at = time.time()
        if self.config.orchestrator.auto_start:
            for name in self.config.tenants:
                self.start_tenant(name, wait=False)
        return self

    def stop(self) -> None:
        """Refuse new calls, let calls in flight finish (up to `shutdown_grace`), then stop every
        server (calls still in flight get an error), every actor, and the watchdog."""
        grace = self.config.orchestrator.shutdown_grace
        with self._calls:
            self._stopping = True
            if not self._calls.wait_for(lambda: self._calls_in_flight == 0, grace):
                log.warning("stopping with %d calls still in flight after %g s", self._calls_in_flight, grace)
        try:
            if self._router is not None:
                self._router.actor_ref.stop(timeout=120)
        finally:
            self._abandon_wakes(ShuttingDown("the hub is shutting down"))
            if self._registry is not None:
                self._registry.close()
            if self._cgroups is not None:
                self._cgroups.remove()
            self.audit.close()
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
            old = self.config
            router = self.router
            summary: dict[str, Any] = {"tenants": {}, "servers": {}, "restart_needed": []}
            for name in [t for t in old.tenants if t not in config.tenants]:
                router.remove_tenant(name).get(timeout=120)
                summary["tenants"][name] = "removed"
                self._abandon_wakes(NotFound(f"no tenant '{name}'"), tenant=name)
            for name, tenant in config.tenants.items():
                if name not in old.tenants:
                    router.add_tenant(tenant).get(timeout=_ASK_TIMEOUT)
                    summary["tenants"][name] = "added"
                    continue
                proxy = router.tenant(name).get(timeout=_ASK_TIMEOUT)
                lease, outcome = proxy.reconfigure(tenant, config.orchestrator).get(timeout=120)
                router.update_tenant(lease, tuple(tenant.servers)).get(timeout=_ASK_TIMEOUT)
                summary["tenants"][name] = "unchanged" if old.tenants[name] == tenant else "updated"
                summary["servers"][name] = outcome
                self._abandon_wakes(
                    NotRunning("the server was reconfigured while it was starting: try again"),
                    tenant=name,
                    servers={s for s, what in outcome.items() if what not in ("added", "unchanged")},
                )
            if old.gateway != config.gateway:
                summary["restart_needed"].append("gateway")
            if old.orchestrator != config.orchestrator:
                summary["restart_needed"].append("orchestrator (applies to servers started from now on)")
            self.config = config
            self._generation += 1
            self._routes.clear()
            if old.audit != config.audit:
                self.audit.close()
                self.audit = AuditLog(config.audit)
            for name in summary["tenants"]:
                if summary["tenants"][name] == "added" and config.orchestrator.auto_start:
                    self.start_tenant(name, wait=False)
            log.info("configuration reloaded: %s", summary)
            return summary

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
        """Where servers' catalogs are cached (an on_demand one lists its own while it is stopped):
        `<data_dir>/catalogs/<tenant>/<server>.json`."""
        return self.data_dir / "catalogs"

    @property
    def router(self) -> pykka.ActorProxy[RouterActor]:
        """The router's proxy (raises `ShuttingDown` once the hub stops)."""
        if self._router is None or self._stopping:
            raise ShuttingDown("the hub is shutting down")
        return self._router

    def _tenant(self, name: str) -> pykka.ActorProxy[TenantActor]:
        return self.router.tenant(name).get(timeout=_ASK_TIMEOUT)

    # ------------------------------------------------------------------ servers

    def start_tenant(self, tenant: str, wait: bool = True, timeout: float | None = None) -> dict[str, str]:
        """Start every enabled server of `tenant`; with `wait`, until each runs or has failed.

        Returns:
            Per server, its state (or why it did not start).
        """
        outcome = self._tenant(tenant).start_servers().get(timeout=_ASK_TIMEOUT)
        started = {name: s for name, s in outcome.items() if isinstance(s, ServerStatus)}
        if wait:
            self.wait_settled(started.values(), timeout)
        return {name: (self._state(s) if isinstance(s, ServerStatus) else s) for name, s in outcome.items()}

    def stop_tenant(self, tenant: str) -> dict[str, str]:
        """Stop every server of `tenant`; per server, its final state."""
        return self._tenant(tenant).stop_servers().get(timeout=120)

    def start_server(
        self, tenant: str, server: str, wait: bool = True, timeout: float | None = None
    ) -> ServerStatus:
        """Start one server; with `wait`, until it runs or has failed."""
        status = self._tenant(tenant).start_server(server).get(timeout=_ASK_TIMEOUT)
        if wait:
            self.wait_settled([status], timeout)
        return self.server(tenant, server)

    def stop_server(self, tenant: str, server: str) -> ServerStatus:
        """Stop one server and wait until its process is gone."""
        return self._tenant(tenant).stop_server(server).get(timeout=120)

    def restart_server(
        self, tenant: str, server: str, wait: bool = True, timeout: float | None = None
    ) -> ServerStatus:
        """Stop then start one server (a new process)."""
        status = self._tenant(tenant).restart_server(server).get(timeout=120)
        if wait:
            self.wait_settled([status], timeout)
        return self.server(tenant, server)

    def server(self, tenant: str, server: str) -> ServerStatus:
        """One server's status."""
        return self._tenant(tenant).status(server).get(timeout=_ASK_TIMEOUT)

    def servers(self, tenant: str | None = None) -> tuple[ServerStatus, ...]:
        """Statuses of one tenant's servers, or of all."""
        return self.router.statuses(tenant).get(timeout=_ASK_TIMEOUT)

    def tenants(self) -> tuple[TenantInfo, ...]:
        """Every tenant with quotas, usage and servers."""
        names = self.router.tenant_names().get(timeout=_ASK_TIMEOUT)
        return tuple(self.tenant(n) for n in names)

    def tenant(self, tenant: str) -> TenantInfo:
        """One tenant with quotas, usage and servers."""
        return self._tenant(tenant).info().get(timeout=_ASK_TIMEOUT)

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
        return self.router.tools(tenant).get(timeout=_ASK_TIMEOUT)

    def catalogs(self, tenant: str | None = None) -> tuple[ServerCatalog, ...]:
        """Full server catalogs (tools, resources, resource templates, prompts)."""
        return self.router.catalogs(tenant).get(timeout=_ASK_TIMEOUT)

    def resources(self, tenant: str) -> list[dict[str, Any]]:
        """Resources of a tenant's running servers, each with its `server`."""
        return [{**r.raw, "server": c.server} for c in self.catalogs(tenant) for r in c.resources]

    def resource_templates(self, tenant: str) -> list[dict[str, Any]]:
        """Resource templates of a tenant's running servers, each with its `server`."""
        return [{**r.raw, "server": c.server} for c in self.catalogs(tenant) for r in c.resource_templates]

    def read_resource(
        self, tenant: str, uri: str, server: str | None = None, session: str | None = None
    ) -> dict[str, Any]:
        """Read `uri` from `server`, else from the server that offers it (as a resource, else by a
        template); from `session`'s own instance of a per_session server.

        Raises:
            NotFound: no server of the tenant offers it.
            BadRequest: several do, and `server` does not say which.
        """
        catalogs = self.catalogs(tenant)
        owners = [c.server for c in catalogs if any(r.raw.get("uri") == uri for r in c.resources)]
        if not owners:
            owners = [c.server for c in catalogs if any(_matches(t.raw, uri) for t in c.resource_templates)]
        if server is not None:
            # A named server is asked even if it does not list the URI (MCP Apps views often are not).
            owners = [server] if any(c.server == server for c in catalogs) else []
        if not owners:
            raise NotFound(f"no resource {uri!r} in tenant '{tenant}'")
        if len(owners) > 1:
            raise BadRequest(f"resource {uri!r} is offered by servers {', '.join(owners)}: pass server=")
        return self._server_request(tenant, owners[0], lambda e: e.read_resource(uri), session)

    def prompts(self, tenant: str) -> list[dict[str, Any]]:
        """Prompts of a tenant's running servers, each with its catalog id as `name`."""
        return [{**p.raw, "name": p.id, "server": p.server} for c in self.catalogs(tenant) for p in c.prompts]

    def get_prompt(
        self, tenant: str, prompt_id: str, arguments: Mapping[str, str], session: str | None = None
    ) -> dict[str, Any]:
        """Get prompt `server.name` of `tenant` with `arguments` (from `session`'s own instance of a
        per_session server)."""
        server, _, name = prompt_id.partition(".")
        known = any(p.name == name for c in self.catalogs(tenant) if c.server == server for p in c.prompts)
        if not known:
            raise NotFound(f"no prompt '{prompt_id}' in tenant '{tenant}'")
        return self._server_request(tenant, server, lambda e: e.get_prompt(name, dict(arguments)), session)

    def _server_request(
        self, tenant: str, server: str, submit: Callable[[Any], Any], session: str | None = None
    ) -> dict[str, Any]:
        route = self.router.server_route(tenant, server).get(timeout=_ASK_TIMEOUT)
        endpoint, gate, timeout, on_demand, per_session = route
        with self._in_flight(), gate.admit(tenant):
            if per_session and session is not None:
                return self._instance_request(tenant, server, session, submit, timeout)
            if on_demand and not self._running(tenant, server):
                self._wake(tenant, server)

            what = f"server '{server}'"
            try:
                return _answer(submit(endpoint), timeout, what)
            except NotRunning:
                if not on_demand:
                    raise
                self._wake(tenant, server)  # it stopped for idleness just before the request: once more
                return _answer(submit(endpoint), timeout, what)

    def _instance_request(
        self, tenant: str, server: str, session: str, submit: Callable[[Any], Any], timeout: float
    ) -> dict[str, Any]:
        """A resource read or prompt get on `session`'s instance (caller's thread, not a loop's)."""
        for attempt in (1, 2):
            endpoint = self._instance(tenant, server, session)
            try:
                return _answer(submit(endpoint), timeout, f"server '{server}'")
            except NotRunning:
                self._drop_endpoint((tenant, server, session), endpoint)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def server_log(self, tenant: str, server: str, tail: int = 100) -> list[str]:
        """The last `tail` lines of a server's stderr log (its rotated file included if needed),
        with the values of the tenant's and the server's `env` shown as `********`."""
        self.server(tenant, server)  # NotFound for an unknown server or tenant
        config = self.config.tenants[tenant]
        secrets = (config.env, config.servers[server].env)
        path = self.log_dir / tenant / f"{server}.log"
        lines: list[str] = []
        for part in (path, path.with_name(path.name + ".1")):
            if len(lines) >= tail:
                break
            try:
                text = part.read_bytes()[-self.config.orchestrator.log_max_bytes :].decode("utf-8", "replace")
            except FileNotFoundError:
                continue
            lines = text.splitlines()[-(tail - len(lines)) :] + lines
        return [redact(line, *secrets) for line in lines[-tail:]] if tail else []

    def _forget_routes(self, event: Event) -> None:
        """Board listener (router thread): a catalog change invalidates the cached routes."""
        if isinstance(event, CatalogChanged):
            self._generation += 1
            self._routes.clear()

    def route(self, tenant: str, tool_id: str) -> Route:
        """The route of `tool_id` in `tenant` (cached until the catalog changes).

        Raises:
            NotFound: no such tool in the tenant's catalog.
        """
        return self._prepare(tenant, tool_id).route

    def cached_route(self, tenant: str, tool_id: str) -> Route | None:
        """The cached route, if any, without asking the router (safe on an event loop)."""
        prepared = self._routes.get((tenant, tool_id))
        return prepared.route if prepared else None

    def _prepare(self, tenant: str, tool_id: str) -> _Prepared:
        key = (tenant, tool_id)
        prepared = self._routes.get(key)
        if prepared is None:
            generation = self._generation
            route = self.router.resolve(tenant, tool_id).get(timeout=_ASK_TIMEOUT)
            prepared = _Prepared(route, _validator(route))
            if generation == self._generation:
                self._routes[key] = prepared
        return prepared

    @contextlib.contextmanager
    def _call(
        self, prepared: _Prepared, arguments: Mapping[str, Any], key: str | None, shown: str | None = None
    ) -> Iterator[dict[str, str]]:
        """Around one call: shutdown check, argument validation, quotas, metrics, audit.

        Yields a dict whose `outcome` the caller sets to `tool_error` for a tool that reported failure.
        `shown`: the tool's name in error messages (default: its catalog id).
        """
        route = prepared.route
        in_flight = self.metrics.in_flight.labels(route.tenant)
        began = time.perf_counter()
        call = {"outcome": "ok"}
        try:
            _validate(prepared, arguments, shown)
            with self._in_flight(), route.gate.admit(route.tenant):
                in_flight.inc()
                try:
                    yield call
                finally:
                    in_flight.dec()
        except HubError as exc:
            call["outcome"] = exc.code
            raise
        except BaseException:
            call["outcome"] = "cancelled"
            raise
        finally:
            seconds = time.perf_counter() - began
            self.metrics.calls.labels(route.tenant, route.server, call["outcome"]).inc()
            self.metrics.latency.labels(route.tenant, route.server).observe(seconds)
            self.audit.record(route.tenant, key, route.entry.id, seconds, call["outcome"], dict(arguments))

    @contextlib.contextmanager
    def _in_flight(self) -> Iterator[None]:
        """Count a request in flight, so that `stop` can let it finish; refuse it once stopping."""
        with self._calls:
            if self._stopping:
                raise ShuttingDown("the hub is shutting down")
            self._calls_in_flight += 1
        try:
            yield
        finally:
            with self._calls:
                self._calls_in_flight -= 1
                self._calls.notify_all()

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
        """
        if self._stopping:
            raise ShuttingDown("the hub is shutting down")
        arguments = dict(arguments or {})
        try:
            prepared = self._prepare(tenant, tool_id)
        except HubError as exc:  # unknown tool, server down: audited too
            self.audit.record(tenant, key, tool_id, 0.0, exc.code, arguments)
            raise
        with self._call(prepared, arguments, key) as call:
            route = prepared.route
            if route.per_session and session is not None:
                result = self._session_call(route, arguments, tool_id, session)
                if result.is_error:
                    call["outcome"] = "tool_error"
                return result
            if route.on_demand and not self._running(route.tenant, route.server):
                self._wake(route.tenant, route.server)
            try:
                result = self._call_once(route, arguments, tool_id)
            except NotRunning:
                if not route.on_demand:
                    raise
                self._wake(route.tenant, route.server)  # it stopped for idleness just before the call
                result = self._call_once(route, arguments, tool_id)
            if result.is_error:
                call["outcome"] = "tool_error"
            return result

    def _session_call(
        self, route: Route, arguments: dict[str, Any], tool_id: str, session: str
    ) -> ToolResult:
        key = (route.tenant, route.server, session)
        for attempt in (1, 2):
            endpoint = self._instance(route.tenant, route.server, session)
            try:
                return self._call_once(route, arguments, tool_id, endpoint)
            except NotRunning:  # it stopped for idleness (or its session ended) just before the call
                self._drop_endpoint(key, endpoint)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _call_once(
        self, route: Route, arguments: dict[str, Any], tool_id: str, endpoint: ServerEndpoint | None = None
    ) -> ToolResult:
        future = (endpoint or route.endpoint).call_tool(route.name, arguments)
        return _answer(future, route.call_timeout, f"tool '{tool_id}'")

    async def call_tool_async(
        self,
        tenant: str,
        tool_id: str,
        arguments: Mapping[str, Any] | None = None,
        requester: Requester | None = None,
        key: str | None = None,
        session: str | None = None,
        shown_as: str | None = None,
    ) -> ToolResult:
        """`call_tool` for code on an asyncio loop (the web frontend): never blocks the loop.

        `requester`, if given (the MCP facade's session), takes progress and log messages and
        answers the server's sampling and elicitation requests. Cancelling the awaiting task
        cancels the call on the server's loop (and the server gets `notifications/cancelled`).
        `shown_as`: the name the caller knows the tool by (the MCP facade's `<server>__<tool>`),
        used in error messages instead of the catalog id; the audit log keeps the catalog id.
        """
        if self._stopping:
            raise ShuttingDown("the hub is shutting down")
        arguments = dict(arguments or {})
        prepared = self._routes.get((tenant, tool_id))
        if prepared is None:  # a router ask blocks: off the loop
            try:
                prepared = await asyncio.get_running_loop().run_in_executor(
                    None, self._prepare, tenant, tool_id
                )
            except HubError as exc:  # unknown tool, server down: audited too
                self.audit.record(tenant, key, tool_id, 0.0, exc.code, arguments)
                raise
        shown = shown_as or tool_id
        with self._call(prepared, arguments, key, shown) as call:
            route = prepared.route
            if route.per_session and session is not None:
                result = await self._session_call_async(route, arguments, requester, shown, session)
                if result.is_error:
                    call["outcome"] = "tool_error"
                return result
            if route.on_demand and not self._running(route.tenant, route.server):
                await self._wake_async(route.tenant, route.server)
            try:
                result = await self._call_once_async(route, arguments, requester, shown)
            except NotRunning:
                if not route.on_demand:
                    raise
                await self._wake_async(route.tenant, route.server)  # it stopped for idleness meanwhile
                result = await self._call_once_async(route, arguments, requester, shown)
            if result.is_error:
                call["outcome"] = "tool_error"
            return result

    async def _session_call_async(
        self,
        route: Route,
        arguments: dict[str, Any],
        requester: Requester | None,
        shown: str,
        session: str,
    ) -> ToolResult:
        key = (route.tenant, route.server, session)
        for attempt in (1, 2):
            endpoint = await self._instance_async(route.tenant, route.server, session)
            try:
                return await self._call_once_async(route, arguments, requester, shown, endpoint)
            except NotRunning:  # it stopped for idleness (or its session ended) just before the call
                self._drop_endpoint(key, endpoint)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _call_once_async(
        self,
        route: Route,
        arguments: dict[str, Any],
        requester: Requester | None,
        shown: str,
        endpoint: ServerEndpoint | None = None,
    ) -> ToolResult:
        future = (endpoint or route.endpoint).call_tool(route.name, arguments, requester)
        try:
            async with asyncio.timeout(route.call_timeout + 5):  # no extra task, unlike wait_for
                return await asyncio.wrap_future(future)
        except TimeoutError:
            raise CallTimeout(f"tool '{shown}' did not answer in time") from None

    # ------------------------------------------------------------------ on_demand servers

    def _running(self, tenant: str, server: str) -> bool:
        """Whether the latest status told of the server is `running` (any thread, never blocks)."""
        status = self.board.status(tenant, server)
        return status is not None and status.state is ServerState.RUNNING

    def _wake(self, tenant: str, server: str, session: str | None = None) -> None:
        """Start an on_demand server (or `session`'s instance of a per_session one) for a call and
        wait until it runs (caller's thread, not a loop's).

        Raises:
            UpstreamError: it failed to start (the message says why).
            NotRunning: it is restarting after a crash, or was stopped or reconfigured meanwhile.
            QuotaExceeded: the tenant's `max_servers` servers (or `max_sessions_per_server`
                instances) already run.
            CallTimeout: it did not start within `startup_timeout` (plus a margin).
        """
        future, first = self._pending_wake((tenant, server, session))
        if first:
            self._ask_wake((tenant, server, session))
        timeout = self.config.orchestrator.startup_timeout + _WAKE_MARGIN
        try:
            future.result(timeout=timeout)
        except TimeoutError:
            raise CallTimeout(f"server '{server}' did not start within {timeout:g} s") from None
        except HubError as exc:
            raise copy.copy(exc) from None  # one exception per waiter: they run in different threads

    async def _wake_async(self, tenant: str, server: str, session: str | None = None) -> None:
        """`_wake` for code on an asyncio loop: the ask runs in an executor, the wait on the loop."""
        key = (tenant, server, session)
        future, first = self._pending_wake(key)
        if first:
            await asyncio.get_running_loop().run_in_executor(None, self._ask_wake, key)
        timeout = self.config.orchestrator.startup_timeout + _WAKE_MARGIN
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
            raise copy.copy(exc) from None

    def _pending_wake(self, key: WakeKey) -> tuple[concurrent.futures.Future[ServerStatus], bool]:
        """The start of `key` that calls wait for, and whether this caller must ask for it.

        Any thread; never blocks (safe on a loop). Concurrent first calls share one start.
        """
        with self._wake_lock:
            pending = self._wakes.get(key)
            if pending is not None:
                return pending.future, False
            future: concurrent.futures.Future[ServerStatus] = concurrent.futures.Future()
            future.set_running_or_notify_cancel()  # a waiter that gives up cannot cancel it for the others
            self._wakes[key] = _Waking(future)
            return future, True

    def _ask_wake(self, key: WakeKey) -> None:
        """Ask the tenant to start the server (or the session's instance), then settle the start if
        its outcome is already known.

        Blocks on the ask: runs on a caller's thread or in an executor, never on a loop.
        """
        tenant, server, session = key
        try:
            if session is None:
                status = self._tenant(tenant).wake_server(server).get(timeout=_ASK_TIMEOUT)
            else:
                with self._wake_lock:
                    if session in self._ended:
                        raise NotRunning(f"the session of this call has ended (server '{server}')")
                    self._session_tenants.setdefault(session, set()).add(tenant)
                proxy = self._tenant(tenant)
                endpoint, status = proxy.session_instance(server, session).get(timeout=_ASK_TIMEOUT)
                with self._wake_lock:
                    ended = session in self._ended
                    if not ended:
                        self._endpoints[key] = endpoint
                if ended:  # it ended while its instance started: stop that at once
                    proxy.end_session(session).get(timeout=120)
                    raise NotRunning(f"the session of this call has ended (server '{server}')")
        except HubError as exc:
            self._settle(key, exc)
            return
        except Exception as exc:  # isolation: an ask that timed out or an actor that died; calls must hear
            log.exception("starting %s/%s on demand failed", tenant, server)
            self._settle(key, UpstreamError(f"server '{server}' could not be started: {exc}"))
            return
        if status.state is ServerState.STARTING:
            if session is None:
                self.metrics.on_demand_starts.labels(tenant, server).inc()
                log.info("%s/%s: starting on demand", tenant, server)
            else:
                self.metrics.instance_starts.labels(tenant, server).inc()
        with self._wake_lock:
            pending = self._wakes.get(key)
            if pending is None:
                return
            pending.since = status
        # The outcome may already be known: from the answer itself, or from events told meanwhile.
        self._check_wake(status)
        latest = self.board.status(tenant, server) if session is None else self.board.instance_status(key)
        if latest is not None:
            self._check_wake(latest)

    def _on_status(self, event: Event) -> None:
        """Board listener (router thread): a server's status may settle a start that calls wait for;
        a session instance that stopped is no longer called."""
        if isinstance(event, InstanceStateChanged) and event.status.state in _GONE:
            with self._wake_lock:
                self._endpoints.pop(event.status.instance_key, None)
        if self._wakes and isinstance(event, ServerStateChanged | InstanceStateChanged):
            self._check_wake(event.status)

    def _check_wake(self, status: ServerStatus) -> None:
        """Settle the pending start of the status's server if `status` decides it (any thread)."""
        key = status.instance_key
        with self._wake_lock:
            pending = self._wakes.get(key)
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
        with self._wake_lock:
            pending = self._wakes.pop(key, None)
        if pending is None:
            return  # settled already
        if isinstance(outcome, HubError):
            pending.future.set_exception(outcome)
        else:
            pending.future.set_result(outcome)

    def _abandon_wakes(
        self,
        error: HubError,
        tenant: str | None = None,
        servers: set[str] | None = None,
        session: str | None = None,
    ) -> None:
        """Fail the pending starts of `servers` of `tenant` (None: all of them), or of `session`'s
        instances: the hub stops, they were removed or reconfigured, or the session ended."""
        with self._wake_lock:
            keys = [
                key
                for key in self._wakes
                if (tenant is None or key[0] == tenant)
                and (servers is None or key[1] in servers)
                and (session is None or key[2] == session)
            ]
        for key in keys:
            self._settle(key, error)

    # ------------------------------------------------------------------ session instances

    def _instance(self, tenant: str, server: str, session: str) -> ServerEndpoint:
        """The endpoint of `session`'s running instance of `server`, started and waited for if need
        be (caller's thread, not a loop's). Raises what `_wake` raises."""
        key = (tenant, server, session)
        endpoint = self._live_endpoint(key)
        if endpoint is None:
            self._wake(tenant, server, session)
            endpoint = self._live_endpoint(key, fresh=True)
        return endpoint

    async def _instance_async(self, tenant: str, server: str, session: str) -> ServerEndpoint:
        """`_instance` for code on an asyncio loop."""
        key = (tenant, server, session)
        endpoint = self._live_endpoint(key)
        if endpoint is None:
            await self._wake_async(tenant, server, session)
            endpoint = self._live_endpoint(key, fresh=True)
        return endpoint

    def _live_endpoint(self, key: WakeKey, fresh: bool = False) -> Any:
        """The endpoint of a running instance (None if there is none); `fresh`: it was just started,
        so its absence means it stopped meanwhile (`NotRunning`). Any thread, never blocks."""
        status = self.board.instance_status(key)
        with self._wake_lock:
            endpoint = self._endpoints.get(key)
        if endpoint is not None and (fresh or (status is not None and status.state is ServerState.RUNNING)):
            return endpoint
        if fresh:
            raise NotRunning(f"the instance of server '{key[1]}' for this session stopped meanwhile")
        return None

    def _drop_endpoint(self, key: WakeKey, endpoint: ServerEndpoint) -> None:
        with self._wake_lock:
            if self._endpoints.get(key) is endpoint:
                del self._endpoints[key]

    def end_session(self, session: str) -> int:
        """A client session ended (an MCP facade session closed, a WebSocket closed): stop its
        instances of per_session servers, in every tenant, and wait until their processes are gone.
        Calls waiting for one of its instances to start fail. Blocks: any thread but a loop's.

        Returns:
            How many instances were stopped.
        """
        with self._wake_lock:
            self._ended[session] = None
            while len(self._ended) > _ENDED_SESSIONS:
                self._ended.popitem(last=False)
            tenants = self._session_tenants.pop(session, set())
            for key in [k for k in self._endpoints if k[2] == session]:
                del self._endpoints[key]
        self._abandon_wakes(NotRunning("the session of this call has ended"), session=session)
        stopped = 0
        for tenant in tenants:
            try:
                stopped += self._tenant(tenant).end_session(session).get(timeout=120)
            except (NotFound, ShuttingDown, pykka.ActorDeadError):
                continue  # the tenant was removed, or the hub stops (and stops every instance)
        # Their `stopped` events are on their way up: once told, `instances()` no longer has them.
        self.board.wait_for(lambda: not any(i.session == session for i in self.board.instances()), 5)
        return stopped

    def instances(self, tenant: str | None = None) -> tuple[ServerStatus, ...]:
        """Session instances of per_session servers that run or start now (of `tenant`), as last
        told; never blocks."""
        return self.board.instances(tenant)


@dataclass
class _Waking:
    """A start of an on_demand server that calls wait for; `since` is the status its ask was
    answered with (None until then). Mutable, guarded by `Hub._wake_lock`; never crosses actors."""

    future: concurrent.futures.Future[ServerStatus]
    since: ServerStatus | None = None


@dataclass(frozen=True)
class _Prepared:
    """A resolved route and the compiled validator of the tool's input schema (None: not checkable)."""

    route: Route
    validator: Any


def _answer(future: concurrent.futures.Future[T], timeout: float, what: str) -> T:
    """The result of a call submitted to a server's loop (caller's thread): the loop bounds it by
    `timeout`; 5 s more only guard against a wedged loop, and then the call is cancelled."""
    try:
        return future.result(timeout=timeout + 5)
    except TimeoutError:
        future.cancel()
        raise CallTimeout(f"{what} did not answer in time") from None


def _matches(template: Mapping[str, Any], uri: str) -> bool:
    try:
        return UriTemplate.parse(str(template.get("uriTemplate", ""))).match(uri) is not None
    except (InvalidUriTemplate, ValueError):
        return False


def _validator(route: Route) -> Any:
    schema = route.entry.input_schema
    try:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        cls.check_schema(schema)
        return cls(schema)
    except (jsonschema.SchemaError, TypeError):
        log.warning(
            "tool %s of %s/%s has an invalid input schema; its arguments are not checked",
            route.name,
            route.tenant,
            route.server,
        )
        return None


def _validate(prepared: _Prepared, arguments: Mapping[str, Any], shown: str | None = None) -> None:
    """Raise `BadRequest` naming each path where `arguments` break the tool's input schema (and the
    tool as `shown`, else by its catalog id)."""
    if prepared.validator is None:
        return
    problems = sorted(
        f"{dotted_path(('arguments', *e.absolute_path))}: {e.message[:300]}"
        for e in prepared.validator.iter_errors(dict(arguments))
    )
    if problems:
        raise BadRequest(
            f"invalid arguments for tool '{shown or prepared.route.entry.id}': " + "; ".join(problems[:10])
        )
