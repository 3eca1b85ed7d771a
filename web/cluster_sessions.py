"""2025-11-25 facade sessions, and 2026-07-28 calls parked for input, across a cluster's replicas
(docs/cluster.md).

A 2025-11-25 session lives on the replica that opened it (the SDK keeps its state in memory). So
that a load balancer may send each of its requests to any replica, the replica that opens a
session records it in Redis as its home (`mcp-hub:session:<sha256 of the id>` → replica id: the
id itself is a credential and is never written), and deletes the record when the session ends. A
replica that gets a request of a session it does not hold looks its home up (once: the answer is
kept) and passes the request on to that replica's main listener as it came (its key, headers and
body; its answer streamed back as it comes: JSON or SSE). A session whose home is gone (it died,
or the record expired) is "Session not found", as on a lone hub: the client opens a new one.

A 2026-07-28 call whose server asked for input is parked on the replica that served it
(`web.mcp_input`), and its client's retry, carrying the `requestState` it was given, may reach
another replica. So the replica that parks a call records where (`mcp-hub:parked:<sha256 of the
requestState>` → replica id, for as long as the call stays parked), and a replica that gets a
retry whose `requestState` it does not hold passes it on the same way. One it cannot place (no
record, its replica gone) is served here: "unknown or expired requestState", as on a lone hub.

A request passed on carries `Mcp-Hub-Hop`, so it is never passed on twice. Web loop, except the
Redis round trips, which run in the executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
from typing import TYPE_CHECKING, Any

import tornado.httpclient
import tornado.httputil
import tornado.iostream
import tornado.simple_httpclient
import tornado.web

from hub import seams, timeouts
from hub.cluster import ClusterNode

if TYPE_CHECKING:
    from web.mcp_endpoint import McpEndpoint

__all__ = ["HOP_HEADER", "SessionHomes"]

log = logging.getLogger(__name__)

HOP_HEADER = "Mcp-Hub-Hop"
KEY_PREFIX = "mcp-hub:session:"
PARKED_PREFIX = "mcp-hub:parked:"
# Headers of the client's request that are not passed on (hop-by-hop, or recomputed; the Origin
# was checked by the edge of the replica the client reached).
_DROPPED = frozenset(
    {"host", "connection", "content-length", "transfer-encoding", "keep-alive", "origin", "te", "upgrade"}
)
_PASSED_BACK = ("Content-Type", "Mcp-Session-Id", "Cache-Control", "Retry-After", "WWW-Authenticate", "Allow")
STREAM_TIMEOUT = 24 * 3600.0  # a session's GET stream may last; the client reopens one that ends


def _record(session_id: str) -> str:
    return KEY_PREFIX + hashlib.sha256(session_id.encode()).hexdigest()


def _parked_record(state: str) -> str:
    return PARKED_PREFIX + hashlib.sha256(state.encode()).hexdigest()


def parked_state(request: tornado.httputil.HTTPServerRequest) -> str | None:
    """The `requestState` of a POST that resumes a parked 2026-07-28 call (None: it is none)."""
    body = request.body
    if request.method != "POST" or not body or b'"requestState"' not in body:
        return None
    try:
        message = json.loads(body)
    except ValueError:
        return None
    params = message.get("params") if isinstance(message, dict) else None
    state = params.get("requestState") if isinstance(params, dict) else None
    return state if isinstance(state, str) and 0 < len(state) <= 512 else None


class SessionHomes:
    """Where each 2025-11-25 session lives (see the module). Web loop.

    Args:
        node: this replica's cluster node.
        ttl: how long a record lives without the session ending (it is written once: at least the
            sessions' idle timeout).
    """

    def __init__(self, node: ClusterNode, ttl: float) -> None:
        self._node = node
        self._ttl = max(60, int(ttl))
        self._homes: dict[str, str] = {}  # sessions of other replicas, as looked up
        self._client = tornado.simple_httpclient.SimpleAsyncHTTPClient(
            force_instance=True, max_clients=10_000
        )

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------ records

    def opened(self, session_id: str) -> asyncio.Future[None] | None:
        """This replica opened `session_id`: record it as its home (in the executor; the response
        that opens the session waits for it, so that the client's next request finds it anywhere)."""
        return self._background(
            self._node.redis.set, _record(session_id), self._node.replica_id, ex=self._ttl
        )

    def parked(self, state: str) -> asyncio.Future[None] | None:
        """A call was parked here under `state`: record it while it may be resumed (in the
        executor; its client gets the `requestState` once the record is written, so that its
        retry finds it on any replica)."""
        ttl = math.ceil(timeouts.INPUT_WAIT) + 5
        return self._background(self._node.redis.set, _parked_record(state), self._node.replica_id, ex=ttl)

    def ended(self, session_id: str) -> None:
        """`session_id` ended here: delete its record (in the background)."""
        self._background(self._node.redis.delete, _record(session_id))

    def _background(self, fn: Any, *args: Any, **kwargs: Any) -> asyncio.Future[None] | None:
        """Run `fn` in the executor (a failure logged): its future (None: shutting down)."""

        def run() -> None:
            try:
                fn(*args, **kwargs)
            except self._node.errors as exc:
                log.warning("cluster: a session record could not be written: %s", type(exc).__name__)

        try:
            return asyncio.get_running_loop().run_in_executor(None, run)
        except RuntimeError:  # (shutting down: the records expire)
            return None

    async def _home(self, record: str) -> str | None:
        """The replica Redis's `record` names, if it is another live one."""
        home = self._homes.get(record)
        if home is None:
            try:
                found = await asyncio.get_running_loop().run_in_executor(None, self._node.redis.get, record)
            except self._node.errors as exc:
                log.warning("cluster: looking a session up failed: %s", type(exc).__name__)
                return None
            if found is None:
                return None
            home = str(found)
            if len(self._homes) > 100_000:  # (a bound: a lookup again costs one round trip)
                self._homes.clear()
            self._homes[record] = home
        if home == self._node.replica_id or home not in self._node.view().members:
            self._homes.pop(record, None)
            return None
        return home

    # ------------------------------------------------------------------ passing requests on

    async def pass_on(self, handler: tornado.web.RequestHandler, endpoint: McpEndpoint) -> bool:
        """If `handler`'s request belongs to a session another live replica holds, or resumes a
        call parked there, pass it on there and stream the answer back; whether it did."""
        request = handler.request
        if request.headers.get(HOP_HEADER):
            return False
        session_id = request.headers.get("Mcp-Session-Id")
        if session_id:
            if session_id in endpoint.lane.sessions:
                return False
            record = _record(session_id)
        else:
            state = parked_state(request)
            if state is None or endpoint.lane.asks.parked.holds(state):
                return False
            record = _parked_record(state)
        home = await self._home(record)
        url = self._node.view().urls.get(home) if home is not None else None
        if url is None:
            return False
        await self._fetch(handler, url.rstrip("/") + request.uri)
        return True

    async def _fetch(self, handler: tornado.web.RequestHandler, url: str) -> None:
        request = handler.request
        headers = tornado.httputil.HTTPHeaders()
        for name, value in request.headers.get_all():
            if name.lower() not in _DROPPED:
                headers.add(name, value)
        headers[HOP_HEADER] = "1"
        started = False

        def on_header(line: str) -> None:
            nonlocal started
            if line.startswith("HTTP/"):
                handler.set_status(int(line.split(" ", 2)[1]))
                handler.clear_header("Content-Type")
                return
            name, _, value = line.partition(":")
            if name.strip().title() in {h.title() for h in _PASSED_BACK}:
                handler.set_header(name.strip(), value.strip())

        def on_chunk(chunk: bytes) -> None:
            nonlocal started
            if handler.request.connection is None or seams.is_finished(handler):
                raise ConnectionAbortedError("the client went away")
            started = True
            handler.write(chunk)
            handler.flush()

        body = request.body if request.method in ("POST", "PUT") else None
        try:
            await self._client.fetch(
                tornado.httpclient.HTTPRequest(
                    url,
                    method=request.method or "GET",
                    headers=headers,
                    body=body,
                    allow_nonstandard_methods=True,
                    header_callback=on_header,
                    streaming_callback=on_chunk,
                    connect_timeout=5,
                    request_timeout=STREAM_TIMEOUT,
                    decompress_response=False,
                    follow_redirects=False,
                ),
                raise_error=False,
            )
        except (OSError, tornado.httpclient.HTTPClientError) as exc:
            if not started:
                handler.set_status(502)
                handler.set_header("Content-Type", "application/json")
                handler.write(
                    b'{"jsonrpc":"2.0","id":null,"error":{"code":-32603,'
                    b'"message":"the replica that holds this session or call cannot be reached"}}'
                )
            log.warning("cluster: passing a session's request on failed: %s", type(exc).__name__)
        if not seams.is_finished(handler):
            with contextlib.suppress(tornado.iostream.StreamClosedError):
                handler.finish()
