"""OAuth 2.0 Protected Resource Metadata (RFC 9728): where an MCP client learns which authorization
servers issue tokens for the hub and for each of its MCP endpoints.

`GET /.well-known/oauth-protected-resource` describes the hub's URL (the resource of the REST API
and the WebSockets); `/.well-known/oauth-protected-resource/mcp`,
`.../tenants/{t}/mcp` and `.../tenants/{t}/servers/{s}/mcp` describe those MCP endpoints. A 401
of a hub with OAuth names the one of its path (`web.oauth_resource.challenge`). Public (no key);
404 when OAuth is not configured (`auth.issuers`, `auth.server.enabled`), and for a tenant or a
server the configuration does not have.

Handlers run on the web loop.
"""

from __future__ import annotations

from typing import Any

from hub.config import HubConfig
from hub.errors import NotFound
from web.base import ApiHandler
from web.oauth_resource import METADATA_PATH, hub_url
from web.oauth_tokens import Resource, local_issuers
from web.responses_oauth import ProtectedResourceMetadata


def authorization_servers(config: HubConfig, resource: Resource) -> list[str]:
    """The issuers of tokens for `resource`: `auth.issuers`, then the built-in server's (its
    registered local issuers; the hub's URL until one is registered), without repeats."""
    names = [issuer.issuer for issuer in config.auth.issuers]
    if config.auth.server.enabled:
        local = [issuer.name(resource) for issuer in local_issuers()]
        names += local or [resource.base]
    return list(dict.fromkeys(names))


def metadata(config: HubConfig, resource: Resource) -> ProtectedResourceMetadata:
    """The protected resource metadata of `resource` (`scopes_supported` only when `auth.scopes`
    has some: an empty list would make a client ask for an empty scope)."""
    answer: ProtectedResourceMetadata = {
        "resource": resource.url,
        "authorization_servers": authorization_servers(config, resource),
        "bearer_methods_supported": ["header"],
    }
    if config.auth.scopes:
        answer["scopes_supported"] = list(config.auth.scopes)
    return answer


class ProtectedResourceHandler(ApiHandler):
    """`GET /.well-known/oauth-protected-resource[/<MCP path>]`: a resource's metadata (public)."""

    route = METADATA_PATH
    public = True

    def get(self, tenant: str | None = None, server: str | None = None) -> None:
        config = self.hub.config
        if not config.auth.oauth:
            raise NotFound("this hub takes no OAuth access tokens (auth.issuers, auth.server)")
        known = config.tenants.get(tenant) if tenant is not None else None
        if tenant is not None and known is None:
            raise NotFound(f"no tenant '{tenant}'")
        if server is not None and (known is None or server not in known.servers):
            raise NotFound(f"no server '{server}' of tenant '{tenant}'")
        base = hub_url(self, config)
        self.reply(metadata(config, Resource(base, base + self.request.path.removeprefix(METADATA_PATH))))


class McpResourceHandler(ProtectedResourceHandler):
    """`.../mcp`: the metadata of the MCP endpoint of the caller's tenant."""

    route = METADATA_PATH + "/mcp"


class TenantResourceHandler(ProtectedResourceHandler):
    """`.../tenants/{t}/mcp`: the metadata of a tenant's MCP endpoint."""

    route = METADATA_PATH + "/tenants/{tenant}/mcp"


class ServerResourceHandler(ProtectedResourceHandler):
    """`.../tenants/{t}/servers/{s}/mcp`: the metadata of one server's MCP endpoint."""

    route = METADATA_PATH + "/tenants/{tenant}/servers/{server}/mcp"


ROUTES: list[tuple[str, Any]] = [
    (r"/.well-known/oauth-protected-resource", ProtectedResourceHandler),
    (r"/.well-known/oauth-protected-resource/mcp", McpResourceHandler),
    (r"/.well-known/oauth-protected-resource/tenants/([^/]+)/mcp", TenantResourceHandler),
    (r"/.well-known/oauth-protected-resource/tenants/([^/]+)/servers/([^/]+)/mcp", ServerResourceHandler),
]
