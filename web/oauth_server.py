"""The built-in OAuth 2.1 authorization server's HTTP side: the `mcp` SDK's auth routes served by
Tornado, and the JWKS.

With `auth.server.enabled`, the hub is its own authorization server, its issuer
`gateway.public_url` or, without one, the hub's URL as a request reaches it: the scheme, the
`Host`'s name (which the edge checked) and the port it came in on (`web.oauth_resource.hub_url`:
what the resource server names the hub; a client that reaches the hub as `localhost` gets tokens
of `http://localhost:port`, valid there). It is served on the main listener and the MCP listener.
The SDK builds the protocol's routes (`mcp.server.auth.routes.create_auth_routes`: `/authorize`,
`/token`, `/register`, `/revoke`) as a Starlette app; `OAuthEndpointHandler` hands each request
to it through the same ASGI bridge as the MCP facade (`web.mcp_bridge`). The metadata document
(`/.well-known/oauth-authorization-server`) is the SDK's (`build_metadata`) plus what its builder
lacks: `client_id_metadata_document_supported`, `jwks_uri`, the RFC 9207 `iss` flag and the
`none` client authentication of public clients. `/oauth/jwks.json` publishes the signing key;
`/oauth/login` is the login page (`web.oauth_login`). Without `auth.server.enabled` every one of
these routes is 404. `install` makes it the resource server's local issuer (`web.oauth_tokens`):
its tokens are then checked like any issuer's, against its key set.

The Starlette app is rebuilt when the configuration changes (a reload), one per issuer; the
provider (`hub.oauth_provider`), with its codes and login requests, lives as long as the hub and
is shared by its listeners.

Handlers run on the web loop.
"""

from __future__ import annotations

import asyncio
import weakref
from contextvars import ContextVar
from typing import Any
from urllib.parse import parse_qs

from mcp.server.auth.routes import build_metadata, cors_middleware, create_auth_routes
from mcp.server.auth.settings import ClientRegistrationOptions, RevocationOptions
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub import seams
from hub.config import HubConfig
from hub.errors import NotFound
from hub.login_limiter import LoginLimiter
from hub.oauth_provider import HubOAuthProvider
from hub.runtime import Hub
from web.base import ApiHandler
from web.mcp_bridge import AsgiExchange, asgi_scope
from web.oauth_resource import hub_url
from web.oauth_tokens import Issuer, register_local_issuer

METADATA_PATH = "/.well-known/oauth-authorization-server"
JWKS_PATH = "/oauth/jwks.json"
LOGIN_PATH = "/oauth/login"
CURRENT_ISSUER: ContextVar[str] = ContextVar("mcp_hub_oauth_issuer")


class BuiltinAuthServer:
    """The authorization server of one hub: its provider, and the SDK's app over it (one per
    issuer the hub is reached at), shared by the hub's listeners.

    Args:
        hub_: the hub (its configuration, read anew at each use, and its `data_dir`).
    """

    def __init__(self, hub_: Hub) -> None:
        self.hub = hub_
        self.provider = HubOAuthProvider(lambda: hub_.config, self.issuer, hub_.data_dir / "oauth")
        self.limiter = LoginLimiter()  # (the login page's, `web.oauth_login`)
        self._apps: tuple[HubConfig, dict[str, Starlette]] | None = None

    @staticmethod
    def issuer() -> str:
        """The issuer of the request being served (`web.oauth_resource.hub_url`, set by `auth_server`)."""
        return CURRENT_ISSUER.get()

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set of the signing key (what `/oauth/jwks.json` serves)."""
        return self.provider.jwks()

    def app(self) -> Starlette:
        """The SDK's routes as a Starlette app, for the configuration and issuer as they are now."""
        config, issuer = self.hub.config, self.issuer()
        if self._apps is None or self._apps[0] is not config:
            self._apps = (config, {})
        apps = self._apps[1]
        if issuer not in apps:
            apps[issuer] = self._build(config, issuer)
        return apps[issuer]

    def _build(self, config: HubConfig, issuer: str) -> Starlette:
        scopes = list(config.auth.scopes) or None
        registration = ClientRegistrationOptions(enabled=True, valid_scopes=scopes, default_scopes=scopes)
        revocation = RevocationOptions(enabled=True)
        url = AnyHttpUrl(issuer)
        metadata = build_metadata(url, None, registration, revocation).model_dump(
            mode="json", exclude_none=True
        )
        metadata.update(
            issuer=issuer,  # exactly as in the tokens' `iss` (the URL type would add a "/")
            client_id_metadata_document_supported=True,
            authorization_response_iss_parameter_supported=True,
            token_endpoint_auth_methods_supported=["client_secret_post", "client_secret_basic", "none"],
            jwks_uri=issuer + JWKS_PATH,
        )

        async def metadata_endpoint(request: Request) -> Response:
            return JSONResponse(metadata, headers={"Cache-Control": "public, max-age=3600"})

        routes = [
            r
            for r in create_auth_routes(self.provider, url, None, registration, revocation)
            if getattr(r, "path", None) != METADATA_PATH
        ]
        endpoint = cors_middleware(metadata_endpoint, ["GET", "OPTIONS"])
        routes.insert(0, Route(METADATA_PATH, endpoint=endpoint, methods=["GET", "OPTIONS"]))
        return Starlette(routes=routes)


