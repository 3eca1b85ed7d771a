"""The OpenAPI 3.1 description of the REST API (contract section 5), served at `GET /openapi.json`.

`document(version)` builds one plain dict from small helpers; nothing here is generated from the
handlers at run time, so `tests/test_openapi.py` checks that every route of `web.rest.ROUTES` is
described (with the methods its handler implements) and that the document is valid OpenAPI 3.1.

Conventions: every error answers `{"error": {"code", "message"}}` (the `Error` schema) through the
reusable responses of `components.responses`; every operation needs a bearer key (`bearer`, applied
globally) except the public ones (`/`, `/health`, `/openapi.json`, the admin panel's script and
style sheet), which override it with `security: []`. A tool that ran and reported failure is a
200 with `"is_error": true`, not an error.
"""

from __future__ import annotations

from typing import Any

JSON = "application/json"

# status -> (component name, description); every one answers the `Error` schema
_ERRORS: dict[int, tuple[str, str]] = {
    400: (
        "BadRequest",
        "Malformed JSON (also: nested over 128 levels, `NaN`, an integer over 4,300 digits), text "
        "that is not valid Unicode (a lone surrogate), a bad parameter, or arguments that fail the "
        "tool's `inputSchema`.",
    ),
    401: ("Unauthorized", "Missing or wrong key (`Authorization: Bearer <key>`)."),
    404: ("NotFound", "Unknown, or belongs to another tenant (never told apart)."),
    409: ("NotRunning", "The server exists but is not running."),
    413: ("PayloadTooLarge", "The body is larger than `gateway.max_body_bytes`."),
    429: ("QuotaExceeded", "A tenant quota or rate limit was hit; retry after `Retry-After` seconds."),
    502: ("UpstreamError", "The MCP server failed, died or broke the protocol."),
    503: (
        "Unavailable",
        "The hub is shutting down and takes no new work (`shutting_down`), or holds as many "
        "connections as `gateway.max_connections` / `max_connections_per_client` allow "
        "(`too_many_connections`).",
    ),
    403: (
        "OriginNotAllowed",
        "A request with an `Origin` that is neither the hub's own nor in `gateway.allowed_origins`.",
    ),
    421: (
        "HostNotAllowed",
        "A `Host` the hub does not answer to: not loopback, the bound address or in "
        "`gateway.allowed_hosts` (a guard against DNS rebinding).",
    ),
    431: ("HeadersTooLarge", "The request's header block is larger than 64 KiB."),
    504: ("Timeout", "The MCP server did not answer within the call timeout."),
}

# errors every authenticated operation can answer, and what the MCP servers add when asked
_AUTH = (401, 503)
_UPSTREAM = (409, 429, 502, 504)
# what the edge answers on every route before any handler (web/edge.py, web/sizes.py)
_EDGE = (403, 421, 431)


