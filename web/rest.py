"""The REST API (README, "The service"; described by `GET /openapi.json`): thin handlers that
parse, ask the hub, and serialise.

Every handler runs on the web loop; blocking hub calls go through `blocking`. A tenant key sees
only its tenant: anything of another tenant is "not found"; of its tenant, a key with `allow`/`deny`
sees only the tools, prompts and resources it may use (`hub.permissions`; the rest is "not found"
too), though servers and their counts stay listed (docs/security.md, "Per-tool permissions").
"""

from __future__ import annotations

import functools
import json
import threading
import time
import weakref
from typing import Any, Literal

import hub
from actors.limits import limit_support
from actors.models import CatalogChanged, Event, ServerState, ServerStatus, ToolEntry
from actors.sandbox import host_support
from hub import idempotency, permissions
from hub.cluster import ClusterNode
from hub.errors import BadRequest, NotFound
from hub.metrics import CONTENT_TYPE
from hub.runtime import Hub
from web import responses as api
from web.base import AdminHandler, ApiHandler, header_session

_SEGMENT = r"([^/]+)"


def _server_json(
    status: ServerStatus, hub_: Any, detail: bool = False, caller: permissions.Permits | None = None
) -> api.ServerStatus:
    config = hub_.config.tenants[status.tenant].servers[status.server]
    data: api.ServerStatus = {
        **status.to_json(),
        "type": config.type,
        "enabled": config.enabled,
        "description": config.metadata.get("description"),
        "per_session": config.per_session,
        "per_user": config.per_user,
    }
    if config.per_session or config.per_user:  # its sessions' (users') own instances (this is the shared one)
        instances = [i for i in hub_.instances(status.tenant) if i.server == status.server]
        data["instances"] = [i.instance_json() for i in instances]
    if detail:
        tools = permissions.tools(hub_.tools(status.tenant), caller)  # (only those it may call)
        data["tool_names"] = [t.name for t in tools if t.server == status.server]
    return data


def _about(hub_: Hub) -> api.HubIdentity:
    """What `/` and `/health` both say first: which hub this is, and for how long it has run."""
    started = hub_.started_at or time.time()
    return {"name": "MCP Hub", "version": hub.__version__, "uptime_seconds": round(time.time() - started, 3)}


class RootHandler(ApiHandler):
    """`GET /`: name, version, uptime and counts (no names: it is public)."""

    route = "/"
    public = True

    async def get(self) -> None:
        statuses = await self.blocking(self.hub.servers)
        body: api.About = {
            **_about(self.hub),
            "tenants": len(self.hub.config.tenants),
            "servers": len(statuses),
            "servers_running": sum(1 for s in statuses if s.state.value == "running"),
            "docs": "/openapi.json",
        }
        self.reply(body)


def cluster_health(
    node: ClusterNode,
    servers: dict[str, tuple[str, ...]],
    statuses: tuple[ServerStatus, ...] = (),
    quotas: Literal["shared", "local", "refusing"] = "shared",
) -> api.HealthCluster:
    """What `/health` says of a cluster's replica (its last heartbeat; placement over its live set;
    how many of `statuses`, the cluster's, run here)."""
    view = node.view()
    here = sum(1 for s in statuses if s.replica == view.replica_id and s.state is ServerState.RUNNING)
    return {
        "replica_id": view.replica_id,
        "members": list(view.members),
        "servers_owned": sum(len(names) for names in node.share(servers).values()),
        "servers_running": here,
        "redis": "reachable" if view.redis_ok else "unreachable",
        "quotas": quotas,
    }


