"""Resource subscriptions through the facade (`resources/subscribe`, 2025-11-25).

However many client sessions subscribe to one resource of one server, the server holds one
subscription (`hub.upstream`); each `notifications/resources/updated` it sends (a
`ResourceUpdated` event) goes to every subscribed session under the URI that session was shown
(`Scope.uri`). The server's subscription ends when the last session unsubscribes or ends. A
per_session server is subscribed through its shared instance.

Serving loop, except `heard`, a board listener (router thread).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING, Any

from actors.models import Event, ResourceUpdated
from hub.errors import HubError
from web.facade_scope import Scope

if TYPE_CHECKING:
    from hub.runtime import Hub
    from web.facade import Ctx

log = logging.getLogger(__name__)

Topic = tuple[str, str, str]  # (tenant, server, the server's own URI)


class Subscriptions:
    """The sessions subscribed to each resource. Serving loop, except `heard` (router thread)."""

    def __init__(self, hub_: Hub) -> None:
        self.hub = hub_
        self.loop: asyncio.AbstractEventLoop | None = None  # the serving loop, once attached
        self._topics: dict[Topic, dict[str, tuple[Any, Scope]]] = {}  # → session → (SDK session, scope)
        self._locks: collections.defaultdict[Topic, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self._tasks: set[asyncio.Future[None]] = set()

    def count(self, tenant: str, server: str, uri: str) -> int:
        """How many sessions are subscribed to `uri` of `server`."""
        return len(self._topics.get((tenant, server, uri), {}))

    async def subscribe(self, ctx: Ctx, scope: Scope, server: str, uri: str, session: str | None) -> None:
        """Subscribe `session` to `uri` of `server` (the server's own URI); the first subscriber
        subscribes the server.

        Raises:
            HubError: the server cannot be subscribed to (it does not support it, it is down).
        """
        topic = (scope.tenant, server, uri)
        key = session if session is not None else f"sdk:{id(ctx.session)}"
        async with self._locks[topic]:
            subscribers = self._topics.get(topic)
            if not subscribers:
                await self.hub.upstream.subscribe(scope.tenant, server, uri)
                subscribers = self._topics[topic] = {}
            subscribers[key] = (ctx.session, scope)

    async def unsubscribe(self, scope: Scope, server: str, uri: str, session: str | None) -> None:
        """End `session`'s subscription to `uri` of `server`; the last one ends the server's."""
        if session is not None:
            await self._release((scope.tenant, server, uri), session)

    async def _release(self, topic: Topic, session: str) -> None:
        async with self._locks[topic]:
            subscribers = self._topics.get(topic)
            if subscribers is None or subscribers.pop(session, None) is None or subscribers:
                return
            del self._topics[topic]
            tenant, server, uri = topic
            try:
                await self.hub.upstream.unsubscribe(tenant, server, uri)
            except HubError as exc:  # (the server is down: its subscriptions went with it)
                log.info("%s/%s: could not unsubscribe from %s: %s", tenant, server, uri, exc.message)

    def ended(self, session: str) -> None:
        """`session` ended: its subscriptions go, and the servers' that no one else holds."""
        for topic, subscribers in list(self._topics.items()):
            if session in subscribers:
                self._spawn(self._release(topic, session))

    def heard(self, event: Event) -> None:
        """A board event (router thread): an update of a resource someone is subscribed to."""
        loop = self.loop
        if isinstance(event, ResourceUpdated) and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._deliver, event)

    def _deliver(self, event: ResourceUpdated) -> None:
        """Tell each subscribed session (of `event.session`, if it is a session instance's)."""
        topic = (event.tenant, event.server, event.uri)
        for key, (sdk_session, scope) in list(self._topics.get(topic, {}).items()):
            if event.session is None or event.session == key:
                self._spawn(self._send(topic, key, sdk_session, scope.uri(event.server, event.uri)))

    async def _send(self, topic: Topic, key: str, sdk_session: Any, uri: str) -> None:
        try:
            await sdk_session.send_resource_updated(uri)
        except Exception:  # the session is gone: its subscription too
            await self._release(topic, key)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)  # a reference until done, so the task is not collected mid-way
        task.add_done_callback(self._tasks.discard)
