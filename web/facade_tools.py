"""One tenant's tools as the MCP facade shows them (`ToolView`), built once per catalog change and
kept per tenant (`ToolViews`).

A view maps each facade name (`web.facade_names`) to its catalog id and holds the `types.Tool`
list that `tools/list` answers and the input schemas the SDK checks `Mcp-Param-*` headers against.
Views are read on the serving loop; a catalog change drops the tenant's view from the router's
thread (`ToolViews.drop`), and a view built from catalogs read before a change is not kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import mcp.types as types

from actors.models import ServerCatalog, ToolEntry
from web.facade_names import facade_name, facade_uri


@dataclass(frozen=True)
class ToolView:
    """One tenant's tools as the facade shows them, built once per catalog change."""

    ids: Mapping[str, str]  # facade name → catalog id
    tools: tuple[types.Tool, ...]
    schemas: Mapping[str, Mapping[str, Any]]  # facade name → input schema


def facade_tool(server: str, name: str, entry: ToolEntry) -> types.Tool:
    """`entry` of `server` as the facade lists it, under facade name `name` (its `ui://` view, if
    any, under its facade URI)."""
    meta = dict(entry.meta) if entry.meta else None
    ui = (meta or {}).get("ui")
    if isinstance(ui, dict) and isinstance(ui.get("resourceUri"), str):
        meta = {**(meta or {}), "ui": {**ui, "resourceUri": facade_uri(server, ui["resourceUri"])}}
    return types.Tool.model_validate(
        {
            "name": name,
            "title": entry.title,
            "description": f"[{server}] {entry.description or ''}".strip(),
            "inputSchema": entry.input_schema or {"type": "object"},
            "outputSchema": entry.output_schema,
            "annotations": entry.annotations,
            "_meta": meta,
        }
    )


def tool_view(catalogs: tuple[ServerCatalog, ...], sep: str) -> ToolView:
    """The view of a tenant's `catalogs`, names joined with `sep`."""
    ids: dict[str, str] = {}
    tools: list[types.Tool] = []
    for catalog in catalogs:
        for entry in catalog.tools:
            name = facade_name(catalog.server, entry.name, sep)
            ids[name] = entry.id
            tools.append(facade_tool(catalog.server, name, entry))
    return ToolView(ids, tuple(tools), {t.name: t.input_schema for t in tools})


class ToolViews:
    """Each tenant's `ToolView`, kept until its catalog changes.

    Read and built on the serving loop; `drop` runs on the router's thread (a board listener). A
    generation count, raised by every drop, keeps a view built from catalogs read before a change
    from being kept after it.
    """

    def __init__(self, sep: str) -> None:
        self.sep = sep
        self._views: dict[str, ToolView] = {}
        self._generation = 0

    def get(self, tenant: str) -> ToolView | None:
        """`tenant`'s kept view, if any."""
        return self._views.get(tenant)

    @property
    def generation(self) -> int:
        """The generation a view about to be built belongs to (read it before the catalogs)."""
        return self._generation

    def keep(self, tenant: str, generation: int, catalogs: tuple[ServerCatalog, ...]) -> ToolView:
        """The view of `catalogs`, kept for `tenant` unless a catalog changed since `generation`."""
        view = tool_view(catalogs, self.sep)
        if generation == self._generation:
            self._views[tenant] = view
        return view

    def drop(self, tenant: str) -> None:
        """`tenant`'s catalog changed: its view is built anew when next asked for (router thread)."""
        self._generation += 1
        self._views.pop(tenant, None)
