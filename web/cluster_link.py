"""The internal channel of a cluster, its serving side: `WS /cluster/link`, where the other
replicas forward requests for the servers this replica runs (docs/cluster.md; `hub.cluster_link`
is the calling side and says the protocol).

Only a replica may open it: the upgrade must carry the cluster's secret as a bearer token (a hub
without `cluster:` has no such route: 404; a wrong or missing secret: 401, and nothing else is
read). A forwarded request is served by this replica's own server only, never forwarded again: a
server that does not run here (it moved meanwhile) is `server_not_running`, which the calling
replica reports. The quotas, the audit and the metrics were applied by the replica the client
called; here the request goes straight to the server's loop, its progress, log messages and the
server's own requests going back on the channel. A channel that closes cancels its requests.

Resource subscriptions: `{"id", "op": "subscribe" | "unsubscribe", "tenant", "server", "uri"}`
(the server's own URI) makes the channel one more subscriber of that resource here, counted with
this replica's own facade sessions (`web.facade_subscriptions`: the server holds one subscription
whoever holds it), answered `{"id", "result": null}`. Each update of a resource the channel holds
(the server's shared instance's `ResourceUpdated`) is sent on the channel unasked, with no id:
`{"updated": {"tenant", "server", "uri"}}`. The channel's close releases all it held.

A request is submitted to the server's loop as its message is read (no task, once the server's
endpoint is known here), and its answer goes back from the done callback of its future: the same
two thread hops as a local call, nothing more.

Web loop, except `_LinkRequester`'s methods and `ClusterLinkHandler._done`, which the server's loop
calls.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import logging
from collections.abc import Coroutine
from typing import Any

import mcp.types as types
import tornado.websocket
from mcp import MCPError

from actors.call_gate import CallGate
from actors.calls import ServerEndpoint
from actors.models import CatalogChanged, Event, ResourceUpdated, ServerStateChanged
from hub.cluster_link import MAX_MESSAGE, REPLICA_HEADER
from hub.cluster_wire import ANSWERS, error_json, published_json, result_json, updated_json
from hub.errors import BadRequest, CallTimeout, HubError, NotFound, NotRunning, Unauthorized, UpstreamError
from hub.runtime import Hub
from web.auth import bearer_token
from web.facade_subscriptions import Subscriptions
from web.mcp_endpoint import McpEndpoint

__all__ = ["ROUTES", "ClusterLinkHandler"]

log = logging.getLogger(__name__)

Route = tuple[ServerEndpoint, CallGate, float, bool, bool]  # (the router's `server_route`)


class ClusterLinkHandler(tornado.websocket.WebSocketHandler):
    """`WS /cluster/link`: requests forwarded by the other replicas (web loop)."""

    route = "/cluster/link"
    public = False  # (a bearer token: the cluster's secret, not an API key; checked in `get`)

    @classmethod
    def allowed_methods(cls) -> list[str]:
        """The HTTP method of the upgrade request."""
        return ["GET"]

    @property
    def hub(self) -> Hub:
        return self.application.settings["hub"]

    def check_origin(self, origin: str) -> bool:
        """Never a browser's: a replica sends no `Origin`."""
        return False

    def refuse(self, exc: HubError) -> None:
        self.set_status(exc.status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish({"error": {"code": exc.code, "message": exc.message}})

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """The upgrade, for a replica of this cluster only."""
        cluster = self.hub.config.cluster
        if cluster is None or self.hub.cluster is None:
            self.refuse(NotFound("no route /cluster/link: this hub is not a cluster's replica"))
            return
        token = bearer_token(self, allow_query=False)
        if token is None or not cluster.secret.matches(token):
            self.refuse(Unauthorized("the cluster's internal channel needs the cluster's secret"))
            return
        self.peer = self.request.headers.get(REPLICA_HEADER, "?")[:64]
        await super().get(*args, **kwargs)

    def get_compression_options(self) -> None:
        return None

    @property
    def max_message_size(self) -> int:  # type: ignore[override]
        return MAX_MESSAGE

    def open(self, *args: str) -> None:
        self.set_nodelay(True)  # (small messages, each awaited: no Nagle delay)
        self.loop = asyncio.get_running_loop()
        # The requests running here by id: a task while the endpoint is asked for, then the
        # future of the request on the server's loop (cancelling either cancels the request).
        self.running: dict[Any, asyncio.Task[None] | concurrent.futures.Future[Any]] = {}
        self.asks: dict[tuple[Any, Any], asyncio.Future[dict[str, Any]]] = {}
        self.next_ask = 0
        # This replica's routes by (tenant, server), asked of the router once each, forgotten
        # at each change of a catalog or a status here (a reload may replace a server's actor).
        self.endpoints: dict[tuple[str, str], Route] = {}
        self.subscriber = f"replica:{self.peer}:{id(self)}"  # (its key among a resource's subscribers)
        self.hub.board.add_listener(self._on_event)

    def _on_event(self, event: Event) -> None:
        """Board listener (router thread): a change here may replace an endpoint."""
        if isinstance(event, ServerStateChanged) or (isinstance(event, CatalogChanged) and not event.remote):
            self.loop.call_soon_threadsafe(self.endpoints.clear)

    def on_close(self) -> None:
        if hasattr(self, "endpoints"):
            self.hub.board.remove_listener(self._on_event)
            subscriptions = self._subscriptions()
            if subscriptions is not None:  # (what it held is released: the last one unsubscribes the server)
                subscriptions.ended(self.subscriber, self._unsubscribe)
        for running in list(getattr(self, "running", {}).values()):
            running.cancel()

    def send(self, message: dict[str, Any]) -> None:
        """Send one message to the calling replica (web loop); a closed channel drops it."""
        if self.ws_connection is None or self.ws_connection.is_closing():
            return
        self.write_message(json.dumps(message, separators=(",", ":")))

    def on_message(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
            call_id = message["id"]
        except (ValueError, KeyError, TypeError):
            log.warning("cluster: a malformed message from replica %s ignored", self.peer)
            return
        if message.get("op") == "end_session":
            self._run(call_id, self._end_session(call_id, str(message["session"])))
        elif message.get("op") == "lifecycle":
            self._run(call_id, self._lifecycle(call_id, message))
        elif message.get("op") in ("subscribe", "unsubscribe"):
            self._run(call_id, self._subscription(call_id, message))
        elif "op" in message:
            self._start(call_id, message)
        elif "cancel" in message and call_id in self.running:
            self.running[call_id].cancel()
        elif "answer" in message:
            waiting = self.asks.pop((call_id, message["answer"]), None)
            if waiting is not None and not waiting.done():
                waiting.set_result(message)

    def _start(self, call_id: Any, message: dict[str, Any], route: Route | None = None) -> None:
        """Start one forwarded request on the local server: at once when its endpoint is known
        here (no task: the answer comes back by `_answered`), else once a task asked for it. A
        server that starts when called (on_demand, per_session) goes through the call path's
        wakes and session instances (`CallPath.forwarded_async`)."""
        try:
            if route is None:
                route = self.endpoints.get((str(message["tenant"]), str(message["server"])))
            if route is None:
                self._run(call_id, self._start_first(call_id, message))
                return
            relayed = message.get("relay") is not False  # (False: no client waits on the caller's side)
            requester = _LinkRequester(self, call_id) if relayed else None
            if route[3] or route[4]:
                self._run(call_id, self._lazy(call_id, message, route, requester))
                return
            future = _submit(route[0], message, requester)
        except Exception as exc:
            self.send({"id": call_id, **_error_reply(exc)})
            return
        self.running[call_id] = future
        future.add_done_callback(functools.partial(self._done, call_id, message["op"]))

    def _run(self, call_id: Any, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` for request `call_id` as a task (a `cancel` of it cancels the task)."""
        task = asyncio.create_task(work)
        self.running[call_id] = task
        task.add_done_callback(functools.partial(self._forget, call_id))

    async def _start_first(self, call_id: Any, message: dict[str, Any]) -> None:
        """`_start` once this replica's endpoint of the server is known (the first request for it)."""
        try:
            route = await self._endpoint(str(message["tenant"]), str(message["server"]))
        except asyncio.CancelledError:
            return
        except Exception as exc:
            self.send({"id": call_id, **_error_reply(exc)})
            return
        self._start(call_id, message, route)

    async def _lazy(
        self, call_id: Any, message: dict[str, Any], route: Route, requester: _LinkRequester | None
    ) -> None:
        """A request for a server that starts when called, in the caller's session if it names one
        (this replica names it after the calling replica and the hash it sent)."""
        session = f"{self.peer}/{message['session']}" if message.get("session") else None
        tenant, server = str(message["tenant"]), str(message["server"])
        try:
            answer = await self.hub.calls.forwarded_async(
                route, tenant, server, lambda endpoint: _submit(endpoint, message, requester), session
            )
            reply = {"result": result_json(answer) if message["op"] == "call_tool" else answer}
        except asyncio.CancelledError:
            return
        except Exception as exc:
            reply = _error_reply(exc)
        self.send({"id": call_id, **reply})

    async def _lifecycle(self, call_id: Any, message: dict[str, Any]) -> None:
        """A start, stop or restart asked of another replica, done here (never passed on again)."""
        hub, tenant, server = self.hub, str(message["tenant"]), str(message["server"])
        wait = message.get("wait") is not False
        actions = {
            "start": functools.partial(hub.start_server, tenant, server, wait),
            "restart": functools.partial(hub.restart_server, tenant, server, wait),
            "stop": functools.partial(hub.stop_server, tenant, server),
        }
        try:
            status = await self.loop.run_in_executor(None, actions[str(message["action"])])
            reply: dict[str, Any] = {"result": published_json(status, None)}
        except Exception as exc:
            reply = _error_reply(exc)
        self.send({"id": call_id, **reply})

    async def _end_session(self, call_id: Any, session: str) -> None:
        """Stop the instances this replica runs for the calling replica's ended `session`."""
        ended = functools.partial(self.hub.sessions.end, f"{self.peer}/{session}", everywhere=False)
        try:
            reply: dict[str, Any] = {"result": await self.loop.run_in_executor(None, ended)}
        except Exception as exc:
            reply = _error_reply(exc)
        self.send({"id": call_id, **reply})

    def _subscriptions(self) -> Subscriptions | None:
        """This replica's facade's subscriptions (None: it serves no MCP endpoint)."""
        endpoint: McpEndpoint | None = self.application.settings.get("mcp")
        return endpoint.facade.subscriptions if endpoint is not None else None

    async def _subscription(self, call_id: Any, message: dict[str, Any]) -> None:
        """Subscribe the channel to a resource of a server this replica runs (the server itself if
        no one here held it yet, waking an on_demand one), or end its subscription."""
        try:
            topic = (str(message["tenant"]), str(message["server"]), str(message["uri"]))
            subscriptions = self._subscriptions()
            if subscriptions is None:
                raise NotFound("this replica serves no MCP endpoint: it holds no resource subscriptions")
            tenant, server, uri = topic
            if message["op"] == "unsubscribe":
                await subscriptions.release(topic, self.subscriber, self._unsubscribe)
            else:
                route = await self._endpoint(tenant, server)  # (one that moved: never forwarded twice)
                submit = functools.partial(ServerEndpoint.subscribe, uri=uri)
                calls = self.hub.calls
                subscribe = functools.partial(calls.forwarded_async, route, tenant, server, submit, None)
                await subscriptions.hold_for_replica(topic, self.subscriber, self._updated, subscribe)
            reply: dict[str, Any] = {"result": None}
        except asyncio.CancelledError:
            return
        except Exception as exc:
            reply = _error_reply(exc)
        self.send({"id": call_id, **reply})

    async def _unsubscribe(self, topic: tuple[str, str, str]) -> None:
        """Unsubscribe the server here, the channel's subscription to `topic` being the last one
        (as the local path does it, without the quotas: the calling replica counted its requests);
        nothing to do for a server that no longer runs here (its subscriptions went with it)."""
        tenant, server, uri = topic
        try:
            route = await self._endpoint(tenant, server)
        except NotRunning:
            return
        try:
            await asyncio.wait_for(asyncio.wrap_future(route[0].unsubscribe(uri)), route[2])
        except TimeoutError:
            raise CallTimeout(f"server '{server}' did not unsubscribe from {uri} in time") from None

    def _updated(self, event: ResourceUpdated) -> None:
        """A resource the channel holds changed (web loop): tell the calling replica, unasked."""
        self.send(updated_json(event))

    def _forget(self, call_id: Any, running: Any) -> None:
        if self.running.get(call_id) is running:
            del self.running[call_id]

    def _done(self, call_id: Any, op: str, future: concurrent.futures.Future[Any]) -> None:
        """Done callback of a request on the server's loop (that loop's thread): on to the web loop."""
        with contextlib.suppress(RuntimeError):  # (the web loop closed: the channel is gone too)
            self.loop.call_soon_threadsafe(self._answered, call_id, op, future)

    def _answered(self, call_id: Any, op: str, future: concurrent.futures.Future[Any]) -> None:
        """Send a request's answer or its error (none for a cancelled one)."""
        self._forget(call_id, future)
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            reply = _error_reply(exc)
        else:
            answer = future.result()
            reply = {"result": result_json(answer) if op == "call_tool" else answer}
        self.send({"id": call_id, **reply})

    async def _endpoint(self, tenant: str, server: str) -> Route:
        """This replica's own route to the server (a router ask, off the loop, the first time)."""
        known = self.endpoints.get((tenant, server))
        if known is not None:
            return known
        router = self.hub.router
        asked = router.server_route(tenant, server)
        route = await self.loop.run_in_executor(None, functools.partial(asked.get, timeout=10.0))
        if not isinstance(route[0], ServerEndpoint):  # (it moved: never forwarded twice)
            raise NotRunning(f"server '{server}' of tenant '{tenant}' no longer runs on this replica")
        self.endpoints[(tenant, server)] = route
        return route

    async def ask(self, call_id: Any, request: Any, result_type: type[Any]) -> Any:
        """Ask the calling replica's client what the server asks (web loop); its answer."""
        self.next_ask += 1
        key = (call_id, self.next_ask)
        waiting: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self.asks[key] = waiting
        self.send(
            {
                "id": call_id,
                "ask": self.next_ask,
                "request": request.model_dump(mode="json", by_alias=True, exclude_none=True),
                "result_type": result_type.__name__,
            }
        )
        try:
            answer = await waiting
        finally:
            self.asks.pop(key, None)
        if "error" in answer:
            error = answer["error"] if isinstance(answer["error"], dict) else {}
            raise MCPError(
                int(error.get("code", types.INTERNAL_ERROR)), str(error.get("message", "")), error.get("data")
            )
        return result_type.model_validate(answer.get("result"), by_name=False)


def _submit(endpoint: ServerEndpoint, message: dict[str, Any], requester: _LinkRequester | None) -> Any:
    """Start the request `message` names on the server's loop."""
    op = message["op"]
    if op == "call_tool":
        return endpoint.call_tool(str(message["name"]), dict(message["arguments"]), requester)
    if op == "read_resource":
        return endpoint.read_resource(str(message["uri"]))
    if op == "get_prompt":
        return endpoint.get_prompt(
            str(message["name"]), {str(k): str(v) for k, v in message["arguments"].items()}
        )
    if op == "complete":
        return endpoint.complete(types.CompleteRequestParams.model_validate(message["params"], by_name=False))
    raise BadRequest(f"unknown forwarded request {op!r}")


def _error_reply(exc: BaseException) -> dict[str, Any]:
    """The error of a forwarded request, as the calling replica reads it."""
    if isinstance(exc, HubError):
        return {"error": error_json(exc)}
    if isinstance(exc, KeyError | TypeError | ValueError):
        return {"error": error_json(BadRequest(f"a malformed forwarded request: {exc!r}"))}
    # isolation: a broken request must not take the channel down
    log.error("cluster: a forwarded request failed", exc_info=exc)
    return {"error": error_json(UpstreamError(f"the request failed on replica: {exc}"))}


class _LinkRequester:
    """The client of a forwarded call, as the server's loop sees it: what it sends goes back on
    the channel (every method runs on the server's loop and hops to the web loop)."""

    def __init__(self, handler: ClusterLinkHandler, call_id: Any) -> None:
        self._handler = handler
        self._id = call_id

    async def progress(self, value: float, total: float | None, message: str | None) -> None:
        self._handler.loop.call_soon_threadsafe(
            self._handler.send, {"id": self._id, "progress": [value, total, message]}
        )

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        dumped = params.model_dump(mode="json", by_alias=True, exclude_none=True)
        self._handler.loop.call_soon_threadsafe(self._handler.send, {"id": self._id, "log": dumped})

    async def ask(self, request: Any, result_type: type[Any]) -> Any:
        if result_type.__name__ not in ANSWERS:
            raise MCPError(
                types.METHOD_NOT_FOUND, f"the hub cannot relay {type(request).__name__} across replicas"
            )
        asked = self._handler.ask(self._id, request, result_type)
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(asked, self._handler.loop))


ROUTES: list[tuple[str, Any]] = [(r"/cluster/link", ClusterLinkHandler)]
