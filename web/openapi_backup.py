"""The operations of `/api/admin/backup` and `/api/admin/restore` in the OpenAPI document (beside
`web.openapi_paths`, which `web.openapi` joins them with). Runs on the web loop, when
`GET /openapi.json` builds the document.
"""

from __future__ import annotations

from typing import Any

from web.openapi_ops import op, raw_response, returns

ARCHIVE = "application/gzip"
_WHAT = (
    "A `tar.gz` archive: `manifest.json` (format `mcp-hub-backup`, its version, the hub's version, "
    "when, and each file's size, SHA-256 and mode), the configuration file exactly as it is (its "
    "`${VAR}` references stay references), and under `data/` the data_dir's `pins/`, `catalogs/`, "
    '`credentials/` (still encrypted) and `oauth/` (docs/operations.md, "Backup and restore"). It '
    "holds secrets: keep it like the configuration's keys."
)


def backup_paths() -> dict[str, Any]:
    """`GET /api/admin/backup` and `POST /api/admin/restore`."""
    body = {
        "required": True,
        "description": "A backup archive (tar.gz), as `GET /api/admin/backup` gives it (at most "
        "`gateway.max_body_bytes`), sent with any content type.",
        # (any media type is taken: the bytes are the archive; `application/gzip` would do as well)
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
    return {
        "/api/admin/backup": {
            "get": op(
                "getBackup",
                "Download a backup of the configuration and the data",
                "admin",
                raw_response(_WHAT, ARCHIVE),
                (404, 409),
                description="Admin keys only (a tenant key gets 404). 409 `restore_refused` in cluster "
                "mode (each replica has its own data_dir: use `python -m hub backup` on each).",
            )
        },
        "/api/admin/restore": {
            "post": op(
                "restoreBackup",
                "Restore a backup onto the running hub",
                "admin",
                returns("RestoreReport", "What was written, and what the reload changed."),
                (404, 409),
                body=body,
                description="Admin keys only (a tenant key gets 404). Everything is checked first and "
                "nothing changes on any error: 400 `invalid_backup` (unknown format or version, a member "
                "that is not a regular file under the allowed folders, a size or SHA-256 other than the "
                "manifest's), 400 `invalid_config` (the configuration fails `hub check` here), 409 "
                "`restore_refused` (its `orchestrator.data_dir` is not the running hub's: a restart is "
                "needed; or cluster mode). Then the configuration file and the data folders are replaced, "
                "the hub reloads its configuration and its stores read their files again.",
            )
        },
    }
