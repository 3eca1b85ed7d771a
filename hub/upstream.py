"""Upstream requests: what a client of the hub asks of one server beyond calls and reads, namely
completions, its log level and resource subscriptions (the `Hub.upstream` API, for the facade).

Each takes a server's *own* names (a prompt's name, a resource's URI), never the facade's. A
completion and a subscription go the way of a resource read (`hub.calls`: the shutdown check,
the tenant's quotas, the on_demand wake, a session's own instance of a per_session server). A
log level goes down the tree instead (`TenantActor.set_log_level`): it is remembered by the
server, by each of its session instances and by its tenant (for instances started later), sent
to those that run, and wakes none. The servers apply it, and keep the subscriptions, across
their restarts (`actors.subscriptions`, which also says what a log level means on a 2026-07-28
connection). What comes back on its own arrives as events on the `EventBoard`: a server's log
messages that belong to no call (`ServerLogMessage`) and its resources' updates
(`ResourceUpdated`).

Every method is a coroutine on the caller's asyncio loop (the web loop), and never blocks it:
asks of the actors run in the loop's executor.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import mcp.types as types
from mcp import InvalidUriTemplate, UriTemplate
from pydantic import ValidationError

from actors.models import ServerCatalog
from actors.router import RouterActorProxy
from actors.subscriptions import LOG_LEVELS
from hub import timeouts
from hub.calls import CallPath
from hub.errors import BadRequest, CallTimeout, NotFound


class UpstreamRequests:
    """Completions, log levels and resource subscriptions of a hub's servers (`Hub.upstream`).

    Args:
        calls: the hub's call path.
        router: the router's proxy (raises `ShuttingDown` once the hub stops).
        ask_timeout: how long an ask of an actor may take, in seconds.
    """

    def __init__(self, calls: CallPath, router: Callable[[], RouterActorProxy], ask_timeout: float) -> None:
        self._calls = calls
        self._router = router
        self._ask_timeout = ask_timeout

    async def complete(
        self,
        tenant: str,
        server: str,
        ref: Mapping[str, Any],
        argument: Mapping[str, Any],
        context_arguments: Mapping[str, Any] | None,
        session: str | None = None,
    ) -> dict[str, Any]:
        """`completion/complete` of `server`: `ref` is the MCP reference as JSON (`{"type":
        "ref/prompt", "name": ...}` or `{"type": "ref/resource", "uri": ...}`), `argument` `{"name",
        "value"}`, `context_arguments` the other arguments already given (or None).

        Returns:
            The server's `CompleteResult` as JSON (by alias).

        Raises:
            BadRequest: a malformed request, or a server that does not declare `completions`.
            NotFound, NotRunning, QuotaExceeded, UpstreamError, CallTimeout: as for a resource read.
        """
        raw: dict[str, Any] = {"ref": dict(ref), "argument": dict(argument)}
        if context_arguments is not None:
            raw["context"] = {"arguments": dict(context_arguments)}
        try:
            params = types.CompleteRequestParams.model_validate(raw, by_name=False)
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"])
            raise BadRequest(f"malformed completion request: {where}: {problem['msg']}") from None
        return await self._calls.server_request_async(
            tenant, server, lambda endpoint: endpoint.complete(params), session
        )

    async def set_log_level(self, tenant: str, server: str, level: str | None) -> None:
        """The lowest level of log messages `server` should send (None: its own default, the hub
        stops asking), for it and each of its session instances. A running server is told at once
        (on a handshake-era connection, if it declares `logging`), a stopped one remembers it for
        its next start and is not woken; a server that refuses it is logged, not raised.

        Raises:
            BadRequest: not an MCP log level.
            NotFound: no such tenant or server.
            ShuttingDown: the hub is stopping.
        """
        if level is not None and level not in LOG_LEVELS:
            raise BadRequest(f"unknown log level {level!r}: one of {', '.join(LOG_LEVELS)}")
        proxy = await self._ask(self._router().tenant(tenant))
        applied = await self._ask(proxy.set_log_level(server, level))
        try:
            async with asyncio.timeout(timeouts.LIFECYCLE):  # (each server bounds its own by call_timeout)
                await asyncio.gather(*(asyncio.wrap_future(future) for future in applied))
        except TimeoutError:
            raise CallTimeout(f"server '{server}' did not take its log level in time") from None

    async def subscribe(self, tenant: str, server: str, uri: str, session: str | None = None) -> None:
        """Subscribe to the updates of `server`'s resource `uri` (idempotent; wakes an on_demand
        server, like a call). Kept across the server's restarts until `unsubscribe`; each update
        is a `ResourceUpdated` event.

        Raises:
            BadRequest: the server does not declare `resources.subscribe`.
            NotFound, NotRunning, QuotaExceeded, UpstreamError, CallTimeout: as for a resource read.
        """
        await self._calls.server_request_async(
            tenant, server, lambda endpoint: endpoint.subscribe(uri), session
        )

    async def unsubscribe(self, tenant: str, server: str, uri: str, session: str | None = None) -> None:
        """Drop the subscription to `server`'s resource `uri` (idempotent). A stopped server (or
        session instance) is not woken for it: it only forgets the URI.

        Raises:
            NotFound, QuotaExceeded, UpstreamError, CallTimeout: as for a resource read.
        """
        await self._calls.server_request_async(
            tenant, server, lambda endpoint: endpoint.unsubscribe(uri), session, wake=False
        )

    async def _ask(self, future: Any) -> Any:
        """The answer of an actor ask (a pykka future), awaited in the loop's executor."""
        return await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(future.get, timeout=self._ask_timeout)
        )


def resource_owner(catalogs: Iterable[ServerCatalog], tenant: str, uri: str, server: str | None) -> str:
    """The server of `tenant` that a read of `uri` goes to: `server` if given (asked even if it does
    not list the URI: MCP Apps views often are not), else the one that offers it (as a resource,
    else by a template).

    Raises:
        NotFound: no server of the tenant offers it.
        BadRequest: several do, and `server` does not say which.
    """
    catalogs = list(catalogs)
    owners = [c.server for c in catalogs if any(r.raw.get("uri") == uri for r in c.resources)]
    if not owners:
        owners = [c.server for c in catalogs if any(_matches(t.raw, uri) for t in c.resource_templates)]
    if server is not None:
        owners = [server] if any(c.server == server for c in catalogs) else []
    if not owners:
        raise NotFound(f"no resource {uri!r} in tenant '{tenant}'")
    if len(owners) > 1:
        raise BadRequest(f"resource {uri!r} is offered by servers {', '.join(owners)}: pass server=")
    return owners[0]


def _matches(template: Mapping[str, Any], uri: str) -> bool:
    try:
        return UriTemplate.parse(str(template.get("uriTemplate", ""))).match(uri) is not None
    except (InvalidUriTemplate, ValueError):
        return False
