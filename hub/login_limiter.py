"""How many wrong passwords the login page takes: `MAX_FAILURES` a minute per user and address.

Past it, that user is refused from that address (whatever the password) until the oldest failure
is a minute old, so a guesser gets 5 tries a minute, and a user locked out from one address can
still sign in from another. Memory is bounded: keys with no failure in the last minute are
forgotten.

Thread: the web loop (not thread-safe).
"""

from __future__ import annotations

import time
from collections import deque

MAX_FAILURES = 5
WINDOW = 60.0
_MAX_KEYS = 10_000


class LoginLimiter:
    """Failed sign-ins per `(user, address)` in the last `WINDOW` seconds."""

    def __init__(self, max_failures: int = MAX_FAILURES, window: float = WINDOW) -> None:
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def retry_after(self, user: str, address: str) -> float:
        """Seconds until `user` may try again from `address` (0: now)."""
        failures = self._recent((user, address))
        if len(failures) < self.max_failures:
            return 0.0
        return max(0.0, failures[0] + self.window - time.monotonic())

    def failed(self, user: str, address: str) -> None:
        """Count a wrong password."""
        if len(self._failures) >= _MAX_KEYS:
            self._forget_old()
        self._failures.setdefault((user, address), deque()).append(time.monotonic())

    def succeeded(self, user: str, address: str) -> None:
        """A right password: its failures are forgotten."""
        self._failures.pop((user, address), None)

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        failures = self._failures.get(key, deque())
        horizon = time.monotonic() - self.window
        while failures and failures[0] <= horizon:
            failures.popleft()
        return failures

    def _forget_old(self) -> None:
        horizon = time.monotonic() - self.window
        self._failures = {k: v for k, v in self._failures.items() if v and v[-1] > horizon}
