"""`SessionInstances`: the instances a tenant runs of its `per_session` servers, one per session.

Each instance is a `ServerActor` of its own, keyed by `(server, session)` and owned by the tenant
that started it (`TenantActor.session_instance`), so no instance is ever shared with another
tenant. An instance is stopped when its session ends; one that stops by itself (idle, or failed
after its retries) is dropped when its `InstanceStateChanged` says so. A session that ended is
remembered, so a start asked for it afterwards (a call that raced the end) starts nothing: the end
stops exactly the instances that exist when the tenant hears it, whatever the order of the asks.
Runs on the tenant actor's thread.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterable

from actors.models import ServerState, ServerStatus, session_label
from actors.server import ServerActorProxy
from hub import timeouts
from hub.config import ServerConfig
from hub.errors import NotRunning, QuotaExceeded

log = logging.getLogger("actors.tenant")  # (its lines are the tenant's)

Key = tuple[str, str]  # (server, session)

ENDED_SESSIONS = 10_000  # sessions remembered as ended (a start asked for one afterwards is refused)


class SessionInstances:
    """The running instances of one tenant's per_session servers, and their latest statuses."""

    def __init__(self, tenant: str) -> None:
        self._tenant = tenant
        self._proxies: dict[Key, ServerActorProxy] = {}
        self._statuses: dict[Key, ServerStatus] = {}
        self._ended: collections.OrderedDict[str, None] = collections.OrderedDict()

    def instance(
        self, config: ServerConfig, session: str, limit: int | None, start: Callable[[], ServerActorProxy]
    ) -> ServerActorProxy:
        """The instance of `config`'s server for `session`: the one that runs, else a new one from
        `start` (its actor, not yet its server).

        Raises:
            NotRunning: the session has ended (`ended`).
            QuotaExceeded: `limit` instances of the server already run (`max_sessions_per_server`).
        """
        server = config.name
        if session in self._ended:
            raise NotRunning(f"the session of this call has ended (server '{server}')")
        proxy = self._proxies.get((server, session))
        if proxy is not None:
            return proxy
        running = self.count(server)
        if limit is not None and running >= limit:
            raise QuotaExceeded(
                f"server '{server}' of tenant '{self._tenant}' already runs {running} session "
                f"instances (max_sessions_per_server {limit}): end a session, or wait until one "
                f"is idle for {config.idle_seconds:g} s",
                retry_after=max(1.0, min(config.idle_seconds or 60.0, 60.0)),
            )
        proxy = self._proxies[(server, session)] = start()
        log.info("%s/%s: new instance for session %s", self._tenant, server, session_label(session))
        return proxy

    def ended(self, session: str) -> None:
        """`session` ended: no instance is started for it from now on."""
        self._ended[session] = None
        while len(self._ended) > ENDED_SESSIONS:
            self._ended.popitem(last=False)

    def of(self, server: str) -> list[ServerActorProxy]:
        """The instances of `server` that run."""
        return [proxy for (name, _), proxy in self._proxies.items() if name == server]

    def count(self, server: str) -> int:
        """How many instances of `server` run."""
        return sum(1 for name, _ in self._proxies if name == server)

    def started(self, key: Key, status: ServerStatus) -> None:
        """The status an instance's start returned."""
        self._statuses[key] = status

    def on_status(self, status: ServerStatus) -> bool:
        """An instance's new status (told by it): recorded; an instance that stopped by itself
        (idle, or failed after its retries) is gone. False if it is older than what is known (not
        news: not to be relayed)."""
        key = (status.server, status.session or "")
        last = self._statuses.get(key)
        if last is not None and status.seq < last.seq:
            return False  # older than what is known (e.g. the idle stop of an instance woken since)
        if key not in self._proxies:
            return True  # dropped already: its last words
        self._statuses[key] = status
        if status.state in (ServerState.STOPPED, ServerState.FAILED):
            proxy = self._proxies.pop(key)
            self._statuses.pop(key, None)
            proxy.actor_ref.stop(block=False)
            log.info(
                "%s/%s: instance of session %s %s",
                self._tenant,
                status.server,
                session_label(key[1]),
                status.stopped_reason.value if status.stopped_reason else status.state.value,
            )
        return True

    def stop(self, which: Callable[[str, str], bool], timeout: float) -> int:
        """Stop the instances for which `which(server, session)` holds, in parallel, waiting up to
        `timeout` s for each; remove them. How many there were."""
        keys = [key for key in self._proxies if which(*key)]
        proxies = [self._proxies.pop(key) for key in keys]
        for key in keys:
            self._statuses.pop(key, None)
        futures = [proxy.stop_server() for proxy in proxies]
        for key, proxy, future in zip(keys, proxies, futures, strict=True):
            try:
                future.get(timeout=timeout)
            except Exception:  # isolation: one stuck instance must not keep the others running
                log.exception(
                    "stopping %s/%s of session %s failed", self._tenant, key[0], session_label(key[1])
                )
            proxy.actor_ref.stop(timeout=timeouts.ACTOR_STOP)
        return len(keys)

    def statuses(self, order: Iterable[str]) -> tuple[ServerStatus, ...]:
        """The latest status of every instance, in the order of their servers in `order`."""
        rank = {name: i for i, name in enumerate(order)}
        keys = sorted(self._statuses, key=lambda k: (rank.get(k[0], 0), k[1]))
        return tuple(self._statuses[k] for k in keys)
