"""The actor runtime driving real MCP servers (subprocesses), through the Python API of `hub.runtime`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import (
    NODE_MODULES,
    ROOT,
    SERVERS_DIR,
    TEST_SERVER,
    binds,
    config_of,
    host_pid,
    marked_pids,
    node_package,
    process_gone,
    server,
    server_process,
    wait_until,
)
from helpers.processes import hub_in_a_process, sigkill

from actors.models import CatalogChanged, ServerCrashed, ServerState, ServerStateChanged
from actors.upstream.stdio import BASE_ENV_KEYS
from hub.errors import BadRequest, CallTimeout, NotFound, QuotaExceeded, ShuttingDown, UpstreamError
from hub.runtime import Hub


def states_of(hub: Hub, tenant: str, name: str) -> list[str]:
    """The sequence of states the server went through, as told by events (transitions only)."""
    states: list[str] = []
    for e in list(hub.board.events):
        is_ours = isinstance(e, ServerStateChanged) and (e.status.tenant, e.status.server) == (tenant, name)
        if is_ours and (not states or states[-1] != e.status.state.value):
            states.append(e.status.state.value)
    return states


def state_when_tools_went(hub: Hub, tenant: str, name: str) -> str | None:
    """The server's state as last told before its tools were first withdrawn (None: never were)."""
    state = None
    for e in list(hub.board.events):
        if isinstance(e, ServerStateChanged) and (e.status.tenant, e.status.server) == (tenant, name):
            state = e.status.state.value
        elif isinstance(e, CatalogChanged) and (e.catalog.tenant, e.catalog.server) == (tenant, name):
            withdrawn = not e.catalog.tools
            if withdrawn and state is not None:
                return state
    return None


def test_lifecycle_states_and_a_call(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"echo": server()}}})
    assert hub.server("t", "echo").state is ServerState.STOPPED
    assert hub.start_tenant("t") == {"echo": "running"}
    status = hub.server("t", "echo")
    assert status.state is ServerState.RUNNING and status.pid and status.started_at and status.restarts == 0
    assert os.path.exists(f"/proc/{status.pid}")
    assert "t.echo" not in [t.id for t in hub.tools()]
    assert {"echo.echo", "echo.pid", "echo.sleep", "echo.add"} <= {t.id for t in hub.tools("t")}
    result = hub.call_tool("t", "echo.echo", {"text": "hello"})
    assert (result.is_error, result.structured_content) == (False, {"text": "hello"})
    assert result.content[0]["text"] == "hello"
    assert hub.call_tool("t", "echo.fail", {}).is_error
    hub.stop_server("t", "echo")
    assert hub.server("t", "echo").state is ServerState.STOPPED
    assert wait_until(lambda: process_gone(status.pid), 5)
    assert hub.board.wait_for(lambda: states_of(hub, "t", "echo") == ["starting", "running", "stopped"], 5)
    assert hub.tools("t") == ()
    # Its tools went once it no longer ran: a call meanwhile is "not running" (409), not unknown (404).
    assert state_when_tools_went(hub, "t", "echo") == "stopped"


def test_restart_gives_a_new_process(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"echo": server()}}})
    hub.start_tenant("t")
    before = host_pid(hub.call_tool("t", "echo.pid", {}).structured_content)
    hub.restart_server("t", "echo")
    after = host_pid(hub.call_tool("t", "echo.pid", {}).structured_content)
    assert before != after and server_process(hub.server("t", "echo").pid) == after


def test_crash_mid_call_fails_the_call_at_once_and_the_server_comes_back(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"crashy": server("--crash-after", "1"), "other": server()}}})
    hub.start_tenant("t")
    assert hub.call_tool("t", "crashy.echo", {"text": "first"}).structured_content == {"text": "first"}
    began = time.monotonic()
    with pytest.raises(UpstreamError, match=r"crashed during the call: process \d+ exited with code 3"):
        hub.call_tool("t", "crashy.echo", {"text": "second"})
    assert time.monotonic() - began < 1.0
    # Other servers never noticed.
    assert hub.call_tool("t", "other.echo", {"text": "fine"}).structured_content == {"text": "fine"}
    assert hub.board.wait_for(lambda: "running" in states_of(hub, "t", "crashy")[2:], 20)
    assert states_of(hub, "t", "crashy")[:5] == ["starting", "running", "backoff", "starting", "running"]
    assert hub.server("t", "crashy").restarts == 1
    assert any(isinstance(e, ServerCrashed) and e.server == "crashy" for e in hub.board.events)
    assert state_when_tools_went(hub, "t", "crashy") == "backoff"  # (never withdrawn while "running")
    assert hub.call_tool("t", "crashy.echo", {"text": "again"}).structured_content == {"text": "again"}


