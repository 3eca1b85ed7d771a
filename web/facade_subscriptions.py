"""Resource subscriptions through the facade: `resources/subscribe` (2025-11-25) and the resource
URIs of a `subscriptions/listen` stream (2026-07-28).

However many client sessions (or listen streams) subscribe to one resource of one server, the
server holds one subscription (`hub.upstream`); each `notifications/resources/updated` it sends
(a `ResourceUpdated` event) goes to every subscribed session under the URI that session was shown
(`Scope.uri`), and to the listen streams through the tenant's subscription bus
(`web.facade_changes`). The server's subscription ends when the last session unsubscribes or
ends, or the last stream closes. A per_session server is subscribed through its shared instance.
In a cluster, another replica's channel that subscribes to a server this replica runs is one more
subscriber (`hold_for_replica`, `web.cluster_link`): its updates go to the channel's callback.
Every subscribe asks the server (idempotent there: it still holds one subscription), so one lost
on another replica (its channel broke, the server moved) comes back at the next subscribe of any
session (docs/cluster.md).

Serving loop, except `heard`, a board listener (router thread).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import mcp.types as types
from mcp.shared.subscriptions import ResourceUpdated as ListenUpdate

from actors.models import Event, ResourceUpdated
from hub.errors import HubError
from web.facade_changes import ListChanges
from web.facade_scope import Scope

if TYPE_CHECKING:
    from hub.runtime import Hub
    from web.facade import Ctx

log = logging.getLogger(__name__)

Topic = tuple[str, str, str]  # (tenant, server, the server's own URI)
Tell = Callable[[ResourceUpdated], None]  # another replica's channel, as a subscriber (serving loop)
Unsubscribe = Callable[[Topic], Awaitable[Any]]  # how the server is unsubscribed (default: `hub.upstream`)


class Subscriptions:
    """The sessions subscribed to each resource. Serving loop, except `heard` (router thread)."""

    def __init__(self, hub_: Hub, changes: ListChanges) -> None:
        self.hub = hub_
        self.changes = changes
        self._streams = itertools.count(1)
        self.loop: asyncio.AbstractEventLoop | None = None  # the serving loop, once attached
        # → session → (SDK session, scope), or the callback of another replica's channel
        self._topics: dict[Topic, dict[str, tuple[Any, Scope] | Tell]] = {}
        self._locks: collections.defaultdict[Topic, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self._tasks: set[asyncio.Future[None]] = set()

    def count(self, tenant: str, server: str, uri: str) -> int:
        """How many sessions are subscribed to `uri` of `server`."""
        return len(self._topics.get((tenant, server, uri), {}))

    async def subscribe(self, ctx: Ctx, scope: Scope, server: str, uri: str, session: str | None) -> None:
        """Subscribe `session` to `uri` of `server` (the server's own URI), and the server (once:
        it is idempotent there).

        Raises:
            HubError: the server cannot be subscribed to (it does not support it, it is down).
        """
        key = session if session is not None else f"sdk:{id(ctx.session)}"
        await self._hold((scope.tenant, server, uri), key, (ctx.session, scope))

    async def hold_for_replica(
        self, topic: Topic, key: str, tell: Tell, subscribe: Callable[[], Awaitable[Any]]
    ) -> None:
        """Subscribe another replica's channel `key` to `topic` (a server this replica runs): the
        server's updates of it (its shared instance's) go to `tell`; `subscribe()` subscribes the
        server (no quota taken: the calling replica counted it)."""
        await self._hold(topic, key, tell, subscribe)

    async def _hold(
        self,
        topic: Topic,
        key: str,
        subscriber: tuple[Any, Scope] | Tell,
        subscribe: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        """Subscribe `key` (an SDK session to tell, or None: a listen stream; or a replica's
        channel) to `topic`, asking the server each time (one upstream subscription however many
        ask: the server keeps a set)."""
        async with self._locks[topic]:
            await (subscribe() if subscribe is not None else self.hub.upstream.subscribe(*topic))
            self._topics.setdefault(topic, {})[key] = subscriber

    async def listen(
        self,
        ctx: Ctx,
        scope: Scope,
        uris: Mapping[str, tuple[str, str]],
        params: types.SubscriptionsListenRequestParams,
    ) -> types.SubscriptionsListenResult:
        """Serve a `subscriptions/listen` stream on the tenant's bus, holding a subscription to each
        of `uris` (shown URI → (server, its own URI)) while it lasts. A resource whose server cannot
        be subscribed to is honored and never fires, as the SDK does for a URI it does not know."""
        key = f"listen:{next(self._streams)}"
        held: list[Topic] = []
        try:
            for server, uri in uris.values():
                topic = (scope.tenant, server, uri)
                try:
                    await self._hold(topic, key, (None, scope))
                except HubError as exc:
                    log.info("%s/%s: no updates of %s: %s", scope.tenant, server, uri, exc.message)
                    continue
                held.append(topic)
            return await self.changes.listen_handler(scope.tenant)(ctx, params)
        finally:  # (the stream may end by cancellation: the releases run as tasks of their own)
            for topic in held:
                self._spawn(self._release(topic, key))

    async def unsubscribe(self, scope: Scope, server: str, uri: str, session: str | None) -> None:
        """End `session`'s subscription to `uri` of `server`; the last one ends the server's."""
        if session is not None:
            await self._release((scope.tenant, server, uri), session)

    async def release(self, topic: Topic, session: str, unsubscribe: Unsubscribe | None = None) -> None:
        """End `session`'s (or a replica's channel's) subscription to `topic`; the last one ends
        the server's (by `unsubscribe`, if given)."""
        await self._release(topic, session, unsubscribe)

    async def _release(self, topic: Topic, session: str, unsubscribe: Unsubscribe | None = None) -> None:
        async with self._locks[topic]:
            subscribers = self._topics.get(topic)
            if subscribers is None or subscribers.pop(session, None) is None or subscribers:
                return
            del self._topics[topic]
            tenant, server, uri = topic
            try:
                await (
                    unsubscribe(topic) if unsubscribe is not None else self.hub.upstream.unsubscribe(*topic)
                )
            except HubError as exc:  # (the server is down: its subscriptions went with it)
                log.info("%s/%s: could not unsubscribe from %s: %s", tenant, server, uri, exc.message)

    def ended(self, session: str, unsubscribe: Unsubscribe | None = None) -> None:
        """`session` (or a replica's channel) ended: its subscriptions go, and the servers' that no
        one else holds (by `unsubscribe`, if given)."""
        for topic, subscribers in list(self._topics.items()):
            if session in subscribers:
                self._spawn(self._release(topic, session, unsubscribe))

    def heard(self, event: Event) -> None:
        """A board event (router thread): an update of a resource someone is subscribed to."""
        loop = self.loop
        if isinstance(event, ResourceUpdated) and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._deliver, event)

    def _deliver(self, event: ResourceUpdated) -> None:
        """Tell each subscribed session (of `event.session`, if it is a session instance's)."""
        topic = (event.tenant, event.server, event.uri)
        published: set[str] = set()
        for key, subscriber in list(self._topics.get(topic, {}).items()):
            if not isinstance(subscriber, tuple):  # another replica's channel: its shared instance's
                if event.session is None:
                    subscriber(event)
                continue
            sdk_session, scope = subscriber
            shown = scope.uri(event.server, event.uri)
            if sdk_session is None and shown not in published:  # listen streams: on the tenant's bus
                published.add(shown)
                self._spawn(self.changes.bus(event.tenant).publish(ListenUpdate(uri=shown)))
            elif sdk_session is not None and event.session in (None, key):
                self._spawn(self._send(topic, key, sdk_session, shown))

    async def _send(self, topic: Topic, key: str, sdk_session: Any, uri: str) -> None:
        try:
            await sdk_session.send_resource_updated(uri)
        except Exception:  # the session is gone: its subscription too
            await self._release(topic, key)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)  # a reference until done, so the task is not collected mid-way
        task.add_done_callback(self._tasks.discard)
