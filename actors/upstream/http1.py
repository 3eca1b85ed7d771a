"""A small HTTP/1.1 client for the hub's own channel to Streamable HTTP servers
(`actors.upstream.httpcall`): keep-alive connections pooled per server, one POST at a time on each,
bodies read whole (`Content-Length`, chunked, or to the connection's end) or as they come (an SSE
stream).

Why not the SDK's `httpx2` client: its request path (the pool's locks, the header and URL models,
the response's byte-stream wrappers) costs about what the rest of the hub costs per call. A POST
here is one write of the request's bytes and one read of its head. It speaks only what the channel
needs; what it does not understand (an HTTP version other than 1.x, a malformed head or chunk, an
oversized head) is an `HttpFailure`, which the channel turns into a clear error for the call. TLS
uses the context `httpx2` would build (`httpx2.create_ssl_context`, the same CA bundle and
`SSL_CERT_FILE`); a server behind an HTTP proxy of the environment is not reached here
(`proxied`: the SDK's client, which honours it, takes those calls).

Everything here runs on the loop that uses the pool: the owning server's, or for a twin
(`Pool.twin`) the loop whose calls skip the hop to the server's (`actors.upstream.httpcall`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass

import httpx2

HEAD_LIMIT = 64 * 1024  # the largest response head (status line and headers) accepted
_IDLE_KEPT = 64  # idle connections kept per server
CONNECTIONS = 100  # connections in use at once per server (as httpx2's default pool): more requests wait
_IDLE_FOR = 30.0  # seconds an idle connection is kept (servers close theirs sooner: uvicorn 5 s)
_READ = 64 * 1024


class HttpFailure(Exception):
    """The exchange failed below MCP: no connection, a reset, an answer that is not HTTP/1.1.

    `answered`: whether any byte of the answer came (if not, the server may never have read the
    request)."""

    def __init__(self, message: str, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered


@dataclass(frozen=True)
class Origin:
    """Where the POSTs go: scheme, host, port, and the request target (path and query)."""

    scheme: str
    host: str
    port: int
    target: str

    @classmethod
    def parse(cls, url: str) -> Origin:
        """The origin of an `http://` or `https://` URL.

        Raises:
            ValueError: another scheme, or no host.
        """
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.scheme, parts.hostname, port, target)

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def proxied(url: str) -> bool:
    """Whether the environment sends requests to `url` through a proxy (as `httpx2` reads it)."""
    proxies = urllib.request.getproxies()
    origin = Origin.parse(url)
    if not (proxies.get(origin.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(origin.host)


def header_safe(value: str) -> bool:
    """Whether `value` can be sent as a header value as it is (no line breaks, no controls)."""
    return value.isprintable() and value.isascii()


class Connection:
    """One keep-alive connection (its streams, and when it was last released idle)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0
        self.reused = False

    def open(self) -> bool:
        """Whether neither side closed the connection (as far as this loop saw)."""
        return not self.writer.is_closing() and not self.reader.at_eof()

    def usable(self) -> bool:
        """Whether an idle connection can take another request (open, and not idle too long)."""
        return self.open() and time.monotonic() - self.idle_since < _IDLE_FOR

    def close(self) -> None:
        self.writer.close()