class HealthHandler(ApiHandler):
    """`GET /health`: 200 while the hub works, with its name, version, uptime and each component's
    state (public: no tenant or server names)."""

    route = "/health"
    public = True

    async def get(self) -> None:
        statuses = await self.blocking(self.hub.servers)
        by_state: dict[str, int] = {}
        for status in statuses:
            by_state[status.state.value] = by_state.get(status.state.value, 0) + 1
        body: api.Health = {
            "status": "ok",
            **_about(self.hub),
            "components": {
                "actors": "running",
                "servers": by_state,
                "auth": "open" if self.keys.open else "keys",
                "sandbox": "available" if host_support().available else "unavailable",
                "limits": limit_support().mechanism,
            },
        }
        credentials = await self.blocking(self.hub.users.health)
        if credentials is not None:
            body["components"]["credentials"] = credentials
        if self.hub.cluster is not None:
            quotas = self.hub.replica.quotas.state() if self.hub.replica is not None else "shared"
            configured = {name: tuple(t.servers) for name, t in self.hub.config.tenants.items()}
            body["components"]["cluster"] = await self.blocking(
                cluster_health, self.hub.cluster, configured, statuses, quotas
            )
        self.reply(body)


class TenantsHandler(ApiHandler):
    """`GET /api/tenants`: the tenants this caller sees (`?tenant=` narrows), with quotas, usage and
    servers."""

    route = "/api/tenants"

    async def get(self) -> None:
        infos = [await self.blocking(self.hub.tenant, t) for t in self.listed_tenants()]
        body: api.TenantList = {"tenants": [i.to_json() for i in infos]}
        self.reply(body)


class TenantHandler(ApiHandler):
    """`GET /api/tenants/{t}`."""

    route = "/api/tenants/{tenant}"

    async def get(self, tenant: str) -> None:
        info = await self.blocking(self.hub.tenant, self.tenant_for(tenant))
        self.reply(info.to_json())


class TenantToolsHandler(ApiHandler):
    """`GET /api/tenants/{t}/tools`: that tenant's catalog."""

    route = "/api/tenants/{tenant}/tools"

    async def get(self, tenant: str) -> None:
        tools = permissions.tools(await self.blocking(self.hub.tools, self.tenant_for(tenant)), self.caller)
        body: api.ToolList = {"tools": [t.to_json() for t in tools]}
        self.reply(body)


class TenantActionHandler(ApiHandler):
    """`POST /api/tenants/{t}/start|stop`: all of its enabled servers; per-server outcome.

    `start` waits until each server runs or has failed, unless `?wait=false`.
    """

    route = "/api/tenants/{tenant}/{action}"

    async def post(self, tenant: str, action: str) -> None:
        tenant = self.tenant_for(tenant)
        if action == "start":
            wait = self.get_query_argument("wait", "true").lower() != "false"
            outcome = await self.blocking(self.hub.start_tenant, tenant, wait)
        else:
            outcome = await self.blocking(self.hub.stop_tenant, tenant)
        if self.hub.replica is not None:  # (every replica starts or stops its share: `hub.replica`)
            await self.blocking(self.hub.replica.announce, f"{action}_tenant", tenant)
        body: api.TenantOutcome = {"tenant": tenant, "action": action, "servers": outcome}
        self.reply(body)


class ServersHandler(ApiHandler):
    """`GET /api/servers`: every server this caller sees (`?tenant=` narrows)."""

    route = "/api/servers"

    async def get(self) -> None:
        out = []
        for tenant in self.listed_tenants():
            statuses = await self.blocking(self.hub.servers, tenant)
            configured = self.hub.config.tenants.get(tenant)
            # (a reload in progress: the router may know a server the configuration does not yet)
            out += [
                _server_json(s, self.hub) for s in statuses if configured and s.server in configured.servers
            ]
        body: api.ServerList = {"servers": out}
        self.reply(body)


class ServerHandler(ApiHandler):
    """`GET /api/servers/{t}/{s}`: state, pid, restarts, last error, tools."""

    route = "/api/servers/{tenant}/{server}"

    async def get(self, tenant: str, server: str) -> None:
        status = await self.blocking(self.hub.server, self.tenant_for(tenant), server)
        self.reply(await self.blocking(_server_json, status, self.hub, True, self.caller))


