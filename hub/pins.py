"""Pinned tools: the digests of each server's approved tools, and how a new catalog compares.

The first catalog the hub sees of a server (with `pinning` warn or enforce) is approved on first
sight: each tool's name, title, description, input and output schema and annotations are pinned
(canonical JSON, sha256). A later catalog is screened against those pins: tools added or changed
are reported (a removed tool too, but it holds nothing); under `enforce` the added and changed
ones are *held* (`Screening.held`), which `actors.listing` hides and `actors.calls` refuses. An
admin approves the catalog seen last (it becomes the pins) or rejects it (the pins stay; the
rejected catalog stays held, and is no longer *pending*). docs/security.md, "Pinned tools".

The store keeps one file per tenant, `<data_dir>/pins/<tenant>.json`, written atomically (a
temporary file renamed over it) and read at start (and by `reload`). Thread-safe: every server's
loop screens through it, web threads read and change it; one lock guards everything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.catalog_cache import safe_name
from actors.models import ToolEntry
from hub.errors import NotFound, NothingPending, PreconditionFailed

log = logging.getLogger(__name__)

FORMAT = 1
APPROVED, PENDING, REJECTED, UNPINNED = "approved", "pending_approval", "rejected", "unpinned"
FIELDS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")

Fields = dict[str, Any]  # one tool's pinned fields, by their MCP names


def tool_fields(entry: ToolEntry) -> Fields:
    """What is pinned of a tool: its fields as MCP names them (`_meta` is not: it is the server's
    own bookkeeping, not what a model reads)."""
    values = (
        entry.name,
        entry.title,
        entry.description,
        entry.input_schema,
        entry.output_schema,
        entry.annotations,
    )
    return dict(zip(FIELDS, values, strict=True))


def digest(value: Any) -> str:
    """sha256 of `value` as canonical JSON (sorted keys, no spaces, UTF-8)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def catalog_digest(tools: dict[str, Fields]) -> str:
    """The digest of a whole list of tools: of each tool's digest, by name."""
    return digest({name: digest(fields) for name, fields in tools.items()})


@dataclass(frozen=True)
class Screening:
    """How a catalog compares with its server's pins.

    `state`: approved (nothing differs, or nothing compared), pending_approval, or rejected (this
    very catalog was rejected). `held`: the tools hidden and refused (enforce only). `digest`: the
    catalog's (`catalog_digest`), None when nothing was compared.
    """

    state: str = APPROVED
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    held: tuple[str, ...] = ()
    digest: str | None = None

    @property
    def clear(self) -> bool:
        """Whether the catalog is as approved (or not compared at all)."""
        return self.state == APPROVED

    @property
    def differing(self) -> tuple[str, ...]:
        """Every tool that differs from its pin, added, changed or removed."""
        return (*self.added, *self.changed, *self.removed)


CLEAR = Screening()


def compare(pinned: dict[str, Any], seen: dict[str, Fields], enforce: bool) -> Screening:
    """Screen `seen` (name -> fields) against a server's pinned record."""
    approved: dict[str, Any] = pinned["tools"]
    added = tuple(sorted(n for n in seen if n not in approved))
    changed = tuple(sorted(n for n in seen if n in approved and digest(seen[n]) != approved[n]["digest"]))
    removed = tuple(sorted(n for n in approved if n not in seen))
    if not (added or changed or removed):
        return CLEAR
    whole = catalog_digest(seen)
    state = REJECTED if pinned.get("rejected") == whole else PENDING
    return Screening(state, added, changed, removed, (*added, *changed) if enforce else (), whole)


def _record(seen: dict[str, Fields], by: str) -> dict[str, Any]:
    """A server's pins: each tool's digest and fields, when, and by whom."""
    tools = {name: {"digest": digest(fields), "tool": fields} for name, fields in sorted(seen.items())}
    return {"approved_at": time.time(), "approved_by": by, "tools": tools, "rejected": None}


