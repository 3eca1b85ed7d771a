"""Per-tool permissions (issue 22): a tenant key with `allow`/`deny` globs sees and calls only what
they give it, on every surface (REST, the WebSocket app gateway, the HTTP MCP facade, the stdio
facade with `--key`), and whatever else is absent and answered exactly like something unknown.

Real hubs (`python -m hub serve` and `python -m hub stdio`) with real test servers: tenant `acme`
has two, `db` and `fs` (each the test server: tools echo, pid, ...; resource test://info; prompt
greet). Its keys: one plain (everything), one scoped to `db.echo` (subject alice), one given `db.*`
less `db.pid` (subject bob).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import MARK, ROOT, server, wait_until
from helpers.apps import close, connect, make_plugins, until
from helpers.facade import http_facade
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client

ADMIN = "admin-key-0123456789"
ALL = "acme-all-key-0123456789"
ALICE = "acme-alice-key-0123456789"  # db.echo only
BOB = "acme-bob-key-0123456789"  # db.* but db.pid
BETA = "beta-key-0123456789"


def acme(**more: Any) -> dict[str, Any]:
    return {
        "api_keys": [
            ALL,
            {"key": ALICE, "subject": "alice", "allow": ["db.echo"]},
            {"key": BOB, "subject": "bob", "allow": ["db.*"], "deny": ["db.pid"]},
        ],
        "servers": {"db": server(), "fs": server()},
        **more,
    }


def tenants() -> dict[str, Any]:
    return {"acme": acme(), "beta": {"api_keys": [BETA], "servers": {"b": server()}}}


def audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def tool_ids(answer: Any) -> list[str]:
    return sorted(t["name"] for t in answer.body["tools"])


def test_rest_lists_and_calls_only_what_the_key_allows(served, tmp_path: Path) -> None:
    audit = tmp_path / "audit.log"
    hub = served(tenants(), auth={"admin_keys": [ADMIN]}, audit={"file": str(audit)})

    # Listings: alice sees db.echo alone; bob all of db but db.pid (deny wins); the plain key all.
    assert tool_ids(hub.get("/api/tools", key=ALICE)) == ["db.echo"]
    assert tool_ids(hub.get("/api/tenants/acme/tools", key=ALICE)) == ["db.echo"]
    bob = tool_ids(hub.get("/api/tools", key=BOB))
    assert "db.echo" in bob and "db.pid" not in bob and not any(t.startswith("fs.") for t in bob)
    everything = tool_ids(hub.get("/api/tools", key=ALL))
    assert {"db.pid", "fs.echo", "fs.pid"} <= set(everything)
    assert hub.get("/api/servers/acme/db", key=ALICE).body["tool_names"] == ["echo"]
    assert hub.get("/api/servers/acme/fs", key=ALICE).body["tool_names"] == []
    assert "pid" in hub.get("/api/servers/acme/fs", key=ALL).body["tool_names"]

    # Calls: the allowed one runs; a denied one is the 404 of an unknown tool, word for word.
    called = hub.post("/api/tools/db.echo/call", {"text": "hi"}, key=ALICE)
    assert called.status == 200 and not called.body["is_error"]
    unknown = hub.post("/api/tools/db.nope/call", {}, key=ALICE)
    assert unknown.status == 404 and unknown.body["error"]["code"] == "not_found"
    for denied_id, key in (("db.pid", ALICE), ("fs.echo", ALICE), ("db.pid", BOB)):
        denied = hub.post(f"/api/tools/{denied_id}/call", {"text": "x"}, key=key)
        assert denied.status == 404
        assert denied.body == json.loads(json.dumps(unknown.body).replace("db.nope", denied_id))
    assert hub.post("/api/tools/db.pid", {}, key=ALL).status == 200  # (the seed's form too)

    # Resources go with the whole server: alice has none, bob db's (so test://info is db's alone).
    listed = hub.get("/api/tenants/acme/resources", key=ALICE).body
    assert listed == {"resources": [], "resource_templates": []}
    assert {r["server"] for r in hub.get("/api/tenants/acme/resources", key=BOB).body["resources"]} == {"db"}
    nope = hub.get("/api/tenants/acme/resources/read?uri=test://nope", key=ALICE)
    denied = hub.get("/api/tenants/acme/resources/read?uri=test://info&server=db", key=ALICE)
    assert nope.status == denied.status == 404
    assert denied.body == json.loads(json.dumps(nope.body).replace("test://nope", "test://info"))
    assert hub.get("/api/tenants/acme/resources/read?uri=test://info", key=BOB).status == 200
    assert hub.get("/api/tenants/acme/resources/read?uri=test://info", key=ALL).status == 400  # (db and fs)

    # Prompts are matched as server.name: bob may get db.greet, alice not (nor see it).
    assert hub.get("/api/tenants/acme/prompts", key=ALICE).body["prompts"] == []
    assert [p["name"] for p in hub.get("/api/tenants/acme/prompts", key=BOB).body["prompts"]] == ["db.greet"]
    nope = hub.post("/api/tenants/acme/prompts/db.nope", {}, key=ALICE)
    denied = hub.post("/api/tenants/acme/prompts/db.greet", {"name": "x"}, key=ALICE)
    assert nope.status == denied.status == 404
    assert denied.body == json.loads(json.dumps(nope.body).replace("db.nope", "db.greet"))
    assert hub.post("/api/tenants/acme/prompts/db.greet", {"name": "x"}, key=BOB).status == 200

    # The audit log names whom each call was for, and says which calls were denied.
    assert wait_until(lambda: len(audit_lines(audit)) >= 6, 10)
    lines = audit_lines(audit)
    ok = next(line for line in lines if line["tool"] == "db.echo")
    assert ok["subject"] == "alice" and ok["outcome"] == "ok" and ok["key"].startswith("acme:")
    assert {(line["tool"], line["subject"]) for line in lines if line["outcome"] == "denied"} == {
        ("db.nope", "alice"),  # (not allowed either: whether it exists is no matter)
        ("db.pid", "alice"),
        ("fs.echo", "alice"),
        ("db.pid", "bob"),
    }
    plain = next(line for line in lines if line["tool"] == "db.pid" and line["outcome"] == "ok")
    assert plain["subject"] == plain["key"]  # a key without a subject acts for its own id
    assert ALICE not in audit.read_text() and ALL not in audit.read_text()


def test_denied_calls_take_no_quota(served) -> None:
    """A denied call is refused before anything runs: the tenant's calls per minute stay whole."""
    hub = served({"acme": acme(quotas={"max_calls_per_minute": 2})}, auth={"admin_keys": [ADMIN]})
    for _ in range(5):
        assert hub.post("/api/tools/fs.echo/call", {"text": "x"}, key=ALICE).status == 404
    assert hub.post("/api/tools/db.echo/call", {"text": "1"}, key=ALICE).status == 200
    assert hub.post("/api/tools/db.echo/call", {"text": "2"}, key=ALICE).status == 200
    assert hub.post("/api/tools/db.echo/call", {"text": "3"}, key=ALICE).status == 429  # (the quota works)