class ServerActionHandler(ApiHandler):
    """`POST /api/servers/{t}/{s}/start|stop|restart`: lifecycle; start waits unless `?wait=false`."""

    route = "/api/servers/{tenant}/{server}/{action}"

    async def post(self, tenant: str, server: str, action: str) -> None:
        tenant = self.tenant_for(tenant)
        wait = self.get_query_argument("wait", "true").lower() != "false"
        status = await self.blocking(self._act, tenant, server, action, wait)
        self.reply(_server_json(status, self.hub))

    def _act(self, tenant: str, server: str, action: str, wait: bool) -> ServerStatus:
        """The action (an executor thread): in a cluster, by the replica that runs the server."""
        replica = self.hub.replica
        there = replica.server_action(tenant, server, action, wait) if replica is not None else None
        if there is not None:
            return there
        if action == "start":
            return self.hub.start_server(tenant, server, wait)
        if action == "restart":
            return self.hub.restart_server(tenant, server, wait)
        return self.hub.stop_server(tenant, server)


class ServerLogsHandler(ApiHandler):
    """`GET /api/servers/{t}/{s}/logs?tail=N`: the last N lines (default 100) of the server's stderr."""

    route = "/api/servers/{tenant}/{server}/logs"

    async def get(self, tenant: str, server: str) -> None:
        tenant = self.tenant_for(tenant)
        raw = self.get_query_argument("tail", "100")
        if not (raw.isascii() and raw.isdigit()) or not 0 <= int(raw) <= 10000:
            raise BadRequest("tail must be an integer from 0 to 10000")
        lines = await self.blocking(self.hub.server_log, tenant, server, int(raw))
        body: api.ServerLogs = {"tenant": tenant, "server": server, "lines": lines}
        self.reply(body)


class ToolListing:
    """The JSON of each tenant's tools as `GET /api/tools` shows them, kept until that tenant's
    catalog changes: at 1,000 servers, encoding the whole catalog was most of an admin's listing.

    `parts` runs on a web handler's worker thread; `_on_event` on the router thread.
    """

    def __init__(self, hub_: Hub) -> None:
        self._hub = hub_
        self._parts: dict[str, bytes] = {}  # tenant → its entries, encoded, comma-separated
        self._generation = 0  # a listing fetched before a change is never kept after it
        self._lock = threading.Lock()
        hub_.board.add_listener(self._on_event)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, CatalogChanged):
            with self._lock:
                self._generation += 1
                self._parts.pop(event.catalog.tenant, None)

    def parts(self, tenants: list[str]) -> list[bytes]:
        """The encoded entries of `tenants` (in that order); one router ask if any is not kept."""
        with self._lock:
            parts, generation = dict(self._parts), self._generation
        missing = [t for t in tenants if t not in parts]
        if missing:
            by_tenant: dict[str, list[ToolEntry]] = {t: [] for t in missing}
            for entry in self._hub.tools(missing[0] if len(missing) == 1 else None):
                if entry.tenant in by_tenant:
                    by_tenant[entry.tenant].append(entry)
            for tenant, entries in by_tenant.items():
                parts[tenant] = ", ".join(
                    json.dumps(e.to_json(), ensure_ascii=False, default=str) for e in entries
                ).encode()
            with self._lock:
                if generation == self._generation:
                    self._parts.update((t, parts[t]) for t in missing)
        return [parts[t] for t in tenants]


def _allowed_part(hub_: Hub, tenant: str, caller: permissions.Permits | None) -> bytes:
    """The encoded entries of `tenant`'s tools that `caller` may call (a worker thread)."""
    entries = permissions.tools(hub_.tools(tenant), caller)
    return ", ".join(json.dumps(e.to_json(), ensure_ascii=False, default=str) for e in entries).encode()


