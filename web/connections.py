"""Connections: how many the hub keeps open, for how long, and what it does when it runs out.

Every listener is an `EdgeServer` (Tornado's `HTTPServer`) sharing one `ConnectionBudget`:

- a connection waiting for a request's headers (idle keep-alive, or a client sending them
  slowly) is closed after `gateway.idle_connection_timeout`, a body that takes longer than
  `gateway.body_timeout` likewise (Tornado's own timers);
- at most `gateway.max_connections` connections are open (HTTP and WebSocket), and never more
  than three quarters of the open-files limit, so the hub keeps descriptors for its servers and
  files; at most `gateway.max_connections_per_client` of one client address. A new connection
  past either limit closes the oldest idle connection (one waiting for a request: closing it
  loses nothing) of the same scope to make room; with none idle it gets a canned 503 and is
  closed at once, without a read;
- running out of descriptors anyway (`EMFILE` on accept: servers and files use them too) closes
  the pending connection with a spare descriptor kept for that, or pauses accepting for a moment,
  and is logged once a minute with a count, never once per accept.

`raise_open_files_limit` raises the soft limit of open files to the hard one at start. Everything
here runs on the web loop.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import tornado.httpserver
import tornado.httputil
import tornado.iostream
from tornado.ioloop import IOLoop

from web import sizes

log = logging.getLogger(__name__)
access_log = logging.getLogger("mcp_hub.access")

REPORT_INTERVAL = 60.0  # seconds between two log lines about refused connections
_EXHAUSTED = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_REFUSAL_BODY = (
    b'{"error": {"code": "too_many_connections", "message": "too many open connections; try again"}}'
)
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_REFUSAL_BODY), _REFUSAL_BODY)
)


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft limit of open files to the hard limit where allowed; `(before, after)`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft, soft
    return soft, target


@dataclass(eq=False)
class _Slot:
    """One open connection: its client address, stream, and whether a request is in progress."""

    client: str
    stream: tornado.iostream.IOStream
    idle_since: float
    busy: bool = False  # a request is being served, or the connection is a WebSocket now


class _Reporter:
    """Counts an event and logs it at most once per `REPORT_INTERVAL`."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.count = 0
        self.last = float("-inf")

    def add(self, detail: str) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= REPORT_INTERVAL:
            log.warning("%s: %d in the last %ds (%s)", self.what, self.count, REPORT_INTERVAL, detail)
            self.count, self.last = 0, now


@dataclass
class ConnectionBudget:
    """The connections of every listener, and their limits (see the module's docstring).

    Attributes:
        limit: connections open at once, all listeners together.
        per_client: connections of one client address (None: no limit of its own).
    """

    limit: int
    per_client: int | None
    slots: dict[tornado.iostream.IOStream, _Slot] = field(default_factory=dict)
    by_client: dict[str, set[_Slot]] = field(default_factory=dict)
    refused: _Reporter = field(default_factory=lambda: _Reporter("connections refused at the limit"))
    exhausted: _Reporter = field(default_factory=lambda: _Reporter("out of file descriptors on accept"))
    spare: int | None = None

    @classmethod
    def of(cls, max_connections: int, per_client: int | None) -> ConnectionBudget:
        """A budget of `max_connections`, capped at three quarters of the open-files limit."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        limit = max_connections
        if soft != resource.RLIM_INFINITY:
            limit = max(1, min(limit, soft - max(64, soft // 4)))
        budget = cls(limit, per_client)
        budget.keep_spare()
        return budget

    def keep_spare(self) -> None:
        """Hold one descriptor in reserve, to accept and close a connection when none is left."""
        if self.spare is None:
            try:
                self.spare = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self.spare = None

    def close(self) -> None:
        """Give back the spare descriptor."""
        if self.spare is not None:
            os.close(self.spare)
            self.spare = None

    def admit(self, client: str, stream: tornado.iostream.IOStream) -> bool:
        """Make room for a new connection of `client` (closing an idle one if needed), and count
        it; False if there is no room."""
        mine = self.by_client.get(client, set())
        if self.per_client is not None and len(mine) >= self.per_client and not self._evict(mine):
            self.refused.add(f"{len(mine)} connections of {client}, gateway.max_connections_per_client")
            return False
        if len(self.slots) >= self.limit and not self._evict(self.slots.values()):
            self.refused.add(f"{len(self.slots)} connections: gateway.max_connections or open-files limit")
            return False
        slot = _Slot(client, stream, time.monotonic())
        self.slots[stream] = slot
        self.by_client.setdefault(client, set()).add(slot)
        return True

    def _evict(self, slots: Iterable[_Slot]) -> bool:
        """Forget the closed connections among `slots`, or else close the one idle longest; False
        if that makes no room."""
        oldest, forgotten = None, False
        for slot in list(slots):
            if slot.stream.closed():  # a WebSocket that has closed since
                self.forget(slot.stream)
                forgotten = True
            elif not slot.busy and (oldest is None or slot.idle_since < oldest.idle_since):
                oldest = slot
        if oldest is None:
            return forgotten
        self.forget(oldest.stream)
        oldest.stream.close()
        return True

    def forget(self, stream: tornado.iostream.IOStream) -> None:
        """The connection of `stream` is closed."""
        slot = self.slots.pop(stream, None)
        if slot is not None:
            mine = self.by_client.get(slot.client)
            if mine is not None:
                mine.discard(slot)
                if not mine:
                    del self.by_client[slot.client]

    def waiting(self, stream: tornado.iostream.IOStream) -> _Slot | None:
        """The connection of `stream` waits for a request now."""
        slot = self.slots.get(stream)
        if slot is not None:
            slot.busy, slot.idle_since = False, time.monotonic()
        return slot


class _Watched(tornado.httputil.HTTPMessageDelegate):
    """A request's delegate that marks its connection busy once the request's headers arrive."""

    def __init__(self, inner: tornado.httputil.HTTPMessageDelegate, slot: _Slot) -> None:
        self.inner = inner
        self.slot = slot

    def headers_received(self, start_line: Any, headers: tornado.httputil.HTTPHeaders) -> Any:
        self.slot.busy = True
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self.inner.finish()

    def on_connection_close(self) -> None:
        self.inner.on_connection_close()


class _EdgeStream(tornado.iostream.IOStream):
    """An accepted connection. Tornado closes one whose header block runs past its read limit (its
    `max_header_size`) unanswered, which the client sees as a reset: this one first answers 431,
    then lingers (what the client still sends is read and dropped) before its socket closes. Web
    loop."""

    _refused = False

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


class EdgeServer(tornado.httpserver.HTTPServer):
    """Tornado's HTTP server, with the hub's connection limits and its own accept loop (which
    survives running out of descriptors). Web loop."""

    def initialize(self, *args: Any, budget: ConnectionBudget, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(*args, **kwargs)
        self.budget = budget
        self._accepting: dict[int, socket.socket] = {}

    # ------------------------------------------------------------------ accepting

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
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
        stream = _EdgeStream(
            connection, max_buffer_size=self.max_buffer_size, read_chunk_size=self.read_chunk_size
        )
        client = address[0] if isinstance(address, tuple) else "local"
        if not self.budget.admit(client, stream):
            with contextlib.suppress(OSError):
                connection.send(_REFUSAL)  # one non-blocking write, no read: cheap
            stream.close()
            return
        self.handle_stream(stream, address)

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
