"""Frozen data that crosses actors: server states and statuses, catalog entries, results, events.

Nothing here is mutated after construction. Dicts inside (JSON Schemas, content blocks) come
straight from the SDK's parsed models and are treated as read-only by every reader.
"""

from __future__ import annotations

import enum
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the REST answers' types (a type-only import: actors never import web at run time)
    from web import responses as api


class ServerState(enum.StrEnum):
    """Lifecycle of a supervised server."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    FAILED = "failed"


class StoppedReason(enum.StrEnum):
    """Why a server is stopped or failed (`ServerStatus.stopped_reason`; None while it runs)."""

    NEVER_USED = "never_used"  # an on_demand server that has not run since the hub started
    IDLE = "idle"  # an on_demand server stopped after `idle_timeout` without a call
    STOPPED = "stopped"  # by request: stop, tenant stop, reload, shutdown
    CRASHED = "crashed"  # it failed after its retries (state `failed`)


@dataclass(frozen=True)
class ServerStatus:
    """A snapshot of one server, as the API shows it."""

    tenant: str
    server: str
    state: ServerState
    transport: str = "stdio"
    pid: int | None = None
    started_at: float | None = None
    restarts: int = 0
    last_error: str | None = None
    protocol_version: str | None = None
    tools: int = 0
    lifecycle: str = "always"
    catalog: str | None = None  # "live", "cached" (from disk), "pending_approval" (`hub.pins`), None: none
    stopped_reason: StoppedReason | None = None
    seq: int = 0  # increases with every change of this server's status: orders snapshots
    session: str | None = None  # set on a per_session server's instance: the session it serves
    retry_at: float | None = None  # Unix time of the next automatic restart (backoff, failed)
    replica: str | None = None  # in a cluster, the replica that runs it (set by the router)
    held: tuple[str, ...] = ()  # its tools held by pinning (`hub.pins`): hidden and refused

    def retry_in_seconds(self) -> float | None:
        """Seconds until the next automatic restart, from now (None: none is due)."""
        if self.retry_at is None:
            return None
        return round(max(0.0, self.retry_at - time.time()), 1)

    @property
    def instance_key(self) -> tuple[str, str, str | None]:
        """`(tenant, server, session)`: which process this is (session None: the server's own)."""
        return (self.tenant, self.server, self.session)

    def instance_json(self) -> api.SessionInstance:
        """A session instance as the API shows it: the session only as a short hash (a session
        id is a credential of its client), with its kind (`http`, `header`, `ws`, `stdio`)."""
        session = self.session or ""
        return {
            "session": session_label(session),
            "session_kind": session.partition(":")[0] or None,
            "state": self.state.value,
            "pid": self.pid,
            "started_at": self.started_at,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "retry_at": self.retry_at,
            "retry_in_seconds": self.retry_in_seconds(),
        }

    def to_json(self) -> api.ServerSnapshot:
        """The status as a JSON-ready dict."""
        return {
            "tenant": self.tenant,
            "server": self.server,
            "state": self.state.value,
            "transport": self.transport,
            "pid": self.pid,
            "started_at": self.started_at,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "protocol_version": self.protocol_version,
            "tools": self.tools,
            "lifecycle": self.lifecycle,
            "catalog": self.catalog,
            "held": list(self.held),
            "replica": self.replica,
            "stopped_reason": self.stopped_reason.value if self.stopped_reason else None,
            "retry_at": self.retry_at,
            "retry_in_seconds": self.retry_in_seconds(),
        }


def session_label(session: str) -> str:
    """A short, stable, non-reversible label of a session id, safe to show and log."""
    return hashlib.sha256(session.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ToolEntry:
    """One tool of the catalog; `id` is the catalog id `<server>.<name>`."""

    tenant: str
    server: str
    name: str
    description: str | None = None
    title: str | None = None
    input_schema: dict[str, Any] = field(default_factory=dict)
    output_schema: dict[str, Any] | None = None
    annotations: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        """The catalog id, `<server>.<name>`."""
        return f"{self.server}.{self.name}"

    def to_json(self) -> api.Tool:
        """The entry as REST shows it."""
        return {
            "name": self.id,
            "tenant": self.tenant,
            "server": self.server,
            "title": self.title,
            "description": self.description,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
        }


@dataclass(frozen=True)
class NamedEntry:
    """A resource, resource template or prompt of the catalog, as the server listed it (`raw`)."""

    tenant: str
    server: str
    name: str
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """The catalog id, `<server>.<name>`."""
        return f"{self.server}.{self.name}"


@dataclass(frozen=True)
class ServerCatalog:
    """Everything one server offers, as last discovered.

    `cached` is True for the catalog of a stopped on_demand server, read from its cache of the
    last discovery rather than discovered by a running process. `capabilities` are the server's
    declared `ServerCapabilities` as JSON (by alias, without nulls: `{"tools": {"listChanged":
    true}, "logging": {}, ...}`; None: not known), `instructions` its `instructions`.
    """

    tenant: str
    server: str
    tools: tuple[ToolEntry, ...] = ()
    resources: tuple[NamedEntry, ...] = ()
    resource_templates: tuple[NamedEntry, ...] = ()
    prompts: tuple[NamedEntry, ...] = ()
    cached: bool = False
    seq: int = 0  # like `ServerStatus.seq`: a catalog of a replaced server never overrides a newer one
    capabilities: Mapping[str, Any] | None = None  # (read-only, like every dict in here)
    instructions: str | None = None
    held: tuple[str, ...] = ()  # tools held by pinning (`hub.pins`): not in `tools`, refused

    @property
    def empty(self) -> bool:
        """Whether it offers nothing at all."""
        return not (self.tools or self.resources or self.resource_templates or self.prompts)

    def same_offer(self, other: ServerCatalog) -> bool:
        """Whether `other` offers exactly the same (whether cached, and `seq`, aside)."""
        return (
            self.tools,
            self.resources,
            self.resource_templates,
            self.prompts,
            self.capabilities,
            self.instructions,
            self.held,
        ) == (
            other.tools,
            other.resources,
            other.resource_templates,
            other.prompts,
            other.capabilities,
            other.instructions,
            other.held,
        )


@dataclass(frozen=True)
class ToolResult:
    """The answer of a tool call, in the REST shape."""

    tool: str
    is_error: bool
    content: tuple[dict[str, Any], ...] = ()
    structured_content: dict[str, Any] | None = None

    def to_json(self) -> api.ToolResult:
        """`{"tool", "is_error", "content", "structured_content"}`."""
        return {
            "tool": self.tool,
            "is_error": self.is_error,
            "content": list(self.content),
            "structured_content": self.structured_content,
        }


# --------------------------------------------------------------------------- events (told upwards)


@dataclass(frozen=True)
class ServerStateChanged:
    """A server moved to another state (told by the server, relayed by its tenant and the router)."""

    status: ServerStatus


@dataclass(frozen=True)
class ServerCrashed:
    """A running or starting server died or broke the protocol; a restart may follow."""

    tenant: str
    server: str
    reason: str
    restarts: int


@dataclass(frozen=True)
class NotificationsDropped:
    """A server sent more notifications than `orchestrator.notification_rate` allows: `count` were
    dropped in the last interval (told once per interval, not per notification)."""

    tenant: str
    server: str
    count: int


@dataclass(frozen=True)
class PinnedToolsChanged:
    """A server showed tools that differ from those pinned (`hub.pins`), or shows the approved
    ones again (`state` approved). `held`: the tools hidden and refused (`pinning: enforce`)."""

    tenant: str
    server: str
    mode: str
    state: str
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    held: tuple[str, ...] = ()
    digest: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The event as the admin WebSocket sends it (`pins_changed`)."""
        return {
            "tenant": self.tenant,
            "server": self.server,
            "pinning": self.mode,
            "state": self.state,
            "added": list(self.added),
            "changed": list(self.changed),
            "removed": list(self.removed),
            "held": list(self.held),
            "digest": self.digest,
        }


@dataclass(frozen=True)
class CatalogChanged:
    """A server's catalog changed (started, stopped, or it sent a list_changed notification).
    `remote`: the router relays the view of a server another replica of a cluster runs (or ran)."""

    catalog: ServerCatalog
    remote: bool = False


@dataclass(frozen=True)
class InstanceStateChanged:
    """A session instance of a per_session server moved to another state (`status.session` is
    set). Told by the instance, relayed by its tenant and the router; a `stopped` or `failed`
    instance is gone (its tenant drops it)."""

    status: ServerStatus


@dataclass(frozen=True)
class InstanceCatalogChanged:
    """A session instance discovered a catalog (told to its tenant only: the tenant lists it as the
    server's catalog when the server has none yet, e.g. no cache)."""

    session: str
    catalog: ServerCatalog


@dataclass(frozen=True)
class ServerLogMessage:
    """A server sent a log message (`notifications/message`) that belongs to no call in flight from
    an MCP facade session (those go to their caller). `session` is the session of a per_session
    server's instance (None: the server's own); `params` the notification's params as JSON
    (`level`, `logger`, `data`). Relayed to the board's listeners, never recorded."""

    tenant: str
    server: str
    session: str | None
    params: Mapping[str, Any]


@dataclass(frozen=True)
class ResourceUpdated:
    """A server said that resource `uri` (its own URI) changed (`notifications/resources/updated`,
    for a subscription of the hub). `session` as in `ServerLogMessage`. Relayed to the board's
    listeners, never recorded."""

    tenant: str
    server: str
    session: str | None
    uri: str


Event = (
    ServerStateChanged
    | ServerCrashed
    | CatalogChanged
    | InstanceStateChanged
    | NotificationsDropped
    | ServerLogMessage
    | ResourceUpdated
    | PinnedToolsChanged
)
