"""A lean HTTP/1.1 server connection (`LeanConnection`) for the hub's listeners: an asyncio protocol
that reads each request and hands it to the application's delegate as Tornado's
`HTTP1ServerConnection` does, and writes the response as its `HTTP1Connection` does (issue 24:
Tornado's futures and coroutines per request were ~0.2 ms of CPU per MCP tool call).

It speaks the common case only: HTTP/1.1 requests with no body or a `Content-Length` one,
pipelined or not, answered with a `Content-Length` or chunked. A connection that does anything
else is handed over to Tornado for the rest of its life, with every byte read so far, so Tornado
answers it exactly as before: a header block past `HEADER_READ_BYTES` (Tornado's 431) or not
ended by CRLF CRLF, a start line or header Tornado refuses (its 400), another HTTP version, a
`Transfer-Encoding`, `Expect` or `Upgrade` header (WebSockets), a `Content-Length` that is not
a number; and `detach()` (a handler that takes the raw connection) gets Tornado's `IOStream`.

The connection budget (`web.connections`) sees it as a stream (`stream`: `closed()`,
`close()`); Nagle's algorithm is off for its whole life, as on `web.listener`'s streams.

Everything here runs on the web loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import socket
from typing import TYPE_CHECKING, Any, cast

from tornado import httputil, iostream

from hub import seams

if TYPE_CHECKING:
    from web.listener import EdgeServer

log = logging.getLogger(__name__)

# RFC 9110 field names (tokens) and what a header block may hold besides them (field values are
# visible ASCII, obs-text, space and tab; lines end with CRLF).
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_PIPELINED = 1024 * 1024  # bytes read ahead of the request being served before reading pauses
_HEAD, _BODY, _SERVING = range(3)


class _Context:
    """What `HTTPServerRequest` reads of its connection (`tornado.httpserver._HTTPRequestContext`)."""

    def __init__(self, address: Any, family: int) -> None:
        self.address = address
        self.address_family = family
        inet = family in (socket.AF_INET, socket.AF_INET6) and address is not None
        self.remote_ip = address[0] if inet else "0.0.0.0"
        self.protocol = "http"
        self.trusted_downstream: set[str] = set()

    def __str__(self) -> str:
        return str(self.remote_ip)


class _Stream:
    """The connection as the budget and the server see it: a stream that can be closed."""

    def __init__(self, connection: LeanConnection) -> None:
        self.connection = connection

    def closed(self) -> bool:
        return self.connection.ended

    def close(self) -> None:
        self.connection.abort()

    def set_nodelay(self, value: bool) -> None:
        """Nothing: Nagle's algorithm stays off (see the module)."""

    @property
    def socket(self) -> Any:
        """The connection's socket (`web.oauth_resource` reads the port it came in on), or None."""
        transport = self.connection.transport
        return None if transport is None or self.connection.ended else transport.get_extra_info("socket")


