"""The JSON shapes of the backup routes (`web.backup`), declared as types like those of
`web.responses` (whose conventions they follow); `web.openapi_schemas` makes each type of
`COMPONENTS` a component of the OpenAPI document.

At run time these are plain dicts: nothing here runs on a request's path, on any thread.
"""

from __future__ import annotations

from typing import Annotated, Any

from typing_extensions import TypedDict  # pydantic reads only this one on Python < 3.12

from web.responses import Doc, ReloadReport


class RestoredFiles(TypedDict):
    """What a restore wrote."""

    files: Annotated[int, Doc("How many files were written: the configuration file and the data files.")]
    config: Annotated[str, Doc("The configuration file written (the one the hub runs on).")]


class RestoreReport(TypedDict):
    """A backup restored onto the running hub, and what applying it changed."""

    restored: RestoredFiles
    reload: Annotated[ReloadReport, Doc("What the reload of the restored configuration changed.")]


COMPONENTS: dict[str, Any] = {t.__name__: t for t in (RestoreReport,)}
