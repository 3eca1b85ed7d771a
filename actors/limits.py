"""Resource limits of stdio servers: a cgroup per server under a cgroup per tenant.

Each hub makes its own cgroup, `mcp-hub-<pid>-<n>`, under the cgroup it runs in (for each
controller it may write to: cgroup v2, or the v1 hierarchies the host mounts), then one per tenant
that sets its quotas (`max_memory_mb`, `max_processes`), and one per start of a server that sets
its `sandbox.limits` (`memory_mb`, `processes`, `cpu`)::

    <the hub's cgroup>/mcp-hub-4242-1/<tenant>/<server>.<n>

The server joins its cgroup before it execs its command: a `/bin/sh` shim in front of its argv
(in front of bwrap when it is sandboxed) writes its own pid into the cgroup's `cgroup.procs`, then
execs the rest, so everything it ever starts is inside from the first instruction. The kernel
does the rest: past its memory the OOM killer kills a process of the cgroup (the hub reads the
cgroup's OOM count to say so), past its processes fork() fails, past its CPU it is throttled.

Where there is no cgroup the hub may create, the memory limit is still set as each process's
data-size rlimit (RLIMIT_DATA, by the same shim's `ulimit -d`): a floor, coarser than a cgroup
(it bounds each process's virtual data, thread stacks included, not the server's resident total,
and an allocation past it fails instead of being killed). There is no such floor for processes
(RLIMIT_NPROC counts every process of the user, i.e. the hub's and all servers') nor for CPU.

Nothing here runs on a particular thread; the probe (`limit_support`) runs once per process.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

from hub.config import HubConfig, LimitsConfig, Quotas

log = logging.getLogger(__name__)

CGROUP_ENV_VAR = "MCP_HUB_CGROUPS"  # "off": never use cgroups (the rlimit floor alone)

_CONTROLLERS = ("memory", "pids", "cpu")
_PREFIX = "mcp-hub-"
_CPU_PERIOD_US = 100_000
_PATIENCE = 2.0  # seconds a cgroup's removal waits for its processes to be gone
_PAGE_SLACK = 64 * 1024  # a peak this close to a memory limit reached it (charges go by pages)
_SHIM = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ >"$1" || exit 125; n=$((n - 1)); shift; done; '
    '[ -z "$1" ] || ulimit -d "$1" || exit 125; shift; exec "$@"'
)
_sequence = itertools.count(1)


class LimitError(Exception):
    """A cgroup of the hub cannot be made or set (the host changed, a limit is refused...)."""


# --------------------------------------------------------------------------- the host


@dataclass(frozen=True)
class LimitSupport:
    """What this host lets the hub enforce, and how."""

    cgroups: dict[str, str]  # controller -> the folder the hub's cgroups go under
    version: int | None  # 1 or 2 (None: no cgroups)
    detail: str  # one line for `hub check` and /health

    def enforces(self, controller: str) -> bool:
        return controller in self.cgroups

    @property
    def mechanism(self) -> str:
        """ "cgroup v1", "cgroup v2", or "rlimit" (no cgroups: the memory limit alone, per process)."""
        return f"cgroup v{self.version}" if self.version else "rlimit"

    def unenforced(self, config: HubConfig) -> list[str]:
        """The limits `config` sets that this host does not enforce (as config paths)."""
        out = []
        for tenant in config.tenants.values():
            quotas = tenant.quotas
            if quotas.max_memory_mb is not None and not self.enforces("memory"):
                out.append(f"tenants.{tenant.name}.quotas.max_memory_mb")
            if quotas.max_processes is not None and not self.enforces("pids"):
                out.append(f"tenants.{tenant.name}.quotas.max_processes")
            for server in tenant.servers.values():
                limits = server.sandbox.limits
                where = f"tenants.{tenant.name}.servers.{server.name}.sandbox.limits"
                if server.transport != "stdio":
                    continue
                if limits.processes is not None and not self.enforces("pids"):
                    out.append(f"{where}.processes")
                if limits.cpu is not None and not self.enforces("cpu"):
                    out.append(f"{where}.cpu")
        return out


@functools.cache
def limit_support() -> LimitSupport:
    """The cgroup controllers the hub may create cgroups with (probed once per process)."""
    if os.environ.get(CGROUP_ENV_VAR, "").lower() == "off":
        return LimitSupport({}, None, f"cgroups off (${CGROUP_ENV_VAR}): memory as a per-process rlimit only")
    found: dict[str, str] = {}
    version: int | None = None
    why: list[str] = []
    for number, candidates in ((1, _v1_roots()), (2, _v2_roots())):
        usable = {c: path for c, path in candidates.items() if c not in found and _writable(path, why)}
        if usable and version is None:
            found, version = usable, number
    if not found:
        reason = "; ".join(why) or "no memory, pids or cpu cgroup controller is mounted"
        return LimitSupport({}, None, f"no cgroups ({reason}): memory as a per-process rlimit only")
    names = ", ".join(c for c in _CONTROLLERS if c in found)
    missing = [c for c in _CONTROLLERS if c not in found]
    detail = f"cgroup v{version} ({names})" + (f"; not {', '.join(missing)}" if missing else "")
    return LimitSupport(found, version, detail)


def _mounts() -> list[tuple[str, str, list[str]]]:
    """(mount point, filesystem type, options) of the cgroup file systems."""
    out = []
    with contextlib.suppress(OSError), open("/proc/self/mounts") as mounts:
        for line in mounts:
            _, point, kind, options, *_ = line.split()
            if kind in ("cgroup", "cgroup2"):
                out.append((point.replace("\\040", " "), kind, options.split(",")))
    return out


def _own() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and under "" its v2 path."""
    out = {}
    with contextlib.suppress(OSError), open("/proc/self/cgroup") as cgroups:
        for line in cgroups:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                out[name] = path
    return out