def test_server_that_keeps_dying_backs_off_then_fails(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"dies": server("--exit-at-start")}}}, orchestrator={"max_retries": 2})
    assert hub.start_tenant("t") == {"dies": "failed"}
    assert states_of(hub, "t", "dies") == ["starting", "backoff", "starting", "backoff", "starting", "failed"]
    status = hub.server("t", "dies")
    # `failed` after max_retries, still retried (restart: always): the third restart is due then.
    assert status.restarts == 3 and status.retry_at is not None and "exited with code 4" in status.last_error
    assert "its last stderr lines: [testserver" in status.last_error  # why, from the server itself
    assert status.last_error.endswith("exit-at-start: exiting with code 4")
    log = (hub.log_dir / "t" / "dies.log").read_text()
    assert "exit-at-start" in log or "exiting" in log.lower()


def test_backoff_grows_exponentially(make_hub) -> None:
    hub = make_hub(
        {"t": {"servers": {"dies": server("--exit-at-start")}}},
        orchestrator={"max_retries": 3, "backoff_initial": 0.2, "backoff_max": 0.6},
    )
    stamps: list[tuple[str, float]] = []

    def record(event: object) -> None:
        if isinstance(event, ServerStateChanged) and (not stamps or stamps[-1][0] != event.status.state):
            stamps.append((event.status.state.value, time.monotonic()))

    hub.board.add_listener(record)
    hub.start_tenant("t")
    backoffs = [t for s, t in stamps if s == "backoff"]
    starts = [t for s, t in stamps if s == "starting"][1:]
    waits = [round(start - backoff, 1) for backoff, start in zip(backoffs, starts, strict=True)]
    assert waits[0] >= 0.2 and waits[1] >= 0.4 and 0.6 <= waits[2] < 1.0, waits


def test_missing_command_fails_clearly(make_hub) -> None:
    hub = make_hub(
        {"t": {"servers": {"ghost": {"command": "/nonexistent/mcp-server"}}}}, orchestrator={"max_retries": 0}
    )
    assert hub.start_tenant("t") == {"ghost": "failed"}
    assert "command not found: /nonexistent/mcp-server" in hub.server("t", "ghost").last_error


def test_command_not_executable_or_bad_cwd_fails_clearly(make_hub, tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text("print('never runs')\n")  # not executable
    hub = make_hub(
        {
            "t": {
                "servers": {
                    "noexec": {"command": str(script)},
                    "nocwd": {"command": "python", "args": [TEST_SERVER], "cwd": str(tmp_path / "gone")},
                }
            }
        },
        orchestrator={"max_retries": 0},
    )
    assert hub.start_tenant("t") == {"noexec": "failed", "nocwd": "failed"}
    assert "Permission denied" in hub.server("t", "noexec").last_error
    assert str(tmp_path / "gone") in hub.server("t", "nocwd").last_error  # (named as it always was)


def test_children_get_their_own_session_and_no_watcher_thread(make_hub) -> None:
    hub = make_hub({"t": {"servers": {f"s{i}": server() for i in range(3)}}})
    threads = threading.active_count()  # actor and loop threads exist before any server starts
    assert hub.start_tenant("t") == {"s0": "running", "s1": "running", "s2": "running"}
    pids = [s.pid for s in hub.servers("t")]
    for pid in pids:
        assert os.getpgid(pid) == pid and os.getsid(pid) == pid  # group and session of its own
    assert threading.active_count() == threads, [t.name for t in threading.enumerate()]
    os.kill(pids[0], signal.SIGKILL)  # its exit is seen from the loop, through a pidfd
    assert hub.board.wait_for(
        lambda: any(
            isinstance(e, ServerCrashed)
            and e.server == "s0"
            and f"process {pids[0]} exited with code -9" in e.reason
            for e in hub.board.events
        ),
        10,
    )


def test_junk_on_stdout_is_skipped_and_logged(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"junk": server("--junk-stdout")}}})
    assert hub.start_tenant("t") == {"junk": "running"}
    for i in range(5):
        assert hub.call_tool("t", "junk.echo", {"text": str(i)}).structured_content == {"text": str(i)}
    assert "not JSON-RPC" in (hub.log_dir / "t" / "junk.log").read_text()


