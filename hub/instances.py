"""Session instances: a per_session server's own instance for each client session.

A call that comes with a session (`session=`: the MCP facade's session, a WebSocket app
connection, an `Mcp-Hub-Session` header) and whose route says `per_session` goes to that session's
own instance, which the tenant starts on the first such call (`session_instance`) and which is
waited for like an on_demand start (`Wakes`), keyed by `(tenant, server, session)`.
`SessionInstances.end` stops a session's instances when its client goes away.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import Any

import pykka

from actors.models import Event, InstanceStateChanged, ServerState, ServerStatus
from actors.server import ServerEndpoint
from actors.session_instances import ENDED_SESSIONS
from hub import timeouts
from hub.config import SecretMap
from hub.errors import NotFound, NotRunning, ShuttingDown
from hub.events import _GONE, EventBoard, WakeKey
from hub.wakes import Wakes

log = logging.getLogger(__name__)


class SessionInstances:
    """The endpoints of running session instances, the tenants each session has instances in, and
    the sessions that ended.

    Args:
        board: where the instances' statuses arrive (`on_event` must be one of its listeners).
        wakes: starts instances for calls and waits for them.
        tenant: a tenant's proxy by name (a blocking router ask).
        ask_timeout: how long an ask of a tenant may take, in seconds.
    """

    def __init__(
        self, board: EventBoard, wakes: Wakes, tenant: Callable[[str], Any], ask_timeout: float
    ) -> None:
        self._board = board
        self._wakes = wakes
        self._tenant = tenant
        self._ask_timeout = ask_timeout
        # Guarded by `_lock`: endpoints (dropped when they stop), tenants by session, ended sessions.
        self._lock = threading.Lock()
        self._endpoints: dict[WakeKey, ServerEndpoint] = {}
        self._session_tenants: dict[str, set[str]] = {}
        self._ended: collections.OrderedDict[str, None] = collections.OrderedDict()
        # In a cluster: how a session's instances on the other replicas are stopped (`hub.replica`);
        # each blocks and answers how many it stopped.
        self.elsewhere: list[Callable[[str], int]] = []
        # A per_user server's instance: its user's values (`hub.user_servers`); None for the others.
        self.user_env: Callable[[WakeKey], SecretMap | None] = lambda key: None

    def start(self, key: WakeKey) -> ServerStatus:
        """Ask the tenant for `key`'s instance and keep its endpoint; its status as answered.

        Blocks on the ask: runs in a loop's executor (`Wakes.ask`), never on a loop.

        Raises:
            NotRunning: the session has ended (an instance started meanwhile is stopped by `end`).
        """
        tenant, server, session = key
        assert session is not None
        with self._lock:
            if session in self._ended:
                raise NotRunning(f"the session of this call has ended (server '{server}')")
            self._session_tenants.setdefault(session, set()).add(tenant)
        proxy = self._tenant(tenant)
        user_env = self.user_env(key)  # (a per_user server's: read here, sealed until now)
        endpoint, status = proxy.session_instance(server, session, user_env).get(timeout=self._ask_timeout)
        with self._lock:
            ended = session in self._ended
            if not ended:
                self._endpoints[key] = endpoint
        if ended:  # it ended while its instance started: `end` asks the tenant after this start, and stops it
            raise NotRunning(f"the session of this call has ended (server '{server}')")
        return status

    def on_event(self, event: Event) -> None:
        """Board listener (router thread): a session instance that stopped is no longer called."""
        if isinstance(event, InstanceStateChanged) and event.status.state in _GONE:
            with self._lock:
                self._endpoints.pop(event.status.instance_key, None)

    async def instance_async(self, tenant: str, server: str, session: str) -> ServerEndpoint:
        """The endpoint of `session`'s running instance of `server`, started and waited for if need
        be (on an asyncio loop). Raises what `Wakes.wake_async` raises."""
        key = (tenant, server, session)
        endpoint = self._live_endpoint(key)
        if endpoint is None:
            await self._wakes.wake_async(tenant, server, session)
            endpoint = self._live_endpoint(key, fresh=True)
        return endpoint

    def running_endpoint(self, key: WakeKey) -> ServerEndpoint | None:
        """The endpoint of `key`'s instance if it runs, else None (never starts one). Any thread."""
        endpoint: ServerEndpoint | None = self._live_endpoint(key)
        return endpoint

    def _live_endpoint(self, key: WakeKey, fresh: bool = False) -> Any:
        """The endpoint of a running instance (None if there is none); `fresh`: it was just started,
        so its absence means it stopped meanwhile (`NotRunning`). Any thread, never blocks."""
        status = self._board.instance_status(key)
        with self._lock:
            endpoint = self._endpoints.get(key)
        if endpoint is not None and (fresh or (status is not None and status.state is ServerState.RUNNING)):
            return endpoint
        if fresh:
            raise NotRunning(f"the instance of server '{key[1]}' for this session stopped meanwhile")
        return None

    def drop_endpoint(self, key: WakeKey, endpoint: ServerEndpoint) -> None:
        """Forget `endpoint` of `key` (it answered that it stopped); any thread, never blocks."""
        with self._lock:
            if self._endpoints.get(key) is endpoint:
                del self._endpoints[key]

    def end(self, session: str, everywhere: bool = True) -> int:
        """A client session ended: stop its instances, in every tenant, and wait until their
        processes are gone (in a cluster, on the other replicas too, unless not `everywhere`: the
        replica the session is on asked). Calls waiting for one of its instances to start fail.
        Blocks: any thread but a loop's.

        Returns:
            How many instances were stopped.
        """
        with self._lock:
            self._ended[session] = None
            while len(self._ended) > ENDED_SESSIONS:
                self._ended.popitem(last=False)
            tenants = self._session_tenants.pop(session, set())
            for key in [k for k in self._endpoints if k[2] == session]:
                del self._endpoints[key]
        self._wakes.abandon(NotRunning("the session of this call has ended"), session=session)
        stopped = 0
        for tenant in tenants:
            try:
                stopped += self._tenant(tenant).end_session(session).get(timeout=timeouts.LIFECYCLE)
            except (NotFound, ShuttingDown, pykka.ActorDeadError):
                continue  # the tenant was removed, or the hub stops (and stops every instance)
        # Their `stopped` events are on their way up: once told, `instances()` no longer has them.
        board = self._board
        board.wait_for(lambda: not any(i.session == session for i in board.instances()), 5)
        for end_there in self.elsewhere if everywhere else ():
            try:
                stopped += end_there(session)
            except Exception:  # isolation: another replica's trouble must not fail this end
                log.exception("ending session instances on other replicas failed")
        return stopped
