"""The servers other replicas of a cluster run, as the router sees them (docs/cluster.md).

Each replica publishes the status and catalog of the servers it runs (`hub.cluster_catalog`); the
others' mirror tells them to the router as `RemoteServerChanged`, and the live set as
`ReplicasChanged`. The router then lists such a server, and routes its calls, as the replica that
runs it says, whenever it does not run the server itself: a server that runs here (or starts, or
backs off) is this replica's own. Servers that start on the replica a call reaches (on_demand and
per_session ones) are never taken from another replica.

Every method runs on the router's thread; the messages are frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from actors.models import ServerCatalog, ServerState, ServerStatus, ToolEntry
from hub import placement

__all__ = ["RemoteServer", "RemoteServerChanged", "RemoteServers", "RemoteStatusChanged", "ReplicasChanged"]


@dataclass(frozen=True)
class RemoteServer:
    """A server as the replica that runs it published it."""

    replica: str
    status: ServerStatus
    catalog: ServerCatalog | None
    tools: Mapping[str, ToolEntry] = field(default_factory=dict)  # by catalog id

    @classmethod
    def of(cls, replica: str, status: ServerStatus, catalog: ServerCatalog | None) -> RemoteServer:
        """The entry, its tools indexed by catalog id."""
        tools = {t.id: t for t in catalog.tools} if catalog is not None else {}
        return cls(replica, replace(status, replica=replica), catalog, tools)


@dataclass(frozen=True)
class RemoteServerChanged:
    """Told to the router: what `replica` publishes of `tenant`'s `server` now (None: nothing, it
    does not run it any more)."""

    tenant: str
    server: str
    replica: str
    entry: RemoteServer | None


@dataclass(frozen=True)
class RemoteStatusChanged:
    """Relayed by the router: a server's status as this replica lists it changed because of what
    another replica publishes (admin sockets send it as `server_status`; this replica's own
    statuses come as `ServerStateChanged`, which nothing here confuses with this)."""

    status: ServerStatus


@dataclass(frozen=True)
class ReplicasChanged:
    """Told to the router: the live replicas now (what others publish counts only while they live)."""

    members: frozenset[str]


class RemoteServers:
    """What other replicas publish, by `(tenant, server)` and replica; router thread.

    Args:
        replica_id: this replica's id (what it publishes itself is not remote).
        endpoint: makes the endpoint that forwards requests to `(replica, tenant, server)`.
    """

    def __init__(self, replica_id: str, endpoint: Callable[[str, str, str], Any]) -> None:
        self.replica_id = replica_id
        self.endpoint = endpoint
        self._entries: dict[tuple[str, str], dict[str, RemoteServer]] = {}
        self._live: frozenset[str] | None = None  # None: not told yet (every entry counts)

    def update(self, message: RemoteServerChanged) -> None:
        """Record what a replica publishes (or no longer does)."""
        if message.replica == self.replica_id:
            return
        key = (message.tenant, message.server)
        if message.entry is None:
            self._entries.get(key, {}).pop(message.replica, None)
        else:
            self._entries.setdefault(key, {})[message.replica] = message.entry

    def members(self, members: frozenset[str], dry: bool = False) -> set[tuple[str, str]]:
        """The live set is `members` now (unless `dry`: only asking); the servers whose choice
        may change with it (those a replica that joined or left publishes)."""
        changed = None if self._live is None else self._live ^ members
        if not dry:
            self._live = members
        return {key for key, by in self._entries.items() if changed is None or any(r in changed for r in by)}

    def forget(self, tenant: str, server: str | None = None) -> None:
        """Drop a tenant's (or one server's) entries: removed here by a reload."""
        for key in [k for k in self._entries if k[0] == tenant and server in (None, k[1])]:
            del self._entries[key]

    def chosen(
        self, key: tuple[str, str], local: ServerStatus | None, movable: bool, handed_to: str | None = None
    ) -> RemoteServer | None:
        """The replica entry that speaks for `key`, if another replica does; only for a `movable`
        server (it starts with its tenant: not on_demand nor per_session).

        In order: the replica this one hands the server over to (`handed_to`), once it runs it;
        none while the server runs here; another replica that runs it (the one placement gives it
        first: a newcomer runs it while its old owner drains); none while it starts, backs off or
        failed here; else another replica's entry whatever its state, by replica id.
        """
        if not movable:
            return None
        candidates = self._alive(key)
        running = [entry for entry in candidates if entry.status.state is ServerState.RUNNING]
        handed = [entry for entry in running if entry.replica == handed_to]
        if handed:
            return handed[0]
        if local is not None and local.state is ServerState.RUNNING:
            return None
        if running:
            return self._first(key, running)
        if not candidates or (local is not None and local.state is not ServerState.STOPPED):
            return None
        return min(candidates, key=lambda e: e.replica)

    def _alive(self, key: tuple[str, str]) -> list[RemoteServer]:
        """The entries of `key` of live replicas."""
        live = self._live
        return [
            entry for replica, entry in self._entries.get(key, {}).items() if live is None or replica in live
        ]

    def _first(self, key: tuple[str, str], running: list[RemoteServer]) -> RemoteServer:
        """Of replicas that all run `key`, the one placement gives it (else the first by id)."""
        if len(running) == 1:
            return running[0]
        owner = placement.owner({*(self._live or ()), self.replica_id, *(e.replica for e in running)}, *key)
        return min(running, key=lambda e: (e.replica != owner, e.replica))

    def owner(self, key: tuple[str, str]) -> str | None:
        """The live replica placement gives `key`, if that is another one (None: this one, or the
        live set is not known yet)."""
        if self._live is None:
            return None
        owner = placement.owner({*self._live, self.replica_id}, *key)
        return None if owner == self.replica_id else owner

    def placed(
        self, key: tuple[str, str], local: ServerStatus | None, cached: ServerCatalog | None
    ) -> RemoteServer | None:
        """For a server that starts where its calls go (on_demand, per_session): the replica
        placement gives it, if that is another live one: as it publishes the server, or (it does not
        run it now) as this replica knows it (`local`, its `cached` catalog) but run there."""
        owner = self.owner(key)
        if owner is None:
            return None
        entry = self._entries.get(key, {}).get(owner)
        if entry is not None or local is None:
            return entry
        return RemoteServer.of(owner, local, cached)

    def runs(self, key: tuple[str, str], replica: str) -> bool:
        """Whether live `replica` publishes `key` running."""
        entry = self._entries.get(key, {}).get(replica)
        live = self._live
        return (
            entry is not None
            and entry.status.state is ServerState.RUNNING
            and (live is None or replica in live)
        )
