#!/usr/bin/env python3
"""A misbehaving Streamable HTTP MCP server (stdlib asyncio only) for the hub's fault tests.

Run as a real subprocess: ``python tests/servers/badhttp.py PORT``; it serves
http://127.0.0.1:PORT/mcp (HTTP/1.1, keep-alive) and writes one line to stderr per request.

The protocol is right up to the tool calls:
  2025-11-25  ``initialize`` answers with an ``Mcp-Session-Id`` header; later requests must carry
              it (else 400; an unknown one gets 404); ``notifications/*`` get 202; ``ping``
              answers {}; ``tools/list`` lists the tools below; GET answers 405, DELETE 200.
  2026-07-28  ``server/discover`` answers a ``DiscoverResult`` naming 2026-07-28; a request whose
              ``params._meta`` carries the ``io.modelcontextprotocol/protocolVersion`` envelope
              needs no session and gets the same answers as above.
Each tool answers ``tools/call`` its own way:
  echo {text}   well: application/json, text + structured {"text"}.
  garbage       200 application/json whose body is not JSON.
  empty         200 application/json with an empty body.
  not_jsonrpc   200 application/json: a JSON object that is no JSON-RPC message.
  wrong_id      200 application/json: a JSON-RPC answer to another id.
  accepted      202 with no body (as if the call were a notification).
  garbage_sse   200 text/event-stream: one event whose data is not JSON, then nothing (kept open).
  sse_ends      200 text/event-stream: one log message, then the stream ends cleanly, unanswered.
  cut           200 text/event-stream: one progress notification (if the call sent a progress
                token, else a log message), then the connection is closed without an answer.
  resumed       200 text/event-stream, resumable (the 2025-11-25 way): a priming event (an id, no
                data, ``retry: 50``), one progress notification (or log message) with an id, then
                the stream ends unanswered; a GET carrying that id as ``Last-Event-ID`` gets a
                stream with the answer "resumed after <id>" (any other GET: 405).
  hang          never answers (the connection is held until the client closes it).
  wrong_type    200 text/html.
  status500     500 with a plain-text body.
  gave_up       how the server learned that callers gave up on calls: JSON text {"cancelled": the
                ``notifications/cancelled`` received, "closed": the held calls (``hang``,
                ``garbage_sse``) whose connection the client closed}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import Any

MODERN = "2026-07-28"
VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
SERVER_INFO = {"name": "badhttp", "version": "1.0.0"}
_TEXT = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
_EMPTY: dict[str, Any] = {"type": "object", "properties": {}}
# tool: (status, body, content type) of its whole answer
PLAIN = {
    "garbage": (200, b"{this is not json at all", "application/json"),
    "wrong_type": (200, b"<html><body>not an MCP answer</body></html>", "text/html"),
    "status500": (500, b"internal trouble", "text/plain"),
    "empty": (200, b"", "application/json"),
    "not_jsonrpc": (200, b'{"hello": "world"}', "application/json"),
    "accepted": (202, b"", "application/json"),
}
TOOLS = [
    {"name": "echo", "description": "Echo the text back.", "inputSchema": _TEXT, "outputSchema": _TEXT},
    *(
        {"name": name, "description": f"Misbehave: {name}.", "inputSchema": _EMPTY}
        for name in (*PLAIN, "wrong_id", "garbage_sse", "sse_ends", "cut", "resumed", "hang", "gave_up")
    ),
]
REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
sessions: set[str] = set()
gave_up = {"cancelled": 0, "closed": 0}
resumable: dict[str, bytes] = {}  # the answer a GET with this Last-Event-ID gets


def log(message: str) -> None:
    sys.stderr.write(f"[badhttp] {message}\n")
    sys.stderr.flush()


class Closed(Exception):
    """The connection is over (closed by either end)."""


class Request:
    def __init__(self, method: str, headers: dict[str, str], body: bytes) -> None:
        self.method, self.headers, self.body = method, headers, body


async def read_request(reader: asyncio.StreamReader) -> Request:
    """One HTTP/1.1 request (a Content-Length body only: what MCP clients send)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise Closed from exc
    lines = head.decode("latin-1").split("\r\n")
    method = lines[0].split(" ")[0]
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    try:
        body = await reader.readexactly(length) if length else b""
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise Closed from exc
    return Request(method, headers, body)


