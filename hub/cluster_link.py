"""The internal channel of a cluster, its calling side: requests for servers another replica runs
are forwarded to it (docs/cluster.md).

One WebSocket per other replica and calling loop (`<its advertised URL>/cluster/link`, opened
with the cluster's secret as a bearer token; `web.cluster_link` is the other end), opened at the
first request and again after it closes. A request runs on the loop it is made from (the web
loop, mostly: no thread hop on the way), or, from a thread without one, on the link's own loop
(thread `cluster-link`). Requests are multiplexed on
it by id. A request's messages come back in order on its own queue: progress and log messages go
to its caller's `Requester` before the answer that ends it; the server's own requests (sampling,
elicitation) are asked of that `Requester` and answered back. A caller that gives up (timeout, its
client cancelled) sends `cancel`, which cancels the request on the replica that runs it. A channel
that breaks fails each request in flight on it at once with an upstream error.

`RemoteEndpoint` is what a route holds for such a server: the `ServerEndpoint` methods, each
returning a `concurrent.futures.Future` whose work runs on the link's loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import mcp.types as types
import tornado.httpclient
import tornado.websocket
from mcp import MCPError

from actors.models import ToolResult
from actors.relay import Requester
from hub.cluster import ClusterNode
from hub.cluster_wire import error_of, result_of
from hub.config_secrets import Secret
from hub.errors import BadRequest, HubError, NotRunning, UpstreamError

__all__ = ["LINK_PATH", "Links", "RemoteEndpoint", "ReplicaLost"]

log = logging.getLogger(__name__)

T = TypeVar("T")
LINK_PATH = "/cluster/link"
REPLICA_HEADER = "Mcp-Hub-Replica"
CONNECT_TIMEOUT = 5.0
MAX_MESSAGE = 64 * 1024 * 1024
# What a server may ask the client of a forwarded call, and the answer's type.
ASKS: dict[str, type[Any]] = {
    "sampling/createMessage": types.CreateMessageRequest,
    "elicitation/create": types.ElicitRequest,
}
ANSWERS: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (types.CreateMessageResult, types.CreateMessageResultWithTools, types.ElicitResult)
}


class ReplicaLost(UpstreamError):
    """The replica a request was forwarded to went away during it (`sent`), or cannot be reached
    (not `sent`: the request never left this replica)."""

    def __init__(self, message: str, replica: str, sent: bool = True) -> None:
        super().__init__(message)
        self.replica = replica
        self.sent = sent


class _Link:
    """One open channel to a replica (the link loop)."""

    def __init__(self, replica: str, connection: tornado.websocket.WebSocketClientConnection) -> None:
        self.replica = replica
        self.connection = connection
        self.queues: dict[int, asyncio.Queue[dict[str, Any] | None]] = {}
        self.closed = False

    def send(self, message: dict[str, Any]) -> None:
        if self.closed:
            raise ReplicaLost(f"the channel to replica '{self.replica}' is closed", self.replica)
        self.connection.write_message(json.dumps(message, separators=(",", ":")))

    async def read(self) -> None:
        """Hand each message to its request's queue until the channel closes; then fail them all."""
        try:
            while True:
                raw = await self.connection.read_message()
                if raw is None:
                    break
                try:
                    message = json.loads(raw)
                    queue = self.queues.get(message["id"])
                except (ValueError, KeyError, TypeError):
                    log.warning("cluster: a malformed message from replica %s ignored", self.replica)
                    continue
                if queue is not None:
                    queue.put_nowait(message)
        finally:
            self.closed = True
            for queue in self.queues.values():
                queue.put_nowait(None)


