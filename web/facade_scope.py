"""What one facade request sees (`Scope`): a tenant's servers as one super-server (the aggregated
facade, `/mcp`, `/tenants/{t}/mcp`, `hub stdio --tenant T`), or one server of it, unchanged (the
one-server endpoints, `/tenants/{t}/servers/{s}/mcp`, `hub stdio --tenant T --server S`).

A scope names things for its clients and maps those names back: aggregated, every name and URI
carries its server (`web.facade_names`); one-server, a server's own tool, prompt and resource names
and URIs are shown as they are. It also says which capabilities and instructions its clients are
told: the one server's own, or, aggregated, what at least one of the tenant's servers supports.
And it says what its caller may use (`grants`: `hub.permissions`; None, everything), so each
caller's view shows only that. Frozen; any thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import mcp.types as types

from actors.models import ServerCatalog
from hub import permissions
from hub.config_auth import Grant
from hub.errors import NotFound
from web.facade_names import facade_name, facade_uri, upstream_uri

AGGREGATED_INSTRUCTIONS = (
    "MCP Hub: the tools, resources and prompts of this tenant's MCP servers. Names are <server>__<name>."
)


@dataclass(frozen=True)
class Scope:
    """The catalog a facade request sees: `tenant`'s servers, or only `server` of it, unchanged;
    of those, what its caller may use (`grants`, any of which allows; None: everything)."""

    tenant: str
    server: str | None = None
    grants: tuple[Grant, ...] | None = None

    @staticmethod
    def of(tenant: str, server: str | None, grants: tuple[Grant, ...]) -> Scope:
        """The scope of a caller with `grants` (one that may use everything gets the same scope,
        and so the same cached view, as any other such caller)."""
        free = any(g.unrestricted for g in grants)
        return Scope(tenant, server, None if free else grants)

    @property
    def unrestricted(self) -> bool:
        """Whether its caller may use everything of the tenant."""
        return self.grants is None

    def may(self, server: str, name: str | None) -> bool:
        """Whether its caller may list and call `server.name`; `name` None: the server's resources."""
        return self.grants is None or any(g.allows(server, name) for g in self.grants)

    @property
    def one_server(self) -> bool:
        """Whether this is a one-server endpoint (the server's own names, capabilities, instructions)."""
        return self.server is not None

    def sees(self, catalog: ServerCatalog) -> bool:
        """Whether `catalog` (of this scope's tenant) is shown here."""
        return self.server is None or catalog.server == self.server

    def shown(self, catalogs: Iterable[ServerCatalog]) -> tuple[ServerCatalog, ...]:
        """The catalogs of `catalogs` shown here, each with only what its caller may use."""
        return permissions.catalogs((c for c in catalogs if self.sees(c)), self)

    def name(self, server: str, name: str, sep: str) -> str:
        """The name clients see for tool or prompt `name` of `server`."""
        return name if self.server is not None else facade_name(server, name, sep)

    def tool_id(self, name: str, sep: str, servers: Iterable[str]) -> str | None:
        """The catalog id (`server.tool`) of a tool clients call `name`, if `name` is a plain
        `<server><sep><tool>` of one of `servers` (one-server: the tool's own name) that its caller
        may call; else None. (A name `facade_name` had to change maps to an id no server has.)"""
        if self.server is not None:
            candidates = [(self.server, name)]
        else:
            candidates = [(s, name[len(s) + len(sep) :]) for s in servers if name.startswith(f"{s}{sep}")]
        for server, tool in candidates:
            if tool and self.name(server, tool, sep) == name and self.may(server, tool):
                return f"{server}.{tool}"
        return None

    def uri(self, server: str, uri: str) -> str:
        """The URI (or URI template) clients see for `server`'s `uri`."""
        return uri if self.server is not None else facade_uri(server, uri)

    def upstream(self, uri: str) -> tuple[str, str]:
        """`(server, the server's own URI)` of a URI clients were shown.

        Raises:
            NotFound: not a URI of this scope.
        """
        if self.server is not None:
            return self.server, uri
        return upstream_uri(uri)

    def description(self, server: str, description: str | None) -> str:
        """A tool's description as shown: aggregated, it says which server the tool is from."""
        if self.server is not None:
            return description or ""
        return f"[{server}] {description or ''}".strip()


def _declared(catalog: ServerCatalog) -> Mapping[str, Any] | None:
    """The capabilities `catalog`'s server declared, if known (a server never discovered: None)."""
    capabilities = getattr(catalog, "capabilities", None)
    return capabilities if isinstance(capabilities, Mapping) else None


def capabilities_of(scope: Scope, catalogs: tuple[ServerCatalog, ...]) -> types.ServerCapabilities:
    """The capabilities `scope`'s clients are told, from the catalogs it sees.

    One server: what that server declared (tools, resources, prompts, logging, completions,
    resource subscriptions, extensions), with `listChanged` wherever the hub tells of changes (it
    does for every list: a restart of the server changes them too); a server never discovered yet
    gets the aggregated answer. Aggregated: tools, resources and prompts always (the hub lists them
    even when empty), and logging, completions and resource subscriptions only when at least one
    of the servers declares them, so a client never gets "Method not found" for something it was
    told is there.
    """
    declared = [d for d in (_declared(c) for c in catalogs) if d is not None]
    own = declared[0] if scope.one_server and declared else None
    has = {section: own is None or section in own for section in ("tools", "resources", "prompts")}
    return types.ServerCapabilities(
        tools=types.ToolsCapability(list_changed=True) if has["tools"] else None,
        resources=_resources(declared) if has["resources"] else None,
        prompts=types.PromptsCapability(list_changed=True) if has["prompts"] else None,
        logging=types.LoggingCapability() if any("logging" in d for d in declared) else None,
        completions=types.CompletionsCapability() if any("completions" in d for d in declared) else None,
        extensions=_extensions(own),
    )


def _resources(declared: list[Mapping[str, Any]]) -> types.ResourcesCapability:
    """The resources capability: subscriptions if any of the servers has them."""
    return types.ResourcesCapability(subscribe=any(_subscribable(d) for d in declared), list_changed=True)


def _subscribable(declared: Mapping[str, Any]) -> bool:
    """Whether a server's declared capabilities include resource subscriptions."""
    resources = declared.get("resources")
    return isinstance(resources, Mapping) and bool(resources.get("subscribe"))


def _extensions(own: Mapping[str, Any] | None) -> dict[str, dict[str, Any]] | None:
    """The one server's own SEP-2133 extensions (MCP Apps among them), if it declared any."""
    extensions = own.get("extensions") if own is not None else None
    return dict(extensions) if isinstance(extensions, Mapping) and extensions else None


def instructions_of(scope: Scope, catalogs: tuple[ServerCatalog, ...]) -> str | None:
    """The instructions `scope`'s clients are given: the one server's own, or the hub's."""
    if not scope.one_server:
        return AGGREGATED_INSTRUCTIONS
    for catalog in catalogs:
        instructions = getattr(catalog, "instructions", None)
        if isinstance(instructions, str):
            return instructions
    return None


def unknown_server(scope: Scope) -> NotFound:
    """The error of a one-server scope whose server is not (or no longer) configured."""
    return NotFound(f"no server '{scope.server}' in tenant '{scope.tenant}'")
