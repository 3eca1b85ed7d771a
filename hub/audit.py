"""The audit log: one JSON line per tool call and per administrative change (a configuration edit,
an approval), to `audit.file` (nothing when it is not set).

A line says when, which tenant, which key (its id: a hash prefix, never the key), whom it acts
for (`subject`: a key's `subject`, a token's user; "-" for none), which tool, how long and with
what outcome (`denied` for a tool the caller may not call, which it was told does not exist);
the arguments only when `audit.include_arguments` is true.
Written from whatever thread finishes the call (the logging module serialises the writes).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.config import AuditConfig

if TYPE_CHECKING:
    from hub.permissions import Who


class AuditLog:
    """Appends audit lines to the configured file, or does nothing."""

    def __init__(self, config: AuditConfig) -> None:
        self.config = config
        self._logger: logging.Logger | None = None
        self._handler: logging.Handler | None = None
        if config.file:
            Path(config.file).parent.mkdir(parents=True, exist_ok=True)
            self._handler = logging.FileHandler(config.file, encoding="utf-8")
            self._handler.setFormatter(logging.Formatter("%(message)s"))
            self._logger = logging.Logger(f"mcp_hub.audit.{id(self)}")  # not in the logging tree
            self._logger.addHandler(self._handler)

    def record(
        self,
        tenant: str,
        key: str | None,
        tool: str,
        seconds: float,
        outcome: str,
        arguments: Any = None,
        subject: str | None = None,
    ) -> None:
        """Write one line for a finished call."""
        if self._logger is None:
            return
        line: dict[str, Any] = {
            "time": _now(),
            "tenant": tenant,
            "key": key or "-",
            "subject": subject or "-",
            "tool": tool,
            "duration_ms": round(seconds * 1000, 3),
            "outcome": outcome,
        }
        if self.config.include_arguments:
            line["arguments"] = arguments
        self._logger.info(json.dumps(line, ensure_ascii=False, default=str))

    def record_change(self, who: Who | None, action: str, **fields: Any) -> None:
        """Write one line for an administrative change (`action`, e.g. `put_server`), naming who
        made it (its key's id and subject: "hub" for the hub itself) and what it touched
        (`fields`: tenant, server, outcome...; never a secret)."""
        if self._logger is None:
            return
        line: dict[str, Any] = {
            "time": _now(),
            "event": "admin",
            "action": action,
            "key": (who.key_id if who is not None else None) or "-",
            "subject": (who.subject if who is not None else "hub") or "-",
            **fields,
        }
        self._logger.info(json.dumps(line, ensure_ascii=False, default=str))

    def close(self) -> None:
        """Flush and close the file."""
        if self._handler is not None:
            self._handler.close()


def _now() -> str:
    """The time of a line: UTC, to the millisecond."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


@dataclass(frozen=True)
class Audited:
    """Who a call is audited as: its key's id and, if known, its caller's subject."""

    key: str | None
    caller: Who | None

    def record(
        self, audit: AuditLog, tenant: str, tool_id: str, seconds: float, outcome: str, arguments: Any
    ) -> None:
        """One audit line for this caller's call of `tool_id`."""
        audit.record(tenant, self.key, tool_id, seconds, outcome, arguments, self.subject)

    @property
    def subject(self) -> str | None:
        """The caller's subject, if known (the user a per_user server's instance is for)."""
        return self.caller.subject if self.caller is not None else None