def test_websocket_gateway_shows_and_calls_only_what_the_key_allows(served, tmp_path: Path) -> None:
    hub = served(
        {"acme": acme()},
        auth={"admin_keys": [ADMIN]},
        gateway={"plugins_dir": str(make_plugins(tmp_path))},
    )

    async def scenario() -> None:
        ws = await connect(hub, "hello", "acme", key=ALICE)
        ws.write_message(json.dumps({"type": "app_ready", "id": 1, "data": {}}))
        state = await until(ws, "app_state", 1)
        assert [t["name"] for t in state["data"]["tools"]] == ["db.echo"]
        assert {s["server"] for s in state["data"]["servers"]} == {"db", "fs"}  # (servers stay listed)
        for frame_id, tool in ((2, "db.nope"), (3, "db.pid"), (4, "fs.echo")):
            call = {"tool_name": tool, "arguments": {"text": "x"}}
            ws.write_message(json.dumps({"type": "tool_call", "id": frame_id, "data": call}))
        errors: dict[int, Any] = {}
        while len(errors) < 3:  # (the calls run concurrently: their answers come in any order)
            message = await until(ws, "error")
            errors[message["id"]] = message["data"]
        assert errors[2]["code"] == "not_found"
        for frame_id, tool in ((3, "db.pid"), (4, "fs.echo")):
            assert errors[frame_id] == json.loads(json.dumps(errors[2]).replace("db.nope", tool))
        call = {"tool_name": "db.echo", "arguments": {"text": "hi"}}
        ws.write_message(json.dumps({"type": "tool_call", "id": 5, "data": call}))
        assert not (await until(ws, "tool_result", 5))["data"]["is_error"]
        # A catalog change names only the tools the key may call.
        assert hub.post("/api/servers/acme/db/restart?wait=false", key=ADMIN).status == 200
        while True:
            changed = (await until(ws, "catalog_changed"))["data"]
            if changed["server"] == "db" and changed["tools"]:
                break
        assert changed["tools"] == ["db.echo"]
        await close(ws)

    asyncio.run(scenario())


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_http_facade_lists_and_calls_only_what_the_key_allows(served, anyio_backend: str) -> None:
    hub = served(tenants(), auth={"admin_keys": [ADMIN]})
    async with http_facade(hub.url + "/mcp", "legacy", key=ALICE) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["db__echo"]
        assert (await client.list_prompts()).prompts == []
        assert (await client.list_resources()).resources == []
        assert (await client.list_resource_templates()).resource_templates == []
        assert not (await client.call_tool("db__echo", {"text": "hi"})).is_error
        for name in ("db__nope", "db__pid", "fs__echo"):
            with pytest.raises(MCPError, match=rf"^Unknown tool: {name}$"):
                await client.call_tool(name, {"text": "x"})
        with pytest.raises(MCPError, match="unknown resource"):
            await client.read_resource("mcp-hub://db/test://info")
    async with http_facade(hub.url + "/tenants/acme/servers/db/mcp", "2026-07-28", key=ALICE) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["echo"]
        with pytest.raises(MCPError, match=r"^Unknown tool: pid$"):
            await client.call_tool("pid", {})
    async with http_facade(hub.url + "/tenants/acme/servers/fs/mcp", "legacy", key=ALICE) as client:
        assert (await client.list_tools()).tools == []
    async with http_facade(hub.url + "/tenants/acme/mcp", "2026-07-28", key=BOB) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "db__echo" in names and "db__pid" not in names and not any(n.startswith("fs__") for n in names)
        assert [p.name for p in (await client.list_prompts()).prompts] == ["db__greet"]
        assert (await client.read_resource("mcp-hub://db/test://info")).contents
        with pytest.raises(MCPError, match="unknown resource"):
            await client.read_resource("mcp-hub://fs/test://info")
    async with http_facade(hub.url + "/mcp", "legacy", key=ALL) as client:
        assert {"db__pid", "fs__echo", "fs__pid"} <= {t.name for t in (await client.list_tools()).tools}
        assert len((await client.list_prompts()).prompts) == 2


