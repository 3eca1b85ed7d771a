"""Prometheus metrics of one hub (`prometheus-client`, one registry per hub, so hubs never mix).

Updated from the call path (any thread; prometheus-client is thread-safe), from router events
(router thread), and by the web frontend for HTTP requests (web loop).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from actors.models import (
    Event,
    InstanceStateChanged,
    NotificationsDropped,
    PinnedToolsChanged,
    ServerCrashed,
    ServerState,
    ServerStateChanged,
    ServerStatus,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Children:
    """The children of one metric by their label values, each looked up once: prometheus-client's
    `labels` checks the values and takes a lock at every call, a cost on every tool call and HTTP
    request. Any thread (a race creates the same child twice: `labels` returns the one it has)."""

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        """The child of `values` (as `metric.labels(*values)`)."""
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


class HubMetrics:
    """The hub's metrics: tool calls, latency, server states, restarts, calls in flight, HTTP."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls, self.latency, self.in_flight = _call_metrics(self.registry)
        self.state = Gauge(
            "mcp_hub_server_state",
            "1 for the state each server is in, 0 for the others.",
            ["tenant", "server", "state"],
            registry=self.registry,
        )
        self.restarts = Counter(
            "mcp_hub_server_crashes",
            "Server crashes (each is followed by a restart or `failed`).",
            ["tenant", "server"],
            registry=self.registry,
        )
        self.notifications_dropped = Counter(
            "mcp_hub_notifications_dropped",
            "Notifications of a server dropped past orchestrator.notification_rate (counted once per "
            "interval, as the server's log line says).",
            ["tenant", "server"],
            registry=self.registry,
        )
        self.http = Counter(
            "mcp_hub_http_requests",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.on_demand = Gauge(
            "mcp_hub_on_demand_servers",
            "on_demand servers by state, and why the stopped ones are stopped.",
            ["tenant", "state", "stopped_reason"],
            registry=self.registry,
        )
        self.on_demand_starts = Counter(
            "mcp_hub_on_demand_starts",
            "Starts of on_demand servers caused by a call that found them stopped.",
            ["tenant", "server"],
            registry=self.registry,
        )
        self.instances = Gauge(
            "mcp_hub_session_instances",
            "Session instances of per_session servers that run or start now.",
            ["tenant", "server"],
            registry=self.registry,
        )
        self.instance_starts = Counter(
            "mcp_hub_session_instance_starts",
            "Session instances of per_session servers started by a session's call.",
            ["tenant", "server"],
            registry=self.registry,
        )
        self.cluster_quotas = Gauge(
            "mcp_hub_cluster_quotas",
            "A cluster's replica only: 1 for what counts the tenants' call quotas now (shared: Redis; "
            "local: this replica's share, Redis being unreachable; refusing: nothing, calls with "
            "quotas are refused), 0 for the others.",
            ["counted_by"],
            registry=self.registry,
        )
        self.pin_changes, self.held = _pin_metrics(self.registry)
        # What the call path and every HTTP request count, by their labels (nothing removes them).
        self.calls_of = Children(self.calls)
        self.latency_of = Children(self.latency)
        self.in_flight_of = Children(self.in_flight)
        self.http_of = Children(self.http)
        self.quota_state: Callable[[], str] | None = None  # (set on a cluster's replica)
        self._lock = threading.Lock()
        self._on_demand: dict[tuple[str, str], ServerStatus] = {}  # the last status counted, per server
        self._live: set[tuple[str, str, str | None]] = set()  # session instances counted

    def on_event(self, event: Event) -> None:
        """Board listener (router thread): server states and crashes."""
        if isinstance(event, ServerStateChanged):
            status = event.status
            for state in ServerState:
                self.state.labels(status.tenant, status.server, state.value).set(
                    1 if state is status.state else 0
                )
            self.count_on_demand(status)
        elif isinstance(event, InstanceStateChanged):
            status = event.status
            key = status.instance_key
            with self._lock:
                gone = status.state in (ServerState.STOPPED, ServerState.FAILED)
                if gone and key in self._live:
                    self._live.discard(key)
                    self.instances.labels(status.tenant, status.server).dec()
                elif not gone and key not in self._live:
                    self._live.add(key)
                    self.instances.labels(status.tenant, status.server).inc()
        elif isinstance(event, ServerCrashed):
            self.restarts.labels(event.tenant, event.server).inc()
        elif isinstance(event, NotificationsDropped):
            self.notifications_dropped.labels(event.tenant, event.server).inc(event.count)
        elif isinstance(event, PinnedToolsChanged):
            if event.state == "pending_approval":
                self.pin_changes.labels(event.tenant, event.server).inc(
                    len(event.added) + len(event.changed) + len(event.removed)
                )
            self.held.labels(event.tenant, event.server).set(len(event.held))

    def count_on_demand(self, status: ServerStatus) -> None:
        """Count an on_demand server in `mcp_hub_on_demand_servers` (any thread; newest status wins)."""
        key = (status.tenant, status.server)
        with self._lock:
            old = self._on_demand.get(key)
            if old is not None:
                if old.seq >= status.seq:
                    return
                del self._on_demand[key]
                self.on_demand.labels(old.tenant, old.state.value, _reason(old)).dec()
            if status.lifecycle == "on_demand":  # (a reload may have made it `always`)
                self._on_demand[key] = status
                self.on_demand.labels(status.tenant, status.state.value, _reason(status)).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        if self.quota_state is not None:
            now = self.quota_state()
            for mode in ("shared", "local", "refusing"):
                self.cluster_quotas.labels(mode).set(1 if mode == now else 0)
        return generate_latest(self.registry)


def _call_metrics(registry: CollectorRegistry) -> tuple[Counter, Histogram, Gauge]:
    """The metrics of tool calls: by outcome, their latency, and those in flight."""
    calls = Counter(
        "mcp_hub_tool_calls",
        "Tool calls by outcome.",
        ["tenant", "server", "outcome"],
        registry=registry,
    )
    latency = Histogram(
        "mcp_hub_tool_call_duration_seconds",
        "Tool call latency, from the hub's point of view.",
        ["tenant", "server"],
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        registry=registry,
    )
    in_flight = Gauge("mcp_hub_tool_calls_in_flight", "Tool calls in flight.", ["tenant"], registry=registry)
    return calls, latency, in_flight


def _pin_metrics(registry: CollectorRegistry) -> tuple[Counter, Gauge]:
    """The metrics of pinned tools (`hub.pins`): changes seen, and tools held now."""
    changes = Counter(
        "mcp_hub_pinned_tool_changes",
        "Tools seen differing from those approved (added, changed or removed; pinning warn or "
        "enforce), counted each time a server shows a new difference.",
        ["tenant", "server"],
        registry=registry,
    )
    held = Gauge(
        "mcp_hub_pinned_tools_held",
        "Tools held now by `pinning: enforce` (hidden and refused until an admin approves).",
        ["tenant", "server"],
        registry=registry,
    )
    return changes, held


def _reason(status: ServerStatus) -> str:
    return status.stopped_reason.value if status.stopped_reason else ""
