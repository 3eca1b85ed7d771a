"""Backup archives: a hub's configuration file and its data, in one versioned `tar.gz`
(docs/operations.md, "Backup and restore").

An archive holds, as regular files only:

- `manifest.json`: `format` (`mcp-hub-backup`), `format_version`, `hub_version`, `created_at`,
  `config` (the member that is the configuration), and `files`: each member's `path`, `size`,
  `sha256` and `mode`;
- `config/<name>`: the configuration file, exactly its bytes (`${VAR}` references stay references);
- `data/<folder>/...`: the files under `<data_dir>/<folder>` for each of `DATA_FOLDERS`: pinned tool
  digests, catalog caches, per-user credentials (still encrypted: never decrypted here) and the
  built-in authorization server's key, clients and refresh tokens.

Not archived: logs, tenant homes, the audit log, and hidden files (the temporaries of an atomic
write in progress). A file's mode is kept (0600 stays 0600). The archive holds secrets: every
archive file this module writes is mode 0600, and nothing here logs a file's content.

`read_backup` checks everything before anything is written anywhere: the format and its version,
each member a regular file under `config/` or `data/<folder>/` (no absolute path, no `..`, no link,
no device), sizes and SHA-256 as the manifest says, and the total size bounded (`MAX_TOTAL_BYTES`).
`hub.restore` then writes it. Pure functions: any thread.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import stat
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import hub
from hub.errors import BackupInvalid

FORMAT = "mcp-hub-backup"
FORMAT_VERSION = 1
KNOWN_VERSIONS = (1,)
DATA_FOLDERS = ("pins", "catalogs", "credentials", "oauth")
MANIFEST = "manifest.json"
CONFIG_DIR, DATA_DIR = "config", "data"
MAX_TOTAL_BYTES = 256 * 1024 * 1024  # what an archive may hold, uncompressed
MAX_MEMBERS = 100_000
_MAX_MANIFEST_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Member:
    """One file of a backup: its path in the archive, its bytes and its permission bits."""

    path: str
    data: bytes
    mode: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": len(self.data), "sha256": self.sha256, "mode": f"{self.mode:04o}"}


@dataclass(frozen=True)
class Backup:
    """What an archive holds, checked: its manifest, the configuration file and the data files
    (their paths relative to the data_dir, e.g. `credentials/acme.json`)."""

    manifest: dict[str, Any]
    config: Member
    data: tuple[Member, ...]

    def data_path(self, member: Member) -> str:
        """`member`'s path under the data_dir."""
        return member.path.removeprefix(DATA_DIR + "/")


# --------------------------------------------------------------------------- writing


def collect(config_path: Path, data_dir: Path) -> Backup:
    """The backup of the configuration file at `config_path` and of `data_dir`'s `DATA_FOLDERS`.

    Raises:
        OSError: a file cannot be read.
        BackupInvalid: what there is to archive is larger than `MAX_TOTAL_BYTES`.
    """
    config = Member(f"{CONFIG_DIR}/{config_path.name}", config_path.read_bytes(), _mode(config_path))
    files = _data_files(data_dir)
    data = [Member(f"{DATA_DIR}/{rel}", path.read_bytes(), _mode(path)) for rel, path in files]
    total = len(config.data) + sum(len(m.data) for m in data)
    if total > MAX_TOTAL_BYTES:
        raise BackupInvalid(f"the data to back up is {total} bytes, over the limit of {MAX_TOTAL_BYTES}")
    created = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "hub_version": hub.__version__,
        "created_at": created,
        "config": config.path,
        "data_folders": list(DATA_FOLDERS),
        "files": [m.to_json() for m in (config, *data)],
    }
    return Backup(manifest, config, tuple(data))


def _data_files(data_dir: Path) -> list[tuple[str, Path]]:
    """`(path relative to data_dir, path)` of each regular, not hidden file under the data folders,
    sorted; links are not followed."""
    found = []
    for folder in DATA_FOLDERS:
        root = data_dir / folder
        for dirpath, dirnames, filenames in os.walk(root):  # (never follows links to folders)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if not name.startswith(".") and stat.S_ISREG(path.lstat().st_mode):
                    found.append((path.relative_to(data_dir).as_posix(), path))
    return found


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def archive_bytes(backup: Backup) -> bytes:
    """`backup` as a `tar.gz`: the manifest first, then each file with its mode (owner 0, the
    manifest's time)."""
    created = datetime.datetime.fromisoformat(backup.manifest["created_at"].replace("Z", "+00:00"))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        manifest = json.dumps(backup.manifest, indent=1).encode() + b"\n"
        for member in (Member(MANIFEST, manifest, 0o600), backup.config, *backup.data):
            info = tarfile.TarInfo(member.path)
            info.size, info.mode, info.mtime = len(member.data), member.mode, int(created.timestamp())
            tar.addfile(info, io.BytesIO(member.data))
    return buffer.getvalue()


