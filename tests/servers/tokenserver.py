"""A small MCP server (stdio, `mcp.server.MCPServer`) that says whether it was given a `GITHUB_TOKEN`,
for the per_user tests: never the token itself, only a SHA-256 of it, its pid and a random id drawn
at start (so a test can tell one user's process from another's even in a sandbox, where every
server's pid may be the same small number).

Tool `whoami` answers structured content
`{"token_set": bool, "token_sha256": str | null, "pid": int, "process": str}`.

    python tests/servers/tokenserver.py
"""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import Any

from mcp.server import MCPServer

server = MCPServer("token")
PROCESS = uuid.uuid4().hex  # (this process's own id)


@server.tool(description="Whether GITHUB_TOKEN is set, a SHA-256 of it (never the value), and this pid.")
def whoami() -> dict[str, Any]:
    """What this process was started with."""
    token = os.environ.get("GITHUB_TOKEN")
    digest = hashlib.sha256(token.encode()).hexdigest() if token else None
    return {"token_set": token is not None, "token_sha256": digest, "pid": os.getpid(), "process": PROCESS}


if __name__ == "__main__":
    server.run("stdio")
