"""The internal channel of a cluster, its calling side: requests for servers another replica runs
are forwarded to it (docs/cluster.md).

One WebSocket per other replica and calling loop (`<its advertised URL>/cluster/link`, opened
with the cluster's secret as a bearer token; `web.cluster_link` is the other end), opened at the
first request and again after it closes. A request runs on the loop it is made from (the web
loop, mostly: no thread hop on the way), or, from a thread without one, on the link's own loop
(thread `cluster-link`). Requests are multiplexed on it by id. On an open channel a request is
written at once and is only a future: Tornado hands each message to its request as it is read
(no task, no queue), and the answer settles the future. Progress and log messages go to its
caller's `Requester` before the answer, in order, through a task made at the first of them; the
server's own requests (sampling, elicitation) are asked of that `Requester` and answered back. A
caller that gives up (timeout, its client cancelled) cancels the future, which sends `cancel`: the
request is cancelled on the replica that runs it. A channel that breaks fails each request in
flight on it at once with an upstream error.

`RemoteEndpoint` is what a route holds for such a server: the `ServerEndpoint` methods, each
returning a future of the request's answer (`Links.forward`).

Resource subscriptions are requests too (`subscribe`, `unsubscribe`: `web.cluster_link` says the
messages); the channel that made one then carries the resource's updates, unasked
(`{"updated": {...}}`), each handed to `Links`' `updated` callback as a `ResourceUpdated` (the
replica tells its router, which relays it as a local server's). A channel that breaks loses the
subscriptions it carried: a warning names them (docs/cluster.md says how they come back).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import hashlib
import itertools
import json
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import mcp.types as types
import tornado.httpclient
import tornado.websocket
from mcp import MCPError

from actors.models import ResourceUpdated, ToolResult
from actors.relay import Requester
from hub.cluster import ClusterNode
from hub.cluster_wire import ANSWERS, ASKS, error_of, result_of, updated_of
from hub.config_secrets import Secret
from hub.errors import NotRunning, UpstreamError

__all__ = ["LINK_PATH", "Links", "RemoteEndpoint", "ReplicaLost"]

log = logging.getLogger(__name__)

T = TypeVar("T")
LINK_PATH = "/cluster/link"
REPLICA_HEADER = "Mcp-Hub-Replica"
CONNECT_TIMEOUT = 5.0
END_TIMEOUT = 30.0  # the longest a session's end waits for another replica to stop its instances
SESSIONS = 100_000  # client sessions whose instances on other replicas are remembered
MAX_MESSAGE = 64 * 1024 * 1024


class ReplicaLost(UpstreamError):
    """The replica a request was forwarded to went away during it (`sent`), or cannot be reached
    (not `sent`: the request never left this replica)."""

    def __init__(self, message: str, replica: str, sent: bool = True) -> None:
        super().__init__(message)
        self.replica = replica
        self.sent = sent


Topic = tuple[str, str, str]  # (tenant, server, the server's own URI)


class _Link:
    """One open channel to a replica (its calling loop), and the resource subscriptions it holds
    there (`updated`: what to do with each of their updates)."""

    def __init__(self, replica: str, updated: Callable[[ResourceUpdated], None] | None = None) -> None:
        self.replica = replica
        self.updated = updated
        self.connection: tornado.websocket.WebSocketClientConnection | None = None
        self.requests: dict[int, _Request] = {}
        self.held: set[Topic] = set()
        self.closed = False

    def send(self, message: dict[str, Any]) -> None:
        try:
            if self.closed or self.connection is None:
                raise tornado.websocket.WebSocketClosedError()
            self.connection.write_message(json.dumps(message, separators=(",", ":")))
        except tornado.websocket.WebSocketClosedError:
            raise ReplicaLost(f"the channel to replica '{self.replica}' is closed", self.replica) from None

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()

    def received(self, raw: str | bytes | None) -> None:
        """Tornado's callback for each message (None: the channel closed, which fails every
        request in flight on it): handed to its request at once, no task or queue on the way."""
        if raw is None:
            self.closed = True
            for pending in list(self.requests.values()):
                pending.deliver(None)
            if self.held:  # (a session that subscribes again restores one: docs/cluster.md)
                lost = ", ".join(f"{t}/{s} {u}" for t, s, u in sorted(self.held))
                log.warning(
                    "cluster: channel to replica %s closed: subscriptions lost: %s", self.replica, lost
                )
            return
        try:
            message = json.loads(raw)
            if "updated" in message:
                self._updated(updated_of(message))
                return
            request = self.requests.get(message["id"])
        except (ValueError, KeyError, TypeError):
            log.warning("cluster: a malformed message from replica %s ignored", self.replica)
            return
        if request is not None:
            request.deliver(message)

    def _updated(self, event: ResourceUpdated) -> None:
        """An update of a resource this channel holds (unasked): to the `updated` callback."""
        if (event.tenant, event.server, event.uri) in self.held and self.updated is not None:
            self.updated(event)

    def answered(self, op: dict[str, Any]) -> None:
        """A request `op` succeeded: remember the resource subscriptions this channel holds."""
        if op["op"] in ("subscribe", "unsubscribe"):
            topic = (str(op["tenant"]), str(op["server"]), str(op["uri"]))
            (self.held.add if op["op"] == "subscribe" else self.held.discard)(topic)


class _Request:
    """One request in flight on a link (its calling loop): its future, settled by the answer;
    what comes before the answer (progress, log messages, the server's own requests) goes through
    a relay task, made at the first such message, which then settles the future after them."""

    def __init__(
        self,
        link: _Link,
        call_id: int,
        op: dict[str, Any],
        requester: Requester | None,
        read: Callable[[Any], Any] | None,
    ) -> None:
        self.link = link
        self.call_id = call_id
        self.op = op
        self.server = op.get("server")
        self.requester = requester
        self.read = read
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.backlog: asyncio.Queue[dict[str, Any] | None] | None = None
        self.relaying: asyncio.Task[None] | None = None
        self.asks: set[asyncio.Task[None]] = set()
        link.requests[call_id] = self
        self.future.add_done_callback(self.finished)
        try:
            link.send({"id": call_id, **op})
        except ReplicaLost as exc:
            self.future.set_exception(exc)

    def deliver(self, message: dict[str, Any] | None) -> None:
        """A message for this request (None: the channel closed)."""
        if self.future.done():
            return
        if self.backlog is None and (message is None or "result" in message or "error" in message):
            self.settle(message)
            return
        if self.backlog is None:
            self.backlog = asyncio.Queue()
            self.relaying = asyncio.get_running_loop().create_task(self.relay_all(self.backlog))
        self.backlog.put_nowait(message)

    def settle(self, message: dict[str, Any] | None) -> None:
        """End the request with its answer, its error, or the loss of its replica."""
        if self.future.done():
            return
        try:
            if message is None:
                replica = self.link.replica
                raise ReplicaLost(
                    f"replica '{replica}', which runs server '{self.server}', went away mid-request", replica
                )
            if "result" not in message:
                raise error_of(message["error"])
            answer = message["result"]
            self.future.set_result(self.read(answer) if self.read is not None else answer)
            self.link.answered(self.op)
        except Exception as exc:  # (a malformed answer's ValueError too: the caller's error)
            self.future.set_exception(exc)

    async def relay_all(self, backlog: asyncio.Queue[dict[str, Any] | None]) -> None:
        """Relay the messages before the answer, in order; then settle with the answer."""
        try:
            while not self.future.done():
                message = await backlog.get()
                if message is None or "result" in message or "error" in message:
                    self.settle(message)
                    return
                await self.relay(message)
        except Exception as exc:  # (the caller's requester failed: its error, not a hang)
            if not self.future.done():
                self.future.set_exception(exc)

    async def relay(self, message: dict[str, Any]) -> None:
        """A progress or log message to the caller, or the server's request asked of it."""
        link, requester = self.link, self.requester
        if requester is None:
            if "ask" in message:
                error = {"code": types.INVALID_REQUEST, "message": "no client can answer this call's request"}
                link.send({"id": self.call_id, "answer": message["ask"], "error": error})
            return
        try:
            if "progress" in message:
                value, total, text = message["progress"]
                await requester.progress(value, total, text)
            elif "log" in message:
                await requester.log(types.LoggingMessageNotificationParams.model_validate(message["log"]))
            elif "ask" in message:
                task = asyncio.create_task(self.ask(message, requester))
                self.asks.add(task)
                task.add_done_callback(self.asks.discard)
        except (ValueError, TypeError) as exc:
            log.debug("cluster: a malformed relay from replica %s dropped: %s", link.replica, exc)

    async def ask(self, message: dict[str, Any], requester: Requester) -> None:
        """Ask the caller what the server asked; send back its answer or its refusal."""
        try:
            raw = message["request"]
            request = ASKS[raw["method"]].model_validate(raw, by_name=False)
            answer = await requester.ask(request, ANSWERS[message["result_type"]])
            reply: dict[str, Any] = {
                "result": answer.model_dump(mode="json", by_alias=True, exclude_none=True)
            }
        except MCPError as exc:
            reply = {"error": exc.error.model_dump(mode="json", exclude_none=True)}
        except (KeyError, TypeError, ValueError) as exc:
            reply = {
                "error": {"code": types.INVALID_PARAMS, "message": f"a request the hub cannot relay: {exc!r}"}
            }
        except Exception as exc:  # the client went away
            reply = {
                "error": {"code": types.INTERNAL_ERROR, "message": f"the client could not answer: {exc}"}
            }
        if not self.link.closed:
            self.link.send({"id": self.call_id, "answer": message["ask"], **reply})

    def finished(self, future: asyncio.Future[Any]) -> None:
        """Done callback: forget the request; a caller that gave up cancels it on the replica."""
        self.link.requests.pop(self.call_id, None)
        if future.cancelled() and not self.link.closed:
            with contextlib.suppress(ReplicaLost):
                self.link.send({"id": self.call_id, "cancel": True})
        if self.relaying is not None:
            self.relaying.cancel()
        for task in self.asks:
            task.cancel()


class Links:
    """The channels to the other replicas (see the module).

    Args:
        node: this replica's cluster node (the others' advertised URLs).
        secret: the cluster's secret.
        updated: what to do with an update of a resource subscribed on another replica (on the
            loop of the channel that carried it).
    """

    def __init__(
        self, node: ClusterNode, secret: Secret, updated: Callable[[ResourceUpdated], None] | None = None
    ) -> None:
        self._node = node
        self._secret = secret
        self._updated = updated
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._links: dict[tuple[asyncio.AbstractEventLoop, str], _Link] = {}  # by calling loop and replica
        self._opening: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Lock] = {}
        self._stopped = False
        self._ids = itertools.count(1)
        # Per client session (of this replica): the replicas that run an instance for it (the
        # oldest forgotten past `SESSIONS`: a session that never ends keeps none of this forever).
        self._sessions: collections.OrderedDict[str, set[str]] = collections.OrderedDict()
        self._sessions_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Run the link loop on `cluster-link`."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="cluster-link", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close every channel (requests in flight fail) and stop the loop."""
        self._stopped = True
        for (calling, _), link in list(self._links.items()):
            if calling is not self._loop and not calling.is_closed():
                with contextlib.suppress(RuntimeError):  # (closed meanwhile)
                    calling.call_soon_threadsafe(link.close)
        loop, self._loop = self._loop, None
        if loop is None:
            return

        def close() -> None:
            for (calling, _), link in self._links.items():
                if calling is loop:
                    link.close()
            loop.call_later(0.2, loop.stop)

        loop.call_soon_threadsafe(close)
        if self._thread is not None:
            self._thread.join(timeout=5)
        loop.close()

    def endpoint(self, replica: str, tenant: str, server: str) -> RemoteEndpoint:
        """The endpoint of `tenant`'s `server` as `replica` runs it (any thread)."""
        return RemoteEndpoint(self, replica, tenant, server)

    def session_on(self, session: str, replica: str) -> str:
        """`replica` runs (or will run) an instance for this replica's client `session`: what the
        session is named there (a hash of it: the id is a credential and never leaves). Any thread."""
        with self._sessions_lock:
            self._sessions.setdefault(session, set()).add(replica)
            self._sessions.move_to_end(session)
            while len(self._sessions) > SESSIONS:
                self._sessions.popitem(last=False)
        return hashlib.sha256(session.encode()).hexdigest()[:32]

    def end_session(self, session: str) -> int:
        """A client session of this replica ended: stop its instances on the other replicas, and
        wait for them to be gone; how many stopped. Blocks: any thread but a loop's."""
        with self._sessions_lock:
            replicas = sorted(self._sessions.pop(session, ()))
        named = hashlib.sha256(session.encode()).hexdigest()[:32]
        ends = {r: self.forward(r, {"op": "end_session", "session": named}, read=int) for r in replicas}
        stopped = 0
        for replica, ended in ends.items():
            try:
                stopped += ended.result(timeout=END_TIMEOUT)
            except Exception as exc:  # (that replica died or stops: its instances go with it)
                log.warning("cluster: session instances on replica %s not stopped: %s", replica, exc)
        return stopped

    def forward(
        self,
        replica: str,
        op: dict[str, Any],
        requester: Requester | None = None,
        read: Callable[[Any], T] | None = None,
    ) -> concurrent.futures.Future[T]:
        """Send `op` to `replica`: the future of its answer (`read` of it), what comes before the
        answer relayed to `requester` (any thread).

        On a thread with a running loop the request runs on that loop, its future an asyncio one
        (the caller awaits either kind with `asyncio.wrap_future`): sent at once on the loop's open
        channel, else once a task has opened it. Else it runs on the link loop.
        """
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and not self._stopped:
            link = self._links.get((running, replica))
            if link is not None and not link.closed:
                return _Request(link, next(self._ids), op, requester, read).future  # type: ignore[return-value]
            return running.create_task(self._request(replica, op, requester, read))  # type: ignore[return-value]
        loop = self._loop
        if loop is None:
            raise NotRunning("this replica is stopping: it forwards no more requests")
        return asyncio.run_coroutine_threadsafe(self._request(replica, op, requester, read), loop)

    async def _request(
        self, replica: str, op: dict[str, Any], requester: Requester | None, read: Callable[[Any], T] | None
    ) -> T:
        """`forward` once the channel to `replica` is open (opened here if need be)."""
        link = await self._link(replica)
        return await _Request(link, next(self._ids), op, requester, read).future  # type: ignore[no-any-return]

    async def _link(self, replica: str) -> _Link:
        """The open channel to `replica`, opened if need be (one opening at a time per replica)."""
        key = (asyncio.get_running_loop(), replica)
        link = self._links.get(key)
        if link is not None and not link.closed:
            return link
        if self._stopped:
            raise NotRunning("this replica is stopping: it forwards no more requests")
        for gone in [k for k in self._links if k[0].is_closed()]:  # (a borrowed loop that ended)
            self._links.pop(gone, None)
            self._opening.pop(gone, None)
        lock = self._opening.setdefault(key, asyncio.Lock())
        async with lock:
            link = self._links.get(key)
            if link is not None and not link.closed:
                return link
            url = self._node.view().urls.get(replica)
            if url is None:
                raise NotRunning(f"replica '{replica}' has not said where it can be reached (yet)")
            request = tornado.httpclient.HTTPRequest(
                url.replace("http", "ws", 1) + LINK_PATH,
                headers={
                    "Authorization": f"Bearer {self._secret.reveal()}",
                    REPLICA_HEADER: self._node.replica_id,
                },
                connect_timeout=CONNECT_TIMEOUT,
                request_timeout=CONNECT_TIMEOUT,
            )
            link = _Link(replica, self._updated)
            try:
                connection = await tornado.websocket.websocket_connect(
                    request, max_message_size=MAX_MESSAGE, on_message_callback=link.received
                )
            except (OSError, tornado.httpclient.HTTPClientError, tornado.websocket.WebSocketError) as exc:
                raise ReplicaLost(
                    f"replica '{replica}' cannot be reached at {url}: {exc}", replica, sent=False
                ) from None
            if connection.protocol is not None:  # (small messages, each awaited: no Nagle delay)
                connection.protocol.set_nodelay(True)
            link.connection = connection
            self._links[key] = link
            return link


