"""Connections: how many the hub keeps open, for how long, and what it does when it runs out.

Every listener is an `EdgeServer` (`web.listener`: Tornado's `HTTPServer` with its own accept loop)
sharing the one `ConnectionBudget` kept here:

- a connection waiting for a request's headers (idle keep-alive, or a client sending them
  slowly) is closed after `gateway.idle_connection_timeout`, a body that takes longer than
  `gateway.body_timeout` likewise, by a sweep of every connection (`ConnectionBudget.sweep`, a
  quarter of the shorter timeout apart, at most 5 s) rather than Tornado's own timers, which cost
  every request two timers and four loop callbacks (issue 24);
- at most `gateway.max_connections` connections are open (HTTP and WebSocket), and never more
  than three quarters of the open-files limit, so the hub keeps descriptors for its servers and
  files; at most `gateway.max_connections_per_client` of one client address. A new connection
  past either limit closes the oldest idle connection (one waiting for a request: closing it
  loses nothing) of the same scope to make room; with none idle it gets a canned 503 and is
  closed at once, without a read;
- running out of descriptors anyway (`EMFILE` on accept: servers and files use them too) closes
  the pending connection with a spare descriptor kept for that, or pauses accepting for a moment,
  and is logged once a minute with a count, never once per accept.

`raise_open_files_limit` raises the soft limit of open files to the hard one at start. Everything
here runs on the web loop.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import tornado.ioloop

log = logging.getLogger(__name__)

REPORT_INTERVAL = 60.0  # seconds between two log lines about refused connections
_SWEEP_MIN, _SWEEP_MAX = 0.1, 5.0  # seconds between two sweeps of the connections' timeouts


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft limit of open files to the hard limit where allowed; `(before, after)`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft, soft
    return soft, target


class Stream(Protocol):
    """A connection as the budget sees it: Tornado's `IOStream`, or `web.lean_http`'s."""

    def closed(self) -> bool: ...
    def close(self) -> None: ...


@dataclass(eq=False)
class Slot:
    """One open connection: its client address, stream, and whether a request is in progress."""

    client: str
    stream: Stream
    idle_since: float
    busy: bool = False  # a request is being served, or the connection is a WebSocket now
    body_since: float | None = None  # when its request's body began to be read, until it was


class _Reporter:
    """Counts an event and logs it at most once per `REPORT_INTERVAL`."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.count = 0
        self.last = float("-inf")

    def add(self, detail: str) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= REPORT_INTERVAL:
            log.warning("%s: %d in the last %ds (%s)", self.what, self.count, REPORT_INTERVAL, detail)
            self.count, self.last = 0, now


