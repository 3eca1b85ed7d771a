"""What the configuration says about managing servers without editing files: tool pinning and
MCP registries.

- `pinning` (a tenant's, a server's override): what happens when a server's tools change after
  an admin approved them (`off`: nothing; `warn`: an event and a metric, the tools stay;
  `enforce`: the changed tools are held, hidden and refused, until an admin approves them).
- `registries`: MCP Registry API servers (`GET /v0/servers`) the admin panel installs from.

Pure data: safe to use from any thread.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from hub.config_fields import ConfigModel, NonEmpty

Pinning = Literal["off", "warn", "enforce"]
OFFICIAL_REGISTRY = "https://registry.modelcontextprotocol.io"


class RegistryConfig(ConfigModel):
    """An MCP Registry (the official registry's generic read API, `GET /v0/servers`)."""

    url: Annotated[str, Field(pattern="^https?://[^?#]+$")] = Field(
        description="The registry's base URL (without /v0)."
    )
    name: NonEmpty | None = Field(
        default=None, description="A label for the admin panel (default: the URL's host)."
    )


DEFAULT_REGISTRIES = (RegistryConfig(url=OFFICIAL_REGISTRY, name="MCP Registry"),)
