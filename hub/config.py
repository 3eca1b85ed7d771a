"""Configuration: find, parse, expand, validate and freeze a hub configuration.

The pipeline is `yaml` (JSON is read by the same parser) → duplicate-key check → `${VAR}` and
`${VAR:-default}` expansion in every string → JSON Schema validation (`schemas/config.schema.json`,
draft 2020-12) → semantic checks → frozen dataclasses. Every problem found on the way is collected
and reported at once, sorted, as `path: message`; a configuration with any problem raises
`ConfigError` and yields nothing.

Secrets (tenant and server `env`, `headers`, admin and tenant keys) are held in `Secret` and
`SecretMap`, whose `repr` and `str` show `********`; the real value is only reachable through
`reveal()`, which the runtime calls where it hands the value to a child process or an upstream.

Everything here is pure data: no actors, no threads, safe to use from any thread.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema
import yaml

import schemas
from hub.errors import ConfigError, ConfigUnreadable

MASK = "********"
DEFAULT_CONFIG_PATH = Path("config") / "hub.yaml"
CONFIG_ENV_VAR = "MCP_HUB_CONFIG"

# Paths (as tuples of keys) whose values are secrets: never echoed in any message.
_SECRET_KEYS = frozenset({"env", "headers", "api_keys", "admin_keys"})
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
DEFAULT_IDLE_TIMEOUT = 300.0  # seconds an on_demand server may sit without a call before it is stopped


# --------------------------------------------------------------------------- secrets


class Secret:
    """A secret string: prints as `********`; `reveal()` gives the value.

    Compared in constant time, so key checks do not leak a prefix through timing.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value. Call only where the value leaves for its legitimate use."""
        return self._value

    def matches(self, candidate: str) -> bool:
        """Whether `candidate` equals the secret, compared in constant time."""
        import hmac

        return hmac.compare_digest(self._value.encode(), candidate.encode())

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and self.matches(other._value)

    def __hash__(self) -> int:
        return hash(self._value)


class SecretMap(Mapping[str, str]):
    """An immutable name → secret value mapping (environment, headers).

    Iterating and indexing give the real values (the runtime needs them to start children); `repr`,
    `str` and `masked()` show the names with every value as `********`.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, str] | None = None) -> None:
        self._data = dict(data or {})

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def masked(self) -> dict[str, str]:
        """The names, each mapped to `********`: what output and logs may show."""
        return dict.fromkeys(self._data, MASK)

    def reveal(self) -> dict[str, str]:
        """A plain copy with the real values, for a child process environment or HTTP headers."""
        return dict(self._data)

    def __repr__(self) -> str:
        return f"SecretMap({self.masked()!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretMap) and self._data == other._data

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._data.items())))


_REDACT_MIN = 4  # shorter values are no secret, and masking them would garble ordinary words


def redact(text: str, *maps: SecretMap) -> str:
    """`text` with every value of `maps` (of 4 characters or more) shown as `********`: for text
    the hub did not write itself, such as a server's stderr, which may echo its environment."""
    values = {v for secrets in maps for v in secrets.values() if len(v) >= _REDACT_MIN}
    for value in sorted(values, key=len, reverse=True):  # a value inside a longer one: the longer first
        text = text.replace(value, MASK)
    return text


# --------------------------------------------------------------------------- frozen config


@dataclass(frozen=True)
class ToolFilter:
    """Glob patterns on a server's own tool names: `allow` (empty = all), then `deny`."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()

    def admits(self, tool_name: str) -> bool:
        """Whether the tool passes the filter."""
        from fnmatch import fnmatchcase

        if self.allow and not any(fnmatchcase(tool_name, p) for p in self.allow):
            return False
        return not any(fnmatchcase(tool_name, p) for p in self.deny)


@dataclass(frozen=True)
class SandboxBind:
    """A host path shown inside a server's sandbox, at the same path: read-only or read-write."""

    path: str  # absolute
    mode: str = "ro"  # "ro" or "rw"


