"""The configuration model: one frozen pydantic model per section of a hub configuration.

These classes are what the runtime reads (`HubConfig` and its parts) and the one place the
configuration is written down: each field's type, default, constraints and description.
`schemas/config.schema.json`, which validates a file, and `docs/configuration.md` are generated
from them (`hub.config_schema`, `hub.schema_doc`); a model's docstring is its section's
description there, so it is written for the reader of a configuration file.

`hub.config` reads a file into them: `model_validate(data, context={"base": folder})` once the
data passed the schema, so relative paths resolve against the configuration file's folder.

Everything here is pure data: no actors, no threads, safe to use from any thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from hub.config_auth import AuthConfig, TenantKeys
from hub.config_cluster import ClusterConfig
from hub.config_fields import (
    EMPTY_MAPPING,
    ConfigModel,
    FilePath,
    Name,
    NonEmpty,
    OptionalFilePath,
    OptionalPort,
    Port,
    PositiveOrNone,
    Secrets,
    named_by_key,
)
from hub.config_manage import DEFAULT_REGISTRIES, Pinning, RegistryConfig
from hub.config_quotas import Quotas
from hub.config_sandbox import SandboxConfig
from hub.config_secrets import SecretMap

DEFAULT_IDLE_TIMEOUT = 300.0  # seconds an on_demand server may sit without a call before it is stopped
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


# --------------------------------------------------------------------------- servers and tenants


class ToolFilter(ConfigModel):
    """Glob patterns on a server's own tool names: `allow` (empty = all), then `deny`."""

    allow: tuple[NonEmpty, ...] = Field(
        default=(), description="Glob patterns on the server's own tool names; empty allows all."
    )
    deny: tuple[NonEmpty, ...] = Field(
        default=(), description="Glob patterns on the server's own tool names; applied after allow."
    )

    def admits(self, tool_name: str) -> bool:
        """Whether the tool passes the filter."""
        if self.allow and not any(fnmatchcase(tool_name, p) for p in self.allow):
            return False
        return not any(fnmatchcase(tool_name, p) for p in self.deny)


def _server_schema(schema: dict[str, Any]) -> None:
    """In a file a server's name is optional (its key gives it), and its transport decides which
    of `command` and `url` is required."""
    schema.pop("required", None)
    schema["allOf"] = [
        {
            "if": {"properties": {"transport": {"const": "stdio"}}},
            "then": {"required": ["command"], "properties": {"command": {"type": "string"}}},
        },
        {
            "if": {"properties": {"transport": {"enum": ["http", "sse"]}}, "required": ["transport"]},
            "then": {"required": ["url"], "properties": {"url": {"type": "string"}}},
        },
    ]


