"""A cluster answers as one hub (issue 21, items 2 and 4): three real replicas (`python -m hub
serve`) on a real Redis; every replica lists every server, with the replica that runs it, and
forwards calls of the servers another replica runs to it over the internal channel.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
import pytest
import tornado.websocket
import yaml
from conftest import (
    cluster_section,
    marked_pids,
    running_haproxy,
    running_redis,
    server,
    server_pids,
    wait_until,
)
from helpers.facade import MODES, http_facade
from helpers.served import ServedHub, start_hub, stop_hub, write_config

from hub import placement

pytestmark = pytest.mark.anyio

HEARTBEAT = 0.5
REPLICAS = ("r1", "r2", "r3")
SERVERS = tuple(f"s{i}" for i in range(6))
RATE = 12  # tenant `limited`'s max_calls_per_minute
# The module's cluster outlives each test, so its servers carry a mark of their own (the per-test
# leak check looks for the default one); the fixture checks them when the cluster stops.
CLUSTER_MARK = f"mcp-hub-cluster-{uuid.uuid4().hex[:12]}"


LAZY_MARK = f"mcp-hub-lazy-{uuid.uuid4().hex[:12]}"  # tenant `lazy`'s servers, which start when called
ON_DEMAND_MARK = f"mcp-hub-on-demand-{uuid.uuid4().hex[:12]}"  # its on_demand one's processes
SUBS_MARK = f"mcp-hub-subs-{uuid.uuid4().hex[:12]}"  # tenant `subs`'s server (resource subscriptions)


def _tenants(replica: str) -> dict[str, Any]:
    servers = {name: server("--asks", "--legacy-only", "--list-changed") for name in SERVERS}
    mark = {"MCP_HUB_TEST_MARK": CLUSTER_MARK}
    limited = {"env": mark, "quotas": {"max_calls_per_minute": RATE}, "servers": {"q": server()}}
    lazy = {
        "env": {"MCP_HUB_TEST_MARK": LAZY_MARK, "REPLICA": replica},
        "servers": {
            "od": server(lifecycle="on_demand", env={"MCP_HUB_TEST_MARK": ON_DEMAND_MARK}),
            "ps": server(per_session=True),
        },
    }
    subs = {"env": {"MCP_HUB_TEST_MARK": SUBS_MARK}, "servers": {"x": server("--extras", protocol="legacy")}}
    return {"acme": {"env": mark, "servers": servers}, "limited": limited, "lazy": lazy, "subs": subs}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServedHub]]:
    """Three replicas of one cluster, every server running somewhere (one cluster for the module:
    a test that changes it puts it back)."""
    hubs: dict[str, ServedHub] = {}
    tmp_path = tmp_path_factory.mktemp("cluster")
    with running_redis(tmp_path) as redis_url:
        yield from _replicas(redis_url, tmp_path, hubs)
    for mark in (CLUSTER_MARK, LAZY_MARK, ON_DEMAND_MARK, SUBS_MARK):
        assert wait_until(lambda: not marked_pids(mark), 5), marked_pids(mark)  # noqa: B023 (used at once)


def _replicas(
    redis_server: str, tmp_path: Path, hubs: dict[str, ServedHub]
) -> Iterator[dict[str, ServedHub]]:
    try:
        for replica in REPLICAS:
            folder = tmp_path / replica
            folder.mkdir()
            section = cluster_section(redis_server, replica, HEARTBEAT)
            config = write_config(
                folder, _tenants(replica), cluster=section, orchestrator={"auto_start": True}
            )
            hubs[replica] = start_hub(config, folder)
        # (replicas that start at once may both start a server until their heartbeats see each other)
        assert wait_until(lambda: _converged(hubs), 60), _states(hubs)
        yield hubs
    finally:
        for hub in hubs.values():
            assert stop_hub(hub) == 0, hub.log()[-3000:]


def _servers(hub: ServedHub) -> dict[str, dict[str, Any]]:
    answer = hub.get("/api/servers?tenant=acme")
    assert answer.status == 200, answer.text
    return {s["server"]: s for s in answer.body["servers"]}


def _settled(hub: ServedHub) -> bool:
    """Every server runs, as this replica lists it, on a replica that lists itself as its runner."""
    listed = _servers(hub)
    return all(s["state"] == "running" and s["replica"] in REPLICAS for s in listed.values())


def _converged(hubs: dict[str, ServedHub]) -> bool:
    """Every replica lists every server running, each on the same replica, and each runs once."""
    if not all(_settled(h) for h in hubs.values()):
        return False
    views = [{n: (s["replica"], s["pid"]) for n, s in _servers(h).items()} for h in hubs.values()]
    return all(v == views[0] for v in views) and len(server_pids(CLUSTER_MARK)) == len(SERVERS) + 1


def _tools(hub: ServedHub) -> list[dict[str, Any]]:
    answer = hub.get("/api/tools?tenant=acme")
    assert answer.status == 200, answer.text
    return list(answer.body["tools"])


def _states(hubs: dict[str, ServedHub]) -> str:
    return json.dumps(
        {r: {n: (s["state"], s["replica"]) for n, s in _servers(h).items()} for r, h in hubs.items()}
    )


def test_every_replica_lists_every_server_once_and_calls_reach_each_through_any(
    cluster: dict[str, ServedHub],
) -> None:
    views = {replica: _servers(hub) for replica, hub in cluster.items()}
    runs = {name: status["replica"] for name, status in views["r1"].items()}
    for view in views.values():  # the same catalog everywhere: the same runner and process per server
        assert {n: (s["replica"], s["pid"]) for n, s in view.items()} == {
            n: (s["replica"], s["pid"]) for n, s in views["r1"].items()
        }
    assert len(set(runs.values())) >= 2, runs  # (spread over the replicas)
    assert (
        len(server_pids(CLUSTER_MARK)) == len(SERVERS) + 1
    )  # each server runs exactly once across the cluster
    tools = {r: sorted(t["name"] for t in _tools(h)) for r, h in cluster.items()}
    assert tools["r1"] == tools["r2"] == tools["r3"], tools
    assert {f"{name}.echo" for name in SERVERS} <= set(tools["r1"])
    for replica, hub in cluster.items():
        for name in SERVERS:
            answer = hub.post(f"/api/tools/{name}.echo/call?tenant=acme", {"text": f"{replica}->{name}"})
            assert answer.status == 200, answer.text
            assert answer.body["structured_content"] == {"text": f"{replica}->{name}"}


def _elsewhere(cluster: dict[str, ServedHub]) -> tuple[ServedHub, str, str]:
    """A replica, and a server another replica runs (and which)."""
    runs = {name: status["replica"] for name, status in _servers(cluster["r1"]).items()}
    for replica, hub in cluster.items():
        for name, runner in runs.items():
            if runner != replica:
                return hub, name, runner
    raise AssertionError(runs)


def _lazy_call(hub: ServedHub, tool: str, session: str | None = None) -> dict[str, Any]:
    """Call `tool` of tenant `lazy` through `hub` (in `session`): its structured content, or its
    environment (`env`)."""
    headers = {"Mcp-Hub-Session": session} if session else None
    answer = hub.request("POST", f"/api/tools/{tool}/call?tenant=lazy", {}, headers=headers)
    assert answer.status == 200, answer.text
    if tool.endswith(".env"):
        return dict(json.loads(answer.body["content"][0]["text"]))
    return dict(answer.body["structured_content"])


def _lazy_tools(hub: ServedHub) -> list[str]:
    return [t["name"] for t in hub.get("/api/tools?tenant=lazy").body["tools"] if t["name"].startswith("od.")]


def test_on_demand_and_per_session_servers_start_on_the_replica_placement_gives_them(
    cluster: dict[str, ServedHub],
) -> None:
    owner = {name: placement.owner(REPLICAS, "lazy", name) for name in ("od", "ps")}
    # An on_demand server called through every replica starts once, on its replica.
    # Started once by hand (asked of another replica: done where it is placed), to learn its tools,
    # then stopped: its catalog stays listed on every replica, and a call through any replica
    # starts it again, there only.
    asked = next(hub for replica, hub in cluster.items() if replica != owner["od"])
    for action in ("start", "stop"):
        done = asked.post(f"/api/servers/lazy/od/{action}")
        assert done.status == 200 and done.body["replica"] == owner["od"], done.text
    assert not server_pids(ON_DEMAND_MARK)
    assert wait_until(lambda: all(_lazy_tools(hub) for hub in cluster.values()), 10)
    assert {_lazy_call(hub, "od.env")["REPLICA"] for hub in cluster.values()} == {owner["od"]}
    assert len(server_pids(ON_DEMAND_MARK)) == 1
    # A per_session server: each session gets its own instance, on the server's replica, whichever
    # replica the session's requests reach; ending the session there stops its instance.
    others = [hub for replica, hub in cluster.items() if replica != owner["ps"]]

    def instance(hub: ServedHub, session: str) -> str:
        assert _lazy_call(hub, "ps.env", session)["REPLICA"] == owner["ps"]
        first, again = (_lazy_call(hub, "ps.pid", session)["pid_namespace"] for _ in range(2))
        assert first == again  # (the session's own instance, both times)
        return str(first)

    namespaces = [instance(hub, f"cluster-session-{number}") for number, hub in enumerate(others)]
    assert len(set(namespaces)) == 2
    ended = others[0].request("DELETE", "/api/sessions/cluster-session-0")
    assert ended.status == 200 and ended.body["instances_stopped"] == 1, ended.text
    assert instance(others[1], "cluster-session-1") == namespaces[1]  # (the other one lives on)
    # As on a lone hub, an ended session's calls are refused (where its instance ran).
    headers = {"Mcp-Hub-Session": "cluster-session-0"}
    refused = others[0].request("POST", "/api/tools/ps.pid/call?tenant=lazy", {}, headers=headers)
    assert refused.status == 409 and "session of this call has ended" in refused.text, refused.text


async def test_a_restart_asked_of_any_replica_is_done_where_the_server_runs_and_heard_on_every_socket(
    cluster: dict[str, ServedHub],
) -> None:
    hub, name, runner = _elsewhere(cluster)
    before = _servers(hub)[name]["pid"]
    ws = await tornado.websocket.websocket_connect(hub.url.replace("http://", "ws://") + "/ws/admin")
    seen: list[dict[str, Any]] = []
    try:
        # Asked of `hub`, the restart is done by `runner` (no second process starts on `hub`).
        restarted = hub.post(f"/api/servers/acme/{name}/restart")
        assert restarted.status == 200 and restarted.body["replica"] == runner, restarted.text
        assert restarted.body["state"] == "running" and restarted.body["pid"] != before, restarted.text
        with anyio.fail_after(30):
            while True:
                raw = await ws.read_message()
                assert raw is not None, "the socket closed"
                message = json.loads(raw)
                if message["type"] == "server_status" and message["data"]["server"] == name:
                    seen.append(message["data"])
                    if message["data"]["state"] == "running" and message["data"]["pid"] != before:
                        break
    finally:
        ws.close()
    # The restart on `runner` is heard on `hub`'s admin socket as it lists it: down, then running.
    assert seen[-1]["replica"] == runner and seen[-1]["tenant"] == "acme", seen
    assert [s["state"] for s in seen[:-1]] and all(s["state"] != "running" for s in seen[:-1]), seen
    assert wait_until(lambda: _converged(cluster), 30), _states(cluster)


@pytest.mark.parametrize("mode", MODES)
async def test_a_facade_session_on_one_replica_gets_progress_logs_and_the_server_s_requests_from_another(
    cluster: dict[str, ServedHub], mode: str
) -> None:
    hub, name, runner = _elsewhere(cluster)
    asked: list[str] = []
    seen: list[tuple[str, Any]] = []

    async def sampling(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked.append(str(params.messages[0].content.text))  # type: ignore[union-attr]
        seen.append(("sampling", None))
        content = types.TextContent(type="text", text="an answer from the client")
        return types.CreateMessageResult(role="assistant", content=content, model="test-model")

    async def elicitation(context: Any, params: Any) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        seen.append(("log", params.data))

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        seen.append(("progress", value))

    async with http_facade(
        hub.url + "/tenants/acme/mcp",
        mode,
        sampling_callback=sampling,
        elicitation_callback=elicitation,
        logging_callback=on_log,
        log_level="debug",
    ) as client:
        result = await client.call_tool(f"{name}__sleep", {"seconds": 0.35}, progress_callback=on_progress)
        assert not result.is_error and {k for k, _ in seen} == {"progress"}, (runner, seen)
        assert len(seen) >= 3 and seen[-1] == ("progress", 0.35), seen  # in order, all of them
        seen.clear()
        result = await client.call_tool(f"{name}__ask_twice", {"prompt": "across replicas?"})
        assert not result.is_error, result
        text = result.content[0].text  # type: ignore[union-attr]
        assert "sampled: an answer from the client" in text and 'elicited: accept {"name": "Ada"}' in text
        assert asked == ["across replicas?"]
        if mode == "legacy":  # (a 2026-07-28 call is parked and resumed: its logs go with the retry)
            assert seen[0] == ("sampling", None) and ("log", "sampled") in seen, seen
        assert (await client.call_tool(f"{name}__log", {"text": "from afar"})).content[0].text == "logged"  # type: ignore[union-attr]
        assert ("log", "from afar") in seen


@pytest.mark.parametrize("mode", MODES)
async def test_a_session_behind_a_round_robin_balancer_works_whichever_replica_each_request_reaches(
    cluster: dict[str, ServedHub], tmp_path: Path, mode: str
) -> None:
    def facade_requests(hub: ServedHub) -> int:
        return hub.log().count(" /tenants/{tenant}/mcp 2")  # (access lines: method, route, status)

    before = {replica: facade_requests(hub) for replica, hub in cluster.items()}
    with running_haproxy(tmp_path, [hub.url for hub in cluster.values()]) as url:
        async with http_facade(url + "/tenants/acme/mcp", mode) as client:
            for round_ in range(2):
                assert len((await client.list_tools()).tools) >= len(SERVERS)
                for name in SERVERS:
                    result = await client.call_tool(f"{name}__echo", {"text": f"{round_}{name}"})
                    assert result.structured_content == {"text": f"{round_}{name}"}
    reached = {replica for replica, hub in cluster.items() if facade_requests(hub) > before[replica]}
    assert reached == set(REPLICAS)  # (round robin: every replica got some of the session's requests)


@pytest.mark.parametrize("mode", MODES)
async def test_a_server_s_requests_reach_a_client_behind_a_round_robin_balancer(
    cluster: dict[str, ServedHub], tmp_path: Path, mode: str
) -> None:
    """A server that asks for sampling and elicitation mid-call, through a balancer that sends
    each request to the next replica: in 2026-07-28 each answer is a retry carrying the
    `requestState` the first replica gave (the call is parked there), and reaches another replica."""
    asked: list[str] = []

    async def sampling(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked.append(str(params.messages[0].content.text))  # type: ignore[union-attr]
        content = types.TextContent(type="text", text="an answer from the client")
        return types.CreateMessageResult(role="assistant", content=content, model="test-model")

    async def elicitation(context: Any, params: Any) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    with running_haproxy(tmp_path, [hub.url for hub in cluster.values()]) as url:
        async with http_facade(
            url + "/tenants/acme/mcp", mode, sampling_callback=sampling, elicitation_callback=elicitation
        ) as client:
            for name in SERVERS[:3]:  # (three calls: their rounds start on different replicas)
                result = await client.call_tool(f"{name}__ask_twice", {"prompt": f"{name}?"})
                assert not result.is_error, result
                text = result.content[0].text  # type: ignore[union-attr]
                assert (
                    "sampled: an answer from the client" in text
                    and 'elicited: accept {"name": "Ada"}' in text
                )
    assert asked == [f"{name}?" for name in SERVERS[:3]]


async def test_list_changed_on_the_replica_that_runs_a_server_reaches_a_session_on_another(
    cluster: dict[str, ServedHub],
) -> None:
    hub, name, runner = _elsewhere(cluster)
    events: list[Any] = []

    async def on_message(message: Any) -> None:
        events.append(message)

    async with http_facade(hub.url + "/tenants/acme/mcp", "legacy", message_handler=on_message) as client:
        assert f"{name}__fresh" not in {t.name for t in (await client.list_tools()).tools}
        await client.call_tool(f"{name}__add_tool", {"name": "fresh"})  # (forwarded: it changes there)
        with anyio.fail_after(10):
            while not any(isinstance(e, types.ToolListChangedNotification) for e in events):
                await anyio.sleep(0.05)
        assert f"{name}__fresh" in {t.name for t in (await client.list_tools()).tools}
        answer = await client.call_tool(f"{name}__fresh", {})
        assert not answer.is_error, answer
        # The server stopped on its replica: gone from the session's list on this one.
        assert cluster[runner].post(f"/api/servers/acme/{name}/stop").status == 200
        events.clear()
        with anyio.fail_after(10):
            while not any(isinstance(e, types.ToolListChangedNotification) for e in events):
                await anyio.sleep(0.05)
        assert not any(t.name.startswith(f"{name}__") for t in (await client.list_tools()).tools)
    assert cluster[runner].post(f"/api/servers/acme/{name}/start").status == 200  # (as it was)
    assert wait_until(lambda: _converged(cluster), 30), _states(cluster)


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")  # (resources/subscribe)
async def test_a_session_subscribed_to_a_resource_of_a_server_another_replica_runs_gets_its_updates(
    cluster: dict[str, ServedHub],
) -> None:
    owner = placement.owner(REPLICAS, "subs", "x")
    hub, runner = next(h for r, h in cluster.items() if r != owner), cluster[owner]

    def listed() -> bool:
        (x,) = hub.get("/api/servers?tenant=subs").body["servers"]
        return bool(x["state"] == "running" and x["replica"] == owner)

    assert wait_until(listed, 30)
    uri = "mcp-hub://x/test://counter"
    updates: list[str] = []
    updated = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(str(message.params.uri))
            updated.set()

    async def subscribed(client: Any) -> str:
        return str((await client.call_tool("x__subscribed", {})).content[0].text)

    async with (
        http_facade(hub.url + "/tenants/subs/mcp", "legacy", message_handler=on_message) as client,
        http_facade(runner.url + "/tenants/subs/mcp", "legacy") as local,
    ):
        await client.subscribe_resource(uri)  # (forwarded: the server runs on `owner`)
        assert await subscribed(local) == '["test://counter"]'
        await local.call_tool("x__bump", {})  # the server announces the update on `owner`
        with anyio.fail_after(10):
            await updated.wait()
        assert updates == [uri]  # on `hub`, to the subscribed session, under the URI it was shown
        # On `owner` the channel is one more subscriber: a session there that subscribes and
        # unsubscribes leaves the server subscribed; the remote session's unsubscribe releases it.
        await local.subscribe_resource(uri)
        await local.unsubscribe_resource(uri)
        assert await subscribed(local) == '["test://counter"]'
        await client.unsubscribe_resource(uri)
        assert await subscribed(local) == "[]"


def test_a_tenant_s_calls_per_minute_hold_across_the_cluster_under_load_on_every_replica(
    cluster: dict[str, ServedHub],
) -> None:
    """Tenant `limited` may make RATE calls a minute: 36 at once, 12 per replica, admit RATE in all
    (counted in Redis), not RATE per replica."""
    import concurrent.futures

    def call(hub: ServedHub, i: int) -> tuple[int, str]:
        answer = hub.post("/api/tools/q.echo/call?tenant=limited", {"text": str(i)})
        return answer.status, answer.text

    hubs = [hub for hub in cluster.values() for _ in range(12)]
    with concurrent.futures.ThreadPoolExecutor(len(hubs)) as pool:
        outcomes = list(pool.map(call, hubs, range(len(hubs))))
    statuses = [status for status, _ in outcomes]
    assert statuses.count(200) == RATE, outcomes
    assert statuses.count(429) == len(hubs) - RATE
    assert all("across the cluster" in text for status, text in outcomes if status == 429)
    health = [hub.get("/health").body["components"]["cluster"]["quotas"] for hub in cluster.values()]
    assert health == ["shared"] * 3
    metrics = cluster["r1"].get("/metrics").text
    assert 'mcp_hub_cluster_quotas{counted_by="shared"} 1.0' in metrics


def test_a_tenant_stopped_or_started_and_a_reload_asked_of_one_replica_reach_every_replica(
    cluster: dict[str, ServedHub],
) -> None:
    def states() -> set[str]:
        return {s["state"] for hub in cluster.values() for s in _servers(hub).values()}

    assert cluster["r2"].post("/api/tenants/acme/stop").status == 200
    assert wait_until(lambda: states() == {"stopped"} and not server_pids(CLUSTER_MARK)[len(["q"]) :], 20)
    assert cluster["r3"].post("/api/tenants/acme/start?wait=false").status == 200
    assert wait_until(lambda: _converged(cluster), 30), _states(cluster)
    # A reload asked of r1: every replica reads its own copy of the file (here: each changed alike).
    files = [hub.stderr_path.parent / "hub.yaml" for hub in cluster.values()]
    before = [path.read_text() for path in files]
    for path in files:
        data = yaml.safe_load(path.read_text())
        data["tenants"]["acme"]["servers"]["extra"] = server()
        path.write_text(yaml.safe_dump(data))
    try:
        assert cluster["r1"].post("/api/admin/reload").status == 200

        def extra_runs_once_listed_everywhere() -> bool:
            views = [_servers(hub).get("extra") for hub in cluster.values()]
            runners = {v["replica"] for v in views if v is not None and v["state"] == "running"}
            return all(views) and len(runners) == 1 and len(server_pids(CLUSTER_MARK)) == len(SERVERS) + 2

        assert wait_until(extra_runs_once_listed_everywhere, 30), _states(cluster)
    finally:
        for path, text in zip(files, before, strict=True):
            path.write_text(text)
        assert cluster["r2"].post("/api/admin/reload").status == 200
    assert wait_until(lambda: all("extra" not in _servers(hub) for hub in cluster.values()), 30)
    assert wait_until(lambda: _converged(cluster), 30), _states(cluster)
