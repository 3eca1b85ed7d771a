"""What a tenant's servers offer besides tools, as the `Hub` API reads it: a resource (from the
server that offers it) and a prompt, each only of the servers a caller may use (`hub.permissions`).

Runs on the caller's thread (the blocking `Hub.read_resource` and `Hub.get_prompt`), which the
call path borrows a loop for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcp import InvalidUriTemplate, UriTemplate

from actors.models import ServerCatalog
from hub.calls import CallPath
from hub.errors import BadRequest, NotFound
from hub.permissions import Permits, may_call, readable


def read_resource(
    calls: CallPath,
    tenant: str,
    wholes: tuple[ServerCatalog, ...],
    uri: str,
    server: str | None,
    session: str | None,
    caller: Permits | None,
) -> dict[str, Any]:
    """Read `uri` of `tenant` (whose servers' catalogs are `wholes`): see `Hub.read_resource`."""
    catalogs = readable(wholes, caller)
    owners = [c.server for c in catalogs if any(r.raw.get("uri") == uri for r in c.resources)]
    if not owners:
        owners = [c.server for c in catalogs if any(_matches(t.raw, uri) for t in c.resource_templates)]
    if server is not None:
        # A named server is asked even if it does not list the URI (MCP Apps views often are not).
        owners = [server] if any(c.server == server for c in catalogs) else []
    if not owners:
        raise NotFound(f"no resource {uri!r} in tenant '{tenant}'")
    if len(owners) > 1:
        raise BadRequest(f"resource {uri!r} is offered by servers {', '.join(owners)}: pass server=")
    return calls.server_request(tenant, owners[0], lambda e: e.read_resource(uri), session)


def get_prompt(
    calls: CallPath,
    tenant: str,
    wholes: tuple[ServerCatalog, ...],
    prompt_id: str,
    arguments: Mapping[str, str],
    session: str | None,
    caller: Permits | None,
) -> dict[str, Any]:
    """Get prompt `server.name` of `tenant` (whose servers' catalogs are `wholes`): see
    `Hub.get_prompt`."""
    server, _, name = prompt_id.partition(".")
    known = any(p.name == name for c in wholes if c.server == server for p in c.prompts)
    if not known or not may_call(caller, prompt_id):
        raise NotFound(f"no prompt '{prompt_id}' in tenant '{tenant}'")
    return calls.server_request(tenant, server, lambda e: e.get_prompt(name, dict(arguments)), session)


def _matches(template: Mapping[str, Any], uri: str) -> bool:
    try:
        return UriTemplate.parse(str(template.get("uriTemplate", ""))).match(uri) is not None
    except (InvalidUriTemplate, ValueError):
        return False