class ServerConfig(ConfigModel):
    """One MCP server of a tenant: a command run over stdio, or an upstream over http or sse."""

    model_config = ConfigDict(json_schema_extra=_server_schema)

    name: str = Field(description="Optional; must equal the server's key.")
    type: str = Field(default="generic", description="Free-form label (database, api, file...).")
    command: NonEmpty | None = Field(
        default=None,
        description="Executable for the stdio transport. 'python' and 'python3' mean the hub's own "
        "interpreter.",
    )
    args: tuple[str, ...] = ()
    env: Secrets = Field(
        default_factory=SecretMap,
        description="Secret. Overrides the tenant env.",
        json_schema_extra=EMPTY_MAPPING,
    )
    cwd: OptionalFilePath = Field(
        default=None,
        description="Working directory of a stdio server; relative to the configuration file's folder. "
        "Sandboxed, it is bound read-write (see sandbox.binds). Default: its tenant's home when "
        "sandboxed, else the hub's working directory.",
    )
    enabled: bool = True
    capabilities: tuple[Literal["tools", "resources", "prompts"], ...] = Field(
        default=("tools", "resources", "prompts"), json_schema_extra={"uniqueItems": True}
    )
    transport: Literal["stdio", "http", "sse"] = "stdio"
    protocol: Literal["auto", "legacy", "2026-07-28"] = Field(
        default="auto",
        description="auto probes server/discover then falls back to the initialize handshake; legacy "
        "forces the handshake.",
    )
    url: str | None = Field(default=None, pattern="^https?://")
    headers: Secrets = Field(
        default_factory=SecretMap,
        description="Secret. HTTP headers for http/sse.",
        json_schema_extra=EMPTY_MAPPING,
    )
    tools: ToolFilter = Field(default_factory=ToolFilter)
    call_timeout: float = Field(default=60.0, gt=0)
    lifecycle: Literal["always", "on_demand"] = Field(
        default="always",
        description="always: started with its tenant (POST .../start, auto_start). on_demand: not "
        "started with its tenant; the first call (tool, resource, prompt) starts it and is answered "
        "once it runs (bounded by orchestrator.startup_timeout), and it is stopped after idle_timeout "
        "seconds without a call. While it is stopped its catalog is listed from a cache of its last "
        "discovery (under data_dir/catalogs); until it has run once its tools are unknown (start it "
        "once by hand to fill the cache). A disabled on_demand server is neither listed nor started "
        "by calls.",
    )
    idle_timeout: float = Field(
        default=DEFAULT_IDLE_TIMEOUT,
        ge=0,
        description="on_demand only: seconds without a call (and none in flight) after which the "
        "server is stopped; 0 never stops it for idleness.",
    )
    per_session: bool = Field(
        default=False,
        description="One instance (process, or upstream connection) of the server per client session: "
        "each MCP facade session (HTTP Mcp-Session-Id, the stdio client), each request with an "
        "Mcp-Hub-Session header (facade or REST) and each WebSocket app connection gets its own, "
        "started by its first call and stopped when the session ends or after idle_timeout. Implies "
        "lifecycle on_demand: calls without a session (REST or a 2026-07-28 client without an "
        "Mcp-Hub-Session header, the Python API without session=) use the tenant's shared instance, "
        "the server's own entry. Instances are never shared between tenants; quota "
        "max_sessions_per_server.",
    )
    per_user: bool = Field(
        default=False,
        description="One instance of the server per user (the subject of a token, or of a key: its "
        "`subject`, else its id), with that user's own values for `user_env`, set through "
        "PUT /api/me/credentials/{server} and stored encrypted (HUB_SECRET_KEY). Implies lifecycle "
        "on_demand; instances stop after idle_timeout.",
    )
    user_env: tuple[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], ...] = Field(
        default=(),
        description="per_user only: environment variables each user sets for themselves (a token, "
        "a login); a call by a user who has not set them is a tool error naming them.",
    )
    pinning: Pinning | None = Field(
        default=None,
        description="Overrides the tenant's `pinning` for this server (a registry install sets `enforce`).",
    )
    metadata: Annotated[Mapping[Any, Any], AfterValidator(MappingProxyType)] = Field(
        default_factory=lambda: MappingProxyType({}), json_schema_extra=EMPTY_MAPPING
    )
    sandbox: SandboxConfig = Field(
        default_factory=SandboxConfig,
        description="stdio only: overrides the tenant's sandbox settings for this server (its binds "
        "add to those).",
    )  # once loaded: the sandbox in effect, every level merged

    @model_validator(mode="before")
    @classmethod
    def _per_session_is_on_demand(cls, data: Any) -> Any:
        if isinstance(data, dict) and (data.get("per_session") is True or data.get("per_user") is True):
            return {**data, "lifecycle": "on_demand"}
        return data

    @property
    def on_demand(self) -> bool:
        """Whether the server is started by its first call rather than with its tenant."""
        return self.lifecycle == "on_demand"

    @property
    def idle_seconds(self) -> float:
        """Seconds without a call after which an on_demand server is stopped (0: never)."""
        return self.idle_timeout


