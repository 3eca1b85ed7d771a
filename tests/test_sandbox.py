"""Each stdio server in its own bubblewrap sandbox (`actors/sandbox.py`), with real processes.

The escape test runs the same untrusted server (tests/servers/escapeserver.py) with the sandbox on
and off: off, each escape works (so the test can fail); on, none does.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import (
    MARK,
    NODE_MODULES,
    ROOT,
    SERVERS_DIR,
    binds,
    marked_pids,
    needs_bwrap,
    node_package,
    process_gone,
    server,
    wait_until,
)
from helpers.processes import hub_in_a_process, runs_sandboxed, sigkill

from actors import sandbox as sandbox_module
from actors.limits import limit_support
from actors.models import ServerState
from hub.config import SandboxConfig, load_config
from hub.runtime import Hub

ESCAPE_SERVER = str(SERVERS_DIR / "escapeserver.py")


@pytest.fixture
def victim() -> Iterator[subprocess.Popen[bytes]]:
    """A process of the host that no server should be able to signal."""
    proc = subprocess.Popen(["sleep", "600"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port listening on 127.0.0.1 (connections are left in the backlog)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def start_hub(tmp_path: Path, tenants: dict[str, Any], **orchestrator: Any) -> Hub:
    """A hub on a configuration file in `tmp_path` (data in `tmp_path/data`), its tenants started."""
    for tenant in tenants.values():
        tenant["env"] = {**tenant.get("env", {}), "MCP_HUB_TEST_MARK": MARK}
    settings = {"data_dir": str(tmp_path / "data"), "backoff_initial": 0.1, "max_retries": 1, **orchestrator}
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump({"tenants": tenants, "orchestrator": settings}))
    hub = Hub(load_config(path)).start()
    for name in tenants:
        hub.start_tenant(name)
    return hub


@pytest.mark.parametrize("sandboxed", [True, False], ids=["sandbox-on", "sandbox-off"])
def test_a_server_cannot_reach_other_tenants_or_the_hub(
    tmp_path: Path, sandboxed: bool, victim: subprocess.Popen[bytes], listener: int
) -> None:
    if sandboxed:
        needs_bwrap()
    shared = tmp_path / "shared"  # bound read-only: a write there must fail
    shared.mkdir()
    # Alpha binds the whole folder that holds the hub's configuration and data directory: what
    # must stay hidden is hidden by the sandbox, not by the accident of a private /tmp.
    probe = {
        "command": "python",
        "args": [ESCAPE_SERVER],
        "sandbox": binds(SERVERS_DIR, tmp_path, network="none"),
    }
    beta_secret = "beta-secret-7f3a9"
    hub = start_hub(
        tmp_path,
        {
            "alpha": {"servers": {"probe": probe}},
            "beta": {"env": {"BETA_TOKEN": beta_secret}, "servers": {"s": server("--print-env-at-start")}},
        },
        sandbox={"enabled": sandboxed},
    )
    try:
        data = tmp_path / "data"
        beta_home = data / "homes" / "beta"
        beta_home.mkdir(parents=True, exist_ok=True)
        (beta_home / "secret.txt").write_text("beta's own notes")
        beta_pid = hub.server("beta", "s").pid
        assert hub.server("alpha", "probe").state is ServerState.RUNNING
        assert runs_sandboxed(hub.server("alpha", "probe").pid) is sandboxed
        beta_log, beta_cache = data / "logs" / "beta" / "s.log", data / "catalogs" / "beta" / "s.json"
        assert beta_secret in beta_log.read_text() and beta_cache.exists()
        escapes = {
            "config": str(tmp_path / "hub.yaml"),
            "home": str(beta_home / "secret.txt"),
            "log": str(beta_log),
            "cache": str(beta_cache),
        }
        outside = [str(data / "escaped.txt"), str(shared / "escaped.txt")]
        arguments = {
            "pids": [beta_pid, os.getpid()],
            "needle": beta_secret,
            "signal0": [os.getpid()],
            "kill": [victim.pid],
            "read": list(escapes.values()),
            "write": [*outside, str(tmp_path / "data" / "homes" / "alpha" / "mine.txt"), "/tmp/mine.txt"],
            "connect": [listener],
        }
        result = hub.call_tool("alpha", "probe.escape", arguments).structured_content
    finally:
        hub.stop()
    outcome = {name: attempt["ok"] for name, attempt in result.items()}
    shown = {name: attempt["detail"] for name, attempt in result.items()}
    config = f"read:{escapes['config']}"
    escaped = {
        "environ": outcome[f"environ:{beta_pid}"] and beta_secret in shown[f"environ:{beta_pid}"],
        "cmdline": outcome[f"cmdline:{beta_pid}"] and "testserver.py" in shown[f"cmdline:{beta_pid}"],
        "scan /proc/*/environ": outcome["scan"],
        "list pids": outcome["pids"],
        "signal the hub": outcome[f"signal0:{os.getpid()}"],
        "kill": outcome[f"kill:{victim.pid}"] and wait_until(lambda: victim.poll() is not None, 5),
        "read the config": outcome[config] and "BETA_TOKEN" in shown[config],
        **{
            f"read beta's {what}": outcome[f"read:{where}"]
            for what, where in escapes.items()
            if what != "config"
        },
        **{f"write {path}": outcome[f"write:{path}"] and Path(path).exists() for path in outside},
        "connect with network none": outcome[f"connect:{listener}"],
    }
    if sandboxed:
        assert not any(escaped.values()), {k: shown.get(k, v) for k, v in escaped.items() if v}
        assert victim.poll() is None
        assert "none of" in shown["pids"] and len(shown["pids"].rsplit(":", 1)[-1].split()) < 5
    else:
        assert all(escaped.values()), [k for k, v in escaped.items() if not v]
    # It may write in /tmp; sandboxed, its HOME and working directory are its tenant's home.
    assert outcome["write:/tmp/mine.txt"]
    if sandboxed:
        home = str(tmp_path / "data" / "homes" / "alpha")
        assert json.loads(shown["whoami"]) | {"pid": 0} == {"home": home, "cwd": home, "pid": 0}
        assert outcome[f"write:{home}/mine.txt"] and (Path(home) / "mine.txt").read_text() == "escaped"


def test_server_everything_runs_sandboxed_without_network(make_hub) -> None:
    needs_bwrap()
    entry = str(node_package("@modelcontextprotocol/server-everything", "dist", "index.js"))
    every = {"command": "node", "args": [entry, "stdio"], "sandbox": binds(NODE_MODULES, network="none")}
    hub = make_hub({"t": {"servers": {"every": every}}})
    assert hub.start_tenant("t") == {"every": "running"}
    assert runs_sandboxed(hub.server("t", "every").pid)
    result = hub.call_tool("t", "every.echo", {"message": "from the sandbox"})
    assert not result.is_error and "from the sandbox" in result.content[0]["text"]


def test_cwd_is_bound_read_write_and_a_bind_read_only(make_hub, tmp_path: Path) -> None:
    needs_bwrap()
    work, docs = tmp_path / "work", tmp_path / "docs"
    work.mkdir()
    docs.mkdir()
    (docs / "readme.txt").write_text("read me")
    probe = {"command": "python", "args": [ESCAPE_SERVER], "cwd": str(work)}
    # The configuration's data_dir (unused: the hub's is elsewhere) would lie in the cwd.
    hub = make_hub(
        {"t": {"servers": {"probe": {**probe, "sandbox": binds(SERVERS_DIR, docs)}}}},
        orchestrator={"data_dir": str(work / "state")},
    )
    assert hub.start_tenant("t") == {"probe": "running"}
    writes = [str(work / "out.txt"), str(docs / "x")]
    arguments = {"pids": [], "read": [str(docs / "readme.txt")], "write": writes}
    result = hub.call_tool("t", "probe.escape", arguments).structured_content
    assert json.loads(result["whoami"]["detail"])["cwd"] == str(work)
    assert result[f"read:{docs / 'readme.txt'}"] == {"ok": True, "detail": "read me"}
    assert result[f"write:{work / 'out.txt'}"]["ok"] and (work / "out.txt").read_text() == "escaped"
    assert "Read-only file system" in result[f"write:{docs / 'x'}"]["detail"]
    assert sorted(os.listdir(work)) == ["out.txt"]  # nothing was masked into being


def test_what_cannot_be_sandboxed_fails_at_once_and_says_why(make_hub, tmp_path: Path) -> None:
    needs_bwrap()
    hub = make_hub(
        {
            "t": {
                "servers": {
                    "nobind": server(sandbox=binds(SERVERS_DIR, tmp_path / "gone")),
                    "private": server(sandbox=binds(SERVERS_DIR, tmp_path / "hub0" / "logs")),
                    "hidden": {"command": sys.executable, "args": [str(ROOT / "tests" / "conftest.py")]},
                }
            }
        },
        orchestrator={"max_retries": 0},
    )
    assert hub.start_tenant("t") == {"nobind": "failed", "private": "failed", "hidden": "failed"}
    assert hub.server("t", "nobind").last_error == f"sandbox bind {tmp_path / 'gone'} does not exist"
    private = hub.server("t", "private").last_error
    logs = tmp_path / "hub0" / "logs"
    assert private == f"sandbox bind {logs} is inside the hub's data directory, which servers never see"
    assert hub.server("t", "nobind").restarts == 0
    # The interpreter is visible, but not the script: it fails inside (python says so in its log).
    assert "exited with code 2" in hub.server("t", "hidden").last_error
    assert "No such file or directory" in (hub.log_dir / "t" / "hidden.log").read_text()


def test_a_home_that_cannot_be_made_is_named(make_hub) -> None:
    needs_bwrap()
    hub = make_hub({"t": {"servers": {"s": server()}}}, orchestrator={"max_retries": 0})
    (hub.data_dir / "homes").write_text("not a folder")
    assert hub.start_tenant("t") == {"s": "failed"}
    assert hub.server("t", "s").last_error == (
        f"cannot create the home of tenant 't', {hub.data_dir / 'homes' / 't'}: Not a directory"
    )


def test_a_command_outside_the_sandbox_is_named(make_hub, tmp_path: Path) -> None:
    needs_bwrap()
    script = tmp_path / "server.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    hub = make_hub({"t": {"servers": {"s": {"command": str(script)}}}}, orchestrator={"max_retries": 0})
    assert hub.start_tenant("t") == {"s": "failed"}
    error = hub.server("t", "s").last_error
    assert f"command {script} is not visible in the sandbox: bind its folder (sandbox.binds)" in error


def test_required_sandbox_on_a_host_without_one(
    make_hub, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No bwrap: a server that requires the sandbox is refused at once; the others run unsandboxed,
    with one warning in the hub's log and a line in each server's log."""
    monkeypatch.setenv(sandbox_module.BWRAP_ENV_VAR, "/nonexistent/bwrap")
    monkeypatch.setattr(sandbox_module, "_warned", threading.Event())
    caplog.set_level(logging.WARNING, logger="actors.sandbox")
    hub = make_hub(
        {
            "t": {
                "servers": {
                    "strict": server(sandbox=binds(SERVERS_DIR, required=True)),
                    "lax1": server(),
                    "lax2": server(),
                }
            }
        }
    )
    assert hub.start_tenant("t") == {"strict": "failed", "lax1": "running", "lax2": "running"}
    strict = hub.server("t", "strict")
    assert strict.restarts == 0 and strict.last_error == (
        "not started: sandbox.required is true and this host cannot sandbox: "
        "bubblewrap (/nonexistent/bwrap) is not installed (Debian: apt-get install bubblewrap)"
    )
    assert not runs_sandboxed(hub.server("t", "lax1").pid)
    assert [r.message.startswith("stdio servers run UNSANDBOXED") for r in caplog.records].count(True) == 1
    assert "[mcp-hub] running unsandboxed: bubblewrap" in (hub.log_dir / "t" / "lax2.log").read_text()


