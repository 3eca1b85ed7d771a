"""The JSON shapes of the OAuth routes, declared as types like those of `web.responses` (whose
conventions they follow); `web.openapi_schemas` makes each type of `COMPONENTS` a component of the
OpenAPI document.

At run time these are plain dicts: nothing here runs on a request's path, on any thread.
"""

from __future__ import annotations

from typing import Annotated, Any, NotRequired

from typing_extensions import TypedDict  # pydantic reads only this one on Python < 3.12

from web.responses import Doc


class ProtectedResourceMetadata(TypedDict):
    """OAuth 2.0 Protected Resource Metadata (RFC 9728) of the hub or of one of its MCP endpoints:
    which authorization servers issue tokens for it (public)."""

    resource: Annotated[str, Doc("The resource's URL: a token's audience (`aud`).")]
    authorization_servers: Annotated[
        list[str], Doc("Issuers whose access tokens it accepts (`auth.issuers`, the built-in server).")
    ]
    scopes_supported: NotRequired[
        Annotated[list[str], Doc("The scopes the hub knows (`auth.scopes`); absent when it has none.")]
    ]
    bearer_methods_supported: Annotated[list[str], Doc('How to send a token: `["header"]`.')]


COMPONENTS: dict[str, Any] = {t.__name__: t for t in (ProtectedResourceMetadata,)}
