"""A listener of the hub (`EdgeServer`): Tornado's `HTTPServer` with its own accept loop, which
survives running out of file descriptors, and the connection limits of `web.connections`. Each
accepted connection is served by the hub's own HTTP/1.1 reader (`web.lean_http`), which hands
one it does not speak over to Tornado's (`edge_stream`, `handle_stream`).

A new connection past a limit that no idle connection can make room for gets a canned 503 and is
closed at once, without a read; running out of descriptors on accept (`EMFILE`) closes the pending
connection with the budget's spare descriptor, or pauses accepting for a moment. A connection
whose header block runs past the read limit is answered 431 (`web.sizes`) before it closes.
Everything here runs on the web loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import socket
import time
from collections.abc import Iterable
from typing import Any

import tornado.httpserver
import tornado.httputil
import tornado.iostream
from tornado.ioloop import IOLoop

from hub import loops
from web import sizes
from web.connections import ConnectionBudget, Slot
from web.lean_http import LeanConnection

access_log = logging.getLogger("mcp_hub.access")

_EXHAUSTED = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_REFUSAL_BODY = (
    b'{"error": {"code": "too_many_connections", "message": "too many open connections; try again"}}'
)
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_REFUSAL_BODY), _REFUSAL_BODY)
)


class _Watched(tornado.httputil.HTTPMessageDelegate):
    """A request's delegate that marks its connection busy once the request's headers arrive, and
    reading its body until the body is read (`ConnectionBudget.sweep` times both)."""

    def __init__(self, inner: tornado.httputil.HTTPMessageDelegate, slot: Slot) -> None:
        self.inner = inner
        self.slot = slot

    def headers_received(self, start_line: Any, headers: tornado.httputil.HTTPHeaders) -> Any:
        slot = self.slot
        slot.busy, slot.body_since = True, time.monotonic()
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self.slot.body_since = None
        self.inner.finish()

    def on_connection_close(self) -> None:
        self.slot.body_since = None
        self.inner.on_connection_close()


class _EdgeStream(tornado.iostream.IOStream):
    """An accepted connection. Tornado closes one whose header block runs past its read limit (its
    `max_header_size`) unanswered, which the client sees as a reset: this one first answers 431,
    then lingers (what the client still sends is read and dropped) before its socket closes.

    Nagle's algorithm is off for the connection's whole life. Tornado turns it off as each
    response finishes (so its last segment does not wait for a delayed ACK) and on again after,
    two system calls and two slow `socket.family` reads a request; the hub turns it off anyway for
    every streamed answer (`hub.seams.set_nodelay`), and a response that is not streamed is one
    write. Web loop."""

    _refused = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        super().set_nodelay(True)  # (TCP only: Tornado checks the family)

    def set_nodelay(self, value: bool) -> None:
        """Nothing: it stays off (see the class)."""

    def close(self, exc_info: Any = False) -> None:
        if isinstance(exc_info, tornado.iostream.UnsatisfiableReadError) and not self.closed():
            self._refused = True
            with contextlib.suppress(OSError):
                self.socket.send(sizes.too_long_headers())  # (small: one non-blocking write)
                self.socket.shutdown(socket.SHUT_WR)
            access_log.info("(header block too large) 431 key=-")
        super().close(exc_info)

    def close_fd(self) -> None:
        if self._refused and self.socket is not None:
            sock, self.socket = self.socket, None  # type: ignore[assignment]
            sizes.linger(sock)
            return
        super().close_fd()


def edge_stream(server: EdgeServer, connection: socket.socket) -> tornado.iostream.IOStream:
    """Tornado's stream on an accepted connection (one `web.lean_http` hands over)."""
    return _EdgeStream(
        connection, max_buffer_size=server.max_buffer_size, read_chunk_size=server.read_chunk_size
    )


