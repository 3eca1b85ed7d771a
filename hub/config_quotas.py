"""A tenant's quotas (`tenants.<t>.quotas`): how much of the hub its servers and callers may use.

Pure data: safe to use from any thread.
"""

from __future__ import annotations

from pydantic import Field

from hub.config_fields import ConfigModel, PositiveOrNone


class Quotas(ConfigModel):
    """Per-tenant limits; null or absent means unlimited."""

    max_servers: PositiveOrNone = None
    max_tools: PositiveOrNone = None
    max_concurrent_calls: PositiveOrNone = None
    max_calls_per_minute: PositiveOrNone = None
    max_sessions_per_server: PositiveOrNone = Field(
        default=None,
        description="Instances of each per_session server that may run at once (one per session); a "
        "session past it gets 429 quota_exceeded. Session instances do not count toward max_servers.",
    )
    max_memory_mb: PositiveOrNone = Field(
        default=None,
        description="Memory (MiB) all the tenant's stdio servers together may use, their children "
        "included: past it the kernel kills one of them (the server's last_error says so) and it "
        "restarts with backoff. Needs a memory cgroup the hub may create (see docs/security.md, "
        "Resource limits); where there is none it is not enforced, and `hub check` and /health say so.",
    )
    max_processes: PositiveOrNone = Field(
        default=None,
        description="Processes and threads all the tenant's stdio servers together may have at once: "
        "past it fork() and thread creation fail inside them. Needs a pids cgroup the hub may create; "
        "otherwise not enforced (`hub check` says so).",
    )