class LeanConnection(asyncio.Protocol):
    """One accepted connection served here until it is handed over (`_hand_over`)."""

    def __init__(self, server: EdgeServer, address: Any, family: int) -> None:
        self.server = server
        self.address = address
        self.context = _Context(address, family)
        self.stream = _Stream(self)
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.exchange: _Exchange | None = None
        self.delegate: httputil.HTTPMessageDelegate | None = None
        self.ended = False  # closed (by either side), or handed over
        self.handed = False
        self.doomed = False
        self.refusing: asyncio.Future[Any] | None = None  # (held while it runs)
        self._writable: asyncio.Future[None] | None = None  # while the transport's buffer is full
        self._gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # ------------------------------------------------------------------ asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # (uvloop's: no subclass of it)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        seams.server_connections(self.server).add(self)
        if self.doomed:  # (closed by the budget before its transport was made)
            transport.abort()
            return
        self._next()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        exchange = self.exchange
        if exchange is not None and exchange.state != _SERVING:
            self._read()
        elif len(self.buffer) > _PIPELINED and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        return False  # (the transport closes: `connection_lost`)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.handed:
            return
        self.ended = True
        exchange, delegate = self.exchange, self.delegate
        if exchange is not None and delegate is not None:
            if exchange.state == _BODY:
                delegate.on_connection_close()
            elif exchange.state == _SERVING:
                exchange.lost()
        self.writable()
        self.server.on_close(self)
        if not self._gone.done():
            self._gone.set_result(None)

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self.writable()

    def writable(self) -> None:
        waiter, self._writable = self._writable, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ requests

    def _next(self) -> None:
        """Wait for the next request (one may be read already: pipelined)."""
        if self.ended:
            return
        self.exchange = exchange = _Exchange(self)
        self.delegate = self.server.start_request(self, exchange)
        if self.transport is not None and not self.ended:
            self.transport.resume_reading()
        self._read()

    def _read(self) -> None:
        """Read what the buffer holds of the request (as Tornado: an error of the application is
        logged, and the connection closed)."""
        try:
            self._read_request()
        except Exception:
            log.error("uncaught error serving a request from %s", self.context, exc_info=True)
            self.abort()

    def _read_request(self) -> None:
        exchange, delegate = self.exchange, self.delegate
        if exchange is None or delegate is None or self.ended:
            return
        if exchange.state == _HEAD and not self._head(exchange, delegate):
            return
        if exchange.state == _BODY and len(self.buffer) >= exchange.length:
            body = bytes(self.buffer[: exchange.length])
            del self.buffer[: exchange.length]
            exchange.state = _SERVING
            if body:
                delegate.data_received(body)
            exchange.read_finished = True
            delegate.finish()

    def _head(self, exchange: _Exchange, delegate: httputil.HTTPMessageDelegate) -> bool:
        """Read the request's head if it is whole (False: not yet, or the connection was handed over)."""
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > (self.server.conn_params.max_header_size or 65536) or b"\n\n" in buffer:
                self._hand_over()
            return False
        parsed = _parse(bytes(buffer[:end]), self.server.conn_params.max_body_size or 0)
        if parsed is None:
            self._hand_over()
            return False
        del buffer[: end + 4]
        start_line, headers, length = parsed
        exchange.start(start_line, headers, length)
        pending = delegate.headers_received(start_line, headers)
        if pending is not None:  # (a refusal that takes the connection over: `web.sizes`)
            self.refusing = asyncio.ensure_future(pending)
            return False
        return not self.handed

    def request_done(self, exchange: _Exchange) -> None:
        """`exchange`'s response is written: the next request, or the end of the connection."""
        if exchange is not self.exchange or self.ended:
            return
        if exchange.disconnect:
            self.exchange = self.delegate = None
            if self.transport is not None:
                self.transport.close()  # (what is written is sent first)
            return
        asyncio.get_running_loop().call_soon(self._next)

    # ------------------------------------------------------------------ writing

    def send(self, data: bytes) -> asyncio.Future[None]:
        """Write `data`; the future is done when the transport can take more."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.ended or self.transport is None:
            future.set_exception(iostream.StreamClosedError())
            future.exception()
            return future
        self.transport.write(data)
        if self._writable is None:
            future.set_result(None)
        else:
            self._writable.add_done_callback(functools.partial(_settle, future))
        return future

    def abort(self) -> None:
        """Close now (the budget's sweep, the hub's shutdown)."""
        if self.transport is None:
            self.doomed = True
        elif not self.ended:
            self.ended = True  # (nothing more is written: `connection_lost` comes next)
            self.transport.abort()

    async def close(self) -> None:
        """`HTTPServer.close_all_connections`: close, and wait until it is closed."""
        self.abort()
        await asyncio.shield(self._gone)

    # ------------------------------------------------------------------ hand-over

    def detach(self) -> iostream.IOStream:
        """The connection as Tornado's stream, for a handler that takes it over (its requests are
        no longer read here)."""
        stream = self._take_over()
        self.server.budget.moved(self.stream, stream, busy=True)
        seams.server_connections(self.server).discard(self)
        return stream

    def _hand_over(self) -> None:
        """Let Tornado serve this connection from here on, from the first byte not yet served
        (out of descriptors for it: the connection closes)."""
        address = self.address
        try:
            stream = self._take_over()
        except OSError as exc:
            log.warning("cannot hand a connection over to Tornado: %s", exc)
            self.abort()
            return
        self.server.budget.moved(self.stream, stream)
        seams.server_connections(self.server).discard(self)
        self.server.handle_stream(stream, address)

    def _take_over(self) -> iostream.IOStream:
        """Tornado's stream on this connection's socket, holding the bytes read and not served."""
        from web.listener import edge_stream

        assert self.transport is not None
        self.transport.pause_reading()
        sock = self.transport.get_extra_info("socket")
        duplicate = socket.fromfd(
            sock.fileno(), sock.family, sock.type, sock.proto
        )  # (a dup of its descriptor)
        self.handed = self.ended = True
        self.exchange = self.delegate = None
        self.transport.abort()  # (closes its own descriptor: `duplicate` keeps the connection)
        stream = edge_stream(self.server, duplicate)
        seams.prefill(stream, bytes(self.buffer))
        self.buffer.clear()
        if not self._gone.done():
            self._gone.set_result(None)
        return stream


def _settle(future: asyncio.Future[None], _: object) -> None:
    if not future.done():
        future.set_result(None)


def _parse(head: bytes, max_body: int) -> tuple[httputil.RequestStartLine, httputil.HTTPHeaders, int] | None:
    """A request head served here (its start line, headers and body length), else None."""
    if head.startswith(b"\r\n"):
        return None  # (an empty line before the request: Tornado skips it)
    text = head.decode("latin-1")
    eol = text.find("\r\n")
    try:
        start_line = httputil.parse_request_start_line(text if eol < 0 else text[:eol])
    except httputil.HTTPInputError:
        return None
    headers = parse_headers("" if eol < 0 else text[eol + 2 :])
    if headers is None:
        return None
    if start_line.version != "HTTP/1.1" or any(
        name in headers for name in ("Transfer-Encoding", "Expect", "Upgrade")
    ):
        return None
    declared = headers.get("Content-Length", "0")
    if not declared.isdigit() or int(declared) > max_body:
        return None
    return start_line, headers, int(declared)


def parse_headers(block: str) -> httputil.HTTPHeaders | None:
    """The header lines `block` holds (each ended by CRLF but the last; latin-1 text) as Tornado's
    `HTTPHeaders.parse` reads them, or None where it would refuse them or take a bare CR or LF as
    a line's end (Tornado answers those: the connection is handed over). The same checks as
    Tornado's (RFC 9110 field names and values), with fewer regular expressions: ~9 us for an MCP
    client's ten headers, Tornado's own ~24 us."""
    headers = httputil.HTTPHeaders()
    if not block:
        return headers
    if _CONTROL.search(block.replace("\r\n", " ")):
        return None  # (a control character, or a CR or LF not part of a CRLF)
    for line in block.split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon or not _FIELD_NAME.fullmatch(name):
            return None  # (no colon, an obsolete folded line, a name that is not a token)
        value = value.strip(" \t")
        if name in headers:
            headers.add(name, value)
        else:
            headers[name] = value
    return headers


def response_head(code: int, reason: str, headers: httputil.HTTPHeaders) -> bytes:
    """The status line and header lines of a response, as Tornado's `HTTP1Connection` writes them.

    Raises:
        ValueError: a header holds a CR or LF (as Tornado's: it would begin another line).
    """
    lines = [f"{name}: {value}\r\n" for name, value in headers.get_all()]
    text = "".join(lines)
    if text.count("\r") != len(lines) or text.count("\n") != len(lines):  # (one line holds more)
        bad = next(line[:-2] for line in lines if "\r" in line[:-2] or "\n" in line[:-2])
        raise ValueError(f"Illegal characters (CR or LF) in header: {bad.encode('latin-1')!r}")
    return b"HTTP/1.1 %d %s\r\n%s\r\n" % (code, reason.encode("latin-1"), text.encode("latin-1"))


class _Exchange(httputil.HTTPConnection):
    """One request and its response (Tornado's `HTTPConnection`, as its `HTTP1Connection`)."""

    def __init__(self, connection: LeanConnection) -> None:
        self.connection = connection
        self.context = connection.context
        self.stream = connection.stream  # (`hub.seams.set_nodelay`)
        self.state = _HEAD
        self.method = ""
        self.length = 0
        self.disconnect = False
        self.read_finished = False
        self.write_finished = False
        self.chunking = False
        self.expected: int | None = None
        self._close_callback: Any = None

    def start(
        self, start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders, length: int
    ) -> None:
        self.method = start_line.method
        self.length = length
        self.disconnect = headers.get("Connection", "").lower() == "close"
        self.state = _BODY

    def set_close_callback(self, callback: Any) -> None:
        self._close_callback = callback

    def lost(self) -> None:
        """The connection closed while the response was being written."""
        callback, self._close_callback = self._close_callback, None
        if callback is not None:
            callback()

    def detach(self) -> iostream.IOStream:
        return self.connection.detach()

    def write_headers(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
        chunk: bytes | None = None,
    ) -> asyncio.Future[None]:
        assert isinstance(start_line, httputil.ResponseStartLine)
        code = start_line.code
        head_request = self.method == "HEAD"
        self.chunking = (
            not head_request
            and code not in (204, 304)
            and not 100 <= code < 200
            and "Content-Length" not in headers
        )
        if self.disconnect:
            headers["Connection"] = "close"
        if self.chunking:
            headers["Transfer-Encoding"] = "chunked"
        if head_request or code == 304:
            self.expected = 0
        elif "Content-Length" in headers:
            self.expected = int(headers["Content-Length"])
        data = response_head(code, start_line.reason, headers)
        if chunk:
            data += self._framed(chunk)
        return self.connection.send(data)

    def write(self, chunk: bytes) -> asyncio.Future[None]:
        return self.connection.send(self._framed(chunk))

    def _framed(self, chunk: bytes) -> bytes:
        if self.expected is not None:
            self.expected -= len(chunk)
            if self.expected < 0:
                self.connection.abort()
                raise httputil.HTTPOutputError("Tried to write more data than Content-Length")
        if self.chunking and chunk:
            return b"%x\r\n%s\r\n" % (len(chunk), chunk)
        return chunk

    def finish(self) -> None:
        connection = self.connection
        if self.expected is not None and self.expected != 0 and not connection.ended:
            connection.abort()
            raise httputil.HTTPOutputError(f"Tried to write {self.expected} bytes less than Content-Length")
        if self.chunking and not connection.ended:
            connection.send(b"0\r\n\r\n")
        self.write_finished = True
        self._close_callback = None
        if not self.read_finished:
            self.disconnect = True
        connection.request_done(self)
