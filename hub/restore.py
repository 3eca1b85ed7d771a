"""Restore: a checked backup (`hub.backup`) written back, all of it or nothing.

`plan` checks the backup's configuration as `hub check` does, in this process's environment, as
if it were the file at its destination (relative paths resolve against that file's folder), and
finds the data_dir it names. `apply` then writes, in two steps:

1. **Staging**: every data file under a hidden folder of the data_dir (`.restore-*`), the
   configuration file as a hidden temporary beside its destination. A failure here removes what
   was staged; nothing else was changed.
2. **Swap**: each data folder (`pins`, `catalogs`, `credentials`, `oauth`) renamed aside, the
   staged one renamed into its place, then the configuration file renamed over its destination;
   the folders set aside are removed last. Renames within one file system: a failure rolls back
   those already made.

Without `force`, an existing configuration file or a data folder that is not empty refuses the
restore (`RestoreRefused`) before anything is written. Folders it makes are mode 0700; files keep
the mode they had when backed up. Any thread but a loop's (it blocks on the disk).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hub.backup import DATA_FOLDERS, Backup, Member
from hub.config import HubConfig, parse_config
from hub.credentials import startup_problems
from hub.errors import ConfigError, RestoreRefused


@dataclass(frozen=True)
class RestorePlan:
    """A backup checked against its destination: the configuration file to write, the
    configuration it holds (valid here), and the data_dir that configuration names."""

    backup: Backup
    config_path: Path
    config: HubConfig
    data_dir: Path

    def conflicts(self) -> list[str]:
        """What a restore would replace: the configuration file, each data folder that is not empty."""
        out = [f"{self.config_path} exists"] if self.config_path.exists() else []
        for folder in DATA_FOLDERS:
            path = self.data_dir / folder
            if path.is_dir() and any(path.iterdir()):
                out.append(f"{path} is not empty")
        return out


def plan(backup: Backup, config_path: Path, environ: Mapping[str, str] | None = None) -> RestorePlan:
    """Check `backup`'s configuration as the file `config_path` would be (`hub check`'s checks).

    Raises:
        ConfigError: every problem, each as `path: message`.
    """
    try:
        text = backup.config.data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f"{backup.config.path}: the configuration file is not UTF-8 text"]) from None
    base = config_path.resolve().parent  # (as `load_config` resolves it)
    config = parse_config(text, source=str(config_path), environ=environ, base=base)
    problems = startup_problems(config, environ)
    if problems:
        raise ConfigError(problems)
    return RestorePlan(backup, config_path, config, Path(config.orchestrator.data_dir).absolute())


def apply(restore: RestorePlan, force: bool = False) -> int:
    """Write `restore` (see the module's docstring); the number of files written.

    Raises:
        RestoreRefused: something would be replaced and `force` is false.
        OSError: a file could not be written (nothing was changed).
    """
    conflicts = restore.conflicts()
    if conflicts and not force:
        raise RestoreRefused(
            "the restore would replace what is there (" + "; ".join(conflicts) + "): --force replaces it"
        )
    made = _make_folder(restore.data_dir) + _make_folder(restore.config_path.parent)
    staging = restore.data_dir / f".restore-{secrets.token_hex(6)}"
    config_tmp: Path | None = None
    try:
        _stage_data(staging / "new", restore.backup)
        config_tmp = _stage_file(restore.config_path, restore.backup.config)
        _swap(restore, staging, config_tmp)
    except BaseException:
        if config_tmp is not None:
            config_tmp.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return 1 + len(restore.backup.data)


def _make_folder(path: Path) -> list[Path]:
    """Make `path` and its missing parents (mode 0700); those it made, outermost first."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return list(reversed(missing))


def _stage_data(root: Path, backup: Backup) -> None:
    """Every data folder of `backup` under `root` (each made, even if the backup has no file in it)."""
    for folder in DATA_FOLDERS:
        (root / folder).mkdir(mode=0o700, parents=True)
    for member in backup.data:
        path = root / backup.data_path(member)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write(path, member)


def _stage_file(destination: Path, member: Member) -> Path:
    """`member` written beside `destination` under a hidden name; that path."""
    tmp = destination.parent / f".{destination.name}.restore-{secrets.token_hex(6)}"
    _write(tmp, member)
    return tmp


def _write(path: Path, member: Member) -> None:
    """A new file at `path` holding `member`'s bytes, with its mode, flushed to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(member.data)
        file.flush()
        os.fsync(file.fileno())
    os.chmod(path, member.mode)


def _swap(restore: RestorePlan, staging: Path, config_tmp: Path) -> None:
    """Rename the staged folders into place (the old ones aside), then the configuration file."""
    aside = staging / "old"
    aside.mkdir(mode=0o700)
    done: list[str] = []
    try:
        for folder in DATA_FOLDERS:
            live = restore.data_dir / folder
            if live.exists() or live.is_symlink():
                live.rename(aside / folder)
            done.append(folder)
            (staging / "new" / folder).rename(live)
        config_tmp.rename(restore.config_path)
    except BaseException:
        for folder in reversed(done):  # (put back what was there)
            live = restore.data_dir / folder
            if not (staging / "new" / folder).exists() and live.exists():
                live.rename(staging / "new" / folder)
            if (aside / folder).exists() or (aside / folder).is_symlink():
                (aside / folder).rename(live)
        raise
