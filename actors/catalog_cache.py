"""The catalog cache: what a server offered when it last ran, listed while an on_demand one is stopped.

One JSON file per server, `<data_dir>/catalogs/<tenant>/<server>.json`, rewritten whenever a live
discovery (a start, a list_changed refresh) finds something new. Every server writes it, so a
server switched to `on_demand` by a reload keeps its catalog; only on_demand servers read it.
Writes are atomic: a temporary file in the same folder, then `os.replace`, so a reader sees the
old file or the new one, never half of one. (No fsync: after a power loss the file may be empty,
which reads as "no cache", which is safe.)

A file holds the catalog's tools, resources, templates and prompts, and the server's declared
capabilities and instructions (absent from files of older hubs: read as unknown).

Each file records the server's *spec key*, a hash of the settings that decide what a server
offers: command, args, cwd, transport, url, protocol, capabilities, the tool filter, and the
*names* (never the values) of its tenant's and its own `env` and its `headers`. A file written
for another spec, unreadable or malformed, is logged and treated as no cache.

Runs on the server's loop thread (reads and writes are small and rare).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from actors.models import NamedEntry, ServerCatalog, ToolEntry
from hub.config import SecretMap, ServerConfig

log = logging.getLogger(__name__)

FORMAT = 1
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def spec_key(config: ServerConfig, tenant_env: SecretMap) -> str:
    """A hash of what decides a server's catalog; a cache written under another key is not used."""
    spec = {
        "command": config.command,
        "args": list(config.args),
        "cwd": config.cwd,
        "transport": config.transport,
        "url": config.url,
        "protocol": config.protocol,
        "capabilities": sorted(config.capabilities),
        "tools": [list(config.tools.allow), list(config.tools.deny)],
        # Names only: no secret value, not even hashed, goes to disk.
        "env": sorted({*tenant_env, *config.env}),
        "headers": sorted(config.headers),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def safe_name(name: str) -> str:
    """`name` as a file name: itself if it is plain (`[A-Za-z0-9_-]`), else a hash of it."""
    if _SAFE_NAME.fullmatch(name):
        return name
    return "_" + hashlib.sha256(name.encode()).hexdigest()[:16]


def cache_path(root: Path, tenant: str, server: str) -> Path:
    """Where the catalog of `tenant`/`server` is cached under `root` (`<data_dir>/catalogs`)."""
    return root / safe_name(tenant) / f"{safe_name(server)}.json"


class CatalogCache:
    """The cache file of one server, for one spec key.

    Args:
        path: the file (see `cache_path`).
        tenant: the server's tenant.
        server: the server's name.
        key: the server's current `spec_key`.
    """

    def __init__(self, path: Path, tenant: str, server: str, key: str) -> None:
        self.path = path
        self.tenant = tenant
        self.server = server
        self.key = key

    def load(self) -> ServerCatalog | None:
        """The cached catalog (marked `cached`), or None if there is none that can be used."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            log.warning("catalog cache %s is unreadable, ignored: %s", self.path, exc)
            return None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            log.warning("catalog cache %s has an unknown format, ignored", self.path)
            return None
        if data.get("spec") != self.key:
            log.info(
                "catalog cache of %s/%s was written for another configuration, ignored",
                self.tenant,
                self.server,
            )
            return None
        try:
            return self._catalog(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("catalog cache %s is malformed, ignored: %r", self.path, exc)
            return None

    def save(self, catalog: ServerCatalog) -> None:
        """Replace the file with `catalog` (atomically); a failure is logged, never raised."""
        data = {
            "format": FORMAT,
            "tenant": self.tenant,
            "server": self.server,
            "spec": self.key,
            "saved_at": time.time(),
            **catalog_json(catalog),
        }
        temp: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, separators=(",", ":"))
            os.replace(temp, self.path)
            temp = None
        except (OSError, TypeError, ValueError) as exc:  # a cache that cannot be written is only a cache
            log.warning("cannot write the catalog cache %s: %s", self.path, exc)
        finally:
            if temp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temp)

    def _catalog(self, data: dict[str, Any]) -> ServerCatalog:
        return catalog_of(self.tenant, self.server, data, cached=True)


def catalog_json(catalog: ServerCatalog) -> dict[str, Any]:
    """What `catalog` offers as JSON (tools, resources, templates, prompts, capabilities,
    instructions): the cache's format, and what a cluster's replicas publish (`hub.cluster_catalog`)."""
    return {
        "tools": [_tool_json(t) for t in catalog.tools],
        "resources": [_named_json(r) for r in catalog.resources],
        "resource_templates": [_named_json(r) for r in catalog.resource_templates],
        "prompts": [_named_json(p) for p in catalog.prompts],
        "capabilities": dict(catalog.capabilities) if catalog.capabilities is not None else None,
        "instructions": catalog.instructions,
    }


def catalog_of(
    tenant: str, server: str, data: dict[str, Any], cached: bool = False, seq: int = 0
) -> ServerCatalog:
    """The catalog that `catalog_json` wrote, as `tenant`'s `server`'s.

    Raises:
        KeyError, TypeError, ValueError, AttributeError: `data` is malformed.
    """

    def named(items: Any) -> tuple[NamedEntry, ...]:
        return tuple(NamedEntry(tenant, server, _text(item["name"]), dict(item["raw"])) for item in items)

    tools = tuple(
        ToolEntry(
            tenant=tenant,
            server=server,
            name=_text(t["name"]),
            description=t.get("description"),
            title=t.get("title"),
            input_schema=dict(t.get("input_schema") or {}),
            output_schema=dict(t["output_schema"]) if t.get("output_schema") else None,
            annotations=dict(t["annotations"]) if t.get("annotations") else None,
            meta=dict(t["meta"]) if t.get("meta") else None,
        )
        for t in data["tools"]
    )
    return ServerCatalog(
        tenant,
        server,
        tools,
        named(data["resources"]),
        named(data["resource_templates"]),
        named(data["prompts"]),
        cached=cached,
        seq=seq,
        capabilities=_capabilities(data.get("capabilities")),
        instructions=_optional_text(data.get("instructions")),
    )


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a name, got {value!r}")
    return value


def _capabilities(value: Any) -> dict[str, Any] | None:
    """The cached capabilities (None in a file written before the hub cached them)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"expected capabilities as an object, got {value!r}")
    return value


def _optional_text(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"expected text, got {value!r}")
    return value


def _tool_json(tool: ToolEntry) -> dict[str, Any]:
    return {
        "name": tool.name,
        "description": tool.description,
        "title": tool.title,
        "input_schema": tool.input_schema,
        "output_schema": tool.output_schema,
        "annotations": tool.annotations,
        "meta": tool.meta,
    }


def _named_json(entry: NamedEntry) -> dict[str, Any]:
    return {"name": entry.name, "raw": entry.raw}
