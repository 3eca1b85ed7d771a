"""`SessionRenewal`: a 2025-11-25 session that the server ended (HTTP 404 on a call, the spec's
sign), renewed under the calls that met its end.

The first such call has the connection restarted at once (`mark_lost`, then `RetryNow` rather
than a crash: no backoff, no crash counted): the SDK's client does a new handshake and the
catalog is discovered again, while the server stays `running` and keeps its catalog listed
(calls that arrive meanwhile wait for the new session, `settled`). Calls on the hub's own
channel are spared by `abort_all` (they do not need the SDK's session: one whose answer still
comes gets it, one that meets the 404 too waits for the new connection); the calls that met the
404 are sent once more on the new channel. Requests in flight on the SDK's client (reads,
prompts) fail as in a crash. If the new connection does not come up (the restart crashes, or the
server is stopped), the waiting calls fail with an upstream error saying so; a second 404 is not
renewed again.

Every method runs on the server's loop (thread `server-<tenant>-<name>`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from actors.upstream.httpcall import Channel
from hub.errors import UpstreamError

if TYPE_CHECKING:
    from actors.server import ServerSupervisor

log = logging.getLogger("actors.server")  # the server's own logger: log lines keep the name filtered on

REASON = "the server ended its session (HTTP 404): renewing it"


class SessionRenewal:
    """The renewal of one server's session."""

    def __init__(self, supervisor: ServerSupervisor) -> None:
        self._supervisor = supervisor
        self._riding: set[asyncio.Task[Any]] = set()  # calls on the hub's own channel
        self._waiters: list[asyncio.Future[Channel | None]] = []
        self._asked = False  # the connection ends to be renewed (not a crash)
        self.pending = False  # the connection that renews it is being made
        self._quiet = asyncio.Event()  # set while no renewal is under way
        self._quiet.set()

    async def renew(self, old: Channel) -> Channel:
        """The channel of a new session, once the connection whose channel was `old` is renewed
        (by this call, or by another that met the 404 first).

        Raises:
            UpstreamError: no new connection came up.
        """
        supervisor = self._supervisor
        current = supervisor.channel
        if current is not None and current is not old:
            return current  # renewed already
        waiter: asyncio.Future[Channel | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if current is old and not self._asked:
            self._asked = True
            self._quiet.clear()
            log.info("%s/%s: %s", supervisor.tenant, supervisor.config.name, REASON)
            supervisor.mark_lost(REASON)
        channel = await waiter
        if channel is None:
            raise UpstreamError(
                f"server '{supervisor.config.name}' ended its session, and a new one could not be opened"
            )
        return channel

    @contextlib.contextmanager
    def riding(self) -> Iterator[None]:
        """Around a call on the hub's own channel (in the call's task: on this loop, or on a
        caller's, `ServerCalls.here`)."""
        task = asyncio.current_task()
        assert task is not None
        self._riding.add(task)
        try:
            yield
        finally:
            self._riding.discard(task)

    def spared(self) -> set[asyncio.Task[Any]]:
        """The calls `abort_all` leaves alone now: on a renewal, those on the hub's own channel."""
        return set(self._riding) if self._asked else set()

    @property
    def quiet(self) -> bool:
        """Whether no renewal is asked for or under way (a snapshot: any thread)."""
        return self._quiet.is_set() and not self._asked

    @property
    def asked(self) -> bool:
        """Whether the connection is ending to be renewed (its catalog stays listed)."""
        return self._asked

    async def settled(self, timeout: float) -> None:
        """Wait (up to `timeout` seconds) for a renewal under way to end, if one is."""
        if not self._quiet.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._quiet.wait()

    def take(self) -> bool:
        """Whether the connection that just ended was ended to be renewed (asked once): if so,
        the next one is made at once, as a renewal (`pending`)."""
        asked, self._asked = self._asked, False
        self.pending = asked
        return asked

    def connected(self, channel: Channel | None) -> None:
        """A connection came up: the calls waiting for it go on with its channel."""
        self._resolve(channel)

    def ended(self) -> None:
        """The connection crashed or stopped instead: the waiting calls fail."""
        self._asked = False
        self._resolve(None)

    def _resolve(self, channel: Channel | None) -> None:
        self.pending = False
        self._quiet.set()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(channel)
