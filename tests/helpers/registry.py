"""A test MCP registry: the registry API's read routes (`GET /v0/servers`, `GET /v0/servers/{name}/
versions/{version}`), served over HTTP on loopback from a thread of the test, with entries shaped
as the official registry's (server.json 2025-12-11, `_meta` of io.modelcontextprotocol.registry/
official): the memory, filesystem and everything servers at the versions tests/setup.sh installs,
a pypi one, an OCI one and a remote. It answers in pages of `PAGE` entries (two pages for all),
and counts the requests it had.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

NPM_VERSION = "2026.8.31"  # tests/setup.sh
SCHEMA = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
PAGE = 4
SECRET_TOKEN_VAR = "EVERYTHING_API_TOKEN"


def _item(server: dict[str, Any], latest: bool = True) -> dict[str, Any]:
    official = {
        "status": "active",
        "publishedAt": "2026-09-01T10:00:00Z",
        "updatedAt": "2026-09-01T10:00:00Z",
        "isLatest": latest,
    }
    return {
        "server": {"$schema": SCHEMA, **server},
        "_meta": {"io.modelcontextprotocol.registry/official": official},
    }


def _npm(identifier: str, **more: Any) -> dict[str, Any]:
    return {
        "registryType": "npm",
        "registryBaseUrl": "https://registry.npmjs.org",
        "identifier": identifier,
        "version": NPM_VERSION,
        "transport": {"type": "stdio"},
        **more,
    }


def entries(remote_url: str) -> list[dict[str, Any]]:
    """The registry's items, in the order it lists them; the remote points at `remote_url`."""
    repo = {"url": "https://github.com/modelcontextprotocol/servers", "source": "github"}
    memory = {
        "name": "io.github.modelcontextprotocol/server-memory",
        "title": "Memory",
        "description": "Knowledge graph-based persistent memory system",
        "repository": {**repo, "subfolder": "src/memory"},
        "version": NPM_VERSION,
        "packages": [
            _npm(
                "@modelcontextprotocol/server-memory",
                environmentVariables=[
                    {
                        "name": "MEMORY_FILE_PATH",
                        "description": "Where the knowledge graph is kept (a JSONL file)",
                        "format": "filepath",
                    }
                ],
            )
        ],
    }
    filesystem = {
        "name": "io.github.modelcontextprotocol/server-filesystem",
        "title": "Filesystem",
        "description": "Secure file operations with configurable access controls",
        "repository": {**repo, "subfolder": "src/filesystem"},
        "version": NPM_VERSION,
        "packages": [
            _npm(
                "@modelcontextprotocol/server-filesystem",
                packageArguments=[
                    {
                        "type": "positional",
                        "valueHint": "allowed_directory",
                        "description": "A directory the server may read and write",
                        "isRequired": True,
                        "format": "filepath",
                    }
                ],
            )
        ],
    }
    everything = {
        "name": "io.github.modelcontextprotocol/server-everything",
        "title": "Everything",
        "description": "Exercises every feature of the MCP protocol",
        "repository": {**repo, "subfolder": "src/everything"},
        "websiteUrl": "https://modelcontextprotocol.io/examples",
        "version": NPM_VERSION,
        "packages": [
            _npm(
                "@modelcontextprotocol/server-everything",
                runtimeHint="npx",
                packageArguments=[{"type": "positional", "value": "stdio", "valueHint": "transport"}],
                environmentVariables=[
                    {
                        "name": SECRET_TOKEN_VAR,
                        "description": "An API token (the server ignores it)",
                        "isRequired": True,
                        "isSecret": True,
                    },
                    {
                        "name": "EVERYTHING_MODE",
                        "description": "A mode",
                        "choices": ["fast", "thorough"],
                        "default": "fast",
                    },
                ],
            )
        ],
    }
    time = {
        "name": "io.github.modelcontextprotocol/server-time",
        "title": "Time",
        "description": "Time and timezone conversion",
        "version": "2026.1.26",
        "packages": [
            {
                "registryType": "pypi",
                "registryBaseUrl": "https://pypi.org",
                "identifier": "mcp-server-time",
                "version": "2026.1.26",
                "transport": {"type": "stdio"},
                "packageArguments": [
                    {"type": "named", "name": "--local-timezone", "description": "IANA zone"}
                ],
            }
        ],
    }
    oci = {
        "name": "io.github.example/container-only",
        "description": "A server shipped only as a container image",
        "version": "1.0.0",
        "packages": [
            {
                "registryType": "oci",
                "identifier": "docker.io/example/container-only:1.0.0",
                "transport": {"type": "stdio"},
            }
        ],
    }
    remote = {
        "name": "com.example/remote-echo",
        "title": "Remote echo",
        "description": "The hub's test server, reached over Streamable HTTP",
        "version": "1.2.0",
        "remotes": [
            {
                "type": "streamable-http",
                "url": remote_url + "/{path}",
                "variables": {"path": {"description": "The MCP endpoint's path", "default": "mcp"}},
                "headers": [
                    {"name": "X-Api-Key", "description": "Your key", "isRequired": True, "isSecret": True}
                ],
            }
        ],
    }
    old_memory = {**memory, "version": "2026.7.1"}
    old_memory["packages"] = [{**memory["packages"][0], "version": "2026.7.1"}]
    return [
        _item(memory),
        _item(old_memory, latest=False),
        _item(filesystem),
        _item(everything),
        _item(time),
        _item(oci),
        _item(remote),
    ]


