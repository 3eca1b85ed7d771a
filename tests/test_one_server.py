"""One server through the hub, unchanged (issue 20): `/tenants/{t}/servers/{s}/mcp` and
`python -m hub stdio --tenant T --server S` show a server's own tool, prompt and resource names
and URIs, its instructions and its capabilities, while the hub keeps its rules (auth, tenants)."""

from __future__ import annotations

from pathlib import Path

import httpx2 as httpx
import mcp.types as types
import pytest
from conftest import initialize_request, server
from helpers.facade import everything_server, facade, http_facade, write_config
from mcp import MCPError

INSTRUCTIONS = "MCP Hub test server"  # tests/servers/testserver.py's own
# A client pinned to 2026-07-28 never asks `server/discover` (the SDK synthesizes its capabilities);
# `auto` asks it, then speaks 2026-07-28 with the hub: so these are the two eras' handshakes.
HANDSHAKES = ["legacy", "auto"]

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("mode", HANDSHAKES)
async def test_one_server_endpoint_shows_the_servers_own_names_uris_and_instructions(
    served, mode: str
) -> None:
    hub = served({"default": {"servers": {"a": server("--name", "alpha"), "b": server("--name", "beta")}}})
    async with http_facade(hub.url + "/tenants/default/servers/a/mcp", mode) as client:
        assert client.instructions == INSTRUCTIONS
        assert client.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert {"echo", "pid", "add"} <= set(tools) and not any("__" in name for name in tools)
        assert not tools["echo"].description.startswith("[")  # (the aggregated facade says "[a] ...")
        result = await client.call_tool("echo", {"text": "as it is"})
        assert result.structured_content == {"text": "as it is"}
        resources = (await client.list_resources()).resources
        assert [str(r.uri) for r in resources] == ["test://info"]
        read = await client.read_resource("test://info")
        assert read.contents[0].uri == "test://info" and "name=alpha" in read.contents[0].text
        assert [p.name for p in (await client.list_prompts()).prompts] == ["greet"]
        prompt = await client.get_prompt("greet", {"name": "Ada"})
        assert prompt.messages[0].content.text == "Hello, Ada!"
        with pytest.raises(MCPError, match="Unknown tool"):
            await client.call_tool("b__echo", {"text": "not here"})
    async with http_facade(hub.url + "/mcp", mode) as client:  # the aggregated facade is unchanged
        assert {"a__echo", "b__echo"} <= {t.name for t in (await client.list_tools()).tools}
        assert client.instructions != INSTRUCTIONS


async def test_one_server_capabilities_are_the_servers_own(served) -> None:
    """server-everything declares logging, completions and resource subscriptions; the test server
    none of them: each endpoint says what its server does, the aggregated one what any does."""
    hub = served({"default": {"servers": {"plain": server(), "everything": everything_server()}}})
    capabilities = {}
    for path in ("/tenants/default/servers/plain/mcp", "/tenants/default/servers/everything/mcp", "/mcp"):
        async with http_facade(hub.url + path, "legacy") as client:
            capabilities[path] = client.server_capabilities
    plain = capabilities["/tenants/default/servers/plain/mcp"]
    assert plain.tools is not None and plain.logging is None and plain.completions is None
    assert plain.resources is not None and not plain.resources.subscribe
    everything = capabilities["/tenants/default/servers/everything/mcp"]
    assert everything.logging is not None and everything.completions is not None
    assert everything.resources is not None and everything.resources.subscribe
    aggregated = capabilities["/mcp"]
    assert aggregated.logging is not None and aggregated.completions is not None


