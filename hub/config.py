"""Configuration: find, parse, expand, validate and load a hub configuration.

The pipeline is `yaml` (JSON is read by the same parser) → duplicate-key check → `${VAR}` and
`${VAR:-default}` expansion in every string → JSON Schema validation (`schemas/config.schema.json`,
draft 2020-12, generated from the model) → semantic checks → the frozen model
(`HubConfig.model_validate`), whose sandboxes are then merged level by level. Every problem found
on the way is collected and reported at once, sorted, as `path: message` (`hub.config_problems`);
a configuration with any problem raises `ConfigError` and yields nothing.

The model is in `hub.config_model` and `hub.config_sandbox`, secrets (`Secret`, `SecretMap`, shown
as `********`) in `hub.config_secrets`; this module re-exports them, so `from hub.config import X`
is the one import the rest of the hub needs.

Everything here is pure data: no actors, no threads, safe to use from any thread.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pydantic
import yaml

from hub.config_model import (
    DEFAULT_IDLE_TIMEOUT,
    AuditConfig,
    AuthConfig,
    GatewayConfig,
    HubConfig,
    OrchestratorConfig,
    Quotas,
    ServerConfig,
    TenantConfig,
    ToolFilter,
)
from hub.config_problems import (
    dotted_path,
    duplicate_keys,
    schema_problems,
    semantic_problems,
    unset_problem,
    validation_problems,
    yaml_problem,
)
from hub.config_sandbox import LimitsConfig, SandboxBind, SandboxConfig
from hub.config_secrets import MASK, Secret, SecretMap, redact
from hub.errors import ConfigError, ConfigUnreadable

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_IDLE_TIMEOUT",
    "MASK",
    "AuditConfig",
    "AuthConfig",
    "GatewayConfig",
    "HubConfig",
    "LimitsConfig",
    "OrchestratorConfig",
    "Quotas",
    "SandboxBind",
    "SandboxConfig",
    "Secret",
    "SecretMap",
    "ServerConfig",
    "TenantConfig",
    "ToolFilter",
    "config_path_origin",
    "dotted_path",
    "find_config_path",
    "load_config",
    "only_tenant",
    "parse_config",
    "redact",
    "text_digest",
    "validation_problems",
]

DEFAULT_CONFIG_PATH = Path("config") / "hub.yaml"
CONFIG_ENV_VAR = "MCP_HUB_CONFIG"

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


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
    path: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    tenant: str | None = None,
    keys: bool = False,
) -> HubConfig:
    """Read and validate the configuration file at `path`.

    Args:
        path: a YAML or JSON file.
        environ: variables for `${VAR}` expansion; the process environment by default.
        tenant: keep only this tenant (see `parse_config`).
        keys: with `tenant`, keep its keys (see `parse_config`).

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
        text, source=str(path), environ=environ, base=Path(path).resolve().parent, tenant=tenant, keys=keys
    )


def parse_config(
    text: str,
    source: str = "<memory>",
    environ: Mapping[str, str] | None = None,
    base: Path | None = None,
    tenant: str | None = None,
    keys: bool = False,
) -> HubConfig:
    """Validate configuration `text` (YAML or JSON) and return it as the frozen model.

    Args:
        text: the configuration.
        source: where it came from, for messages.
        environ: variables for `${VAR}` expansion; the process environment by default.
        base: the folder relative paths (`data_dir`, `plugins_dir`, a server's `cwd`) are resolved
            against: the configuration file's folder; the working directory by default.
        tenant: keep only this tenant, without keys (the stdio facade's view, `only_tenant`):
            nothing of the other tenants or of `auth` is expanded or checked.
        keys: with `tenant`, keep that tenant's `api_keys` (`hub stdio --key` checks its key
            against them; their variables must then be set).

    Raises:
        ConfigError: with every problem found, each as `path: message`.
    """
    environ = os.environ if environ is None else environ
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError([yaml_problem(source, exc)]) from None
    problems = list(duplicate_keys(node))
    data = yaml.safe_load(text) if node is not None else None
    if not isinstance(data, dict):
        raise ConfigError([*problems, f"{source}: the configuration must be a mapping with a 'tenants' key"])
    if tenant is not None:
        data = only_tenant(data, tenant, source, keys)

    unset: list[tuple[Any, ...]] = []
    data = _expand(data, (), environ, unset)
    problems.extend(unset_problem(path, name) for path, name in unset)
    # A field whose variable is unset is reported once, for that reason only.
    failed = {path for path, _ in unset}
    problems.extend(problem for error_path, problem in schema_problems(data) if error_path not in failed)
    problems.extend(semantic_problems(data))
    if problems:
        raise ConfigError(sorted(set(problems)))
    return _model(data, source, base or Path.cwd(), text_digest(text))


def text_digest(text: str) -> str:
    """The digest of configuration text: what `HubConfig.digest` holds, the API's ETag."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def only_tenant(data: dict[str, Any], tenant: str, source: str, keys: bool = False) -> dict[str, Any]:
    """The part of raw configuration `data` that a process serving only `tenant` reads.

    That is tenant `tenant` and the shared sections, without `auth` and without the tenant's
    `api_keys`: the stdio facade's client is that tenant by construction and shows no key, so
    neither another tenant's variables nor any key's have to be set for it to start. With `keys`,
    the tenant's `api_keys` stay (a stdio facade given a key checks it against them).

    Raises:
        ConfigError: `tenant` is not in the file (the message lists the tenants that are).
    """
    tenants = data.get("tenants")
    if not isinstance(tenants, dict) or not isinstance(tenants.get(tenant), dict):
        known = ", ".join(map(str, tenants)) if isinstance(tenants, dict) and tenants else "none"
        raise ConfigError([f"{source}: no tenant {tenant!r} (tenants: {known})"])
    kept = {key: value for key, value in tenants[tenant].items() if keys or key != "api_keys"}
    return {**{key: value for key, value in data.items() if key != "auth"}, "tenants": {tenant: kept}}


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


# --------------------------------------------------------------------------- building


def _model(data: dict[str, Any], source: str, base: Path, digest: str) -> HubConfig:
    """The model of valid configuration `data`, relative paths resolved against `base`."""
    try:
        config = HubConfig.model_validate(
            {**data, "source": source, "digest": digest}, context={"base": base}
        )
    except pydantic.ValidationError as exc:  # (a bug: the schema is the model's; still, say where)
        raise ConfigError([f"{dotted_path(e['loc'])}: {e['msg']}" for e in exc.errors()]) from None
    return _in_effect(config)


def _in_effect(config: HubConfig) -> HubConfig:
    """`config` with each sandbox as it applies: the orchestrator's over the defaults, a tenant's
    over the orchestrator's, a server's over its tenant's (as read, each held only its own keys)."""
    sandbox = SandboxConfig().merged(config.orchestrator.sandbox)
    tenants = {}
    for tenant_id, tenant in config.tenants.items():
        tenant_sandbox = sandbox.merged(tenant.sandbox)
        servers = {
            name: server.model_copy(update={"sandbox": tenant_sandbox.merged(server.sandbox)})
            for name, server in tenant.servers.items()
        }
        update = {"sandbox": tenant_sandbox, "servers": MappingProxyType(servers)}
        tenants[tenant_id] = tenant.model_copy(update=update)
    orchestrator = config.orchestrator.model_copy(update={"sandbox": sandbox})
    return config.model_copy(update={"tenants": MappingProxyType(tenants), "orchestrator": orchestrator})