class Links:
    """The channels to the other replicas (see the module).

    Args:
        node: this replica's cluster node (the others' advertised URLs).
        secret: the cluster's secret.
    """

    def __init__(self, node: ClusterNode, secret: Secret) -> None:
        self._node = node
        self._secret = secret
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._links: dict[tuple[asyncio.AbstractEventLoop, str], _Link] = {}  # by calling loop and replica
        self._opening: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Lock] = {}
        self._stopped = False
        self._ids = itertools.count(1)

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
                    calling.call_soon_threadsafe(link.connection.close)
        loop, self._loop = self._loop, None
        if loop is None:
            return

        def close() -> None:
            for (calling, _), link in self._links.items():
                if calling is loop:
                    link.connection.close()
            loop.call_later(0.2, loop.stop)

        loop.call_soon_threadsafe(close)
        if self._thread is not None:
            self._thread.join(timeout=5)
        loop.close()

    def endpoint(self, replica: str, tenant: str, server: str) -> RemoteEndpoint:
        """The endpoint of `tenant`'s `server` as `replica` runs it (any thread)."""
        return RemoteEndpoint(self, replica, tenant, server)

    def submit(self, coro: Awaitable[T]) -> concurrent.futures.Future[T]:
        """Run `coro` on this thread's running loop as a task, else on the link loop (any thread).
        Either way the caller awaits it with `asyncio.wrap_future`."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and not self._stopped:
            return running.create_task(coro)  # type: ignore[arg-type, return-value]
        loop = self._loop
        if loop is None:
            if asyncio.iscoroutine(coro):
                coro.close()
            raise NotRunning("this replica is stopping: it forwards no more requests")
        return asyncio.run_coroutine_threadsafe(coro, loop)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ requests (link loop)

    async def request(self, replica: str, op: dict[str, Any], requester: Requester | None = None) -> Any:
        """Send `op` to `replica` and await its answer, relaying what comes before it (link loop)."""
        link = await self._link(replica)
        call_id = next(self._ids)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        link.queues[call_id] = queue
        asks: set[asyncio.Task[None]] = set()
        try:
            link.send({"id": call_id, **op})
            while True:
                message = await queue.get()
                if message is None:
                    server = op.get("server")
                    raise ReplicaLost(
                        f"replica '{replica}', which runs server '{server}', went away mid-request", replica
                    )
                if "result" in message:
                    return message["result"]
                if "error" in message:
                    raise error_of(message["error"])
                await self._relay(link, call_id, message, requester, asks)
        except asyncio.CancelledError:
            if not link.closed:
                link.send({"id": call_id, "cancel": True})
            raise
        finally:
            link.queues.pop(call_id, None)
            for task in asks:
                task.cancel()

    async def _relay(
        self,
        link: _Link,
        call_id: int,
        message: dict[str, Any],
        requester: Requester | None,
        asks: set[asyncio.Task[None]],
    ) -> None:
        """A progress or log message to the caller, or the server's request asked of it."""
        if requester is None:
            if "ask" in message:
                error = {"code": types.INVALID_REQUEST, "message": "no client can answer this call's request"}
                link.send({"id": call_id, "answer": message["ask"], "error": error})
            return
        try:
            if "progress" in message:
                value, total, text = message["progress"]
                await requester.progress(value, total, text)
            elif "log" in message:
                await requester.log(types.LoggingMessageNotificationParams.model_validate(message["log"]))
            elif "ask" in message:
                task = asyncio.create_task(self._ask(link, call_id, message, requester))
                asks.add(task)
                task.add_done_callback(asks.discard)
        except (ValueError, TypeError) as exc:
            log.debug("cluster: a malformed relay from replica %s dropped: %s", link.replica, exc)

    async def _ask(self, link: _Link, call_id: int, message: dict[str, Any], requester: Requester) -> None:
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
        if not link.closed:
            link.send({"id": call_id, "answer": message["ask"], **reply})

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
            try:
                connection = await tornado.websocket.websocket_connect(request, max_message_size=MAX_MESSAGE)
            except (OSError, tornado.httpclient.HTTPClientError, tornado.websocket.WebSocketError) as exc:
                raise ReplicaLost(
                    f"replica '{replica}' cannot be reached at {url}: {exc}", replica, sent=False
                ) from None
            if connection.protocol is not None:  # (small messages, each awaited: no Nagle delay)
                connection.protocol.set_nodelay(True)
            link = _Link(replica, connection)
            self._links[key] = link
            asyncio.get_running_loop().create_task(link.read())
            return link


class RemoteEndpoint:
    """A server another replica runs, as a route holds it: each method forwards the request there
    and returns a `concurrent.futures.Future` (any thread)."""

    def __init__(self, links: Links, replica: str, tenant: str, server: str) -> None:
        self.links = links
        self.replica = replica
        self.tenant = tenant
        self.server = server

    def _op(self, op: str, **fields: Any) -> dict[str, Any]:
        return {"op": op, "tenant": self.tenant, "server": self.server, **fields}

    def _forward(
        self, op: dict[str, Any], requester: Requester | None = None, read: Callable[[Any], T] | None = None
    ) -> concurrent.futures.Future[T]:
        async def run() -> T:
            answer = await self.links.request(self.replica, op, requester)
            return read(answer) if read is not None else answer  # type: ignore[no-any-return]

        return self.links.submit(run())

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
        """Not across replicas yet: a clear error."""
        return _refused(self.server, self.replica)

    def unsubscribe(self, uri: str) -> concurrent.futures.Future[None]:
        """Not across replicas yet: a clear error."""
        return _refused(self.server, self.replica)


def _object(answer: Any) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise UpstreamError("the replica that runs the server answered something other than an object")
    return answer


def _refused(server: str, replica: str) -> concurrent.futures.Future[None]:
    future: concurrent.futures.Future[None] = concurrent.futures.Future()
    error: HubError = BadRequest(
        f"server '{server}' runs on replica '{replica}': resource subscriptions across replicas are not "
        "supported yet (docs/cluster.md)"
    )
    future.set_exception(error)
    return future
