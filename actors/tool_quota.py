"""`ToolQuota`: a tenant's servers' catalogs, trimmed to its `max_tools` quota.

Tools past the quota, in the order the catalogs came, are left out of what the router lists (and
logged); the catalogs are kept whole, so a server removed makes room for the others' next
catalogs. Runs on the tenant actor's thread.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from actors.models import ServerCatalog
from hub.config import Quotas

log = logging.getLogger("actors.tenant")  # (its lines are the tenant's)


class ToolQuota:
    """The last catalog of each server of one tenant, and how many of its tools are hidden."""

    def __init__(self, tenant: str) -> None:
        self._tenant = tenant
        self._catalogs: dict[str, ServerCatalog] = {}
        self._hidden: dict[str, int] = {}

    def known(self, server: str) -> ServerCatalog | None:
        """The server's last catalog, whole (None: none yet)."""
        return self._catalogs.get(server)

    def within(self, catalog: ServerCatalog, quotas: Quotas) -> ServerCatalog:
        """Record `catalog` as its server's; it, trimmed to the room the other servers leave."""
        self._catalogs[catalog.server] = catalog
        limit = quotas.max_tools
        if limit is None:
            return catalog
        used = sum(
            len(c.tools) - self._hidden.get(s, 0) for s, c in self._catalogs.items() if s != catalog.server
        )
        room = max(0, limit - used)
        hidden = max(0, len(catalog.tools) - room)
        self._hidden[catalog.server] = hidden
        if not hidden:
            return catalog
        log.warning(
            "tenant %s: %d tools of server %s left out of the catalog (max_tools %d)",
            self._tenant,
            hidden,
            catalog.server,
            limit,
        )
        return replace(catalog, tools=catalog.tools[:room])

    def listed(self, server: str) -> ServerCatalog | None:
        """The server's catalog as the router should list it (within `max_tools`), if any."""
        catalog = self._catalogs.get(server)
        if catalog is None or catalog.empty:
            return None
        hidden = self._hidden.get(server, 0)
        return replace(catalog, tools=catalog.tools[: len(catalog.tools) - hidden]) if hidden else catalog

    def forget(self, server: str) -> None:
        """The server is gone (removed or replaced): its tools no longer count."""
        self._catalogs.pop(server, None)
        self._hidden.pop(server, None)

    @property
    def hidden(self) -> int:
        """Tools left out of the catalog, over every server."""
        return sum(self._hidden.values())

    @property
    def tools(self) -> int:
        """Tools listed, over every server."""
        return sum(len(c.tools) for c in self._catalogs.values()) - self.hidden