@dataclass
class ServedRegistry:
    """A running test registry: its URL and the requests it answered (paths with queries)."""

    url: str
    items: list[dict[str, Any]]
    requests: list[str] = field(default_factory=list)


def _handler(registry: ServedRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # (quiet)
            pass

        def _answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _odd(self, path: str) -> bool:
            """The registry's misbehaving prefixes: `/moved` redirects to the same path without it,
            `/elsewhere` to a file: URL, `/huge` answers 5 MiB, `/broken` answers HTML."""
            if path.startswith("/moved/"):
                self.send_response(302)
                self.send_header("Location", path.removeprefix("/moved"))
            elif path.startswith("/elsewhere/"):
                self.send_response(302)
                self.send_header("Location", "file:///etc/passwd")
            elif path.startswith(("/huge/", "/broken/")):
                body = b"x" * (5 * 1024 * 1024) if path.startswith("/huge/") else b"<html>oops</html>"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return True
            else:
                return False
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True

        def do_GET(self) -> None:
            registry.requests.append(self.path)
            if self._odd(self.path):
                return
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path == "/v0/servers":
                self._answer(200, _listing(registry.items, query))
                return
            prefix = "/v0/servers/"
            if parts.path.startswith(prefix) and "/versions/" in parts.path:
                name, _, version = parts.path[len(prefix) :].rpartition("/versions/")
                name, version = unquote(name), unquote(version)
                for item in registry.items:
                    server = item["server"]
                    latest = version == "latest" and item["_meta"][_OFFICIAL]["isLatest"]
                    if server["name"] == name and (server["version"] == version or latest):
                        self._answer(200, item)
                        return
            self._answer(404, {"error": "Server not found"})

    return Handler


_OFFICIAL = "io.modelcontextprotocol.registry/official"


def _listing(items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    search = query.get("search", "")
    found = [i for i in items if search in i["server"]["name"]]
    start = int(query.get("cursor", "0"))
    limit = min(int(query.get("limit", "30")), PAGE)
    page = found[start : start + limit]
    metadata: dict[str, Any] = {"count": len(page)}
    if start + limit < len(found):
        metadata["nextCursor"] = str(start + limit)
    return {"servers": page, "metadata": metadata}


@contextmanager
def serve_registry(remote_url: str = "http://127.0.0.1:9") -> Iterator[ServedRegistry]:
    """A test registry listening on loopback for the duration of the block."""
    registry = ServedRegistry("", entries(remote_url))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(registry))
    registry.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, name="test-registry", daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