_LISTINGS: weakref.WeakKeyDictionary[Hub, ToolListing] = weakref.WeakKeyDictionary()
_LISTINGS_LOCK = threading.Lock()


def tool_listing(hub_: Hub) -> ToolListing:
    """The hub's one `ToolListing` (made on first use)."""
    with _LISTINGS_LOCK:
        listing = _LISTINGS.get(hub_)
        if listing is None:
            listing = _LISTINGS[hub_] = ToolListing(hub_)
        return listing


class ToolsHandler(ApiHandler):
    """`GET /api/tools`: catalog entries of every tenant this caller sees (`?tenant=` narrows)."""

    route = "/api/tools"

    async def get(self) -> None:
        tenants = self.listed_tenants()
        if permissions.free(self.caller):
            parts = await self.blocking(tool_listing(self.hub).parts, tenants)
        else:  # (a key with allow/deny: its own listing, not kept; it sees its own tenant only)
            parts = [await self.blocking(_allowed_part, self.hub, t, self.caller) for t in tenants]
        self.set_status(200)
        self.finish(b'{"tools": [' + b", ".join(p for p in parts if p) + b"]}")


class ToolCallHandler(ApiHandler):
    """`POST /api/tools/{name}[/call]`: body = arguments; a tenant key calls in its tenant, an admin
    picks one with `?tenant=` (default `default`); see `calling_tenant`. An `Idempotency-Key`
    header makes a request sent again safe (`hub.idempotency`)."""

    route = "/api/tools/{name}/call"

    async def post(self, name: str) -> None:
        assert self.caller is not None
        tenant = self.calling_tenant()
        arguments = self.json_object()
        key = idempotency.parse_key(self.request.headers.get_list(idempotency.HEADER))
        call = functools.partial(
            self.hub.calls.call_tool_async,
            tenant,
            name,
            arguments,
            session=self.session(),
            caller=self.caller,
        )
        if key is None:
            result = await call()
        else:  # (a request sent again with its key: run again only if harmless; `hub.idempotency`)
            result = await idempotency.keyed_call(self.hub, tenant, name, arguments, key).run(
                lambda admit: call(admit=admit)
            )
        self.reply(result.to_json())


class ToolCallShortHandler(ToolCallHandler):
    """`POST /api/tools/{name}`: the seed's form of the tool call."""

    route = "/api/tools/{name}"


class ResourcesHandler(ApiHandler):
    """`GET /api/tenants/{t}/resources`: `{"resources", "resource_templates"}` of its running servers."""

    route = "/api/tenants/{tenant}/resources"

    async def get(self, tenant: str) -> None:
        tenant = self.tenant_for(tenant)
        resources = await self.blocking(self.hub.resources, tenant)
        templates = await self.blocking(self.hub.resource_templates, tenant)
        if not permissions.free(self.caller):  # (only the servers whose resources it may read)
            assert self.caller is not None
            resources = [r for r in resources if self.caller.may(r["server"], None)]
            templates = [t for t in templates if self.caller.may(t["server"], None)]
        self.reply({"resources": resources, "resource_templates": templates})


class ResourceReadHandler(ApiHandler):
    """`GET /api/tenants/{t}/resources/read?uri=...[&server=...]`."""

    route = "/api/tenants/{tenant}/resources/read"

    async def get(self, tenant: str) -> None:
        tenant = self.tenant_for(tenant)
        uri = self.get_query_argument("uri", None)
        if not uri:
            raise BadRequest("the query parameter 'uri' is required")
        server = self.get_query_argument("server", None)
        user = self.caller.subject if self.caller else None
        read = functools.partial(self.hub.read_resource, caller=self.caller, user=user)
        self.reply(await self.blocking(read, tenant, uri, server, self.session()))


class PromptsHandler(ApiHandler):
    """`GET /api/tenants/{t}/prompts`."""

    route = "/api/tenants/{tenant}/prompts"

    async def get(self, tenant: str) -> None:
        prompts = await self.blocking(self.hub.prompts, self.tenant_for(tenant))
        self.reply({"prompts": [p for p in prompts if permissions.may_call(self.caller, p["name"])]})


