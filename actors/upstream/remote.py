"""The remote upstream transports: a server reached over Streamable HTTP or SSE, its pings, and the
keep-alive pool of the hub's own channel for tool calls to a Streamable HTTP one.

The SDK's own clients carry the connection (`streamable_http_client` over the hub's HTTP client,
made through `hub.seams`; `sse_client`); the hub adds the configured headers and, on a
handshake-era connection, a liveness ping, since no process exit tells it that a remote server
died. Everything here runs on the owning server's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from actors.describe import describe
from actors.upstream.errlog import CappedLog
from actors.upstream.http1 import Pool, proxied
from actors.upstream.httpcall import SessionWatch
from hub import seams, timeouts
from hub.config import ServerConfig

_PING_INTERVAL = 10.0  # seconds between liveness pings of a remote handshake-era server


async def remote_transport(
    config: ServerConfig,
    errlog: CappedLog,
    stack: contextlib.AsyncExitStack,
    watch: SessionWatch | None = None,
) -> Any:
    """The SDK transport to the remote server of `config` (`sse` or `http`), for `mcp.Client`;
    what it needs open (the HTTP client) is entered on `stack`. `watch` (http only) is told the
    session id the SDK's client sends, for the hub's own channel (`actors.upstream.httpcall`)."""
    assert config.url is not None
    headers = config.headers.reveal()
    errlog.note(f"connecting to {config.url} ({config.transport})")
    if config.transport == "sse":
        return sse_client(config.url, headers=headers)
    http = await stack.enter_async_context(seams.mcp_http_client(headers))
    if watch is not None:
        http.event_hooks = {"request": [watch.watch], "response": [watch.watch]}
    return streamable_http_client(config.url, http_client=http)


def lean_pool(config: ServerConfig, errlog: CappedLog) -> Pool | None:
    """The keep-alive pool of the hub's own channel to an `http` server, if it can have one: not
    through a proxy of the environment (the SDK's client honours those), nor with a configured
    header that cannot be sent as it is (the SDK's client refuses it at once, with its error)."""
    if config.transport != "http" or config.url is None:
        return None
    try:
        if proxied(config.url):
            errlog.note("tool calls take the SDK's client: the environment sets a proxy for this URL")
            return None
        return Pool(config.url, config.headers.reveal())
    except ValueError:
        return None


async def keep_alive(client: Client, lost: Callable[[str], None]) -> None:
    """Ping the server every `_PING_INTERVAL` s until a ping fails, then call `lost(why)`."""
    while True:
        await asyncio.sleep(_PING_INTERVAL)
        try:
            async with asyncio.timeout(timeouts.PING):
                await client.send_ping()
        except Exception as exc:
            why = "no answer" if isinstance(exc, TimeoutError) else describe(exc)
            lost(f"ping failed: {why}")
            return
