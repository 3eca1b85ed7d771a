"""Real third-party MCP servers, each in its sandbox (issue 17): real hubs, real processes.

What each needs sandboxed is what docs/security.md ("Real servers") tells an operator: the
filesystem server its folders bound, the memory server its file in the tenant's home, `npx` and
`uvx` nothing (their caches go to the tenant's home, their HOME). The last test SIGKILLs a hub
of 20 sandboxed servers, some started through npx, and finds nothing of them left.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    NODE_MODULES,
    ROOT,
    binds,
    marked_pids,
    missing,
    needs_bwrap,
    needs_npx,
    node_package,
    process_gone,
    server,
    server_pids,
    wait_until,
)
from helpers.processes import hub_in_a_process, runs_sandboxed, sigkill

from hub.config import load_config
from hub.runtime import Hub

FILESYSTEM = "@modelcontextprotocol/server-filesystem"
MEMORY = "@modelcontextprotocol/server-memory"
EVERYTHING = "@modelcontextprotocol/server-everything"
EVERYTHING_BY_NPX = f"{EVERYTHING}@2026.8.31"  # as tests/setup.sh pins it


def started(hub: Hub, tenant: str) -> Hub:
    """`hub` once `tenant`'s servers run (but on_demand ones), each sandboxed (else: the logs of
    those that do not)."""
    outcome = hub.start_tenant(tenant)
    logs = {name: hub.log_dir / tenant / f"{name}.log" for name in outcome}
    tails = {name: log.read_text()[-2000:] for name, log in logs.items() if log.exists()}
    assert set(outcome.values()) - {"on_demand"} == {"running"}, (outcome, tails)
    assert all(runs_sandboxed(s.pid) for s in hub.servers(tenant) if s.pid is not None)
    return hub


def text_of(result: Any) -> str:
    return "\n".join(part.get("text", "") for part in result.content)


def test_filesystem_server_sees_its_bound_folders_only(make_hub, tmp_path: Path) -> None:
    """It is told three folders but sees the two bound: `projects` read-write, `reference`
    read-only; the third it skips at start (unsandboxed, it would serve it)."""
    needs_bwrap()
    entry = str(node_package(FILESYSTEM, "dist", "index.js"))
    folders = projects, reference, elsewhere = [tmp_path / n for n in ("projects", "reference", "elsewhere")]
    for folder in folders:
        folder.mkdir()
        (folder / "notes.txt").write_text(f"notes of {folder.name}")
    sandbox = binds(NODE_MODULES, reference)
    sandbox["binds"].append({"path": str(projects), "mode": "rw"})  # type: ignore[attr-defined]
    fs = {"command": "node", "args": [entry, *map(str, folders)], "sandbox": sandbox}
    hub = started(make_hub({"t": {"servers": {"fs": fs}}}), "t")

    def call(tool: str, **arguments: str) -> tuple[bool, str]:
        result = hub.call_tool("t", f"fs.{tool}", arguments)
        return not result.is_error, text_of(result)

    assert call("list_directory", path=str(projects)) == (True, "[FILE] notes.txt")
    assert call("read_text_file", path=str(projects / "notes.txt")) == (True, "notes of projects")
    assert call("write_file", path=str(projects / "out.txt"), content="from the server")[0]
    assert (projects / "out.txt").read_text() == "from the server"
    assert call("read_text_file", path=str(reference / "notes.txt")) == (True, "notes of reference")
    ok, said = call("write_file", path=str(reference / "out.txt"), content="x")
    assert not ok and "read-only file system" in said.lower() and not (reference / "out.txt").exists()
    ok, said = call("read_text_file", path=str(elsewhere / "notes.txt"))
    assert not ok and "notes of elsewhere" not in said
    assert f"Cannot access directory {elsewhere}, skipping" in (hub.log_dir / "t" / "fs.log").read_text()


def test_memory_server_keeps_its_graph_in_the_tenant_home(make_hub, tmp_path: Path) -> None:
    """Its default file is in its package folder, read-only in the sandbox: MEMORY_FILE_PATH puts it
    in its tenant's home (an absolute path: the hub expands `${VAR}` with its own environment)."""
    needs_bwrap()
    entry = str(node_package(MEMORY, "dist", "index.js"))
    memory_file = tmp_path / "hub0" / "homes" / "t" / "memory.jsonl"
    memory = {
        "command": "node",
        "args": [entry],
        "env": {"MEMORY_FILE_PATH": str(memory_file)},
        "sandbox": binds(NODE_MODULES),
    }
    hub = started(make_hub({"t": {"servers": {"memory": memory}}}), "t")
    entities = [
        {"name": "Ada", "entityType": "person", "observations": ["wrote the first program"]},
        {"name": "Engine", "entityType": "machine", "observations": ["analytical"]},
    ]
    created = hub.call_tool("t", "memory.create_entities", {"entities": entities})
    assert not created.is_error, text_of(created)
    graph = hub.call_tool("t", "memory.read_graph", {}).structured_content
    assert graph is not None and sorted(e["name"] for e in graph["entities"]) == ["Ada", "Engine"], graph
    found = hub.call_tool("t", "memory.search_nodes", {"query": "analytical"}).structured_content
    assert found is not None and [e["name"] for e in found["entities"]] == ["Engine"], found
    on_disk = [json.loads(line) for line in memory_file.read_text().splitlines()]
    assert {e["name"] for e in on_disk if e["type"] == "entity"} == {"Ada", "Engine"}
    assert not (NODE_MODULES / MEMORY / "dist" / "memory.jsonl").exists()