def test_stderr_flood_goes_to_a_capped_log_and_hurts_nobody(make_hub) -> None:
    cap = 64 * 1024
    hub = make_hub(
        {"t": {"servers": {"flood": server("--flood-stderr"), "calm": server()}}},
        orchestrator={"log_max_bytes": cap},
    )
    hub.start_tenant("t")
    log = hub.log_dir / "t" / "flood.log"
    assert wait_until(lambda: log.with_name("flood.log.1").exists(), 10), "the log never rotated"
    for _ in range(20):
        assert hub.call_tool("t", "calm.echo", {"text": "x"}).structured_content == {"text": "x"}
        assert hub.call_tool("t", "flood.echo", {"text": "y"}).structured_content == {"text": "y"}
    assert log.stat().st_size <= cap and log.with_name("flood.log.1").stat().st_size <= cap


def test_server_hanging_at_initialize_times_out_and_others_work(make_hub) -> None:
    hub = make_hub(
        {"t": {"servers": {"hang": server("--hang-init"), "ok": server()}}},
        orchestrator={"startup_timeout": 3, "max_retries": 1},
    )
    outcome = hub.start_tenant("t")
    assert outcome == {"hang": "failed", "ok": "running"}
    assert "did not start within 3 s" in hub.server("t", "hang").last_error
    assert hub.call_tool("t", "ok.echo", {"text": "alive"}).structured_content == {"text": "alive"}


def test_call_timeout_is_a_timeout_error(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"slow": server(call_timeout=0.5)}}})
    hub.start_tenant("t")
    began = time.monotonic()
    with pytest.raises(CallTimeout, match=r"timed out after 0\.5 s"):
        hub.call_tool("t", "slow.sleep", {"seconds": 5})
    assert time.monotonic() - began < 2
    assert hub.call_tool("t", "slow.echo", {"text": "still ok"}).structured_content == {"text": "still ok"}


def test_unknown_and_other_tenants_tools_are_the_same_not_found(make_hub) -> None:
    hub = make_hub({"a": {"servers": {"sa": server()}}, "b": {"servers": {"sb": server()}}})
    hub.start_tenant("a")
    hub.start_tenant("b")
    with pytest.raises(NotFound) as other:
        hub.call_tool("a", "sb.echo", {"text": "x"})
    with pytest.raises(NotFound) as unknown:
        hub.call_tool("a", "nope.echo", {"text": "x"})
    assert str(other.value).replace("sb", "X") == str(unknown.value).replace("nope", "X")
    with pytest.raises(NotFound):
        hub.tools("c")


def test_tool_filter_allow_and_deny(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"f": server(tools={"allow": ["e*", "s*", "a*"], "deny": ["sleep"]})}}})
    hub.start_tenant("t")
    assert sorted(t.name for t in hub.tools("t")) == ["add", "echo", "env"]
    with pytest.raises(NotFound):
        hub.call_tool("t", "f.sleep", {"seconds": 0})


# --------------------------------------------------------------------------- quotas


def test_max_servers(make_hub) -> None:
    hub = make_hub({"t": {"quotas": {"max_servers": 1}, "servers": {"one": server(), "two": server()}}})
    outcome = hub.start_tenant("t")
    assert outcome["one"] == "running"
    assert outcome["two"].startswith("quota_exceeded: tenant 't' already runs 1 servers (max_servers 1)")
    with pytest.raises(QuotaExceeded) as caught:
        hub.start_server("t", "two")
    assert caught.value.status == 429 and caught.value.retry_after > 0


