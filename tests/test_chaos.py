"""Short forms of the scale and fault benchmarks (bench/bench_chaos.py, bench/bench_scale.py)."""

from __future__ import annotations

import sys

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
