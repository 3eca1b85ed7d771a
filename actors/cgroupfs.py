"""The cgroup file system as the hub uses it: make, delegate, limit, read and remove cgroups.

Plain functions over folders of `/sys/fs/cgroup` (v2) or of the v1 hierarchies, for
`actors.limits` (one hub's tree) and `actors.limit_support` (the probe). Nothing here runs on a
particular thread; `remove_tree` may block for up to `timeouts.CGROUP_EMPTY` s.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time

from hub import timeouts

CONTROLLERS = ("memory", "pids", "cpu")
PREFIX = "mcp-hub-"  # of every folder a hub makes: `mcp-hub-<pid>-<n>`, `mcp-hub-self`
_CPU_PERIOD_US = 100_000


class LimitError(Exception):
    """A cgroup of the hub cannot be made or set (the host changed, a limit is refused...)."""


def make(path: str, controllers: list[str] | None = None) -> None:
    """Make cgroup `path` (if new) and, given `controllers` (cgroup v2), let its children use them.

    Raises:
        LimitError: it cannot be made or delegate.
    """
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise LimitError(f"cannot create cgroup {path}: {exc.strerror}") from None
    if controllers:
        delegate(path, controllers)


def delegate(path: str, controllers: list[str]) -> None:
    """cgroup v2: let `path`'s children use `controllers` (cgroup.subtree_control).

    A v2 cgroup with processes of its own cannot delegate (the "no internal processes" rule):
    when that refusal comes for the hub's own cgroup, the hub moves itself into a leaf beside its
    servers' tree first, `<its cgroup>/mcp-hub-self`, as a delegated systemd service does.
    """
    wanted = " ".join(f"+{c}" for c in controllers)
    control = os.path.join(path, "cgroup.subtree_control")
    try:
        write(control, wanted)
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise LimitError(f"cannot delegate {wanted} in {path}: {exc.strerror}") from None
        leaf = os.path.join(path, f"{PREFIX}self")
        try:
            os.makedirs(leaf, exist_ok=True)
            write(os.path.join(leaf, "cgroup.procs"), str(os.getpid()))
            write(control, wanted)
        except OSError as again:
            raise LimitError(f"cannot delegate {wanted} in {path}: {again.strerror}") from None


def set_limit(version: int | None, path: str, controller: str, value: float | None) -> None:
    """Set cgroup `path`'s limit of `controller` ("memory" in MB, "pids", "cpu" in cores) to
    `value` (None: unlimited).

    Raises:
        LimitError: the kernel refused it.
    """
    for name, text in _limit_files(version, controller, value):
        target = os.path.join(path, name)
        if ("swap" in name or "memsw" in name) and not os.path.exists(target):
            continue  # (no swap accounting on this host: nothing to bound)
        try:
            write(target, text)
        except OSError as exc:
            raise LimitError(f"cannot set {target} to {text}: {exc.strerror}") from None


def _limit_files(version: int | None, controller: str, value: float | None) -> list[tuple[str, str]]:
    """The files that set `controller`'s limit to `value`, and their text, in the order to write."""
    if controller == "memory":
        return _memory_files(version, None if value is None else int(value) * 1024 * 1024)
    if controller == "pids":
        return [("pids.max", "max" if value is None else str(int(value)))]
    quota = None if value is None else max(1000, int(value * _CPU_PERIOD_US))
    if version == 2:
        return [("cpu.max", f"{'max' if quota is None else quota} {_CPU_PERIOD_US}")]
    return [("cpu.cfs_period_us", str(_CPU_PERIOD_US)), ("cpu.cfs_quota_us", str(quota or -1))]


def _memory_files(version: int | None, size: int | None) -> list[tuple[str, str]]:
    """Memory (and swap: none past the memory limit) bounded at `size` bytes (None: unbounded)."""
    limit = "-1" if size is None else str(size)
    if version == 2:
        return [
            ("memory.max", "max" if size is None else limit),
            ("memory.swap.max", "max" if size is None else "0"),
        ]
    # (memory+swap may never be below memory: lifted first, set last)
    return [
        ("memory.memsw.limit_in_bytes", "-1"),
        ("memory.limit_in_bytes", limit),
        ("memory.memsw.limit_in_bytes", limit),
    ]


def write(path: str, text: str) -> None:
    """Write `text` to cgroup file `path`."""
    with open(path, "w") as f:
        f.write(text)


def number(path: str) -> int:
    """The number cgroup file `path` holds."""
    with open(path) as f:
        return int(f.read().strip())


def flat_field(path: str, key: str) -> int:
    """The value of `key` in a flat-keyed cgroup file (`memory.events`, `memory.oom_control`)."""
    try:
        with open(path) as f:
            for line in f:
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def folder_name(part: str) -> str:
    """A cgroup folder name for a tenant or server name (names are already restricted; this keeps
    a per_session label or anything else from making a path)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", part)[:200] or "_"


def remove_tree(path: str, patience: float | None = None) -> None:
    """rmdir `path` and its sub-folders, deepest first; a cgroup goes only once no process is in
    it, so those still busy are tried again for up to `patience` s (default `timeouts.CGROUP_EMPTY`)."""
    deadline = time.monotonic() + (timeouts.CGROUP_EMPTY if patience is None else patience)
    while True:
        for folder, _, _ in sorted(os.walk(path), key=lambda entry: -entry[0].count("/")):
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        if not os.path.isdir(path) or time.monotonic() >= deadline:
            return
        time.sleep(0.01)  # (the kernel tells nobody when a cgroup empties, short of inotify)


def sweep(parent: str) -> None:
    """Remove the trees of hubs that are gone (their pid is not running) under `parent`."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        match = re.fullmatch(rf"{PREFIX}(\d+)-\d+", name)
        if match and not _alive(int(match.group(1))):
            remove_tree(os.path.join(parent, name), patience=0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