def test_max_concurrent_calls(make_hub) -> None:
    hub = make_hub({"t": {"quotas": {"max_concurrent_calls": 1}, "servers": {"s": server()}}})
    hub.start_tenant("t")
    started = threading.Event()
    hub.board.add_listener(lambda e: None)
    slow = threading.Thread(target=lambda: (started.set(), hub.call_tool("t", "s.sleep", {"seconds": 1.5})))
    slow.start()
    started.wait(5)
    assert wait_until(lambda: hub.tenant("t").calls_in_flight == 1, 5)
    with pytest.raises(QuotaExceeded, match="max_concurrent_calls 1") as caught:
        hub.call_tool("t", "s.echo", {"text": "x"})
    assert caught.value.retry_after == 1.0
    slow.join(10)
    assert hub.call_tool("t", "s.echo", {"text": "x"}).structured_content == {"text": "x"}


def test_max_calls_per_minute(make_hub) -> None:
    hub = make_hub(
        {
            "t": {"quotas": {"max_calls_per_minute": 3}, "servers": {"s": server()}},
            "u": {"servers": {"s": server()}},
        }
    )
    hub.start_tenant("t")
    hub.start_tenant("u")
    for _ in range(3):
        hub.call_tool("t", "s.echo", {"text": "x"})
    with pytest.raises(QuotaExceeded, match="max_calls_per_minute 3") as caught:
        hub.call_tool("t", "s.echo", {"text": "x"})
    assert 50 < caught.value.retry_after <= 60
    # Another tenant is not limited by it.
    for _ in range(5):
        hub.call_tool("u", "s.echo", {"text": "x"})
    info = hub.tenant("t").to_json()
    assert info["quotas"]["max_calls_per_minute"] == {"limit": 3, "used": 3}


def test_max_tools_leaves_extra_tools_out(make_hub) -> None:
    hub = make_hub({"t": {"quotas": {"max_tools": 8}, "servers": {"s": server("--tools", "10")}}})
    hub.start_tenant("t")
    assert len(hub.tools("t")) == 8
    info = hub.tenant("t")
    assert info.tools == 8 and info.hidden_tools == hub.server("t", "s").tools - 8 > 0


# --------------------------------------------------------------------------- isolation


def test_child_environment_is_minimal_and_per_tenant(make_hub, monkeypatch) -> None:
    monkeypatch.setenv("HUB_OWN_SECRET", "hub-secret-value")
    hub = make_hub(
        {
            "acme": {"env": {"TOKEN": "acme-secret"}, "servers": {"s": server(env={"ONLY_S": "s-value"})}},
            "beta": {"env": {"TOKEN": "beta-secret"}, "servers": {"s": server()}},
        }
    )
    hub.start_tenant("acme")
    hub.start_tenant("beta")
    acme = json.loads(hub.call_tool("acme", "s.env", {}).content[0]["text"])
    beta = json.loads(hub.call_tool("beta", "s.env", {}).content[0]["text"])
    assert acme["TOKEN"] == "acme-secret" and acme["ONLY_S"] == "s-value"
    assert beta["TOKEN"] == "beta-secret" and "ONLY_S" not in beta
    assert "acme-secret" not in json.dumps(beta) and "beta-secret" not in json.dumps(acme)
    assert "HUB_OWN_SECRET" not in acme and "HUB_OWN_SECRET" not in beta
    assert set(beta) <= {*BASE_ENV_KEYS, "TOKEN", "MCP_HUB_TEST_MARK", "PWD"}  # (bwrap sets PWD)


# --------------------------------------------------------------------------- catalog


@pytest.mark.parametrize("protocol", ["legacy", "2026-07-28"])
def test_list_changed_refreshes_the_catalog(make_hub, protocol: str) -> None:
    hub = make_hub({"t": {"servers": {"dyn": server("--list-changed", protocol=protocol)}}})
    hub.start_tenant("t")
    assert "dyn.fresh" not in {t.id for t in hub.tools("t")}
    hub.call_tool("t", "dyn.add_tool", {"name": "fresh"})
    assert hub.board.wait_for(
        lambda: any(
            isinstance(e, CatalogChanged) and "fresh" in {t.name for t in e.catalog.tools}
            for e in hub.board.events
        ),
        10,
    )
    assert "dyn.fresh" in {t.id for t in hub.tools("t")}
    assert not hub.call_tool("t", "dyn.fresh", {}).is_error
    hub.call_tool("t", "dyn.remove_tool", {"name": "fresh"})
    assert hub.board.wait_for(lambda: "dyn.fresh" not in {t.id for t in hub.tools("t")}, 10)
    # A route used before the change is not reused after it.
    with pytest.raises(NotFound):
        hub.call_tool("t", "dyn.fresh", {})


