"""How many notifications the hub takes from one server: a token bucket, and what it dropped.

A server may send notifications (log messages, progress, list_changed, ...) as fast as it can
write; each costs the hub a parse, a dispatch and often a catalog refresh or a relay to a client.
One flooding server held the hub at 90-97 % of a core (issue 18, item 7). Each server therefore
gets `orchestrator.notification_rate` notifications per second, with bursts up to
`orchestrator.notification_burst`; past it they are dropped before anything parses them. The drops
are reported once per interval (a log line and an event the metrics count), never one by one.

Everything here runs on the owning server's loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from actors.models import NotificationsDropped

if TYPE_CHECKING:
    from actors.server import ServerSupervisor

log = logging.getLogger("actors.server")  # the server's own logger: log lines keep the name filtered on

_MARK = b'"notifications/'  # every notification's method starts so (a request's or answer's does not)
_USUAL = (b'{"jsonrpc":"2.0","method":"notifications/', b'{"method":"notifications/')
REPORT_INTERVAL = 5.0  # seconds between two reports of drops (a log line, an event)


def is_notification(line: bytes) -> bool:
    """Whether a stdout line is a JSON-RPC notification (`method` `notifications/...`, no `id`).

    A cheap byte test first; only lines that pass it are parsed, so a flood costs little.
    """
    if line.startswith(_USUAL):  # (how SDKs write one: no parse needed)
        return True
    if _MARK not in line:
        return False
    try:
        message = json.loads(line)
    except ValueError:
        return False
    return (
        isinstance(message, dict)
        and "id" not in message
        and isinstance(message.get("method"), str)
        and message["method"].startswith("notifications/")
    )


class NotificationGate:
    """A token bucket of one server's notifications (on the server's loop).

    Args:
        rate: notifications per second let through on average (None: every one).
        burst: the bucket's size: how many may come at once.
        report: called once per `interval` in which some were dropped, with how many.
        interval: seconds between two reports.
    """

    def __init__(
        self,
        rate: float | None,
        burst: int,
        report: Callable[[int], None],
        interval: float = REPORT_INTERVAL,
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.interval = interval
        self._report = report
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._dropped = 0  # since the last report
        self._timer: asyncio.TimerHandle | None = None

    def admit(self) -> bool:
        """Take a token for one notification: False if there is none (then drop it, `drop`)."""
        if self.rate is None:
            return True
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def admit_line(self, line: bytes) -> bool:
        """Whether a stdout line may pass: anything but a notification past the limit (which is
        counted as dropped)."""
        if self.rate is None or _MARK not in line or self.admit() or not is_notification(line):
            return True
        self.drop()
        return False

    def drop(self) -> None:
        """Count one dropped notification; the first of an interval arms the report."""
        self._dropped += 1
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self.flush)

    def flush(self) -> None:
        """Report the drops counted so far, if any (the timer fired, or the server stops)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        dropped, self._dropped = self._dropped, 0
        if dropped:
            self._report(dropped)


def report_drops(supervisor: ServerSupervisor, count: int) -> None:
    """Log and tell that the gate of `supervisor` dropped `count` notifications in its last
    interval (on the server's loop)."""
    gate = supervisor.gate
    log.warning(
        "%s/%s: dropped %d notifications in %g s (over orchestrator.notification_rate %g/s, burst %d)",
        supervisor.tenant,
        supervisor.config.name,
        count,
        gate.interval,
        gate.rate or 0,
        gate.burst,
    )
    supervisor.tell(NotificationsDropped(supervisor.tenant, supervisor.config.name, count))
