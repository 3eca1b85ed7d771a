"""What a tenant hands out, as frozen data: its lease (to the router, to route calls) and its info
(to the API: quotas with their usage, and the servers).

Built on the tenant actor's thread; read on any thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, cast

from actors.call_gate import CallGate
from actors.models import ServerState, ServerStatus
from actors.server import ServerEndpoint
from hub.config import Quotas, ServerConfig, TenantConfig

if TYPE_CHECKING:  # the REST answers' types (a type-only import: actors never import web at run time)
    from web import responses as api

ACTIVE = (ServerState.STARTING, ServerState.RUNNING, ServerState.BACKOFF)


@dataclass(frozen=True)
class TenantLease:
    """What the router keeps of a tenant: its gate and its servers' endpoints (thread-safe objects)."""

    tenant: str
    gate: CallGate
    endpoints: Mapping[str, ServerEndpoint]
    call_timeouts: Mapping[str, float]
    on_demand: Mapping[str, bool]  # started by a call when stopped (on_demand and enabled)
    per_session: Mapping[str, bool]  # one instance per session (per_session and enabled)


def lease_of(config: TenantConfig, gate: CallGate, endpoints: Mapping[str, ServerEndpoint]) -> TenantLease:
    """The lease of a tenant configured as `config`, whose servers have `endpoints`."""
    servers = config.servers
    return TenantLease(
        config.name,
        gate,
        MappingProxyType(dict(endpoints)),
        MappingProxyType({name: s.call_timeout for name, s in servers.items()}),
        MappingProxyType({name: s.on_demand and s.enabled for name, s in servers.items()}),
        MappingProxyType({name: (s.per_session or s.per_user) and s.enabled for name, s in servers.items()}),
    )


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
        active = sum(1 for s in self.servers if s.state in ACTIVE)
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


def changed_servers(old: TenantConfig, new: TenantConfig) -> set[str]:
    """The servers a reload keeps whose configuration (or their tenant's env, or their pinning)
    changed."""
    env_changed = old.env != new.env
    return {
        name
        for name, server in new.servers.items()
        if name in old.servers
        and (env_changed or old.servers[name] != server or old.pinning_of(name) != new.pinning_of(name))
    }


def starts_with_tenant(config: ServerConfig) -> bool:
    """Whether a server starts when its tenant's servers do (enabled, and not on_demand)."""
    return config.enabled and not config.on_demand


def started_by_reload(
    statuses: Mapping[str, ServerStatus],
    config: TenantConfig,
    auto_start: bool,
    changed: set[str],
    added: list[str],
) -> tuple[set[str], set[str]]:
    """Of the servers a reload replaces or adds: those it restarts (they were active, and are not
    on_demand), and all it starts (new ones too, if any server ran, or `auto_start`)."""
    active = {name for name, status in statuses.items() if status.state in ACTIVE}
    restart = {name for name in changed if name in active and not config.servers[name].on_demand}
    if not (auto_start or active):
        return restart, restart
    return restart, restart | {name for name in added if starts_with_tenant(config.servers[name])}
