"""The Tornado application: the route tables of each handler module, assembled in one place.

`make_app` builds the main application (every route). The two extra listeners
(`gateway.mcp_port` and `gateway.websocket_port`, docs/configuration.md) get
`make_app(..., only=...)`: their own routes (the MCP endpoint; the app WebSocket gateway) and
`/health`. Built once at start, on the main thread; the handlers run on the web loop.
"""

from __future__ import annotations

import json
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import tornado.httputil
import tornado.web

import hub
from hub import timeouts
from hub.errors import HubError
from hub.runtime import Hub
from web import (
    admin,
    app_gateway,
    backup,
    cluster_link,
    config_api,
    mcp_http,
    me,
    oauth_login,
    oauth_metadata,
    oauth_server,
    pins,
    registry,
    rest,
    ui_host,
)
from web import apps as apps_module
from web.base import ApiHandler, NotFoundHandler, log_request
from web.edge import policy_for
from web.mcp_endpoint import McpEndpoint


class OpenApiHandler(ApiHandler):
    """`GET /openapi.json`: the OpenAPI 3.1 description of every route (public)."""

    route = "/openapi.json"
    public = True

    def get(self) -> None:
        from web.openapi import document

        self.finish(json.dumps(document(hub.__version__)))


class RefusedHandler(ApiHandler):
    """The answer to a request the edge refuses (a `Host` or `Origin` it does not serve), whatever
    its route and method."""

    route = "(refused)"
    public = True

    def initialize(self, error: HubError) -> None:
        self.error = error

    async def prepare(self) -> None:
        raise self.error


class HubApplication(tornado.web.Application):
    """The route table behind the edge: a request to a `Host` or from an `Origin` the hub does not
    serve never reaches a route (`web/edge.py`). Web loop."""

    def find_handler(self, request: tornado.httputil.HTTPServerRequest, **kwargs: Any) -> Any:
        host = request.headers.get("Host")
        policy = policy_for(self.settings["hub"].config.gateway, self.settings["bound_host"])
        refusal = policy.refusal(host, request.headers.get("Origin")) if host is not None else None
        if refusal is not None:
            return self.get_handler_delegate(request, RefusedHandler, {"error": refusal})
        return super().find_handler(request, **kwargs)


# Tornado tries each route's pattern in turn: the MCP endpoint, the busiest, comes first.
ROUTES: list[tuple[str, Any]] = [
    *mcp_http.ROUTES,
    *rest.ROUTES,
    *pins.ROUTES,
    *me.ROUTES,
    *backup.ROUTES,
    *apps_module.ROUTES,
    *ui_host.ROUTES,
    *admin.ROUTES,
    *registry.ROUTES,
    *config_api.ROUTES,
    *cluster_link.ROUTES,
    *oauth_metadata.ROUTES,
    *oauth_server.ROUTES,
    *oauth_login.ROUTES,
    (r"/openapi.json", OpenApiHandler),
]

# What the extra listeners serve: the MCP endpoint (and the built-in authorization server, whose
# issuer is the URL a client reaches the hub at), and the apps' WebSocket gateway.
LISTENER_ROUTES: dict[str, list[tuple[str, Any]]] = {
    "mcp": [
        (r"/health", rest.HealthHandler),
        *mcp_http.ROUTES,
        *oauth_metadata.ROUTES,
        *oauth_server.ROUTES,
        *oauth_login.ROUTES,
    ],
    "websocket": [(r"/health", rest.HealthHandler), *app_gateway.ROUTES],
}


def app_registry(hub_: Hub) -> apps_module.AppRegistry:
    """The apps of `$MCP_HUB_PLUGINS_DIR`, else of `gateway.plugins_dir`."""
    return apps_module.AppRegistry(os.environ.get("MCP_HUB_PLUGINS_DIR") or hub_.config.gateway.plugins_dir)


def make_app(
    hub_: Hub,
    executor: ThreadPoolExecutor,
    mcp: McpEndpoint | None = None,
    apps: apps_module.AppRegistry | None = None,
    only: str | None = None,
    bound_host: str | None = None,
    **settings: Any,
) -> tornado.web.Application:
    """The application for `hub_`; `only` names an extra listener's restricted route table;
    `mcp` is the running MCP endpoint (its routes answer 404 without one); `bound_host` is the
    address the hub listens on (default `gateway.host`)."""
    routes = LISTENER_ROUTES[only] if only else ROUTES
    oauth_server.install(hub_)  # (its tokens are the resource server's to check)
    return HubApplication(
        routes,
        bound_host=bound_host or hub_.config.gateway.host,
        default_handler_class=NotFoundHandler,
        log_function=log_request,
        hub=hub_,
        executor=executor,
        mcp=mcp,
        apps=apps if apps is not None else app_registry(hub_),
        # A ping every 20 s; no pong within 20 s closes the connection. Tornado caps the timeout at
        # the interval (and warns when it is longer), so it cannot be more.
        websocket_ping_interval=timeouts.WEBSOCKET_PING_INTERVAL,
        websocket_ping_timeout=timeouts.WEBSOCKET_PING_TIMEOUT,
        websocket_max_message_size=16 * 1024 * 1024,
        compress_response=True,
        cookie_secret=secrets.token_hex(32),  # per process: app cookies do not outlive the hub
        **settings,
    )
