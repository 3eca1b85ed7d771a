"""`describe`: one line of text saying why an upstream server failed, for logs and statuses."""

from __future__ import annotations

from mcp import MCPError

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
