"""The least a Python MCP gateway can do per call, as a floor for `bench_remote.py` (2026-07-28
only): for each request, read its head and JSON body; a `tools/call` of `remote__<tool>` goes to
the server as `<tool>` under the proxy's own id, on a kept-alive connection, and its JSON answer
is read, given the caller's id back and written out. Any other request (discovery, listing) is
passed on as it came, with the listed tools' names prefixed. No key, no scope, no quota, no audit,
no validation, no SSE, no error handling: not a product, only what every gateway written in
Python pays (two more loopback hops, two HTTP parses, two JSON round trips), on uvloop as the
hub's serving loop.

    python bench/servers/min_proxy.py LISTEN_PORT TARGET_PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import uvloop

PREFIX = "remote__"


def _message(buffer: bytearray) -> tuple[str, dict[str, str], bytes] | None:
    """The first whole HTTP message in `buffer` (its first line, headers lowercased, body), taken
    out of it; None until one is whole."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buffer[:end].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    if len(buffer) < end + 4 + length:
        return None
    body = bytes(buffer[end + 4 : end + 4 + length])
    del buffer[: end + 4 + length]
    return lines[0], headers, body


class _Upstream(asyncio.Protocol):
    """One kept-alive connection to the server: one exchange at a time."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.answer: asyncio.Future[tuple[str, dict[str, str], bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        message = _message(self.buffer)
        if message is not None and self.answer is not None:
            self.answer.set_result(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True  # (the server closes an idle one after a while: uvicorn's 5 s)
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(ConnectionError("the server closed the connection"))


class _Server:
    """The connections to the server (one per exchange in flight, kept for the next)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[_Upstream] = []

    async def post(self, body: bytes, headers: dict[str, str]) -> tuple[str, dict[str, str], bytes]:
        loop = asyncio.get_running_loop()
        while self.idle and self.idle[-1].closed:
            self.idle.pop()
        if self.idle:
            connection = self.idle.pop()
        else:
            _, connection = await loop.create_connection(_Upstream, "127.0.0.1", self.port)
        connection.answer = loop.create_future()
        passed = "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.startswith("mcp-"))
        head = (
            f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json, text/event-stream\r\n{passed}Content-Length: {len(body)}\r\n\r\n"
        )
        connection.transport.write(head.encode("latin-1") + body)
        answer = await connection.answer
        self.idle.append(connection)
        return answer


class _Client(asyncio.Protocol):
    """One client connection: each whole request is served by its own task."""

    def __init__(self, server: _Server) -> None:
        self.server = server
        self.buffer = bytearray()
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (message := _message(self.buffer)) is not None:
            task = asyncio.ensure_future(self.serve(message[1], message[2]))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def serve(self, headers: dict[str, str], body: bytes) -> None:
        request: dict[str, Any] = json.loads(body)
        if request.get("method") == "tools/call":
            caller_id, request["id"] = request["id"], "proxy-1"
            request["params"]["name"] = request["params"]["name"].removeprefix(PREFIX)
            headers["mcp-name"] = request["params"]["name"]
            line, answer_headers, answer = await self.server.post(json.dumps(request).encode(), headers)
            reply = json.loads(answer)
            reply["id"] = caller_id
            answer = json.dumps(reply).encode()
        else:
            line, answer_headers, answer = await self.server.post(body, headers)
            if request.get("method") == "tools/list":
                reply = json.loads(answer)
                for tool in reply.get("result", {}).get("tools", []):
                    tool["name"] = PREFIX + tool["name"]
                answer = json.dumps(reply).encode()
        kind = answer_headers.get("content-type", "application/json")
        status = line.split(" ", 2)[1]
        head = f"HTTP/1.1 {status} OK\r\nContent-Type: {kind}\r\nContent-Length: {len(answer)}\r\n\r\n"
        self.transport.write(head.encode("latin-1") + answer)


async def _main(listen: int, target: int) -> None:
    server = _Server(target)
    listener = await asyncio.get_running_loop().create_server(lambda: _Client(server), "127.0.0.1", listen)
    await listener.serve_forever()


if __name__ == "__main__":
    uvloop.run(_main(int(sys.argv[1]), int(sys.argv[2])))
