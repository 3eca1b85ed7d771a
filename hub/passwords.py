"""Passwords of the built-in authorization server's users: hashed with scrypt, never kept.

A hash is one self-describing string, `scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`, made by
`python -m hub hash-password` and written in the configuration (`auth.server.users.<name>.
password_hash`). scrypt comes from the standard library (`hashlib.scrypt`, OpenSSL's): a memory-hard
function, so no new dependency. A check compares in constant time, and a user that does not
exist costs the same work as one that does (`verify_password(None, ...)`), so timing tells no
user names.

Pure functions: any thread (each check takes ~0.1 s of CPU: callers on a loop run it in an
executor).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# scrypt's cost: n=2^15, r=8 (32 MiB of memory, ~0.1 s), p=1; the salt 16 bytes, the hash 32.
N, R, P = 2**15, 8, 1
_SALT_BYTES, _HASH_BYTES = 16, 32
_MAX_N = 2**20  # a hash from the configuration may not ask for more (1 GiB at r=8)


class BadHash(ValueError):
    """A string that is not a `scrypt$n$r$p$salt$hash` hash."""


def hash_password(password: str, n: int = N, r: int = R, p: int = P) -> str:
    """The self-describing scrypt hash of `password`, with a fresh random salt."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password, salt, n, r, p)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def parse_hash(text: str) -> tuple[int, int, int, bytes, bytes]:
    """`(n, r, p, salt, hash)` of a hash string.

    Raises:
        BadHash: it is not one (the message never repeats it).
    """
    parts = text.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise BadHash("not a scrypt$n$r$p$salt$hash string")
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt, digest = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)
    except ValueError:
        raise BadHash("n, r and p must be integers, salt and hash base64") from None
    if n < 2 or n & (n - 1) or n > _MAX_N or not 1 <= r <= 64 or not 1 <= p <= 16 or not salt or not digest:
        raise BadHash(f"n must be a power of 2 up to {_MAX_N}, r 1 to 64, p 1 to 16")
    return n, r, p, salt, digest


def verify_password(stored: str | None, password: str) -> bool:
    """Whether `password` matches the hash `stored`; `stored` None (no such user) or not a hash:
    False, after the same work as a real check."""
    try:
        n, r, p, salt, digest = parse_hash(stored) if stored is not None else _DUMMY
    except BadHash:
        n, r, p, salt, digest = _DUMMY
        stored = None
    candidate = _scrypt(password, salt, n, r, p, len(digest))
    return hmac.compare_digest(candidate, digest) and stored is not None


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int = _HASH_BYTES) -> bytes:
    # OpenSSL refuses more than maxmem (32 MiB by default); scrypt needs 128 * r * n bytes.
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=128 * r * n + 1024 * 1024
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


_DUMMY = (N, R, P, b"\0" * _SALT_BYTES, b"\1" * _HASH_BYTES)