class TenantConfig(ConfigModel):
    """A tenant: its keys, credentials, quotas and servers (in configuration order)."""

    name: SkipJsonSchema[str]  # its key in `tenants`
    description: str = ""
    api_keys: TenantKeys = ()
    env: Secrets = Field(
        default_factory=SecretMap,
        description="Secret. Environment given to every server of the tenant.",
        json_schema_extra=EMPTY_MAPPING,
    )
    quotas: Quotas = Field(default_factory=Quotas)
    pinning: Pinning = Field(
        default="warn",
        description="When a server's tools change after they were approved (the first catalog "
        "seen is approved): `off` nothing; `warn` an event and a metric, the tools stay; `enforce` "
        "the changed and new tools are hidden and refused until an admin approves them.",
    )
    sandbox: SandboxConfig = Field(
        default_factory=SandboxConfig,
        description="Overrides orchestrator.sandbox for the tenant's servers (its binds add to those).",
    )  # once loaded: the orchestrator's, then the tenant's
    servers: Annotated[Mapping[Name, ServerConfig], AfterValidator(MappingProxyType)] = Field(
        default_factory=lambda: MappingProxyType({}), json_schema_extra=EMPTY_MAPPING
    )

    @field_validator("servers", mode="before")
    @classmethod
    def _name_servers(cls, value: Any) -> Any:
        return named_by_key(value)

    def pinning_of(self, server: str) -> Pinning:
        """The pinning in effect for the tenant's server `server` (its own, else the tenant's)."""
        config = self.servers.get(server)
        return config.pinning if config is not None and config.pinning is not None else self.pinning


# --------------------------------------------------------------------------- shared sections


class GatewayConfig(ConfigModel):
    """Where and how the hub listens."""

    host: NonEmpty = Field(
        default="127.0.0.1",
        description="Address to bind. $MCP_HUB_HOST overrides it, and `serve --host` overrides both.",
    )
    port: Port = Field(
        default=8080,
        description="Port of every route; 0: any free port. $MCP_HUB_PORT overrides it, and "
        "`serve --port` overrides both.",
    )
    mcp_port: OptionalPort = Field(
        default=8000,
        description="Extra listener for the MCP endpoint and /health (the original layout); 0 or null: "
        "none. $MCP_HUB_MCP_PORT overrides it, and `serve --mcp-port` overrides both (`off`: none).",
    )
    websocket_port: OptionalPort = Field(
        default=8081,
        description="Extra listener for the app WebSocket gateway and /health; 0 or null: none. "
        "$MCP_HUB_WS_PORT overrides it, and `serve --ws-port` overrides both (`off`: none).",
    )
    plugins_dir: FilePath = Field(default="plugins", validate_default=True)
    public_url: Annotated[str, Field(pattern="^https?://[^/?#]+$")] | None = Field(
        default=None,
        description="The hub's URL as its clients reach it (scheme and host, no path), for OAuth: the "
        "built-in authorization server's issuer and the resource URLs tokens are for. Default: "
        "http://host:port as bound. Set it behind a proxy or a balancer.",
    )
    allowed_hosts: tuple[NonEmpty, ...] = Field(
        default=(),
        description="Names (`name`: any port; `name:port`) a request's Host header may carry besides "
        "localhost, 127.0.0.1, [::1] and the bound address (any IP address when bound to all "
        "interfaces); `*` allows any. Other names are 421 on every route (a guard against DNS "
        "rebinding): list the names clients and proxies use, e.g. `hub.example.com`.",
    )
    allowed_origins: tuple[NonEmpty, ...] = Field(
        default=(),
        description="Origins (`scheme://host[:port]`, matched exactly; `scheme://host:*`: any port; "
        "`null`: opaque origins) that browsers may call the hub from besides its own, on every route "
        "(REST, WebSocket, MCP). A request carrying another Origin is 403.",
    )
    tool_name_separator: str = Field(default="__", pattern="^[A-Za-z0-9_-]{1,4}$")
    max_body_bytes: int = Field(default=1024 * 1024, ge=1)
    mcp_session_idle_timeout: float = Field(
        default=1800.0,
        gt=0,
        description="Seconds a 2025-11-25 MCP session over HTTP may go without a request (a call in "
        "flight counts as one) before it is ended; its per_session instances stop with it.",
    )
    mcp_keepalive_interval: float = Field(
        default=15.0,
        gt=0,
        description="Seconds a tool call over the HTTP facade may stay silent before its response turns "
        "into an SSE stream, and then between keep-alive comments on it (for proxies that drop idle "
        "connections).",
    )
    mcp_unused_session_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds a 2025-11-25 MCP session over HTTP may live without a request after its "
        "`initialize` (`notifications/initialized` does not count) before it is ended.",
    )
    mcp_max_sessions_per_key: int = Field(
        default=100,
        ge=1,
        description="Open 2025-11-25 MCP sessions over HTTP per key (an open hub counts as one key); "
        "past it `initialize` is 429 with a JSON-RPC error.",
    )
    mcp_max_sessions_per_tenant: int = Field(
        default=1000,
        ge=1,
        description="Open 2025-11-25 MCP sessions over HTTP per tenant, whatever their keys; past it "
        "`initialize` is 429 with a JSON-RPC error.",
    )
    idle_connection_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds a connection may take to send (the rest of) a request's headers: an idle "
        "keep-alive connection, or a client sending its headers slowly, is closed after it.",
    )
    body_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds a client has to send a whole request body; then the connection is closed.",
    )
    max_connections: int = Field(
        default=4096,
        ge=1,
        description="Open HTTP and WebSocket connections of every listener together, and never more "
        "than three quarters of the open-files limit (raised to its hard limit at start). Past it the "
        "oldest idle connection is closed to make room, else the new one gets a 503 at once.",
    )
    max_connections_per_client: PositiveOrNone = Field(
        default=256,
        description="Open connections of one client address; null: no limit (behind a proxy every "
        "client has the proxy's address). Past it that client's oldest idle connection is closed, else "
        "the new one gets a 503 at once.",
    )

    @property
    def explicit(self) -> frozenset[str]:
        """The keys the file sets (the others are defaults): lets `serve` say which setting chose a port."""
        return frozenset(self.model_fields_set)