@dataclass
class ConnectionBudget:
    """The connections of every listener, and their limits (see the module's docstring).

    Attributes:
        limit: connections open at once, all listeners together.
        per_client: connections of one client address (None: no limit of its own).
    """

    limit: int
    per_client: int | None
    slots: dict[Stream, Slot] = field(default_factory=dict)
    by_client: dict[str, set[Slot]] = field(default_factory=dict)
    refused: _Reporter = field(default_factory=lambda: _Reporter("connections refused at the limit"))
    exhausted: _Reporter = field(default_factory=lambda: _Reporter("out of file descriptors on accept"))
    spare: int | None = None
    idle_timeout: float | None = None  # (`sweep`: None, no limit)
    body_timeout: float | None = None
    _sweeper: tornado.ioloop.PeriodicCallback | None = None

    @classmethod
    def of(cls, max_connections: int, per_client: int | None) -> ConnectionBudget:
        """A budget of `max_connections`, capped at three quarters of the open-files limit."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        limit = max_connections
        if soft != resource.RLIM_INFINITY:
            limit = max(1, min(limit, soft - max(64, soft // 4)))
        budget = cls(limit, per_client)
        budget.keep_spare()
        return budget

    def keep_spare(self) -> None:
        """Hold one descriptor in reserve, to accept and close a connection when none is left."""
        if self.spare is None:
            try:
                self.spare = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self.spare = None

    def sweep_every(self, idle_timeout: float | None, body_timeout: float | None) -> None:
        """Close the connections past `idle_timeout` (waiting for a request's headers) or
        `body_timeout` (reading a request's body) from now on: a sweep a quarter of the shorter
        one apart, at most 5 s (the first call starts it; the timeouts are the gateway's)."""
        self.idle_timeout, self.body_timeout = idle_timeout, body_timeout
        timeouts = [t for t in (idle_timeout, body_timeout) if t]
        if self._sweeper is None and timeouts:
            every = min(_SWEEP_MAX, max(_SWEEP_MIN, min(timeouts) / 4))
            self._sweeper = tornado.ioloop.PeriodicCallback(self.sweep, every * 1000)
            self._sweeper.start()

    def sweep(self) -> None:
        """Close every connection past its timeout (Tornado's would have closed it too)."""
        now = time.monotonic()
        idle, body = self.idle_timeout, self.body_timeout
        for slot in list(self.slots.values()):
            if slot.stream.closed():
                continue
            if slot.body_since is not None:
                if body is not None and now - slot.body_since > body:
                    log.info("Timeout reading body from %s", slot.client)
                    slot.stream.close()
            elif not slot.busy and idle is not None and now - slot.idle_since > idle:
                slot.stream.close()

    def close(self) -> None:
        """Stop sweeping; give back the spare descriptor."""
        if self._sweeper is not None:
            self._sweeper.stop()
            self._sweeper = None
        if self.spare is not None:
            os.close(self.spare)
            self.spare = None

    def admit(self, client: str, stream: Stream) -> bool:
        """Make room for a new connection of `client` (closing an idle one if needed), and count
        it; False if there is no room."""
        mine = self.by_client.get(client, set())
        if self.per_client is not None and len(mine) >= self.per_client and not self._evict(mine):
            self.refused.add(f"{len(mine)} connections of {client}, gateway.max_connections_per_client")
            return False
        if len(self.slots) >= self.limit and not self._evict(self.slots.values()):
            self.refused.add(f"{len(self.slots)} connections: gateway.max_connections or open-files limit")
            return False
        slot = Slot(client, stream, time.monotonic())
        self.slots[stream] = slot
        self.by_client.setdefault(client, set()).add(slot)
        return True

    def _evict(self, slots: Iterable[Slot]) -> bool:
        """Forget the closed connections among `slots`, or else close the one idle longest; False
        if that makes no room."""
        oldest, forgotten = None, False
        for slot in list(slots):
            if slot.stream.closed():  # a WebSocket that has closed since
                self.forget(slot.stream)
                forgotten = True
            elif not slot.busy and (oldest is None or slot.idle_since < oldest.idle_since):
                oldest = slot
        if oldest is None:
            return forgotten
        self.forget(oldest.stream)
        oldest.stream.close()
        return True

    def forget(self, stream: Stream) -> None:
        """The connection of `stream` is closed."""
        slot = self.slots.pop(stream, None)
        if slot is not None:
            mine = self.by_client.get(slot.client)
            if mine is not None:
                mine.discard(slot)
                if not mine:
                    del self.by_client[slot.client]

    def moved(self, old: Any, new: Any, busy: bool = False) -> None:
        """The connection of stream `old` goes on as `new` (`web.lean_http` hands it to Tornado);
        `busy`: it is a WebSocket's now."""
        slot = self.slots.pop(old, None)
        if slot is not None:
            slot.stream = new
            slot.busy = slot.busy or busy
            self.slots[new] = slot

    def waiting(self, stream: Stream) -> Slot | None:
        """The connection of `stream` waits for a request now."""
        slot = self.slots.get(stream)
        if slot is not None:
            slot.busy, slot.idle_since = False, time.monotonic()
        return slot