async def respond(
    writer: asyncio.StreamWriter, status: int, body: bytes = b"", kind: str = "application/json", **more: str
) -> None:
    """A whole response with a Content-Length (the connection stays open)."""
    head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}", f"Content-Length: {len(body)}"]
    if status != 202:
        head.append(f"Content-Type: {kind}")
    head += [f"{name.replace('_', '-')}: {value}" for name, value in more.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()


async def start_stream(writer: asyncio.StreamWriter) -> None:
    """The head of a chunked SSE response."""
    head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    writer.write(head.encode())
    await writer.drain()


async def send_event(writer: asyncio.StreamWriter, data: str, head: str = "") -> None:
    chunk = f"{head}event: message\ndata: {data}\n\n".encode()
    writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    await writer.drain()


async def hold(reader: asyncio.StreamReader) -> None:
    """Keep the connection open, answering nothing, until the client closes it."""
    while await reader.read(65536):
        pass
    gave_up["closed"] += 1
    raise Closed


def answer(message: dict[str, Any], result: dict[str, Any]) -> bytes:
    if modern(message):
        result = {**result, "resultType": "complete"}
    return json.dumps({"jsonrpc": "2.0", "id": message.get("id"), "result": result}).encode()


def error(message: dict[str, Any], code: int, text: str) -> bytes:
    reply = {"jsonrpc": "2.0", "id": message.get("id"), "error": {"code": code, "message": text}}
    return json.dumps(reply).encode()


def modern(message: dict[str, Any]) -> bool:
    meta = (message.get("params") or {}).get("_meta") or {}
    return isinstance(meta, dict) and VERSION_KEY in meta


async def call_tool(
    message: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Answer one tools/call the way its tool misbehaves (see the module docstring)."""
    params = message.get("params") or {}
    name = params.get("name")
    if name == "echo":
        text = str((params.get("arguments") or {}).get("text", ""))
        result = {"content": [{"type": "text", "text": text}], "structuredContent": {"text": text}}
        await respond(writer, 200, answer(message, result))
    elif name in PLAIN:
        status, body, kind = PLAIN[name]
        await respond(writer, status, body, kind=kind)
    elif name == "wrong_id":
        await respond(writer, 200, answer({**message, "id": "not-this-call"}, {"content": []}))
    elif name == "garbage_sse":
        await start_stream(writer)
        await send_event(writer, "{not json either")
        await hold(reader)
    elif name == "sse_ends":
        await start_stream(writer)
        note = {"method": "notifications/message", "params": {"level": "warning", "data": "ending"}}
        await send_event(writer, json.dumps({"jsonrpc": "2.0", **note}))
        writer.write(b"0\r\n\r\n")  # (the stream's last chunk: it ends cleanly, with no answer)
        await writer.drain()
    elif name == "cut":
        await cut(message, writer)
    elif name == "resumed":
        await resumed(message, writer)
    elif name == "hang":
        await hold(reader)
    elif name == "gave_up":
        await respond(
            writer, 200, answer(message, {"content": [{"type": "text", "text": json.dumps(gave_up)}]})
        )
    else:
        await respond(writer, 200, error(message, -32602, f"unknown tool: {name}"))


async def cut(message: dict[str, Any], writer: asyncio.StreamWriter) -> None:
    """One notification on an SSE stream, then the connection closed without an answer."""
    token = ((message.get("params") or {}).get("_meta") or {}).get("progressToken")
    if token is not None:
        note = {"method": "notifications/progress", "params": {"progressToken": token, "progress": 1}}
    else:
        note = {"method": "notifications/message", "params": {"level": "warning", "data": "cutting"}}
    await start_stream(writer)
    await send_event(writer, json.dumps({"jsonrpc": "2.0", **note}))
    writer.transport.abort()
    raise Closed


async def resumed(message: dict[str, Any], writer: asyncio.StreamWriter) -> None:
    """A stream that ends after events with ids, to be resumed by a GET (`resume`)."""
    event = f"ev-{uuid.uuid4().hex[:8]}"
    token = ((message.get("params") or {}).get("_meta") or {}).get("progressToken")
    if token is not None:
        note = {"method": "notifications/progress", "params": {"progressToken": token, "progress": 1}}
    else:
        note = {"method": "notifications/message", "params": {"level": "warning", "data": "resuming"}}
    text = {"type": "text", "text": f"resumed after {event}-1"}
    resumable[f"{event}-1"] = answer(message, {"content": [text]})
    await start_stream(writer)
    priming = f"id: {event}-0\nretry: 50\n\n"
    writer.write(f"{len(priming):x}\r\n{priming}\r\n".encode())
    await send_event(writer, json.dumps({"jsonrpc": "2.0", **note}), head=f"id: {event}-1\n")
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def resume(request: Request, writer: asyncio.StreamWriter) -> None:
    """A GET: the rest of a `resumed` stream, if it names one."""
    body = resumable.pop(request.headers.get("last-event-id", ""), None)
    if body is None:
        await respond(writer, 405, Allow="POST, DELETE")
        return
    await start_stream(writer)
    await send_event(writer, body.decode())
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def handle_post(request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        message = json.loads(request.body)
    except ValueError:
        await respond(writer, 400, error({}, -32700, "Parse error"))
        return
    method = message.get("method", "")
    if "id" not in message:
        if method == "notifications/cancelled":
            gave_up["cancelled"] += 1
        await respond(writer, 202)
        return
    if method == "server/discover":
        meta = {"io.modelcontextprotocol/serverInfo": SERVER_INFO}
        discover = {"supportedVersions": [MODERN], "capabilities": {"tools": {}}, "_meta": meta}
        await respond(writer, 200, answer(message, {**discover, "ttlMs": 0, "cacheScope": "private"}))
        return
    if method == "initialize":
        session = uuid.uuid4().hex
        sessions.add(session)
        init = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": SERVER_INFO}
        await respond(writer, 200, answer(message, init), Mcp_Session_Id=session)
        return
    if not modern(message):
        session = request.headers.get("mcp-session-id")
        if session is None:
            await respond(writer, 400, error(message, -32000, "Bad Request: no session id"))
            return
        if session not in sessions:
            await respond(writer, 404, error(message, -32001, "Session not found"))
            return
    await dispatch(message, method, reader, writer)


async def dispatch(
    message: dict[str, Any], method: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    if method == "ping":
        await respond(writer, 200, answer(message, {}))
    elif method == "tools/list":
        listed: dict[str, Any] = {"tools": TOOLS}
        if modern(message):  # (a 2026-07-28 list result says how long it may be cached)
            listed.update(ttlMs=0, cacheScope="private")
        await respond(writer, 200, answer(message, listed))
    elif method == "tools/call":
        await call_tool(message, reader, writer)
    else:
        await respond(writer, 200, error(message, -32601, f"Method not found: {method}"))


async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            request = await read_request(reader)
            log(f"{request.method} {request.body[:120]!r}")
            if request.method == "POST":
                await handle_post(request, reader, writer)
            elif request.method == "DELETE":
                sessions.discard(request.headers.get("mcp-session-id", ""))
                await respond(writer, 200)
            else:
                await resume(request, writer)
    except (Closed, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(connection, "127.0.0.1", port)
    log(f"serving on http://127.0.0.1:{port}/mcp")
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