@pytest.mark.parametrize("watchdog", ["watchdog", "watchdog-killed-first"])
def test_sigkill_of_the_hub_leaves_no_sandboxed_process(tmp_path: Path, watchdog: str) -> None:
    """Grandchildren included, even one that left the server's session and process group (which
    unsandboxed, only the watchdog's group kill would miss): the sandbox's pid namespace ends
    with its init, which dies with bwrap, which dies with the hub (--die-with-parent)."""
    needs_bwrap()
    wrapper = f"setsid sleep 600 & {sys.executable} {ROOT}/tests/servers/testserver.py; true"
    shell = {"command": "sh", "args": ["-c", wrapper], "sandbox": binds(SERVERS_DIR)}
    proc, (*pids, reaper) = hub_in_a_process(tmp_path, {"a": server(), "sh": shell})
    assert len(pids) == 2 and all(runs_sandboxed(pid) for pid in pids)
    # Two servers (bwrap, its init, the server), the shell's python and its setsid sleep.
    assert wait_until(lambda: len(marked_pids()) >= 8, 10), marked_pids()
    if watchdog == "watchdog-killed-first":
        os.kill(reaper, signal.SIGKILL)
        assert wait_until(lambda: process_gone(reaper), 5)
    sigkill(proc)
    assert wait_until(lambda: not marked_pids(), 5), f"orphans: {marked_pids()}"