@dataclass(frozen=True)
class LimitsConfig:
    """Resource limits of one stdio server (`actors.limits`); None: unlimited."""

    memory_mb: int | None = None  # its processes' memory together (MiB)
    processes: int | None = None  # its processes and threads at once
    cpu: float | None = None  # CPUs' worth of time (0.5: half of one)

    @property
    def any(self) -> bool:
        """Whether any limit is set."""
        return any(v is not None for v in (self.memory_mb, self.processes, self.cpu))

    def describe(self) -> str:
        """ "memory 256 MB, 64 processes, 0.5 CPU" (only the limits set)."""
        parts = [f"memory {self.memory_mb} MB"] if self.memory_mb is not None else []
        parts += [f"{self.processes} processes"] if self.processes is not None else []
        parts += [f"{self.cpu:g} CPU"] if self.cpu is not None else []
        return ", ".join(parts) or "none"


@dataclass(frozen=True)
class SandboxConfig:
    """How a stdio server is sandboxed (`actors.sandbox`), as it applies to a server or a level.

    At each level (orchestrator, tenant, server) the keys set override the level above, and
    `binds` add to its binds (a later bind of the same path sets its mode).
    """

    enabled: bool = True
    required: bool = False  # refuse to start the server where it cannot be sandboxed
    network: str = "host"  # "host" or "none" (an empty network namespace)
    binds: tuple[SandboxBind, ...] = ()
    limits: LimitsConfig = field(default_factory=LimitsConfig)

    def merged(self, raw: Mapping[str, Any] | None, base: Path) -> SandboxConfig:
        """This configuration overridden by `raw` (a `sandbox` mapping of the level below)."""
        if not raw:
            return self
        binds = {b.path: b for b in self.binds}
        for item in raw.get("binds", ()):
            path = os.path.abspath(base / item["path"])  # (symlinks kept: the path the server is told)
            binds.pop(path, None)  # (re-inserted last: the order says which bind wins)
            binds[path] = SandboxBind(path, item.get("mode", "ro"))
        plain = {k: raw[k] for k in ("enabled", "required", "network") if k in raw}
        limits = dataclasses.replace(self.limits, **raw.get("limits", {}))
        return dataclasses.replace(self, binds=tuple(binds.values()), limits=limits, **plain)


