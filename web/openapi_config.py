"""The configuration editor's operations in the OpenAPI document (beside `web.openapi_paths`,
which `web.openapi` joins them with): tenants and servers added, changed and removed through the
API, written back to the configuration file. Runs on the web loop, when `GET /openapi.json` builds
the document.
"""

from __future__ import annotations

from typing import Any

from web.openapi_ops import JSON, SERVER, TENANT, op, returns

_ADMIN = "Admin keys only (a tenant key gets 404)."
_IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": "The ETag read before the edit: if the configuration changed since, 412 and nothing "
    "is written. Without it the edit applies to whatever the hub serves.",
    "schema": {"type": "string"},
}
_EDIT = (
    "The change is checked like `hub check` checks a file (400 with every problem), written back to "
    "the configuration file atomically with its comments and layout kept, and applied by a reload "
    "(unchanged servers keep their process); one audit line names who made it. 409 "
    "`config_changed_on_disk` when the file was edited by hand since the hub read it (the file wins: "
    "reload it first), 409 `config_read_only` when there is no file to write (a cluster, a read-only "
    "file). A value `********` sent back keeps the file's value there."
)
_OBJECT = {"type": "object", "additionalProperties": True}


def _body(what: str) -> dict[str, Any]:
    return {"required": True, "description": what, "content": {JSON: {"schema": _OBJECT}}}


def _raw(name: str) -> dict[str, Any]:
    return {
        "description": f"The {name} as the file has it (secrets masked); the `ETag` header is the "
        "configuration's.",
        "content": {JSON: {"schema": _OBJECT}},
    }


def _edited(description: str) -> dict[str, Any]:
    return returns(
        "ConfigEdit", description + " (201 when it was created); the `ETag` header is the new one."
    )


def config_paths() -> dict[str, Any]:
    """`/api/admin/config` and `/api/admin/tenants/{tenant}[/servers/{server}]`."""
    tenant, server = [TENANT], [TENANT, SERVER]
    return {
        "/api/admin/config": {
            "get": op(
                "getConfig",
                "The tenants as the configuration file has them",
                "admin",
                returns("ConfigView", "Every tenant's raw configuration, and the ETag to edit it with."),
                (404, 409),
                description=_ADMIN,
            )
        },
        "/api/admin/tenants/{tenant}": {
            "get": op(
                "getTenantConfig",
                "A tenant as the file has it",
                "admin",
                _raw("tenant"),
                (404, 409),
                tenant,
                description=_ADMIN,
            ),
            "put": op(
                "putTenantConfig",
                "Add or change a tenant",
                "admin",
                _edited("The tenant was written and applied"),
                (404, 409, 412),
                [*tenant, _IF_MATCH],
                _body("The tenant's configuration, as in the file; without `servers` it keeps its servers."),
                description=f"{_ADMIN} {_EDIT}",
            ),
            "delete": op(
                "deleteTenantConfig",
                "Remove a tenant (its servers stop)",
                "admin",
                _edited("The tenant was removed"),
                (404, 409, 412),
                [*tenant, _IF_MATCH],
                description=f"{_ADMIN} {_EDIT}",
            ),
        },
        "/api/admin/tenants/{tenant}/servers/{server}": {
            "get": op(
                "getServerConfig",
                "A server as the file has it",
                "admin",
                _raw("server"),
                (404, 409),
                server,
                description=_ADMIN,
            ),
            "put": op(
                "putServerConfig",
                "Add or change a server",
                "admin",
                _edited("The server was written and applied"),
                (404, 409, 412),
                [*server, _IF_MATCH],
                _body(
                    "The server's configuration, as in the file (`command`, `args`, `env`; or "
                    "`transport` and `url`...)."
                ),
                description=f"{_ADMIN} {_EDIT}",
            ),
            "delete": op(
                "deleteServerConfig",
                "Remove a server (its process stops)",
                "admin",
                _edited("The server was removed"),
                (404, 409, 412),
                [*server, _IF_MATCH],
                description=f"{_ADMIN} {_EDIT}",
            ),
        },
    }
