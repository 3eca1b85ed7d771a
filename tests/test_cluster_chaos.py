"""The chaos benchmark's short form (issue 21, "Done when"): clients call through a real HAProxy
(half of them REST, half MCP clients of the facade) while one of three replicas (`python -m hub
serve`, real Redis) is SIGKILLed and started again;
the criteria are the benchmark's own (`bench/bench_cluster_chaos.py`, `verdict`), over a short run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_replica_sigkilled_under_load_loses_no_read_only_call_hangs_none_and_leaves_no_process(
    tmp_path: Path,
) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import bench_cluster_chaos as chaos
    finally:
        sys.path.remove(str(BENCH))
    # Half the clients call REST with keys of their own, half the MCP facade (2026-07-28) with none.
    args = argparse.Namespace(clients=8, seconds=12.0, kill_at=3.0, restart_at=7.0, facade_share=0.5)
    out = asyncio.run(chaos.run(args, tmp_path))
    judged = chaos.verdict(out)
    killed = out["killed"]
    judged["failures"] = [  # (each failed call: when, relative to the kill; how long; what)
        (
            c["server"],
            c["kind"],
            c["tool"],
            round(c["start"] - killed, 2),
            round(c["end"] - c["start"], 2),
            c.get("text"),
        )
        for c in out["calls"]
        if c["failed"]
    ]
    assert judged["calls"] > 100, judged  # (the clients did call throughout)
    assert all(kind["calls"] > 40 for kind in judged["by_kind"].values()), judged  # (both kinds did)
    assert judged["failed_read_only"] == 0, judged
    assert judged["hung"] == 0 and judged["unclear"] == 0, judged
    assert judged["slowest_failure"] <= 1.0, judged
    # ttl (3 heartbeats of 1 s) + a heartbeat + a server's start, with room for a loaded machine
    assert judged["servers_back_after"] is not None and judged["servers_back_after"] < 15, judged
    assert judged["left_behind"] == 0, judged
