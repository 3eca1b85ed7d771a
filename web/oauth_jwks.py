"""An OAuth issuer's signing keys (its JWKS), fetched over HTTP, cached and refetched on rotation.

`JwksCache` holds one issuer's public keys. It is filled by `refresh`, which fetches the JWKS from
the issuer's `jwks_uri` (configured, else discovered from the issuer's metadata:
`/.well-known/oauth-authorization-server` (RFC 8414), then `/.well-known/openid-configuration`)
without blocking the web loop (Tornado's `AsyncHTTPClient`); verifying a token then only reads it.
`due` says when to fetch: never fetched, or older than `TTL` (10 minutes), or a token names a key
id (`kid`) the cached set lacks, which is how a rotation shows (such a refetch at most every
`RETRY_INTERVAL`, 30 s, so random `kid`s cannot make the hub hammer the issuer; a failed fetch is
retried no sooner either, while the keys fetched before stay in use).

Only asymmetric signature keys are kept (`kty` RSA, EC or OKP, `use` absent or `sig`): a
symmetric (`oct`) key in a JWKS is ignored, so no token can be checked with a shared secret.

Runs on the web loop (the handlers' `prepare` awaits `refresh`; `keys` is a plain read).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
import tornado.httpclient

log = logging.getLogger(__name__)

TTL = 600.0  # seconds a fetched key set is used before it is fetched again
RETRY_INTERVAL = 30.0  # at least this long between refetches for an unknown kid, or after a failure
FETCH_TIMEOUT = 10.0
MAX_DOCUMENT_BYTES = 1024 * 1024
_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})

Fetch = Callable[[str], Awaitable[Any]]


class JwksUnavailable(Exception):
    """The issuer's keys or metadata could not be fetched (the message says why, no secret in it)."""


@dataclass(frozen=True)
class SigningKey:
    """One public key of a JWKS: its id, type (`kty`), declared algorithm (`alg`, if any) and the
    key object PyJWT verifies with."""

    kid: str | None
    kty: str
    alg: str | None
    key: Any


def parse_jwks(document: Any) -> tuple[SigningKey, ...]:
    """The usable signature keys of a JWKS document (`{"keys": [...]}`); others are skipped."""
    entries = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(entries, list):
        raise JwksUnavailable("the JWKS has no 'keys' list")
    keys = []
    for entry in entries:
        if not isinstance(entry, Mapping) or entry.get("kty") not in _KEY_TYPES:
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            parsed = jwt.PyJWK(dict(entry))
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            continue  # an unsupported curve, a broken key: the others still count
        kid, alg = entry.get("kid"), entry.get("alg")
        keys.append(
            SigningKey(
                kid if isinstance(kid, str) else None,
                entry["kty"],
                alg if isinstance(alg, str) else None,
                parsed.key,
            )
        )
    return tuple(keys)


def metadata_urls(issuer: str) -> list[str]:
    """Where an issuer's metadata may be: RFC 8414's form (the well-known path before the issuer's
    path), then OpenID Connect's (after it), then OpenID's in RFC 8414's form."""
    parts = urlsplit(issuer)
    root, path = f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")
    urls = [
        f"{root}/.well-known/oauth-authorization-server{path}",
        f"{issuer.rstrip('/')}/.well-known/openid-configuration",
        f"{root}/.well-known/openid-configuration{path}",
    ]
    return list(dict.fromkeys(urls))


async def fetch_json(url: str) -> Any:
    """GET `url` and parse its JSON body (web loop; at most `MAX_DOCUMENT_BYTES`, `FETCH_TIMEOUT`).

    Raises:
        JwksUnavailable: no answer, not 200, or not JSON.
    """
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_body_size=MAX_DOCUMENT_BYTES)
    try:
        response = await client.fetch(
            url,
            headers={"Accept": "application/json"},
            connect_timeout=FETCH_TIMEOUT,
            request_timeout=FETCH_TIMEOUT,
        )
        return json.loads(response.body)
    except tornado.httpclient.HTTPClientError as exc:
        told = f"answered {exc.code}" if exc.code != 599 else str(exc)  # (599: no answer, a timeout)
        raise JwksUnavailable(f"{url} {told}") from None
    except (OSError, ValueError) as exc:  # (refused, reset, DNS; not JSON)
        raise JwksUnavailable(f"{url}: {type(exc).__name__}: {exc}") from None
    finally:
        client.close()


