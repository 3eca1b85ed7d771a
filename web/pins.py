"""Pinned tools over REST (docs/security.md, "Pinned tools"): `GET /api/servers/{t}/{s}/pins`
(an admin, or a key of the tenant: what its grants allow), and an admin's `POST .../pins/approve`
and `.../pins/reject`. Thin handlers over `hub.pinning`; web loop.
"""

from __future__ import annotations

from typing import Any, cast

from hub import pinning
from hub.errors import BadRequest
from web import responses_pins as api
from web.base import AdminHandler, ApiHandler

_SEGMENT = r"([^/]+)"


class PinsHandler(ApiHandler):
    """`GET /api/servers/{t}/{s}/pins`: the approved digests, the state and the pending diff."""

    route = "/api/servers/{tenant}/{server}/pins"

    async def get(self, tenant: str, server: str) -> None:
        tenant = self.tenant_for(tenant)
        body = await self.blocking(pinning.view, self.hub, tenant, server, self.caller)
        self.reply(cast(api.Pins, body))


class PinsDecisionHandler(AdminHandler):
    """`POST /api/servers/{t}/{s}/pins/approve|reject` (admin): body `{"digest": ...}` optional."""

    route = "/api/servers/{tenant}/{server}/pins/{action}"

    async def post(self, tenant: str, server: str, action: str) -> None:
        tenant = self.tenant_for(tenant)
        digest: Any = self.json_object().get("digest")
        if digest is not None and not isinstance(digest, str):
            raise BadRequest("`digest` must be a string")
        approve = action == "approve"
        body = await self.blocking(pinning.decide, self.hub, tenant, server, approve, digest, self.caller)
        self.reply(cast(api.Pins, body))


ROUTES: list[tuple[str, type[ApiHandler]]] = [
    (rf"/api/servers/{_SEGMENT}/{_SEGMENT}/pins", PinsHandler),
    (rf"/api/servers/{_SEGMENT}/{_SEGMENT}/pins/(approve|reject)", PinsDecisionHandler),
]
