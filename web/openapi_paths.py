"""The operations of the OpenAPI document, one function per area of the API (`paths` joins them).

Each operation names the component schema its 200 answer uses (a type of `web.responses`, which
the handlers return), its parameters and the errors it may answer; nothing here describes a
response's shape. Runs on the web loop, when `GET /openapi.json` builds the document.
"""

from __future__ import annotations

from typing import Any

from web.openapi_ops import (
    APP,
    SERVER,
    SESSION,
    TENANT,
    TENANT_QUERY,
    TOKEN,
    TOOL_CALL_HEADERS,
    UPSTREAM,
    WAIT,
    WEBSOCKET,
    arguments_body,
    mcp_parameters,
    op,
    path_param,
    query,
    raw_response,
    returns,
)


def _meta_paths() -> dict[str, Any]:
    """About the hub: `/`, `/health`, `/metrics`, this document, reload."""
    return {
        "/": {
            "get": op(
                "getRoot",
                "Hub name, version, uptime and counts",
                "meta",
                returns("About", "About the hub (no names: public)."),
                public=True,
            )
        },
        "/health": {
            "get": op(
                "getHealth",
                "Hub name, version, uptime and each component's state",
                "meta",
                returns("Health", "The hub works (no tenant or server names: public)."),
                public=True,
            )
        },
        "/api/admin/reload": {
            "post": op(
                "reload",
                "Reload the configuration file",
                "meta",
                returns("ReloadReport", "What changed, per tenant and server."),
                (400, 404),
                description="Admin keys only (a tenant key gets 404). An invalid file changes nothing: 400 "
                "with every problem. Unchanged servers keep their process and their calls in flight.",
            )
        },
        "/openapi.json": {
            "get": op(
                "getOpenApi",
                "This document",
                "meta",
                {
                    "description": "OpenAPI 3.1 description of the REST API.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                public=True,
            )
        },
        "/metrics": {
            "get": op(
                "getMetrics",
                "Prometheus metrics",
                "meta",
                raw_response("Prometheus text exposition format.", "text/plain"),
                (404,),
                description="Admin keys only (a tenant key gets 404).",
            )
        },
    }


def _tenant_action(action: str, summary: str, wait: bool) -> dict[str, Any]:
    params = [TENANT, *([WAIT] if wait else [])]
    ok = returns("TenantOutcome", "Per-server outcome.")
    return {"post": op(f"{action}Tenant", summary, "tenants", ok, (404,), params)}


def _tenant_paths() -> dict[str, Any]:
    """Tenants, their catalogs, and tenant-wide start and stop."""
    return {
        "/api/tenants": {
            "get": op(
                "listTenants",
                "Tenants this key sees",
                "tenants",
                returns("TenantList", "Tenants with quotas, usage and servers."),
                (404,),
                [TENANT_QUERY],
            )
        },
        "/api/tenants/{tenant}": {
            "get": op(
                "getTenant", "One tenant", "tenants", returns("Tenant", "The tenant."), (404,), [TENANT]
            )
        },
        "/api/tenants/{tenant}/tools": {
            "get": op(
                "listTenantTools",
                "A tenant's tool catalog",
                "tenants",
                returns("ToolList", "The catalog."),
                (404,),
                [TENANT],
            )
        },
        "/api/tenants/{tenant}/start": _tenant_action(
            "start", "Start every enabled server of a tenant", True
        ),
        "/api/tenants/{tenant}/stop": _tenant_action("stop", "Stop every server of a tenant", False),
    }


def _resource_paths() -> dict[str, Any]:
    """Resources and prompts of a tenant's running servers."""
    return {
        "/api/tenants/{tenant}/resources": {
            "get": op(
                "listResources",
                "Resources and resource templates of a tenant's running servers",
                "resources",
                returns("ResourceList", "The resources and, apart, the resource templates."),
                (404,),
                [TENANT],
            )
        },
        "/api/tenants/{tenant}/resources/read": {
            "get": op(
                "readResource",
                "Read a resource",
                "resources",
                returns("ResourceContents", "The MCP `ReadResourceResult`."),
                (400, 404, *UPSTREAM),
                [
                    TENANT,
                    query("uri", {"type": "string"}, "The resource's URI.", required=True),
                    query(
                        "server",
                        {"type": "string"},
                        "The server to read from, when several offer the URI (else 400).",
                    ),
                    SESSION,
                ],
            )
        },
        "/api/tenants/{tenant}/prompts": {
            "get": op(
                "listPrompts",
                "Prompts of a tenant's running servers",
                "prompts",
                returns("PromptList", "The prompts."),
                (404,),
                [TENANT],
            )
        },
        "/api/tenants/{tenant}/prompts/{name}": {
            "post": op(
                "getPrompt",
                "Get a prompt with arguments",
                "prompts",
                returns("PromptMessages", "The MCP `GetPromptResult`."),
                (404, *UPSTREAM),
                [TENANT, path_param("name", "Prompt catalog id, `<server>.<name>`."), SESSION],
                arguments_body("The prompt's arguments (strings only).", {"type": "string"}),
            )
        },
    }


def _server_action(action: str, summary: str, wait: bool) -> dict[str, Any]:
    params = [TENANT, SERVER, *([WAIT] if wait else [])]
    ok = returns("ServerStatus", "The server's status afterwards.")
    return {"post": op(f"{action}Server", summary, "servers", ok, (404, 429) if wait else (404,), params)}


def _server_paths() -> dict[str, Any]:
    """Servers: their states, lifecycle and logs."""
    tail = query(
        "tail", {"type": "integer", "minimum": 0, "maximum": 10000, "default": 100}, "How many lines."
    )
    return {
        "/api/servers": {
            "get": op(
                "listServers",
                "Servers this key sees",
                "servers",
                returns("ServerList", "The servers."),
                (404,),
                [TENANT_QUERY],
            )
        },
        "/api/servers/{tenant}/{server}": {
            "get": op(
                "getServer",
                "One server, with its tool names",
                "servers",
                returns("ServerStatus", "The server."),
                (404,),
                [TENANT, SERVER],
            )
        },
        "/api/servers/{tenant}/{server}/start": _server_action("start", "Start a server", True),
        "/api/servers/{tenant}/{server}/stop": _server_action("stop", "Stop a server", False),
        "/api/servers/{tenant}/{server}/restart": _server_action(
            "restart", "Restart a server (a new process)", True
        ),
        "/api/servers/{tenant}/{server}/logs": {
            "get": op(
                "getServerLogs",
                "The last lines of a server's stderr",
                "servers",
                returns("ServerLogs", "The lines, oldest first."),
                (400, 404),
                [TENANT, SERVER, tail],
            )
        },
    }


def _tool_call(operation_id: str, summary: str) -> dict[str, Any]:
    params = [
        path_param("name", "Tool catalog id, `<server>.<name>`."),
        query(
            "tenant",
            {"type": "string", "default": "default"},
            "The tenant to call in: an admin key may name any; a tenant key calls in its own and may "
            "name only that one (another, existing or not, is 404).",
        ),
        *TOOL_CALL_HEADERS,
    ]
    ok = returns("ToolResult", "The tool ran (check `is_error`).")
    body = arguments_body("The tool's arguments (an empty body is `{}`).")
    return {"post": op(operation_id, summary, "tools", ok, (404, 422, *UPSTREAM), params, body)}


def _tool_paths() -> dict[str, Any]:
    """The catalog, tool calls and `Mcp-Hub-Session` sessions."""
    return {
        "/api/tools": {
            "get": op(
                "listTools",
                "Catalog of every tenant this key sees",
                "tools",
                returns("ToolList", "The catalog."),
                (404,),
                [TENANT_QUERY],
            )
        },
        "/api/tools/{name}/call": _tool_call("callTool", "Call a tool"),
        "/api/tools/{name}": _tool_call("callToolShort", "Call a tool (short form of `.../call`)"),
        "/api/sessions/{session}": {
            "delete": op(
                "endSession",
                "End an `Mcp-Hub-Session` session",
                "tools",
                returns("SessionEnded", "How many instances were stopped (0: none ran)."),
                (400,),
                [path_param("session", "The `Mcp-Hub-Session` value, as this key sent it.")],
                description="Stops this key's session instances of `per_session` servers at once "
                "(otherwise they stop after `idle_timeout`).",
            )
        },
    }


_AGGREGATED = (
    "One MCP server with every running server of the tenant: tools and prompts named "
    "`<server>__<name>`, resources under `mcp-hub://<server>/...` or `ui://<server>/...`."
)
_ONE_SERVER = (
    "One server of the tenant through the hub, as it is: its own tool, prompt and resource names "
    "and URIs, its instructions and capabilities (an unknown server, or another tenant's, is 404). "
    "A 2025-11-25 session serves only the key and the endpoint that opened it."
)


def _mcp(operation: str, tenant: bool, server: bool = False) -> dict[str, Any]:
    """GET, POST and DELETE of a Streamable HTTP MCP endpoint (the facade), served by the MCP SDK."""
    answer = {
        "description": "MCP Streamable HTTP: a JSON-RPC response (application/json) or an SSE stream "
        "(text/event-stream), per the MCP specification (2025-11-25 and 2026-07-28).",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    }
    return {
        method: op(
            f"{method}{operation}",
            f"MCP facade ({method.upper()})",
            "mcp",
            answer,
            (404,),
            mcp_parameters(method, tenant, server),
            description=_ONE_SERVER if server else _AGGREGATED,
        )
        for method in ("get", "post", "delete")
    }


def _cluster_paths() -> dict[str, Any]:
    """The internal channel of a cluster's replicas."""
    return {
        "/cluster/link": {
            "get": op(
                "clusterLink",
                "The replicas' internal channel (WebSocket)",
                "cluster",
                WEBSOCKET,
                (400, 404),
                description="For the other replicas of this hub's cluster only (docs/cluster.md): they "
                "forward here the requests for the servers this replica runs. The upgrade carries the "
                "cluster's `secret` as `Authorization: Bearer` (no API key opens it: 401); a hub without "
                "`cluster:` answers 404. Frames are JSON: `{id, op, tenant, server, ...}` forwarded, "
                "`{id, progress | log | ask | result | error}` back, `{id, answer | cancel}` forward.",
            )
        }
    }


def _app_paths() -> dict[str, Any]:
    """Apps of `plugins_dir`: their listing, files and WebSocket gateway."""
    page = raw_response("The file; the entry page carries `window.MCP_HUB_CONFIG`.")
    return {
        "/api/apps": {
            "get": op(
                "listApps",
                "Apps this key may use",
                "apps",
                returns("AppList", "The apps (and, for an admin, the manifests that were skipped)."),
            )
        },
        "/api/apps/{app_id}": {
            "get": op("getApp", "One app", "apps", returns("App", "The app."), (404,), [APP])
        },
        "/apps/{app_id}": {
            "get": op(
                "getAppEntry",
                "An app's entry page",
                "apps",
                page,
                (404,),
                [APP, TOKEN],
                description="Redirects to `/apps/{app_id}/`, which serves the entry page.",
            )
        },
        "/apps/{app_id}/{path}": {
            "get": op(
                "getAppFile",
                "An app's file",
                "apps",
                page,
                (404,),
                [
                    APP,
                    path_param("path", "A path inside the app's folder; nothing outside it is ever served."),
                    TOKEN,
                ],
            )
        },
        "/ws/app/{app_id}/{tenant_id}": {
            "get": op(
                "appGateway",
                "The WebSocket gateway of an app",
                "apps",
                WEBSOCKET,
                (400, 404),
                [APP, path_param("tenant_id", "The tenant the app acts in."), TOKEN],
                description="app -> hub: `app_ready`, `tool_call` `{tool_name, arguments}` with an `id`, "
                "`ping`. hub -> app: `app_state` `{app_id, tenant_id, config, tools, servers}` "
                "(`servers`: the tenant's servers as `server_status` carries them), `tool_result`, "
                "`tool_progress`, `catalog_changed`, "
                "`server_status`, `error` `{code, message}`, `pong`. `Origin` must be the hub's own or in "
                "`gateway.allowed_origins` (403).",
            )
        },
    }


def _mcp_app_paths() -> dict[str, Any]:
    """MCP Apps: the host page of a tool's `ui://` view, and its script and style."""
    return {
        "/ui/{tenant}/{server}/{tool}": {
            "get": op(
                "getMcpAppHost",
                "The host page of an MCP App",
                "apps",
                raw_response("An HTML page.", "text/html"),
                (404, *UPSTREAM),
                [
                    path_param("tenant", "Tenant id."),
                    path_param("server", "Server name."),
                    path_param("tool", "The tool whose `_meta.ui.resourceUri` names the view."),
                    TOKEN,
                ],
                description="Reads the tool's `ui://` view from its server and renders it in a sandboxed "
                "iframe (opaque origin; Content-Security-Policy from the resource's `_meta.ui.csp`). The "
                "page speaks the MCP Apps postMessage protocol: `ui/initialize`, the tool's input and "
                "result, and the view's `tools/call` and `resources/read`, proxied to the same server.",
            )
        },
        "/ui-host/{file}": {
            "get": op(
                "getMcpAppHostFile",
                "The host page's script and style",
                "apps",
                raw_response("The file."),
                (404,),
                [path_param("file", "`host.js` or `host.css`.")],
                public=True,
            )
        },
    }


def _admin_paths() -> dict[str, Any]:
    """The admin panel and its live events."""
    return {
        "/admin": {
            "get": op(
                "getAdminPanel",
                "The admin panel",
                "admin",
                raw_response("The panel's page (HTML); it calls this API and `/ws/admin`.", "text/html"),
                (404,),
                [TOKEN],
                description="With no key, the page itself, which holds no data and asks for an admin "
                "key (a sign-in form; the key is kept in the tab's sessionStorage). With a key (header, "
                "or `?token=` for a browser): an admin key gets the page, a wrong key 401, a tenant key "
                "404, which is how the page checks a key. With no keys configured it is open like the "
                "rest of the API.",
            )
        },
        "/admin/{path}": {
            "get": op(
                "getAdminAsset",
                "The admin panel's script, style sheet and icon",
                "admin",
                raw_response("The file (`admin.js`, `admin.css`, `favicon.svg`)."),
                (404,),
                [path_param("path", "A file name of the panel; nothing else is ever served.")],
                public=True,
                description="Public: shipped code with no data in it (a page load cannot attach a key).",
            )
        },
        "/ws/admin": {
            "get": op(
                "adminEvents",
                "Live events of every tenant, for the admin panel",
                "admin",
                WEBSOCKET,
                (400, 404),
                [TOKEN],
                description="Admin keys only (a tenant key gets 404). hub -> client: `server_status` "
                "(a server's state, pid, restarts, last error) and `catalog_changed` "
                "`{tenant, server, tools}` of every tenant as they happen; `ping` -> `pong`. `Origin` "
                "must be the hub's own or in `gateway.allowed_origins` (403).",
            )
        },
    }


def paths() -> dict[str, Any]:
    """Every path of the API with its operations."""
    return {
        **_meta_paths(),
        **_tenant_paths(),
        **_resource_paths(),
        **_server_paths(),
        **_tool_paths(),
        "/mcp": _mcp("Mcp", tenant=False),
        "/tenants/{tenant}/mcp": _mcp("TenantMcp", tenant=True),
        "/tenants/{tenant}/servers/{server}/mcp": _mcp("ServerMcp", tenant=True, server=True),
        **_app_paths(),
        **_mcp_app_paths(),
        **_admin_paths(),
        **_cluster_paths(),
    }
