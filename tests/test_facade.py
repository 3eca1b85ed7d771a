"""The MCP facade over stdio (`python -m hub stdio`), driven by the `mcp` SDK's own client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
import pytest
import yaml
from conftest import (
    MARK,
    ROOT,
    SERVERS_DIR,
    binds,
    initialize_request,
    needs_bwrap,
    node_package,
    server,
)
from helpers.facade import MODES, everything_server, facade, http_facade, modern_call, write_config
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client

from hub.config_auth import Grant
from web.facade_names import facade_name, facade_uri, upstream_uri
from web.facade_scope import Scope

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def two_servers(tmp_path: Path) -> Path:
    return write_config(tmp_path, {"t": {"servers": {"a": server(), "b": server("--list-changed")}}})


@pytest.mark.parametrize("mode", MODES)
async def test_tools_of_two_servers_listed_and_called(tmp_path: Path, mode: str) -> None:
    async with facade(two_servers(tmp_path), "t", mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"a__echo", "a__add", "b__echo", "b__add_tool"} <= names
        result = await client.call_tool("a__echo", {"text": "via the hub"})
        assert result.structured_content == {"text": "via the hub"} and not result.is_error
        assert (await client.call_tool("b__add", {"a": 2, "b": 40})).structured_content == {"sum": 42}
        assert (await client.call_tool("a__fail", {})).is_error
        with pytest.raises(MCPError, match="Unknown tool: nope__echo"):
            await client.call_tool("nope__echo", {})
        # The error names the tool as the client does, not by its catalog id (`a.add`).
        with pytest.raises(
            MCPError,
            match=r"^invalid arguments for tool 'a__add': arguments\.a: 'x' is not of type 'integer'$",
        ):
            await client.call_tool("a__add", {"a": "x", "b": 1})


@pytest.mark.parametrize("mode", MODES)
async def test_progress_resources_and_prompts(tmp_path: Path, mode: str) -> None:
    async with facade(two_servers(tmp_path), "t", mode) as client:
        progress: list[float] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(value)

        assert not (
            await client.call_tool("a__sleep", {"seconds": 0.35}, progress_callback=on_progress)
        ).is_error
        assert progress[:3] == pytest.approx([0.1, 0.2, 0.3]) and progress[-1] == pytest.approx(0.35)
        uris = {str(r.uri) for r in (await client.list_resources()).resources}
        assert uris == {"mcp-hub://a/test://info", "mcp-hub://b/test://info"}
        read = await client.read_resource("mcp-hub://b/test://info")
        assert (
            str(read.contents[0].uri) == "mcp-hub://b/test://info" and "testserver" in read.contents[0].text
        )
        assert {p.name for p in (await client.list_prompts()).prompts} == {"a__greet", "b__greet"}
        prompt = await client.get_prompt("a__greet", {"name": "Ada"})
        assert prompt.messages[0].content.text == "Hello, Ada!"


async def test_list_changed_reaches_a_2025_client(tmp_path: Path) -> None:
    events: list[Any] = []
    async with facade(two_servers(tmp_path), "t", "legacy", events) as client:
        await client.list_tools()
        await client.call_tool("b__add_tool", {"name": "fresh"})
        with anyio.fail_after(10):
            while not any(type(e).__name__ == "ToolListChangedNotification" for e in events):
                await anyio.sleep(0.05)
        assert "b__fresh" in {t.name for t in (await client.list_tools()).tools}


async def test_list_changed_reaches_a_2026_client_on_its_listen_stream(tmp_path: Path) -> None:
    async with (
        facade(two_servers(tmp_path), "t", "2026-07-28") as client,
        client.listen(tools_list_changed=True) as subscription,
    ):
        await client.call_tool("b__add_tool", {"name": "fresh"})
        with anyio.fail_after(10):
            async for _event in subscription:
                if "b__fresh" in {t.name for t in (await client.list_tools()).tools}:
                    break


@pytest.mark.parametrize("mode", MODES)
async def test_a_tenant_sees_nothing_of_another(tmp_path: Path, mode: str) -> None:
    config = write_config(
        tmp_path, {"a": {"servers": {"mine": server()}}, "b": {"servers": {"theirs": server()}}}
    )
    async with facade(config, "a", mode) as client:
        assert {t.name.split("__")[0] for t in (await client.list_tools()).tools} == {"mine"}
        assert {str(r.uri) for r in (await client.list_resources()).resources} == {
            "mcp-hub://mine/test://info"
        }
        with pytest.raises(MCPError):
            await client.call_tool("theirs__echo", {"text": "x"})
        with pytest.raises(MCPError):
            await client.read_resource("mcp-hub://theirs/test://info")
        with pytest.raises(MCPError):
            await client.get_prompt("theirs__greet", {"name": "x"})


async def test_a_crashed_server_is_a_clear_tool_error_never_a_hang(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"t": {"servers": {"c": server("--crash-after", "0")}}}, max_retries=0)
    async with facade(config, "t", "legacy") as client:
        with anyio.fail_after(10):
            result = await client.call_tool("c__echo", {"text": "x"})
        assert result.is_error and "crashed during the call" in result.content[0].text


def test_unknown_tenant_and_bad_config_exit_non_zero(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"t": {}})
    run = [sys.executable, "-m", "hub", "stdio", "--config"]
    unknown = subprocess.run(
        [*run, str(config), "--tenant", "ghost"], capture_output=True, text=True, timeout=30
    )
    assert unknown.returncode == 2 and "no tenant 'ghost'" in unknown.stderr and unknown.stdout == ""
    bad = tmp_path / "bad.yaml"
    bad.write_text("tenants: {t: {servers: {s: {}}}}\n")
    broken = subprocess.run([*run, str(bad), "--tenant", "t"], capture_output=True, text=True, timeout=30)
    assert broken.returncode == 2 and "'command' is required" in broken.stderr and broken.stdout == ""


async def test_stdio_serves_its_tenant_alone_without_other_tenants_variables_or_keys(tmp_path: Path) -> None:
    """With auto_start, `stdio --tenant a` starts a's servers only; b's variables, the admin key and
    a's own keys may be unset; its logs live under <data_dir>/stdio, apart from a service's."""
    started = tmp_path / "b-started"
    config = tmp_path / "hub.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "auth": {"admin_keys": ["${UNSET_ADMIN_KEY}"]},
                "tenants": {
                    "a": {
                        "api_keys": ["${UNSET_A_KEY}"],
                        "env": {"MCP_HUB_TEST_MARK": MARK},
                        "servers": {"mine": server()},
                    },
                    "b": {
                        "env": {"MCP_HUB_TEST_MARK": MARK, "B_TOKEN": "${UNSET_B_TOKEN}"},
                        "servers": {
                            "theirs": {
                                "command": "sh",
                                "args": [
                                    "-c",
                                    f'echo "$B_TOKEN" > {started}; exec "$0" "$@"',
                                    *server()["args"],
                                ],
                            }
                        },
                    },
                },
                "orchestrator": {"data_dir": str(tmp_path / "data"), "auto_start": True},
            }
        )
    )
    for name in ("UNSET_ADMIN_KEY", "UNSET_A_KEY", "UNSET_B_TOKEN"):
        assert name not in os.environ
    async with facade(config, "a", "legacy") as client:
        assert {t.name for t in (await client.list_tools()).tools} >= {"mine__echo"}
        assert (await client.call_tool("mine__echo", {"text": "x"})).structured_content == {"text": "x"}
    assert not started.exists(), "tenant b's server was started by tenant a's stdio facade"
    assert (tmp_path / "data" / "stdio" / "logs" / "a" / "mine.log").exists()
    assert not (tmp_path / "data" / "logs").exists(), "the stdio facade wrote into the service's log folder"
    # The service on the same file still needs every variable, and says which.
    check = subprocess.run(
        [sys.executable, "-m", "hub", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 2 and "UNSET_B_TOKEN" in check.stderr and "UNSET_ADMIN_KEY" in check.stderr


def cmdline(proc: Path) -> bytes:
    """The command line of process folder `proc` (b"" if it is not a process, or has just exited)."""
    try:
        return (proc / "cmdline").read_bytes() if proc.name.isdigit() else b""
    except OSError:
        return b""


async def test_while_serving_stray_output_goes_to_stderr(tmp_path: Path) -> None:
    """The wire moved to private descriptors: fd 1 of the facade is its stderr, fd 0 the null device."""
    config = two_servers(tmp_path)
    async with facade(config, "t", "legacy") as client:
        await client.call_tool("a__echo", {"text": "up"})
        (pid,) = [int(p.name) for p in Path("/proc").iterdir() if str(config).encode() in cmdline(p)]
        assert os.readlink(f"/proc/{pid}/fd/1") == os.readlink(f"/proc/{pid}/fd/2")
        assert os.readlink(f"/proc/{pid}/fd/0") == os.devnull


def test_stdin_from_a_regular_file_is_served_too(tmp_path: Path) -> None:
    """A file is no pipe for asyncio: the SDK's own stdio transport serves it instead. (At the
    end of stdin the SDK stops serving, so only the first request is sure to be answered.)"""
    config = two_servers(tmp_path)
    requests = tmp_path / "requests.jsonl"
    lines = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "file", "version": "1"},
            },
        },
    ]
    requests.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with open(requests) as stdin:
        done = subprocess.run(
            [sys.executable, "-m", "hub", "stdio", "--config", str(config), "--tenant", "t"],
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
    answers = {m["id"]: m for m in map(json.loads, done.stdout.splitlines())}
    assert done.returncode == 0, done.stderr
    assert answers[1]["result"]["serverInfo"]["name"] == "mcp-hub"


def test_names_are_safe_short_unique_and_map_back() -> None:
    assert facade_name("github", "create_issue") == "github__create_issue"
    assert facade_name("db", "run.query") != facade_name("db", "run_query")
    long = facade_name("a" * 32, "b" * 64)
    assert len(long) == 64 and long == facade_name("a" * 32, "b" * 64)
    assert len({facade_name("s", f"{'x' * 70}{i}") for i in range(50)}) == 50
    for server_name, uri in (
        ("s", "test://info"),
        ("s", "ui://get-time/app.html"),
        ("db", "file:///a/b?c=d"),
    ):
        assert upstream_uri(facade_uri(server_name, uri)) == (server_name, uri)
    assert facade_uri("apps", "ui://get-time/mcp-app.html") == "ui://apps/get-time/mcp-app.html"


def test_a_plain_name_maps_back_to_its_tool_without_a_listing() -> None:
    # (what a facade call of a tool whose server is moving between replicas is routed by: `Facade._moving`)
    servers = ("db", "db__x", "github")
    everything = Scope("t")
    assert everything.tool_id("github__create_issue", "__", servers) == "github.create_issue"
    assert everything.tool_id("db__x__run", "__", servers) in ("db.x__run", "db__x.run")
    assert everything.tool_id("nope__run", "__", servers) is None  # (no such server)
    assert everything.tool_id("github__", "__", servers) is None
    # (a name `facade_name` changed does not map back: such a call waits, then fails as unknown)
    assert everything.tool_id(facade_name("db", "run.query"), "__", servers) != "db.run.query"
    assert Scope("t", "db").tool_id("run", "__", servers) == "db.run"  # (one server: its own names)
    narrow = Scope.of("t", None, (Grant(allow=("github.*",)),))
    assert narrow.tool_id("github__x", "__", servers) == "github.x"
    assert narrow.tool_id("db__run", "__", servers) is None  # (a tool its caller may not call)


# --------------------------------------------------------------------------- Streamable HTTP


@pytest.mark.parametrize("mode", MODES)
async def test_http_facade_lists_and_calls_tools_of_two_servers(served, mode: str) -> None:
    hub = served({"default": {"servers": {"a": server(), "b": server()}}})
    async with http_facade(hub.url + "/mcp", mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"a__echo", "b__echo"} <= names
        assert (await client.call_tool("b__echo", {"text": "over http"})).structured_content == {
            "text": "over http"
        }
        progress: list[float] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(value)

        await client.call_tool("a__sleep", {"seconds": 0.25}, progress_callback=on_progress)
        assert progress and progress[-1] == pytest.approx(0.25)


async def test_http_facade_tenant_comes_from_the_key(served) -> None:
    hub = served(
        {
            "acme": {"api_keys": ["acme-key-1234567890"], "servers": {"mine": server()}},
            "beta": {"api_keys": ["beta-key-1234567890"], "servers": {"theirs": server()}},
        },
        auth={"admin_keys": ["admin-key-1234567890"]},
    )
    async with http_facade(hub.url + "/mcp", "legacy", key="acme-key-1234567890") as client:
        assert {t.name.split("__")[0] for t in (await client.list_tools()).tools} == {"mine"}
        with pytest.raises(MCPError):
            await client.call_tool("theirs__echo", {"text": "x"})
    async with http_facade(hub.url + "/tenants/beta/mcp", "2026-07-28", key="admin-key-1234567890") as client:
        assert {t.name.split("__")[0] for t in (await client.list_tools()).tools} == {"theirs"}
    # Another tenant's endpoint is a 404, no key a 401, a foreign Origin a 403.
    assert hub.post("/tenants/beta/mcp", {}, key="acme-key-1234567890").status == 404
    assert hub.post("/mcp", {}).status == 401
    initialize = initialize_request()
    evil = hub.request(
        "POST",
        "/mcp",
        initialize,
        key="acme-key-1234567890",
        headers={"Origin": "http://evil.example", "Accept": "application/json, text/event-stream"},
    )
    assert evil.status == 403


async def test_http_facade_checks_mcp_param_headers_against_the_tenants_schema(served) -> None:
    """2026-07-28: a tool's `x-mcp-header` arguments travel as `Mcp-Param-*` headers too, and a
    header that disagrees with the body is a 400 (the SDK asks the facade for the schema)."""
    wire = {"command": "python", "args": [str(SERVERS_DIR / "wireserver.py")], "sandbox": binds(SERVERS_DIR)}
    hub = served({"default": {"servers": {"w": wire}}})
    async with http_facade(hub.url + "/mcp", "2026-07-28") as client:
        schema = {t.name: t.input_schema for t in (await client.list_tools()).tools}["w__region"]
        assert schema["properties"]["region"]["x-mcp-header"] == "Region"
        assert (await client.call_tool("w__region", {"region": "eu-west"})).content[0].text == "eu-west"
    call = modern_call("w__region", {"region": "eu-west"}, request_id=7)
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "w__region",
    }
    agreed = hub.request("POST", "/mcp", call, headers={**headers, "Mcp-Param-Region": "eu-west"})
    assert agreed.status == 200, agreed.body
    lied = hub.request("POST", "/mcp", call, headers={**headers, "Mcp-Param-Region": "us-east"})
    assert lied.status == 400, lied.body


# --------------------------------------------------------------------------- passthrough


async def test_sampling_and_elicitation_round_trip_through_the_facade(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"t": {"servers": {"every": everything_server()}}})
    asked: list[str] = []

    async def sampling(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked.append(f"sampling: {params.messages[0].content.text}")
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(text="a sampled answer"), model="test-model"
        )

    async def elicitation(context: Any, params: Any) -> types.ElicitResult:
        asked.append(f"elicitation: {params.message}")
        properties = params.requested_schema.get("properties", {})
        return types.ElicitResult(
            action="accept",
            content={k: "x" for k, v in properties.items() if v.get("type") == "string"} or None,
        )

    async with facade(
        config, "t", "legacy", sampling_callback=sampling, elicitation_callback=elicitation
    ) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"every__trigger-sampling-request", "every__trigger-elicitation-request"} <= names
        result = await client.call_tool("every__trigger-sampling-request", {"prompt": "What is MCP?"})
        assert not result.is_error and "a sampled answer" in str(result.content)
        result = await client.call_tool("every__trigger-elicitation-request", {})
        assert not result.is_error and "accept" in str(result.content).lower()
        progress: list[float] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(value)

        result = await client.call_tool(
            "every__trigger-long-running-operation",
            {"duration": 1, "steps": 4},
            progress_callback=on_progress,
        )
        assert not result.is_error and len(progress) == 4
    assert asked[0].startswith("sampling: ") and "What is MCP?" in asked[0]
    assert asked[1].startswith("elicitation:")


@pytest.mark.parametrize("mode", MODES)
async def test_log_messages_of_a_call_reach_its_client(tmp_path: Path, mode: str) -> None:
    logs: list[types.LoggingMessageNotificationParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params)

    config = two_servers(tmp_path)
    async with facade(config, "t", mode, logging_callback=on_log, log_level="debug") as client:
        assert (await client.call_tool("a__log", {"text": "hello from upstream"})).content[0].text == "logged"
    assert [(p.level, p.data) for p in logs] == [("warning", "hello from upstream")]


async def test_cancelling_a_call_cancels_the_upstream_work(tmp_path: Path) -> None:
    config = two_servers(tmp_path)
    async with facade(config, "t", "legacy") as client:
        with anyio.move_on_after(1.0):
            await client.call_tool("a__sleep", {"seconds": 30})
        log = tmp_path / "data" / "stdio" / "logs" / "t" / "a.log"  # the stdio facade's own folder
        with anyio.fail_after(10):
            while "sleep cancelled" not in log.read_text():
                await anyio.sleep(0.05)
        # The server is fine afterwards.
        assert (await client.call_tool("a__echo", {"text": "after"})).structured_content == {"text": "after"}


def inspector(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the MCP Inspector CLI (docs/clients.md's recipe: from its `build/` folder) and parse its answer."""
    build = node_package("@modelcontextprotocol/inspector-cli", "build", "index.js").parent
    result = subprocess.run(
        ["node", "index.js", *args],
        cwd=build,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_the_mcp_inspector_cli_lists_and_calls_through_the_stdio_facade(tmp_path: Path) -> None:
    """The recipe of docs/clients.md: the hub's configuration in MCP_HUB_CONFIG, not in a --config
    that a launcher (npx's `inspector --cli`) would take for its own; no --config at all here."""
    target = [sys.executable, "-m", "hub", "stdio", "--tenant", "t"]
    env = {"MCP_HUB_CONFIG": str(two_servers(tmp_path))}
    names = {t["name"] for t in inspector(*target, "--method", "tools/list", env=env)["tools"]}
    assert {"a__echo", "b__echo", "b__add_tool"} <= names
    call = ("--method", "tools/call", "--tool-name", "b__echo", "--tool-arg", "text=inspected")
    called = inspector(*target, *call, env=env)
    assert called["structuredContent"] == {"text": "inspected"} and called["isError"] is False


def test_the_mcp_inspector_cli_lists_and_calls_through_the_http_facade(served) -> None:
    """The other recipe of docs/clients.md: the service's URL, the key as a header."""
    key = "inspector-admin-key-0123"
    hub = served({"t": {"servers": {"a": server()}}}, auth={"admin_keys": [key]})
    url = f"{hub.url}/tenants/t/mcp"
    header = ("--header", f"Authorization: Bearer {key}")
    names = {t["name"] for t in inspector(url, *header, "--method", "tools/list")["tools"]}
    assert "a__echo" in names
    call = ("--method", "tools/call", "--tool-name", "a__echo", "--tool-arg", "text=over http")
    assert inspector(url, *header, *call)["structuredContent"] == {"text": "over http"}


async def test_the_claude_desktop_entry_works_from_any_working_directory(tmp_path: Path) -> None:
    """The README's `mcpServers` entry: absolute --config, started from an unrelated folder."""
    needs_bwrap()
    (tmp_path / "repo" / "config").mkdir(parents=True)
    text = (ROOT / "config" / "hub.yaml").read_text().replace("auto_start: true", "auto_start: false")
    (tmp_path / "repo" / "config" / "hub.yaml").write_text(text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    params = StdioServerParameters(
        command=sys.executable,
        cwd=elsewhere,
        args=[
            "-m",
            "hub",
            "stdio",
            "--config",
            str(tmp_path / "repo" / "config" / "hub.yaml"),
            "--tenant",
            "default",
        ],
    )
    with open(tmp_path / "stderr", "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog), cache=None) as client:
            assert "sqlite-demo__query" in {t.name for t in (await client.list_tools()).tools}
            rows = await client.call_tool("sqlite-demo__query", {"sql": "SELECT * FROM users LIMIT 10"})
            assert rows.structured_content["row_count"] == 10
    assert (tmp_path / "repo" / ".mcp-hub" / "stdio" / "homes" / "default" / "demo.db").exists()
    assert (tmp_path / "repo" / ".mcp-hub" / "stdio" / "logs" / "default" / "sqlite-demo.log").exists()
    assert not any(elsewhere.iterdir())