@dataclass(frozen=True)
class ServerConfig:
    """One MCP server of a tenant, as configured."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: SecretMap = field(default_factory=SecretMap)
    cwd: str | None = None
    enabled: bool = True
    type: str = "generic"
    capabilities: tuple[str, ...] = ("tools", "resources", "prompts")
    transport: str = "stdio"
    protocol: str = "auto"
    url: str | None = None
    headers: SecretMap = field(default_factory=SecretMap)
    tools: ToolFilter = field(default_factory=ToolFilter)
    call_timeout: float = 60.0
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    lifecycle: str = "always"  # "always" or "on_demand" (always "on_demand" when `per_session`)
    idle_timeout: float | None = None  # None: not configured (`idle_seconds` applies the default)
    per_session: bool = False  # one instance per client session (see `actors.tenant`)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)  # in effect: all levels merged

    @property
    def on_demand(self) -> bool:
        """Whether the server is started by its first call rather than with its tenant."""
        return self.lifecycle == "on_demand"

    @property
    def idle_seconds(self) -> float:
        """Seconds without a call after which an on_demand server is stopped (0: never)."""
        return DEFAULT_IDLE_TIMEOUT if self.idle_timeout is None else self.idle_timeout


@dataclass(frozen=True)
class Quotas:
    """Per-tenant limits; `None` means unlimited."""

    max_servers: int | None = None
    max_tools: int | None = None
    max_concurrent_calls: int | None = None
    max_calls_per_minute: int | None = None
    max_sessions_per_server: int | None = None  # instances of each per_session server at once
    max_memory_mb: int | None = None  # all its stdio servers' memory together (MiB; a cgroup)
    max_processes: int | None = None  # all its stdio servers' processes and threads (a cgroup)


@dataclass(frozen=True)
class TenantConfig:
    """A tenant: its keys, credentials, quotas and servers (in configuration order)."""

    name: str
    description: str = ""
    api_keys: tuple[Secret, ...] = ()
    env: SecretMap = field(default_factory=SecretMap)
    quotas: Quotas = field(default_factory=Quotas)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)  # orchestrator's, then the tenant's
    servers: Mapping[str, ServerConfig] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class GatewayConfig:
    """Where and how the hub listens."""

    host: str = "127.0.0.1"
    port: int = 8080
    mcp_port: int | None = 8000
    websocket_port: int | None = 8081
    plugins_dir: str = "plugins"
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    tool_name_separator: str = "__"
    max_body_bytes: int = 1024 * 1024
    mcp_session_idle_timeout: float = 1800.0
    mcp_keepalive_interval: float = 15.0
    mcp_unused_session_timeout: float = 60.0
    mcp_max_sessions_per_key: int = 100
    mcp_max_sessions_per_tenant: int = 1000
    idle_connection_timeout: float = 60.0
    body_timeout: float = 60.0
    max_connections: int = 4096
    max_connections_per_client: int | None = 256
    # The keys the file sets (the others are defaults): lets `serve` say which setting chose a port.
    explicit: frozenset[str] = field(default=frozenset(), compare=False)


@dataclass(frozen=True)
class OrchestratorConfig:
    """Supervision settings shared by every server."""

    auto_start: bool = False
    max_retries: int = 3  # restarts in a row in state `backoff`; then `failed` (retrying, or not: `restart`)
    restart: str = "always"  # always: a failed server keeps being retried; limited: it stays failed
    startup_timeout: float = 30.0
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    notification_rate: float | None = 100.0  # notifications per second per server (None: no limit)
    notification_burst: int = 500
    shutdown_grace: float = 5.0
    data_dir: str = ".mcp-hub"
    log_max_bytes: int = 1024 * 1024
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)  # the defaults of every stdio server


@dataclass(frozen=True)
class AuditConfig:
    """Where tool calls are audited (`file` None: nowhere), and whether arguments are included."""

    file: str | None = None
    include_arguments: bool = False


@dataclass(frozen=True)
class AuthConfig:
    """Admin keys; tenant keys live on their tenants."""

    admin_keys: tuple[Secret, ...] = ()


@dataclass(frozen=True)
class HubConfig:
    """A whole, valid hub configuration."""

    tenants: Mapping[str, TenantConfig]
    version: str = "1.0.0"
    auth: AuthConfig = field(default_factory=AuthConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    orchestrator: OrchestratorConfig = field(default_factory=OrchestratorConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    source: str = "<memory>"

    @property
    def has_keys(self) -> bool:
        """Whether any admin or tenant key is configured (if none, the hub is open on loopback)."""
        return bool(self.auth.admin_keys) or any(t.api_keys for t in self.tenants.values())

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
                if server.idle_timeout is not None and not server.on_demand:
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


# --------------------------------------------------------------------------- loading


def find_config_path(
    explicit: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None
) -> Path:
    """The config file to use: `explicit` (``--config``), else `$MCP_HUB_CONFIG`, else ./config/hub.yaml."""
    environ = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if environ.get(CONFIG_ENV_VAR):
        return Path(environ[CONFIG_ENV_VAR])
    return DEFAULT_CONFIG_PATH


def config_path_origin(explicit: object, environ: Mapping[str, str] | None = None) -> str:
    """Why `find_config_path` chose its path (same arguments), for messages."""
    environ = os.environ if environ is None else environ
    if explicit:
        return "--config"
    if environ.get(CONFIG_ENV_VAR):
        return f"${CONFIG_ENV_VAR} (no --config given)"
    return f"the default ./{DEFAULT_CONFIG_PATH} (no --config given, ${CONFIG_ENV_VAR} not set)"


def load_config(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None, tenant: str | None = None
) -> HubConfig:
    """Read and validate the configuration file at `path`.

    Args:
        path: a YAML or JSON file.
        environ: variables for `${VAR}` expansion; the process environment by default.
        tenant: keep only this tenant (see `parse_config`).

    Raises:
        ConfigError: with every problem found, each as `path: message`; `ConfigUnreadable` when
            the file cannot be read.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigUnreadable([f"{path}: cannot read the configuration file: {reason}"]) from None
    return parse_config(
        text, source=str(path), environ=environ, base=Path(path).resolve().parent, tenant=tenant
    )


