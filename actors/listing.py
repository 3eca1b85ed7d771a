"""`CatalogListing`: what one server lists, told to its tenant, and kept in its catalog cache.

A live discovery (a start, a list_changed refresh) publishes the server's catalog and, when it
offers something new, rewrites its cache file (`actors.catalog_cache`). An on_demand server lists
its cached catalog while it is stopped, from its first status on; any other server lists nothing
while it is down. A server removed or replaced (a reload) withdraws what it listed. An instance of
a per_session server tells its catalog as an `InstanceCatalogChanged`, for its tenant to decide.

Every catalog is screened against the server's pinned tools first (`hub.pins`): under `pinning:
enforce` the tools that changed since an admin approved them are held (left out of what it
lists, named in `ServerCatalog.held`), and the status says `catalog: pending_approval`. The raw
catalog is kept: an admin's approval or rejection has it screened again (`rescreen`).

Runs on the server's loop, except the constructor (on the tenant's thread, so the tenant has the
cached catalog before anyone can ask) and `catalog`, which any thread may read (it is replaced,
never mutated).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from actors.catalog_cache import CatalogCache, spec_key
from actors.models import (
    CatalogChanged,
    InstanceCatalogChanged,
    PinnedToolsChanged,
    ServerCatalog,
    ServerStatus,
)
from hub.pins import CLEAR, NO_PINS, PinPolicy, Screening

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from actors.server import ServerSupervisor

_SEQ = itertools.count(1)  # one counter for every catalog: a replaced server's catalogs stay ordered


class CatalogListing:
    """The catalog one server publishes, and its cache on disk."""

    def __init__(
        self, supervisor: ServerSupervisor, cache_path: Path | None, pinning: PinPolicy = NO_PINS
    ) -> None:
        self._supervisor = supervisor
        self._pinning = pinning
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
        self._raw: tuple[ServerCatalog, str | None] | None = None  # the last catalog published, unscreened
        self._screening = CLEAR  # how it compared with the pins
        if self._cache is not None and self._lists_cached:
            self._cached = self._cache.load()
            if self._cached is not None:
                self._raw = (self._cached, "cached")
                self.catalog = replace(self._screen(self._cached, "cached")[0], seq=next(_SEQ))

    def first_status(self, status: ServerStatus) -> ServerStatus:
        """The server's first status, saying it lists its cached catalog if it does."""
        if self._cached is None or not self._lists_cached:
            return status
        kind = "cached" if self._screening.clear else "pending_approval"
        return replace(status, catalog=kind, tools=len(self.catalog.tools), held=self.catalog.held)

    def _screen(self, catalog: ServerCatalog, kind: str | None) -> tuple[ServerCatalog, str | None]:
        """`catalog` without its held tools, and the kind its status shows (`hub.pins`)."""
        supervisor = self._supervisor
        if kind is None:  # (a withdrawal: nothing listed, nothing to compare)
            return catalog, kind
        screening = self._pinning.screen(supervisor.tenant, supervisor.config.name, catalog.tools)
        if screening != self._screening:
            self._screening = screening
            self._report(screening)
        if screening.clear:
            return catalog, kind
        tools = tuple(t for t in catalog.tools if t.name not in screening.held)
        return replace(catalog, tools=tools, held=screening.held), "pending_approval"

    def _report(self, screening: Screening) -> None:
        """Tell the tenant (and log) that the server's tools differ from their pins, or no longer."""
        supervisor = self._supervisor
        tenant, server, mode = supervisor.tenant, supervisor.config.name, self._pinning.mode
        if not screening.clear:
            log.warning(
                "%s/%s: tools changed since they were approved (pinning %s): added %s, changed %s, "
                "removed %s; held: %s",
                tenant,
                server,
                mode,
                list(screening.added),
                list(screening.changed),
                list(screening.removed),
                list(screening.held) or "none",
            )
        s = screening
        event = PinnedToolsChanged(
            tenant, server, mode, s.state, s.added, s.changed, s.removed, s.held, s.digest
        )
        supervisor.tell(event)

    def rescreen(self) -> None:
        """The server's pins changed (an admin approved or rejected): publish the last catalog again."""
        if self._raw is not None and self._raw[1] is not None:
            self.publish(*self._raw)

    def publish(self, catalog: ServerCatalog, kind: str | None) -> None:
        """Tell the tenant the catalog; `kind` is what the status shows: live, cached or None."""
        supervisor = self._supervisor
        if kind == "live" and self._cache is not None:
            cached = replace(catalog, cached=True, seq=0)
            if cached != self._cached:  # the last discovery, listed while an on_demand server is stopped
                self._cache.save(cached)
                self._cached = cached
        self._raw = (catalog, kind)
        catalog, kind = self._screen(catalog, kind)
        changed = not catalog.same_offer(self.catalog)
        self.catalog = replace(catalog, seq=next(_SEQ))
        if changed and supervisor.session is not None:  # an instance's offer: its tenant decides
            supervisor.tell(InstanceCatalogChanged(supervisor.session, self.catalog))
        elif changed:  # (an on_demand server going from cached to live and back changes nothing)
            supervisor.tell(CatalogChanged(self.catalog))
        supervisor.set_state(
            supervisor.status.state, tools=len(catalog.tools), catalog=kind, held=catalog.held
        )

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
