"""Servers on demand (`lifecycle: on_demand`): started by their first call, listed from a catalog
cache while stopped, stopped after `idle_timeout` without a call. Real test servers as subprocesses."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
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
from helpers.served import start_hub, stop_hub, write_config

from actors.catalog_cache import cache_path
from actors.models import CatalogChanged, ServerState, ServerStateChanged, StoppedReason
from hub.errors import NotFound, QuotaExceeded, UpstreamError
from hub.runtime import Hub


def lazy(*flags: str, **settings: object) -> dict[str, object]:
    """A test server that starts on demand."""
    return server(*flags, lifecycle="on_demand", **settings)


def starts_of(hub: Hub, tenant: str, name: str) -> list[int]:
    """The distinct pids the server was started with, as told by its status events."""
    pids: list[int] = []
    for e in list(hub.board.events):
        ours = isinstance(e, ServerStateChanged) and (e.status.tenant, e.status.server) == (tenant, name)
        if ours and e.status.pid is not None and e.status.pid not in pids:
            pids.append(e.status.pid)
    return pids


def stopped_for(hub: Hub, tenant: str, name: str, reason: StoppedReason, timeout: float) -> bool:
    """Wait for the server's `stopped` status with `reason`, as told on the board."""

    def done() -> bool:
        status = hub.board.status(tenant, name)
        return status is not None and status.state is ServerState.STOPPED and status.stopped_reason is reason

    return hub.board.wait_for(done, timeout)


def pid_of(hub: Hub, tenant: str, tool: str) -> int:
    return host_pid(hub.call_tool(tenant, tool, {}).structured_content)


def test_on_demand_server_is_not_started_with_its_tenant_nor_by_auto_start(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"eager": server(), "lazy": lazy()}}}, orchestrator={"auto_start": True})
    assert hub.board.wait_for(
        lambda: getattr(hub.board.status("t", "eager"), "state", None) is ServerState.RUNNING, 30
    )
    assert hub.start_tenant("t") == {"eager": "running", "lazy": "on_demand"}
    status = hub.server("t", "lazy")
    assert (status.state, status.lifecycle, status.stopped_reason, status.catalog, status.pid) == (
        ServerState.STOPPED,
        "on_demand",
        StoppedReason.NEVER_USED,
        None,
        None,
    )
    assert status.to_json()["stopped_reason"] == "never_used"
    assert hub.server("t", "eager").to_json() | {"pid": None, "started_at": None} == {
        **hub.server("t", "eager").to_json(),
        "pid": None,
        "started_at": None,
        "lifecycle": "always",
        "catalog": "live",
        "stopped_reason": None,
    }
    # Never run and no cache: its tools are unknown until it has run once.
    assert not [t for t in hub.tools("t") if t.server == "lazy"]
    with pytest.raises(NotFound):
        hub.call_tool("t", "lazy.echo", {"text": "x"})
    assert len(server_pids()) == 1  # only the eager server's process


def test_cached_catalog_is_listed_while_stopped_even_by_a_new_hub(tmp_path: Path) -> None:
    tenants = {"t": {"servers": {"lazy": lazy()}}}
    with Hub(config_of(tenants), data_dir=tmp_path) as first:
        assert first.start_server("t", "lazy").state is ServerState.RUNNING  # by hand: fills the cache
        assert first.server("t", "lazy").catalog == "live"
        live = {t.id for t in first.tools("t")}
        assert {"lazy.echo", "lazy.pid"} <= live
        stopped = first.stop_server("t", "lazy")
        assert (stopped.state, stopped.stopped_reason, stopped.catalog) == (
            ServerState.STOPPED,
            StoppedReason.STOPPED,
            "cached",
        )
        assert {t.id for t in first.tools("t")} == live  # still listed, from the cache
    cache = json.loads(cache_path(tmp_path / "catalogs", "t", "lazy").read_text())
    assert {t["name"] for t in cache["tools"]} >= {"echo", "pid"}

    with Hub(config_of(tenants), data_dir=tmp_path) as second:
        # Listed as soon as the hub has started.
        assert {t.id for t in second.tools("t")} == live
        status = second.server("t", "lazy")
        assert (status.state, status.stopped_reason, status.tools) == (
            ServerState.STOPPED,
            StoppedReason.NEVER_USED,
            len(live),
        )
        assert second.servers("t")[0].catalog == "cached"
        assert [r["uri"] for r in second.resources("t")] == ["test://info"]
        assert [p["name"] for p in second.prompts("t")] == ["lazy.greet"]
        assert not marked_pids()
        # A resource read starts it, and is answered.
        contents = second.read_resource("t", "test://info")["contents"]
        assert contents and contents[0]["uri"] == "test://info"
        assert second.server("t", "lazy").catalog == "live"
        second.stop_server("t", "lazy")
        # So does a prompt.
        prompt = second.get_prompt("t", "lazy.greet", {"name": "Ada"})
        assert "Ada" in json.dumps(prompt)
        assert len(starts_of(second, "t", "lazy")) == 2

    # A changed command does not reuse the old catalog.
    changed = {"t": {"servers": {"lazy": lazy("--tools", "2")}}}
    with Hub(config_of(changed), data_dir=tmp_path) as third:
        assert third.server("t", "lazy").catalog is None
        assert third.tools("t") == ()


