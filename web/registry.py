"""The marketplace: MCP registries' servers, listed and installed into a tenant (admin key; the
admin panel's "Add server" form, `web/static/admin/admin_registry.js`).

- `GET /api/registry/servers?search=&registry=`: the configured `registries`' entries merged
  (`hub.registry`), each with what it can be installed as and the values each way asks for; a
  registry that fails is named in `errors` and the others still list.
- `GET /api/registry/servers/{name}/versions/{version}?registry=`: one entry at one version
  (`latest` works).
- `POST /api/admin/tenants/{t}/servers/{s}/install`: body `{"registry", "name", "version",
  "install": "package:I" | "remote:I", "values": {field key: value}}`; the entry becomes a server
  configuration (`hub.registry_install`), written by the configuration editor
  (`hub.config_edit`, `If-Match` as for its own routes) and started like any server added by a
  reload. The answer shows the configuration with every `env` and `headers` value masked.

Only the configured registries are ever asked (never a URL a request names). Web loop.
"""

from __future__ import annotations

import re
from typing import Any

from hub import config_edit
from hub.config_manage import RegistryConfig
from hub.errors import BadRequest, NotFound, RegistryUnreachable, ServerExists
from hub.registry import Listing, NotInRegistry, RegistryClient, RegistryUnavailable, label
from hub.registry_entries import Entry, entry_of
from hub.registry_install import masked, secret_values, server_spec
from web.base import AdminHandler, ApiHandler
from web.responses_registry import RegistryInstall

_SEGMENT = r"([^/]+)"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # (the configuration's names, hub.config_fields.Name)


class RegistryHandler(AdminHandler):
    """What the registry routes share: admin only, the hub's `RegistryClient`, the registry a
    request names."""

    @property
    def client(self) -> RegistryClient:
        """The client of this application (one cache for every request)."""
        client: RegistryClient = self.application.settings.setdefault("registry_client", RegistryClient())
        return client

    def registries(self, wanted: str | None) -> tuple[RegistryConfig, ...]:
        """The configured registries, or the one `wanted` names (by URL or name).

        Raises:
            NotFound: no configured registry is `wanted`.
        """
        known = self.hub.config.registries
        if not wanted:
            return known
        chosen = tuple(r for r in known if wanted in (r.url, r.url.rstrip("/"), label(r)))
        if not chosen:
            raise NotFound(f"no registry {wanted!r} is configured (registries)")
        return chosen[:1]

    def one_registry(self, wanted: str | None) -> RegistryConfig:
        """The registry `wanted` names; without a name, the only one configured.

        Raises:
            BadRequest: none named, and several are configured.
            NotFound: no configured registry is `wanted`.
        """
        chosen = self.registries(wanted)
        if len(chosen) != 1:
            raise BadRequest("several registries are configured: name one (registry)")
        return chosen[0]

    async def item(self, registry: RegistryConfig, name: str, version: str) -> dict[str, Any]:
        """The registry's raw entry of `name` at `version`.

        Raises:
            NotFound: the registry has no such server or version.
            RegistryUnreachable: the registry did not answer as the API says.
        """
        try:
            return dict(await self.client.item(registry, name, version))
        except NotInRegistry:
            raise NotFound(f"registry {label(registry)} has no {name} {version}") from None
        except RegistryUnavailable as exc:
            raise RegistryUnreachable(f"registry {label(registry)}: {exc}") from None


class RegistryServersHandler(RegistryHandler):
    """`GET /api/registry/servers?search=&registry=`: the registries' entries, merged."""

    route = "/api/registry/servers"

    async def get(self) -> None:
        registries = self.registries(self.get_query_argument("registry", None))
        listing: Listing = await self.client.listing(
            registries, self.get_query_argument("search", "").strip()
        )
        self.reply(listing)


class RegistryEntryHandler(RegistryHandler):
    """`GET /api/registry/servers/{name}/versions/{version}?registry=`: one entry."""

    route = "/api/registry/servers/{name}/versions/{version}"

    async def get(self, name: str, version: str) -> None:
        registry = self.one_registry(self.get_query_argument("registry", None))
        entry: Entry | None = entry_of(
            await self.item(registry, name, version), label(registry), registry.url
        )
        assert entry is not None  # (the client checked it)
        self.reply(entry)


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{key} must be a non-empty string")
    return value


class RegistryInstallHandler(RegistryHandler):
    """`POST /api/admin/tenants/{t}/servers/{s}/install`: install a registry entry as server `s`."""

    route = "/api/admin/tenants/{tenant}/servers/{server}/install"

    async def post(self, tenant: str, server: str) -> None:
        tenant = self.tenant_for(tenant)
        if not _NAME.match(server):
            raise BadRequest("the server name must match [A-Za-z0-9_-]{1,32}")
        if server in self.hub.config.tenants[tenant].servers:
            raise ServerExists(f"tenant {tenant} already has a server {server}: choose another name")
        body = self.json_object()
        values = body.get("values", {})
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise BadRequest("values must be an object of strings (by field key)")
        registry = self.one_registry(body.get("registry") if isinstance(body.get("registry"), str) else None)
        item = await self.item(registry, _text(body, "name"), _text(body, "version"))
        chosen = _text(body, "install")
        spec = server_spec(item, chosen, values, registry.url)
        editor = config_edit.editor(self.hub)
        if_match = self.request.headers.get("If-Match")
        edit = await self.blocking(
            editor.put_server, tenant, server, spec, if_match=if_match, who=self.caller
        )
        self.set_header("ETag", edit.etag)
        answer = RegistryInstall(
            tenant=tenant,
            server=server,
            spec=masked(spec, secret_values(item, chosen, values)),
            etag=edit.etag,
            reload=edit.reload,
        )
        self.reply(answer)


ROUTES: list[tuple[str, type[ApiHandler]]] = [
    (r"/api/registry/servers", RegistryServersHandler),
    (rf"/api/registry/servers/(.+)/versions/{_SEGMENT}", RegistryEntryHandler),
    (rf"/api/admin/tenants/{_SEGMENT}/servers/{_SEGMENT}/install", RegistryInstallHandler),
]
