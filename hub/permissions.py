"""Per-tool permissions: what a caller may list and call, as one filter of a catalog and one check
of a call, used by every surface (REST, the WebSocket gateway, both MCP facades).

A caller's grants (`hub.config_auth.Grant`: a tenant key's `allow`/`deny` globs, an OAuth token's
scopes) match tools and prompts as `server.name`, and a server's resources and resource templates
only as the whole server (`server.*`, `*`). What a caller may not call is absent from what it is
shown, and asking for it is answered exactly as for something that does not exist (docs/security.md,
"Per-tool permissions"). A caller that may call everything of its tenant (`unrestricted`) costs
nothing: every function here hands its input back untouched.

Pure functions over frozen data: any thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Protocol

from actors.models import ServerCatalog, ToolEntry
from hub.errors import NotFound


class Permits(Protocol):
    """What may be listed and called (`web.auth.Caller` is one, and so is a facade's `Scope`)."""

    @property
    def unrestricted(self) -> bool:
        """Whether everything of the tenant may be (no filtering needed)."""

    def may(self, server: str, name: str | None) -> bool:
        """Whether `server.name` (a tool or a prompt) may; `name` None: the server's resources."""


class Who(Permits, Protocol):
    """A caller as the call path needs it: its permits, and who it is for the audit log."""

    @property
    def key_id(self) -> str | None:
        """The id of its key (a hash prefix), never the key."""

    @property
    def subject(self) -> str | None:
        """The user it acts for."""


def free(permits: Permits | None) -> bool:
    """Whether `permits` restrict nothing (None: a caller inside the hub, such as its Python API)."""
    return permits is None or permits.unrestricted


def tools(entries: Iterable[ToolEntry], permits: Permits | None) -> tuple[ToolEntry, ...]:
    """The tools of `entries` that `permits` may list."""
    if free(permits):
        return tuple(entries)
    assert permits is not None
    return tuple(e for e in entries if permits.may(e.server, e.name))


def catalog(whole: ServerCatalog, permits: Permits) -> ServerCatalog:
    """`whole` as `permits` sees it: the tools and prompts it may, the resources and templates only
    if it may read the server's."""
    readable = permits.may(whole.server, None)
    return replace(
        whole,
        tools=tuple(t for t in whole.tools if permits.may(t.server, t.name)),
        held=tuple(name for name in whole.held if permits.may(whole.server, name)),
        prompts=tuple(p for p in whole.prompts if permits.may(p.server, p.name)),
        resources=whole.resources if readable else (),
        resource_templates=whole.resource_templates if readable else (),
    )


def catalogs(wholes: Iterable[ServerCatalog], permits: Permits | None) -> tuple[ServerCatalog, ...]:
    """Each of `wholes` as `permits` sees it (`catalog`)."""
    if free(permits):
        return tuple(wholes)
    assert permits is not None
    return tuple(catalog(c, permits) for c in wholes)


def readable(wholes: Iterable[ServerCatalog], permits: Permits | None) -> tuple[ServerCatalog, ...]:
    """The catalogs of the servers whose resources `permits` may read (unchanged)."""
    if free(permits):
        return tuple(wholes)
    assert permits is not None
    return tuple(c for c in wholes if permits.may(c.server, None))


def may_call(permits: Permits | None, tool_id: str) -> bool:
    """Whether `permits` may call tool (or get prompt) `server.name`."""
    if free(permits):
        return True
    assert permits is not None
    server, _, name = tool_id.partition(".")
    return permits.may(server, name)


def unknown_tool(tenant: str, tool_id: str) -> NotFound:
    """The error of a tool a caller may not call: the router's for a tool that does not exist."""
    return NotFound(f"no tool '{tool_id}' in tenant '{tenant}'")
