"""Pinned tools as the API shows and changes them: a server's pins and pending diff, and an
admin's approval or rejection (`hub.pins` holds them; docs/security.md, "Pinned tools").

An approval or a rejection goes down the tree (the router hands out the tenant, which asks the
server and its session instances) so that each screens its last catalog again: the held tools of
an approved catalog are listed at once, and the facades' sessions hear `list_changed` as for any
catalog change. Runs on the caller's thread (a web handler's executor): it asks actors.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from hub import timeouts
from hub.errors import NotFound
from hub.permissions import Permits, Who, free

if TYPE_CHECKING:
    from hub.runtime import Hub

log = logging.getLogger(__name__)


def _check(hub: Hub, tenant: str, server: str) -> str:
    """The pinning mode of a configured server (NotFound: no such tenant or server)."""
    config = hub.config.tenants.get(tenant)
    if config is None or server not in config.servers:
        raise NotFound(f"no server '{server}' in tenant '{tenant}'")
    return config.pinning_of(server)


def view(hub: Hub, tenant: str, server: str, permits: Permits | None = None) -> dict[str, Any]:
    """`GET /api/servers/{t}/{s}/pins`: the pinning mode, the state, the approved digests, the tools
    held now, and the diff of the catalog the server showed last. A caller with restricted grants
    sees only the tools it may call (`hub.permissions`)."""
    mode = _check(hub, tenant, server)
    status = hub.server(tenant, server)
    body = {"tenant": tenant, "server": server, "pinning": mode, **hub.pins.view(tenant, server)}
    body["held"] = list(status.held)
    if not free(permits):
        assert permits is not None
        body["tools"] = {n: d for n, d in body["tools"].items() if permits.may(server, n)}
        body["diff"] = [c for c in body["diff"] if permits.may(server, c["tool"])]
        body["held"] = [n for n in body["held"] if permits.may(server, n)]
    return body


def decide(
    hub: Hub, tenant: str, server: str, approve: bool, digest: str | None, who: Who | None
) -> dict[str, Any]:
    """`POST .../pins/approve` or `/reject` (an admin): pin the catalog the server showed last, or
    reject it; audited with who; then the server screens its catalog again. `digest`: the diff's
    the admin saw (`PinsChangedSince`, 412, if the server shows another since)."""
    _check(hub, tenant, server)
    key, subject = (who.key_id, who.subject) if who is not None else (None, None)
    by = subject or key or "admin"
    (hub.pins.approve if approve else hub.pins.reject)(tenant, server, digest, by)
    action = "approve_pins" if approve else "reject_pins"
    hub.audit.record_change(who, action, tenant=tenant, server=server, digest=digest, outcome="ok")
    log.warning("%s/%s: the changed tools were %sd by %s", tenant, server, action.removesuffix("_pins"), by)
    hub.router.tenant(tenant).get(timeout=timeouts.ASK).repin(server).get(timeout=timeouts.ASK)
    return view(hub, tenant, server)


def reload(hub: Hub) -> None:
    """Read the pins' files again (a restore of a backup wrote them: `PinStore.reload`) and have
    every server of every tenant screen its last catalog against them at once."""
    hub.pins.reload()
    for tenant, config in hub.config.tenants.items():
        proxy = hub.router.tenant(tenant).get(timeout=timeouts.ASK)
        for future in [proxy.repin(server) for server in config.servers]:
            future.get(timeout=timeouts.ASK)
