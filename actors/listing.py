"""`CatalogListing`: what one server lists, told to its tenant, and kept in its catalog cache.

A live discovery (a start, a list_changed refresh) publishes the server's catalog and, when it
offers something new, rewrites its cache file (`actors.catalog_cache`). An on_demand server lists
its cached catalog while it is stopped, from its first status on; any other server lists nothing
while it is down. A server removed or replaced (a reload) withdraws what it listed. An instance of
a per_session server tells its catalog as an `InstanceCatalogChanged`, for its tenant to decide.

Runs on the server's loop, except the constructor (on the tenant's thread, so the tenant has the
cached catalog before anyone can ask) and `catalog`, which any thread may read (it is replaced,
never mutated).
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from actors.catalog_cache import CatalogCache, spec_key
from actors.models import CatalogChanged, InstanceCatalogChanged, ServerCatalog, ServerStatus

if TYPE_CHECKING:
    from actors.server import ServerSupervisor

_SEQ = itertools.count(1)  # one counter for every catalog: a replaced server's catalogs stay ordered


class CatalogListing:
    """The catalog one server publishes, and its cache on disk."""

    def __init__(self, supervisor: ServerSupervisor, cache_path: Path | None) -> None:
        self._supervisor = supervisor
        tenant, config = supervisor.tenant, supervisor.config
        self._empty = ServerCatalog(tenant, config.name)
        self.catalog = self._empty  # the catalog last published
        self._cache = (
            CatalogCache(cache_path, tenant, config.name, spec_key(config, supervisor.tenant_env))
            if cache_path is not None
            else None
        )
        self._lists_cached = config.on_demand and config.enabled  # a disabled server lists nothing
        self._cached: ServerCatalog | None = (
            None  # the last live catalog as cached (seq 0: compared by content)
        )
        if self._cache is not None and self._lists_cached:
            self._cached = self._cache.load()
            if self._cached is not None:
                self.catalog = replace(self._cached, seq=next(_SEQ))

    def first_status(self, status: ServerStatus) -> ServerStatus:
        """The server's first status, saying it lists its cached catalog if it does."""
        if self._cached is None or not self._lists_cached:
            return status
        return replace(status, catalog="cached", tools=len(self._cached.tools))

    def publish(self, catalog: ServerCatalog, kind: str | None) -> None:
        """Tell the tenant the catalog; `kind` is what the status shows: live, cached or None."""
        supervisor = self._supervisor
        if kind == "live" and self._cache is not None:
            cached = replace(catalog, cached=True, seq=0)
            if cached != self._cached:  # the last discovery, listed while an on_demand server is stopped
                self._cache.save(cached)
                self._cached = cached
        changed = not catalog.same_offer(self.catalog)
        self.catalog = replace(catalog, seq=next(_SEQ))
        if changed and supervisor.session is not None:  # an instance's offer: its tenant decides
            supervisor.tell(InstanceCatalogChanged(supervisor.session, self.catalog))
        elif changed:  # (an on_demand server going from cached to live and back changes nothing)
            supervisor.tell(CatalogChanged(self.catalog))
        supervisor.set_state(supervisor.status.state, tools=len(catalog.tools), catalog=kind)

    def retire(self) -> None:
        """The server is being removed or replaced: it lists its cached catalog no more."""
        self._lists_cached = False

    def withdraw(self) -> None:
        """List nothing (a retired server's last word)."""
        if not self.catalog.empty:
            self.publish(self._empty, None)

    def connection_ended(self) -> None:
        """The server is down (stopped or crashed): an on_demand server lists its cached catalog
        again, any other nothing."""
        if self._lists_cached and self._cached is not None:
            if not self.catalog.cached:
                self.publish(self._cached, "cached")
        else:
            self.withdraw()
