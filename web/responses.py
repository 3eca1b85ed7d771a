"""The JSON shapes the REST API answers, declared once as types.

Each `TypedDict` here is what a handler (or the `to_json` method it calls) returns: mypy checks the
code against it, and `web.openapi` generates the document's `components.schemas` from the same
classes (through pydantic), so the document cannot drift from the code. A class of `COMPONENTS`
is the component of its name; any other class is written inline where it is used. Descriptions are
the class docstring and `Doc(...)` on a field; `OneOf(...)` lists the values of a string that the
code holds as a plain `str`.

At run time these are plain dicts: nothing here runs on a request's path, on any thread.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import ConfigDict, Field, with_config
from typing_extensions import TypedDict  # pydantic reads only this one on Python < 3.12


def Doc(description: str) -> Any:
    """A field's description in the generated schema: `name: Annotated[str, Doc("...")]`."""
    return Field(description=description)


def OneOf(*values: str | None, description: str | None = None) -> Any:
    """The values a string may take (None: it may be null), for a field typed `str` in the code."""
    return Field(description=description, json_schema_extra={"enum": list(values)})


_OPEN = with_config(ConfigDict(extra="allow"))  # the object may carry more keys (an MCP server's own)

State = Literal["stopped", "starting", "running", "backoff", "failed"]


# --------------------------------------------------------------------------- errors


class ErrorBody(TypedDict):
    code: Annotated[str, Doc("Stable snake_case code.")]
    message: Annotated[str, Doc("Human text.")]


class Error(TypedDict):
    """Every error answer."""

    error: ErrorBody


# --------------------------------------------------------------------------- meta


class HubIdentity(TypedDict):
    """Which hub this is, and for how long it has run (what `/` and `/health` both say first)."""

    name: str
    version: str
    uptime_seconds: float


class About(HubIdentity):
    """About the hub (no names: public)."""

    tenants: int
    servers: int
    servers_running: int
    docs: Annotated[str, Doc("Where this document is.")]


class HealthCluster(TypedDict):
    """This replica of a cluster (docs/cluster.md), as of its last heartbeat."""

    replica_id: str
    members: Annotated[list[str], Doc("The live replicas' ids, sorted (this one included).")]
    servers_owned: Annotated[
        int, Doc("How many configured servers placement gives this replica among the live replicas.")
    ]
    servers_running: Annotated[
        int, Doc("How many servers run on this replica (`components.servers` counts the whole cluster's).")
    ]
    redis: Literal["reachable", "unreachable"]
    quotas: Annotated[
        Literal["shared", "local", "refusing"],
        Doc(
            "What counts the tenants' call quotas now: `shared` (Redis, across the cluster), `local` "
            "(Redis unreachable, `cluster.on_redis_loss: local`: this replica enforces its share), "
            "`refusing` (Redis unreachable, `on_redis_loss: refuse`: calls with quotas are refused)."
        ),
    ]


_CRED = "With per_user servers: can their users' values be read (unreadable: HUB_SECRET_KEY changed)?"


class HealthComponents(TypedDict):
    actors: str
    servers: Annotated[dict[str, int], Doc("Number of servers per state.")]
    auth: Literal["open", "keys"]
    sandbox: Annotated[
        Literal["available", "unavailable"],
        Doc("Whether this host can sandbox stdio servers (docs/security.md)."),
    ]
    limits: Annotated[
        str,
        OneOf(
            "cgroup v1",
            "cgroup v2",
            "rlimit",
            description="What enforces servers' resource limits here: cgroups (each limit), or rlimit (the "
            "memory limit only, per process; docs/security.md).",
        ),
    ]
    cluster: NotRequired[Annotated[HealthCluster, Doc("Only when the hub runs as a cluster's replica.")]]
    credentials: NotRequired[Annotated[str, OneOf("ok", "no_secret_key", "unreadable", description=_CRED)]]