def test_legacy_only_server_in_auto_mode(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"old": server("--legacy-only")}}})
    hub.start_tenant("t")
    status = hub.server("t", "old")
    assert status.state is ServerState.RUNNING and status.protocol_version != "2026-07-28"
    assert hub.call_tool("t", "old.echo", {"text": "x"}).structured_content == {"text": "x"}


def test_third_party_everything_server(make_hub) -> None:
    entry = str(node_package("@modelcontextprotocol/server-everything", "dist", "index.js"))
    every = {"command": "node", "args": [entry, "stdio"], "sandbox": binds(NODE_MODULES)}
    hub = make_hub({"t": {"servers": {"every": every}}})
    assert hub.start_tenant("t") == {"every": "running"}
    tools = {t.id for t in hub.tools("t")}
    assert "every.echo" in tools, tools
    result = hub.call_tool("t", "every.echo", {"message": "hi"})
    assert not result.is_error and "hi" in result.content[0]["text"]


# --------------------------------------------------------------------------- no orphans


def test_sigkill_of_the_hub_leaves_no_child(tmp_path: Path) -> None:
    shell = {
        "command": "sh",
        "args": ["-c", f"{sys.executable} {ROOT}/tests/servers/testserver.py; true"],
        "sandbox": binds(SERVERS_DIR),
    }
    proc, (*pids, _) = hub_in_a_process(tmp_path, {"a": server(), "b": server(), "c": shell})
    assert len(pids) == 3, pids
    assert len(marked_pids()) >= 4  # three servers and the shell's child
    sigkill(proc)
    killed_at = time.monotonic()
    assert wait_until(lambda: not marked_pids(), 5), f"orphans: {marked_pids()}"
    assert time.monotonic() - killed_at < 5


_HUB_SCRIPT_SLEEPER = """
import sys
from hub.config import parse_config
from hub.runtime import Hub
hub = Hub(parse_config(sys.stdin.read()), data_dir=sys.argv[1]).start()
hub.start_tenant("t", wait=False)
hub.board.wait_for(lambda: getattr(hub.board.status("t", "sleeper"), "pid", None) is not None, 30)
print(hub.board.status("t", "sleeper").pid, hub._registry.pid, flush=True)
import time
time.sleep(600)
"""


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux's setpriv")
def runs_sleep(pid: int) -> bool:
    """Whether `pid` is the `sleep` program (exec'd: no longer the hub's interpreter, bwrap or a shim)."""
    try:
        return os.readlink(f"/proc/{pid}/exe").endswith("/sleep")
    except OSError:
        return False


def test_children_die_with_the_hub_even_if_the_watchdog_died_first(tmp_path: Path) -> None:
    # `sleep` ignores its stdin closing: only a signal ends it.
    sleeper = {"command": "sleep", "args": ["600"]}
    proc, (child, watchdog) = hub_in_a_process(
        tmp_path, {"sleeper": sleeper}, _HUB_SCRIPT_SLEEPER, startup_timeout=120
    )
    # The hub knows the pid as soon as it spawns; the child execs bwrap (or the death-signal shim)
    # a moment later, and bwrap takes its parent-death signal before it forks the sandbox. Under
    # load that moment can be long: wait until `sleep` itself runs, or a kill in between leaves
    # bwrap (no watchdog here). (Waiting only while the child "is a bwrap" once let a kill through
    # before the exec: the child was still the hub's interpreter, and bwrap and sleep outlived it.)
    assert wait_until(lambda: runs_sleep(server_process(child)), 10)
    os.kill(watchdog, signal.SIGKILL)
    assert wait_until(lambda: process_gone(watchdog), 5)
    sigkill(proc)
    # The parent-death signal alone kills the server (a grandchild would need the watchdog).
    assert wait_until(lambda: process_gone(child), 5), f"orphan: {child}"


