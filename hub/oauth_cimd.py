"""Client ID Metadata Documents: a client whose `client_id` is an https URL, resolved by fetching it.

An MCP client that has no registration with this server may name itself by the URL of a JSON
document it serves (the MCP authorization spec's CIMD; the `mcp` SDK's client does so when the
server's metadata says `client_id_metadata_document_supported`). The SDK's server side does not
resolve such ids, so the provider asks `ClientDocuments.get`, which fetches the document:

- https only (plain http only with the test-only `allow_http`), no redirects, at most
  `MAX_BYTES` and `TIMEOUT` seconds; an IP-literal host on loopback, private or link-local
  addresses is refused (the hub fetches from where it runs: it must not be a way into its network);
- the document must be a JSON object whose `client_id` equals the URL exactly, with its
  `redirect_uris`; the client is public (`token_endpoint_auth_method: none`, PKCE);
- a document (or a failure) is cached for `CACHE_SECONDS`.

Thread: the web loop (the fetch is async, with httpx, the SDK's own HTTP client).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from urllib.parse import urlsplit

import httpx2 as httpx
from mcp.shared.auth import OAuthClientInformationFull
from pydantic import ValidationError

log = logging.getLogger(__name__)

MAX_BYTES = 64 * 1024
TIMEOUT = 5.0
CACHE_SECONDS = 300.0


def is_document_url(client_id: str) -> bool:
    """Whether `client_id` names a metadata document (an http(s) URL with a path)."""
    parts = urlsplit(client_id)
    return parts.scheme in ("https", "http") and bool(parts.netloc) and parts.path not in ("", "/")


class ClientDocuments:
    """Fetched client metadata documents, cached (web loop).

    Args:
        allow_http: accept plain http URLs and loopback hosts (tests only: never in a served hub).
    """

    def __init__(self, allow_http: bool = False) -> None:
        self.allow_http = allow_http
        self._cache: dict[str, tuple[float, OAuthClientInformationFull | None]] = {}

    async def get(self, url: str) -> OAuthClientInformationFull | None:
        """The client `url` describes, or None (not fetchable, not valid, or not its own id)."""
        cached = self._cache.get(url)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        client = await self._fetch(url) if self._may_fetch(url) else None
        if len(self._cache) > 1000:  # bounded: stale entries go first
            now = time.monotonic()
            self._cache = {u: e for u, e in self._cache.items() if e[0] > now}
        self._cache[url] = (time.monotonic() + CACHE_SECONDS, client)
        return client

    def _may_fetch(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme != "https" and not self.allow_http:
            log.info("client id %s refused: a client metadata document must be https", url)
            return False
        try:
            address = ipaddress.ip_address((parts.hostname or "").strip("[]"))
        except ValueError:
            return True  # a name (what it resolves to is the DNS's business)
        inside = address.is_loopback or address.is_private or address.is_link_local or address.is_unspecified
        if inside and not self.allow_http:
            log.info("client id %s refused: its host is an internal address", url)
            return False
        return True

    async def _fetch(self, url: str) -> OAuthClientInformationFull | None:
        try:
            async with (
                httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as http,
                http.stream("GET", url, headers={"Accept": "application/json"}) as answer,
            ):
                if answer.status_code != 200:
                    log.info("client metadata document %s: HTTP %d", url, answer.status_code)
                    return None
                body = bytearray()
                async for chunk in answer.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BYTES:
                        log.info("client metadata document %s: larger than %d bytes", url, MAX_BYTES)
                        return None
        except httpx.HTTPError as exc:
            log.info("client metadata document %s: %s", url, type(exc).__name__)
            return None
        return _client_of(url, bytes(body))


def _client_of(url: str, body: bytes) -> OAuthClientInformationFull | None:
    """The public client a document describes, if it is a valid one for `url`."""
    try:
        document = json.loads(body)
    except ValueError:
        log.info("client metadata document %s: not JSON", url)
        return None
    if not isinstance(document, dict) or document.get("client_id") != url:
        log.info("client metadata document %s: its client_id is not its own URL", url)
        return None
    if not document.get("redirect_uris"):
        log.info("client metadata document %s: no redirect_uris", url)
        return None
    fields = ("redirect_uris", "client_name", "client_uri", "logo_uri", "scope", "grant_types")
    try:
        return OAuthClientInformationFull.model_validate(
            {
                **{k: document[k] for k in fields if k in document},
                "client_id": url,
                "token_endpoint_auth_method": "none",  # a document carries no secret
                "response_types": ["code"],
            }
        )
    except ValidationError as exc:
        log.info("client metadata document %s: %d invalid field(s)", url, exc.error_count())
        return None
