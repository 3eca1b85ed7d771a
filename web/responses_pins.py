"""The JSON shapes of pinned tools (`web.pins`), declared as types like those of `web.responses`
(whose conventions they follow); `web.openapi_schemas` makes each type of `COMPONENTS` a component
of the OpenAPI document.

At run time these are plain dicts: nothing here runs on a request's path, on any thread.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from typing_extensions import TypedDict  # pydantic reads only this one on Python < 3.12

from web.responses import Doc


class PinnedField(TypedDict):
    """One field of a tool, as pinned and as the server shows it now."""

    before: Annotated[Any, Doc("As approved (null: the tool was not pinned, or had no such field).")]
    after: Annotated[Any, Doc("As the server shows it now (null: removed, or no such field).")]


class PinChange(TypedDict):
    """One tool that differs from its pin."""

    tool: Annotated[str, Doc("The tool's own name on its server.")]
    change: Literal["added", "changed", "removed"]
    fields: Annotated[
        dict[str, PinnedField],
        Doc(
            "Each field that differs (`name`, `title`, `description`, `inputSchema`, `outputSchema`, "
            "`annotations`)."
        ),
    ]


class Pins(TypedDict):
    """A server's pinned tools, and how what it shows now differs (docs/security.md, "Pinned tools")."""

    tenant: str
    server: str
    pinning: Annotated[Literal["off", "warn", "enforce"], Doc("The pinning in effect for the server.")]
    state: Annotated[
        Literal["approved", "pending_approval", "rejected", "unpinned"],
        Doc(
            "`approved`: it shows what is pinned; `pending_approval`: it shows tools that differ; "
            "`rejected`: an admin rejected what it shows (its changed tools stay held under enforce); "
            "`unpinned`: nothing pinned yet (pinning off, or no catalog seen)."
        ),
    ]
    digest: Annotated[
        str | None,
        Doc("The digest of the catalog it shows, when it differs: send it back to approve or reject."),
    ]
    approved_at: Annotated[float | None, Doc("Unix time the pins were approved.")]
    approved_by: Annotated[
        str | None,
        Doc("Who approved them: `first_seen` (trust on first use), or the admin's subject or key id."),
    ]
    tools: Annotated[dict[str, str], Doc("The approved tools: name -> sha256 of its canonical JSON.")]
    held: Annotated[list[str], Doc("The tools hidden and refused now (`enforce`).")]
    diff: list[PinChange]


COMPONENTS: dict[str, Any] = {t.__name__: t for t in (Pins,)}
"""Every response type of pinned tools by its component name."""
