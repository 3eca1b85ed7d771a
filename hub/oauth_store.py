"""What the built-in authorization server keeps across restarts, in `data_dir/oauth/`.

| file | holds |
|---|---|
| `signing-key.pem` | the ES256 key access tokens are signed with (`hub.oauth_keys`) |
| `clients.json` | dynamically registered clients (their ids, secrets, redirect URIs) |
| `refresh-tokens.json` | live refresh tokens, by the SHA-256 of the token (never the token) |

The folder is mode 0700 and every file 0600; each write is a new file renamed over the old one
(atomic: a crash leaves the old or the new, never half of one). Authorization codes and login
requests live in memory only (minutes long, one use).

Thread: the web loop owns an `OAuthStore`; `save` writes in the default executor, one write at a
time, each of the state as it was when asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mcp.shared.auth import OAuthClientInformationFull

CLIENTS_FILE, REFRESH_FILE = "clients.json", "refresh-tokens.json"


def private_folder(path: Path) -> Path:
    """`path`, made if missing, readable by the hub's user only."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _temp_file(folder: Path, data: bytes) -> str:
    """A new file in `folder` holding `data`, mode 0600, flushed to disk; its path."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")  # (mkstemp makes it 0600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically (mode 0600)."""
    os.replace(_temp_file(path.parent, data), path)


def create_private(path: Path, data: bytes) -> bytes:
    """Create `path` with `data` atomically (mode 0600) unless it exists; what `path` holds then
    (another process's, if it was first)."""
    tmp = _temp_file(path.parent, data)
    try:
        os.link(tmp, path)  # fails if it exists: never overwrites another process's
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return path.read_bytes()


def token_hash(token: str) -> str:
    """What a refresh token is kept as: its SHA-256 (a stolen file gives no usable token)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class RefreshRecord:
    """A live refresh token (kept by its hash): whose, for which client, resource and scopes."""

    client_id: str
    subject: str
    scopes: tuple[str, ...]
    resource: str
    expires_at: int
    access_jti: str  # the access token minted with it: revoking that one revokes this one too


class OAuthStore:
    """Clients and refresh tokens, loaded from `folder` and saved there on each change (web loop)."""

    def __init__(self, folder: Path) -> None:
        self.folder = private_folder(folder)
        self.clients: dict[str, OAuthClientInformationFull] = {
            cid: OAuthClientInformationFull.model_validate(info)
            for cid, info in self._read(CLIENTS_FILE).items()
        }
        now = time.time()
        self.refresh: dict[str, RefreshRecord] = {}
        for digest, record in self._read(REFRESH_FILE).items():
            if record["expires_at"] > now:
                self.refresh[digest] = RefreshRecord(**{**record, "scopes": tuple(record["scopes"])})
        self._lock = asyncio.Lock()

    def _read(self, name: str) -> dict[str, Any]:
        with contextlib.suppress(FileNotFoundError):
            data = json.loads((self.folder / name).read_text())
            return data if isinstance(data, dict) else {}
        return {}

    async def save_clients(self) -> None:
        """Write the clients as they are now."""
        data = {cid: c.model_dump(mode="json", exclude_none=True) for cid, c in self.clients.items()}
        await self._write(CLIENTS_FILE, data)

    async def save_refresh(self) -> None:
        """Write the live refresh tokens as they are now (expired ones are dropped)."""
        now = time.time()
        self.refresh = {d: r for d, r in self.refresh.items() if r.expires_at > now}
        await self._write(REFRESH_FILE, {d: asdict(r) for d, r in self.refresh.items()})

    async def _write(self, name: str, data: dict[str, Any]) -> None:
        payload = json.dumps(data, indent=1, sort_keys=True).encode()
        async with self._lock:
            await asyncio.get_running_loop().run_in_executor(None, write_private, self.folder / name, payload)