def parse_config(
    text: str,
    source: str = "<memory>",
    environ: Mapping[str, str] | None = None,
    base: Path | None = None,
    tenant: str | None = None,
) -> HubConfig:
    """Validate configuration `text` (YAML or JSON) and return it frozen.

    Args:
        text: the configuration.
        source: where it came from, for messages.
        environ: variables for `${VAR}` expansion; the process environment by default.
        base: the folder relative paths (`data_dir`, `plugins_dir`, a server's `cwd`) are resolved
            against: the configuration file's folder; the working directory by default.
        tenant: keep only this tenant, without keys (the stdio facade's view, `only_tenant`):
            nothing of the other tenants or of `auth` is expanded or checked.

    Raises:
        ConfigError: with every problem found, each as `path: message`.
    """
    environ = os.environ if environ is None else environ
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(source, exc)]) from None
    problems = list(_duplicate_keys(node, ()))
    data = yaml.safe_load(text) if node is not None else None
    if not isinstance(data, dict):
        raise ConfigError([*problems, f"{source}: the configuration must be a mapping with a 'tenants' key"])
    if tenant is not None:
        data = only_tenant(data, tenant, source)

    unset: list[tuple[Any, ...]] = []
    data = _expand(data, (), environ, unset)
    problems.extend(_unset_problem(path, name) for path, name in unset)
    # A field whose variable is unset is reported once, for that reason only.
    failed = {path for path, _ in unset}
    problems.extend(problem for error_path, problem in _schema_problems(data) if error_path not in failed)
    problems.extend(_semantic_problems(data))
    if problems:
        raise ConfigError(sorted(set(problems)))
    return _build(data, source, base or Path.cwd())


def only_tenant(data: dict[str, Any], tenant: str, source: str) -> dict[str, Any]:
    """The part of raw configuration `data` that a process serving only `tenant` reads.

    That is tenant `tenant` and the shared sections, without `auth` and without the tenant's
    `api_keys`: the stdio facade's client is that tenant by construction and shows no key, so
    neither another tenant's variables nor any key's have to be set for it to start.

    Raises:
        ConfigError: `tenant` is not in the file (the message lists the tenants that are).
    """
    tenants = data.get("tenants")
    if not isinstance(tenants, dict) or not isinstance(tenants.get(tenant), dict):
        known = ", ".join(map(str, tenants)) if isinstance(tenants, dict) and tenants else "none"
        raise ConfigError([f"{source}: no tenant {tenant!r} (tenants: {known})"])
    kept = {key: value for key, value in tenants[tenant].items() if key != "api_keys"}
    return {**{key: value for key, value in data.items() if key != "auth"}, "tenants": {tenant: kept}}


def _yaml_problem(source: str, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    detail = f"{context}, {problem}" if context else problem
    return f"{where}: syntax error: {detail}"


def dotted_path(path: tuple[Any, ...]) -> str:
    """`('tenants', 'acme', 'api_keys', 0)` → `tenants.acme.api_keys[0]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _is_secret(path: tuple[Any, ...]) -> bool:
    return any(part in _SECRET_KEYS for part in path if isinstance(part, str))


def _duplicate_keys(node: yaml.Node | None, path: tuple[Any, ...]) -> Iterator[str]:
    """Duplicate mapping keys, which YAML (and JSON) parsers otherwise silently collapse."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                yield (
                    f"{dotted_path((*path, key))}: duplicate key (line {key_node.start_mark.line + 1}; "
                    f"first defined on line {seen[key]})"
                )
            else:
                seen[key] = key_node.start_mark.line + 1
            yield from _duplicate_keys(value_node, (*path, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*path, i))


def _unset_problem(path: tuple[Any, ...], name: str) -> str:
    where = dotted_path(path)
    return f"{where}: environment variable {name!r} is not set (give a default with ${{{name}:-...}})"