class PromptGetHandler(ApiHandler):
    """`POST /api/tenants/{t}/prompts/{name}`: body = arguments (strings)."""

    route = "/api/tenants/{tenant}/prompts/{name}"

    async def post(self, tenant: str, name: str) -> None:
        tenant = self.tenant_for(tenant)
        arguments = self.json_object()
        bad = [k for k, v in arguments.items() if not isinstance(v, str)]
        if bad:
            raise BadRequest(f"prompt arguments must be strings: {', '.join(sorted(bad))}")
        user = self.caller.subject if self.caller else None
        get = functools.partial(self.hub.get_prompt, caller=self.caller, user=user)
        self.reply(await self.blocking(get, tenant, name, arguments, self.session()))


class SessionHandler(ApiHandler):
    """`DELETE /api/sessions/{id}`: end the caller's `Mcp-Hub-Session` session `id` now: its
    instances of per_session servers are stopped (else they stop after `idle_timeout`)."""

    route = "/api/sessions/{session}"

    async def delete(self, session: str) -> None:
        ended = header_session(session, self.caller)
        assert ended is not None
        stopped = await self.blocking(self.hub.end_session, ended)
        body: api.SessionEnded = {"session": session, "instances_stopped": stopped}
        self.reply(body)


class MetricsHandler(ApiHandler):
    """`GET /metrics`: Prometheus text format (admin key when keys are configured)."""

    route = "/metrics"

    def get(self) -> None:
        assert self.caller is not None
        if not self.caller.admin:
            raise NotFound("no route /metrics")
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(self.hub.metrics.render())


class ReloadHandler(AdminHandler):
    """`POST /api/admin/reload` (admin): re-read the configuration file and apply it.

    An invalid file changes nothing: 400 with every problem; the hub keeps serving the old one.
    """

    route = "/api/admin/reload"

    async def post(self) -> None:
        outcome = await self.blocking(self.hub.reload_file)
        if self.hub.replica is not None:  # (every replica reloads its copy of the file: `hub.replica`)
            await self.blocking(self.hub.replica.announce, "reload")
        self.reply(outcome)


ROUTES: list[tuple[str, type[ApiHandler]]] = [
    (r"/", RootHandler),
    (r"/health", HealthHandler),
    (r"/metrics", MetricsHandler),
    (r"/api/tenants", TenantsHandler),
    (rf"/api/tenants/{_SEGMENT}", TenantHandler),
    (rf"/api/tenants/{_SEGMENT}/tools", TenantToolsHandler),
    (rf"/api/tenants/{_SEGMENT}/(start|stop)", TenantActionHandler),
    (rf"/api/tenants/{_SEGMENT}/resources", ResourcesHandler),
    (rf"/api/tenants/{_SEGMENT}/resources/read", ResourceReadHandler),
    (rf"/api/tenants/{_SEGMENT}/prompts", PromptsHandler),
    (rf"/api/tenants/{_SEGMENT}/prompts/{_SEGMENT}", PromptGetHandler),
    (r"/api/servers", ServersHandler),
    (rf"/api/servers/{_SEGMENT}/{_SEGMENT}", ServerHandler),
    (rf"/api/servers/{_SEGMENT}/{_SEGMENT}/(start|stop|restart)", ServerActionHandler),
    (rf"/api/servers/{_SEGMENT}/{_SEGMENT}/logs", ServerLogsHandler),
    (r"/api/admin/reload", ReloadHandler),
    (r"/api/tools", ToolsHandler),
    (rf"/api/tools/{_SEGMENT}/call", ToolCallHandler),
    (rf"/api/tools/{_SEGMENT}", ToolCallShortHandler),
    (rf"/api/sessions/{_SEGMENT}", SessionHandler),
]
