"""`describe`: one line of text saying why an upstream server failed, for logs and statuses."""

from __future__ import annotations

from mcp import MCPError

from actors.models import ServerState, ServerStatus
from actors.upstream.process import SpawnError


def describe(exc: BaseException) -> str:
    """What went wrong in `exc` (an exception group too), as a reader of a log wants it said."""
    if isinstance(exc, MCPError):
        return f"MCP error {exc.code}: {exc.message}"
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {exc.filename}"
    if isinstance(exc, SpawnError):
        return describe(exc.error)
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(e) for e in exc.exceptions)
    return str(exc) or type(exc).__name__


def unlisted(status: ServerStatus, on_demand: bool) -> str:
    """Why a tool of a server with no catalog may exist after all: the server is not running (an
    on_demand one that never ran lists nothing), so how to fill its catalog; '' while it runs."""
    tenant, server, state = status.tenant, status.server, status.state
    if state is ServerState.RUNNING:
        return ""
    start = f"POST /api/servers/{tenant}/{server}/start"
    if on_demand:
        return (
            f": server '{server}' has no catalog yet (an on_demand server's tools are known once "
            f"it has run): start it once with {start}"
        )
    if state in (ServerState.STARTING, ServerState.BACKOFF):
        return f": server '{server}' is {state.value}: its tools are listed once it runs"
    return f": server '{server}' is {state.value}, so its tools are not listed: start it with {start}"
