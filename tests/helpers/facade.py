"""MCP clients of the hub's facade: over stdio (`python -m hub stdio`) and Streamable HTTP."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml
from conftest import MARK, NODE_MODULES, ROOT, binds, node_package
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

MODES = ["legacy", "2026-07-28"]
# The `_meta` envelope of a 2026-07-28 request, as a client with no capabilities sends it.
MODERN_ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
}


def modern_call(name: str, arguments: dict[str, Any], request_id: int = 1) -> dict[str, Any]:
    """A 2026-07-28 `tools/call` request, as an MCP client writes it on the wire."""
    params = {"name": name, "arguments": arguments, "_meta": MODERN_ENVELOPE}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def write_config(tmp_path: Path, tenants: dict[str, Any], **orchestrator: Any) -> Path:
    data = {
        "tenants": {
            name: {**t, "env": {**t.get("env", {}), "MCP_HUB_TEST_MARK": MARK}} for name, t in tenants.items()
        },
        "orchestrator": {
            "data_dir": str(tmp_path / "data"),
            "backoff_initial": 0.1,
            "backoff_max": 0.3,
            **orchestrator,
        },
    }
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@contextlib.asynccontextmanager
async def facade(
    config: Path,
    tenant: str,
    mode: str,
    events: list[Any] | None = None,
    server: str | None = None,
    **more: Any,
) -> AsyncIterator[Client]:
    """A real MCP client of `python -m hub stdio` (the way Claude Desktop runs it), of one `server`
    of the tenant if given; `more` are further `mcp.Client` arguments (callbacks)."""

    async def on_message(message: Any) -> None:
        if events is not None:
            events.append(message)

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "hub", "stdio", "--config", str(config), "--tenant", tenant]
        + (["--server", server] if server else []),
        cwd=ROOT,
    )
    with open(config.with_suffix(".stderr"), "w") as errlog:
        async with Client(
            stdio_client(params, errlog=errlog), mode=mode, cache=None, message_handler=on_message, **more
        ) as client:
            yield client


@contextlib.asynccontextmanager
async def http_facade(url: str, mode: str, key: str | None = None, **more: Any) -> AsyncIterator[Client]:
    """A real MCP client of the hub's Streamable HTTP endpoint at `url`; `more` are further
    `mcp.Client` arguments (callbacks)."""
    from mcp.client.streamable_http import streamable_http_client

    from hub.seams import mcp_http_client as create_mcp_http_client

    headers = {"Authorization": f"Bearer {key}"} if key else None
    async with (
        create_mcp_http_client(headers=headers) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode, cache=None, **more) as client,
    ):
        yield client


def everything_server() -> dict[str, Any]:
    entry = node_package("@modelcontextprotocol/server-everything", "dist", "index.js")
    return {"command": "node", "args": [str(entry), "stdio"], "sandbox": binds(NODE_MODULES)}
