"""Every fixed time limit of the hub, in seconds, in one place.

The limits a configuration sets (`call_timeout`, `startup_timeout`, `shutdown_grace`,
`idle_timeout`, the gateway's connection timeouts) are in the configuration model
(`hub/config_model.py`); these are the ones it does not, named by what they bound. Pure
constants: safe from any thread.
"""

from __future__ import annotations

# ---------------------------------------------------------------- asks down the actor tree

ASK = 30.0
"""An ask answered from an actor's memory (a route, a status, a catalog, a subscription)."""

LIFECYCLE = 120.0
"""An ask that may wait for processes: stopping a tenant's servers, a reload's reconfigure, the
end of a session's instances, an actor's own stop (each server inside has its own bound below)."""

SERVER_STOP = 10.0
"""A server's stop or wake on its loop, beyond the orchestrator's `shutdown_grace` (the bound
inside the server's actor)."""

SERVER_STOP_ASK = 30.0
"""A tenant's ask that one of its servers stop or start (a start may first wait out a stop),
beyond `shutdown_grace` (the bound outside, longer than `SERVER_STOP`)."""

ACTOR_STOP = 30.0
"""An actor whose servers are already down, to stop."""

TENANT_ACTOR_STOP = 120.0
"""A tenant's actor, to stop (it stops its servers first)."""

LOOP_JOIN = 5.0
"""A server's loop thread, to finish after its loop was told to stop."""

# ---------------------------------------------------------------- child processes

CLOSE_GRACE = 2.0
"""Between closing a stdio server's stdin, SIGTERM and SIGKILL."""

EXIT_GRACE = 1.0
"""A child whose stdout closed, to exit before that counts as its crash."""

PING = 5.0
"""A ping of a server, before the server counts as dead."""

SANDBOX_PROBE = 10.0
"""Each command of the probe that tells whether this host can sandbox (`bwrap --version`, `true`
in a sandbox, `setpriv --help`)."""

WATCHDOG_EXIT = 5.0
"""The orphan watchdog, to exit once the hub closes its pipe (it is killed after)."""

CGROUP_EMPTY = 2.0
"""A cgroup's removal, waiting for the last processes of its server to be gone."""

# ---------------------------------------------------------------- the web frontend

IDEMPOTENCY_KEY_TTL = 600.0
"""How long the hub remembers a tool call's `Idempotency-Key` (`hub.idempotency`): a request
sent again with the same key within it is recognised (run again only if the tool is read-only or
idempotent); after it, the key is new again."""

INPUT_WAIT = 60.0
"""A 2026-07-28 call parked on its server's sampling or elicitation request, for its client's
retry with the answer (`web.mcp_input`); then it is cancelled."""

WEBSOCKET_PING_INTERVAL = 20.0
"""Between the pings the hub sends on each WebSocket."""

WEBSOCKET_PING_TIMEOUT = 20.0
"""A WebSocket ping's answer, before the connection is closed (Tornado warns when this exceeds
the interval)."""
