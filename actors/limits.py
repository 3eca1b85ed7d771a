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

This module holds one hub's tree of cgroups (`CgroupTree`, `ServerCgroup`) and the shim; what
the host supports is probed in `actors.limit_support`, and the cgroup files are read and written
by `actors.cgroupfs`. Nothing here runs on a particular thread.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

from actors import cgroupfs
from actors.cgroupfs import LimitError
from actors.limit_support import CGROUP_ENV_VAR, LimitSupport, limit_support
from hub.config import LimitsConfig, Quotas

log = logging.getLogger(__name__)

_PAGE_SLACK = 64 * 1024  # a peak this close to a memory limit reached it (charges go by pages)
_SHIM = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ >"$1" || exit 125; n=$((n - 1)); shift; done; '
    '[ -z "$1" ] || ulimit -d "$1" || exit 125; shift; exec "$@"'
)
_sequence = itertools.count(1)


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
        name = f"{cgroupfs.PREFIX}{os.getpid()}-{next(_sequence)}"
        roots = {}
        try:
            for parent in sorted(set(support.cgroups.values())):
                cgroupfs.sweep(parent)
                if support.version == 2:
                    cgroupfs.delegate(parent, [c for c, p in support.cgroups.items() if p == parent])
            for controller, parent in support.cgroups.items():
                roots[controller] = path = os.path.join(parent, name)
                os.makedirs(path, exist_ok=True)
                if support.version == 2:
                    cgroupfs.delegate(path, list(support.cgroups))
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
            cgroupfs.make(path, list(self._roots) if self.support.version == 2 else None)
            if controller in wanted:
                cgroupfs.set_limit(self.support.version, path, controller, wanted[controller])
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
                    value = cgroupfs.number(os.path.join(root, cgroupfs.folder_name(tenant), name))
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
        label = f"{cgroupfs.folder_name(server)}.{next(_sequence)}"
        paths = {}
        try:
            for controller, path in self._folders(tenant, label):
                paths[controller] = path
                cgroupfs.make(path)
                value = {"memory": limits.memory_mb, "pids": limits.processes, "cpu": limits.cpu}[controller]
                cgroupfs.set_limit(self.support.version, path, controller, value)
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
            cgroupfs.remove_tree(path)

    def _folders(self, *parts: str) -> Iterator[tuple[str, str]]:
        for controller, root in self._roots.items():
            yield controller, os.path.join(root, *(cgroupfs.folder_name(p) for p in parts))


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
        return cgroupfs.flat_field(os.path.join(memory, name), "oom_kill") > 0

    def hit_own_memory_limit(self) -> bool:
        """Whether this cgroup's own memory limit was reached (not only its tenant's)."""
        memory = self.paths.get("memory")
        if memory is None:
            return False
        if self.version == 2:
            return cgroupfs.flat_field(os.path.join(memory, "memory.events"), "max") > 0
        # (v1's failcnt stays 0 on some kernels when the OOM killer, not reclaim, ends the charge:
        # its peak reaching its limit is what says so.)
        try:
            peak = cgroupfs.number(os.path.join(memory, "memory.max_usage_in_bytes"))
            limit = cgroupfs.number(os.path.join(memory, "memory.limit_in_bytes"))
        except (OSError, ValueError):
            return False
        return peak >= limit - _PAGE_SLACK

    def remove(self) -> None:
        """Remove its folders, once their last processes are gone (blocks up to `timeouts.CGROUP_EMPTY` s for
        them: a sandbox's processes die just after bwrap; what is still busy then is left to the
        tree's removal)."""
        for path in set(self.paths.values()):
            cgroupfs.remove_tree(path)


def shim(group: ServerCgroup | None, limits: LimitsConfig) -> list[str]:
    """The argv prefix that puts a server in `group` (if any) and, where no memory cgroup holds
    its memory limit, sets it as its data-size rlimit; [] when there is nothing to do."""
    procs = group.procs() if group is not None else []
    floor = limits.memory_mb is not None and (group is None or "memory" not in group.paths)
    data_kb = str(limits.memory_mb * 1024) if floor and limits.memory_mb is not None else ""
    if not procs and not data_kb:
        return []
    return ["/bin/sh", "-c", _SHIM, "mcp-hub-limits", str(len(procs)), *procs, data_kb]


__all__ = [
    "CGROUP_ENV_VAR",
    "CgroupTree",
    "LimitError",
    "LimitSupport",
    "ServerCgroup",
    "limit_support",
    "shim",
]