def auth_server(handler: ApiHandler) -> BuiltinAuthServer:
    """The hub's authorization server (made at its first use), serving `handler`'s request.

    Raises:
        NotFound: `auth.server.enabled` is false.
    """
    if not handler.hub.config.auth.server.enabled:
        raise NotFound(f"no route {handler.request.path} (auth.server is not enabled)")
    server = _SERVERS.get(handler.hub)
    if server is None:
        server = _SERVERS.setdefault(handler.hub, BuiltinAuthServer(handler.hub))
    CURRENT_ISSUER.set(hub_url(handler, handler.hub.config))  # (this request's task only)
    return server


_SERVERS: weakref.WeakKeyDictionary[Hub, BuiltinAuthServer] = weakref.WeakKeyDictionary()


def reload(hub_: Hub) -> None:
    """Have `hub_`'s authorization server, if it was made, read its folder again (a restore
    replaced it: `hub.restore_live`). Web loop."""
    server = _SERVERS.get(hub_)
    if server is not None:
        server.provider.reload()


_INSTALLED: list[weakref.ref[Hub]] = []  # the hub whose server is the process's local issuer
_NO_KEYS: dict[str, Any] = {"keys": []}


def install(hub_: Hub) -> None:
    """Make `hub_`'s built-in authorization server the issuer the resource server
    (`web.oauth_tokens`) trusts as local: its `iss` is the hub's URL as the request reaches it
    (`web.oauth_resource.hub_url`), its keys `hub_`'s own while `auth.server.enabled` (none otherwise, so a
    reload that disables it refuses its tokens at once). One per process: the last hub installed."""
    first = not _INSTALLED
    _INSTALLED[:] = [weakref.ref(hub_)]
    if first:
        register_local_issuer(Issuer.local(jwks=_local_jwks))


def _local_jwks() -> dict[str, Any]:
    """The key set of the installed hub's authorization server (any thread: the key is loaded once)."""
    hub_ = _INSTALLED[0]() if _INSTALLED else None
    if hub_ is None or not hub_.config.auth.server.enabled:
        return _NO_KEYS
    server = _SERVERS.get(hub_)
    if server is None:
        server = _SERVERS.setdefault(hub_, BuiltinAuthServer(hub_))
    return server.jwks()


class OAuthEndpointHandler(ApiHandler):
    """Base of the SDK's routes: each request handed to the SDK's handlers through the ASGI bridge
    (public: OAuth has its own client authentication). `OPTIONS` (CORS preflight) goes there too."""

    route = "/oauth (sdk)"
    public = True

    def initialize(self) -> None:
        self._disconnected = asyncio.Event()

    def on_connection_close(self) -> None:
        self._disconnected.set()

    async def options(self, *_: str) -> None:
        await self._bridge()

    async def _bridge(self) -> None:
        app = auth_server(self).app()
        seams.no_transforms(self)
        scope = asgi_scope(self.request, None, None, None)
        exchange = AsgiExchange(self, self._disconnected, None, lambda: None)
        await app(scope, exchange.receive, exchange.send)  # type: ignore[arg-type]
        if not seams.is_finished(self):
            self.finish()


class AuthorizeHandler(OAuthEndpointHandler):
    """`GET|POST /authorize`: an authorization request (the SDK's handler, then the login page)."""

    route = "/authorize"

    async def get(self) -> None:
        await self._bridge()

    async def post(self) -> None:
        await self._bridge()


class OAuthPostHandler(OAuthEndpointHandler):
    """`POST /token`, `/register`, `/revoke`: the SDK's handlers."""

    route = "/token|register|revoke"

    def initialize(self) -> None:
        super().initialize()
        self.route = self.request.path  # (one of three: a bounded label)

    async def post(self, what: str) -> None:
        body = self.request.body or b""
        if what == "revoke" and "client_secret" not in parse_qs(body.decode("latin-1")):
            # The SDK's `RevocationRequest` (mcp 2.3) requires a `client_secret` field, even null;
            # a public client (RFC 7009: `client_id` only) would get 400. An empty one is no secret.
            self.request.body = body + (b"&" if body else b"") + b"client_secret="
        await self._bridge()


class MetadataHandler(OAuthEndpointHandler):
    """`GET /.well-known/oauth-authorization-server`: the server's metadata (RFC 8414)."""

    route = METADATA_PATH

    async def get(self) -> None:
        await self._bridge()


class JwksHandler(ApiHandler):
    """`GET /oauth/jwks.json`: the public keys access tokens of the built-in server verify with."""

    route = JWKS_PATH
    public = True

    def get(self) -> None:
        jwks = auth_server(self).jwks()
        self.set_header("Cache-Control", "public, max-age=300")
        self.reply(jwks)


ROUTES: list[tuple[str, type[ApiHandler]]] = [
    (r"/authorize", AuthorizeHandler),
    (r"/(token|register|revoke)", OAuthPostHandler),
    (r"/.well-known/oauth-authorization-server", MetadataHandler),
    (r"/oauth/jwks.json", JwksHandler),
]