def test_stopping_a_sandboxed_server_sends_it_sigterm(make_hub) -> None:
    """bwrap passes no signal on: the SIGTERM of a stop (after stdin's close and its grace) goes to
    the sandbox's own process group, so a server can clean up as it would unsandboxed."""
    needs_bwrap()
    script = 'trap "echo cleaned up > $HOME/sigterm; exit 0" TERM; while :; do sleep 0.1; done'
    hub = make_hub({"t": {"servers": {"deaf": {"command": "sh", "args": ["-c", script]}}}})
    hub.start_tenant("t", wait=False)
    assert hub.board.wait_for(lambda: getattr(hub.board.status("t", "deaf"), "pid", None) is not None, 10)
    assert hub.stop_server("t", "deaf").state is ServerState.STOPPED
    assert (hub.data_dir / "homes" / "t" / "sigterm").read_text() == "cleaned up\n"


@pytest.mark.parametrize("bwrap", ["bwrap", "/nonexistent/bwrap"])
def test_check_and_health_say_whether_this_host_can_sandbox(tmp_path: Path, bwrap: str) -> None:
    from helpers.served import start_hub, stop_hub, write_config

    if bwrap == "bwrap":
        needs_bwrap()
    env = {**os.environ, sandbox_module.BWRAP_ENV_VAR: bwrap}
    check = subprocess.run(
        [sys.executable, "-m", "hub", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr
    said = next(line for line in check.stdout.splitlines() if line.startswith("sandbox: "))
    config = write_config(tmp_path, {"t": {"servers": {"s": server()}}})
    hub = start_hub(config, tmp_path, env={sandbox_module.BWRAP_ENV_VAR: bwrap})
    try:
        components = hub.get("/health").body["components"]
        health = components["sandbox"]
        # (Resource limits do not depend on bwrap: what enforces them is said either way.)
        assert components["limits"] == limit_support().mechanism
    finally:
        assert stop_hub(hub) == 0
    if bwrap == "bwrap":
        assert said.startswith("sandbox: available (bubblewrap ") and health == "available"
    else:
        assert said == (
            "sandbox: UNAVAILABLE on this host: bubblewrap (/nonexistent/bwrap) is not installed (Debian: "
            "apt-get install bubblewrap); 0 stdio server(s) require it and will not start, 1 will run "
            "unsandboxed (docs/security.md)"
        )
        assert health == "unavailable"
        assert "stdio servers cannot be sandboxed on this host" in hub.log()


def test_a_hub_installed_under_tmp_is_seen_over_the_private_tmp(monkeypatch, tmp_path: Path) -> None:
    """A checkout or virtualenv under /tmp (CI's clean clone, say) stays visible inside: its
    read-only bind comes again after the sandbox's own /tmp, which would otherwise hide it."""
    venv = "/tmp/some-ci-checkout/.venv"
    roots = (sandbox_module._Mount("ro", "/usr", "/usr"), sandbox_module._Mount("ro", venv, venv))
    monkeypatch.setattr(sandbox_module, "_readonly_roots", lambda: roots)
    site = sandbox_module.SandboxSite.of_hub([tmp_path / "data"], [])
    sandbox = sandbox_module._plan("bwrap", site, "t", SandboxConfig(), None)
    assert sandbox.shows(f"{venv}/bin/python") and not sandbox.shows("/tmp/elsewhere")
    options = list(sandbox.options)
    private_tmp = next(i for i in range(len(options) - 1) if options[i : i + 2] == ["--tmpfs", "/tmp"])
    binds = [i for i in range(len(options) - 2) if options[i : i + 3] == ["--ro-bind", venv, venv]]
    assert binds and binds[-1] > private_tmp, options