def test_concurrent_first_calls_start_one_process(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"lazy": lazy()}}})
    barrier = threading.Barrier(20)
    answers: list[object] = []

    def first_call() -> None:
        barrier.wait(10)
        try:
            answers.append(pid_of(hub, "t", "lazy.pid"))
        except Exception as exc:  # the assertion below shows it
            answers.append(exc)

    # The catalog is unknown before the first run: one explicit start and stop fills the cache.
    hub.start_server("t", "lazy")
    hub.stop_server("t", "lazy")
    before = len(starts_of(hub, "t", "lazy"))
    callers = [threading.Thread(target=first_call) for _ in range(20)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(60)
    assert len(answers) == 20 and len(set(answers)) == 1, answers
    status = hub.server("t", "lazy")
    assert status.state is ServerState.RUNNING and server_process(status.pid) == answers[0]
    assert status.restarts == 0
    assert len(starts_of(hub, "t", "lazy")) == before + 1
    assert hub.metrics.on_demand_starts.labels("t", "lazy")._value.get() == 1

    # The same from an event loop (REST, WebSocket, the MCP facade): the waiting never blocks it.
    hub.stop_server("t", "lazy")

    async def many() -> list[object]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.ensure_future(tick())
        try:
            calls = [hub.call_tool_async("t", "lazy.pid", {}) for _ in range(20)]
            results = await asyncio.gather(*calls, return_exceptions=True)
        finally:
            ticker.cancel()
        assert ticks > 10  # the loop kept running while the server started
        return [r if isinstance(r, BaseException) else host_pid(r.structured_content) for r in results]

    pids = asyncio.run(many())
    assert len(set(pids)) == 1 and pids[0] != answers[0], pids
    assert hub.metrics.on_demand_starts.labels("t", "lazy")._value.get() == 2
    assert len(starts_of(hub, "t", "lazy")) == before + 2


def test_idle_timeout_stops_it_and_the_next_call_starts_it_again(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"lazy": lazy(idle_timeout=0.6)}}})
    hub.start_server("t", "lazy")  # fills the cache; no call follows, so it goes idle
    assert stopped_for(hub, "t", "lazy", StoppedReason.IDLE, 10)
    began = time.monotonic()
    first = pid_of(hub, "t", "lazy.pid")
    cold = time.monotonic() - began
    # A call in flight for longer than idle_timeout is never cut short.
    assert hub.call_tool("t", "lazy.sleep", {"seconds": 1.2}).content[0]["text"] == "slept"
    assert server_process(hub.server("t", "lazy").pid) == first
    idle_from = time.monotonic()
    assert stopped_for(hub, "t", "lazy", StoppedReason.IDLE, 10)
    assert time.monotonic() - idle_from >= 0.5
    assert wait_until(lambda: process_gone(first), 5)
    status = hub.server("t", "lazy")
    assert (status.state, status.catalog, status.pid) == (ServerState.STOPPED, "cached", None)
    assert "lazy.pid" in {t.id for t in hub.tools("t")}
    second = pid_of(hub, "t", "lazy.pid")
    assert second != first and hub.server("t", "lazy").state is ServerState.RUNNING
    assert cold < 10
    # Its offer never changed: one catalog event (the first discovery), so MCP clients are not
    # told `list_changed` at every idle stop and start.
    changes = [e for e in hub.board.events if isinstance(e, CatalogChanged) and e.catalog.server == "lazy"]
    assert len(changes) == 1


