"""What a tenant's servers offer besides tools, as the `Hub` API reads it: a resource (from the
server that offers it) and a prompt, each only of the servers a caller may use (`hub.permissions`).

Runs on the caller's thread (the blocking `Hub.read_resource` and `Hub.get_prompt`), which the
call path borrows a loop for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actors.models import ServerCatalog
from hub.calls import CallPath
from hub.errors import NotFound
from hub.permissions import Permits, may_call, readable
from hub.upstream import resource_owner


def read_resource(
    calls: CallPath,
    tenant: str,
    wholes: tuple[ServerCatalog, ...],
    uri: str,
    server: str | None,
    session: str | None,
    caller: Permits | None,
    user: str | None,
) -> dict[str, Any]:
    """Read `uri` of `tenant` (whose servers' catalogs are `wholes`), of the servers `caller` may
    read: see `Hub.read_resource` (raises what `hub.upstream.resource_owner` raises)."""
    owner = resource_owner(readable(wholes, caller), tenant, uri, server)
    return calls.server_request(tenant, owner, lambda e: e.read_resource(uri), session, user)


def get_prompt(
    calls: CallPath,
    tenant: str,
    wholes: tuple[ServerCatalog, ...],
    prompt_id: str,
    arguments: Mapping[str, str],
    session: str | None,
    caller: Permits | None,
    user: str | None,
) -> dict[str, Any]:
    """Get prompt `server.name` of `tenant` (whose servers' catalogs are `wholes`): see
    `Hub.get_prompt`."""
    server, _, name = prompt_id.partition(".")
    known = any(p.name == name for c in wholes if c.server == server for p in c.prompts)
    if not known or not may_call(caller, prompt_id):
        raise NotFound(f"no prompt '{prompt_id}' in tenant '{tenant}'")
    return calls.server_request(tenant, server, lambda e: e.get_prompt(name, dict(arguments)), session, user)
