"""The OpenAPI 3.1 description of the REST API, served at `GET /openapi.json`.

`document(version)` assembles it: the operations from `web.openapi_paths`, `web.openapi_oauth` and the
others beside it (`web.openapi_me`, `web.openapi_backup`, ...)
(built from the pieces of `web.openapi_ops`), and the component schemas that `web.openapi_schemas`
generates from the response types of `web.responses`, the same types the handlers are checked to
return. `tests/test_openapi.py` checks that every route of `web.app.ROUTES` is described (with the
methods its handler implements), that the document is valid OpenAPI 3.1 and that real answers match
their schemas; `tests/test_openapi_live.py` fuzzes a running hub against it (schemathesis).

Conventions: every error answers `{"error": {"code", "message"}}` (the `Error` schema) through the
reusable responses of `components.responses`; every operation needs a bearer key (`bearer`, applied
globally) except the public ones (`/`, `/health`, `/openapi.json`, the admin panel's script and
style sheet, the OAuth protected resource metadata), which override it with `security: []`. A
tool that ran and reported failure is a 200 with `"is_error": true`, not an error.

Runs on the web loop (`GET /openapi.json`); the schemas are generated once, on first use.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from web.openapi_backup import backup_paths
from web.openapi_config import config_paths
from web.openapi_me import me_paths
from web.openapi_oauth import oauth_paths
from web.openapi_oauth_server import oauth_server_paths
from web.openapi_ops import ERRORS, error_response
from web.openapi_paths import paths
from web.openapi_pins import pins_paths
from web.openapi_registry import registry_paths
from web.openapi_schemas import component_schemas


@functools.cache
def _schemas_text() -> str:
    return json.dumps(component_schemas())


def _schemas() -> dict[str, Any]:
    """`components.schemas`, a fresh copy each call (generating them takes tens of milliseconds)."""
    schemas: dict[str, Any] = json.loads(_schemas_text())
    return schemas


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
            {"name": "me", "description": "The caller's own credentials for per_user servers."},
            {"name": "registry", "description": "MCP registries' servers, and installing them (admin)."},
            {"name": "cluster", "description": "Between the replicas of a cluster (docs/cluster.md)."},
            {
                "name": "oauth",
                "description": "OAuth: the protected resource metadata, and the built-in "
                "authorization server (auth.server).",
            },
        ],
        "security": [{"bearer": []}],
        "paths": {
            **paths(),
            **oauth_paths(),
            **oauth_server_paths(),
            **me_paths(),
            **config_paths(),
            **registry_paths(),
            **backup_paths(),
            **pins_paths(),
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer <key>`: an admin key or a tenant key, or an "
                    "OAuth access token (a JWT of an issuer of `auth.issuers`, for the resource "
                    "the protected resource metadata names).",
                }
            },
            "schemas": _schemas(),
            "responses": {name: error_response(status) for status, (name, _) in ERRORS.items()},
        },
    }
