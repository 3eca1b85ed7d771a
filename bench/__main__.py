"""`python -m bench`: run every benchmark and write their figures to `bench/RESULTS.md`.

Each benchmark runs as its own process (as `python bench/<name>.py` would), one after the other;
its output is kept verbatim under a heading, after a line naming the machine and the date.
`--only NAME` (repeatable) runs some of them and keeps the other sections of an existing output
file (its heading then gains this run's line); `--quick` passes each its short settings.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES: dict[str, tuple[list[str], list[str]]] = {  # name -> (full arguments, --quick arguments)
    "runtime": ([], ["--calls", "200", "--servers", "20"]),
    "rest": ([], ["--calls", "200", "--seconds", "3"]),
    "facade": ([], ["--calls", "200"]),
    "remote": ([], ["--calls", "100", "--clients", "16", "--seconds", "1", "--rounds", "2"]),
    "scale": ([], ["--servers", "100", "--tenants", "10", "--idle", "5", "--requests", "30"]),
    "chaos": ([], ["--clients", "16", "--seconds", "10", "--calm", "5"]),
    "peer": ([], ["--calls", "200"]),
    "lazy": ([], ["--cold", "3", "--calls", "50", "--servers", "40", "--busy", "3"]),
    "sandbox": ([], ["--servers", "20", "--rounds", "1", "--calls", "200"]),
    "cluster": ([], ["--calls", "200", "--seconds", "3"]),
    "cluster_chaos": ([], ["--clients", "16", "--seconds", "30", "--kill-at", "8", "--restart-at", "18"]),
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(BENCHES), help="run only this one")
    parser.add_argument("--quick", action="store_true", help="short settings (minutes, not tens)")
    parser.add_argument(
        "--out", default=str(HERE / "RESULTS.md"), help="where to write (default: %(default)s)"
    )
    args = parser.parse_args()
    names = args.only or list(BENCHES)
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    run_line = (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()}, {os.cpu_count()} cores "
        f"({cpu}), Python {platform.python_version()}, {platform.system()} {platform.release()}"
        + ("; --quick settings" if args.quick else "")
        + (f"; only {', '.join(names)}" if args.only else "")
    )
    sections: dict[str, list[str]] = {}
    failed = []
    for name in names:
        full, quick = BENCHES[name]
        command = [sys.executable, str(HERE / f"bench_{name}.py"), *(quick if args.quick else full)]
        print(f"== {' '.join(command[1:])}", flush=True)
        began = time.monotonic()
        run = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parent)
        print(run.stdout, end="", flush=True)
        if run.returncode:
            failed.append(name)
            print(run.stderr[-3000:], file=sys.stderr)
        section = [f"## bench_{name}.py ({time.monotonic() - began:.0f} s)", "", "```", run.stdout.strip()]
        if run.returncode:
            section.append(f"(exit code {run.returncode})")
        sections[name] = [*section, "```", ""]
    out = Path(args.out)
    old = out.read_text() if args.only and out.exists() else None
    out.write_text("\n".join(merged(old, run_line, sections)))
    print(f"written: {args.out}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def merged(old: str | None, run_line: str, sections: dict[str, list[str]]) -> list[str]:
    """The lines of the results file: `sections` (by benchmark name) replace their namesakes in
    `old` (the file as it was, or None: a fresh file), whose other sections stay, in `BENCHES` order;
    `run_line` joins the lines of `old`'s heading that say when and where it ran."""
    heading = ["# Benchmark results"]
    kept: dict[str, list[str]] = {}
    if old is not None:
        first, *rest = old.split("\n## bench_")
        heading = first.rstrip("\n").split("\n")
        for text in rest:
            kept[text.split(".py", 1)[0]] = [*f"## bench_{text}".rstrip("\n").split("\n"), ""]
    heading += ["", run_line, ""]
    kept.update(sections)
    order = [*BENCHES, *(name for name in kept if name not in BENCHES)]
    return [*heading, *(line for name in order if name in kept for line in kept[name])]


if __name__ == "__main__":
    sys.exit(main())
