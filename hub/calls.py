"""The call path: tool calls, resource reads and prompt gets, from a resolved route to the answer.

Around each call: the shutdown check, argument validation, the tenant's quotas, metrics and the
audit log; then the call goes straight to the server's loop (no actor inbox on the way), after
waking an on_demand server or a session's instance if need be, and once more if the server
stopped for idleness just before the call.

The path is written once, as coroutines on an asyncio loop: the web frontend's, or one that the
blocking Python API borrows from the hub (`hub.loops`) and runs on the caller's thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import mcp.types as types

from actors.call_gate import CallGate
from actors.models import ToolEntry, ToolResult
from actors.router import Route, RouterActorProxy
from actors.server import Requester, ServerEndpoint
from hub import failover, handoff
from hub.audit import Audited, AuditLog
from hub.errors import (
    CallTimeout,
    CredentialsMissing,
    CredentialsUnreadable,
    HubError,
    NoSecretKey,
    NotFound,
    NotRunning,
    ShuttingDown,
    UserRequired,
)
from hub.instances import SessionInstances
from hub.loops import HubLoops, serving
from hub.metrics import HubMetrics
from hub.permissions import Who, may_call, unknown_tool
from hub.routes import Prepared, RouteCache, validate
from hub.wakes import Wakes

if TYPE_CHECKING:
    from hub.cluster_quota import SharedQuotas
    from hub.config import Quotas
    from hub.replica import ReplicaParts
    from hub.user_servers import UserServers

T = TypeVar("T")
log = logging.getLogger(__name__)
_NO_SLOT: contextlib.AbstractAsyncContextManager[None] = contextlib.nullcontext()
# Why a per_user server cannot run for this caller: a tool call answers them as tool errors.
_REFUSED_USER = (CredentialsMissing, UserRequired, CredentialsUnreadable, NoSecretKey)


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

    The path is written once, as coroutines: code on a loop awaits them (`call_tool_async`,
    `server_request_async`); the blocking forms (`call_tool`, `server_request`) run them on a loop
    borrowed from the hub (`hub.loops`), on the caller's thread.

    Args:
        router: the router's proxy (raises `ShuttingDown` once the hub stops).
        routes: the route cache.
        wakes: starts on_demand servers for calls.
        sessions: the session instances of per_session servers.
        metrics: the hub's metrics.
        audit: the audit log now (it is replaced when a reload changes its settings).
        in_flight: the requests in flight.
        ask_timeout: how long an ask of the router may take, in seconds.
        loops: the loops the blocking forms run the path on.
        replica: a cluster's replica's parts (`hub.replica`): the tenants' call quotas counted
            across the cluster (`hub.cluster_quota`), taken after the local gate's, and whether
            servers are moving now (`hub.failover`); None on a hub that runs alone.
        users: per_user servers' instances (`hub.user_servers`); None: no server is per_user.
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
        loops: HubLoops,
        replica: ReplicaParts | None = None,
        users: UserServers | None = None,
    ) -> None:
        self._users = users
        self._shared = replica.quotas if replica is not None else None
        self._settling = replica.settling if replica is not None else (lambda: 0.0)
        self._router = router
        self._routes = routes
        self._wakes = wakes
        self._sessions = sessions
        self._metrics = metrics
        self._audit = audit
        self._in_flight = in_flight
        self._ask_timeout = ask_timeout
        self._loops = loops

    def prepare(self, tenant: str, tool_id: str) -> Prepared:
        """The prepared route of `tool_id` (a router ask if not cached: not on a loop)."""
        return self._routes.prepare(tenant, tool_id, self._resolve)

    def _resolve(self, tenant: str, tool_id: str) -> Route:
        return self._router().resolve(tenant, tool_id).get(timeout=self._ask_timeout)

    # ------------------------------------------------------------------ the blocking forms

    def call_tool(
        self,
        tenant: str,
        tool_id: str,
        arguments: Mapping[str, Any] | None = None,
        key: str | None = None,
        session: str | None = None,
        user: str | None = None,
    ) -> ToolResult:
        """`Hub.call_tool`: `call_tool_async` on a borrowed loop (caller's thread, not a loop's)."""
        return self._loops.run(
            self.call_tool_async(tenant, tool_id, arguments, None, key, session, user=user)
        )

    def server_request(
        self,
        tenant: str,
        server: str,
        submit: Callable[[Any], Any],
        session: str | None = None,
        user: str | None = None,
    ) -> dict[str, Any]:
        """`server_request_async` on a borrowed loop (caller's thread, not a loop's)."""
        return self._loops.run(self.server_request_async(tenant, server, submit, session, user=user))

    # ------------------------------------------------------------------ the path

    async def server_request_async(
        self,
        tenant: str,
        server: str,
        submit: Callable[[Any], Any],
        session: str | None = None,
        wake: bool = True,
        user: str | None = None,
    ) -> dict[str, Any]:
        """Submit a request (`submit(endpoint)`: a resource read, a prompt get) to `server` (to
        `session`'s instance of a per_session one, `user`'s of a per_user one) and await its answer
        (on an asyncio loop: the router ask runs in its executor).

        `wake` False: a stopped server is not started for the request, which its loop still takes
        (it only changes what the server remembers: `Hub.upstream`'s unsubscribe); nor is a
        session's instance, and without one running there is nothing to do (None).
        """
        asked = self._router().server_route(tenant, server, wake)  # sending never blocks; waiting does
        route = await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(asked.get, timeout=self._ask_timeout)
        )
        endpoint, gate, timeout, on_demand, per_session = route
        session = await self._user_session(tenant, server, per_session, session, user)
        with self._in_flight.admit(), gate.admit(tenant):
            async with self._cluster_slot(gate, tenant, timeout):
                target = _Target(tenant, server, endpoint, on_demand, per_session)
                answer: dict[str, Any] = await self._on_server(
                    target, session, submit, timeout, f"server '{server}'", wake
                )
                return answer

    async def forwarded_async(
        self,
        route: tuple[ServerEndpoint, CallGate, float, bool, bool],
        tenant: str,
        server: str,
        submit: Callable[[Any], Any],
        session: str | None,
    ) -> Any:
        """A request another replica forwarded (`web.cluster_link`) to `server`, which starts when
        called: woken if it is on_demand, or on `session`'s instance of a per_session one; its
        answer (on an asyncio loop). `route` is the router's `server_route` here. The replica the
        client called counted its quotas; here only the hub's drain counts it."""
        endpoint, _, timeout, on_demand, per_session = route
        with self._in_flight.admit():
            target = _Target(tenant, server, endpoint, on_demand, per_session)
            return await self._on_server(target, session, submit, timeout, f"server '{server}'")

    def _cluster_slot(
        self, gate: CallGate, tenant: str, timeout: float
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Around a call the local gate admitted: in a cluster, one call of the tenant's quotas
        counted across the replicas (`_shared_slot`); nothing at all (a shared null context: no
        generator per call) on a hub that runs alone or without `max_calls_per_minute` or
        `max_concurrent_calls`."""
        quotas = gate.quotas
        if self._shared is None or (
            quotas.max_calls_per_minute is None and quotas.max_concurrent_calls is None
        ):
            return _NO_SLOT
        return self._shared_slot(self._shared, quotas, tenant, timeout)

    @staticmethod
    @contextlib.asynccontextmanager
    async def _shared_slot(
        shared: SharedQuotas, quotas: Quotas, tenant: str, timeout: float
    ) -> AsyncIterator[None]:
        """One call of the tenant counted across the replicas (a Redis round trip, in the
        executor); the slot's lease outlasts the call."""
        loop = asyncio.get_running_loop()
        ticket = await loop.run_in_executor(None, shared.acquire, tenant, quotas, timeout + 10)
        try:
            yield
        finally:
            if ticket is not None:
                loop.run_in_executor(None, shared.release, ticket)

    @contextlib.contextmanager
    def _call(
        self, prepared: Prepared, arguments: Mapping[str, Any], who: Audited, shown: str
    ) -> Iterator[dict[str, str]]:
        """Around one tool call: shutdown check, argument validation, quotas, metrics, audit.

        Yields a dict whose `outcome` the caller sets to `tool_error` for a tool that reported failure.
        `shown`: the tool's name in error messages.
        """
        route = prepared.route
        metrics = self._metrics
        in_flight = metrics.in_flight_of(route.tenant)
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
            metrics.calls_of(route.tenant, route.server, call["outcome"]).inc()
            metrics.latency_of(route.tenant, route.server).observe(seconds)
            who.record(self._audit(), route.tenant, route.entry.id, seconds, call["outcome"], dict(arguments))

    async def call_tool_async(
        self,
        tenant: str,
        tool_id: str,
        arguments: Mapping[str, Any] | None = None,
        requester: Requester | None = None,
        key: str | None = None,
        session: str | None = None,
        shown_as: str | None = None,
        admit: Callable[[ToolEntry], Awaitable[None]] | None = None,
        caller: Who | None = None,
        user: str | None = None,
    ) -> ToolResult:
        """`Hub.call_tool_async` (on an asyncio loop: never blocks it). `admit`, if given, is awaited
        with the tool's entry once its route is resolved, before the call runs, and may refuse it
        by raising (an `Idempotency-Key` seen before: `hub.idempotency`).

        `caller`, if given, is who calls (`key` defaults to its key id; the audit log names its
        subject): a tool it may not call is `NotFound` as if it did not exist (`hub.permissions`),
        before any quota is taken or any server woken. `user`: the caller's subject (default:
        `caller`'s), whose own instance a per_user server's tool runs on."""
        if self._in_flight.stopping:
            raise ShuttingDown("the hub is shutting down")
        arguments = dict(arguments or {})
        shown = shown_as or tool_id
        who = Audited(key if key is not None or caller is None else caller.key_id, caller)
        if not may_call(caller, tool_id):
            who.record(self._audit(), tenant, tool_id, 0.0, "denied", arguments)
            raise unknown_tool(tenant, tool_id)
        prepared = self._routes.get(tenant, tool_id)
        if prepared is None:
            try:
                prepared = await self._prepare_async(tenant, tool_id)
            except HubError as exc:  # unknown tool, server down: audited too
                if not (isinstance(exc, NotFound | NotRunning) and self._settling()):
                    who.record(self._audit(), tenant, tool_id, 0.0, exc.code, arguments)
                    raise
                try:  # (a cluster whose servers are moving: it may be listed in a moment)
                    prepare = functools.partial(self._prepare_async, tenant, tool_id)
                    prepared = await failover.rerouted(
                        self._routes, prepare, None, self._settling(), shown, exc
                    )
                except HubError as late:
                    who.record(self._audit(), tenant, tool_id, 0.0, late.code, arguments)
                    raise
        if admit is not None:
            try:
                await admit(prepared.route.entry)
            except HubError as refused:
                who.record(self._audit(), tenant, tool_id, 0.0, refused.code, arguments)
                raise
        # (the server moved, or its replica was lost: tried again as far as that is safe)
        prepare = functools.partial(self._prepare_async, tenant, tool_id)
        return await failover.attempts(
            prepared,
            lambda p: self._call_once(p, arguments, requester, who, session, shown, user or who.subject),
            self._settling,
            functools.partial(failover.rerouted, self._routes, prepare),
            shown,
        )

    def _prepare_async(self, tenant: str, tool_id: str) -> Awaitable[Prepared]:
        """`prepare` in the executor (a router ask blocks: off the loop)."""
        return asyncio.get_running_loop().run_in_executor(None, self.prepare, tenant, tool_id)

    async def _call_once(
        self,
        prepared: Prepared,
        arguments: dict[str, Any],
        requester: Requester | None,
        who: Audited,
        session: str | None,
        shown: str,
        user: str | None = None,
    ) -> ToolResult:
        """One call of a prepared tool, within the quotas, measured and audited (a loop)."""
        route = prepared.route
        with self._call(prepared, arguments, who, shown) as call:
            try:
                session = await self._user_session(
                    route.tenant, route.server, route.per_session, session, user
                )
            except _REFUSED_USER as refused:  # (a per_user server that cannot run for this caller)
                call["outcome"] = refused.code
                if isinstance(refused, CredentialsMissing) and requester is not None:
                    await self._point_to_page(requester, route.server, refused.message, route.call_timeout)
                text = {"type": "text", "text": f"{refused.code}: {refused.message}"}
                return ToolResult(tool=route.entry.id, is_error=True, content=(text,))
            target = _Target(route.tenant, route.server, route.endpoint, route.on_demand, route.per_session)
            here = serving(asyncio.get_running_loop())
            async with self._cluster_slot(route.gate, route.tenant, route.call_timeout):
                result: ToolResult = await self._on_server(
                    target,
                    session,
                    lambda endpoint: _tool_call(endpoint, route.name, arguments, requester, here),
                    route.call_timeout,
                    f"tool '{shown}'",
                )
            if result.is_error:
                call["outcome"] = "tool_error"
            return result

    async def _user_session(
        self, tenant: str, server: str, per_session: bool, session: str | None, user: str | None
    ) -> str | None:
        """The session a request runs in: `session`, or for a per_user server (whose route says
        `per_session`) its user's, once they have set its variables (raises what
        `UserServers.session_for` raises; the store is read in the loop's executor)."""
        if not per_session or self._users is None or self._users.server(tenant, server) is None:
            return session
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._users.session_for, tenant, server, session, user)

    async def _point_to_page(self, requester: Requester, server: str, message: str, timeout: float) -> None:
        """Send a 2025-11-25 client that takes URL-mode elicitations the page where its user sets
        `server`'s values (`gateway.public_url` + `/me/credentials/<server>`), and wait for its
        answer (the user saw it); the call still ends with its tool error, to be called again."""
        page = self._users.page(server) if self._users is not None else None
        if page is None or not getattr(requester, "url_elicitation", False):
            return
        params = types.ElicitRequestURLParams(message=message, url=page, elicitation_id=uuid.uuid4().hex)
        try:
            async with asyncio.timeout(timeout):
                await requester.ask(types.ElicitRequest(params=params), types.ElicitResult)
        except Exception as exc:  # isolation: the client's trouble with it leaves the tool error
            log.info("the URL elicitation for server '%s' failed: %s", server, type(exc).__name__)

    async def _on_server(
        self,
        target: _Target,
        session: str | None,
        submit: Callable[[Any], Any],
        timeout: float,
        what: str,
        wake: bool = True,
    ) -> Any:
        """`submit(endpoint)` to the target server, or to `session`'s instance of a per_session one,
        woken first if it is on_demand and stopped, and once more if it stopped for idleness just
        before the request (unless not `wake`); its answer (on an asyncio loop)."""
        tenant, server = target.tenant, target.server
        if target.per_session and session is not None:
            there = getattr(target.endpoint, "for_session", None)
            if there is not None:  # (another replica runs it: that one starts the session's instance)
                return await _answer(submit(there(session)), timeout, what)
            if not wake:
                endpoint = self._sessions.running_endpoint((tenant, server, session))
                return None if endpoint is None else await _answer(submit(endpoint), timeout, what)
            return await self._on_instance(tenant, server, session, submit, timeout, what)
        if wake and target.on_demand and not self._wakes.running(tenant, server):
            await self._wakes.wake_async(tenant, server)
        try:
            return await _answer(submit(target.endpoint), timeout, what)
        except NotRunning:
            if not (target.on_demand and wake):
                raise
            await self._wakes.wake_async(tenant, server)  # it stopped for idleness just before the request
            return await _answer(submit(target.endpoint), timeout, what)

    async def _on_instance(
        self, tenant: str, server: str, session: str, submit: Callable[[Any], Any], timeout: float, what: str
    ) -> Any:
        """`submit(endpoint)` to `session`'s instance of `server`, started if need be, and to a
        fresh one if it stopped just before the request (on an asyncio loop)."""
        key = (tenant, server, session)
        for attempt in (1, 2):
            endpoint = await self._sessions.instance_async(tenant, server, session)
            try:
                return await _answer(submit(endpoint), timeout, what)
            except NotRunning:  # it stopped for idleness (or its session ended) just before the request
                self._sessions.drop_endpoint(key, endpoint)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


@dataclass(frozen=True)
class _Target:
    """Where a request goes: a server of a tenant, its endpoint and how it runs."""

    tenant: str
    server: str
    endpoint: ServerEndpoint
    on_demand: bool
    per_session: bool


def _tool_call(
    endpoint: Any, name: str, arguments: dict[str, Any], requester: Requester | None, here: bool
) -> concurrent.futures.Future[ToolResult] | Awaitable[ToolResult]:
    """A tool call of `endpoint`: on this loop if `here` and the server can take it so (a
    Streamable HTTP server: `ServerEndpoint.call_tool_here`), else submitted to the server's."""
    there = getattr(endpoint, "call_tool_here", None) if here else None  # (another replica's: none)
    call = there(name, arguments, requester) if there is not None else None
    return call if call is not None else endpoint.call_tool(name, arguments, requester)


async def _answer(request: concurrent.futures.Future[T] | Awaitable[T], timeout: float, what: str) -> T:
    """The result of a request submitted to a server's loop (awaited on another loop), or run on
    this one: the request itself is bounded by `timeout`; 5 s more only guard against a wedged
    loop, and then the request is cancelled (the cancellation reaches the server's loop)."""
    try:
        async with asyncio.timeout(timeout + 5):  # no extra task, unlike wait_for
            if isinstance(request, concurrent.futures.Future):
                return await handoff.landed(request)  # (as asyncio.wrap_future, at less cost to this loop)
            return await request
    except TimeoutError:
        raise CallTimeout(f"{what} did not answer in time") from None
