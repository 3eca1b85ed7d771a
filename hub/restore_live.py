"""Backup and restore of a running hub (`GET /api/admin/backup`, `POST /api/admin/restore`).

A backup is the hub's configuration file (`config.source`) and its data_dir, as the command line's
(`hub.backup`). A restore is checked like the command line's (`hub.backup.read_backup`,
`hub.restore.plan`), then written over the hub's own file and data (always replacing them: the
request is the intent) and applied: the hub reloads its configuration file (`Hub.reload_file`) and
the stores that keep data in memory read their files again (`reload_stores`; the built-in
authorization server's is the web layer's, `web.oauth_server.reload`).

Refused, before anything is written: a configuration whose `orchestrator.data_dir` is not the
running hub's (the data would go where this hub does not read: stop it and restore with the
command line), and any restore or backup of a cluster's replica (each replica has its own
data_dir). One restore at a time per process. Any thread but a loop's (it blocks).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub import backup, pinning, restore
from hub.errors import RestoreRefused

if TYPE_CHECKING:
    from hub.runtime import Hub

log = logging.getLogger(__name__)
_ONE_AT_A_TIME = threading.Lock()


def _not_clustered(hub_: Hub, what: str) -> None:
    if hub_.cluster is not None:
        raise RestoreRefused(
            f"{what} through the API is not available in cluster mode (hub.cluster is set): each replica "
            "has its own data_dir; use `python -m hub backup` and `restore` on each replica's host"
        )


def backup_archive(hub_: Hub) -> bytes:
    """The backup of `hub_`'s configuration file and data, as a `tar.gz`.

    Raises:
        RestoreRefused: `hub_` is a cluster's replica.
    """
    _not_clustered(hub_, "a backup")
    taken = backup.collect(Path(hub_.config.source), hub_.data_dir)
    log.info("backup taken through the API: %d files", 1 + len(taken.data))
    return backup.archive_bytes(taken)


def restore_archive(hub_: Hub, data: bytes) -> dict[str, Any]:
    """Check the backup `data`, write it over `hub_`'s configuration file and data, and apply it;
    what was restored and what the reload changed.

    Raises:
        BackupInvalid: the archive is not a valid backup.
        ConfigError: its configuration does not pass `hub check` here.
        RestoreRefused: a cluster's replica, or another data_dir than the running hub's.
    """
    _not_clustered(hub_, "a restore")
    with _ONE_AT_A_TIME:
        checked = backup.read_backup(data)
        planned = restore.plan(checked, Path(hub_.config.source))
        running = hub_.data_dir.absolute()
        if planned.data_dir.resolve() != running.resolve():
            raise RestoreRefused(
                f"the backup's configuration names orchestrator.data_dir {planned.data_dir}, and this hub "
                f"runs on {running}: a restart is needed (stop the hub, run `python -m hub restore FILE "
                "--force`, start it)"
            )
        written = restore.apply(planned, force=True)
        reload_stores(hub_)
        log.info("restored from a backup through the API: %d files", written)
        outcome = hub_.reload_file()
    return {"restored": {"files": written, "config": str(planned.config_path)}, "reload": outcome}


def reload_stores(hub_: Hub) -> None:
    """Have the stores that keep data in memory read their files again after a restore: the
    per-user credentials (`hub.credentials`) and the pinned tool digests (`hub.pinning.reload`,
    which also has every server screen its catalog against them again)."""
    hub_.users.store.reload()
    pinning.reload(hub_)
