"""What the benchmarks share (they run as scripts: `python bench/<name>.py`)."""

from __future__ import annotations

import statistics
from pathlib import Path


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 of `samples` (seconds), in milliseconds."""
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def marked(tag: str) -> list[int]:
    """Pids of the processes whose command line carries `tag` (the servers of one run)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if tag.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