class Health(HubIdentity):
    """The hub works (no tenant or server names: public)."""

    status: Literal["ok"]
    components: HealthComponents


class ReloadReport(TypedDict):
    """What a reload changed."""

    tenants: Annotated[dict[str, str], Doc("Per tenant: `added`, `removed`, `updated` or `unchanged`.")]
    servers: Annotated[
        dict[str, dict[str, str]],
        Doc("Per tenant kept, per server: `added`, `removed`, `restarted`, `changed` or `unchanged`."),
    ]
    restart_needed: Annotated[list[str], Doc("Settings that apply only after a restart of the hub.")]


# --------------------------------------------------------------------------- tools


class Tool(TypedDict):
    """One catalog entry."""

    name: Annotated[str, Doc("Catalog id, `<server>.<name>`.")]
    tenant: str
    server: str
    title: str | None
    description: str | None
    input_schema: Annotated[dict[str, Any], Doc("JSON Schema of the arguments.")]
    output_schema: Annotated[dict[str, Any] | None, Doc("JSON Schema of `structured_content`, if declared.")]


class ToolList(TypedDict):
    """A catalog."""

    tools: list[Tool]


class ToolResult(TypedDict):
    """The answer of a tool call."""

    tool: Annotated[str, Doc("The catalog id of the tool called.")]
    is_error: Annotated[bool, Doc("The tool ran and reported failure.")]
    content: Annotated[list[dict[str, Any]], Doc("MCP content blocks, as the server sent them.")]
    structured_content: Annotated[dict[str, Any] | None, Doc("The tool's structured result, if any.")]


class SessionEnded(TypedDict):
    """How many instances of a session were stopped (0: none ran)."""

    session: str
    instances_stopped: Annotated[int, Field(ge=0)]


# --------------------------------------------------------------------------- servers


class ServerSnapshot(TypedDict):
    """A server's state, as a tenant lists it."""

    tenant: Annotated[str, Doc("Tenant name.")]
    server: Annotated[str, Doc("Server name.")]
    state: Annotated[State, Doc("Lifecycle state.")]
    transport: Annotated[str, Doc("How the hub talks to the server (`stdio`, `http`, ...).")]
    pid: Annotated[int | None, Doc("Process id while a local process runs.")]
    started_at: Annotated[float | None, Doc("Unix time the server last started.")]
    restarts: Annotated[int, Field(ge=0, description="Automatic restarts so far.")]
    last_error: Annotated[str | None, Doc("Why it last failed or crashed.")]
    protocol_version: Annotated[str | None, Doc("MCP protocol version negotiated.")]
    tools: Annotated[int, Field(ge=0, description="Number of tools it offers.")]
    lifecycle: Annotated[
        str,
        OneOf(
            "always",
            "on_demand",
            description="`always`: started with its tenant; `on_demand`: started by its first call, "
            "stopped when idle.",
        ),
    ]
    catalog: Annotated[
        str | None,
        OneOf(
            "live",
            "cached",
            "pending_approval",
            None,
            description="Where its catalog comes from: `live` (discovered by the running process), "
            "`cached` (a stopped on_demand server, from its last discovery), `pending_approval` (its "
            'tools differ from those an admin approved: docs/security.md, "Pinned tools"), null '
            "(none listed).",
        ),
    ]
    held: Annotated[
        list[str], Doc("Its tools held by `pinning: enforce` (hidden and refused until an admin approves).")
    ]
    replica: Annotated[
        str | None,
        Doc(
            "In a cluster (docs/cluster.md), the id of the replica that runs it (or tried last); null "
            "on a hub that runs alone, and for a server no replica runs."
        ),
    ]
    stopped_reason: Annotated[
        Literal["idle", "never_used", "crashed", "stopped"] | None,
        Doc(
            "Why it is stopped or failed: `idle` (on_demand, no call for idle_timeout), `never_used` "
            "(on_demand, not run since the hub started), `crashed` (failed after its retries), "
            "`stopped` (by request); null while it runs or starts."
        ),
    ]
    retry_at: Annotated[
        float | None,
        Doc(
            "Unix time of its next automatic restart: set while it waits in `backoff`, or `failed` (it "
            "crashed more than `orchestrator.max_retries` times in a row and, with `restart: always`, "
            "is still retried, each wait twice the last up to `backoff_max`); null otherwise (a "
            "`failed` server with null is retried no more: a configuration problem, or `restart: "
            "limited`)."
        ),
    ]
    retry_in_seconds: Annotated[float | None, Doc("Seconds from this answer to `retry_at` (null: none due).")]


