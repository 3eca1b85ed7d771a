"""The configuration editor's routes (admin keys only; to anyone else they do not exist: 404).

- `GET /api/admin/config`: every tenant as the file has it (secrets masked), the ETag, and
  whether the file was edited by hand since the hub read it.
- `GET|PUT|DELETE /api/admin/tenants/{tenant}` and `/api/admin/tenants/{tenant}/servers/{server}`:
  one tenant or server as the file has it; add or change it (the body: its configuration as a
  JSON object, as in the file; 201 when it was created); remove it.

Edits carry `If-Match` (the ETag read; without one the edit applies to whatever the hub serves)
and answer the new `ETag`. The work is `hub.config_edit`'s, off the web loop (`blocking`).
"""

from __future__ import annotations

from typing import Any

from hub import config_edit
from web.base import AdminHandler, ApiHandler

_SEGMENT = r"([^/]+)"


class _EditorHandler(AdminHandler):
    """What the editor's handlers share: admin only, the editor, If-Match in, ETag out."""

    @property
    def editor(self) -> config_edit.ConfigEditor:
        return config_edit.editor(self.hub)

    def answer(self, data: Any, etag: str, status: int = 200) -> None:
        self.set_header("ETag", etag)
        self.set_header("Cache-Control", "no-store")
        self.reply(data, status)

    def answer_edit(self, edit: config_edit.Edit) -> None:
        self.answer(
            {"etag": edit.etag, "created": edit.created, "reload": edit.reload},
            edit.etag,
            201 if edit.created else 200,
        )

    @property
    def if_match(self) -> str | None:
        return self.request.headers.get("If-Match")


class ConfigHandler(_EditorHandler):
    """`GET /api/admin/config`: the tenants as the file has them."""

    route = "/api/admin/config"

    async def get(self) -> None:
        editor = self.editor
        etag = editor.etag()
        tenants = await self.blocking(editor.raw_tenants)
        changed = await self.blocking(editor.changed_on_disk)
        self.answer(
            {"etag": etag, "source": self.hub.config.source, "changed_on_disk": changed, "tenants": tenants},
            etag,
        )


class TenantConfigHandler(_EditorHandler):
    """`GET|PUT|DELETE /api/admin/tenants/{tenant}`."""

    route = "/api/admin/tenants/{tenant}"

    async def get(self, tenant: str) -> None:
        etag = self.editor.etag()
        self.answer(await self.blocking(self.editor.raw_tenant, tenant), etag)

    async def put(self, tenant: str) -> None:
        spec = self.json_body()
        edit = await self.blocking(
            self.editor.put_tenant, tenant, spec, if_match=self.if_match, who=self.caller
        )
        self.answer_edit(edit)

    async def delete(self, tenant: str) -> None:
        self.answer_edit(
            await self.blocking(self.editor.delete_tenant, tenant, if_match=self.if_match, who=self.caller)
        )


class ServerConfigHandler(_EditorHandler):
    """`GET|PUT|DELETE /api/admin/tenants/{tenant}/servers/{server}`."""

    route = "/api/admin/tenants/{tenant}/servers/{server}"

    async def get(self, tenant: str, server: str) -> None:
        etag = self.editor.etag()
        self.answer(await self.blocking(self.editor.raw_server, tenant, server), etag)

    async def put(self, tenant: str, server: str) -> None:
        spec = self.json_body()
        edit = await self.blocking(
            self.editor.put_server, tenant, server, spec, if_match=self.if_match, who=self.caller
        )
        self.answer_edit(edit)

    async def delete(self, tenant: str, server: str) -> None:
        edit = await self.blocking(
            self.editor.delete_server, tenant, server, if_match=self.if_match, who=self.caller
        )
        self.answer_edit(edit)


ROUTES: list[tuple[str, type[ApiHandler]]] = [
    (r"/api/admin/config", ConfigHandler),
    (rf"/api/admin/tenants/{_SEGMENT}", TenantConfigHandler),
    (rf"/api/admin/tenants/{_SEGMENT}/servers/{_SEGMENT}", ServerConfigHandler),
]
