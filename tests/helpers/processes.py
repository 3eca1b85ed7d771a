"""Processes: a hub in a child process, SIGKILL, and facts about processes (gone, sandboxed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import MARK, ROOT, process_gone, wait_until

from actors.sandbox import sandbox_group

HUB_SCRIPT = """
import sys
from hub.config import parse_config
from hub.runtime import Hub
hub = Hub(parse_config(sys.stdin.read()), data_dir=sys.argv[1]).start()
hub.start_tenant("t")
print(*(s.pid for s in hub.servers("t")), hub._registry.pid, flush=True)
import time
time.sleep(600)
"""  # prints the pids of tenant t's servers, then the watchdog's


def hub_in_a_process(
    tmp_path: Path, servers: dict[str, object], script: str = HUB_SCRIPT, **orchestrator: object
) -> tuple[subprocess.Popen[str], list[int]]:
    """Run a hub `script` in a child (data dir `tmp_path`) on a configuration of tenant `t` with
    `servers` (and the leak marker); the numbers of its first line (`HUB_SCRIPT`: the pids of the
    servers, then the watchdog's)."""
    import yaml

    tenant = {"env": {"MCP_HUB_TEST_MARK": MARK}, "servers": servers}
    config = yaml.safe_dump({"tenants": {"t": tenant}, "orchestrator": orchestrator})
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(config)
    proc.stdin.close()
    return proc, [int(word) for word in proc.stdout.readline().split()]


def sigkill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL a hub of `hub_in_a_process` and reap it (its children are left to their fate)."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)
    assert proc.stdout is not None
    proc.stdout.close()


def gone(*pids: int) -> bool:
    """Wait (with a deadline) until every process is gone: an outside fact with no event."""
    return wait_until(lambda: all(process_gone(p) for p in pids), 10)


def pid_namespace(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/pid")


def runs_sandboxed(pid: int) -> bool:
    """Whether the server whose process (as the hub reports it) is `pid` runs in a pid namespace of
    its own: `pid` is bwrap, whose child (the sandbox's init) is in another namespace than ours."""
    inside = sandbox_group(pid)
    return inside is not None and pid_namespace(inside) != pid_namespace(os.getpid())