class Pool:
    """The keep-alive connections to one server.

    Args:
        url: the server's endpoint.
        headers: headers every request carries (the server's configured `headers`).
        connections: how many exchanges may be in flight at once (each on its own connection);
            a request beyond them waits for one to end.

    Raises:
        ValueError: `url` is not http(s), or a header cannot be sent as it is (a line break in it).
    """

    def __init__(self, url: str, headers: Mapping[str, str], connections: int = CONNECTIONS) -> None:
        self._made = (url, headers, connections)
        self.origin = Origin.parse(url)
        self.slots = asyncio.Semaphore(connections)  # (held from a request until its answer is read)
        self._ssl: ssl.SSLContext | None = None
        if self.origin.scheme == "https":
            self._ssl = httpx2.create_ssl_context()
        fixed = {"Host": self.origin.host_header, **headers}
        unsafe = [k for k, v in fixed.items() if not (header_safe(k) and header_safe(str(v)))]
        if unsafe:
            raise ValueError(f"header {unsafe[0]!r} cannot be sent as it is")
        self._head = "".join(f"{k}: {v}\r\n" for k, v in fixed.items())
        self._idle: list[Connection] = []
        self.closed = False

    def twin(self) -> Pool:
        """A pool of the same server for another loop: its own connections and slots (asyncio's
        streams and semaphores belong to the loop that uses them)."""
        return Pool(*self._made)

    async def post(self, body: bytes, headers: Mapping[str, str]) -> Response:
        """POST `body` (JSON) with `headers` on a pooled connection; the answer's head is read.

        A connection reused from the pool that the server closed meanwhile (no byte of an answer
        came) is dropped and the request sent once more on a new one.

        Raises:
            HttpFailure: no connection, or no valid answer.
        """
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head = (
            f"POST {self.origin.target} HTTP/1.1\r\n{self._head}{extra}"
            f"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        data = head.encode("latin-1") + body
        await self.slots.acquire()
        try:
            while True:
                connection = await self._connection()
                try:
                    return await self._exchange(connection, data)  # (the answer holds the slot)
                except HttpFailure as failure:
                    connection.close()
                    if failure.answered or not connection.reused:
                        raise
                except BaseException:  # (the caller gave up while it waited: the exchange is broken)
                    connection.close()
                    raise
        except BaseException:
            self.slots.release()
            raise

    async def get(self, headers: Mapping[str, str]) -> Response:
        """A GET of the endpoint (to resume an SSE stream), on a pooled connection.

        Raises:
            HttpFailure: no connection, or no valid answer.
        """
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head = f"GET {self.origin.target} HTTP/1.1\r\n{self._head}{extra}Accept: text/event-stream\r\n\r\n"
        await self.slots.acquire()
        try:
            connection = await self._connection()
        except BaseException:
            self.slots.release()
            raise
        try:
            return await self._exchange(connection, head.encode("latin-1"))
        except BaseException:
            connection.close()
            self.slots.release()
            raise

    async def _exchange(self, connection: Connection, data: bytes) -> Response:
        try:
            connection.writer.write(data)
            await connection.writer.drain()
            head = await connection.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raise HttpFailure("the server closed the connection", answered=bool(exc.partial)) from None
        except asyncio.LimitOverrunError:
            raise HttpFailure(f"an answer head over {HEAD_LIMIT // 1024} KiB", answered=True) from None
        except OSError as exc:
            raise HttpFailure(f"the connection failed: {exc.strerror or exc}") from None
        return Response.parse(head, connection, self)

    async def _connection(self) -> Connection:
        while self._idle:
            connection = self._idle.pop()
            if connection.usable():
                connection.reused = True
                return connection
            connection.close()
        origin = self.origin
        try:
            reader, writer = await asyncio.open_connection(
                origin.host,
                origin.port,
                ssl=self._ssl,
                server_hostname=origin.host if self._ssl else None,
                limit=HEAD_LIMIT,
            )
        except (OSError, ssl.SSLError) as exc:
            where = f"{origin.host}:{origin.port}"
            raise HttpFailure(f"cannot connect to {where}: {getattr(exc, 'strerror', None) or exc}") from None
        return Connection(reader, writer)

    def release(self, connection: Connection) -> None:
        """A connection whose exchange ended cleanly goes back to the pool (or is closed)."""
        if self.closed or len(self._idle) >= _IDLE_KEPT or not connection.open():
            connection.close()
            return
        connection.idle_since = time.monotonic()
        self._idle.append(connection)

    def close(self) -> None:
        """Close every idle connection; connections in use close as their exchange ends."""
        self.closed = True
        for connection in self._idle:
            connection.close()
        self._idle.clear()


class Response:
    """An answer whose head was read; its body is read with `read` or `stream`, then the
    connection goes back to the pool (`close` drops it instead: an answer not read to its end).
    Either gives the pool's slot back (once)."""

    def __init__(
        self, status: int, headers: dict[str, str], connection: Connection, pool: Pool, keep: bool
    ) -> None:
        self.status = status
        self.headers = headers
        self._connection: Connection | None = connection
        self._pool = pool
        self._keep = keep
        length = headers.get("content-length")
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self._left: int | None = None if self._chunked or length is None else int(length)
        if self._left is None and not self._chunked:
            self._keep = False  # (read to the connection's end)

    @classmethod
    def parse(cls, head: bytes, connection: Connection, pool: Pool) -> Response:
        """The response whose head is `head`.

        Raises:
            HttpFailure: not an HTTP/1.x status line, or malformed headers.
        """
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise HttpFailure(f"an answer that is not HTTP/1.1: {lines[0][:80]!r}", answered=True)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise HttpFailure(f"a malformed header line: {line[:80]!r}", answered=True)
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        length = headers.get("content-length")
        if length is not None and not length.isdigit():
            raise HttpFailure(f"a malformed Content-Length: {length[:40]!r}", answered=True)
        keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
        return cls(int(code), headers, connection, pool, keep)

    @property
    def content_type(self) -> str:
        """The media type, lowercase, without parameters."""
        return self.headers.get("content-type", "").partition(";")[0].strip().lower()

    async def read(self, limit: int) -> bytes:
        """The whole body (at most `limit` bytes), then the connection is released.

        Raises:
            HttpFailure: the body breaks off, or is over `limit`.
        """
        if self._left is not None and self._connection is not None:  # (a Content-Length: one read)
            return await self._read_exactly(self._connection.reader, self._left, limit)
        parts: list[bytes] = []
        size = 0
        async for part in self.stream():
            size += len(part)
            if size > limit:
                self.close()
                raise HttpFailure(f"a body over {limit // 2**20} MiB", answered=True)
            parts.append(part)
        return b"".join(parts)

    async def _read_exactly(self, reader: asyncio.StreamReader, length: int, limit: int) -> bytes:
        """A body of `length` bytes (its `Content-Length`), read at once, then the connection is released."""
        if length > limit:
            self.close()
            raise HttpFailure(f"a body over {limit // 2**20} MiB", answered=True)
        try:
            body = await reader.readexactly(length)
        except asyncio.IncompleteReadError:
            self.close()
            raise HttpFailure("the server closed the connection mid-answer", answered=True) from None
        except OSError as exc:
            self.close()
            raise HttpFailure(f"the answer broke off: {exc}", answered=True) from None
        except BaseException:  # (the reader gave up: the rest cannot be read)
            self.close()
            raise
        self._left = 0
        self._finish()
        return body

    async def stream(self) -> AsyncGenerator[bytes, None]:
        """The body's bytes as they come; at its end the connection is released.

        Raises:
            HttpFailure: the connection breaks before the body's end.
        """
        connection = self._connection
        if connection is None:
            return
        reader = connection.reader
        try:
            if self._chunked:
                while chunk := await self._chunk(reader):
                    yield chunk
            elif self._left is not None:
                while self._left > 0:
                    part = await reader.read(min(self._left, _READ))
                    if not part:
                        raise HttpFailure("the server closed the connection mid-answer", answered=True)
                    self._left -= len(part)
                    yield part
            else:
                while part := await reader.read(_READ):
                    yield part
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            self.close()
            raise HttpFailure(f"the answer broke off: {exc}", answered=True) from None
        except BaseException:  # (an HttpFailure, or the reader gave up: the rest cannot be read)
            self.close()
            raise
        self._finish()

    @staticmethod
    async def _chunk(reader: asyncio.StreamReader) -> bytes:
        """The next chunk of a chunked body (b"" at its end, trailers read)."""
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip() or b"x", 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return b""
        data = await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("a chunk not ended by CRLF")
        return data

    def _finish(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        self._pool.slots.release()
        if self._keep:
            self._pool.release(connection)
        else:
            connection.close()

    def close(self) -> None:
        """Drop the connection (its answer is not read to the end: it cannot carry another)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.slots.release()
            with contextlib.suppress(Exception):
                connection.close()
