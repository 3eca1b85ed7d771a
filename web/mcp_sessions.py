"""What 2025-11-25 MCP sessions over HTTP may cost: how many per key and per tenant, and how long
one may live unused.

Each session holds a task, streams and the SDK's state (43-72 KB) until it ends. A key may hold
`gateway.mcp_max_sessions_per_key` sessions (an open hub counts as one key) and a tenant
`gateway.mcp_max_sessions_per_tenant`, sessions being opened included; past either, a request
that would open one is 429 with a JSON-RPC error. A session that has made no request since its
`initialize` (`notifications/initialized` does not count) within
`gateway.mcp_unused_session_timeout` is ended; one in use lives until `DELETE` or
`gateway.mcp_session_idle_timeout`. Runs on the web loop.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from hub.config import GatewayConfig
from hub.errors import TooManySessions

OPEN_HUB = "(open hub)"  # the key bucket of requests without a key


def opens_session(method: str, session_id: str | None, protocol_version: str | None) -> bool:
    """Whether the SDK opens a 2025-11-25 session for this request (a POST without a session of
    the handshake era; 2026-07-28 requests have none)."""
    legacy = protocol_version is None or protocol_version in HANDSHAKE_PROTOCOL_VERSIONS
    return method == "POST" and not session_id and legacy


def is_initialized_notice(body: bytes | None) -> bool:
    """Whether a POST body is only the `notifications/initialized` notification (which does not
    make a session used)."""
    if not body or len(body) > 4096 or b"notifications/initialized" not in body:
        return False
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return isinstance(message, dict) and message.get("method") == "notifications/initialized"


@dataclass
class _Held:
    key: str
    tenant: str
    expiry: asyncio.TimerHandle | None  # None once the session made a request


class SessionLimits:
    """The sessions each key and tenant holds, and the timers of unused ones. Web loop.

    Args:
        gateway: the limits and the unused timeout.
        end: ends a session by id (the session manager's), when it expires unused.
    """

    def __init__(self, gateway: GatewayConfig, end: Callable[[str], None]) -> None:
        self.gateway = gateway
        self._end = end
        self._held: dict[str, _Held] = {}
        self._keys: Counter[str] = Counter()
        self._tenants: Counter[str] = Counter()

    def refusal(self, key: str | None, tenant: str) -> TooManySessions | None:
        """Why `key` may not open another session of `tenant` now, or None."""
        gateway = self.gateway
        bucket = key or OPEN_HUB
        if self._keys[bucket] >= gateway.mcp_max_sessions_per_key:
            return TooManySessions(
                f"this key holds {self._keys[bucket]} MCP sessions, the most allowed "
                "(gateway.mcp_max_sessions_per_key): end one with DELETE or let one expire",
                retry_after=gateway.mcp_unused_session_timeout,
            )
        if self._tenants[tenant] >= gateway.mcp_max_sessions_per_tenant:
            return TooManySessions(
                f"tenant '{tenant}' holds {self._tenants[tenant]} MCP sessions, the most allowed "
                "(gateway.mcp_max_sessions_per_tenant)",
                retry_after=gateway.mcp_unused_session_timeout,
            )
        return None

    def opening(self, key: str | None, tenant: str, delta: int) -> None:
        """A request that may open a session starts (`delta` 1) or ends (-1): it counts meanwhile."""
        self._keys[key or OPEN_HUB] += delta
        self._tenants[tenant] += delta

    def opened(self, session_id: str, key: str | None, tenant: str) -> None:
        """The SDK opened `session_id` for `key` in `tenant`: it counts until it ends."""
        if session_id in self._held:
            return
        expiry = asyncio.get_running_loop().call_later(
            self.gateway.mcp_unused_session_timeout, self._expire, session_id
        )
        self._held[session_id] = _Held(key or OPEN_HUB, tenant, expiry)
        self._keys[key or OPEN_HUB] += 1
        self._tenants[tenant] += 1

    def used(self, session_id: str) -> None:
        """`session_id` made a request: it no longer expires unused."""
        held = self._held.get(session_id)
        if held is not None and held.expiry is not None:
            held.expiry.cancel()
            held.expiry = None

    def ended(self, session_id: str) -> None:
        """`session_id` ended, however it ended."""
        held = self._held.pop(session_id, None)
        if held is None:
            return
        if held.expiry is not None:
            held.expiry.cancel()
        for counter, name in ((self._keys, held.key), (self._tenants, held.tenant)):
            counter[name] -= 1
            if counter[name] <= 0:
                del counter[name]

    def count(self) -> int:
        """Sessions held now."""
        return len(self._held)

    def _expire(self, session_id: str) -> None:
        held = self._held.get(session_id)
        if held is not None and held.expiry is not None:
            held.expiry = None
            self._end(session_id)
