"""MCP Apps: the tools of upstream servers that come with a `ui://` view (extension
`io.modelcontextprotocol/ui`), as the hub lists them.

A tool whose `_meta.ui.resourceUri` names a `ui://` resource is an MCP App. `GET /api/apps` lists
it (`"kind": "mcp_app"`) next to the apps of `plugins_dir` (`web.apps`), and
`GET /ui/{tenant}/{server}/{tool}` opens it in the browser host (`web.ui_host`).

Pure functions of the catalog; `ui_apps` asks the router (blocking: call it off the web loop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from actors.models import ToolEntry
from hub import permissions
from hub.runtime import Hub
from web import responses as api


def view_uri(tool: ToolEntry) -> str | None:
    """The `ui://` resource of a tool that a user opens (app-only tools are not entry points)."""
    meta = tool.meta or {}
    ui: dict[str, Any] = meta["ui"] if isinstance(meta.get("ui"), dict) else {}
    uri = ui.get("resourceUri") or meta.get("ui/resourceUri")
    visibility = ui.get("visibility")
    if isinstance(visibility, list) and "model" not in visibility:
        return None
    return uri if isinstance(uri, str) and uri.startswith("ui://") else None


def app_visible(tool: ToolEntry) -> bool:
    """Whether a view may call `tool` (`_meta.ui.visibility` absent, or naming "app")."""
    ui = (tool.meta or {}).get("ui")
    visibility = ui.get("visibility") if isinstance(ui, dict) else None
    return not isinstance(visibility, list) or "app" in visibility


@dataclass(frozen=True)
class UiApp:
    """One MCP App: a tool of a tenant's server and the `ui://` view that shows its result."""

    tool: ToolEntry
    resource_uri: str

    @property
    def id(self) -> str:
        return f"ui:{self.tool.tenant}:{self.tool.id}"

    @property
    def url(self) -> str:
        parts = (self.tool.tenant, self.tool.server, self.tool.name)
        return "/ui/" + "/".join(quote(p, safe="") for p in parts)

    def to_json(self) -> api.McpApp:
        """The app as `/api/apps` shows it."""
        return {
            "id": self.id,
            "kind": "mcp_app",
            "name": self.tool.title or self.tool.name,
            "description": self.tool.description or "",
            "tenants": [self.tool.tenant],
            "server": self.tool.server,
            "tool": self.tool.name,
            "resource_uri": self.resource_uri,
            "url": self.url,
        }


def ui_apps(hub_: Hub, tenants: list[str], caller: permissions.Permits | None = None) -> list[UiApp]:
    """The MCP Apps of `tenants`' running servers whose tools `caller` may call (blocking: asks the
    router)."""
    wanted = set(tenants)
    tools = hub_.tools(tenants[0]) if len(tenants) == 1 else hub_.tools(None)  # one ask either way
    tools = permissions.tools(tools, caller)
    return [UiApp(t, uri) for t in tools if t.tenant in wanted and (uri := view_uri(t)) is not None]