def _expand(value: Any, path: tuple[Any, ...], environ: Mapping[str, str], unset: list[Any]) -> Any:
    """Expand `${VAR}`, `${VAR:-default}` and `$$` (a literal `$`) in every string, recursively.

    `unset` collects `(path, variable)` for each variable that is unset and has no default.
    """
    if isinstance(value, dict):
        return {k: _expand(v, (*path, k), environ, unset) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, (*path, i), environ, unset) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in environ and (environ[name] != "" or default is None):
            return environ[name]
        if default is not None:
            return default
        unset.append((path, name))
        return ""

    return _VAR.sub(substitute, value)


# --------------------------------------------------------------------------- schema errors


def validation_problems(schema: str, data: Any) -> list[str]:
    """Every violation of schema `schema` (a name in `schemas`) by `data`, sorted, as `path: message`."""
    return sorted({problem for _, problem in _schema_problems(data, schema)})


def _schema_problems(data: Any, schema: str = "config") -> Iterator[tuple[tuple[Any, ...], str]]:
    """`(path of the value, "path: message")` for every schema violation."""
    validator = jsonschema.Draft202012Validator(schemas.load(schema))
    for error in validator.iter_errors(data):
        for problem in _describe(error):
            yield tuple(error.absolute_path), problem


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _describe(error: jsonschema.ValidationError) -> Iterator[str]:
    """Turn one jsonschema error into `path: message` lines that never echo a secret."""
    path = tuple(error.absolute_path)
    where = dotted_path(path)
    secret = _is_secret(path)
    kind, instance, schema = error.validator, error.instance, error.schema
    if kind == "required":
        missing = re.match(r"'([^']+)'", error.message)
        name = missing.group(1) if missing else "?"
        note = ""
        if name in ("command", "url") and isinstance(instance, dict):
            note = f" for transport {instance.get('transport', 'stdio')!r}"
        yield f"{dotted_path((*path, name))}: {name!r} is required{note}"
    elif kind == "additionalProperties" and isinstance(instance, dict):
        known = schema.get("properties", {})
        for key in instance:
            if key not in known:
                yield f"{dotted_path((*path, key))}: unknown key{_did_you_mean(key, known)}"
    elif "propertyNames" in error.relative_schema_path:
        # jsonschema reports a bad name as an error of the name, at the path of its mapping.
        bad = instance
        what = "server" if path and path[-1] == "servers" else "tenant" if path == ("tenants",) else "key"
        yield (
            f"{dotted_path((*path, bad))}: invalid {what} name {bad!r}: "
            "use 1 to 32 letters, digits, '_' or '-'"
        )
    elif kind == "type":
        expected = schema["type"]
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        yield f"{where}: expected {expected.replace('object', 'mapping')}, got {_json_type(instance)}"
    elif kind in ("enum", "const"):
        options = schema.get("enum", [schema.get("const")])
        got = "" if secret else f", got {instance!r}{_did_you_mean(instance, options)}"
        yield f"{where}: must be one of {', '.join(repr(o) for o in options)}{got}"
    elif kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[kind]
        yield f"{where}: must be {op} {schema[kind]} (got {instance!r})"
    elif kind == "minLength":
        yield f"{where}: must not be empty"
    elif kind == "pattern":
        got = "" if secret else f" (got {instance!r})"
        yield f"{where}: must match {schema['pattern']}{got}"
    elif kind == "uniqueItems":
        yield f"{where}: items must be unique"
    elif secret:
        yield f"{where}: invalid value ({kind})"
    else:
        yield f"{where}: {error.message}"


def _semantic_problems(data: dict[str, Any]) -> Iterator[str]:
    """Checks JSON Schema cannot express: a server's `name` must equal its key; a per_session
    server starts on demand."""
    tenants = data.get("tenants")
    for tenant_id, tenant in tenants.items() if isinstance(tenants, dict) else ():
        servers = tenant.get("servers") if isinstance(tenant, dict) else None
        for key, server in servers.items() if isinstance(servers, dict) else ():
            if isinstance(server, dict) and "name" in server and server["name"] != key:
                yield (
                    f"tenants.{tenant_id}.servers.{key}.name: {server['name']!r} differs from the "
                    f"server's key {key!r} (omit 'name' or make them equal)"
                )
            per_session = isinstance(server, dict) and server.get("per_session") is True
            if per_session and server.get("lifecycle", "on_demand") != "on_demand":
                yield (
                    f"tenants.{tenant_id}.servers.{key}.lifecycle: a per_session server is started "
                    "by each session's first call (on_demand): omit 'lifecycle' or set it to 'on_demand'"
                )