class JwksCache:
    """The signing keys of one issuer, from its `jwks_uri` (or its discovered metadata). Web loop."""

    def __init__(self, issuer: str, jwks_uri: str | None = None, fetch: Fetch = fetch_json) -> None:
        self.issuer = issuer
        self._jwks_uri = jwks_uri
        self._fetch = fetch
        self._keys: tuple[SigningKey, ...] = ()
        self._fetched_at: float | None = None
        self._failed_at: float | None = None
        self._kid_refetch_at: float | None = None
        self._pending: asyncio.Future[None] | None = None
        self.error: str | None = None  # why the last fetch failed (None: it worked)

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        """The keys fetched last (none before the first fetch worked)."""
        return self._keys

    def due(self, kid: str | None, now: float | None = None) -> bool:
        """Whether a token naming `kid` should wait for a fetch before it is checked."""
        now = time.monotonic() if now is None else now
        if self._failed_at is not None and now - self._failed_at < RETRY_INTERVAL:
            return False
        if self._fetched_at is None or now - self._fetched_at >= TTL:
            return True
        if kid is None or any(k.kid == kid for k in self._keys):
            return False
        return self._kid_refetch_at is None or now - self._kid_refetch_at >= RETRY_INTERVAL

    async def refresh(self, kid: str | None = None) -> None:
        """Fetch the keys if `due(kid)`, once for every request waiting at the same time. Never
        raises: a failure is logged and kept in `error`, and the keys fetched before stay."""
        if self._pending is None:
            if not self.due(kid):
                return
            if self._fetched_at is not None and (kid is None or all(k.kid != kid for k in self._keys)):
                self._kid_refetch_at = time.monotonic()
            self._pending = asyncio.ensure_future(self._fetch_keys())
        pending = self._pending
        await asyncio.shield(pending)

    async def _fetch_keys(self) -> None:
        try:
            if self._jwks_uri is None:
                self._jwks_uri = await self._discover()
            keys = parse_jwks(await self._fetch(self._jwks_uri))
            self._keys, self._fetched_at, self._failed_at, self.error = keys, time.monotonic(), None, None
            log.info("fetched %d signing keys of issuer %s", len(keys), self.issuer)
        except JwksUnavailable as exc:
            self._failed_at, self.error = time.monotonic(), str(exc)
            log.warning("cannot fetch the signing keys of issuer %s: %s", self.issuer, exc)
        except Exception:  # isolation: a broken issuer must not fail requests with a 500
            self._failed_at, self.error = time.monotonic(), "internal error (see the hub's log)"
            log.exception("fetching the signing keys of issuer %s failed", self.issuer)
        finally:
            self._pending = None

    async def _discover(self) -> str:
        """The `jwks_uri` of the issuer's metadata (whose `issuer` must be the issuer, exactly)."""
        reasons = []
        for url in metadata_urls(self.issuer):
            try:
                metadata = await self._fetch(url)
            except JwksUnavailable as exc:
                reasons.append(str(exc))
                continue
            if not isinstance(metadata, Mapping) or metadata.get("issuer") != self.issuer:
                reasons.append(f"{url} is not the metadata of {self.issuer}")
            elif not isinstance(metadata.get("jwks_uri"), str):
                reasons.append(f"{url} names no jwks_uri")
            else:
                return str(metadata["jwks_uri"])
        raise JwksUnavailable("no metadata with a jwks_uri: " + "; ".join(reasons))