def write_archive(backup: Backup, out: Path) -> None:
    """Write `backup` to `out` atomically, mode 0600 (it holds secrets)."""
    data = archive_bytes(backup)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent or ".")  # (mkstemp: mode 0600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- reading


def read_backup(data: bytes) -> Backup:
    """The backup `data` holds, checked against its manifest (see the module's docstring).

    Raises:
        BackupInvalid: naming the first thing wrong.
    """
    members = _members(data)
    manifest = _manifest(members.pop(MANIFEST, None))
    listed = _listed(manifest)
    if set(listed) != set(members):
        missing, extra = sorted(set(listed) - set(members)), sorted(set(members) - set(listed))
        raise BackupInvalid(
            f"the archive's files differ from its manifest: missing {missing}, not listed {extra}"
        )
    for path, member in members.items():
        entry = listed[path]
        if entry.get("size") != len(member.data) or entry.get("sha256") != member.sha256:
            raise BackupInvalid(f"{path}: its size or SHA-256 differs from the manifest's (it was changed)")
    config_path = str(manifest.get("config"))
    configs = [p for p in members if p.startswith(CONFIG_DIR + "/")]
    if configs != [config_path]:
        raise BackupInvalid(
            f"the archive must hold one configuration file, {CONFIG_DIR}/<name>, its 'config'"
        )
    data_members = tuple(m for p, m in sorted(members.items()) if p != config_path)
    return Backup(manifest, members[config_path], data_members)


def _members(data: bytes) -> dict[str, Member]:
    """Every member of the archive, each checked to be a regular file at an allowed path."""
    members: dict[str, Member] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            while (info := tar.next()) is not None:
                _check_member(info, members)
                total += info.size
                if total > MAX_TOTAL_BYTES or len(members) >= MAX_MEMBERS:
                    raise BackupInvalid(
                        f"the archive holds over {MAX_TOTAL_BYTES} bytes or {MAX_MEMBERS} files"
                    )
                file = tar.extractfile(info)
                assert file is not None  # (a regular file)
                members[info.name] = Member(info.name, file.read(), stat.S_IMODE(info.mode))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise BackupInvalid(f"not a readable tar.gz backup archive: {exc}") from None
    return members


def _check_member(info: tarfile.TarInfo, seen: dict[str, Member]) -> None:
    """Refuse a member that is not a regular file at an allowed path, or that comes twice."""
    name = info.name
    if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        kind = "a symbolic link" if info.issym() else "a hard link" if info.islnk() else "not a regular file"
        raise BackupInvalid(f"{name}: {kind}: a backup holds regular files only")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in name.split("/")):
        raise BackupInvalid(f"{name}: not a plain relative path (no absolute path, '.' or '..')")
    allowed = (
        name == MANIFEST
        or (len(parts) == 2 and parts[0] == CONFIG_DIR)
        or (len(parts) >= 3 and parts[0] == DATA_DIR and parts[1] in DATA_FOLDERS)
    )
    if not allowed:
        raise BackupInvalid(
            f"{name}: not a member a backup holds ({MANIFEST}, {CONFIG_DIR}/<file>, "
            f"{DATA_DIR}/{{{','.join(DATA_FOLDERS)}}}/...)"
        )
    if name in seen:
        raise BackupInvalid(f"{name}: in the archive twice")


def _manifest(member: Member | None) -> dict[str, Any]:
    if member is None:
        raise BackupInvalid(f"the archive has no {MANIFEST}: not an MCP Hub backup")
    try:
        manifest = json.loads(member.data[:_MAX_MANIFEST_BYTES])
    except ValueError:
        raise BackupInvalid(f"{MANIFEST} is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupInvalid(f"{MANIFEST}: not an MCP Hub backup (format is not '{FORMAT}')")
    version = manifest.get("format_version")
    if version not in KNOWN_VERSIONS:
        raise BackupInvalid(
            f"{MANIFEST}: format_version {version!r} is not one this hub ({hub.__version__}) reads "
            f"({', '.join(map(str, KNOWN_VERSIONS))})"
        )
    return manifest


def _listed(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    files = manifest.get("files")
    entries = files if isinstance(files, list) else None
    if entries is None or not all(isinstance(f, dict) and isinstance(f.get("path"), str) for f in entries):
        raise BackupInvalid(f"{MANIFEST}: 'files' must be a list of {{path, size, sha256, mode}}")
    return {f["path"]: f for f in entries}