async def test_one_server_endpoint_keeps_the_hubs_rules(served) -> None:
    """Unknown servers and other tenants' servers are 404; a session serves only the endpoint that
    opened it; keys are required as anywhere else."""
    keys = {"auth": {"admin_keys": ["admin-key-1234567890"]}}
    tenants = {
        "a": {"api_keys": ["key-a-1234567890123"], "servers": {"s": server(), "t": server()}},
        "b": {"api_keys": ["key-b-1234567890123"], "servers": {"x": server()}},
    }
    hub = served(tenants, **keys)
    init = initialize_request()
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    with httpx.Client(base_url=hub.url, timeout=10) as http:
        a = {**headers, "Authorization": "Bearer key-a-1234567890123"}
        assert http.post("/tenants/a/servers/s/mcp", json=init, headers=headers).status_code == 401
        assert http.post("/tenants/a/servers/nope/mcp", json=init, headers=a).status_code == 404
        assert http.post("/tenants/b/servers/x/mcp", json=init, headers=a).status_code == 404
        opened = http.post("/tenants/a/servers/s/mcp", json=init, headers=a)
        assert opened.status_code == 200
        session = {
            **a,
            "Mcp-Session-Id": opened.headers["Mcp-Session-Id"],
            "MCP-Protocol-Version": "2025-11-25",
        }
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        assert http.post("/tenants/a/servers/s/mcp", json=listing, headers=session).status_code == 200
        assert http.post("/tenants/a/servers/t/mcp", json=listing, headers=session).status_code == 404
        assert http.post("/tenants/a/mcp", json=listing, headers=session).status_code == 404


@pytest.mark.parametrize("mode", HANDSHAKES)
async def test_stdio_one_server_starts_that_server_alone_under_its_own_names(
    tmp_path: Path, mode: str
) -> None:
    config = write_config(
        tmp_path,
        {"t": {"servers": {"one": server("--name", "one"), "other": server("--name", "other")}}},
        auto_start=True,
    )
    async with facade(config, "t", mode, server="one") as client:
        assert client.instructions == INSTRUCTIONS
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"echo", "pid"} <= names and not any("__" in n for n in names)
        read = await client.read_resource("test://info")
        assert "name=one" in read.contents[0].text
        result = await client.call_tool("echo", {"text": "stdio"})
        assert result.structured_content == {"text": "stdio"}
    logs = tmp_path / "data" / "stdio" / "logs" / "t"
    assert (logs / "one.log").exists() and not (logs / "other.log").exists()  # never started


def test_stdio_one_server_names_an_unknown_server(tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import ROOT

    config = write_config(tmp_path, {"t": {"servers": {"one": server()}}})
    done = subprocess.run(
        [sys.executable, "-m", "hub", "stdio", "--config", str(config), "--tenant", "t", "--server", "two"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert "no server 'two' in tenant 't' (servers: one)" in done.stderr


def test_capabilities_of_a_server_never_seen_are_the_aggregated_ones() -> None:
    """A one-server endpoint of a server that never ran (no catalog) still answers tools, resources
    and prompts, and promises nothing more."""
    from web.facade_scope import Scope, capabilities_of

    caps = capabilities_of(Scope("t", "s"), ())
    assert isinstance(caps, types.ServerCapabilities)
    assert caps.tools and caps.resources and caps.prompts
    assert caps.logging is None and caps.completions is None and not caps.resources.subscribe


async def test_the_one_server_entry_of_docs_clients_md_works(tmp_path: Path) -> None:
    """docs/clients.md's `mcpServers` entry for one server, as written (paths pointed at a copy of
    the shipped configuration): the demo server's own tool names."""
    import json
    import re
    import sys

    from conftest import ROOT, needs_bwrap
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    needs_bwrap()
    blocks = re.findall(r"```json\n(.*?)```", (ROOT / "docs" / "clients.md").read_text(), re.S)
    entry = next(b for b in blocks if "--server" in b)
    (name, spec), *_ = json.loads(entry)["mcpServers"].items()
    (tmp_path / "config").mkdir()
    text = (ROOT / "config" / "hub.yaml").read_text().replace("auto_start: true", "auto_start: false")
    (tmp_path / "config" / "hub.yaml").write_text(text)
    args = [arg.replace("/path/to/mcp-hub", str(tmp_path)) for arg in spec["args"]]
    assert spec["command"].endswith("/bin/python") and name == args[args.index("--server") + 1]
    params = StdioServerParameters(command=sys.executable, args=args, cwd=tmp_path)
    with open(tmp_path / "stderr", "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog), cache=None) as client:
            assert "query" in {t.name for t in (await client.list_tools()).tools}
            rows = await client.call_tool("query", {"sql": "SELECT * FROM users LIMIT 3"})
            assert rows.structured_content["row_count"] == 3
