"""The JSON shapes of `/api/me/...` (`web.me`), declared as types like those of `web.responses`
(whose conventions they follow); `web.openapi_schemas` makes each type of `COMPONENTS` a component
of the OpenAPI document.

At run time these are plain dicts: nothing here runs on a request's path, on any thread.
"""

from __future__ import annotations

from typing import Annotated, Any

from typing_extensions import TypedDict  # pydantic reads only this one on Python < 3.12

from web.responses import Doc


class CredentialVariable(TypedDict):
    name: str
    set: Annotated[bool, Doc("Whether the caller has set it (its value is never shown).")]


class Credentials(TypedDict):
    """The caller's own values for a per_user server: which variables are set, never the values."""

    server: str
    variables: list[CredentialVariable]


COMPONENTS: dict[str, Any] = {t.__name__: t for t in (Credentials,)}
"""Every response type of `/api/me` by its component name."""