class RemoteEndpoint:
    """A server another replica runs, as a route holds it: each method forwards the request there
    and returns a `concurrent.futures.Future` (any thread)."""

    def __init__(
        self, links: Links, replica: str, tenant: str, server: str, session: str | None = None
    ) -> None:
        self.links = links
        self.replica = replica
        self.tenant = tenant
        self.server = server
        self.session = session  # (a per_session server's: the caller's session, as named there)

    def for_session(self, session: str) -> RemoteEndpoint:
        """This per_session server's instance for the caller's `session`, which the replica that
        runs the server starts (and stops when the session ends here: `Links.end_session`)."""
        named = self.links.session_on(session, self.replica)
        return RemoteEndpoint(self.links, self.replica, self.tenant, self.server, named)

    def _op(self, op: str, **fields: Any) -> dict[str, Any]:
        if self.session is not None:
            fields["session"] = self.session
        return {"op": op, "tenant": self.tenant, "server": self.server, **fields}

    def _forward(
        self, op: dict[str, Any], requester: Requester | None = None, read: Callable[[Any], T] | None = None
    ) -> concurrent.futures.Future[T]:
        if requester is None:  # (a call no client waits on, a REST one: run there as it would run here)
            op["relay"] = False
        return self.links.forward(self.replica, op, requester, read)

    def call_tool(
        self, name: str, arguments: dict[str, Any], requester: Requester | None = None
    ) -> concurrent.futures.Future[ToolResult]:
        """Call the server's tool `name` on the replica that runs it."""
        return self._forward(self._op("call_tool", name=name, arguments=arguments), requester, result_of)

    def read_resource(self, uri: str) -> concurrent.futures.Future[dict[str, Any]]:
        """Read a resource of the server."""
        return self._forward(self._op("read_resource", uri=uri), read=_object)

    def get_prompt(self, name: str, arguments: dict[str, str]) -> concurrent.futures.Future[dict[str, Any]]:
        """Get a prompt of the server."""
        return self._forward(self._op("get_prompt", name=name, arguments=arguments), read=_object)

    def complete(self, params: types.CompleteRequestParams) -> concurrent.futures.Future[dict[str, Any]]:
        """Ask the server for completions."""
        dumped = params.model_dump(mode="json", by_alias=True, exclude_none=True)
        return self._forward(self._op("complete", params=dumped), read=_object)

    def subscribe(self, uri: str) -> concurrent.futures.Future[None]:
        """Subscribe to the updates of the server's resource `uri` (its shared instance's) on the
        replica that runs it; they come back on the channel (`Links`' `updated`)."""
        return self._forward(self._op("subscribe", uri=uri))

    def unsubscribe(self, uri: str) -> concurrent.futures.Future[None]:
        """Drop the channel's subscription to the server's resource `uri` there."""
        return self._forward(self._op("unsubscribe", uri=uri))


def _object(answer: Any) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise UpstreamError("the replica that runs the server answered something other than an object")
    return answer