def test_a_server_whose_command_fails_answers_the_first_call_with_the_reason(make_hub, tmp_path) -> None:
    broken = tmp_path / "broken"
    command = {
        "command": "sh",
        "args": ["-c", f"test -e {broken} && exit 4; exec {sys.executable} {TEST_SERVER}"],
        "lifecycle": "on_demand",
        "sandbox": binds(SERVERS_DIR, tmp_path),  # (it must see `broken`)
    }
    hub = make_hub({"t": {"servers": {"lazy": command}}}, orchestrator={"max_retries": 0})
    hub.start_server("t", "lazy")
    hub.stop_server("t", "lazy")
    broken.touch()  # the command now fails: its catalog is still listed from the cache
    began = time.monotonic()
    reason = r"server 'lazy' of tenant 't' failed to start: process \d+ exited with code 4$"
    with pytest.raises(UpstreamError, match=reason):
        hub.call_tool("t", "lazy.echo", {"text": "x"})
    assert time.monotonic() - began < 5
    status = hub.server("t", "lazy")
    assert (status.state, status.stopped_reason) == (ServerState.FAILED, StoppedReason.CRASHED)
    broken.unlink()  # fixed: the next call starts it again
    assert hub.call_tool("t", "lazy.echo", {"text": "x"}).structured_content == {"text": "x"}


def test_max_servers_applies_to_starts_on_demand(make_hub) -> None:
    hub = make_hub({"t": {"quotas": {"max_servers": 1}, "servers": {"eager": server(), "lazy": lazy()}}})
    hub.start_server("t", "lazy")
    hub.stop_server("t", "lazy")
    hub.start_tenant("t")
    with pytest.raises(QuotaExceeded, match="max_servers 1"):
        hub.call_tool("t", "lazy.echo", {"text": "x"})
    hub.stop_server("t", "eager")
    assert hub.call_tool("t", "lazy.echo", {"text": "x"}).structured_content == {"text": "x"}


def test_a_corrupt_cache_file_is_ignored_with_a_log_line(tmp_path: Path, caplog) -> None:
    path = cache_path(tmp_path / "catalogs", "t", "lazy")
    path.parent.mkdir(parents=True)
    path.write_text('{"format": 1, "tools": [tru')
    caplog.set_level(logging.WARNING, logger="actors.catalog_cache")
    with Hub(config_of({"t": {"servers": {"lazy": lazy()}}}), data_dir=tmp_path) as hub:
        assert "is unreadable, ignored" in caplog.text
        assert hub.server("t", "lazy").catalog is None and hub.tools("t") == ()
        hub.start_server("t", "lazy")  # a live discovery replaces it
        assert {"echo", "pid"} <= {t["name"] for t in json.loads(path.read_text())["tools"]}


def test_reload_switches_lifecycle(make_hub, tmp_path: Path) -> None:
    hub = make_hub({"t": {"servers": {"s": server()}}})
    hub.start_tenant("t")
    eager = pid_of(hub, "t", "s.pid")
    outcome = hub.reload(config_of({"t": {"servers": {"s": lazy()}}}))
    assert outcome["servers"]["t"] == {"s": "changed"}  # replaced; its next call starts it
    assert wait_until(lambda: process_gone(eager), 5)
    status = hub.server("t", "s")
    assert (status.state, status.lifecycle, status.stopped_reason) == (
        ServerState.STOPPED,
        "on_demand",
        StoppedReason.NEVER_USED,
    )
    assert "s.pid" in {t.id for t in hub.tools("t")}  # from the cache its `always` run wrote
    assert hub.servers("t")[0].lifecycle == "on_demand"
    lazy_pid = pid_of(hub, "t", "s.pid")
    assert lazy_pid != eager
    outcome = hub.reload(config_of({"t": {"servers": {"s": server()}}}))
    assert outcome["servers"]["t"] == {"s": "restarted"}
    assert hub.wait_settled([hub.server("t", "s")], 30)
    assert hub.server("t", "s").lifecycle == "always" and pid_of(hub, "t", "s.pid") != lazy_pid


