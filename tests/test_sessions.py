"""Per-session servers (`per_session: true`): one instance (process) of the server per client
session, started by the session's first call and stopped when the session ends or idles out.
Real test servers as subprocesses; `pid` is the test server's tool that returns its process id."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import tornado.websocket
from conftest import (
    SERVERS_DIR,
    TEST_SERVER,
    binds,
    config_of,
    host_pid,
    marked_pids,
    process_gone,
    server,
    server_pids,
    server_process,
    wait_until,
)
from helpers.apps import close, connect, make_plugins, until
from helpers.facade import facade
from helpers.facade import write_config as write_stdio_config
from helpers.processes import gone
from helpers.served import start_hub, stop_hub, write_config

from actors.models import InstanceStateChanged, ServerState, StoppedReason
from hub.config import parse_config
from hub.errors import ConfigError, NotRunning, QuotaExceeded
from hub.runtime import Hub


def per_session(*flags: str, **settings: object) -> dict[str, object]:
    """A test server with one instance per session."""
    return server(*flags, per_session=True, **settings)


def pid(hub: Hub, session: str | None, tenant: str = "t", tool: str = "ps.pid") -> int:
    return host_pid(hub.call_tool(tenant, tool, {}, session=session).structured_content)


# --------------------------------------------------------------------------- configuration


def test_config_per_session_implies_on_demand_and_a_quota() -> None:
    config = config_of(
        {"t": {"quotas": {"max_sessions_per_server": 2}, "servers": {"ps": per_session(idle_timeout=5)}}}
    )
    ps = config.tenants["t"].servers["ps"]
    assert (ps.per_session, ps.lifecycle, ps.on_demand, ps.idle_seconds) == (True, "on_demand", True, 5)
    assert config.tenants["t"].quotas.max_sessions_per_server == 2
    assert "1 on demand (1 per session)" in config.summary() and not config.warnings()
    with pytest.raises(ConfigError) as error:
        parse_config(
            "tenants: {t: {quotas: {max_sessions_per_server: 0}, servers: "
            "{ps: {command: x, per_session: true, lifecycle: always}, q: {command: x, per_session: 1}}}}"
        )
    assert error.value.problems == (
        "tenants.t.quotas.max_sessions_per_server: must be >= 1 (got 0)",
        "tenants.t.servers.ps.lifecycle: a per_session or per_user server is started by each session's first "
        "call (on_demand): omit 'lifecycle' or set it to 'on_demand'",
        "tenants.t.servers.q.per_session: expected boolean, got integer",
    )


# --------------------------------------------------------------------------- the Python API


def test_each_session_gets_its_own_instance_and_ending_it_stops_that_process(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"ps": per_session(), "plain": server()}}})
    # No catalog yet (no cache): starting the tenant runs the shared instance once to discover it.
    assert hub.start_tenant("t") == {"ps": "running", "plain": "running"}
    assert {"ps.pid", "ps.echo"} <= {t.id for t in hub.tools("t")}
    shared = server_process(hub.server("t", "ps").pid)
    a, b = pid(hub, "s:a"), pid(hub, "s:b")
    assert len({a, b, shared}) == 3  # two sessions, two processes; neither is the shared one
    assert pid(hub, "s:a") == a and pid(hub, "s:b") == b  # a session keeps its instance
    assert pid(hub, None) == shared  # no session: the shared instance
    assert pid(hub, "s:a", tool="plain.pid") == pid(hub, "s:b", tool="plain.pid")  # not per_session
    assert {(i.session, i.state, server_process(i.pid)) for i in hub.instances("t")} == {
        ("s:a", ServerState.RUNNING, a),
        ("s:b", ServerState.RUNNING, b),
    }
    assert hub.tenant("t").instances == {"ps": 2}
    assert hub.metrics.instances.labels("t", "ps")._value.get() == 2

    assert hub.end_session("s:a") == 1
    assert gone(a) and not process_gone(b) and not process_gone(shared)
    assert [i.session for i in hub.instances("t")] == ["s:b"]
    assert hub.metrics.instances.labels("t", "ps")._value.get() == 1
    assert hub.end_session("s:a") == 0  # ended already: nothing left
    # A call of a session that has ended does not start a new instance for it.
    with pytest.raises(NotRunning, match="session of this call has ended"):
        pid(hub, "s:a")
    assert hub.instances("t")[0].session == "s:b"
    # Stopping the server stops its instances too; the catalog stays listed from the cache.
    hub.stop_server("t", "ps")
    assert gone(b, shared) and hub.board.wait_for(lambda: hub.instances("t") == (), 5)
    assert "ps.pid" in {t.id for t in hub.tools("t")}
    assert pid(hub, "s:c") not in (a, b, shared)
    # A tenant start does not start the shared instance again now that the catalog is cached.
    assert hub.start_tenant("t")["ps"] == "per_session"


def test_resources_and_prompts_of_a_session_come_from_its_instance(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"ps": per_session()}}})
    hub.start_tenant("t")
    assert "testserver" in json.dumps(hub.read_resource("t", "test://info", session="s:r"))
    assert "Ada" in json.dumps(hub.get_prompt("t", "ps.greet", {"name": "Ada"}, session="s:p"))
    assert {i.session for i in hub.instances("t")} == {"s:r", "s:p"}


def test_max_sessions_per_server_is_a_clear_quota_error(make_hub) -> None:
    hub = make_hub({"t": {"quotas": {"max_sessions_per_server": 2}, "servers": {"ps": per_session()}}})
    hub.start_tenant("t")
    first = pid(hub, "s:1")
    pid(hub, "s:2")
    with pytest.raises(
        QuotaExceeded, match=r"already runs 2 session instances \(max_sessions_per_server 2\)"
    ):
        pid(hub, "s:3")
    assert pid(hub, None) == server_process(hub.server("t", "ps").pid)  # the shared one is no session's
    assert pid(hub, "s:1") == first  # the sessions that have one keep it
    assert hub.tenant("t").to_json()["quotas"]["max_sessions_per_server"] == {"limit": 2, "used": 2}
    hub.end_session("s:1")
    assert gone(first) and pid(hub, "s:3") != first


def test_two_tenants_never_share_an_instance(make_hub) -> None:
    hub = make_hub(
        {
            "t": {"env": {"WHO": "tenant-t"}, "servers": {"ps": per_session()}},
            "u": {"env": {"WHO": "tenant-u"}, "servers": {"ps": per_session()}},
        }
    )
    hub.start_tenant("t")
    hub.start_tenant("u")
    # The same session id (a client of both tenants) gets one instance in each, with its env.
    in_t, in_u = pid(hub, "s:same", "t"), pid(hub, "s:same", "u")
    assert in_t != in_u
    env_t = hub.call_tool("t", "ps.env", {}, session="s:same").content[0]["text"]
    env_u = hub.call_tool("u", "ps.env", {}, session="s:same").content[0]["text"]
    assert json.loads(env_t)["WHO"] == "tenant-t" and json.loads(env_u)["WHO"] == "tenant-u"
    assert {(i.tenant, server_process(i.pid)) for i in hub.instances()} == {("t", in_t), ("u", in_u)}
    assert {server_process(i.pid) for i in hub.instances("u")} == {in_u}


def test_an_idle_instance_stops_and_its_session_gets_a_new_one(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"ps": per_session(idle_timeout=0.6)}}})
    hub.start_tenant("t")
    first = pid(hub, "s:idle")

    def stopped_for_idleness() -> bool:
        return any(
            isinstance(e, InstanceStateChanged)
            and e.status.session == "s:idle"
            and e.status.stopped_reason is StoppedReason.IDLE
            for e in list(hub.board.events)
        )

    assert hub.board.wait_for(stopped_for_idleness, 10)
    assert gone(first) and hub.board.wait_for(lambda: hub.instances("t") == (), 5)
    second = pid(hub, "s:idle")
    assert second != first and server_process(hub.instances("t")[0].pid) == second


def test_a_reload_that_changes_the_server_stops_its_instances(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"ps": per_session()}}})
    hub.start_tenant("t")
    first = pid(hub, "s:r")
    outcome = hub.reload(config_of({"t": {"servers": {"ps": per_session(idle_timeout=30)}}}))
    assert outcome["servers"]["t"] == {"ps": "changed"}
    assert gone(first) and hub.board.wait_for(lambda: hub.instances("t") == (), 5)
    second = pid(hub, "s:r")  # the session gets an instance of the new configuration
    assert second != first
    # No longer per_session: the session's instance stops, and its calls go to the server itself.
    outcome = hub.reload(config_of({"t": {"servers": {"ps": server(lifecycle="on_demand")}}}))
    assert gone(second) and pid(hub, "s:r") == pid(hub, None) == server_process(hub.server("t", "ps").pid)


def test_concurrent_first_calls_of_one_session_start_one_instance(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"ps": per_session()}}})
    hub.start_tenant("t")

    async def many() -> set[int]:
        results = await asyncio.gather(
            *[hub.call_tool_async("t", "ps.pid", {}, session="s:x") for _ in range(10)]
        )
        return {host_pid(r.structured_content) for r in results}

    pids = asyncio.run(many())
    assert len(pids) == 1 and hub.metrics.instance_starts.labels("t", "ps")._value.get() == 1


def test_a_session_that_ends_while_its_instance_starts_leaves_no_process(make_hub, tmp_path: Path) -> None:
    gate = tmp_path / "slow"  # while this file exists, the server takes 1.5 s to start
    slow = {
        "command": "sh",
        "args": ["-c", f"test -e {gate} && sleep 1.5; exec {sys.executable} {TEST_SERVER}"],
        "per_session": True,
        "sandbox": binds(SERVERS_DIR, tmp_path),  # (it must see `gate`)
    }
    hub = make_hub({"t": {"servers": {"ps": slow}}})
    hub.start_tenant("t")  # fast: the catalog is discovered
    gate.touch()
    outcome: list[BaseException | int] = []

    def first_call() -> None:
        try:
            outcome.append(pid(hub, "s:short"))
        except BaseException as exc:  # the assertion below shows it
            outcome.append(exc)

    caller = threading.Thread(target=first_call)
    caller.start()
    assert hub.board.wait_for(lambda: hub.instances("t") != (), 10)  # its instance is starting
    starting = hub.instances("t")[0]
    assert starting.state is ServerState.STARTING
    assert hub.end_session("s:short") == 1
    caller.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], NotRunning), outcome
    assert hub.instances("t") == ()
    assert starting.pid is None or gone(starting.pid)
    assert wait_until(lambda: len(server_pids()) == 1, 10)  # only the shared instance is left


# --------------------------------------------------------------------------- the HTTP facade and REST


@contextlib.asynccontextmanager
async def http_client(url: str, mode: str, headers: dict[str, str] | None = None) -> AsyncIterator[Any]:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    from hub.seams import mcp_http_client as create_mcp_http_client

    async with (
        create_mcp_http_client(headers=headers) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode, cache=None) as client,
    ):
        yield client


async def facade_pid(client: Any) -> int:
    result = await client.call_tool("ps__pid", {})
    assert not result.is_error, result
    return host_pid(result.structured_content)


@pytest.fixture
def served_sessions(tmp_path: Path):
    config = write_config(
        tmp_path, {"t": {"quotas": {"max_sessions_per_server": 2}, "servers": {"ps": per_session()}}}
    )
    hub = start_hub(config, tmp_path)
    assert hub.post("/api/tenants/t/start").body["servers"] == {"ps": "running"}  # discovers the catalog
    yield hub
    assert stop_hub(hub) == 0


def instances_shown(hub: Any) -> list[dict[str, Any]]:
    return hub.get("/api/servers/t/ps").body["instances"]


def test_http_facade_sessions_each_get_a_process_that_ends_with_the_session(served_sessions) -> None:
    hub = served_sessions
    shared = server_process(hub.get("/api/servers/t/ps").body["pid"])

    async def scenario() -> None:
        # 2025-11-25: the SDK's Mcp-Session-Id is the session; leaving the client sends DELETE.
        async with (
            http_client(hub.url + "/tenants/t/mcp", "legacy") as one,
            http_client(hub.url + "/tenants/t/mcp", "legacy") as two,
        ):
            a, b = await facade_pid(one), await facade_pid(two)
            assert len({a, b, shared}) == 3
            assert await facade_pid(one) == a and await facade_pid(two) == b
            shown = instances_shown(hub)
            assert sorted(server_process(i["pid"]) for i in shown) == sorted([a, b])
            assert {i["session_kind"] for i in shown} == {"http"} and all(
                len(i["session"]) == 12 for i in shown
            )
            metrics = hub.get("/metrics").text
            assert 'mcp_hub_session_instances{server="ps",tenant="t"} 2.0' in metrics
            # A third session is past max_sessions_per_server: a tool error that says why.
            async with http_client(hub.url + "/tenants/t/mcp", "legacy") as three:
                refused = await three.call_tool("ps__pid", {})
                assert refused.is_error
                assert "quota_exceeded" in refused.content[0].text
                assert "max_sessions_per_server 2" in refused.content[0].text
        assert gone(a, b)
        assert instances_shown(hub) == []
        assert not process_gone(shared)

    asyncio.run(scenario())


def test_2026_clients_and_rest_use_an_mcp_hub_session_header(served_sessions) -> None:
    hub = served_sessions
    shared = server_process(hub.get("/api/servers/t/ps").body["pid"])

    async def scenario() -> tuple[int, int]:
        url = hub.url + "/tenants/t/mcp"
        async with (
            http_client(url, "2026-07-28", {"Mcp-Hub-Session": "alpha"}) as alpha,
            http_client(url, "2026-07-28", {"Mcp-Hub-Session": "beta"}) as beta,
            http_client(url, "2026-07-28") as anonymous,
        ):
            a, b = await facade_pid(alpha), await facade_pid(beta)
            assert len({a, b, shared}) == 3 and await facade_pid(alpha) == a
            assert await facade_pid(anonymous) == shared  # no session: the shared instance
        return a, b

    a, b = asyncio.run(scenario())
    # A 2026 client has no session end: its instances live until idle_timeout, or an explicit end.
    assert sorted(server_process(i["pid"]) for i in instances_shown(hub)) == sorted([a, b])
    # REST with the same header is the same session.
    call = hub.request("POST", "/api/tools/ps.pid?tenant=t", {}, headers={"Mcp-Hub-Session": "alpha"})
    assert call.status == 200 and host_pid(call.body["structured_content"]) == a
    assert host_pid(hub.post("/api/tools/ps.pid?tenant=t", {}).body["structured_content"]) == shared
    # Past the quota: 429 with Retry-After and a message that says which quota.
    refused = hub.request("POST", "/api/tools/ps.pid?tenant=t", {}, headers={"Mcp-Hub-Session": "gamma"})
    assert refused.status == 429 and refused.headers["Retry-After"]
    assert refused.body["error"]["code"] == "quota_exceeded"
    assert "max_sessions_per_server 2" in refused.body["error"]["message"]
    bad = hub.request("POST", "/api/tools/ps.pid?tenant=t", {}, headers={"Mcp-Hub-Session": "x" * 129})
    assert bad.status == 400 and "Mcp-Hub-Session" in bad.body["error"]["message"]
    ended = hub.request("DELETE", "/api/sessions/alpha")
    assert ended.status == 200 and ended.body == {"session": "alpha", "instances_stopped": 1}
    assert gone(a) and not process_gone(b)
    assert [server_process(i["pid"]) for i in instances_shown(hub)] == [b]


def test_the_stdio_client_is_one_session_and_its_exit_stops_its_instance(tmp_path: Path) -> None:
    config = write_stdio_config(tmp_path, {"t": {"servers": {"ps": per_session()}}}, startup_timeout=20)

    async def scenario() -> int:
        async with facade(config, "t", "2026-07-28") as client:
            first = await facade_pid(client)
            assert await facade_pid(client) == first
            assert len(server_pids()) >= 2  # the shared instance (discovery) and this session's
            return first

    first = asyncio.run(scenario())
    assert gone(first) and wait_until(lambda: not marked_pids(), 10)


# --------------------------------------------------------------------------- WebSocket app connections


def test_each_websocket_app_connection_is_a_session(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        {"acme": {"api_keys": ["acme-key-0123456789"], "servers": {"ps": per_session()}}},
        auth={"admin_keys": ["admin-key-0123456789"]},
        gateway={"plugins_dir": str(make_plugins(tmp_path))},
    )
    hub = start_hub(config, tmp_path)
    try:
        assert hub.post("/api/tenants/acme/start", key="admin-key-0123456789").status == 200

        async def ws_pid(ws: Any, frame_id: int) -> int:
            ws.write_message(
                json.dumps({"type": "tool_call", "id": frame_id, "data": {"tool_name": "ps.pid"}})
            )
            answer = await until(ws, "tool_result", frame_id)
            return host_pid(answer["data"]["structured_content"])

        async def scenario() -> None:
            admin_url = hub.url.replace("http://", "ws://") + "/ws/admin?token=admin-key-0123456789"
            admin = await tornado.websocket.websocket_connect(admin_url)
            one = await connect(hub, "hello", "acme")
            two = await connect(hub, "hello", "acme")
            try:
                a, b = await ws_pid(one, 1), await ws_pid(two, 2)
                assert a != b and await ws_pid(one, 3) == a
                # The admin panel hears each instance start (never the session id, only its hash).
                seen = await until(admin, "instance_status")
                assert seen["data"]["server"] == "ps" and seen["data"]["session_kind"] == "ws"
                await close(admin)
                shown = hub.get("/api/servers/acme/ps", key="admin-key-0123456789").body["instances"]
                assert sorted(server_process(i["pid"]) for i in shown) == sorted([a, b])
                assert {i["session_kind"] for i in shown} == {"ws"}
            finally:
                await close(one)
            assert gone(a) and not process_gone(b)
            assert await ws_pid(two, 4) == b
            await close(two)
            assert gone(b)

        asyncio.run(scenario())
    finally:
        assert stop_hub(hub) == 0
