"""A small MCP server (stdio, `mcp.server.MCPServer`) with one tool whose arguments have every field type.

Tool `typed` takes a string, an integer, a number, a boolean, an object, an enum and an optional
array (`T | None`, an `anyOf` with null), and answers them back as structured content. Tool
`picture` has a title other than its description and answers an image (a 16x16 PNG, red). The admin
panel's "try it" form is tested against them.

    python tests/servers/typedserver.py
"""

from __future__ import annotations

import struct
import zlib
from typing import Any, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver import Image

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


def png(size: int, rgb: tuple[int, int, int]) -> bytes:
    """A `size` x `size` PNG of one colour (standard library only)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)  # 8-bit RGB
    rows = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


@server.tool(title="Red square", description="Answer a 16x16 PNG picture of a red square.")
def picture() -> Image:
    """A picture, as image content."""
    return Image(data=png(16, (220, 30, 30)), format="png")


if __name__ == "__main__":
    server.run("stdio")
