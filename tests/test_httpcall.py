"""The pieces of the hub's own channel to Streamable HTTP servers (`actors/upstream/http1.py`,
`actors/upstream/sse.py`, `actors/upstream/httpcall.py`), each against a real HTTP server on
loopback that answers exactly as a test needs (what real servers do, and what broken ones do).
The channel's whole behaviour through a hub is in tests/test_remote_relay.py and
tests/test_remote_faults.py."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from collections.abc import Awaitable, Callable

import pytest

from actors.upstream.http1 import HttpFailure, Pool, proxied
from actors.upstream.httpcall import SessionWatch
from actors.upstream.sse import SseParser

Answer = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]  # (request, writer) -> keep the connection?


async def _serve(answer: Answer) -> tuple[asyncio.Server, str, list[int]]:
    """A server on loopback; each request (head + Content-Length body) goes to `answer`; the list
    counts the connections it accepted."""
    accepted: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                if not await answer(head + body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/mcp", accepted


def _json(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


def test_sequential_posts_share_one_kept_alive_connection_and_bodies_decode_every_way() -> None:
    async def answer(request: bytes, writer: asyncio.StreamWriter) -> bool:
        if b'"chunked"' in request:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                b'5\r\n{"a":\r\n3;ext=1\r\n 1}\r\n0\r\nTrailer: x\r\n\r\n'
            )
        else:
            writer.write(_json(b'{"ok": true}'))
        return True

    async def run() -> None:
        server, url, accepted = await _serve(answer)
        pool = Pool(url, {"Authorization": "Bearer t"})
        try:
            for _ in range(5):
                response = await pool.post(b'{"plain": 1}', {})
                assert (response.status, response.content_type) == (200, "application/json")
                assert await response.read(1024) == b'{"ok": true}'
            response = await pool.post(b'{"chunked": 1}', {})
            assert await response.read(1024) == b'{"a": 1}'
            assert len(accepted) == 1  # one connection for all six
        finally:
            pool.close()
            server.close()

    asyncio.run(run())


def test_concurrent_posts_beyond_the_pools_connections_wait_for_one_and_all_are_answered() -> None:
    busy = {"now": 0, "most": 0}

    async def answer(request: bytes, writer: asyncio.StreamWriter) -> bool:
        busy["now"] += 1
        busy["most"] = max(busy["most"], busy["now"])
        await asyncio.sleep(0.02)
        busy["now"] -= 1
        writer.write(_json(b'{"ok": 1}'))
        return True

    async def run() -> None:
        server, url, accepted = await _serve(answer)
        pool = Pool(url, {}, connections=4)
        try:

            async def one() -> bytes:
                return await (await pool.post(b"{}", {})).read(100)

            answers = await asyncio.gather(*(one() for _ in range(40)))
            assert answers == [b'{"ok": 1}'] * 40
            assert busy["most"] == 4 and len(accepted) == 4  # (never more at once; kept alive)
        finally:
            pool.close()
            server.close()

    asyncio.run(run())


def test_a_connection_the_server_closed_while_idle_is_replaced_without_failing_the_post() -> None:
    async def answer(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(_json(b"{}"))
        await writer.drain()
        return False  # closes after each answer, though HTTP/1.1 keeps it by default

    async def run() -> None:
        server, url, accepted = await _serve(answer)
        pool = Pool(url, {})
        try:
            for _ in range(3):
                response = await pool.post(b"{}", {})
                assert await response.read(100) == b"{}"
                await asyncio.sleep(0.05)  # (the server's close arrives while the connection idles)
            assert len(accepted) == 3
        finally:
            pool.close()
            server.close()

    asyncio.run(run())


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"SPDY/3 200 OK\r\n\r\n", "not HTTP/1.1"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -4\r\n\r\n", "malformed Content-Length"),
    ],
)
def test_an_answer_that_is_not_http_is_a_failure_that_names_it(raw: bytes, message: str) -> None:
    async def answer(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(raw)
        return False

    async def run() -> None:
        server, url, _ = await _serve(answer)
        pool = Pool(url, {})
        try:
            with pytest.raises(HttpFailure, match=message) as failure:
                await pool.post(b"{}", {})
            assert failure.value.answered
        finally:
            pool.close()
            server.close()

    asyncio.run(run())


def test_a_body_over_the_limit_or_cut_short_is_a_failure() -> None:
    async def answer(request: bytes, writer: asyncio.StreamWriter) -> bool:
        if b"big" in request:
            writer.write(_json(b"x" * 5000))
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        return False

    async def run() -> None:
        server, url, _ = await _serve(answer)
        pool = Pool(url, {})
        try:
            with pytest.raises(HttpFailure, match="over 0 MiB"):
                await (await pool.post(b'"big"', {})).read(1000)
            with pytest.raises(HttpFailure, match="closed the connection mid-answer"):
                await (await pool.post(b'"cut"', {})).read(1000)
        finally:
            pool.close()
            server.close()

    asyncio.run(run())


def test_nothing_listening_is_a_failure_before_any_answer() -> None:
    async def run() -> None:
        server, url, _ = await _serve(lambda request, writer: asyncio.sleep(0, False))
        server.close()
        await server.wait_closed()
        with pytest.raises(HttpFailure, match=r"cannot connect to 127\.0\.0\.1") as failure:
            await Pool(url, {}).post(b"{}", {})
        assert not failure.value.answered

    asyncio.run(run())


def test_headers_that_could_inject_lines_are_never_sent() -> None:
    with pytest.raises(ValueError, match="header 'X-Key' cannot be sent"):
        Pool("http://127.0.0.1:1/mcp", {"X-Key": "a\r\nX-Evil: 1"})
    with pytest.raises(ValueError, match="not an http"):
        Pool("ftp://127.0.0.1/mcp", {})

    class Request:
        def __init__(self, value: str) -> None:
            self.headers = {"mcp-session-id": value}

    watch = SessionWatch()
    asyncio.run(watch.watch(Request("abc-123")))
    asyncio.run(watch.watch(Request("evil\r\nX-Injected: 1")))  # (a hostile server's session id)
    assert watch.session_id == "abc-123"


def test_server_sent_events_parse_across_any_chunking() -> None:
    stream = (
        b': a comment\r\nretry: 1500\r\nid: 7\r\ndata: {"a":\r\ndata: 1}\r\n\r\n'
        b"event: other\ndata: x\n\n"
        b"id: 8\rdata:\r\r"  # CR line ends; an event with an empty data line
    )
    whole = SseParser(1024).feed(stream)
    assert [(e.event, e.data, e.id, e.retry) for e in whole] == [
        ("message", '{"a":\n1}', "7", 1500),
        ("other", "x", "7", None),
        ("message", "", "8", None),
    ]
    for size in (1, 2, 3, 7):
        parser = SseParser(1024)
        events = [e for i in range(0, len(stream), size) for e in parser.feed(stream[i : i + size])]
        assert events == whole, size
    with pytest.raises(ValueError, match="an event over"):
        SseParser(10).feed(b"data: " + b"y" * 20 + b"\n")


def test_https_is_verified_against_the_certificates_the_sdk_client_trusts(tmp_path, monkeypatch) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=t"),
            *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)

    async def answer(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(_json(b'{"tls": true}'))
        return True

    async def run(trusted: bool) -> None:
        accepted: list[int] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(1)
            with contextlib.suppress(Exception):
                await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(2)
                await answer(b"", writer)
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=served)
        url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/mcp"
        pool = Pool(url, {})
        try:
            if trusted:
                assert await (await pool.post(b"{}", {})).read(100) == b'{"tls": true}'
            else:
                with pytest.raises(HttpFailure, match="CERTIFICATE_VERIFY_FAILED"):
                    await pool.post(b"{}", {})
        finally:
            pool.close()
            server.close()

    asyncio.run(run(trusted=False))  # (a self-signed certificate nobody trusts)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    asyncio.run(run(trusted=True))


def test_a_proxy_of_the_environment_leaves_the_calls_to_the_sdk_client(monkeypatch) -> None:
    url = "https://mcp.example.com/mcp"
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert not proxied(url)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert proxied(url) and not proxied("http://mcp.example.com/mcp")
    monkeypatch.setenv("NO_PROXY", "example.com")
    assert not proxied(url)
