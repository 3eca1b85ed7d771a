"""The hub's own HTTP/1.1 connections (`web/lean_http.py`, issue 24), on a real listening hub with
raw sockets: keep-alive and pipelined requests answered in order on one connection, a request
trickling in byte by byte, `Connection: close`, HEAD; and what it hands over to Tornado answered as
Tornado answers it (HTTP/1.0, a chunked body, `Expect: 100-continue`, a malformed request line,
bare-LF line ends), the connection going on after the hand-over; a client gone mid-body leaves
the hub serving."""

from __future__ import annotations

import json
import random
import re
import socket
from typing import Any

import pytest
from conftest import server
from helpers.served import ServedHub
from tornado import httputil

from web.lean_http import parse_headers, response_head

_CALL = "/api/tools/a.echo/call"


def _connect(hub: ServedHub) -> tuple[socket.socket, str]:
    host, port = hub.url.removeprefix("http://").rsplit(":", 1)
    conn = socket.create_connection((host, int(port)), timeout=30)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn, f"{host}:{port}"


def _head(method: str, path: str, host: str, length: int | None = None, **headers: str) -> bytes:
    """A request's head; `length`: its `Content-Length` (None: none)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    if length is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {length}"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _request(method: str, path: str, host: str, body: bytes = b"", **headers: str) -> bytes:
    return _head(method, path, host, len(body) if body or method == "POST" else None, **headers) + body


class _Reader:
    """Reads the responses of one connection, one after another (Content-Length or chunked)."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.data = b""

    def _more(self) -> None:
        chunk = self.conn.recv(65536)
        if not chunk:
            raise EOFError(self.data[:300])
        self.data += chunk

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.data:
            self._more()
        part, _, self.data = self.data.partition(marker)
        return part

    def _take(self, size: int) -> bytes:
        while len(self.data) < size:
            self._more()
        part, self.data = self.data[:size], self.data[size:]
        return part

    def response(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        head = self._until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
        if head_only or status in (100, 204, 304):
            return status, headers, b""
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self._until(b"\r\n"), 16):
                body += self._take(size)
                self._take(2)
            self._take(2)
            return status, headers, body
        return status, headers, self._take(int(headers.get("content-length", "0")))

    def closed(self) -> bool:
        try:
            self._more()
        except EOFError:
            return self.data == b""
        return False


def _echo(host: str, text: str, **headers: str) -> bytes:
    body = json.dumps({"text": text}).encode()
    return _request("POST", _CALL, host, body, **headers)


def _echoed(answer: tuple[int, dict[str, str], bytes]) -> Any:
    status, _, body = answer
    assert status == 200, answer
    return json.loads(body)["structured_content"]["text"]


def test_one_connection_serves_keep_alive_and_pipelined_requests_in_order(served) -> None:
    hub = served({"default": {"servers": {"a": server()}}})
    conn, host = _connect(hub)
    with conn:
        reader = _Reader(conn)
        conn.sendall(_request("GET", "/health", host) + _echo(host, "one") + _request("GET", "/health", host))
        assert reader.response()[0] == 200
        assert _echoed(reader.response()) == "one"
        assert reader.response()[0] == 200
        for i in range(5):  # keep-alive, one at a time
            conn.sendall(_echo(host, f"n{i}"))
            assert _echoed(reader.response()) == f"n{i}"
        for byte in _echo(host, "trickled"):  # a request arriving a byte at a time
            conn.sendall(bytes([byte]))
        assert _echoed(reader.response()) == "trickled"
        conn.sendall(_request("HEAD", "/health", host))  # (a GET route: 405, its length, no body)
        status, headers, _ = reader.response(head_only=True)
        assert status == 405 and int(headers["content-length"]) > 0
        conn.sendall(_echo(host, "last", Connection="close"))
        status, headers, body = reader.response()
        assert _echoed((status, headers, body)) == "last" and headers["connection"] == "close"
        assert reader.closed()


