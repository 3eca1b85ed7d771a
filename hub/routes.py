"""The route cache: tool routes resolved by the router, reused until the catalog changes.

A call resolves `(tenant, tool id)` to a `Route` by asking the router (two thread hops) and
compiles the tool's input schema once; both are cached here until the router tells a
`CatalogChanged` (or the configuration is reloaded). The generation counter keeps a route
resolved before a change from being cached after it; the lock makes that check and the store one
step against a clear told from the router's thread meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema

from actors.models import CatalogChanged, Event
from actors.router import Route
from hub.config import dotted_path
from hub.errors import BadRequest
from hub.plain_schema import Check, compile_plain

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """A resolved route and the compiled validator of the tool's input schema (None: not checkable),
    and, if the schema is plain, its quick check (`hub.plain_schema`)."""

    route: Route
    validator: Any
    plain: Check | None = None


class RouteCache:
    """Prepared routes by `(tenant, tool id)`, dropped whenever the catalog changes.

    Read and filled from any thread (`get` never blocks beyond the lock, so it is safe on an event
    loop); cleared from the router's thread by `on_event`, or by a reload.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[tuple[str, str], Prepared] = {}
        self._generation = 0
        self._watchers: list[Callable[[], None]] = []  # told at each clear (`hub.failover` waits on it)

    def get(self, tenant: str, tool_id: str) -> Prepared | None:
        """The cached prepared route, if any (any thread, never asks the router)."""
        with self._lock:
            return self._routes.get((tenant, tool_id))

    def prepare(self, tenant: str, tool_id: str, resolve: Callable[[str, str], Route]) -> Prepared:
        """The prepared route of `tool_id`, resolved with `resolve` (a blocking router ask, so on a
        caller's thread or in an executor, not on a loop) if it is not cached.

        Raises:
            NotFound: no such tool in the tenant's catalog (what `resolve` raises).
        """
        key = (tenant, tool_id)
        with self._lock:
            prepared = self._routes.get(key)
            generation = self._generation
        if prepared is None:
            route = resolve(tenant, tool_id)
            validator = _validator(route)
            prepared = Prepared(route, validator, compile_plain(route.entry.input_schema, validator))
            with self._lock:
                if generation == self._generation:
                    self._routes[key] = prepared
        return prepared

    def clear(self) -> None:
        """Drop every cached route, and any route being resolved now (any thread)."""
        with self._lock:
            self._generation += 1
            self._routes.clear()
            watchers = list(self._watchers)
        for watcher in watchers:
            watcher()

    def watch(self, watcher: Callable[[], None]) -> None:
        """Call `watcher` (quick, any thread) at each clear from now on, until `unwatch`."""
        with self._lock:
            self._watchers.append(watcher)

    def unwatch(self, watcher: Callable[[], None]) -> None:
        """Stop calling `watcher`."""
        with self._lock:
            if watcher in self._watchers:
                self._watchers.remove(watcher)

    def on_event(self, event: Event) -> None:
        """Board listener (router thread): a catalog change invalidates the cached routes."""
        if isinstance(event, CatalogChanged):
            self.clear()


def _validator(route: Route) -> Any:
    schema = route.entry.input_schema
    try:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        cls.check_schema(schema)
        return cls(schema)
    except (jsonschema.SchemaError, TypeError):
        log.warning(
            "tool %s of %s/%s has an invalid input schema; its arguments are not checked",
            route.name,
            route.tenant,
            route.server,
        )
        return None


def validate(prepared: Prepared, arguments: Mapping[str, Any], shown: str | None = None) -> None:
    """Raise `BadRequest` naming each path where `arguments` break the tool's input schema (and the
    tool as `shown`, else by its catalog id)."""
    if prepared.validator is None or (prepared.plain is not None and prepared.plain(arguments)):
        return  # (not checkable, or certainly valid: the full validator is asked only otherwise)
    problems = sorted(
        f"{dotted_path(('arguments', *e.absolute_path))}: {e.message[:300]}"
        for e in prepared.validator.iter_errors(dict(arguments))
    )
    if problems:
        raise BadRequest(
            f"invalid arguments for tool '{shown or prepared.route.entry.id}': " + "; ".join(problems[:10])
        )