def _v1_roots() -> dict[str, str]:
    own = _own()
    roots: dict[str, str] = {}
    for point, kind, options in _mounts():
        for controller in _CONTROLLERS:
            if kind == "cgroup" and controller in options and controller in own:
                roots.setdefault(controller, os.path.join(point, own[controller].lstrip("/")))
    return roots


def _v2_roots() -> dict[str, str]:
    own = _own().get("")
    point = next((p for p, kind, _ in _mounts() if kind == "cgroup2"), None)
    if own is None or point is None:
        return {}
    root = os.path.join(point, own.lstrip("/"))
    try:
        with open(os.path.join(root, "cgroup.controllers")) as f:
            available = f.read().split()
    except OSError:
        return {}
    return {c: root for c in _CONTROLLERS if c in available}


def _writable(path: str, why: list[str]) -> bool:
    """Whether a cgroup can be made under `path` (tried: a folder made and removed)."""
    probe = os.path.join(path, f"{_PREFIX}probe-{os.getpid()}")
    try:
        os.mkdir(probe)
        os.rmdir(probe)
    except OSError as exc:
        why.append(f"{path}: {exc.strerror}")
        return False
    return True


# --------------------------------------------------------------------------- one hub's tree


class CgroupTree:
    """One hub's cgroups: a folder per controller, then tenants, then servers' starts.

    `create` sweeps what hubs killed before they could clean up left behind (their empty folders).
    Its methods may be called from any thread: each makes or writes its own folders.
    """

    def __init__(self, support: LimitSupport, roots: dict[str, str]) -> None:
        self.support = support
        self._roots = roots  # controller -> this hub's folder
        self._quotas: dict[str, Quotas] = {}  # tenants whose cgroup bounds memory or processes

    @classmethod
    def create(cls, support: LimitSupport | None = None) -> CgroupTree | None:
        """This hub's tree, or None where the host gives the hub no cgroups."""
        support = support or limit_support()
        if not support.cgroups:
            return None
        name = f"{_PREFIX}{os.getpid()}-{next(_sequence)}"
        roots = {}
        try:
            for parent in sorted(set(support.cgroups.values())):
                _sweep(parent)
                if support.version == 2:
                    _delegate(parent, [c for c, p in support.cgroups.items() if p == parent])
            for controller, parent in support.cgroups.items():
                roots[controller] = path = os.path.join(parent, name)
                os.makedirs(path, exist_ok=True)
                if support.version == 2:
                    _delegate(path, list(support.cgroups))
        except (OSError, LimitError) as exc:
            log.warning("resource limits: cannot create the hub's cgroup %s: %s", name, exc)
            for path in set(roots.values()):
                with contextlib.suppress(OSError):
                    os.rmdir(path)
            return None
        return cls(support, roots)

    def tenant(self, tenant: str, quotas: Quotas) -> None:
        """Make (or update) tenant `tenant`'s cgroup with its quotas.

        Raises:
            LimitError: it cannot be made or set.
        """
        wanted = {"memory": quotas.max_memory_mb, "pids": quotas.max_processes}
        for controller, path in self._folders(tenant):
            _make(path, delegate=self.support.version == 2 and list(self._roots))
            if controller in wanted:
                _set_limit(self.support.version, path, controller, wanted[controller])
        if any(v is not None for v in wanted.values()):
            self._quotas[tenant] = quotas
        else:
            self._quotas.pop(tenant, None)

    def usage(self, tenant: str) -> dict[str, int | None]:
        """What tenant `tenant`'s servers use now: `max_memory_mb` (MiB, rounded up) and
        `max_processes` (processes and threads), None where no cgroup counts it (nor for a tenant
        with neither quota, whose servers without limits run in no cgroup of the hub's)."""
        out: dict[str, int | None] = {"max_memory_mb": None, "max_processes": None}
        if tenant not in self._quotas:
            return out
        memory = "memory.current" if self.support.version == 2 else "memory.usage_in_bytes"
        files = {"max_memory_mb": ("memory", memory), "max_processes": ("pids", "pids.current")}
        for quota, (controller, name) in files.items():
            root = self._roots.get(controller)
            if root is not None:
                with contextlib.suppress(OSError, ValueError):
                    value = _number(os.path.join(root, _safe(tenant), name))
                    out[quota] = -(-value // (1 << 20)) if controller == "memory" else value
        return out

    def quotas(self, tenant: str) -> Quotas | None:
        """Tenant `tenant`'s quotas, if its cgroup bounds its memory or processes."""
        return self._quotas.get(tenant)

    def needed(self, tenant: str, limits: LimitsConfig) -> bool:
        """Whether a server of `tenant` with `limits` needs a cgroup (else it runs in the hub's)."""
        return limits.any or tenant in self._quotas

    def server(self, tenant: str, server: str, limits: LimitsConfig) -> ServerCgroup:
        """A new cgroup for one start of `server` of `tenant` (which `tenant` made), with its limits.

        Raises:
            LimitError: it cannot be made or set.
        """
        label = f"{_safe(server)}.{next(_sequence)}"
        paths = {}
        try:
            for controller, path in self._folders(tenant, label):
                paths[controller] = path
                _make(path)
                value = {"memory": limits.memory_mb, "pids": limits.processes, "cpu": limits.cpu}[controller]
                _set_limit(self.support.version, path, controller, value)
        except LimitError:
            ServerCgroup(self.support.version or 0, paths).remove()
            raise
        return ServerCgroup(self.support.version or 0, paths)

    def folders(self) -> list[str]:
        """This hub's folder in each cgroup hierarchy it uses."""
        return sorted(set(self._roots.values()))

    def remove(self) -> None:
        """Remove the tree (once its processes are gone: what is still busy stays, for the next
        hub's sweep)."""
        for path in set(self._roots.values()):
            _remove_tree(path)

    def _folders(self, *parts: str) -> Iterator[tuple[str, str]]:
        for controller, root in self._roots.items():
            yield controller, os.path.join(root, *(_safe(p) for p in parts))


@dataclass(frozen=True)
class ServerCgroup:
    """The cgroup(s) of one start of a server (one folder per v1 hierarchy; one in v2)."""

    version: int
    paths: dict[str, str]  # controller -> folder

    def procs(self) -> list[str]:
        """The `cgroup.procs` files the server's first process writes itself into."""
        return sorted({os.path.join(p, "cgroup.procs") for p in self.paths.values()})

    def out_of_memory(self) -> bool:
        """Whether the kernel's OOM killer killed a process of this cgroup."""
        memory = self.paths.get("memory")
        if memory is None:
            return False
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        return _field(os.path.join(memory, name), "oom_kill") > 0

    def hit_own_memory_limit(self) -> bool:
        """Whether this cgroup's own memory limit was reached (not only its tenant's)."""
        memory = self.paths.get("memory")
        if memory is None:
            return False
        if self.version == 2:
            return _field(os.path.join(memory, "memory.events"), "max") > 0
        # (v1's failcnt stays 0 on some kernels when the OOM killer, not reclaim, ends the charge:
        # its peak reaching its limit is what says so.)
        try:
            peak = _number(os.path.join(memory, "memory.max_usage_in_bytes"))
            limit = _number(os.path.join(memory, "memory.limit_in_bytes"))
        except (OSError, ValueError):
            return False
        return peak >= limit - _PAGE_SLACK

    def remove(self) -> None:
        """Remove its folders, once their last processes are gone (blocks up to `_PATIENCE` s for
        them: a sandbox's processes die just after bwrap; what is still busy then is left to the
        tree's removal)."""
        for path in set(self.paths.values()):
            _remove_tree(path)


# --------------------------------------------------------------------------- the shim


def shim(group: ServerCgroup | None, limits: LimitsConfig) -> list[str]:
    """The argv prefix that puts a server in `group` (if any) and, where no memory cgroup holds
    its memory limit, sets it as its data-size rlimit; [] when there is nothing to do."""
    procs = group.procs() if group is not None else []
    floor = limits.memory_mb is not None and (group is None or "memory" not in group.paths)
    data_kb = str(limits.memory_mb * 1024) if floor and limits.memory_mb is not None else ""
    if not procs and not data_kb:
        return []
    return ["/bin/sh", "-c", _SHIM, "mcp-hub-limits", str(len(procs)), *procs, data_kb]


# --------------------------------------------------------------------------- cgroup files


def _make(path: str, delegate: list[str] | bool = False) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise LimitError(f"cannot create cgroup {path}: {exc.strerror}") from None
    if delegate:
        _delegate(path, list(delegate) if isinstance(delegate, list) else [])


def _delegate(path: str, controllers: list[str]) -> None:
    """cgroup v2: let `path`'s children use `controllers` (cgroup.subtree_control).

    A v2 cgroup with processes of its own cannot delegate (the "no internal processes" rule):
    when that refusal comes for the hub's own cgroup, the hub moves itself into a leaf beside its
    servers' tree first, `<its cgroup>/mcp-hub-self`, as a delegated systemd service does.
    """
    wanted = " ".join(f"+{c}" for c in controllers)
    control = os.path.join(path, "cgroup.subtree_control")
    try:
        _write(control, wanted)
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise LimitError(f"cannot delegate {wanted} in {path}: {exc.strerror}") from None
        leaf = os.path.join(path, f"{_PREFIX}self")
        try:
            os.makedirs(leaf, exist_ok=True)
            _write(os.path.join(leaf, "cgroup.procs"), str(os.getpid()))
            _write(control, wanted)
        except OSError as again:
            raise LimitError(f"cannot delegate {wanted} in {path}: {again.strerror}") from None


def _set_limit(version: int | None, path: str, controller: str, value: float | None) -> None:
    files: list[tuple[str, str]]
    if controller == "memory":
        size = None if value is None else int(value) * 1024 * 1024
        if version == 2:
            files = [("memory.max", "max" if size is None else str(size))]
            files += [("memory.swap.max", "max" if size is None else "0")]
        else:  # (memory+swap may never be below memory: lifted first, set last)
            files = [("memory.memsw.limit_in_bytes", "-1")]
            files += [("memory.limit_in_bytes", "-1" if size is None else str(size))]
            files += [("memory.memsw.limit_in_bytes", "-1" if size is None else str(size))]
    elif controller == "pids":
        files = [("pids.max", "max" if value is None else str(int(value)))]
    else:
        quota = None if value is None else max(1000, int(value * _CPU_PERIOD_US))
        if version == 2:
            files = [("cpu.max", f"{'max' if quota is None else quota} {_CPU_PERIOD_US}")]
        else:
            files = [("cpu.cfs_period_us", str(_CPU_PERIOD_US)), ("cpu.cfs_quota_us", str(quota or -1))]
    for name, text in files:
        target = os.path.join(path, name)
        if ("swap" in name or "memsw" in name) and not os.path.exists(target):
            continue  # (no swap accounting on this host: nothing to bound)
        try:
            _write(target, text)
        except OSError as exc:
            raise LimitError(f"cannot set {target} to {text}: {exc.strerror}") from None


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _number(path: str) -> int:
    with open(path) as f:
        return int(f.read().strip())


def _field(path: str, key: str) -> int:
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


def _safe(part: str) -> str:
    """A cgroup folder name for a tenant or server name (names are already restricted; this keeps
    a per_session label or anything else from making a path)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", part)[:200] or "_"


def _remove_tree(path: str, patience: float | None = None) -> None:
    """rmdir `path` and its sub-folders, deepest first; a cgroup goes only once no process is in
    it, so those still busy are tried again for up to `patience` s (default `_PATIENCE`)."""
    deadline = time.monotonic() + (_PATIENCE if patience is None else patience)
    while True:
        for folder, _, _ in sorted(os.walk(path), key=lambda entry: -entry[0].count("/")):
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        if not os.path.isdir(path) or time.monotonic() >= deadline:
            return
        time.sleep(0.01)  # (the kernel tells nobody when a cgroup empties, short of inotify)


def _sweep(parent: str) -> None:
    """Remove the trees of hubs that are gone (their pid is not running) under `parent`."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        match = re.fullmatch(rf"{_PREFIX}(\d+)-\d+", name)
        if match and not _alive(int(match.group(1))):
            _remove_tree(os.path.join(parent, name), patience=0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = [
    "CGROUP_ENV_VAR",
    "CgroupTree",
    "LimitError",
    "LimitSupport",
    "ServerCgroup",
    "limit_support",
    "shim",
]
