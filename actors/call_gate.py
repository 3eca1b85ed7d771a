"""`CallGate`: a tenant's call quotas, checked as each call starts (`max_concurrent_calls`,
`max_calls_per_minute` over a sliding one-minute window).

Routes carry their tenant's gate, so a call is admitted on the caller's own thread and never
waits in the tenant's inbox.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from hub.config import Quotas
from hub.errors import QuotaExceeded


class CallGate:
    """Per-tenant call quotas: concurrency and a sliding one-minute rate window.

    Thread-safe: entered by whatever thread makes a call (web loop, Python API callers).
    """

    def __init__(self, quotas: Quotas) -> None:
        self._quotas = quotas
        self._lock = threading.Lock()
        self._in_flight = 0
        self._recent: collections.deque[float] = collections.deque()

    def update(self, quotas: Quotas) -> None:
        """Apply new quotas (a reload); calls in flight and the last minute's count are kept."""
        with self._lock:
            self._quotas = quotas

    @property
    def quotas(self) -> Quotas:
        """The quotas it checks now."""
        return self._quotas

    @property
    def in_flight(self) -> int:
        """Calls of the tenant in flight now."""
        return self._in_flight

    def calls_last_minute(self) -> int:
        """Calls started in the last 60 s."""
        with self._lock:
            self._expire(time.monotonic())
            return len(self._recent)

    def _expire(self, now: float) -> None:
        while self._recent and now - self._recent[0] >= 60.0:
            self._recent.popleft()

    @contextmanager
    def admit(self, tenant: str, quotas: Quotas | None = None) -> Iterator[None]:
        """Hold one call slot for the duration of the block.

        Args:
            tenant: the tenant's name, for the messages.
            quotas: the limits to check, instead of the gate's own (`hub.cluster_quota` counts a
                replica's share of a cluster's quotas this way).

        Raises:
            QuotaExceeded: `max_concurrent_calls` or `max_calls_per_minute` would be exceeded.
        """
        self.take(tenant, quotas)
        try:
            yield
        finally:
            self.give_back()

    def take(self, tenant: str, quotas: Quotas | None = None) -> None:
        """Take one call slot, which the caller must `give_back` (`admit` without the block).

        Raises:
            QuotaExceeded: `max_concurrent_calls` or `max_calls_per_minute` would be exceeded.
        """
        quotas = self._quotas if quotas is None else quotas
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            if quotas.max_concurrent_calls is not None and self._in_flight >= quotas.max_concurrent_calls:
                raise QuotaExceeded(
                    f"tenant '{tenant}' has {self._in_flight} calls in flight "
                    f"(max_concurrent_calls {quotas.max_concurrent_calls})",
                    retry_after=1.0,
                )
            if quotas.max_calls_per_minute is not None and len(self._recent) >= quotas.max_calls_per_minute:
                raise QuotaExceeded(
                    f"tenant '{tenant}' made {len(self._recent)} calls in the last minute "
                    f"(max_calls_per_minute {quotas.max_calls_per_minute})",
                    retry_after=max(0.1, 60.0 - (now - self._recent[0])),
                )
            self._in_flight += 1
            self._recent.append(now)

    def give_back(self) -> None:
        """Give back a slot that `take` took."""
        with self._lock:
            self._in_flight -= 1
