"""The operations of the OpenAPI document for OAuth (`web.openapi` joins them with
`web.openapi_paths`'): the protected resource metadata of the hub and of its MCP endpoints (RFC
9728, `web.oauth_metadata`). Runs on the web loop, when `GET /openapi.json` builds the document.
"""

from __future__ import annotations

from typing import Any

from web.openapi_ops import SERVER, TENANT, op, returns

_PRM = "/.well-known/oauth-protected-resource"
_ABOUT = (
    "OAuth 2.0 Protected Resource Metadata (RFC 9728): `resource` (an access token's audience), "
    "`authorization_servers` (`auth.issuers`, and the built-in server when enabled), "
    "`scopes_supported` (`auth.scopes`, if any), `bearer_methods_supported`. Public. 404 when the hub takes "
    "no OAuth access tokens (no `auth.issuers`, `auth.server` off)"
)


def _metadata(
    operation_id: str, what: str, parameters: list[dict[str, Any]], more: str = ""
) -> dict[str, Any]:
    return {
        "get": op(
            operation_id,
            f"OAuth protected resource metadata of {what}",
            "oauth",
            returns("ProtectedResourceMetadata", f"The metadata of {what}."),
            (404,),
            parameters,
            public=True,
            description=_ABOUT + more + ".",
        )
    }


def oauth_paths() -> dict[str, Any]:
    """The OAuth paths of the API with their operations."""
    return {
        _PRM: _metadata("getResourceMetadata", "the hub (the REST API and the WebSockets)", [], ""),
        f"{_PRM}/mcp": _metadata("getMcpResourceMetadata", "`/mcp`", []),
        f"{_PRM}/tenants/{{tenant}}/mcp": _metadata(
            "getTenantMcpResourceMetadata", "`/tenants/{tenant}/mcp`", [TENANT], ", or an unknown tenant"
        ),
        f"{_PRM}/tenants/{{tenant}}/servers/{{server}}/mcp": _metadata(
            "getServerMcpResourceMetadata",
            "`/tenants/{tenant}/servers/{server}/mcp`",
            [TENANT, SERVER],
            ", or an unknown tenant or server",
        ),
    }
