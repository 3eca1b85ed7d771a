"""`python -m hub backup -o FILE` and `python -m hub restore FILE [--force]`
(docs/operations.md, "Backup and restore").

`backup` reads the configuration file as the hub would (`find_config_path`, then `load_config`:
its variables must be set, to know its data_dir) and writes the archive of `hub.backup`, mode
0600. `restore` checks the whole archive and the configuration it holds (as `hub check` does, in
this environment), then writes the configuration file to `--config` (or where the hub looks for
it) and the data into the data_dir that configuration names (`hub.restore`). Exit codes as the
rest of the command line: 0 done, 2 an invalid archive or configuration or a refused restore
(nothing was changed), 1 a file that could not be read or written. Runs on the main thread.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hub import backup, restore
from hub.config import find_config_path, load_config
from hub.errors import ConfigError, HubError

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


def _problems(source: object, exc: ConfigError) -> None:
    count = len(exc.problems)
    print(f"{source}: invalid configuration ({count} problem{'' if count == 1 else 's'}):", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)


def run_backup(config_arg: str | None, out: str) -> int:
    """`backup`: the configuration file and its data_dir's data, archived to `out` (mode 0600)."""
    path = find_config_path(config_arg)
    try:
        config = load_config(path)
    except ConfigError as exc:
        _problems(path, exc)
        return EXIT_USAGE
    try:
        taken = backup.collect(path, Path(config.orchestrator.data_dir))
        backup.write_archive(taken, Path(out))
    except HubError as exc:
        print(f"mcp-hub: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"mcp-hub: cannot write the backup: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    print(
        f"{out}: backup of {path} and {len(taken.data)} data files of {config.orchestrator.data_dir} "
        "(it holds secrets: keep it private)"
    )
    return EXIT_OK


def run_restore(archive: str, config_arg: str | None, force: bool) -> int:
    """`restore`: `archive` checked, then written (see the module's docstring)."""
    path = find_config_path(config_arg)
    try:
        data = Path(archive).read_bytes()
    except OSError as exc:
        print(f"mcp-hub: cannot read {archive}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_RUNTIME
    try:
        planned = restore.plan(backup.read_backup(data), path)
        written = restore.apply(planned, force=force)
    except ConfigError as exc:
        _problems(f"{archive} (its configuration, as {path})", exc)
        return EXIT_USAGE
    except HubError as exc:
        print(f"mcp-hub: {archive}: {exc.message}; nothing was changed", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"mcp-hub: cannot restore: {exc}; nothing was changed", file=sys.stderr)
        return EXIT_RUNTIME
    print(f"{archive}: restored {path} and the data under {planned.data_dir} ({written} files)")
    return EXIT_OK
