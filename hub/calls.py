"""The call path: tool calls, resource reads and prompt gets, from a resolved route to the answer.

Around each call: the shutdown check, argument validation, the tenant's quotas, metrics and the
audit log; then the call goes straight to the server's loop (no actor inbox on the way), after
waking an on_demand server or a session's instance if need be, and once more if the server
stopped for idleness just before the call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from actors.models import ToolResult
from actors.router import Route, RouterActorProxy
from actors.server import Requester, ServerEndpoint
from hub.audit import AuditLog
from hub.errors import CallTimeout, HubError, NotRunning, ShuttingDown
from hub.instances import SessionInstances
from hub.metrics import HubMetrics
from hub.routes import Prepared, RouteCache, validate
from hub.wakes import Wakes

T = TypeVar("T")


class InFlight:
    """The requests in flight: counted so that the hub's `stop` can let them finish, and refused
    once it stops. Any thread; `admit` never blocks beyond its lock (safe on a loop)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.count = 0
        self.stopping = False

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Count a request in flight, so that `stop` can let it finish; refuse it once stopping."""
        with self._cond:
            if self.stopping:
                raise ShuttingDown("the hub is shutting down")
            self.count += 1
        try:
            yield
        finally:
            with self._cond:
                self.count -= 1
                self._cond.notify_all()

    def drain(self, grace: float) -> int:
        """Refuse new requests and wait up to `grace` seconds for those in flight to finish
        (the stopping thread); how many are still in flight then."""
        with self._cond:
            self.stopping = True
            self._cond.wait_for(lambda: self.count == 0, grace)
            return self.count


class CallPath:
    """Calls of a hub's tools, resources and prompts (the `Hub` API delegates here).

    Args:
        router: the router's proxy (raises `ShuttingDown` once the hub stops).
        routes: the route cache.
        wakes: starts on_demand servers for calls.
        sessions: the session instances of per_session servers.
        metrics: the hub's metrics.
        audit: the audit log now (it is replaced when a reload changes its settings).
        in_flight: the requests in flight.
        ask_timeout: how long an ask of the router may take, in seconds.
    """

    def __init__(
        self,
        router: Callable[[], RouterActorProxy],
        routes: RouteCache,
        wakes: Wakes,
        sessions: SessionInstances,
        metrics: HubMetrics,
        audit: Callable[[], AuditLog],
        in_flight: InFlight,
        ask_timeout: float,
    ) -> None:
        self._router = router
        self._routes = routes
        self._wakes = wakes
        self._sessions = sessions
        self._metrics = metrics
        self._audit = audit
        self._in_flight = in_flight
        self._ask_timeout = ask_timeout

    def prepare(self, tenant: str, tool_id: str) -> Prepared:
        """The prepared route of `tool_id` (a router ask if not cached: not on a loop)."""
        return self._routes.prepare(tenant, tool_id, self._resolve)

    def _resolve(self, tenant: str, tool_id: str) -> Route:
        return self._router().resolve(tenant, tool_id).get(timeout=self._ask_timeout)

    # ------------------------------------------------------------------ resources and prompts

    def server_request(
        self, tenant: str, server: str, submit: Callable[[Any], Any], session: str | None = None
    ) -> dict[str, Any]:
        """Submit a request (`submit(endpoint)`: a resource read, a prompt get) to `server` and wait
        for its answer (caller's thread, not a loop's)."""
        route = self._router().server_route(tenant, server).get(timeout=self._ask_timeout)
        endpoint, gate, timeout, on_demand, per_session = route
        with self._in_flight.admit(), gate.admit(tenant):
            if per_session and session is not None:
                return self._instance_request(tenant, server, session, submit, timeout)
            if on_demand and not self._wakes.running(tenant, server):
                self._wakes.wake(tenant, server)

            what = f"server '{server}'"
            try:
                return _answer(submit(endpoint), timeout, what)
            except NotRunning:
                if not on_demand:
                    raise
                self._wakes.wake(tenant, server)  # it stopped for idleness just before the request: once more
                return _answer(submit(endpoint), timeout, what)

    def _instance_request(
        self, tenant: str, server: str, session: str, submit: Callable[[Any], Any], timeout: float
    ) -> dict[str, Any]:
        """A resource read or prompt get on `session`'s instance (caller's thread, not a loop's)."""
        for attempt in (1, 2):
            endpoint = self._sessions.instance(tenant, server, session)
            try:
                return _answer(submit(endpoint), timeout, f"server '{server}'")
            except NotRunning:
                self._sessions.drop_endpoint((tenant, server, session), endpoint)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ tool calls

    @contextlib.contextmanager
    def _call(
        self, prepared: Prepared, arguments: Mapping[str, Any], key: str | None, shown: str | None = None
    ) -> Iterator[dict[str, str]]:
        """Around one call: shutdown check, argument validation, quotas, metrics, audit.

        Yields a dict whose `outcome` the caller sets to `tool_error` for a tool that reported failure.
        `shown`: the tool's name in error messages (default: its catalog id).
        """
        route = prepared.route
        metrics = self._metrics
        in_flight = metrics.in_flight.labels(route.tenant)
        began = time.perf_counter()
        call = {"outcome": "ok"}
        try:
            validate(prepared, arguments, shown)
            with self._in_flight.admit(), route.gate.admit(route.tenant):
                in_flight.inc()
                try:
                    yield call
                finally:
                    in_flight.dec()
        except HubError as exc:
            call["outcome"] = exc.code
            raise
        except BaseException:
            call["outcome"] = "cancelled"
            raise
        finally:
            seconds = time.perf_counter() - began
            metrics.calls.labels(route.tenant, route.server, call["outcome"]).inc()
            metrics.latency.labels(route.tenant, route.server).observe(seconds)
            self._audit().record(route.tenant, key, route.entry.id, seconds, call["outcome"], dict(arguments))

    def call_tool(
        self,
        tenant: str,
        tool_id: str,
        arguments: Mapping[str, Any] | None = None,
        key: str | None = None,
        session: str | None = None,
    ) -> ToolResult:
        """`Hub.call_tool` (any thread but a loop's)."""
        if self._in_flight.stopping:
            raise ShuttingDown("the hub is shutting down")
        arguments = dict(arguments or {})
        try:
            prepared = self.prepare(tenant, tool_id)
        except HubError as exc:  # unknown tool, server down: audited too
            self._audit().record(tenant, key, tool_id, 0.0, exc.code, arguments)
            raise
        with self._call(prepared, arguments, key) as call:
            route = prepared.route
            if route.per_session and session is not None:
                result = self._session_call(route, arguments, tool_id, session)
                if result.is_error:
                    call["outcome"] = "tool_error"
                return result
            if route.on_demand and not self._wakes.running(route.tenant, route.server):
                self._wakes.wake(route.tenant, route.server)
            try:
                result = self._call_once(route, arguments, tool_id)
            except NotRunning:
                if not route.on_demand:
                    raise
                self._wakes.wake(route.tenant, route.server)  # it stopped for idleness just before the call
                result = self._call_once(route, arguments, tool_id)
            if result.is_error:
                call["outcome"] = "tool_error"
            return result

    def _session_call(
        self, route: Route, arguments: dict[str, Any], tool_id: str, session: str
    ) -> ToolResult:
        key = (route.tenant, route.server, session)
        for attempt in (1, 2):
            endpoint = self._sessions.instance(route.tenant, route.server, session)
            try:
                return self._call_once(route, arguments, tool_id, endpoint)
            except NotRunning:  # it stopped for idleness (or its session ended) just before the call
                self._sessions.drop_endpoint(key, endpoint)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _call_once(
        self, route: Route, arguments: dict[str, Any], tool_id: str, endpoint: ServerEndpoint | None = None
    ) -> ToolResult:
        future = (endpoint or route.endpoint).call_tool(route.name, arguments)
        return _answer(future, route.call_timeout, f"tool '{tool_id}'")

    async def call_tool_async(
        self,
        tenant: str,
        tool_id: str,
        arguments: Mapping[str, Any] | None = None,
        requester: Requester | None = None,
        key: str | None = None,
        session: str | None = None,
        shown_as: str | None = None,
    ) -> ToolResult:
        """`Hub.call_tool_async` (on an asyncio loop: never blocks it)."""
        if self._in_flight.stopping:
            raise ShuttingDown("the hub is shutting down")
        arguments = dict(arguments or {})
        prepared = self._routes.get(tenant, tool_id)
        if prepared is None:  # a router ask blocks: off the loop
            try:
                prepared = await asyncio.get_running_loop().run_in_executor(
                    None, self.prepare, tenant, tool_id
                )
            except HubError as exc:  # unknown tool, server down: audited too
                self._audit().record(tenant, key, tool_id, 0.0, exc.code, arguments)
                raise
        shown = shown_as or tool_id
        with self._call(prepared, arguments, key, shown) as call:
            route = prepared.route
            if route.per_session and session is not None:
                result = await self._session_call_async(route, arguments, requester, shown, session)
                if result.is_error:
                    call["outcome"] = "tool_error"
                return result
            if route.on_demand and not self._wakes.running(route.tenant, route.server):
                await self._wakes.wake_async(route.tenant, route.server)
            try:
                result = await self._call_once_async(route, arguments, requester, shown)
            except NotRunning:
                if not route.on_demand:
                    raise
                await self._wakes.wake_async(route.tenant, route.server)  # it stopped for idleness meanwhile
                result = await self._call_once_async(route, arguments, requester, shown)
            if result.is_error:
                call["outcome"] = "tool_error"
            return result

    async def _session_call_async(
        self,
        route: Route,
        arguments: dict[str, Any],
        requester: Requester | None,
        shown: str,
        session: str,
    ) -> ToolResult:
        key = (route.tenant, route.server, session)
        for attempt in (1, 2):
            endpoint = await self._sessions.instance_async(route.tenant, route.server, session)
            try:
                return await self._call_once_async(route, arguments, requester, shown, endpoint)
            except NotRunning:  # it stopped for idleness (or its session ended) just before the call
                self._sessions.drop_endpoint(key, endpoint)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _call_once_async(
        self,
        route: Route,
        arguments: dict[str, Any],
        requester: Requester | None,
        shown: str,
        endpoint: ServerEndpoint | None = None,
    ) -> ToolResult:
        future = (endpoint or route.endpoint).call_tool(route.name, arguments, requester)
        try:
            async with asyncio.timeout(route.call_timeout + 5):  # no extra task, unlike wait_for
                return await asyncio.wrap_future(future)
        except TimeoutError:
            raise CallTimeout(f"tool '{shown}' did not answer in time") from None


def _answer(future: concurrent.futures.Future[T], timeout: float, what: str) -> T:
    """The result of a call submitted to a server's loop (caller's thread): the loop bounds it by
    `timeout`; 5 s more only guard against a wedged loop, and then the call is cancelled."""
    try:
        return future.result(timeout=timeout + 5)
    except TimeoutError:
        future.cancel()
        raise CallTimeout(f"{what} did not answer in time") from None
