"""What every HTTP handler shares: who is calling (`web.auth`: a key, or an OAuth access token for
the resource the request is for, `web.oauth_resource`), JSON in and out, and the one error shape.

Errors are raised one way (a `HubError`, or Tornado's `HTTPError` for routing-level problems) and
written one way, by `ApiHandler.write_error`, as `{"error": {"code", "message"}}` with the status
of the error class (a 401 with a `WWW-Authenticate` challenge). Handlers run on the web loop (the
main thread); whatever blocks (actor asks, waiting for servers) goes through
`ApiHandler.blocking`, on the frontend's thread pool.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import tornado.httputil
import tornado.web

from hub import jsontext, seams
from hub.errors import (
    BadRequest,
    HubError,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
    ShuttingDown,
    Unauthorized,
)
from hub.runtime import Hub
from web.auth import SESSION_HEADER, Caller, Keys, bearer_token, header_session, keys_for
from web.oauth_resource import challenge, resource_of
from web.oauth_tokens import Resource

log = logging.getLogger(__name__)
INTERNAL_MESSAGE = "internal error (see the hub's log)"  # (the answer to an error of the hub's own)
access_log = logging.getLogger("mcp_hub.access")
T = TypeVar("T")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    500: "internal_error",
    503: "shutting_down",
}


class ApiHandler(tornado.web.RequestHandler):
    """Base of every JSON handler: authentication, body parsing, JSON errors, 405 with `Allow`.

    `route` names the handler's URL pattern for access logs and metrics.
    """

    route = "?"
    public = False  # True: no key needed (health, root, OpenAPI)
    token_in_query = False  # True: the key may also come as `?token=` (pages a browser opens)

    @property
    def hub(self) -> Hub:
        return self.application.settings["hub"]

    @property
    def keys(self) -> Keys:
        return keys_for(self.hub.config)

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")

    async def prepare(self) -> None:
        if self.application.settings.get("draining"):
            raise ShuttingDown("the hub is shutting down")
        limit = self.hub.config.gateway.max_body_bytes
        if len(self.request.body or b"") > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes (gateway.max_body_bytes)")
        self.caller = Caller(admin=True) if self.public and self.keys.open else None
        if not self.public:
            token = self._bearer()
            if token and self.keys.tokens is not None:  # (only an access token needs its issuer's keys)
                await self.keys.ready(token, self.resource())
            self.caller = self.authenticate()

    def authenticate(self) -> Caller:
        """Who this request acts as (a hook: some handlers also accept other credentials).

        Raises:
            Unauthorized: keys are configured and the request carries none that matches.
        """
        keys = self.keys
        # (the resource is an access token's audience: needed only where OAuth is configured)
        return keys.authenticate(self._bearer(), self.resource() if keys.tokens is not None else None)

    def resource(self) -> Resource:
        """The protected resource this request is for (an access token's audience)."""
        return resource_of(self, self.hub.config)

    def _bearer(self) -> str | None:
        """The key this request carries (`?token=` too where `token_in_query`)."""
        return bearer_token(self, allow_query=self.token_in_query)

    # ------------------------------------------------------------------ helpers for handlers

    def tenant_for(self, tenant: str) -> str:
        """`tenant`, if this caller may see it; another tenant is `NotFound`, never forbidden."""
        assert self.caller is not None
        if not self.caller.sees(tenant) or tenant not in self.hub.config.tenants:
            raise NotFound(f"no tenant '{tenant}'")
        return tenant

    def calling_tenant(self) -> str:
        """The tenant a request acts in where it may name one with `?tenant=` (a tool call, the MCP
        facade): the one it names, else a tenant key's own, else `default` (an admin key, an open
        hub). `?tenant=` follows `tenant_for`: a tenant key may name its own tenant only.

        Raises:
            NotFound: the named tenant does not exist or is not this caller's (never told apart).
        """
        assert self.caller is not None
        return self.tenant_for(self.get_query_argument("tenant", None) or self.caller.tenant or "default")

    def listed_tenants(self) -> list[str]:
        """The tenants a listing shows: the one `?tenant=` names (checked by `tenant_for`), else
        every tenant this caller sees."""
        wanted = self.get_query_argument("tenant", None)
        return [self.tenant_for(wanted)] if wanted else self.visible_tenants()

    def session(self) -> str | None:
        """The client session this request belongs to: its `Mcp-Hub-Session` header, if any (a
        per_session server's tools then run on that session's own instance)."""
        return header_session(self.request.headers.get(SESSION_HEADER), self.caller)

    def visible_tenants(self) -> list[str]:
        """Tenants this caller may see, in configuration order."""
        assert self.caller is not None
        return [t for t in self.hub.config.tenants if self.caller.sees(t)]

    def json_body(self) -> Any:
        """The request body parsed as JSON (an empty body is `{}`), checked by `hub.jsontext`."""
        body = self.request.body
        if not body or not body.strip():
            return {}
        return jsontext.loads(body)  # (BadRequest: not JSON, too deep, not valid Unicode text)

    def json_object(self) -> dict[str, Any]:
        """The body, which must be a JSON object."""
        body = self.json_body()
        if not isinstance(body, dict):
            raise BadRequest(f"the body must be a JSON object, not {type(body).__name__}")
        return body

    def reply(self, data: Any, status: int = 200) -> None:
        """Finish with `data` as JSON."""
        self.set_status(status)
        self.finish(jsontext.dumps(data))  # (a server's lone surrogate is U+FFFD: never a 500)

    async def blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking Hub call off the web loop."""
        executor: ThreadPoolExecutor = self.application.settings["executor"]
        return await asyncio.get_running_loop().run_in_executor(
            executor, functools.partial(fn, *args, **kwargs)
        )

    # ------------------------------------------------------------------ errors

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, HubError):
            status, code, message = exc.status, exc.code, exc.message
            if isinstance(exc, QuotaExceeded):
                self.set_header("Retry-After", str(max(1, math.ceil(exc.retry_after))))
            if isinstance(exc, Unauthorized):
                refused = exc.message if self._bearer() is not None else None
                self.set_header("WWW-Authenticate", challenge(self, self.hub.config, refused))
        elif isinstance(exc, tornado.web.HTTPError):
            status = exc.status_code
            code = _HTTP_CODES.get(status, "http_error")
            message = exc.log_message or seams.reason(self)
            if status == 405:
                self.set_header("Allow", ", ".join(self.allowed_methods()))
                message = (
                    f"{self.request.method} is not allowed here; allowed: {', '.join(self.allowed_methods())}"
                )
        else:
            status, code, message = 500, "internal_error", INTERNAL_MESSAGE
        self.clear_header("Content-Type")
        self.set_default_headers()
        self.set_status(status)
        self.finish(json.dumps({"error": {"code": code, "message": message}}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # Hub errors are answers, not failures of the hub: no traceback for them.
        if isinstance(value, HubError | tornado.web.HTTPError):
            return
        log.error("uncaught error in %s %s", self.request.method, self.route, exc_info=(typ, value, tb))

    @classmethod
    def allowed_methods(cls) -> list[str]:
        """The HTTP methods this handler implements."""
        base = tornado.web.RequestHandler
        return [
            m
            for m in ("GET", "POST", "PUT", "PATCH", "DELETE")
            if getattr(cls, m.lower()) is not getattr(base, m.lower())
        ]


class AdminHandler(ApiHandler):
    """A route for admin keys only: to any other caller it does not exist (the 404 of an unknown
    route)."""

    async def prepare(self) -> None:
        await super().prepare()
        assert self.caller is not None
        if not self.caller.admin:
            raise NotFound(f"no route {self.request.path}")


class NotFoundHandler(ApiHandler):
    """The JSON 404 for every unknown path."""

    route = "(unknown)"
    public = True

    async def prepare(self) -> None:
        await super().prepare()
        raise NotFound(f"no route {self.request.path}")


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Tornado's `log_function`: one access line and one metric per request (no body, no query, no key)."""
    hub: Hub | None = handler.application.settings.get("hub")
    route = getattr(handler, "route", "(static)")
    log_access(hub, handler.request, route, handler.get_status(), getattr(handler, "caller", None))


def log_access(
    hub: Hub | None,
    request: tornado.httputil.HTTPServerRequest,
    route: str,
    status: int,
    caller: Caller | None,
) -> None:
    """The access line and the metric of a request to `route` answered with `status` (also of one
    served below a handler, `web.mcp_fast`)."""
    duration_ms = request.request_time() * 1000
    who = caller.key_id if caller is not None and caller.key_id else "-"
    access_log.info("%s %s %d %.1fms key=%s", request.method, route, status, duration_ms, who)
    if hub is not None:
        hub.metrics.http_of(request.method or "?", route, str(status)).inc()