def test_rest_shows_lifecycle_catalog_and_stopped_reason(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"t": {"servers": {"eager": server(), "lazy": lazy()}}})
    hub = start_hub(config, tmp_path)
    try:

        def servers() -> dict[str, dict[str, object]]:
            return {s["server"]: s for s in hub.get("/api/servers").body["servers"]}

        assert hub.post("/api/tenants/t/start").body["servers"] == {"eager": "running", "lazy": "on_demand"}
        shown = servers()
        assert {k: shown["eager"][k] for k in ("lifecycle", "catalog", "stopped_reason")} == {
            "lifecycle": "always",
            "catalog": "live",
            "stopped_reason": None,
        }
        assert {k: shown["lazy"][k] for k in ("state", "lifecycle", "catalog", "stopped_reason")} == {
            "state": "stopped",
            "lifecycle": "on_demand",
            "catalog": None,
            "stopped_reason": "never_used",
        }
        assert hub.post("/api/servers/t/lazy/start").body["state"] == "running"
        stopped = hub.post("/api/servers/t/lazy/stop").body
        assert (stopped["state"], stopped["catalog"], stopped["stopped_reason"]) == (
            "stopped",
            "cached",
            "stopped",
        )
        assert "lazy.echo" in {t["name"] for t in hub.get("/api/tools").body["tools"]}
        answer = hub.post("/api/tools/lazy.echo?tenant=t", {"text": "hi"})
        assert answer.status == 200 and answer.body["structured_content"] == {"text": "hi"}
        assert (servers()["lazy"]["state"], servers()["lazy"]["catalog"]) == ("running", "live")
        metrics = hub.get("/metrics").text
        assert 'mcp_hub_on_demand_servers{state="running",stopped_reason="",tenant="t"} 1.0' in metrics
        assert 'mcp_hub_on_demand_starts_total{server="lazy",tenant="t"} 1.0' in metrics
    finally:
        stop_hub(hub)


def test_a_tool_of_a_server_with_no_catalog_yet_says_how_to_start_it(tmp_path: Path) -> None:
    """An on_demand server that never ran lists nothing: a call of one of its tools is a 404 that
    says so and how to fill its catalog; another tenant learns nothing from the same name."""
    acme, beta = "acme-key-0123456789", "beta-key-0123456789"
    config = write_config(
        tmp_path,
        {
            "acme": {"api_keys": [acme], "servers": {"lazy": lazy(), "eager": server()}},
            "beta": {"api_keys": [beta], "servers": {"other": server()}},
        },
    )
    hub = start_hub(config, tmp_path)
    try:
        answer = hub.post("/api/tools/lazy.echo", {"text": "hi"}, key=acme)
        assert answer.status == 404 and answer.body["error"]["code"] == "not_found", answer.text
        assert answer.body["error"]["message"] == (
            "no tool 'lazy.echo' in tenant 'acme': server 'lazy' has no catalog yet (an on_demand "
            "server's tools are known once it has run): start it once with POST /api/servers/acme/lazy/start"
        )
        stopped = hub.post("/api/tools/eager.echo", {"text": "hi"}, key=acme).body["error"]["message"]
        assert stopped.endswith(
            "server 'eager' is stopped, so its tools are not listed: start it with "
            "POST /api/servers/acme/eager/start"
        )
        theirs = hub.post("/api/tools/lazy.echo", {"text": "hi"}, key=beta)
        assert (
            theirs.status == 404 and theirs.body["error"]["message"] == "no tool 'lazy.echo' in tenant 'beta'"
        )
        assert hub.post("/api/servers/acme/lazy/start", key=acme).body["state"] == "running"
        assert hub.post("/api/tools/lazy.echo", {"text": "hi"}, key=acme).body["structured_content"] == {
            "text": "hi"
        }
    finally:
        assert stop_hub(hub) == 0


def test_cache_file_is_one_json_file_per_server_written_atomically(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"lazy": lazy(), "eager": server()}}})
    hub.start_tenant("t")
    hub.start_server("t", "lazy")
    folder = hub.cache_dir / "t"
    assert sorted(p.name for p in folder.iterdir()) == ["eager.json", "lazy.json"]  # no temp file left
    data = json.loads((folder / "lazy.json").read_text())
    assert (data["format"], data["tenant"], data["server"]) == (1, "t", "lazy")
    assert len(data["spec"]) == 64 and yaml.safe_dump(data)  # plain JSON data
