"""What this host lets the hub enforce of servers' resource limits, and how (`LimitSupport`).

The probe (`limit_support`) looks for the cgroup controllers the hub may create cgroups with:
cgroup v2, or the v1 hierarchies the host mounts, under the cgroup the hub runs in; where there
is none, the memory limit falls back to a per-process rlimit (`actors.limits`). It runs once per
process, on whichever thread asks first.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass

from actors.cgroupfs import CONTROLLERS, PREFIX
from hub.config import HubConfig

CGROUP_ENV_VAR = "MCP_HUB_CGROUPS"  # "off": never use cgroups (the rlimit floor alone)


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
    names = ", ".join(c for c in CONTROLLERS if c in found)
    missing = [c for c in CONTROLLERS if c not in found]
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
        for controller in CONTROLLERS:
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
    return {c: root for c in CONTROLLERS if c in available}


def _writable(path: str, why: list[str]) -> bool:
    """Whether a cgroup can be made under `path` (tried: a folder made and removed)."""
    probe = os.path.join(path, f"{PREFIX}probe-{os.getpid()}")
    try:
        os.mkdir(probe)
        os.rmdir(probe)
    except OSError as exc:
        why.append(f"{path}: {exc.strerror}")
        return False
    return True
