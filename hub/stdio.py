"""`python -m hub stdio --tenant T`: a hub in-process, serving one tenant as MCP on stdin/stdout.

For Claude Desktop, Cursor and other stdio clients. The SDK's `stdio_server` claims the process's
stdin and stdout first (while it serves, fd 1 points at stderr, so a stray print cannot corrupt
the protocol); then the hub starts and the tenant's enabled servers are started; the facade
serves until stdin closes or SIGTERM/SIGINT, then every server and child process is stopped.
Runs on the main thread's asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from mcp.server.stdio import stdio_server

from hub.config import HubConfig
from hub.runtime import Hub

log = logging.getLogger(__name__)


def run(config: HubConfig, tenant: str) -> int:
    """Serve `tenant` over stdio; the process exit code."""
    if tenant not in config.tenants:
        known = ", ".join(config.tenants) or "none"
        print(f"mcp-hub: no tenant {tenant!r} in {config.source} (tenants: {known})", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(config, tenant))
    except KeyboardInterrupt:
        return 0


async def _serve(config: HubConfig, tenant: str) -> int:
    from web.facade import Facade

    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, main.cancel)
    hub_ = Hub(config)
    # The stdio client is one session: its instances of per_session servers live until it exits.
    facade = Facade(hub_, lambda ctx: tenant, lambda ctx: "stdio", lambda ctx: "stdio")
    async with stdio_server() as (read_stream, write_stream):
        try:
            try:
                await loop.run_in_executor(None, hub_.start)
            except Exception as exc:  # a failing start is said on stderr, with a non-zero exit
                log.exception("the hub could not start")
                print(f"mcp-hub: the hub could not start: {exc}", file=sys.stderr)
                return 1
            outcome = await loop.run_in_executor(None, hub_.start_tenant, tenant)
            for server, state in outcome.items():
                if state not in ("running", "on_demand", "per_session"):
                    log.warning("server %s of tenant %s is %s", server, tenant, state)
            facade.attach(loop)
            with contextlib.suppress(asyncio.CancelledError):
                await facade.server.run(read_stream, write_stream, facade.init_options())
        finally:
            facade.detach()
            # (Stopping the hub stops every instance too; ending the session first says why.)
            with contextlib.suppress(Exception):
                await asyncio.shield(loop.run_in_executor(None, hub_.end_session, "stdio"))
            await asyncio.shield(loop.run_in_executor(None, hub_.stop))
    return 0
