"""How a tenant and its servers talk: what a server is started with (`ServerSpec`), its first
status, and the events it tells (`ServerEvent`) to its `Listener` (the tenant actor's ref).

Statuses carry a number from one counter for the whole process (`next_seq`), so the statuses of
a server and of the server that replaces it stay ordered. Nothing here runs on a particular
thread.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pykka

from actors.models import (
    CatalogChanged,
    InstanceCatalogChanged,
    InstanceStateChanged,
    NotificationsDropped,
    PinnedToolsChanged,
    ResourceUpdated,
    ServerCrashed,
    ServerLogMessage,
    ServerState,
    ServerStateChanged,
    ServerStatus,
    StoppedReason,
)
from actors.sandbox import SandboxSite
from hub.config import OrchestratorConfig, SecretMap, ServerConfig
from hub.pins import NO_PINS, PinPolicy, PinStore

_SEQ = itertools.count(1)


def next_seq() -> int:
    """The next number of the process-wide status counter."""
    return next(_SEQ)


class Listener(Protocol):
    """What a server tells its events to: a pykka `ActorRef` (the tenant), or a test double."""

    def tell(self, message: Any) -> None: ...


# What a server tells its listener (an instance tells the `Instance…` events instead of the others).
ServerEvent = (
    ServerStateChanged
    | ServerCrashed
    | CatalogChanged
    | NotificationsDropped
    | InstanceStateChanged
    | InstanceCatalogChanged
    | ServerLogMessage
    | ResourceUpdated
    | PinnedToolsChanged
)


def tell(listener: Listener, message: Any) -> bool:
    """Tell `listener` an event; False if it is gone (an event to a stopped actor is dropped)."""
    try:
        listener.tell(message)
    except pykka.ActorDeadError:
        return False
    return True


_NO_ENV = SecretMap()


@dataclass(frozen=True)
class ServerSpec:
    """Everything a server needs to know about itself, as its tenant hands it over."""

    tenant: str
    config: ServerConfig
    tenant_env: SecretMap  # the tenant's credentials; the server's own `env` overrides them
    orchestrator: OrchestratorConfig
    log_path: Path  # the server's stderr log file
    cache_path: Path | None = None  # its catalog cache file (None: no cache)
    session: str | None = None  # a per_session server's instance: the session it serves
    sandbox_site: SandboxSite | None = None  # the hub's sandbox facts (None: run unsandboxed)
    log_level: str | None = None  # the lowest level of log messages it should send (None: its default)
    user_env: SecretMap = _NO_ENV  # a per_user server's instance: its user's own values (they win)
    pinning: PinPolicy = NO_PINS  # how its catalogs are screened against its pinned tools


@dataclass(frozen=True)
class ServerStores:
    """What the hub keeps on disk for its servers, handed down the tree: catalog caches and pins."""

    cache_dir: Path | None = None  # `<data_dir>/catalogs` (None: no cache)
    pins: PinStore | None = None  # `<data_dir>/pins` (None: nothing pinned)


NO_STORES = ServerStores()


def initial_status(tenant: str, config: ServerConfig, session: str | None = None) -> ServerStatus:
    """The status of a server that has not run yet (newer than any status of a server it replaces)."""
    return ServerStatus(
        tenant,
        config.name,
        ServerState.STOPPED,
        transport=config.transport,
        lifecycle=config.lifecycle,
        stopped_reason=StoppedReason.NEVER_USED if config.on_demand else None,
        seq=next_seq(),
        session=session,
    )