class PinStore:
    """The pins of every tenant's servers, and the last catalog each server showed.

    Any thread (one lock). `folder` None: nothing is pinned (a hub without a data directory).
    """

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._lock = threading.RLock()
        self._pins: dict[str, dict[str, Any]] = {}  # tenant -> server -> record
        self._seen: dict[tuple[str, str], dict[str, Fields]] = {}  # the last catalog each showed
        self.reload()

    def reload(self) -> None:
        """Read every tenant's file again (at start; after a restore of a backup)."""
        pins: dict[str, dict[str, Any]] = {}
        if self.folder is not None and self.folder.is_dir():
            for path in sorted(self.folder.glob("*.json")):
                try:
                    data = json.loads(path.read_text(encoding="utf-8"))
                    pins[data["tenant"]] = dict(data["servers"])
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    log.error("cannot read the pinned tools %s: %s", path, exc)
        with self._lock:
            self._pins = pins

    def screen(self, tenant: str, server: str, tools: Iterable[ToolEntry], mode: str) -> Screening:
        """Compare a catalog's tools with the server's pins (pinning them if it has none yet).

        Runs on the server's loop. `mode` off compares nothing (and pins nothing).
        """
        if mode == "off" or self.folder is None:
            return CLEAR
        seen = {t.name: tool_fields(t) for t in tools}
        with self._lock:
            self._seen[(tenant, server)] = seen
            pinned = self._pins.setdefault(tenant, {}).get(server)
            if pinned is None:  # trust on first use
                self._pins[tenant][server] = _record(seen, "first_seen")
                self._save(tenant)
                log.info("%s/%s: %d tools pinned on first sight", tenant, server, len(seen))
                return CLEAR
            return compare(pinned, seen, mode == "enforce")

    def approve(self, tenant: str, server: str, expected: str | None, by: str) -> None:
        """Pin the catalog the server showed last (`expected`: its digest, if the caller saw one).

        Raises:
            NotFound: the server has shown no catalog since the hub started.
            NothingPending: it shows what is pinned already.
            PreconditionFailed: it shows another catalog than `expected`.
        """
        with self._lock:
            seen = self._current(tenant, server, expected)
            self._pins.setdefault(tenant, {})[server] = _record(seen, by)
            self._save(tenant)

    def reject(self, tenant: str, server: str, expected: str | None, by: str) -> None:
        """Keep the pins; mark the catalog shown last rejected (its changed tools stay held).

        Raises: as `approve`.
        """
        with self._lock:
            if server not in self._pins.get(tenant, {}):
                raise NothingPending(f"no tools of server '{server}' are pinned")
            seen = self._current(tenant, server, expected)
            record = dict(self._pins[tenant][server], rejected=catalog_digest(seen), rejected_by=by)
            self._pins[tenant][server] = record
            self._save(tenant)

    def _current(self, tenant: str, server: str, expected: str | None) -> dict[str, Fields]:
        seen = self._seen.get((tenant, server))
        if seen is None:
            raise NotFound(f"server '{server}' of tenant '{tenant}' has shown no tools since the hub started")
        pinned = self._pins.get(tenant, {}).get(server)
        if pinned is not None and compare(pinned, seen, False).clear:
            raise NothingPending(f"the tools of server '{server}' are as approved")
        if expected is not None and expected != catalog_digest(seen):
            raise PreconditionFailed(f"the tools of server '{server}' changed again since digest {expected}")
        return seen

    def view(self, tenant: str, server: str) -> dict[str, Any]:
        """The pins of a server, its state and the diff of the catalog it showed last (REST)."""
        with self._lock:
            pinned = self._pins.get(tenant, {}).get(server)
            seen = self._seen.get((tenant, server))
        if pinned is None:
            return {
                "state": UNPINNED,
                "digest": None,
                "approved_at": None,
                "approved_by": None,
                "tools": {},
                "diff": [],
            }
        screening = compare(pinned, seen, False) if seen is not None else CLEAR
        approved = pinned["tools"]
        return {
            "state": screening.state,
            "digest": screening.digest,
            "approved_at": pinned["approved_at"],
            "approved_by": pinned["approved_by"],
            "tools": {name: pin["digest"] for name, pin in approved.items()},
            "diff": _diff(screening, {n: p["tool"] for n, p in approved.items()}, seen or {}),
        }

    def _save(self, tenant: str) -> None:
        """Write the tenant's file atomically (under the lock); a failure is logged."""
        assert self.folder is not None
        path = self.folder / f"{safe_name(tenant)}.json"
        data = {"format": FORMAT, "tenant": tenant, "servers": self._pins.get(tenant, {})}
        temp: str | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=self.folder)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, sort_keys=True, indent=1, ensure_ascii=False, default=str)
            os.replace(temp, path)
            temp = None
        except (OSError, TypeError, ValueError) as exc:
            log.error("cannot write the pinned tools %s: %s", path, exc)
        finally:
            if temp is not None:
                Path(temp).unlink(missing_ok=True)


def _diff(screening: Screening, before: dict[str, Fields], after: dict[str, Fields]) -> list[dict[str, Any]]:
    """Per differing tool: added, changed or removed, and each field that differs, before and after."""
    out: list[dict[str, Any]] = []
    for change, names in (
        ("added", screening.added),
        ("changed", screening.changed),
        ("removed", screening.removed),
    ):
        for name in names:
            old, new = before.get(name, {}), after.get(name, {})
            fields = {
                f: {"before": old.get(f), "after": new.get(f)} for f in FIELDS if old.get(f) != new.get(f)
            }
            out.append({"tool": name, "change": change, "fields": fields})
    return out


@dataclass(frozen=True)
class PinPolicy:
    """What one server screens its catalogs with: the hub's store and its pinning mode."""

    store: PinStore | None
    mode: str = "off"

    def screen(self, tenant: str, server: str, tools: Iterable[ToolEntry]) -> Screening:
        """`PinStore.screen` (nothing compared without a store)."""
        if self.store is None:
            return CLEAR
        return self.store.screen(tenant, server, tools, self.mode)


NO_PINS = PinPolicy(None)
