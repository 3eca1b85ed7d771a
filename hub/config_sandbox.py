"""The sandbox section of the configuration: `SandboxConfig`, its binds and its resource limits.

It applies at three levels (orchestrator, tenant, server), each overriding the level above key by
key (`SandboxConfig.merged`); `hub.config` merges them as it loads a file, so a `ServerConfig`'s
`sandbox` is the one in effect. `actors.sandbox` and `actors.limits` apply it.

Pure data: safe to use from any thread.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from hub.config_fields import BindPath, ConfigModel, PositiveOrNone


class SandboxBind(ConfigModel):
    """A host path shown inside a server's sandbox, at the same path: read-only or read-write."""

    path: BindPath = Field(
        description="A file or folder that must exist; relative to the configuration file's folder. "
        "Nothing inside the hub's data directory (its logs, caches, homes) can be bound."
    )
    mode: Literal["ro", "rw"] = Field(default="ro", description="ro: read-only; rw: read-write.")


class LimitsConfig(ConfigModel):
    """Resource limits of each stdio server (each its own, its children included), sandboxed or
    not; key by key over the level above. null or absent: unlimited. The tenant's quotas
    max_memory_mb and max_processes bound the sum of its servers. Enforced with cgroups (v2, or the
    v1 controllers the host mounts) where the hub may create them; without a memory cgroup,
    memory_mb becomes each process's data-size rlimit (coarser: see docs/security.md), and
    processes and cpu are not enforced. `hub check` and /health say what this host enforces."""

    memory_mb: PositiveOrNone = Field(
        default=None,
        description="Memory (MiB) of the server and its children: past it the kernel kills it, its "
        "last_error says `killed: out of memory (limit N MB)`, and it restarts with backoff like any "
        "crash. (Without a memory cgroup: each process's data size, where an allocation past it fails "
        "instead.)",
    )
    processes: PositiveOrNone = Field(
        default=None,
        description="Processes and threads the server may have at once (its sandbox's init included): "
        "past it fork() and thread creation fail inside it (a fork bomb stops there).",
    )
    cpu: float | None = Field(
        default=None,
        gt=0,
        description="CPU time it may use, in CPUs (0.5: half of one CPU; 2: two): past it the server "
        "is throttled, not killed.",
    )

    @property
    def any(self) -> bool:
        """Whether any limit is set."""
        return any(v is not None for v in (self.memory_mb, self.processes, self.cpu))

    def describe(self) -> str:
        """ "memory 256 MB, 64 processes, 0.5 CPU" (only the limits set)."""
        parts = [f"memory {self.memory_mb} MB"] if self.memory_mb is not None else []
        parts += [f"{self.processes} processes"] if self.processes is not None else []
        parts += [f"{self.cpu:g} CPU"] if self.cpu is not None else []
        return ", ".join(parts) or "none"


class SandboxConfig(ConfigModel):
    """The sandbox of stdio servers (bubblewrap; see docs/security.md). Under orchestrator: the
    defaults; under a tenant or a server: overrides of the level above, key by key, whose binds add
    to its binds."""

    enabled: bool = Field(
        default=True,
        description="Run each stdio server in its own sandbox: own PID, IPC and UTS namespaces (it sees "
        "and signals only its own processes), no capabilities, a new session, killed with the hub; "
        "system folders and the hub's Python read-only, a private /tmp, a writable home per tenant "
        "(`<data_dir>/homes/<tenant>`, its HOME and, without cwd, its working directory), its cwd and "
        "binds; never the configuration file, the data directory, other tenants' homes or the hub's "
        "home. Where the host cannot sandbox (no bwrap, namespaces refused), see required. false: the "
        "server runs as the hub's user with the hub's view, as without a sandbox.",
    )
    required: bool = Field(
        default=False,
        description="true: a server that cannot be sandboxed on this host is not started (state failed, "
        "last_error says why). false: it runs unsandboxed, with one warning in the hub's log and a line "
        "in the server's log.",
    )
    network: Literal["host", "none"] = Field(
        default="host",
        description="host: the host's network (loopback included: the hub's own listeners and other "
        "local services are reachable). none: an empty network namespace, with only its own loopback.",
    )
    binds: tuple[SandboxBind, ...] = Field(
        default=(),
        description="Host paths the server sees, at the same path. The server's cwd, if set, is bound "
        "read-write (bind it with mode ro to make it read-only) unless it lies in a read-only system "
        "folder.",
    )
    limits: LimitsConfig = Field(default_factory=LimitsConfig)

    def merged(self, override: SandboxConfig) -> SandboxConfig:
        """This sandbox overridden by the keys `override` (the level below) sets: its binds add to
        these, a later bind of the same path replacing the earlier (and coming last), and its
        limits override these key by key."""
        given = override.model_fields_set
        if not given:
            return self
        binds = {b.path: b for b in self.binds}
        for bind in override.binds:
            binds.pop(bind.path, None)  # (re-inserted last: the order says which bind wins)
            binds[bind.path] = bind
        update: dict[str, Any] = {k: getattr(override, k) for k in given & {"enabled", "required", "network"}}
        if "limits" in given:
            limits = override.limits
            update["limits"] = self.limits.model_copy(
                update={k: getattr(limits, k) for k in limits.model_fields_set}
            )
        return self.model_copy(update={**update, "binds": tuple(binds.values())})
