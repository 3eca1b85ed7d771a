"""The operations of the marketplace in the OpenAPI document (`web.registry`, beside
`web.openapi_paths`, which `web.openapi` joins them with): the configured MCP registries' servers,
and installing one into a tenant. Runs on the web loop, when `GET /openapi.json` builds the
document.
"""

from __future__ import annotations

from typing import Any

from web.openapi_ops import JSON, SERVER, TENANT, op, path_param, query, returns

_ADMIN = "Admin key (a tenant key gets 404)."
_REGISTRY = query(
    "registry",
    {"type": "string"},
    "A configured registry, by URL or name (default: every one; for one entry or an install, the "
    "only one configured).",
)
_VALUES = (
    "`values` maps each field's `key` (`env:NAME`, `arg:runtime:I`, `arg:package:I`, `header:NAME`, "
    "`url:VAR`, and `<key>/VAR` for a variable of a fixed value) to what the admin typed."
)


def registry_paths() -> dict[str, Any]:
    """`/api/registry/servers`, one entry, and `.../install`."""
    install_body = {
        "required": True,
        "description": "What to install. " + _VALUES,
        "content": {
            JSON: {
                "schema": {
                    "type": "object",
                    "required": ["name", "version", "install"],
                    "properties": {
                        "registry": {"type": "string", "description": "A configured registry (URL or name)."},
                        "name": {"type": "string", "description": "The entry's name (`io.github.x/y`)."},
                        "version": {"type": "string", "description": "Its version, or `latest`."},
                        "install": {
                            "type": "string",
                            "description": "Which package or remote: an `id` of its `installs`.",
                        },
                        "values": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                }
            }
        },
    }
    return {
        "/api/registry/servers": {
            "get": op(
                "listRegistryServers",
                "Servers of the MCP registries",
                "registry",
                returns("RegistryListing", "One entry per server (its latest version), merged."),
                (404,),
                [query("search", {"type": "string"}, "A substring of the servers' names."), _REGISTRY],
                description=_ADMIN + " Follows each registry's pages (at most 5 of 100); a registry "
                "that fails is named in `errors` and the others still list. Cached 5 minutes.",
            )
        },
        "/api/registry/servers/{name}/versions/{version}": {
            "get": op(
                "getRegistryServer",
                "One server of a registry, at one version",
                "registry",
                returns("RegistryEntry", "The entry, with what it can be installed as."),
                (400, 404, 502),
                [
                    path_param("name", "The entry's name (URL-encoded: `io.github.x%2Fy`)."),
                    path_param("version", "Its version, or `latest`."),
                    _REGISTRY,
                ],
                description=_ADMIN + " 502 `registry_unavailable`: the registry did not answer.",
            )
        },
        "/api/admin/tenants/{tenant}/servers/{server}/install": {
            "post": op(
                "installRegistryServer",
                "Install a registry's server into a tenant",
                "registry",
                returns("RegistryInstall", "The server added, its configuration with secrets masked."),
                (404, 409, 412, 502),
                [TENANT, SERVER],
                install_body,
                description=_ADMIN + " npm packages run as `npx -y <identifier>@<version>`, pypi "
                "packages as `uvx <identifier>==<version>`, remotes as `transport: http` or `sse`; "
                "every install has `pinning: enforce`. 400: an OCI image (the hub runs no container "
                "engine), required values missing (all named), a value outside its choices. 409 "
                "`server_exists`: the tenant has a server of that name (also the configuration "
                "editor's 409s). 412: `If-Match` names another configuration. Secret values are "
                "stored like any `env` or header value and never shown.",
            )
        },
    }