class SessionInstance(TypedDict):
    """A `per_session` server's instance for one client session."""

    session: Annotated[str, Doc("A hash of the session id (the id itself is never shown).")]
    session_kind: Annotated[
        str | None,
        Doc("`http` (MCP facade), `header` (`Mcp-Hub-Session`), `ws` (an app), `stdio`, `user` (per_user)."),
    ]
    state: Annotated[State, Doc("Lifecycle state.")]
    pid: Annotated[int | None, Doc("Process id.")]
    started_at: Annotated[float | None, Doc("Unix time it started.")]
    restarts: Annotated[int, Field(ge=0)]
    last_error: str | None
    retry_at: Annotated[float | None, Doc("Unix time of its next automatic restart.")]
    retry_in_seconds: Annotated[float | None, Doc("Seconds from this answer to `retry_at`.")]


class ServerStatus(ServerSnapshot):
    """A server's state with its configuration."""

    type: Annotated[str, Doc("The server's configured type.")]
    enabled: Annotated[bool, Doc("Whether tenant-wide start starts it.")]
    description: Annotated[str | None, Doc("The configured description (`metadata.description`).")]
    per_session: Annotated[
        bool, Doc("One instance per client session (this entry is then the tenant's shared instance).")
    ]
    per_user: Annotated[bool, Doc("One instance per user, with their own `user_env` (docs/security.md).")]
    instances: NotRequired[
        Annotated[
            list[SessionInstance],
            Doc(
                "A per_session or per_user server's instances that run or start now (only on such a server)."
            ),
        ]
    ]
    tool_names: NotRequired[
        Annotated[list[str], Doc("Its tools' names (only on `GET /api/servers/{tenant}/{server}`).")]
    ]


class ServerList(TypedDict):
    """Servers."""

    servers: list[ServerStatus]


class ServerLogs(TypedDict):
    """The last lines of a server's stderr, oldest first."""

    tenant: str
    server: str
    lines: list[str]


# --------------------------------------------------------------------------- tenants


class Quota(TypedDict):
    """A limit and its current usage."""

    limit: Annotated[int | None, Doc("The limit; null means unlimited.")]
    used: int


class MeasuredQuota(TypedDict):
    """A limit of the tenant's stdio servers' resources and what they use now."""

    limit: Annotated[int | None, Doc("The limit; null means unlimited.")]
    used: Annotated[
        int | None,
        Doc(
            "MiB (`max_memory_mb`) or processes and threads (`max_processes`) its stdio servers use now; "
            "null where no cgroup counts it (nor without max_memory_mb or max_processes)."
        ),
    ]


class TenantQuotas(TypedDict):
    """Each quota with its current usage."""

    max_servers: Quota
    max_tools: Quota
    max_concurrent_calls: Quota
    max_calls_per_minute: Quota
    max_sessions_per_server: Annotated[
        Quota, Doc("`used`: the most session instances any one per_session server runs.")
    ]
    max_memory_mb: MeasuredQuota
    max_processes: MeasuredQuota


class Tenant(TypedDict):
    """A tenant (never its keys or credentials)."""

    name: str
    description: str
    quotas: Annotated[TenantQuotas, Doc("Each quota with its current usage.")]
    hidden_tools: Annotated[int, Doc("Tools left out of the catalog by `max_tools`.")]
    servers: list[ServerSnapshot]