def test_what_it_does_not_speak_is_answered_as_tornado_answers_it(served) -> None:
    hub = served({"default": {"servers": {"a": server()}}})
    conn, host = _connect(hub)
    with conn:  # HTTP/1.0: answered, then closed
        conn.sendall(f"GET /health HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        reader = _Reader(conn)
        assert reader.response()[0] == 200 and reader.closed()
    conn, host = _connect(hub)
    with conn:  # a chunked body; then the connection goes on (Tornado's now)
        reader = _Reader(conn)
        body = json.dumps({"text": "chunked"}).encode()
        head = _head("POST", _CALL, host, Content_Type="application/json", Transfer_Encoding="chunked")
        conn.sendall(head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        assert _echoed(reader.response()) == "chunked"
        conn.sendall(_echo(host, "after"))
        assert _echoed(reader.response()) == "after"
    conn, host = _connect(hub)
    with conn:  # Expect: 100-continue
        reader = _Reader(conn)
        body = json.dumps({"text": "continued"}).encode()
        conn.sendall(_head("POST", _CALL, host, len(body), Expect="100-continue"))
        assert reader.response(head_only=True)[0] == 100
        conn.sendall(body)
        assert _echoed(reader.response()) == "continued"
    conn, host = _connect(hub)
    with conn:  # bare LF line ends
        conn.sendall(f"GET /health HTTP/1.1\nHost: {host}\n\n".encode())
        assert _Reader(conn).response()[0] == 200
    conn, host = _connect(hub)
    with conn:  # a malformed request line: Tornado's 400, and the connection closes
        conn.sendall(b"NOT A REQUEST\r\n\r\n")
        reader = _Reader(conn)
        assert reader.response(head_only=True)[0] == 400 and reader.closed()
    for bad in ("X-Bad\x01: v", "X-Bad: v\x00", "Bad Name: v", "X-Folded: a\r\n  b", "No-Colon"):
        conn, host = _connect(hub)
        with conn:  # a header Tornado refuses: its 400, and the connection closes
            conn.sendall(f"GET /health HTTP/1.1\r\nHost: {host}\r\n{bad}\r\n\r\n".encode("latin-1"))
            reader = _Reader(conn)
            assert reader.response(head_only=True)[0] == 400 and reader.closed(), bad


def test_its_header_parser_reads_what_tornado_reads_and_leaves_the_rest_to_tornado() -> None:
    """`parse_headers` gives Tornado's `HTTPHeaders.parse` result for every block it takes; what it
    does not take is handed over (Tornado refuses it, or reads a bare CR or LF as a line end)."""
    pieces = ["a", "B", "-", "_", ":", " ", "\t", "\r\n", "\r", "\n", "\x00", "\x0b", "\x7f", "é", "\x85"]
    pieces += ["Host", "host", "Content-Length", ";", ",", '"', "(", "1"]
    rng = random.Random(24)
    taken = 0
    for _ in range(50_000):
        block = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        ours = parse_headers(block)
        if ours is None:
            continue
        taken += 1
        theirs = httputil.HTTPHeaders.parse(block)  # (raises if Tornado refuses what we took)
        assert list(ours.get_all()) == list(theirs.get_all()), repr(block)
    real = "Host: h:1\r\nAccept: a, b\r\nmcp-name: x\r\nX-Twice: 1\r\nx-twice: 2\r\nX-Empty:\r\nX-Tab: a\tb "
    assert list(parse_headers(real).get_all()) == list(httputil.HTTPHeaders.parse(real).get_all())
    assert taken > 1000  # (the generator makes blocks it takes, not only refusals)


def test_a_client_gone_mid_body_leaves_the_hub_serving(served) -> None:
    hub = served({"default": {"servers": {"a": server()}}})
    conn, host = _connect(hub)
    with conn:
        conn.sendall(_head("POST", _CALL, host, 1000) + b'{"text": ')
    conn, host = _connect(hub)
    with conn:
        conn.sendall(_echo(host, "still here"))
        assert _echoed(_Reader(conn).response()) == "still here"
    assert re.search(r"Traceback", hub.log()) is None, hub.log()[-3000:]


def test_a_response_larger_than_the_socket_takes_arrives_whole_and_the_connection_goes_on(served) -> None:
    hub = served({"default": {"servers": {"a": server()}}}, gateway={"max_body_bytes": 16 * 1024 * 1024})
    conn, host = _connect(hub)
    with conn:
        reader = _Reader(conn)
        text = "".join(chr(0x41 + i % 26) for i in range(4 * 1024 * 1024))  # answered twice: ~8 MiB
        conn.sendall(_echo(host, text))  # (nothing is read until the whole request is sent)
        assert _echoed(reader.response()) == text
        conn.sendall(_echo(host, "next"))
        assert _echoed(reader.response()) == "next"


def test_a_response_head_is_written_as_tornado_writes_it_and_no_header_can_add_a_line() -> None:
    headers = httputil.HTTPHeaders()
    headers["Content-Type"] = "application/json; charset=utf-8"
    headers.add("Set-Cookie", "a=1")
    headers.add("Set-Cookie", "b=2")
    headers["X-Latin"] = "caf\xe9"
    assert response_head(200, "OK", headers) == (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
        b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Latin: caf\xe9\r\n\r\n"
    )
    assert response_head(404, "Not Found", httputil.HTTPHeaders()) == b"HTTP/1.1 404 Not Found\r\n\r\n"
    for value in ("a\r\nX-Evil: 1", "a\nb", "a\rb"):
        evil = httputil.HTTPHeaders()
        evil["X-Ok"] = "fine"
        evil["X-Bad"] = value  # (`add` refuses it already; setting it does not)
        with pytest.raises(ValueError, match="Illegal characters") as refused:
            response_head(200, "OK", evil)
        assert "X-Bad" in str(refused.value) and "X-Ok" not in str(refused.value)
