"""Requests over the HTTP server's size limits get an answer (413, 431), not a reset.

Tornado's HTTP server refuses a body declared larger than its `max_body_size` and a header block
larger than its `max_header_size` by closing the connection: a client still sending its body then
sees a reset, not an answer. `SizeGuard` wraps the application and looks at each request's head
first: a header block over `MAX_HEADER_BYTES` (431) or a `Content-Length` over the body limit
(413) is answered here, in the one JSON error shape, with `Connection: close`; then what the client
still sends is read and dropped for a little while (a "lingering close", as nginx does), so that
closing the socket does not reset the connection before the client has read the answer.

Tornado still reads a header block up to `HEADER_READ_BYTES` before any of this can see it: one
larger than that is answered by the stream itself (`web.connections`, with `too_long_headers` and
`linger`). Bodies declared with `Transfer-Encoding: chunked`
are still cut by Tornado (400, then closed) once past the limit. Runs on the web loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Awaitable

from tornado import httputil, iostream
from tornado.ioloop import IOLoop

from hub.errors import HeadersTooLarge, HubError, PayloadTooLarge

log = logging.getLogger(__name__)
access_log = logging.getLogger("mcp_hub.access")

MAX_HEADER_BYTES = 64 * 1024  # a larger header block is a 431
HEADER_READ_BYTES = 128 * 1024  # what Tornado reads of a header block (its max_header_size)
_LINGER_SECONDS = 5.0  # at most this long reading what the client still sends after a refusal
_LINGER_QUIET = 1.0  # ... and stop sooner once it has sent nothing for this long
_REASONS = {413: "Content Too Large", 431: "Request Header Fields Too Large"}


class SizeGuard(httputil.HTTPServerConnectionDelegate):
    """The application behind a check of each request's size (`max_body_size`: the HTTP server's)."""

    def __init__(self, app: httputil.HTTPServerConnectionDelegate, max_body_size: int) -> None:
        self.app = app
        self.max_body_size = max_body_size

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        return _Guarded(self, request_conn, self.app.start_request(server_conn, request_conn))

    def on_close(self, server_conn: object) -> None:
        self.app.on_close(server_conn)


class _Guarded(httputil.HTTPMessageDelegate):
    """One request: passed on to the application unless its head says it is too large."""

    def __init__(
        self, guard: SizeGuard, connection: httputil.HTTPConnection, inner: httputil.HTTPMessageDelegate
    ) -> None:
        self.guard = guard
        self.connection = connection
        self.inner = inner

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        size = len(str(start_line))
        for name, value in headers.get_all():
            size += len(name) + len(value) + 4
        if size > MAX_HEADER_BYTES:
            return self._refuse(
                start_line, HeadersTooLarge(f"the request's headers are larger than {MAX_HEADER_BYTES} bytes")
            )
        declared = headers.get("Content-Length", "")
        limit = self.guard.max_body_size
        if declared.isdigit() and int(declared) > limit:
            return self._refuse(start_line, PayloadTooLarge(f"the body is larger than {limit} bytes"))
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self.inner.finish()

    def on_connection_close(self) -> None:
        self.inner.on_connection_close()

    async def _refuse(self, start_line: object, exc: HubError) -> None:
        """Answer `exc` on the raw stream (the application never sees this request), then linger."""
        method = getattr(start_line, "method", "?")
        access_log.info("%s (too large) %d key=-", method, exc.status)
        stream = self.connection.detach()  # type: ignore[attr-defined]  # (HTTP1Connection)
        try:
            await stream.write(refusal(exc))
            stream.socket.shutdown(socket.SHUT_WR)  # the answer is whole: the client may read it
            await _drain(stream)
        except (iostream.StreamClosedError, OSError):
            pass
        finally:
            stream.close()


def refusal(exc: HubError) -> bytes:
    """The whole answer refusing a request too large (`exc`: 413 or 431), closing the connection."""
    body = json.dumps({"error": {"code": exc.code, "message": exc.message}}).encode()
    head = (
        f"HTTP/1.1 {exc.status} {_REASONS[exc.status]}\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return head + body


def too_long_headers() -> bytes:
    """The 431 for a header block longer than even Tornado reads (`HEADER_READ_BYTES`)."""
    limit = f"{MAX_HEADER_BYTES // 1024} KiB"
    return refusal(HeadersTooLarge(f"the request's header block is larger than {limit}"))


def linger(sock: socket.socket) -> None:
    """Read and drop what the client still sends on `sock` (its answer sent, writing shut down)
    until it stops, is quiet for `_LINGER_QUIET` s or `_LINGER_SECONDS` pass; then close it. Takes
    `sock` over. Web loop."""
    loop = IOLoop.current()
    done = False

    def finish() -> None:
        nonlocal done
        if not done:
            done = True
            loop.remove_handler(sock)
            loop.remove_timeout(quiet[0])
            loop.remove_timeout(ending)
            sock.close()

    def readable(fd: object, events: int) -> None:
        try:
            data = sock.recv(256 * 1024)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            finish()
            return
        loop.remove_timeout(quiet[0])
        quiet[0] = loop.call_later(_LINGER_QUIET, finish)

    sock.setblocking(False)
    quiet = [loop.call_later(_LINGER_QUIET, finish)]
    ending = loop.call_later(_LINGER_SECONDS, finish)
    loop.add_handler(sock, readable, IOLoop.READ)


async def _drain(stream: iostream.IOStream) -> None:
    """Read and drop what the client still sends, until it stops or `_LINGER_SECONDS` pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _LINGER_SECONDS
    while (left := deadline - loop.time()) > 0:
        try:
            await asyncio.wait_for(stream.read_bytes(256 * 1024, partial=True), min(left, _LINGER_QUIET))
        except TimeoutError:
            return