class TenantList(TypedDict):
    """Tenants with quotas, usage and servers."""

    tenants: list[Tenant]


class TenantOutcome(TypedDict):
    """What a tenant-wide start or stop did, per server."""

    tenant: str
    action: Annotated[str, OneOf("start", "stop")]
    servers: Annotated[
        dict[str, str],
        Doc(
            "Per server: its state, or why not (`disabled`, `on_demand`, `per_session`, "
            "`quota_exceeded: ...`, `error: ...`)."
        ),
    ]


# --------------------------------------------------------------------------- resources and prompts


@_OPEN
class Resource(TypedDict):
    """An MCP resource as the server listed it, plus `server`."""

    uri: str
    server: Annotated[str, Doc("The server offering it.")]


@_OPEN
class ResourceTemplate(TypedDict):
    """An MCP resource template as the server listed it, plus `server`: read a URI it matches with
    `resources/read`."""

    uriTemplate: Annotated[str, Doc("An RFC 6570 URI template.")]  # (MCP's own name)
    server: Annotated[str, Doc("The server offering it.")]


class ResourceList(TypedDict):
    """The resources and, apart, the resource templates."""

    resources: list[Resource]
    resource_templates: list[ResourceTemplate]


@_OPEN
class ResourceContents(TypedDict):
    """The MCP `ReadResourceResult`."""

    contents: list[dict[str, Any]]


@_OPEN
class Prompt(TypedDict):
    """An MCP prompt as the server listed it, with its catalog id as `name`."""

    name: Annotated[str, Doc("Catalog id, `<server>.<name>`.")]
    server: str


class PromptList(TypedDict):
    """The prompts."""

    prompts: list[Prompt]


@_OPEN
class PromptMessages(TypedDict):
    """The MCP `GetPromptResult`."""

    messages: list[dict[str, Any]]


# --------------------------------------------------------------------------- apps


class PluginApp(TypedDict):
    """An app of `plugins_dir`, opened at `url`."""

    id: str
    kind: Literal["plugin"]
    name: str
    description: str
    version: str
    entry: str
    tenants: Annotated[list[str] | None, Doc("The tenants that may use it (null: every one).")]
    url: str


class McpApp(TypedDict):
    """A tool of a running server whose `_meta.ui.resourceUri` names a `ui://` view."""

    id: Annotated[str, Doc("`ui:{tenant}:{server}.{tool}`")]
    kind: Literal["mcp_app"]
    name: str
    description: str
    tenants: list[str]
    server: str
    tool: str
    resource_uri: Annotated[str, Doc("The tool's `_meta.ui.resourceUri` (`ui://...`).")]
    url: Annotated[str, Doc("The hub's host page for the view: `/ui/{tenant}/{server}/{tool}`.")]


App = Annotated[PluginApp | McpApp, Field(discriminator="kind")]


class AppList(TypedDict):
    """The apps (and, for an admin, the manifests that were skipped)."""

    apps: list[App]
    problems: NotRequired[Annotated[list[str], Doc("Why each skipped manifest was (admin keys only).")]]


# --------------------------------------------------------------------------- components

COMPONENTS: dict[str, Any] = {
    t.__name__: t
    for t in (
        Error,
        About,
        Health,
        ReloadReport,
        Tool,
        ToolList,
        ToolResult,
        SessionEnded,
        ServerSnapshot,
        SessionInstance,
        ServerStatus,
        ServerList,
        ServerLogs,
        Quota,
        MeasuredQuota,
        Tenant,
        TenantList,
        TenantOutcome,
        Resource,
        ResourceTemplate,
        ResourceList,
        ResourceContents,
        Prompt,
        PromptList,
        PromptMessages,
        PluginApp,
        McpApp,
        AppList,
    )
} | {"App": App}
"""Every response type by its component name (`#/components/schemas/<name>`)."""
