"""`GET /api/admin/backup` and `POST /api/admin/restore` (admin): a running hub's backup as a
download, and a backup restored onto it (`hub.restore_live`; docs/operations.md, "Backup and
restore"). Handlers run on the web loop; the disk work goes through the thread pool.
"""

from __future__ import annotations

import time

from hub import restore_live
from hub.errors import BadRequest
from web import oauth_server
from web.base import AdminHandler, ApiHandler

ARCHIVE_TYPE = "application/gzip"


class BackupHandler(AdminHandler):
    """`GET /api/admin/backup`: the configuration file and the data, as a `tar.gz` download."""

    route = "/api/admin/backup"

    async def get(self) -> None:
        archive = await self.blocking(restore_live.backup_archive, self.hub)
        self.hub.audit.record_change(self.caller, "backup", outcome="ok", bytes=len(archive))
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.set_header("Content-Type", ARCHIVE_TYPE)
        self.set_header("Content-Disposition", f'attachment; filename="mcp-hub-backup-{stamp}.tar.gz"')
        self.finish(archive)


class RestoreHandler(AdminHandler):
    """`POST /api/admin/restore`: the body is a backup archive (at most `gateway.max_body_bytes`);
    it replaces the configuration file and the data, and the hub applies it."""

    route = "/api/admin/restore"

    async def post(self) -> None:
        body = self.request.body or b""
        if not body:
            raise BadRequest("the body must be a backup archive (tar.gz), as GET /api/admin/backup gives")
        try:
            outcome = await self.blocking(restore_live.restore_archive, self.hub, body)
        except Exception as exc:
            self.hub.audit.record_change(self.caller, "restore", outcome=getattr(exc, "code", "error"))
            raise
        self.hub.audit.record_change(self.caller, "restore", outcome="ok", files=outcome["restored"]["files"])
        oauth_server.reload(self.hub)  # (the authorization server's state lives on this loop)
        self.reply(outcome)


ROUTES: list[tuple[str, type[ApiHandler]]] = [
    (r"/api/admin/backup", BackupHandler),
    (r"/api/admin/restore", RestoreHandler),
]