def test_time_server_answers_sandboxed(make_hub) -> None:
    """`mcp-server-time` from PyPI, run by the hub's own Python (visible read-only inside), with no
    network."""
    needs_bwrap()
    if importlib.util.find_spec("mcp_server_time") is None:
        missing("PyPI package mcp-server-time (the `test` extra)")
    time_server = {
        "command": sys.executable,
        "args": ["-m", "mcp_server_time"],
        "sandbox": {"network": "none"},
    }
    hub = started(make_hub({"t": {"servers": {"time": time_server}}}), "t")
    assert {"time.get_current_time", "time.convert_time"} <= {t.id for t in hub.tools("t")}
    result = hub.call_tool("t", "time.get_current_time", {"timezone": "Asia/Tokyo"})
    assert not result.is_error, text_of(result)
    answer = json.loads(text_of(result))
    assert answer["timezone"] == "Asia/Tokyo" and answer["datetime"].endswith("+09:00"), answer


def test_the_default_configuration_runs_the_demo_server_sandboxed(tmp_path: Path) -> None:
    """config/hub.yaml as shipped (`--db-path demo.db`, no cwd): its demo keeps its database in its
    tenant's home, its working directory."""
    needs_bwrap()
    hub = Hub(load_config(ROOT / "config" / "hub.yaml"), data_dir=tmp_path).start()
    try:
        assert started(hub, "default").server("default", "sqlite-demo").state.value == "running"
        rows = hub.call_tool("default", "sqlite-demo.query", {"sql": "SELECT * FROM users LIMIT 10"})
        assert rows.structured_content is not None and rows.structured_content["row_count"] == 10
    finally:
        hub.stop()
    assert (tmp_path / "homes" / "default" / "demo.db").stat().st_size > 0
    assert not (ROOT / "demo.db").exists() and not (ROOT / "config" / "demo.db").exists()