def test_stop_while_starting_does_not_wait_for_the_startup_timeout(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"hang": server("--hang-init")}}}, orchestrator={"startup_timeout": 60})
    hub.start_tenant("t", wait=False)
    assert hub.board.wait_for(lambda: getattr(hub.board.status("t", "hang"), "pid", None) is not None, 10)
    began = time.monotonic()
    assert hub.stop_server("t", "hang").state is ServerState.STOPPED
    assert time.monotonic() - began < 10
    assert hub.board.wait_for(lambda: states_of(hub, "t", "hang") == ["starting", "stopped"], 5)


def test_stop_while_backing_off_and_start_after_failed(make_hub) -> None:
    hub = make_hub(
        {"t": {"servers": {"dies": server("--exit-at-start")}}},
        orchestrator={"max_retries": 1, "backoff_initial": 30, "backoff_max": 30},
    )
    hub.start_tenant("t", wait=False)
    assert hub.board.wait_for(lambda: "backoff" in states_of(hub, "t", "dies"), 20)
    began = time.monotonic()
    assert hub.stop_server("t", "dies").state is ServerState.STOPPED
    assert time.monotonic() - began < 5, "stop waited out the backoff"
    assert hub.board.wait_for(lambda: states_of(hub, "t", "dies") == ["starting", "backoff", "stopped"], 5)
    fast = make_hub({"t": {"servers": {"dies": server("--exit-at-start")}}}, orchestrator={"max_retries": 0})
    assert fast.start_tenant("t") == {"dies": "failed"}
    # A failed server can be started again by hand: a fresh retry budget.
    assert fast.start_server("t", "dies").state is ServerState.FAILED
    assert states_of(fast, "t", "dies") == ["starting", "failed", "starting", "failed"]


def test_disabled_servers_are_not_started_with_their_tenant(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"on": server(), "off": server(enabled=False)}}})
    assert hub.start_tenant("t") == {"on": "running", "off": "disabled"}
    assert hub.server("t", "off").state is ServerState.STOPPED


def test_auto_start_starts_every_tenant(make_hub) -> None:
    hub = make_hub(
        {"a": {"servers": {"s": server()}}, "b": {"servers": {"s": server()}}},
        orchestrator={"auto_start": True},
    )
    assert hub.board.wait_for(
        lambda: all(
            (s := hub.board.status(t, "s")) is not None and s.state is ServerState.RUNNING for t in "ab"
        ),
        30,
    )
    assert {t.tenant for t in hub.tools()} == {"a", "b"}


def test_stop_lets_calls_in_flight_finish_and_refuses_new_ones(tmp_path: Path) -> None:
    hub = Hub(
        config_of({"t": {"servers": {"s": server()}}}, orchestrator={"shutdown_grace": 10}), data_dir=tmp_path
    ).start()
    try:
        hub.start_tenant("t")
        results: list[object] = []
        slow = threading.Thread(target=lambda: results.append(hub.call_tool("t", "s.sleep", {"seconds": 1})))
        slow.start()
        assert wait_until(lambda: hub.tenant("t").calls_in_flight == 1, 5)
        stopper = threading.Thread(target=hub.stop)
        stopper.start()
        assert wait_until(lambda: hub._stopping, 5)
        with pytest.raises(ShuttingDown):
            hub.call_tool("t", "s.echo", {"text": "late"})
        slow.join(10)
        stopper.join(30)
        assert len(results) == 1 and not results[0].is_error
        assert not stopper.is_alive()
    finally:
        hub.stop()


def test_arguments_are_checked_against_the_tool_input_schema(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"s": server()}}})
    hub.start_tenant("t")
    with pytest.raises(BadRequest, match=r"arguments\.a: 'x' is not of type 'integer'"):
        hub.call_tool("t", "s.add", {"a": "x", "b": 1})
    with pytest.raises(BadRequest, match=r"arguments: 'b' is a required property"):
        hub.call_tool("t", "s.add", {"a": 1})
    assert hub.call_tool("t", "s.add", {"a": 2, "b": 3}).structured_content == {"sum": 5}
