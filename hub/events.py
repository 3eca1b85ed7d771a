"""The event board: the router's events, recorded for the threads that wait on them.

The router tells every event (`ServerStateChanged`, `InstanceStateChanged`, `CatalogChanged`, ...)
to the hub's `EventBoard` on the router's thread; any other thread reads the latest statuses or
waits, with a timeout, until a condition on them holds. Listeners (the route cache, the metrics,
the wakes, the session instances) are called on the router's thread after each event.

A server's log messages (`ServerLogMessage`) and resource updates (`ResourceUpdated`) only go to
the listeners: they are not recorded in `events`, which they would flood, and wake no waiter.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from actors.models import (
    Event,
    InstanceStateChanged,
    ResourceUpdated,
    ServerLogMessage,
    ServerState,
    ServerStateChanged,
    ServerStatus,
)

log = logging.getLogger(__name__)

_GONE = (ServerState.STOPPED, ServerState.FAILED)

WakeKey = tuple[str, str, str | None]  # (tenant, server, session): session None is the server itself


class EventBoard:
    """Collects the router's events and lets threads wait on them.

    `tell` runs on the router thread (it must stay quick); `wait_for` on any other thread.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._statuses: dict[tuple[str, str], ServerStatus] = {}
        self._instances: dict[WakeKey, ServerStatus] = {}  # live session instances
        self.events: list[Event] = []
        self._listeners: list[Callable[[Event], None]] = []

    def tell(self, event: Event) -> None:
        """Record one event and wake the waiters (router thread); a log message or a resource
        update only goes to the listeners."""
        if not isinstance(event, ServerLogMessage | ResourceUpdated):
            self._record(event)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # isolation: a broken listener must not take the router down
                log.exception("event listener %r failed", listener)

    def _record(self, event: Event) -> None:
        with self._cond:
            if isinstance(event, ServerStateChanged):
                self._statuses[(event.status.tenant, event.status.server)] = event.status
            elif isinstance(event, InstanceStateChanged):
                key = event.status.instance_key
                known = self._instances.get(key)
                if event.status.state in _GONE:
                    self._instances.pop(key, None)
                elif known is None or event.status.seq >= known.seq:
                    self._instances[key] = event.status
            self.events.append(event)
            del self.events[:-1000]
            self._cond.notify_all()

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Call `listener(event)` for every event, on the router thread (it must be quick)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[Event], None]) -> None:
        """Stop calling `listener`."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def status(self, tenant: str, server: str) -> ServerStatus | None:
        """The latest status told for a server, if any."""
        with self._cond:
            return self._statuses.get((tenant, server))

    def instance_status(self, key: WakeKey) -> ServerStatus | None:
        """The latest status told for a live session instance, if any."""
        with self._cond:
            return self._instances.get(key)

    def instances(self, tenant: str | None = None) -> tuple[ServerStatus, ...]:
        """Every live session instance (of `tenant`), as last told."""
        with self._cond:
            return tuple(s for (t, _, _), s in self._instances.items() if tenant is None or t == tenant)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until `predicate()` holds (re-checked on every event); False on timeout."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)
