"""`python -m bench`: run every benchmark and write their figures to `bench/RESULTS.md`.

Each benchmark runs as its own process (as `python bench/<name>.py` would), one after the other;
its output is kept verbatim under a heading, after a line naming the machine and the date.
`--only NAME` (repeatable) runs some of them; `--quick` passes each its short settings.
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
    "scale": ([], ["--servers", "100", "--tenants", "10", "--idle", "5", "--requests", "30"]),
    "chaos": ([], ["--clients", "16", "--seconds", "10", "--calm", "5"]),
    "peer": ([], ["--calls", "200"]),
    "lazy": ([], ["--cold", "3", "--calls", "50", "--servers", "40", "--busy", "3"]),
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
    lines = [
        "# Benchmark results",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()}, {os.cpu_count()} cores "
        f"({cpu}), Python {platform.python_version()}, {platform.system()} {platform.release()}"
        + ("; --quick settings" if args.quick else ""),
        "",
    ]
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
        lines += [f"## bench_{name}.py ({time.monotonic() - began:.0f} s)", "", "```", run.stdout.strip()]
        if run.returncode:
            lines.append(f"(exit code {run.returncode})")
        lines += ["```", ""]
    Path(args.out).write_text("\n".join(lines))
    print(f"written: {args.out}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
