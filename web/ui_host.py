"""The browser host of MCP Apps (`web.mcp_apps`): `GET /ui/{tenant}/{server}/{tool}` and the host
page's own files.

The hub reads the view's HTML from the originating server and serves a host page that renders it
in a sandboxed iframe (`srcdoc`, scripts allowed, no same-origin: the view cannot reach the hub's
origin, its key, or the page) with a Content-Security-Policy built from the resource's
`_meta.ui.csp` (nothing but inline code and `data:` by default). The host page
(`web/static/ui-host`) speaks the extension's JSON-RPC over `postMessage`: it answers
`ui/initialize`, sends the tool's input and result, and proxies the view's `tools/call` and
`resources/read` to the originating server through the REST API with the caller's key.

Handlers run on the web loop; blocking hub calls go through `ApiHandler.blocking`.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import hub
from actors.models import ToolEntry
from hub import permissions
from hub.errors import NotFound, UpstreamError
from web.base import ApiHandler
from web.mcp_apps import app_visible, view_uri

STATIC = Path(__file__).parent / "static" / "ui-host"
UI_PROTOCOL_VERSION = "2026-01-26"
_SOURCE = re.compile(r"^(https?|wss?)://(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:\d{1,5})?$")
_NONE = "'none'"


def sandbox_csp(csp: Any) -> str:
    """The view's Content-Security-Policy, from `_meta.ui.csp` (`connectDomains`, `resourceDomains`,
    `frameDomains`); anything that is not a plain origin is dropped."""
    csp = csp if isinstance(csp, dict) else {}

    def origins(key: str) -> str:
        values = csp.get(key) if isinstance(csp.get(key), list) else []
        return " ".join(v for v in values if isinstance(v, str) and _SOURCE.match(v))

    resources, connect, frames = (origins(k) for k in ("resourceDomains", "connectDomains", "frameDomains"))
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'unsafe-inline' {resources}".strip(),
            f"style-src 'unsafe-inline' {resources}".strip(),
            f"img-src data: blob: {resources}".strip(),
            f"font-src data: {resources}".strip(),
            f"media-src data: blob: {resources}".strip(),
            f"connect-src {connect or _NONE}",
            f"frame-src {frames or _NONE}",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


def host_csp(view: str) -> str:
    """The host page's policy: its own files, plus what the view's policy allows (an `srcdoc`
    document inherits its parent's policy, so the parent's must not be narrower)."""
    allowed: dict[str, str] = {}
    for directive in view.split("; "):
        name, _, sources = directive.partition(" ")
        allowed[name] = sources.replace(_NONE, "").strip()
    directives = ["default-src 'self'"]
    for name in ("script-src", "style-src", "img-src", "font-src", "media-src", "connect-src", "frame-src"):
        directives.append(f"{name} 'self' {allowed.get(name, '')}".strip())
    return "; ".join([*directives, "base-uri 'none'", "form-action 'none'", "frame-ancestors 'self'"])


def view_html(result: dict[str, Any], uri: str) -> tuple[str, dict[str, Any]]:
    """The HTML of a `resources/read` result and its `_meta.ui`.

    Raises:
        UpstreamError: the server returned no HTML document for `uri`.
    """
    for content in result.get("contents") or []:
        kind = str(content.get("mimeType") or "text/html")
        if not kind.startswith("text/html"):
            continue
        meta = content.get("_meta") or {}
        ui: dict[str, Any] = meta["ui"] if isinstance(meta.get("ui"), dict) else {}
        if isinstance(content.get("text"), str):
            return content["text"], ui
        if isinstance(content.get("blob"), str):
            try:
                return base64.b64decode(content["blob"]).decode("utf-8"), ui
            except ValueError:
                break
    raise UpstreamError(f"the server returned no HTML document for {uri}")


def listed_ui(resources: list[dict[str, Any]], server: str, uri: str) -> Any:
    """The `_meta.ui` of resource `uri` of `server` as the server listed it (`{}` if none)."""
    mine = [r.get("_meta") for r in resources if r["server"] == server and r.get("uri") == uri]
    return (mine[0].get("ui") or {}) if mine and isinstance(mine[0], dict) else {}


def tool_json(entry: ToolEntry) -> dict[str, Any]:
    """The tool of an MCP App as its view gets it (`ui/initialize`)."""
    tool = {
        "name": entry.name,
        "title": entry.title,
        "description": entry.description,
        "inputSchema": entry.input_schema,
    }
    if entry.output_schema:
        tool["outputSchema"] = entry.output_schema
    if entry.meta:
        tool["_meta"] = entry.meta
    return tool


def host_page(config: dict[str, Any]) -> str:
    """The host page, with `config` as `window.MCP_HUB_UI`."""
    page = (STATIC / "host.html").read_text(encoding="utf-8")
    return page.replace("<!--MCP_HUB_UI-->", f"<script>window.MCP_HUB_UI = {_script_json(config)};</script>")


def _script_json(data: Any) -> str:
    """`data` as JSON that cannot end or confuse the script element it is written into."""
    return json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class UiHostHandler(ApiHandler):
    """`GET /ui/{tenant}/{server}/{tool}`: the host page of one MCP App (the key may come as
    `?token=`, as browsers cannot send a header when they open a page)."""

    route = "/ui/{tenant}/{server}/{tool}"
    token_in_query = True

    async def get(self, tenant: str, server: str, tool: str) -> None:
        tenant = self.tenant_for(tenant)
        listed = permissions.tools(await self.blocking(self.hub.tools, tenant), self.caller)  # (it may call)
        tools = [t for t in listed if t.server == server]
        entry = next((t for t in tools if t.name == tool), None)
        uri = view_uri(entry) if entry is not None else None
        if entry is None or uri is None:
            raise NotFound(f"no MCP App '{server}.{tool}' in tenant '{tenant}'")
        html, ui = view_html(await self.blocking(self.hub.read_resource, tenant, uri, server), uri)
        if "csp" not in ui:  # else the `_meta.ui` of the resource as the server listed it
            ui = listed_ui(await self.blocking(self.hub.resources, tenant), server, uri)
        policy = sandbox_csp(ui.get("csp") if isinstance(ui, dict) else None)
        config = {
            "tenant": tenant,
            "server": server,
            "resource_uri": uri,
            "hub_version": hub.__version__,
            "tool": tool_json(entry),
            "app_tools": sorted(t.name for t in tools if app_visible(t)),
            "csp": policy,
            "html": f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n' + html,
        }
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", host_csp(policy))
        self.set_header("Referrer-Policy", "no-referrer")  # the key may be in this page's URL
        self.finish(host_page(config))


class UiHostFileHandler(ApiHandler):
    """`GET /ui-host/{file}`: the host page's script and style (public: nothing secret in them)."""

    route = "/ui-host/{file}"
    public = True
    FILES = {"host.js": "text/javascript", "host.css": "text/css"}

    def get(self, name: str) -> None:
        if name not in self.FILES:
            raise NotFound(f"no route {self.request.path}")
        self.set_header("Content-Type", f"{self.FILES[name]}; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish((STATIC / name).read_bytes())


ROUTES: list[tuple[str, Any]] = [
    (r"/ui/([^/]+)/([^/]+)/([^/]+)", UiHostHandler),
    (r"/ui-host/([^/]+)", UiHostFileHandler),
]