def stdio_config(tmp_path: Path) -> tuple[Path, Path]:
    audit = tmp_path / "audit.log"
    data = {
        "tenants": {name: {**t, "env": {"MCP_HUB_TEST_MARK": MARK}} for name, t in tenants().items()},
        "orchestrator": {"data_dir": str(tmp_path / "data"), "backoff_initial": 0.1, "backoff_max": 0.3},
        "audit": {"file": str(audit)},
    }
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, audit


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_stdio_facade_with_a_key_has_its_grants(tmp_path: Path, anyio_backend: str) -> None:
    config, audit = stdio_config(tmp_path)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "hub", "stdio", "--config", str(config), "--tenant", "acme"],
        env={"MCP_HUB_KEY": ALICE},
        cwd=ROOT,
    )
    with open(tmp_path / "stdio.stderr", "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode="legacy", cache=None) as client:
            assert [t.name for t in (await client.list_tools()).tools] == ["db__echo"]
            assert (await client.list_prompts()).prompts == []
            assert not (await client.call_tool("db__echo", {"text": "hi"})).is_error
            with pytest.raises(MCPError, match=r"^Unknown tool: db__pid$"):
                await client.call_tool("db__pid", {})
    lines = [(line["tool"], line["subject"], line["outcome"]) for line in audit_lines(audit)]
    assert lines == [("db.echo", "alice", "ok")]


def test_stdio_facade_refuses_a_key_not_of_its_tenant(tmp_path: Path) -> None:
    config, _ = stdio_config(tmp_path)
    for key in (BETA, "no-such-key-0123456789", ""):
        ran = subprocess.run(
            [sys.executable, "-m", "hub", "stdio", "--config", str(config), "--tenant", "acme", "--key", key],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert ran.returncode == 2
        assert "the key given (--key or $MCP_HUB_KEY) is not a key of tenant 'acme'" in ran.stderr
        assert ran.stdout == "" and (not key or key not in ran.stderr)
    helped = subprocess.run(
        [sys.executable, "-m", "hub", "stdio", "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert "--key" in helped.stdout and "MCP_HUB_KEY" in helped.stdout


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")  # (logging/setLevel)
async def test_a_servers_own_log_messages_reach_only_callers_of_the_whole_server(
    served, anyio_backend: str
) -> None:
    hub = served(
        {"acme": acme(servers={"db": server("--extras", protocol="legacy")})}, auth={"admin_keys": [ADMIN]}
    )
    heard: dict[str, list[Any]] = {"alice": [], "bob": []}

    def listener(name: str) -> Any:
        async def on_log(params: Any) -> None:
            heard[name].append(params.data)

        return on_log

    url = hub.url + "/mcp"
    async with (
        http_facade(url, "legacy", key=ALICE, logging_callback=listener("alice")) as alice,
        http_facade(url, "legacy", key=BOB, logging_callback=listener("bob")) as bob,
    ):
        await alice.set_logging_level("debug")
        await bob.set_logging_level("debug")
        said = {"level": "warning", "message": "said on its own", "delay": 0.05}
        assert not (await bob.call_tool("db__log_later", said)).is_error
        assert await asyncio.to_thread(wait_until, lambda: heard["bob"] == ["said on its own"], 15), heard
        assert not (await alice.call_tool("db__echo", {"text": "x"})).is_error  # (a round trip after it)
        assert heard["alice"] == []  # alice may call db.echo, not use db as a whole
