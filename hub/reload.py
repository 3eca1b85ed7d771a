"""Reload: apply a new, already valid configuration to a running hub without a restart.

`Hub.reload` hands its work here (on the reloading thread: any thread but a loop's, under the
hub's reload lock). Tenants removed are stopped and added ones started; the others are
reconfigured by their tenant actor, which keeps unchanged servers and their calls in flight.
Starts that calls wait for on a server that changed fail (`Wakes.abandon`), and the route cache is
dropped. Log lines keep the hub's logger name (`hub.runtime`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from hub import timeouts
from hub.audit import AuditLog
from hub.config import HubConfig
from hub.errors import NotFound, NotRunning

if TYPE_CHECKING:
    from hub.runtime import Hub

log = logging.getLogger("hub.runtime")


def apply(hub: Hub, config: HubConfig, ask_timeout: float) -> dict[str, Any]:
    """Apply `config` to `hub` (see `Hub.reload`); the summary of what changed.

    `ask_timeout` bounds each ask of the router or a tenant that does not stop servers.
    """
    old = hub.config
    router = hub.router
    summary: dict[str, Any] = {"tenants": {}, "servers": {}, "restart_needed": []}
    for name in [t for t in old.tenants if t not in config.tenants]:
        router.remove_tenant(name).get(timeout=timeouts.LIFECYCLE)
        summary["tenants"][name] = "removed"
        hub.wakes.abandon(NotFound(f"no tenant '{name}'"), tenant=name)
    for name, tenant in config.tenants.items():
        if name not in old.tenants:
            router.add_tenant(tenant).get(timeout=ask_timeout)
            summary["tenants"][name] = "added"
            continue
        proxy = router.tenant(name).get(timeout=ask_timeout)
        lease, outcome = proxy.reconfigure(tenant, config.orchestrator).get(timeout=timeouts.LIFECYCLE)
        router.update_tenant(lease, tuple(tenant.servers)).get(timeout=ask_timeout)
        summary["tenants"][name] = "unchanged" if old.tenants[name] == tenant else "updated"
        summary["servers"][name] = outcome
        hub.wakes.abandon(
            NotRunning("the server was reconfigured while it was starting: try again"),
            tenant=name,
            servers={s for s, what in outcome.items() if what not in ("added", "unchanged")},
        )
    summary["restart_needed"] = _restart_needed(old, config)
    hub.config = config
    hub.routes.clear()
    if old.audit != config.audit:
        hub.audit.close()
        hub.audit = AuditLog(config.audit)
    hub.rebalancer.reloaded(_added(summary))  # (a cluster's replica keeps only its share of them)
    for name in summary["tenants"]:
        if summary["tenants"][name] == "added" and config.orchestrator.auto_start:
            hub.start_tenant(name, wait=False)
    log.info("configuration reloaded: %s", summary)
    return summary


def _added(summary: dict[str, Any]) -> dict[str, list[str]]:
    """Per tenant kept, the servers the reload added."""
    return {t: [s for s, what in out.items() if what == "added"] for t, out in summary["servers"].items()}


def _restart_needed(old: HubConfig, new: HubConfig) -> list[str]:
    """The sections a reload changed that apply only after a restart (or only to later starts)."""
    out = []
    if old.gateway != new.gateway:
        out.append("gateway")
    if old.cluster != new.cluster:
        out.append("cluster")  # (the replica keeps its id, its Redis and its heartbeat until then)
    if old.orchestrator != new.orchestrator:
        out.append("orchestrator (applies to servers started from now on)")
    return out