class OrchestratorConfig(ConfigModel):
    """How servers are supervised: started, restarted, throttled and stopped."""

    auto_start: bool = False
    max_retries: int = Field(
        default=3,
        ge=0,
        description="Restarts in a row (state `backoff`) before a crashing server is `failed`: from then "
        "on it is retried less and less often (see `restart`), its status saying when (`retry_at`, "
        "`retry_in_seconds`). A server that ran for `backoff_max` seconds (10 at least) before it "
        "crashed starts a fresh count.",
    )
    restart: Literal["always", "limited"] = Field(
        default="always",
        description="always: a failed server keeps being retried, like Kubernetes' CrashLoopBackOff: "
        "each wait twice the last, up to `backoff_max`. limited: after `max_retries` restarts in a row "
        "it stays failed until it is started by hand (a hard stop). Either way a configuration problem "
        "(command not found or not executable, a missing cwd, a sandbox or limit the host refuses) "
        "fails at once, without retrying.",
    )
    startup_timeout: float = Field(default=30.0, gt=0)
    backoff_initial: float = Field(
        default=1.0,
        gt=0,
        description="Seconds before the first restart of a crashed server; each further wait in a row "
        "is twice the last.",
    )
    backoff_max: float = Field(
        default=300.0, gt=0, description="The longest wait between two restarts (seconds)."
    )
    notification_rate: float | None = Field(
        default=100.0,
        gt=0,
        description="Notifications (log messages, progress, list_changed, ...) per second the hub takes "
        "from each server; past it (and `notification_burst`) they are dropped, counted in "
        "`mcp_hub_notifications_dropped_total` and logged once per interval. null: no limit.",
    )
    notification_burst: int = Field(
        default=500,
        ge=1,
        description="How many notifications a server may send at once above `notification_rate` (the "
        "token bucket's size).",
    )
    shutdown_grace: float = Field(default=5.0, ge=0)
    data_dir: Annotated[FilePath, Field(min_length=1)] = Field(
        default=".mcp-hub",
        validate_default=True,
        description="Where the hub keeps server logs, caches and the tenants' homes "
        "(`homes/<tenant>`); relative to the configuration file's folder.",
    )
    log_max_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Size cap of each server's stderr log (one rotated backup is kept).",
    )
    sandbox: SandboxConfig = Field(
        default_factory=SandboxConfig,
        description="The sandbox of every stdio server, unless its tenant or itself overrides it.",
    )


