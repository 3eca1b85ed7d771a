"""Which protected resource a request is for (RFC 9728, RFC 8707), and the 401 challenge naming it.

The hub's URL is `gateway.public_url`, else `http://<the Host's name>:<the port the request came
in on>`: the port is the bound one, never the Host's (a token for another service on the same
host, another port, is not for the hub); behind a proxy or a port mapping, set `public_url`. A
request to an MCP endpoint (`/mcp`, `/tenants/{t}/mcp`, `/tenants/{t}/servers/{s}/mcp`) is for
the resource of that path (the hub's URL plus the path); any other (REST, WebSockets, pages) is for
the hub's URL itself. The metadata of a resource is at
`/.well-known/oauth-protected-resource<path>` (`web.oauth_metadata`), which a 401 names in its
`WWW-Authenticate` header when OAuth is configured.

Runs on the web loop.
"""

from __future__ import annotations

import re
from typing import Any

import tornado.web

from hub.config import HubConfig
from web.oauth_tokens import Resource

METADATA_PATH = "/.well-known/oauth-protected-resource"
_MCP_PATH = re.compile(r"/(?:tenants/[^/]+/(?:servers/[^/]+/)?)?mcp")
_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\]')  # what may not stand in a quoted header value


def mcp_path(path: str) -> str:
    """`path` if it is an MCP endpoint's (a resource of its own), else "" (the hub's URL)."""
    return path if _MCP_PATH.fullmatch(path) else ""


def hub_url(handler: tornado.web.RequestHandler, config: HubConfig) -> str:
    """The hub's URL as the request reached it: `gateway.public_url`, else the scheme, the Host's
    name and the port the connection came in on."""
    if config.gateway.public_url:
        return config.gateway.public_url.rstrip("/")
    request = handler.request
    stream: Any = getattr(request.connection, "stream", None)
    sock = getattr(stream, "socket", None)
    port = sock.getsockname()[1] if sock is not None else config.gateway.port
    return f"{request.protocol}://{request.host_name}:{port}"


def resource_of(handler: tornado.web.RequestHandler, config: HubConfig) -> Resource:
    """The resource a request is for: its MCP endpoint's URL, else the hub's URL."""
    base = hub_url(handler, config)
    return Resource(base, base + mcp_path(handler.request.path))


def challenge(handler: tornado.web.RequestHandler, config: HubConfig, refused: str | None) -> str:
    """The `WWW-Authenticate` value of a 401: with OAuth configured, the resource's metadata URL
    (RFC 9728) and, when a credential was sent and `refused`, `error="invalid_token"` with the
    reason (RFC 6750)."""
    value = 'Bearer realm="mcp-hub"'
    if not config.auth.oauth:
        return value
    metadata = hub_url(handler, config) + METADATA_PATH + mcp_path(handler.request.path)
    value += f', resource_metadata="{metadata}"'
    if refused is not None:
        value += f', error="invalid_token", error_description="{_UNSAFE.sub("?", refused)[:300]}"'
    return value
