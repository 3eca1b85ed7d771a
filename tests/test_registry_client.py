"""The client of MCP registries (`hub.registry`) against a registry served over HTTP by the test:
pages followed, answers cached, and what it refuses to follow or read."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from helpers.registry import ServedRegistry, serve_registry

from hub.config_manage import RegistryConfig
from hub.registry import Listing, RegistryClient


@pytest.fixture
def registry() -> Iterator[ServedRegistry]:
    with serve_registry() as served:
        yield served


def listing(client: RegistryClient, *urls: str, search: str = "") -> Listing:
    return asyncio.run(client.listing([RegistryConfig(url=url) for url in urls], search))


def test_pages_are_followed_and_answers_cached_per_registry_and_search(registry: ServedRegistry) -> None:
    client = RegistryClient()
    first = listing(client, registry.url)
    assert len(first["servers"]) == 6 and first["errors"] == [] and not first["truncated"]
    assert len(registry.requests) == 2 and "cursor=4" in registry.requests[1], registry.requests
    assert listing(client, registry.url) == first and len(registry.requests) == 2  # (cached)
    found = listing(client, registry.url, search="time")
    assert [s["name"] for s in found["servers"]] == ["io.github.modelcontextprotocol/server-time"]
    assert len(registry.requests) == 3 and "search=time" in registry.requests[2]


def test_redirects_are_followed_to_http_only_and_answers_are_bounded(registry: ServedRegistry) -> None:
    client = RegistryClient()
    moved = listing(client, f"{registry.url}/moved", search="memory")
    assert [s["name"] for s in moved["servers"]] == ["io.github.modelcontextprotocol/server-memory"]
    for prefix, why in (
        ("elsewhere", "redirected to a file URL"),
        ("huge", "no complete answer within 15 s and 4 MiB"),
        ("broken", "JSONDecodeError"),
        ("nothing", "answered 404"),
    ):
        answer = listing(client, f"{registry.url}/{prefix}", registry.url, search="memory")
        [error] = answer["errors"]
        assert error["url"] == f"{registry.url}/{prefix}" and why in error["message"], error
        assert len(answer["servers"]) == 1  # (the other registry still lists)
    asked = len(registry.requests)
    assert listing(client, f"{registry.url}/broken", search="memory")["errors"]  # (the failure is cached)
    assert len(registry.requests) == asked
