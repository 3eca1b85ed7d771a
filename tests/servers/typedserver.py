"""A small MCP server (stdio, `mcp.server.MCPServer`) with one tool whose arguments have every field type.

Tool `typed` takes a string, an integer, a number, a boolean, an object, an enum and an optional
array (`T | None`, an `anyOf` with null), and answers them back as structured content. The admin
panel's "try it" form is tested against it.

    python tests/servers/typedserver.py
"""

from __future__ import annotations

from typing import Any, Literal

from mcp.server import MCPServer

server = MCPServer("typed")


@server.tool(description="Answer the arguments back.")
def typed(
    text: str,
    count: int,
    ratio: float,
    flag: bool,
    options: dict[str, Any],
    mode: Literal["fast", "slow"] = "fast",
    tags: list[str] | None = None,
) -> dict[str, Any]:
    """Every argument, as given."""
    return {
        "text": text,
        "count": count,
        "ratio": ratio,
        "flag": flag,
        "options": options,
        "mode": mode,
        "tags": tags,
    }


if __name__ == "__main__":
    server.run("stdio")