@pytest.mark.slow
@pytest.mark.timeout(360)
def test_npx_downloads_into_the_tenant_home_and_then_runs_offline(
    make_hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`npx -y PACKAGE@VERSION` as an operator configures it: its first start downloads the package
    (from the npm registry: needs the network, and takes seconds) into its tenant's home; the hub
    user's home (here a scratch folder) is left alone. Once there, a server of the tenant with no
    network runs it with `--offline`."""
    needs_npx()
    needs_bwrap()
    hub_home = tmp_path / "hub-home"
    hub_home.mkdir()
    monkeypatch.setenv("HOME", str(hub_home))
    every = {"command": "npx", "args": ["-y", EVERYTHING_BY_NPX, "stdio"]}
    offline = {
        "command": "npx",
        "args": ["--offline", "-y", EVERYTHING_BY_NPX, "stdio"],
        "sandbox": {"network": "none"},
        "lifecycle": "on_demand",  # not started with its tenant: after `every`
    }
    tenant = {"servers": {"every": every, "offline": offline}}
    hub = started(make_hub({"t": tenant}, orchestrator={"startup_timeout": 300}), "t")
    result = hub.call_tool("t", "every.echo", {"message": "fetched by npx"})
    assert not result.is_error and "fetched by npx" in text_of(result), text_of(result)
    npx_cache = tmp_path / "hub0" / "homes" / "t" / ".npm" / "_npx"
    downloaded = list(npx_cache.glob(f"*/node_modules/{EVERYTHING}/package.json"))
    assert downloaded, sorted(npx_cache.rglob("*"))[:20]
    assert list(hub_home.iterdir()) == []
    status = hub.start_server("t", "offline", timeout=30)
    assert status.state.value == "running" and runs_sandboxed(status.pid), status
    result = hub.call_tool("t", "offline.echo", {"message": "from the cache"})
    assert not result.is_error and "from the cache" in text_of(result), text_of(result)


def grandchildren(pids: list[int]) -> list[int]:
    """Of `pids`, those whose parent and grandparent are in `pids` too."""
    parent = {}
    for pid in pids:
        try:
            parent[pid] = int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return [pid for pid, up in parent.items() if up in parent and parent[up] in parent]


def with_a_stubborn_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Server `spec` run by a shell that first starts a `sleep` in the background: a process that
    does not end when the hub's pipes close (the server does, at EOF) and keeps its sandbox up."""
    command = " ".join(shlex.quote(word) for word in [spec["command"], *spec["args"]])
    return {**spec, "command": "sh", "args": ["-c", f"sleep 600 & exec {command}"]}


@pytest.mark.slow
@pytest.mark.timeout(240)  # 20 starts: about 12 s here, far more on a loaded machine
@pytest.mark.parametrize("watchdog", ["watchdog", "watchdog-killed-first"])
def test_sigkill_of_a_hub_of_20_sandboxed_servers_leaves_nothing(tmp_path: Path, watchdog: str) -> None:
    """14 Python servers and 6 server-everything started by `npx` (found in the local node_modules:
    no download, no network; `npm exec` runs `sh -c`, which runs the server's node: grandchildren),
    then SIGKILL of the hub; with its watchdog killed first, the sandboxes alone must end them."""
    needs_bwrap()
    node_package(EVERYTHING, "dist", "index.js")
    deps = NODE_MODULES.parent  # npx finds mcp-server-everything in its node_modules/.bin
    npx = {
        "command": "npx",
        "args": ["mcp-server-everything", "stdio"],
        "cwd": str(deps),
        "sandbox": binds(deps, network="none"),
    }
    servers = {f"py{i}": server() for i in range(14)} | {f"npx{i}": npx for i in range(6)}
    for name in ("py0", "py1", "py2", "npx0", "npx1"):  # and a child that outlives their stdin
        servers[name] = with_a_stubborn_child(servers[name])
    proc, (*pids, reaper) = hub_in_a_process(tmp_path, servers, startup_timeout=90)
    try:
        assert len(pids) == 20 and all(runs_sandboxed(pid) for pid in pids), pids
        inside = server_pids()
        assert len(inside) >= 14 + 2 * 6 and len(grandchildren(inside)) >= 6, inside
        if watchdog == "watchdog-killed-first":
            os.kill(reaper, signal.SIGKILL)
            assert wait_until(lambda: process_gone(reaper), 5)
    finally:  # a failure above must not leave the hub and its stubborn children to the next tests
        sigkill(proc)
    assert wait_until(lambda: not marked_pids(), 10), f"orphans: {marked_pids()}"