def _served(lean: LeanConnection, connection: socket.socket, task: asyncio.Future[Any]) -> None:
    """The lean connection's transport could not be made (the client went at once): forget it."""
    if task.cancelled() or task.exception() is not None:
        lean.server.budget.forget(lean.stream)
        with contextlib.suppress(OSError):
            connection.close()


class EdgeServer(tornado.httpserver.HTTPServer):
    """Tornado's HTTP server, with the hub's connection limits and its own accept loop (which
    survives running out of descriptors). Web loop."""

    def initialize(self, *args: Any, budget: ConnectionBudget, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(*args, **kwargs)
        self.budget = budget
        self._accepting: dict[int, socket.socket] = {}
        params = self.conn_params  # (the budget's sweep times the requests, not a timer each)
        self._timeouts = (params.header_timeout, params.body_timeout)
        params.header_timeout = params.body_timeout = None

    # ------------------------------------------------------------------ accepting

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        self.budget.sweep_every(*self._timeouts)
        loops.serve_calls_here()  # (this loop serves clients: tool calls to HTTP servers run on it)
        loop = IOLoop.current()
        for sock in sockets:
            sock.setblocking(False)
            self._accepting[sock.fileno()] = sock
            loop.add_handler(sock, self._on_readable, IOLoop.READ)

    def stop(self) -> None:
        loop = IOLoop.current()
        for sock in self._accepting.values():
            loop.remove_handler(sock)
            sock.close()
        self._accepting.clear()

    def _on_readable(self, sock: socket.socket, events: int) -> None:
        for _ in range(128):  # as Tornado: a bounded batch, then let other work run
            try:
                connection, address = sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno not in _EXHAUSTED:
                    raise
                self.budget.exhausted.add(os.strerror(exc.errno))
                self._shed(sock)
                return
            self._connected(connection, address)

    def _shed(self, sock: socket.socket) -> None:
        """Out of descriptors: close a pending connection with the spare one, else stop accepting
        for a moment (the kernel holds what arrives meanwhile)."""
        budget = self.budget
        if budget.spare is not None:
            os.close(budget.spare)
            budget.spare = None
            with contextlib.suppress(OSError):
                sock.accept()[0].close()
            budget.keep_spare()
            if budget.spare is not None:
                return
        if sock.fileno() in self._accepting:
            loop = IOLoop.current()
            loop.remove_handler(sock)
            loop.call_later(0.5, self._resume, sock)

    def _resume(self, sock: socket.socket) -> None:
        if sock.fileno() in self._accepting:
            self.budget.keep_spare()
            IOLoop.current().add_handler(sock, self._on_readable, IOLoop.READ)

    def _connected(self, connection: socket.socket, address: Any) -> None:
        lean = LeanConnection(self, address, connection.family)
        client = address[0] if isinstance(address, tuple) else "local"
        if not self.budget.admit(client, lean.stream):
            with contextlib.suppress(OSError):
                connection.send(_REFUSAL)  # one non-blocking write, no read: cheap
            connection.close()
            return
        task = asyncio.ensure_future(
            asyncio.get_running_loop().connect_accepted_socket(lambda: lean, connection)
        )
        task.add_done_callback(functools.partial(_served, lean, connection))

    # ------------------------------------------------------------------ requests

    def start_request(
        self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
    ) -> tornado.httputil.HTTPMessageDelegate:
        delegate = super().start_request(server_conn, request_conn)
        slot = self.budget.waiting(server_conn.stream)  # type: ignore[attr-defined]
        return delegate if slot is None else _Watched(delegate, slot)

    def on_close(self, server_conn: object) -> None:
        super().on_close(server_conn)
        stream: tornado.iostream.IOStream = server_conn.stream  # type: ignore[attr-defined]
        if stream.closed():
            self.budget.forget(stream)
        else:  # a WebSocket took the connection over: it stays open, and busy, until it closes
            slot = self.budget.slots.get(stream)
            if slot is not None:
                slot.busy = True