class AuditConfig(ConfigModel):
    """One JSON line per tool call: time, tenant, key id (never the key), tool, duration, outcome."""

    file: OptionalFilePath = Field(
        default=None,
        description="The audit log file, relative to the configuration file's folder; null: no audit log.",
    )
    include_arguments: bool = Field(
        default=False, description="Also log each call's arguments (they may hold personal data)."
    )


class HubConfig(ConfigModel):
    """Tenants, their MCP servers, the gateway and the orchestrator. Strings may use ${VAR} and
    ${VAR:-default}."""

    model_config = ConfigDict(title="MCP Hub configuration")

    version: str = Field(default="1.0.0", description="Version of this configuration, free-form.")
    auth: AuthConfig = Field(default_factory=AuthConfig)
    tenants: Annotated[Mapping[Name, TenantConfig], AfterValidator(MappingProxyType)] = Field(
        description="Tenants by id. A tenant id is used in URLs."
    )
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    orchestrator: OrchestratorConfig = Field(default_factory=OrchestratorConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    registries: tuple[RegistryConfig, ...] = Field(
        default=DEFAULT_REGISTRIES,
        description="MCP registries the admin panel lists and installs servers from (default: "
        "the official MCP Registry).",
    )
    cluster: ClusterConfig | SkipJsonSchema[None] = Field(
        default=None, description="Absent: the hub runs alone (docs/cluster.md)."
    )
    source: SkipJsonSchema[str] = "<memory>"  # where it was read from, for messages
    digest: SkipJsonSchema[str | None] = None  # sha256 of the text it was read from (its ETag)

    @field_validator("tenants", mode="before")
    @classmethod
    def _name_tenants(cls, value: Any) -> Any:
        return named_by_key(value)

    @model_validator(mode="before")
    @classmethod
    def _every_section(cls, data: Any) -> Any:
        # An absent section is read as an empty one, so its paths resolve like those of a present one.
        if isinstance(data, dict):
            return {"gateway": {}, "orchestrator": {}, "audit": {}, **data}
        return data

    @property
    def has_keys(self) -> bool:
        """Whether any admin or tenant key, or OAuth, is configured (if none, the hub is open on
        loopback)."""
        return bool(self.auth.admin_keys) or self.auth.oauth or any(t.api_keys for t in self.tenants.values())

    def warnings(self) -> list[str]:
        """Things that are valid but that `serve` will refuse or a reader should know."""
        out = []
        if not self.has_keys and self.gateway.host not in _LOOPBACK_HOSTS:
            out.append(
                f"gateway.host: {self.gateway.host!r} is not a loopback address and no keys are "
                "configured: `serve` refuses to expose an open hub (set auth.admin_keys or tenant "
                "api_keys, or use --host 127.0.0.1)"
            )
        for tenant in self.tenants.values():
            for server in tenant.servers.values():
                if "idle_timeout" in server.model_fields_set and not server.on_demand:
                    out.append(
                        f"tenants.{tenant.name}.servers.{server.name}.idle_timeout: has no effect "
                        "unless lifecycle is 'on_demand'"
                    )
        return out

    def summary(self) -> str:
        """One line: counts of tenants, servers, enabled servers and the auth mode."""
        servers = [s for t in self.tenants.values() for s in t.servers.values()]
        enabled = sum(1 for s in servers if s.enabled)
        on_demand = sum(1 for s in servers if s.on_demand)
        per_session = sum(1 for s in servers if s.per_session)
        lazy = f", {on_demand} on demand" if on_demand else ""
        lazy += f" ({per_session} per session)" if per_session else ""
        auth = "keys" if self.has_keys else "open (no keys)"
        return (
            f"{_plural(len(self.tenants), 'tenant')}, {_plural(len(servers), 'server')} "
            f"({enabled} enabled{lazy}), auth: {auth}"
        )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
