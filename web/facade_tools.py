"""What one facade scope (`web.facade_scope.Scope`) shows (`ToolView`), built once per catalog
change and kept per scope (`ToolViews`).

A view holds the catalogs the scope sees, maps each tool name it shows to its catalog id, and
holds the `types.Tool` list that `tools/list` answers, the input schemas the SDK checks
`Mcp-Param-*` headers against, and the capabilities and instructions its clients are told.
Views are read on the serving loop; a catalog change drops the tenant's views from the router's
thread (`ToolViews.drop`), and a view built from catalogs read before a change is not kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import mcp.types as types

from actors.models import ServerCatalog, ToolEntry
from web.facade_scope import Scope, capabilities_of, instructions_of


@dataclass(frozen=True)
class ToolView:
    """What one scope shows, built once per catalog change."""

    catalogs: tuple[ServerCatalog, ...]  # those the scope sees
    ids: Mapping[str, str]  # tool name as shown → catalog id
    tools: tuple[types.Tool, ...]
    schemas: Mapping[str, Mapping[str, Any]]  # tool name as shown → input schema
    prompts: Mapping[str, tuple[str, str]]  # prompt name as shown → (server, its own name)
    capabilities: types.ServerCapabilities
    instructions: str | None

    def catalog(self, server: str) -> ServerCatalog | None:
        """The catalog of `server`, if this view sees it."""
        return next((c for c in self.catalogs if c.server == server), None)


def facade_tool(scope: Scope, server: str, name: str, entry: ToolEntry) -> types.Tool:
    """`entry` of `server` as `scope` lists it, under name `name` (its `ui://` view, if any,
    under the URI the scope shows)."""
    meta = dict(entry.meta) if entry.meta else None
    ui = (meta or {}).get("ui")
    if isinstance(ui, dict) and isinstance(ui.get("resourceUri"), str):
        meta = {**(meta or {}), "ui": {**ui, "resourceUri": scope.uri(server, ui["resourceUri"])}}
    return types.Tool.model_validate(
        {
            "name": name,
            "title": entry.title,
            "description": scope.description(server, entry.description),
            "inputSchema": entry.input_schema or {"type": "object"},
            "outputSchema": entry.output_schema,
            "annotations": entry.annotations,
            "_meta": meta,
        }
    )


def tool_view(scope: Scope, catalogs: tuple[ServerCatalog, ...], sep: str) -> ToolView:
    """The view of `scope` over its tenant's `catalogs`, names joined with `sep` (aggregated)."""
    shown = scope.shown(catalogs)
    ids: dict[str, str] = {}
    tools: list[types.Tool] = []
    for catalog in shown:
        for entry in catalog.tools:
            name = scope.name(catalog.server, entry.name, sep)
            ids[name] = entry.id
            tools.append(facade_tool(scope, catalog.server, name, entry))
        for held in catalog.held:  # (`hub.pins`: not listed, but a call of it is told why it is refused)
            ids.setdefault(scope.name(catalog.server, held, sep), f"{catalog.server}.{held}")
    return ToolView(
        shown,
        ids,
        tuple(tools),
        {t.name: t.input_schema for t in tools},
        {scope.name(c.server, p.name, sep): (c.server, p.name) for c in shown for p in c.prompts},
        capabilities_of(scope, shown),
        instructions_of(scope, shown),
    )


class ToolViews:
    """Each scope's `ToolView`, kept until its tenant's catalog changes.

    Read and built on the serving loop; `drop` runs on the router's thread (a board listener). A
    generation count, raised by every drop, keeps a view built from catalogs read before a change
    from being kept after it.
    """

    def __init__(self, sep: str) -> None:
        self.sep = sep
        self._views: dict[Scope, ToolView] = {}
        self._generation = 0

    def get(self, scope: Scope) -> ToolView | None:
        """`scope`'s kept view, if any."""
        return self._views.get(scope)

    @property
    def generation(self) -> int:
        """The generation a view about to be built belongs to (read it before the catalogs)."""
        return self._generation

    def keep(self, scope: Scope, generation: int, catalogs: tuple[ServerCatalog, ...]) -> ToolView:
        """The view of `catalogs`, kept for `scope` unless a catalog changed since `generation`."""
        view = tool_view(scope, catalogs, self.sep)
        if generation == self._generation:
            self._views[scope] = view
        return view

    def drop(self, tenant: str) -> None:
        """`tenant`'s catalog changed: its views are built anew when next asked for (router thread)."""
        self._generation += 1
        for scope in list(self._views):  # (a copy: the serving loop may add a view meanwhile)
            if scope.tenant == tenant:
                self._views.pop(scope, None)
