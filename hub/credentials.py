"""The credential store: each user's own values for a per_user server's `user_env`, encrypted at rest.

One file per tenant, `<data_dir>/credentials/<tenant>.json` (mode 0600, in a 0700 folder, written
atomically: a temporary file renamed over the old one). It maps a subject and a server to one
record, the JSON object `{VAR: value}` sealed with AES-256-GCM (a random 96-bit nonce per record)
whose associated data is `[tenant, subject, server]`: a record copied under another user, server
or tenant does not decrypt. The key is derived from `$HUB_SECRET_KEY` (at least 32 characters)
with HKDF-SHA256. `problem` tries every record, so that a wrong key is told at once (at start and
by `/health`), before any user calls.

Values leave this module only through `values` (to the environment of the user's instance);
names and whether each is set are all anything else sees. Nothing here logs a value.

Thread-safe (one lock): the web loop's executor and the call path's executor use it. A file
changed by another process (a cluster's other replica on shared storage) is read again when its
size or modification time changes.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import tempfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hub.config import HubConfig
from hub.errors import CredentialsUnreadable, NoSecretKey

SECRET_ENV = "HUB_SECRET_KEY"
MIN_SECRET_LENGTH = 32
_INFO = b"mcp-hub credentials v1"
_FIX = (
    f"start the hub with the {SECRET_ENV} they were stored with, or have each user set them again "
    "(DELETE, then PUT /api/me/credentials/<server>)"
)


def secret_key_problem(environ: Mapping[str, str] | None = None) -> str | None:
    """Why `$HUB_SECRET_KEY` cannot encrypt credentials (None: it can)."""
    value = (os.environ if environ is None else environ).get(SECRET_ENV, "")
    if not value:
        return f"{SECRET_ENV} is not set"
    if len(value) < MIN_SECRET_LENGTH:
        return f"{SECRET_ENV} is shorter than {MIN_SECRET_LENGTH} characters"
    return None


def startup_problems(config: HubConfig, environ: Mapping[str, str] | None = None) -> list[str]:
    """`path: message` for each per_user server with `user_env` that cannot store its users' values
    (no usable `$HUB_SECRET_KEY`): `hub check` and `serve` refuse such a configuration."""
    problem = secret_key_problem(environ)
    if problem is None:
        return []
    return [
        f"tenants.{t.name}.servers.{s.name}.user_env: {problem}: it encrypts each user's values "
        f"(set it to a random string of at least {MIN_SECRET_LENGTH} characters, and keep it)"
        for t in config.tenants.values()
        for s in t.servers.values()
        if s.per_user and s.user_env
    ]


def _cipher(secret: str) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO)
    return AESGCM(hkdf.derive(secret.encode()))


def _associated(*parts: str) -> bytes:
    return json.dumps(list(parts)).encode()


class CredentialStore:
    """Users' values of per_user servers' `user_env`, sealed per (tenant, subject, server).

    Args:
        folder: where the files go (`<data_dir>/credentials`); made on the first write.
        secret: the secret the key is derived from (`$HUB_SECRET_KEY`); None or too short: values
            can be neither stored nor read (`NoSecretKey`), and `problem` says so.
    """

    def __init__(self, folder: Path, secret: str | None) -> None:
        self.folder = folder
        self.key_problem = secret_key_problem({SECRET_ENV: secret or ""})
        self._aead = _cipher(secret) if secret and self.key_problem is None else None
        self._lock = threading.Lock()
        self._files: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}  # tenant → (stat, content)

    @classmethod
    def of(cls, data_dir: Path) -> CredentialStore:
        """The store under `data_dir`, keyed by `$HUB_SECRET_KEY`."""
        return cls(data_dir / "credentials", os.environ.get(SECRET_ENV))

    def reload(self) -> None:
        """Forget what was read: the files are read again at the next use (a restore replaced them)."""
        with self._lock:
            self._files.clear()

    # ------------------------------------------------------------------ reading

    def problem(self, tenants: Iterable[str]) -> str | None:
        """What is wrong for these tenants' stored values: no usable key, or a file whose values do
        not decrypt with this key (a changed `$HUB_SECRET_KEY`); None: nothing."""
        if self.key_problem is not None:
            return self._no_key().message
        for tenant in tenants:
            records = self._read(tenant).get("records", {})
            for subject, servers in records.items():
                for server, record in servers.items():
                    try:
                        self._open(record, "record", tenant, subject, server)
                    except CredentialsUnreadable as exc:
                        return exc.message
        return None

    def names(self, tenant: str, subject: str, server: str) -> set[str]:
        """The names of the variables `subject` has set for `server` (never their values).

        Raises:
            CredentialsUnreadable: they do not decrypt with this key.
            NoSecretKey: there is no usable key.
        """
        return set(self.values(tenant, subject, server))

    def values(self, tenant: str, subject: str, server: str) -> dict[str, str]:
        """`subject`'s values for `server`: only for the environment of that user's instance."""
        self._need_key()  # (without a key nothing can be set: say that, not "not set")
        record = self._read(tenant).get("records", {}).get(subject, {}).get(server)
        if record is None:
            return {}
        opened = self._open(record, "record", tenant, subject, server)
        return {str(k): str(v) for k, v in json.loads(opened).items()}

    # ------------------------------------------------------------------ writing

    def update(self, tenant: str, subject: str, server: str, values: Mapping[str, str]) -> set[str]:
        """Set `values` for `subject` of `server` (merged with what is set); the names now set.

        Raises:
            CredentialsUnreadable: what is set does not decrypt with this key (to merge with).
            NoSecretKey: there is no usable key.
        """
        with self._lock:
            content = self._read(tenant)
            merged = {**self.values(tenant, subject, server), **values}
            records = content.setdefault("records", {})
            records.setdefault(subject, {})[server] = self._seal(
                json.dumps(merged), "record", tenant, subject, server
            )
            self._write(tenant, content)
            return set(merged)

    def forget(self, tenant: str, subject: str, server: str) -> bool:
        """Forget `subject`'s values for `server` (works with any key, or none); whether any were set."""
        with self._lock:
            content = self._read(tenant)
            mine = content.get("records", {}).get(subject, {})
            if server not in mine:
                return False
            del mine[server]
            if not mine:
                del content["records"][subject]
            self._write(tenant, content)
            return True

    # ------------------------------------------------------------------ the file and the cipher

    def _path(self, tenant: str) -> Path:
        return self.folder / f"{tenant}.json"

    def _read(self, tenant: str) -> dict[str, Any]:
        """The tenant's file (a fresh copy: callers may change it), `{}` if there is none."""
        path = self._path(tenant)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return {}
        mark = (stat.st_size, stat.st_mtime_ns)
        cached = self._files.get(tenant)
        if cached is None or cached[0] != mark:
            try:
                content = json.loads(path.read_text())
            except ValueError:
                raise CredentialsUnreadable(
                    f"the credentials file of tenant '{tenant}' (data_dir/credentials) is not valid "
                    "JSON: restore it from a backup, or remove it and have each user set their values again"
                ) from None
            cached = self._files[tenant] = (mark, content)
        return json.loads(json.dumps(cached[1]))

    def _write(self, tenant: str, content: dict[str, Any]) -> None:
        """Replace the tenant's file atomically (mode 0600, in a 0700 folder)."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{tenant}.", dir=self.folder)  # (mkstemp: mode 0600)
        try:
            with os.fdopen(fd, "w") as file:
                json.dump(content, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, self._path(tenant))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._files.pop(tenant, None)

    def _seal(self, plaintext: str, *bound: str) -> dict[str, str]:
        aead = self._need_key()
        nonce = secrets.token_bytes(12)
        sealed = aead.encrypt(nonce, plaintext.encode(), _associated(*bound))
        return {"nonce": base64.b64encode(nonce).decode(), "data": base64.b64encode(sealed).decode()}

    def _open(self, record: Any, *bound: str) -> str:
        aead = self._need_key()
        try:
            nonce = base64.b64decode(record["nonce"])
            data = base64.b64decode(record["data"])
            return aead.decrypt(nonce, data, _associated(*bound)).decode()
        except (InvalidTag, KeyError, TypeError, ValueError):
            raise CredentialsUnreadable(
                f"the stored credentials of tenant '{bound[1]}' do not decrypt with this "
                f"{SECRET_ENV} (was it changed?): {_FIX}"
            ) from None

    def _need_key(self) -> AESGCM:
        if self._aead is None:
            raise self._no_key()
        return self._aead

    def _no_key(self) -> NoSecretKey:
        return NoSecretKey(
            f"per-user credentials cannot be used: {self.key_problem} (set it to a random "
            f"string of at least {MIN_SECRET_LENGTH} characters, and keep it)"
        )
