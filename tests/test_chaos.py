"""Short forms of the scale and fault benchmarks (bench/bench_chaos.py, bench/bench_scale.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))

from bench_chaos import chaos


def test_killing_servers_under_load_loses_no_call_and_every_server_comes_back() -> None:
    figures = chaos(clients=8, seconds=6, calm=2, kill_every=1.5)
    assert figures["kills"] >= 3 and figures["restarts"] >= figures["kills"]
    assert figures["chaos"]["calm ok"] > 100 and figures["chaos"]["victim ok"] > 50
    assert figures["bad"] == 0  # no hung call, no failure on another tenant, nothing but 502/409
    assert figures["calm_failures"] == 0
    assert figures["tracebacks"] == 0 and figures["exit"] == 0
    assert figures["all_running"] and figures["children_left"] == 0


def test_fifty_servers_in_ten_tenants_run_list_and_leave_no_child(tmp_path: Path) -> None:
    """bench_scale at 50 servers: a served hub, every server running, each tenant's catalog and the
    facade's list complete, and no child left 5 s after the hub is SIGKILLed."""
    out = tmp_path / "scale.json"
    run = [sys.executable, str(ROOT / "bench" / "bench_scale.py"), "--servers", "50", "--tenants", "10"]
    done = subprocess.run(
        [*run, "--idle", "1", "--requests", "10", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert figures["running"] == 50 and figures["ready_s"] < 60
    assert figures["facade_tools"] == 5  # one tenant's 5 servers, one tool each
    assert figures["children_left_after_kill"] == 0