# --------------------------------------------------------------------------- schema helpers


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _string(description: str | None = None, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", **extra}
    if description:
        schema["description"] = description
    return schema


def _nullable(type_: str, description: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": [type_, "null"]}
    if description:
        schema["description"] = description
    return schema


def _array(items: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "array", "items": items}
    if description:
        schema["description"] = description
    return schema


def _object(
    properties: dict[str, Any],
    required: list[str] | None = None,
    description: str | None = None,
    additional: bool | dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An object schema; `required` defaults to every property."""
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    schema["required"] = list(properties) if required is None else required
    if description:
        schema["description"] = description
    if additional is not None:
        schema["additionalProperties"] = additional
    return schema


def _any_object(description: str) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": True, "description": description}


# --------------------------------------------------------------------------- operation helpers


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


TENANT = _path_param("tenant", "Tenant name.")
SERVER = _path_param("server", "Server name within the tenant.")
TENANT_QUERY = _query(
    "tenant", {"type": "string"}, "Only this tenant (must be visible to the key, else 404)."
)
SESSION = {
    "name": "Mcp-Hub-Session",
    "in": "header",
    "required": False,
    "description": "A client session id of your choice (1-128 visible ASCII characters), scoped to the key: "
    "calls of a `per_session` server then run on that session's own instance (started by its first call, "
    "stopped after `idle_timeout` or by `DELETE /api/sessions/{session}`). Without it, the server's "
    "shared instance answers.",
    "schema": {"type": "string"},
}
WAIT = _query(
    "wait",
    {"type": "string", "enum": ["true", "false"], "default": "true"},
    "`false` answers at once instead of waiting until the server runs or has failed.",
)


def _op(
    operation_id: str,
    summary: str,
    tag: str,
    ok: dict[str, Any],
    errors: tuple[int, ...] = (),
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    public: bool = False,
    description: str | None = None,
) -> dict[str, Any]:
    """One operation: a 200 answer `ok`, the listed error statuses, and (unless `public`) 401."""
    codes = set(errors) | set(_EDGE) | ({503} if public else set(_AUTH))
    if body is not None:
        codes |= {400, 413}
    op: dict[str, Any] = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = body
    op["responses"] = {"200": ok} | {
        str(code): {"$ref": f"#/components/responses/{_ERRORS[code][0]}"} for code in sorted(codes)
    }
    if public:
        op["security"] = []
    return op


def _arguments_body(description: str, values: dict[str, Any] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": values if values is not None else True,
    }
    return {"required": False, "description": description, "content": {JSON: {"schema": schema}}}


def _error_response(status: int) -> dict[str, Any]:
    description = _ERRORS[status][1]
    response = _json_response(description, _ref("Error"))
    if status == 429:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before trying again.",
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    if status == 401:
        response["headers"] = {
            "WWW-Authenticate": {
                "description": 'Always `Bearer realm="mcp-hub"`.',
                "schema": {"type": "string"},
            }
        }
    return response


# --------------------------------------------------------------------------- schemas

_SNAPSHOT = {
    "tenant": _string("Tenant name."),
    "server": _string("Server name."),
    "state": _string("Lifecycle state.", enum=["stopped", "starting", "running", "backoff", "failed"]),
    "transport": _string("How the hub talks to the server (`stdio`, `http`, ...)."),
    "pid": _nullable("integer", "Process id while a local process runs."),
    "started_at": _nullable("number", "Unix time the server last started."),
    "restarts": {"type": "integer", "minimum": 0, "description": "Automatic restarts so far."},
    "last_error": _nullable("string", "Why it last failed or crashed."),
    "protocol_version": _nullable("string", "MCP protocol version negotiated."),
    "tools": {"type": "integer", "minimum": 0, "description": "Number of tools it offers."},
    "lifecycle": _string(
        "`always`: started with its tenant; `on_demand`: started by its first call, stopped when idle.",
        enum=["always", "on_demand"],
    ),
    "catalog": {
        "type": ["string", "null"],
        "enum": ["live", "cached", None],
        "description": "Where its catalog comes from: `live` (discovered by the running process), "
        "`cached` (a stopped on_demand server, from its last discovery), null (none listed).",
    },
    "stopped_reason": {
        "type": ["string", "null"],
        "enum": ["idle", "never_used", "crashed", "stopped", None],
        "description": "Why it is stopped or failed: `idle` (on_demand, no call for idle_timeout), "
        "`never_used` (on_demand, not run since the hub started), `crashed` (failed after its "
        "retries), `stopped` (by request); null while it runs or starts.",
    },
    "retry_at": _nullable(
        "number",
        "Unix time of its next automatic restart: set while it waits in `backoff`, or `failed` "
        "(it crashed more than `orchestrator.max_retries` times in a row and, with `restart: "
        "always`, is still retried, each wait twice the last up to `backoff_max`); null otherwise "
        "(a `failed` server with null is retried no more: a configuration problem, or "
        "`restart: limited`).",
    ),
    "retry_in_seconds": _nullable("number", "Seconds from this answer to `retry_at` (null: none due)."),
}

_STATUS_EXTRA = {
    "type": _string("The server's configured type."),
    "enabled": {"type": "boolean", "description": "Whether tenant-wide start starts it."},
    "description": _nullable("string", "The configured description (`metadata.description`)."),
    "tool_names": _array(_string(), "Its tools' names (only on `GET /api/servers/{tenant}/{server}`)."),
    "per_session": {
        "type": "boolean",
        "description": "One instance per client session (this entry is then the tenant's shared instance).",
    },
    "instances": _array(
        _object(
            {
                "session": _string("A hash of the session id (the id itself is never shown)."),
                "session_kind": _string(
                    "`http` (an MCP facade session), `header` (`Mcp-Hub-Session`), `ws` (an app "
                    "connection), `stdio`."
                ),
                "state": _string("Lifecycle state.", enum=["starting", "running", "backoff"]),
                "pid": _nullable("integer", "Process id."),
                "started_at": _nullable("number", "Unix time it started."),
                "restarts": {"type": "integer", "minimum": 0},
                "last_error": _nullable("string"),
                "retry_at": _nullable("number", "Unix time of its next automatic restart."),
                "retry_in_seconds": _nullable("number", "Seconds from this answer to `retry_at`."),
            }
        ),
        "A `per_session` server's session instances that run or start now.",
    ),
}


def _quota(used: str | None = None) -> dict[str, Any]:
    count = _nullable("integer", used) if used else {"type": "integer"}
    return _object({"limit": _nullable("integer", "The limit; null means unlimited."), "used": count})


def _schemas() -> dict[str, Any]:
    return {
        "Error": _object(
            {
                "error": _object(
                    {"code": _string("Stable snake_case code."), "message": _string("Human text.")}
                )
            },
            description="Every error answer.",
        ),
        "ToolResult": _object(
            {
                "tool": _string("The catalog id of the tool called."),
                "is_error": {"type": "boolean", "description": "The tool ran and reported failure."},
                "content": _array({"type": "object"}, "MCP content blocks, as the server sent them."),
                "structured_content": _nullable("object", "The tool's structured result, if any."),
            },
            description="The answer of a tool call.",
        ),
        "Tool": _object(
            {
                "name": _string("Catalog id, `<server>.<name>`."),
                "tenant": _string(),
                "server": _string(),
                "title": _nullable("string"),
                "description": _nullable("string"),
                "input_schema": {"type": "object", "description": "JSON Schema of the arguments."},
                "output_schema": _nullable("object", "JSON Schema of `structured_content`, if declared."),
            },
            description="One catalog entry.",
        ),
        "ServerSnapshot": _object(dict(_SNAPSHOT), description="A server's state, as a tenant lists it."),
        "ServerStatus": _object(
            {**_SNAPSHOT, **_STATUS_EXTRA},
            required=[*_SNAPSHOT, "type", "enabled", "description"],
            description="A server's state with its configuration.",
        ),
        "Quota": _quota(),
        "Tenant": _object(
            {
                "name": _string(),
                "description": _string(),
                "quotas": _object(
                    {
                        "max_servers": _ref("Quota"),
                        "max_tools": _ref("Quota"),
                        "max_concurrent_calls": _ref("Quota"),
                        "max_calls_per_minute": _ref("Quota"),
                        # `used`: the most session instances any one per_session server runs.
                        "max_sessions_per_server": _ref("Quota"),
                        "max_memory_mb": _quota(
                            "MiB the tenant's stdio servers use now; null where no memory cgroup counts it "
                            "(nor without max_memory_mb or max_processes)."
                        ),
                        "max_processes": _quota(
                            "Processes and threads of its stdio servers now; null where no pids cgroup "
                            "counts it."
                        ),
                    },
                    description="Each quota with its current usage.",
                ),
                "hidden_tools": {
                    "type": "integer",
                    "description": "Tools left out of the catalog by `max_tools`.",
                },
                "servers": _array(_ref("ServerSnapshot")),
            },
            description="A tenant (never its keys or credentials).",
        ),
        "Resource": _object(
            {"uri": _string(), "server": _string("The server offering it.")},
            description="An MCP resource as the server listed it, plus `server`.",
            additional=True,
        ),
        "ResourceTemplate": _object(
            {
                "uriTemplate": _string("An RFC 6570 URI template."),
                "server": _string("The server offering it."),
            },
            description="An MCP resource template as the server listed it, plus `server`: read a URI "
            "it matches with `resources/read`.",
            additional=True,
        ),
        "Prompt": _object(
            {"name": _string("Catalog id, `<server>.<name>`."), "server": _string()},
            description="An MCP prompt as the server listed it, with its catalog id as `name`.",
            additional=True,
        ),
    }


# --------------------------------------------------------------------------- paths


def _server_action(action: str, summary: str, wait: bool) -> dict[str, Any]:
    params = [TENANT, SERVER, *([WAIT] if wait else [])]
    ok = _json_response("The server's status afterwards.", _ref("ServerStatus"))
    return {"post": _op(f"{action}Server", summary, "servers", ok, (404, 429) if wait else (404,), params)}


def _tenant_action(action: str, summary: str, wait: bool) -> dict[str, Any]:
    outcome = _object(
        {
            "tenant": _string(),
            "action": _string(enum=[action]),
            "servers": {
                "type": "object",
                "additionalProperties": _string(),
                "description": (
                    "Per server: its state, or why not (`disabled`, `on_demand`, `per_session`, "
                    "`quota_exceeded: ...`, `error: ...`)."
                ),
            },
        }
    )
    params = [TENANT, *([WAIT] if wait else [])]
    ok = _json_response("Per-server outcome.", outcome)
    return {"post": _op(f"{action}Tenant", summary, "tenants", ok, (404,), params)}


def _tool_call(operation_id: str, summary: str) -> dict[str, Any]:
    params = [
        _path_param("name", "Tool catalog id, `<server>.<name>`."),
        _query(
            "tenant",
            {"type": "string", "default": "default"},
            "The tenant to call in: an admin key may name any; a tenant key calls in its own and may "
            "name only that one (another, existing or not, is 404).",
        ),
        SESSION,
    ]
    ok = _json_response("The tool ran (check `is_error`).", _ref("ToolResult"))
    body = _arguments_body("The tool's arguments (an empty body is `{}`).")
    return {"post": _op(operation_id, summary, "tools", ok, (404, *_UPSTREAM), params, body)}


def _mcp(operation: str, tenant: bool) -> dict[str, Any]:
    """GET, POST and DELETE of a Streamable HTTP MCP endpoint (the facade), served by the MCP SDK."""
    answer = {
        "description": "MCP Streamable HTTP: a JSON-RPC response (application/json) or an SSE stream "
        "(text/event-stream), per the MCP specification (2025-11-25 and 2026-07-28).",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    }
    params = (
        [TENANT]
        if tenant
        else [
            _query(
                "tenant",
                {"type": "string"},
                "The tenant served: an admin key may name any (default `default`); a tenant key is "
                "served its own and may name only that one (another, existing or not, is 404).",
            )
        ]
    )
    return {
        method: _op(
            f"{method}{operation}",
            f"MCP facade ({method.upper()})",
            "mcp",
            answer,
            (404,),
            params,
            description="One MCP server with every running server of the tenant: tools and prompts named "
            "`<server>__<name>`, resources under `mcp-hub://<server>/...` or `ui://<server>/...`.",
        )
        for method in ("get", "post", "delete")
    }


APP = _path_param("app_id", "App id (its folder name).")
_TOKEN = _query("token", {"type": "string"}, "The key, for a browser that cannot send a header.")


def _apps_paths() -> dict[str, Any]:
    plugin = _object(
        {
            "id": {"type": "string"},
            "kind": {"const": "plugin"},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "version": {"type": "string"},
            "entry": {"type": "string"},
            "tenants": {"type": ["array", "null"], "items": {"type": "string"}},
            "url": {"type": "string"},
        },
        description="An app of `plugins_dir`, opened at `url`.",
    )
    mcp_app = _object(
        {
            "id": _string("`ui:{tenant}:{server}.{tool}`"),
            "kind": {"const": "mcp_app"},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "tenants": _array({"type": "string"}),
            "server": {"type": "string"},
            "tool": {"type": "string"},
            "resource_uri": _string("The tool's `_meta.ui.resourceUri` (`ui://...`)."),
            "url": _string("The hub's host page for the view: `/ui/{tenant}/{server}/{tool}`."),
        },
        description="A tool of a running server whose `_meta.ui.resourceUri` names a `ui://` view.",
    )
    app = {"oneOf": [plugin, mcp_app]}
    page = {
        "description": "The file; the entry page carries `window.MCP_HUB_CONFIG`.",
        "content": {"*/*": {"schema": {"type": "string"}}},
    }
    return {
        "/api/apps": {
            "get": _op(
                "listApps",
                "Apps this key may use",
                "apps",
                _json_response(
                    "The apps (and, for an admin, the manifests that were skipped).",
                    _object({"apps": _array(app), "problems": _array({"type": "string"})}),
                ),
            )
        },
        "/api/apps/{app_id}": {
            "get": _op("getApp", "One app", "apps", _json_response("The app.", app), (404,), [APP])
        },
        "/apps/{app_id}": {
            "get": _op(
                "getAppEntry",
                "An app's entry page",
                "apps",
                page,
                (404,),
                [APP, _TOKEN],
                description="Redirects to `/apps/{app_id}/`, which serves the entry page.",
            )
        },
        "/apps/{app_id}/{path}": {
            "get": _op(
                "getAppFile",
                "An app's file",
                "apps",
                page,
                (404,),
                [
                    APP,
                    _path_param("path", "A path inside the app's folder; nothing outside it is ever served."),
                    _TOKEN,
                ],
            )
        },
        "/ui/{tenant}/{server}/{tool}": {
            "get": _op(
                "getMcpAppHost",
                "The host page of an MCP App",
                "apps",
                {"description": "An HTML page.", "content": {"text/html": {"schema": {"type": "string"}}}},
                (404, *_UPSTREAM),
                [
                    _path_param("tenant", "Tenant id."),
                    _path_param("server", "Server name."),
                    _path_param("tool", "The tool whose `_meta.ui.resourceUri` names the view."),
                    _TOKEN,
                ],
                description="Reads the tool's `ui://` view from its server and renders it in a sandboxed "
                "iframe (opaque origin; Content-Security-Policy from the resource's `_meta.ui.csp`). The "
                "page speaks the MCP Apps postMessage protocol: `ui/initialize`, the tool's input and "
                "result, and the view's `tools/call` and `resources/read`, proxied to the same server.",
            )
        },
        "/ui-host/{file}": {
            "get": _op(
                "getMcpAppHostFile",
                "The host page's script and style",
                "apps",
                {"description": "The file.", "content": {"*/*": {"schema": {"type": "string"}}}},
                (404,),
                [_path_param("file", "`host.js` or `host.css`.")],
                public=True,
            )
        },
        "/ws/app/{app_id}/{tenant_id}": {
            "get": _op(
                "appGateway",
                "The WebSocket gateway of an app",
                "apps",
                {
                    "description": "Switching to the WebSocket protocol (101): "
                    "JSON text frames `{type, id?, data}`."
                },
                (404,),
                [APP, _path_param("tenant_id", "The tenant the app acts in."), _TOKEN],
                description="app -> hub: `app_ready`, `tool_call` `{tool_name, arguments}` with an `id`, "
                "`ping`. hub -> app: `app_state` `{app_id, tenant_id, config, tools, servers}` "
                "(`servers`: the tenant's servers as `server_status` carries them), `tool_result`, "
                "`tool_progress`, `catalog_changed`, "
                "`server_status`, `error` `{code, message}`, `pong`. `Origin` must be the hub's own or in "
                "`gateway.allowed_origins` (403).",
            )
        },
    }


def _admin_paths() -> dict[str, Any]:
    return {
        "/admin": {
            "get": _op(
                "getAdminPanel",
                "The admin panel",
                "admin",
                {
                    "description": "The panel's page (HTML); it calls this API and `/ws/admin`.",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                },
                (404,),
                [_TOKEN],
                description="With no key, the page itself, which holds no data and asks for an admin "
                "key (a sign-in form; the key is kept in the tab's sessionStorage). With a key (header, "
                "or `?token=` for a browser): an admin key gets the page, a wrong key 401, a tenant key "
                "404, which is how the page checks a key. With no keys configured it is open like the "
                "rest of the API.",
            )
        },
        "/admin/{path}": {
            "get": _op(
                "getAdminAsset",
                "The admin panel's script, style sheet and icon",
                "admin",
                {
                    "description": "The file (`admin.js`, `admin.css`, `favicon.svg`).",
                    "content": {"*/*": {"schema": {"type": "string"}}},
                },
                (404,),
                [_path_param("path", "A file name of the panel; nothing else is ever served.")],
                public=True,
                description="Public: shipped code with no data in it (a page load cannot attach a key).",
            )
        },
        "/ws/admin": {
            "get": _op(
                "adminEvents",
                "Live events of every tenant, for the admin panel",
                "admin",
                {
                    "description": "Switching to the WebSocket protocol (101): "
                    "JSON text frames `{type, id?, data}`."
                },
                (404,),
                [_TOKEN],
                description="Admin keys only (a tenant key gets 404). hub -> client: `server_status` "
                "(a server's state, pid, restarts, last error) and `catalog_changed` "
                "`{tenant, server, tools}` of every tenant as they happen; `ping` -> `pong`. `Origin` "
                "must be the hub's own or in `gateway.allowed_origins` (403).",
            )
        },
    }


def _paths() -> dict[str, Any]:
    tenant_list = _object({"tenants": _array(_ref("Tenant"))})
    tool_list = _object({"tools": _array(_ref("Tool"))})
    return {
        "/": {
            "get": _op(
                "getRoot",
                "Hub name, version, uptime and counts",
                "meta",
                _json_response(
                    "About the hub (no names: public).",
                    _object(
                        {
                            "name": _string(),
                            "version": _string(),
                            "uptime_seconds": {"type": "number"},
                            "tenants": {"type": "integer"},
                            "servers": {"type": "integer"},
                            "servers_running": {"type": "integer"},
                            "docs": _string("Where this document is."),
                        }
                    ),
                ),
                public=True,
            )
        },
        "/health": {
            "get": _op(
                "getHealth",
                "Hub name, version, uptime and each component's state",
                "meta",
                _json_response(
                    "The hub works (no tenant or server names: public).",
                    _object(
                        {
                            "status": _string(enum=["ok"]),
                            "name": _string(),
                            "version": _string(),
                            "uptime_seconds": {"type": "number"},
                            "components": _object(
                                {
                                    "actors": _string(),
                                    "servers": {
                                        "type": "object",
                                        "additionalProperties": {"type": "integer"},
                                        "description": "Number of servers per state.",
                                    },
                                    "auth": _string(enum=["open", "keys"]),
                                    "sandbox": _string(
                                        "Whether this host can sandbox stdio servers (docs/security.md).",
                                        enum=["available", "unavailable"],
                                    ),
                                    "limits": _string(
                                        "What enforces servers' resource limits here: cgroups (each limit), "
                                        "or rlimit (the memory limit only, per process; docs/security.md).",
                                        enum=["cgroup v1", "cgroup v2", "rlimit"],
                                    ),
                                }
                            ),
                        }
                    ),
                ),
                public=True,
            )
        },
        "/api/admin/reload": {
            "post": _op(
                "reload",
                "Reload the configuration file",
                "meta",
                _json_response(
                    "What changed, per tenant and server (added, removed, restarted, changed, unchanged).",
                    {"type": "object"},
                ),
                (400, 404),
                description="Admin keys only (a tenant key gets 404). An invalid file changes nothing: 400 "
                "with every problem. Unchanged servers keep their process and their calls in flight.",
            )
        },
        **_apps_paths(),
        **_admin_paths(),
        "/mcp": _mcp("Mcp", tenant=False),
        "/tenants/{tenant}/mcp": _mcp("TenantMcp", tenant=True),
        "/openapi.json": {
            "get": _op(
                "getOpenApi",
                "This document",
                "meta",
                _json_response("OpenAPI 3.1 description of the REST API.", {"type": "object"}),
                public=True,
            )
        },
        "/metrics": {
            "get": _op(
                "getMetrics",
                "Prometheus metrics",
                "meta",
                {
                    "description": "Prometheus text exposition format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                (404,),
                description="Admin keys only (a tenant key gets 404).",
            )
        },
        "/api/tenants": {
            "get": _op(
                "listTenants",
                "Tenants this key sees",
                "tenants",
                _json_response("Tenants with quotas, usage and servers.", tenant_list),
                (404,),
                [TENANT_QUERY],
            )
        },
        "/api/tenants/{tenant}": {
            "get": _op(
                "getTenant",
                "One tenant",
                "tenants",
                _json_response("The tenant.", _ref("Tenant")),
                (404,),
                [TENANT],
            )
        },
        "/api/tenants/{tenant}/tools": {
            "get": _op(
                "listTenantTools",
                "A tenant's tool catalog",
                "tenants",
                _json_response("The catalog.", tool_list),
                (404,),
                [TENANT],
            )
        },
        "/api/tenants/{tenant}/start": _tenant_action(
            "start", "Start every enabled server of a tenant", True
        ),
        "/api/tenants/{tenant}/stop": _tenant_action("stop", "Stop every server of a tenant", False),
        "/api/tenants/{tenant}/resources": {
            "get": _op(
                "listResources",
                "Resources and resource templates of a tenant's running servers",
                "resources",
                _json_response(
                    "The resources and, apart, the resource templates.",
                    _object(
                        {
                            "resources": _array(_ref("Resource")),
                            "resource_templates": _array(_ref("ResourceTemplate")),
                        }
                    ),
                ),
                (404,),
                [TENANT],
            )
        },
        "/api/tenants/{tenant}/resources/read": {
            "get": _op(
                "readResource",
                "Read a resource",
                "resources",
                _json_response("The MCP `ReadResourceResult`.", _any_object("Has `contents`.")),
                (400, 404, *_UPSTREAM),
                [
                    TENANT,
                    _query("uri", {"type": "string"}, "The resource's URI.", required=True),
                    _query(
                        "server",
                        {"type": "string"},
                        "The server to read from, when several offer the URI (else 400).",
                    ),
                    SESSION,
                ],
            )
        },
        "/api/tenants/{tenant}/prompts": {
            "get": _op(
                "listPrompts",
                "Prompts of a tenant's running servers",
                "prompts",
                _json_response("The prompts.", _object({"prompts": _array(_ref("Prompt"))})),
                (404,),
                [TENANT],
            )
        },
        "/api/tenants/{tenant}/prompts/{name}": {
            "post": _op(
                "getPrompt",
                "Get a prompt with arguments",
                "prompts",
                _json_response("The MCP `GetPromptResult`.", _any_object("Has `messages`.")),
                (404, *_UPSTREAM),
                [TENANT, _path_param("name", "Prompt catalog id, `<server>.<name>`."), SESSION],
                _arguments_body("The prompt's arguments (strings only).", {"type": "string"}),
            )
        },
        "/api/servers": {
            "get": _op(
                "listServers",
                "Servers this key sees",
                "servers",
                _json_response("The servers.", _object({"servers": _array(_ref("ServerStatus"))})),
                (404,),
                [TENANT_QUERY],
            )
        },
        "/api/servers/{tenant}/{server}": {
            "get": _op(
                "getServer",
                "One server, with its tool names",
                "servers",
                _json_response("The server.", _ref("ServerStatus")),
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
            "get": _op(
                "getServerLogs",
                "The last lines of a server's stderr",
                "servers",
                _json_response(
                    "The lines, oldest first.",
                    _object({"tenant": _string(), "server": _string(), "lines": _array(_string())}),
                ),
                (400, 404),
                [
                    TENANT,
                    SERVER,
                    _query(
                        "tail",
                        {"type": "integer", "minimum": 0, "maximum": 10000, "default": 100},
                        "How many lines.",
                    ),
                ],
            )
        },
        "/api/tools": {
            "get": _op(
                "listTools",
                "Catalog of every tenant this key sees",
                "tools",
                _json_response("The catalog.", tool_list),
                (404,),
                [TENANT_QUERY],
            )
        },
        "/api/tools/{name}/call": _tool_call("callTool", "Call a tool"),
        "/api/tools/{name}": _tool_call("callToolShort", "Call a tool (short form of `.../call`)"),
        "/api/sessions/{session}": {
            "delete": _op(
                "endSession",
                "End an `Mcp-Hub-Session` session",
                "tools",
                _json_response(
                    "How many instances were stopped (0: none ran).",
                    _object(
                        {
                            "session": _string(),
                            "instances_stopped": {"type": "integer", "minimum": 0},
                        }
                    ),
                ),
                (400,),
                [_path_param("session", "The `Mcp-Hub-Session` value, as this key sent it.")],
                description="Stops this key's session instances of `per_session` servers at once "
                "(otherwise they stop after `idle_timeout`).",
            )
        },
    }


def document(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1.0 document of the REST API, with `version` as the API's version."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "MCP Hub",
            "version": version,
            "description": (
                "Supervise many MCP servers for many tenants. Errors are always "
                '`{"error": {"code", "message"}}`. An admin key sees every tenant; a tenant key sees only '
                "its own, and anything of another tenant is 404."
            ),
        },
        "tags": [
            {"name": "meta", "description": "About the hub."},
            {"name": "tenants"},
            {"name": "servers"},
            {"name": "tools"},
            {"name": "resources"},
            {"name": "prompts"},
            {"name": "mcp", "description": "The MCP facade over Streamable HTTP."},
            {"name": "apps", "description": "MCP Apps: manifests, files and the WebSocket gateway."},
            {"name": "admin", "description": "The admin panel and its live events."},
        ],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer <key>`: an admin key or a tenant key.",
                }
            },
            "schemas": _schemas(),
            "responses": {name: _error_response(status) for status, (name, _) in _ERRORS.items()},
        },
    }
