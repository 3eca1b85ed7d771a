"""The JSON shapes of the registry routes (`web.registry`), declared as types like those of
`web.responses`: the entries themselves are `hub.registry_entries`' and `hub.registry`'s types;
`web.openapi_schemas` makes each type of `COMPONENTS` a component of the OpenAPI document.

At run time these are plain dicts: nothing here runs on a request's path, on any thread.
"""

from __future__ import annotations

from typing import Any

from typing_extensions import TypedDict  # pydantic reads only this one on Python < 3.12

from hub.registry import ListedEntry, Listing, RegistryError
from hub.registry_entries import Entry, Field, Installable


class RegistryInstall(TypedDict):
    """What an install did: the server added to the tenant, its configuration as the file now
    holds it (every `env` and `headers` value shown as `********`), the configuration's new ETag,
    and the reload's summary."""

    tenant: str
    server: str
    spec: dict[str, Any]
    etag: str
    reload: dict[str, Any]


COMPONENTS: dict[str, Any] = {
    "RegistryListing": Listing,
    "RegistryListedEntry": ListedEntry,
    "RegistryError": RegistryError,
    "RegistryEntry": Entry,
    "RegistryInstallable": Installable,
    "RegistryField": Field,
    "RegistryInstall": RegistryInstall,
}
