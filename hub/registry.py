"""A client of MCP registries: the generic read API of the MCP Registry, merged over the configured
`registries` (docs/operations.md, "Installing from an MCP registry").

It follows the generic registry API of the official registry (its OpenAPI document of 2025-12-01,
`docs/reference/api/openapi.yaml` of github.com/modelcontextprotocol/registry, server.json schema
2025-12-11) at the path prefix `/v0` (which the official registry serves beside its frozen
`/v0.1`, with the same shapes):

- `GET {url}/v0/servers?search=&limit=&cursor=`: `{"servers": [{"server": <server.json>,
  "_meta": {...}}], "metadata": {"nextCursor", "count"}}`, one item per version of a server;
- `GET {url}/v0/servers/{name}/versions/{version}`: one item (`name` URL-encoded, `latest` works).

Bounded: each answer at most `MAX_BODY_BYTES` and `FETCH_TIMEOUT` seconds, at most `MAX_PAGES`
pages per listing (the listing then says it is `truncated`), redirects followed by hand, at most
`MAX_REDIRECTS`, to http(s) URLs only. Cached per registry and query: an answer for `CACHE_TTL`
seconds, a failure for `FAILURE_TTL` (so a registry that is down is not asked again by every
request), at most `MAX_CACHED` answers. A registry that fails gives an error in the listing; the
others still list.

Runs on the web loop (Tornado's `AsyncHTTPClient`: nothing blocks it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode, urljoin, urlsplit

import tornado.httpclient
from typing_extensions import (
    TypedDict,  # (pydantic reads only this one on Python < 3.12: the OpenAPI schemas)
)

from hub.config_manage import RegistryConfig
from hub.registry_entries import Entry, entry_of

log = logging.getLogger(__name__)

API_PREFIX = "/v0"
PAGE_LIMIT = 100
MAX_PAGES = 5
MAX_BODY_BYTES = 4 * 1024 * 1024
FETCH_TIMEOUT = 15.0
MAX_REDIRECTS = 3
CACHE_TTL = 300.0
FAILURE_TTL = 30.0
MAX_CACHED = 256  # answers kept at most (listings of distinct searches, entries)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_LIMITS = f"{FETCH_TIMEOUT:g} s and {MAX_BODY_BYTES // 1024 // 1024} MiB"

Fetch = Callable[[str], Awaitable[Any]]


class RegistryUnavailable(Exception):
    """A registry did not answer as the API says (the message says why; it holds no secret)."""


class NotInRegistry(Exception):
    """The registry answered 404: no such server, or no such version of it."""


class RegistryError(TypedDict):
    """A registry that could not be listed."""

    registry: str
    url: str
    message: str


class ListedEntry(Entry):
    """An entry as listed: with every version of it the registry listed, newest first as given."""

    versions: list[str]


class Listing(TypedDict):
    """What the registries list for one search: their entries (one per server, at its latest
    version, with the other versions seen in `versions`), and the registries that failed."""

    servers: list[ListedEntry]
    errors: list[RegistryError]
    truncated: bool


def label(registry: RegistryConfig) -> str:
    """A registry's name, else its URL's host."""
    return registry.name or urlsplit(registry.url).netloc


async def fetch_json(url: str) -> Any:
    """GET `url` and parse its JSON body (web loop), following up to `MAX_REDIRECTS` redirects to
    http(s) URLs.

    Raises:
        NotInRegistry: it answered 404.
        RegistryUnavailable: no answer, another status, a redirect elsewhere, too big, not JSON.
    """
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_body_size=MAX_BODY_BYTES)
    try:
        for _ in range(MAX_REDIRECTS + 1):
            response = await client.fetch(
                url,
                headers={"Accept": "application/json"},
                connect_timeout=FETCH_TIMEOUT,
                request_timeout=FETCH_TIMEOUT,
                follow_redirects=False,
                raise_error=False,
            )
            if response.code in _REDIRECTS and "Location" in response.headers:
                url = urljoin(url, response.headers["Location"])
                if urlsplit(url).scheme not in ("http", "https"):
                    raise RegistryUnavailable(f"redirected to a {urlsplit(url).scheme or 'relative'} URL")
                continue
            if response.code == 404:
                raise NotInRegistry(url)
            if response.code != 200:
                raise RegistryUnavailable(f"answered HTTP {response.code}")
            return json.loads(response.body)
        raise RegistryUnavailable(f"more than {MAX_REDIRECTS} redirects")
    except tornado.httpclient.HTTPClientError as exc:  # (timed out, closed: too big)
        raise RegistryUnavailable(f"no complete answer within {_LIMITS}: {exc}") from None
    except (OSError, ValueError) as exc:  # (refused, reset, DNS; not JSON)
        raise RegistryUnavailable(f"{type(exc).__name__}: {exc}") from None
    finally:
        client.close()


def _page(document: Any) -> tuple[list[Any], str | None]:
    """The items and the next cursor of one `GET /v0/servers` answer."""
    if not isinstance(document, Mapping) or not isinstance(document.get("servers"), list):
        raise RegistryUnavailable("the answer has no 'servers' list")
    metadata = document.get("metadata")
    cursor = metadata.get("nextCursor") if isinstance(metadata, Mapping) else None
    return document["servers"], cursor if isinstance(cursor, str) and cursor else None


def _grouped(entries: Sequence[Entry]) -> list[ListedEntry]:
    """One entry per server name, in first-seen order: its latest version's (else the first seen),
    with every version listed."""
    by_name: dict[str, ListedEntry] = {}
    for entry in entries:
        seen = by_name.get(entry["name"])
        if seen is None:
            by_name[entry["name"]] = ListedEntry(**entry, versions=[entry["version"]])
            continue
        if entry["version"] not in seen["versions"]:
            seen["versions"].append(entry["version"])
        if entry["is_latest"] and not seen["is_latest"]:
            by_name[entry["name"]] = ListedEntry(**entry, versions=seen["versions"])
    return list(by_name.values())


class RegistryClient:
    """The registries' listings and entries, cached. Web loop."""

    def __init__(self, fetch: Fetch = fetch_json) -> None:
        self._fetch = fetch
        self._cache: dict[tuple[str, ...], tuple[float, Any]] = {}

    async def _cached(self, key: tuple[str, ...], load: Callable[[], Awaitable[Any]]) -> Any:
        """`load()`'s answer, or its exception, kept `CACHE_TTL` (a failure `FAILURE_TTL`) seconds."""
        now = time.monotonic()
        held = self._cache.get(key)
        if held is not None and held[0] > now:
            if isinstance(held[1], Exception):
                raise held[1]
            return held[1]
        try:
            value = await load()
        except (RegistryUnavailable, NotInRegistry) as exc:
            self._keep(key, now + FAILURE_TTL, exc)
            raise
        self._keep(key, now + CACHE_TTL, value)
        return value

    def _keep(self, key: tuple[str, ...], until: float, value: Any) -> None:
        """Cache `value` until `until`; forget what expired, and the oldest past `MAX_CACHED`
        (distinct searches must not grow it forever)."""
        now = time.monotonic()
        kept = [(k, v) for k, v in self._cache.items() if v[0] > now and k != key][-(MAX_CACHED - 1) :]
        self._cache = {**dict(kept), key: (until, value)}

    async def _list_one(self, registry: RegistryConfig, search: str) -> tuple[list[Entry], bool]:
        """The entries of one registry for `search`, and whether pages were left unread."""

        async def load() -> tuple[list[Entry], bool]:
            entries: list[Entry] = []
            cursor: str | None = None
            for _ in range(MAX_PAGES):
                query = {"limit": str(PAGE_LIMIT), **({"search": search} if search else {})}
                query |= {"cursor": cursor} if cursor else {}
                items, next_cursor = _page(
                    await self._fetch(f"{registry.url.rstrip('/')}{API_PREFIX}/servers?{urlencode(query)}")
                )
                entries += [e for e in (entry_of(i, label(registry), registry.url) for i in items) if e]
                if next_cursor is None or next_cursor == cursor:
                    return entries, False
                cursor = next_cursor
            return entries, True

        result: tuple[list[Entry], bool] = await self._cached(("list", registry.url, search), load)
        return result

    async def listing(self, registries: Sequence[RegistryConfig], search: str = "") -> Listing:
        """Every registry's entries for `search` (a substring of names), merged in the order of
        `registries`; a registry that fails is named in `errors`."""
        answers = await asyncio.gather(
            *(self._list_one(r, search) for r in registries), return_exceptions=True
        )
        listing = Listing(servers=[], errors=[], truncated=False)
        for registry, answer in zip(registries, answers, strict=True):
            if isinstance(answer, BaseException):
                if not isinstance(answer, RegistryUnavailable | NotInRegistry):
                    log.error("listing registry %s failed", registry.url, exc_info=answer)
                why = "it answered 404" if isinstance(answer, NotInRegistry) else str(answer)
                if isinstance(answer, RegistryUnavailable):
                    log.warning("registry %s cannot be listed: %s", registry.url, why)
                listing["errors"].append(
                    RegistryError(registry=label(registry), url=registry.url, message=why)
                )
                continue
            entries, truncated = answer
            listing["servers"] += _grouped(entries)
            listing["truncated"] = listing["truncated"] or truncated
        return listing

    async def item(self, registry: RegistryConfig, name: str, version: str) -> Mapping[str, Any]:
        """The raw `{"server", "_meta"}` item of `name` at `version` (`latest` works) in `registry`.

        Raises:
            NotInRegistry: no such server or version.
            RegistryUnavailable: the registry did not answer as the API says.
        """
        base = f"{registry.url.rstrip('/')}{API_PREFIX}/servers"
        url = f"{base}/{quote(name, safe='')}/versions/{quote(version, safe='')}"

        async def load() -> Mapping[str, Any]:
            document = await self._fetch(url)
            if entry_of(document, label(registry), registry.url) is None:
                raise RegistryUnavailable("the answer is not a server entry")
            return dict(document)

        item: Mapping[str, Any] = await self._cached(("item", registry.url, name, version), load)
        return item