# --------------------------------------------------------------------------- building


def _fields(cls: type, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `raw` that are plain fields of dataclass `cls`."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in raw.items() if k in names}


def _keys(values: list[str] | None) -> tuple[Secret, ...]:
    return tuple(Secret(v) for v in values or () if v != "")


def _absolute(base: Path, path: str | None) -> str | None:
    return None if path is None else str((base / path).resolve())


def _build(data: dict[str, Any], source: str, base: Path) -> HubConfig:
    sandbox = SandboxConfig().merged(data.get("orchestrator", {}).get("sandbox"), base)
    tenants = {}
    for tenant_id, raw in data["tenants"].items():
        tenant_sandbox = sandbox.merged(raw.get("sandbox"), base)
        servers = {}
        for name, s in (raw.get("servers") or {}).items():
            plain = _fields(ServerConfig, s)
            plain.update(
                name=name,
                args=tuple(s.get("args", ())),
                env=SecretMap(s.get("env")),
                headers=SecretMap(s.get("headers")),
                capabilities=tuple(s.get("capabilities", ServerConfig.capabilities)),
                tools=ToolFilter(
                    tuple(s.get("tools", {}).get("allow", ())), tuple(s.get("tools", {}).get("deny", ()))
                ),
                metadata=MappingProxyType(dict(s.get("metadata", {}))),
                call_timeout=float(s.get("call_timeout", ServerConfig.call_timeout)),
                idle_timeout=float(s["idle_timeout"]) if "idle_timeout" in s else None,
                lifecycle="on_demand" if s.get("per_session") else s.get("lifecycle", "always"),
                cwd=_absolute(base, s.get("cwd")),
                sandbox=tenant_sandbox.merged(s.get("sandbox"), base),
            )
            servers[name] = ServerConfig(**plain)
        tenants[tenant_id] = TenantConfig(
            name=tenant_id,
            description=raw.get("description", ""),
            api_keys=_keys(raw.get("api_keys")),
            env=SecretMap(raw.get("env")),
            quotas=Quotas(**raw.get("quotas", {})),
            sandbox=tenant_sandbox,
            servers=MappingProxyType(servers),
        )
    gateway: dict[str, Any] = dict(data.get("gateway", {}))
    gateway["explicit"] = frozenset(gateway)
    gateway["allowed_hosts"] = tuple(gateway.get("allowed_hosts", ()))
    gateway["allowed_origins"] = tuple(gateway.get("allowed_origins", ()))
    gateway["plugins_dir"] = _absolute(base, gateway.get("plugins_dir", GatewayConfig.plugins_dir))
    orchestrator: dict[str, Any] = {
        k: float(v) if isinstance(v, int) and not isinstance(v, bool) and k in _FLOAT_KEYS else v
        for k, v in data.get("orchestrator", {}).items()
    }
    orchestrator["data_dir"] = _absolute(base, orchestrator.get("data_dir", OrchestratorConfig.data_dir))
    orchestrator["sandbox"] = sandbox
    return HubConfig(
        tenants=MappingProxyType(tenants),
        version=data.get("version", "1.0.0"),
        auth=AuthConfig(admin_keys=_keys(data.get("auth", {}).get("admin_keys"))),
        gateway=GatewayConfig(**gateway),
        orchestrator=OrchestratorConfig(**orchestrator),
        audit=AuditConfig(
            file=_absolute(base, data.get("audit", {}).get("file")),
            include_arguments=data.get("audit", {}).get("include_arguments", False),
        ),
        source=source,
    )


_FLOAT_KEYS = frozenset(
    {"startup_timeout", "backoff_initial", "backoff_max", "shutdown_grace", "notification_rate"}
)
