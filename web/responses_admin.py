"""The JSON shapes of the configuration editor's routes (`web.config_api`), declared as types like
those of `web.responses` (whose conventions they follow); `web.openapi_schemas` makes each type of
`COMPONENTS` a component of the OpenAPI document.

At run time these are plain dicts: nothing here runs on a request's path, on any thread.
"""

from __future__ import annotations

from typing import Annotated, Any

from typing_extensions import TypedDict  # pydantic reads only this one on Python < 3.12

from web.responses import Doc, ReloadReport


class ConfigView(TypedDict):
    """The tenants as the configuration file has them (`${VAR}` references unexpanded; every other
    value of `env`, `headers` and each tenant key shown as `********`)."""

    etag: Annotated[str, Doc("The configuration's ETag: send it back as `If-Match` with an edit.")]
    source: Annotated[str, Doc("The configuration file.")]
    changed_on_disk: Annotated[
        bool, Doc("The file was edited by hand since the hub read it: edits get 409 until it is reloaded.")
    ]
    tenants: Annotated[dict[str, Any], Doc("Each tenant's raw configuration, by name.")]


class ConfigEdit(TypedDict):
    """What an edit did: the new ETag, whether it created the tenant or server, and the reload."""

    etag: Annotated[str, Doc("The configuration's new ETag.")]
    created: Annotated[bool, Doc("Whether the tenant or server is new (the answer is then 201).")]
    reload: Annotated[ReloadReport, Doc("What the reload that applied it changed.")]


COMPONENTS: dict[str, Any] = {t.__name__: t for t in (ConfigView, ConfigEdit)}
"""Every response type by its component name (`#/components/schemas/<name>`)."""
