"""Hostile input is the caller's error (issue 18, items 1, 9, 10, 11, 12): a real hub, real servers,
real HTTP, WebSocket and stdio clients.

Text that is not valid Unicode (a lone surrogate, `"\\ud800"` in JSON), JSON nested too deep,
integers longer than Python converts, `NaN` and `Infinity`: every surface answers the caller with
its own error (400, an `error` frame, JSON-RPC -32700 / -32602), never a 500, never a dropped
connection, and never by blaming, killing or stalling a healthy server. A server that answers
with a lone surrogate still gets its answer through. Bodies and headers over the hub's limits get
413 and 431, not a reset. None of it leaves a traceback in the hub's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket
from conftest import ROOT, server
from helpers.served import ServedHub, start_hub, stop_hub, write_config

ADMIN = "admin-key-0123456789"
LONE = b'"\\ud800"'  # JSON text of a lone surrogate
DEEP = b"[" * 20_000 + b"]" * 20_000
DEEP_OBJECT = b'{"a":' * 5_000 + b"1" + b"}" * 5_000
BIG_INT = b'{"text": ' + b"9" * 5_000 + b"}"
MAX_BODY = 100_000  # gateway.max_body_bytes of these hubs: the HTTP server reads up to 1 MiB


def strict(text: str | bytes) -> Any:
    """`text` parsed as JSON proper: `NaN`, `Infinity` and lone surrogates are not JSON."""

    def refuse(constant: str) -> Any:
        raise AssertionError(f"not JSON: {constant} in {text[:200]!r}")

    value = json.loads(text, parse_constant=refuse)
    if isinstance(text, bytes):
        text.decode("utf-8")  # (raises on anything that is not UTF-8)
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # (raises on a lone surrogate)
    return value


def no_traceback(hub: ServedHub) -> None:
    log = hub.log()
    assert "Traceback" not in log, log[-4000:]


@pytest.fixture
def hostile_hub(tmp_path: Path) -> Iterator[ServedHub]:
    """Tenant alpha: t1, a healthy test server, and t2, one that answers with lone surrogates; an
    app for the WebSocket gateway. Calls time out after 5 s (not 60) so a stall fails fast."""
    plugins = tmp_path / "plugins"
    (plugins / "hello").mkdir(parents=True)
    (plugins / "hello" / "manifest.json").write_text(json.dumps({"id": "hello", "name": "Hello"}))
    (plugins / "hello" / "index.html").write_text("<html><head></head><body>hi</body></html>")
    config = write_config(
        tmp_path,
        {
            "alpha": {
                "servers": {
                    "t1": server(call_timeout=5),
                    "t2": server("--lone-surrogate", call_timeout=5),
                }
            }
        },
        auth={"admin_keys": [ADMIN]},
        gateway={"plugins_dir": str(plugins), "max_body_bytes": MAX_BODY},
    )
    hub = start_hub(config, tmp_path)
    assert hub.post("/api/tenants/alpha/start", key=ADMIN).status == 200
    yield hub
    assert stop_hub(hub) == 0


def status_of(hub: ServedHub, name: str) -> dict[str, Any]:
    answer = hub.get(f"/api/servers/alpha/{name}", key=ADMIN)
    assert answer.status == 200, answer.text
    return answer.body


def post_raw(hub: ServedHub, path: str, raw: bytes) -> tuple[int, Any]:
    answer = hub.request("POST", path, raw=raw, key=ADMIN)
    return answer.status, answer.body


# --------------------------------------------------------------------------- REST (items 1, 9, 11)


def test_a_lone_surrogate_is_a_400_and_never_touches_the_server(hostile_hub: ServedHub) -> None:
    """Item 1: six prompt requests with `{"name": "\\ud800"}` used to kill t1 six times (five:
    `failed`); item 11: the same in a tool call held a slot until the call timed out."""
    hub = hostile_hub
    before = status_of(hub, "t1")
    assert before["state"] == "running"
    for _ in range(6):
        status, body = post_raw(hub, "/api/tenants/alpha/prompts/t1.greet", b'{"name": ' + LONE + b"}")
        assert status == 400, body
        assert body["error"]["code"] == "bad_request"
        assert "body.name" in body["error"]["message"], body
    started = time.monotonic()
    for raw in (
        b'{"text": ' + LONE + b"}",
        b'{"text": "ok \\udc00 ok"}',  # a lone low surrogate, inside other text
        b'{"text": "x", ' + LONE + b': "key"}',  # in a key
        b'{"text": "\xed\xa0\x80"}',  # a surrogate's bytes: not UTF-8 at all
    ):
        status, body = post_raw(hub, "/api/tools/t1.echo?tenant=alpha", raw)
        assert status == 400, (raw, body)
        assert body["error"]["code"] == "bad_request"
    assert time.monotonic() - started < 3, "a bad argument waited for the server"
    # The resource read takes its URI from the query: bytes that are not UTF-8 are a 400 too.
    assert hub.get("/api/tenants/alpha/resources/read?uri=%ED%A0%80", key=ADMIN).status == 400
    after = status_of(hub, "t1")
    assert (after["state"], after["pid"], after["restarts"]) == ("running", before["pid"], before["restarts"])
    assert not after["last_error"]
    # A valid pair (an emoji written as escapes) is fine, and the server still answers.
    status, body = post_raw(hub, "/api/tools/t1.echo?tenant=alpha", b'{"text": "\\ud83d\\ude00"}')
    assert status == 200 and body["structured_content"] == {"text": "\U0001f600"}, body
    no_traceback(hub)


def test_a_server_answering_a_lone_surrogate_is_not_a_500(hostile_hub: ServedHub) -> None:
    """Item 1, the other way: the text comes back from the server. The answer goes through, with
    U+FFFD where the lone surrogate was, as valid UTF-8 JSON."""
    hub = hostile_hub
    answer = hub.request("POST", "/api/tools/t2.echo?tenant=alpha", {"text": "a @@lone@@ b"}, key=ADMIN)
    assert answer.status == 200, answer.text
    body = strict(answer.text)
    assert body["content"][0]["text"] == "a \ufffd b"
    assert body["structured_content"] == {"text": "a \ufffd b"}
    prompt = hub.request("POST", "/api/tenants/alpha/prompts/t2.greet", {"name": "@@lone@@"}, key=ADMIN)
    assert prompt.status == 200, prompt.text
    assert strict(prompt.text)["messages"][0]["content"]["text"] == "Hello, \ufffd!"
    assert status_of(hub, "t2")["restarts"] == 0
    no_traceback(hub)


def test_json_python_cannot_hold_is_a_400(hostile_hub: ServedHub) -> None:
    """Item 9: nested 5,000 and 20,000 deep, an integer of 5,000 digits, and the non-JSON
    constants are 400 where a body is read (a tool call, a prompt), never a 500."""
    hub = hostile_hub
    for raw in (DEEP, DEEP_OBJECT, BIG_INT, b'{"text": NaN}', b'{"text": Infinity}', b'{"text": 1e400}'):
        for path in ("/api/tools/t1.echo?tenant=alpha", "/api/tenants/alpha/prompts/t1.greet"):
            status, body = post_raw(hub, path, raw)
            assert status == 400, (raw[:40], path, status, body)
            assert body["error"]["code"] == "bad_request", body
    assert status_of(hub, "t1")["restarts"] == 0
    no_traceback(hub)


# --------------------------------------------------------------------------- MCP over HTTP (items 1, 9)


class McpHttp:
    """A raw Streamable HTTP client of `/mcp` (2025-11-25, one session)."""

    def __init__(self, hub: ServedHub) -> None:
        host, port = hub.url.removeprefix("http://").rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.session: str | None = None

    def post(self, raw: bytes) -> tuple[int, Any]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "Authorization": f"Bearer {ADMIN}",
            "MCP-Protocol-Version": "2025-11-25",
        }
        if self.session:
            headers["Mcp-Session-Id"] = self.session
        try:
            connection.request("POST", "/mcp?tenant=alpha", body=raw, headers=headers)
            answer = connection.getresponse()
            text = answer.read().decode()
            self.session = self.session or answer.getheader("Mcp-Session-Id")
        finally:
            connection.close()
        if text.startswith("event:") or "\ndata: " in text:
            text = next(line[6:] for line in text.splitlines() if line.startswith("data: "))
        return answer.status, strict(text) if text else None

    def rpc(self, request_id: int, method: str, params: dict[str, Any]) -> bytes:
        return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}).encode()

    def open(self) -> None:
        params = {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        }
        status, body = self.post(self.rpc(0, "initialize", params))
        assert status == 200 and "result" in body, body
        self.post(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}')


def with_lone(raw: bytes) -> bytes:
    """`raw` with its `@@lone@@` made a lone surrogate escape."""
    return raw.replace(b"@@lone@@", b"\\ud800")


def test_mcp_http_answers_bad_input_with_json_rpc_errors(hostile_hub: ServedHub) -> None:
    hub = hostile_hub
    client = McpHttp(hub)
    client.open()
    pid = status_of(hub, "t1")["pid"]
    started = time.monotonic()
    # Item 1 / 11: invalid Unicode in a tool call (the lane) and a prompt (the SDK): -32602, at once.
    call = with_lone(client.rpc(5, "tools/call", {"name": "t1__echo", "arguments": {"text": "@@lone@@"}}))
    prompt = with_lone(client.rpc(6, "prompts/get", {"name": "t1__greet", "arguments": {"name": "@@lone@@"}}))
    for request_id, raw in ((5, call), (6, prompt), (6, prompt), (6, prompt)):
        status, body = client.post(raw)
        assert status == 400, body
        assert body["id"] == request_id and body["error"]["code"] == -32602, body
    assert time.monotonic() - started < 3, "a bad argument waited for the server"
    # Item 9: too deep, too long an integer, a NaN: parse errors (-32700), never a 500.
    for raw in (
        DEEP,
        DEEP_OBJECT,
        b'{"jsonrpc": "2.0", "id": ' + b"9" * 5000 + b', "method": "ping"}',
        b"NaN",
    ):
        status, body = client.post(raw)
        assert status == 400, (raw[:40], status, body)
        assert body["error"]["code"] == -32700 and body["id"] is None, body
    # A server answering a lone surrogate: the answer gets through as valid JSON.
    status, body = client.post(
        client.rpc(7, "tools/call", {"name": "t2__echo", "arguments": {"text": "@@lone@@"}})
    )
    assert status == 200 and body["result"]["content"][0]["text"] == "\ufffd", body
    status, body = client.post(
        client.rpc(8, "prompts/get", {"name": "t2__greet", "arguments": {"name": "@@lone@@"}})
    )
    assert status == 200 and body["result"]["messages"][0]["content"]["text"] == "Hello, \ufffd!", body
    # The healthy server was never touched, and still serves.
    status, body = client.post(client.rpc(9, "tools/call", {"name": "t1__echo", "arguments": {"text": "ok"}}))
    assert status == 200 and body["result"]["structuredContent"] == {"text": "ok"}, body
    assert status_of(hub, "t1")["pid"] == pid and status_of(hub, "t1")["restarts"] == 0
    no_traceback(hub)


# --------------------------------------------------------------------------- WebSocket (items 1, 10)


def test_the_websocket_gateway_answers_bad_frames_with_error_frames(hostile_hub: ServedHub) -> None:
    """Item 10: a deeply nested frame, `NaN` and `1e400` ids get an `error` frame (valid JSON) and
    the connection stays; item 1: a lone surrogate in a tool call's arguments is a `bad_request`."""
    hub = hostile_hub

    async def scenario() -> None:
        url = hub.url.replace("http://", "ws://") + f"/ws/app/hello/alpha?token={ADMIN}"
        ws = await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(url))

        async def frame() -> dict[str, Any]:
            message = await asyncio.wait_for(ws.read_message(), 30)
            assert message is not None, "the connection closed"
            return strict(message)

        async def answer(frame_id: Any) -> dict[str, Any]:
            while True:
                got = await frame()
                if got["type"] in ("error", "tool_result", "pong") and got.get("id") == frame_id:
                    return got

        try:
            for raw in (
                DEEP.decode(),
                DEEP_OBJECT.decode(),
                '{"type": "ping", "id": NaN}',
                '{"type": "ping", "id": 1e400}',
                '{"type": "ping", "id": Infinity}',
                '{"type": "ping", "id": ' + "9" * 5000 + "}",
            ):
                ws.write_message(raw)
                got = await answer(None)
                assert got["type"] == "error" and got["data"]["code"] == "bad_request", got
            started = time.monotonic()
            lone_call = {
                "type": "tool_call",
                "id": 1,
                "data": {"tool_name": "t1.echo", "arguments": {"text": "@@lone@@"}},
            }
            ws.write_message(with_lone(json.dumps(lone_call).encode()).decode())
            got = await answer(1)
            assert got["type"] == "error" and got["data"]["code"] == "bad_request", got
            assert time.monotonic() - started < 3
            ws.write_message(
                json.dumps(
                    {
                        "type": "tool_call",
                        "id": 2,
                        "data": {"tool_name": "t2.echo", "arguments": {"text": "@@lone@@"}},
                    }
                )
            )
            got = await answer(2)
            assert got["type"] == "tool_result" and got["data"]["content"][0]["text"] == "\ufffd", got
            ws.write_message('{"type": "ping", "id": 3}')
            assert (await answer(3))["type"] == "pong"  # still open
        finally:
            ws.close()
            with contextlib.suppress(TimeoutError):
                while await asyncio.wait_for(ws.read_message(), 10) is not None:
                    pass

    asyncio.run(scenario())
    assert status_of(hub, "t1")["restarts"] == 0
    no_traceback(hub)


# --------------------------------------------------------------------------- MCP over stdio (item 1, 9)


def test_the_stdio_facade_answers_bad_input_with_json_rpc_errors(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"t": {"servers": {"t1": server(call_timeout=5)}}})

    async def scenario() -> None:
        with open(tmp_path / "stderr", "w") as errlog:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hub", "stdio", "--config", str(config), "--tenant", "t",
                cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=errlog,
            )  # fmt: skip
        assert process.stdin and process.stdout

        async def send(raw: bytes) -> None:
            process.stdin.write(raw + b"\n")  # type: ignore[union-attr]
            await process.stdin.drain()  # type: ignore[union-attr]

        async def receive(request_id: Any) -> dict[str, Any]:
            while True:
                line = await asyncio.wait_for(process.stdout.readline(), 30)  # type: ignore[union-attr]
                assert line, "the facade closed stdout"
                message = strict(line)
                if "method" not in message and message.get("id") == request_id:
                    return message

        def rpc(request_id: int, method: str, params: dict[str, Any]) -> bytes:
            return json.dumps(
                {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
            ).encode()

        try:
            params = {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            }
            await send(rpc(0, "initialize", params))
            assert "result" in await receive(0)
            await send(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}')
            await send(rpc(1, "tools/call", {"name": "t1__echo", "arguments": {"text": "ok"}}))
            assert (await receive(1))["result"]["structuredContent"] == {"text": "ok"}
            started = time.monotonic()
            await send(
                with_lone(rpc(2, "tools/call", {"name": "t1__echo", "arguments": {"text": "@@lone@@"}}))
            )
            assert (await receive(2))["error"]["code"] == -32602
            await send(
                with_lone(rpc(3, "prompts/get", {"name": "t1__greet", "arguments": {"name": "@@lone@@"}}))
            )
            assert (await receive(3))["error"]["code"] == -32602
            assert time.monotonic() - started < 3
            await send(DEEP)
            assert (await receive(None))["error"]["code"] == -32700
            await send(rpc(4, "tools/call", {"name": "t1__echo", "arguments": {"text": "still"}}))
            assert (await receive(4))["result"]["structuredContent"] == {"text": "still"}
        finally:
            process.stdin.close()  # type: ignore[union-attr]
            await asyncio.wait_for(process.wait(), 30)
        log = (tmp_path / "stderr").read_text()
        assert "Traceback" not in log and "crashed" not in log, log[-4000:]

    asyncio.run(scenario())


# --------------------------------------------------------------------------- sizes (item 12)


def raw_exchange(hub: ServedHub, head: bytes, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send `head` and `body` on one connection, as a client that writes all before it reads."""
    host, port = hub.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + body)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()


def test_too_large_a_body_is_413_and_too_large_headers_431(hostile_hub: ServedHub) -> None:
    hub = hostile_hub
    host = hub.url.removeprefix("http://")
    auth = f"Authorization: Bearer {ADMIN}\r\n".encode()
    for size in (MAX_BODY + 1, 3 * 1024 * 1024):  # read and refused; refused before it is read
        body = b'{"text": "' + b"x" * (size - 12) + b'"}'
        head = (
            (
                f"POST /api/tools/t1.echo?tenant=alpha HTTP/1.1\r\nHost: {host}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            ).encode()
            + auth
            + b"\r\n"
        )
        status, headers, answer = raw_exchange(hub, head, body)
        assert status == 413, (size, status, answer[:200])
        assert strict(answer)["error"]["code"] == "payload_too_large"
        assert headers["content-type"].startswith("application/json")
    # Over 64 KiB, and over what Tornado reads of a header block at all (128 KiB), in one header or
    # in many: the same 431.
    for big in (
        b"X-Filler: " + b"y" * 70_000 + b"\r\n",
        b"X-Filler: " + b"y" * 300_000 + b"\r\n",
        b"".join(b"X-Filler-%d: %s\r\n" % (n, b"z" * 1000) for n in range(1000)),
    ):
        head = f"GET /api/servers HTTP/1.1\r\nHost: {host}\r\n".encode() + auth + big + b"\r\n"
        status, headers, answer = raw_exchange(hub, head)
        assert status == 431, (len(big), status, answer[:200])
        assert strict(answer)["error"]["code"] == "headers_too_large"
    # The hub serves on.
    assert hub.get("/api/servers", key=ADMIN).status == 200
    no_traceback(hub)


# --------------------------------------------------------------------------- below the edges


def test_the_python_api_refuses_what_no_server_could_read_and_blames_none(make_hub) -> None:
    """Below every edge, the actors themselves: a lone surrogate or a NaN in a call's arguments
    (the hub's own channel), a prompt's arguments or a resource URI (the SDK's path) fails that
    one call with a 400 naming the place; the server keeps its process, and answers the next."""
    from hub.errors import BadRequest, InvalidText

    hub = make_hub({"t": {"servers": {"s": server(call_timeout=5)}}})
    assert hub.start_tenant("t")["s"] == "running"
    before = hub.server("t", "s")
    started = time.monotonic()
    with pytest.raises(InvalidText, match=r"arguments\.text"):
        hub.call_tool("t", "s.echo", {"text": "\ud800"})
    with pytest.raises(InvalidText, match=r"arguments\.name"):
        hub.get_prompt("t", "s.greet", {"name": "a\udfffb"})
    with pytest.raises(InvalidText):
        hub.read_resource("t", "test://info\ud800", server="s")
    with pytest.raises(BadRequest, match="JSON"):
        hub.call_tool("t", "s.sleep", {"seconds": float("nan")})
    assert time.monotonic() - started < 3
    after = hub.server("t", "s")
    assert (after.state.value, after.pid, after.restarts) == ("running", before.pid, 0), after
    assert hub.call_tool("t", "s.echo", {"text": "fine"}).structured_content == {"text": "fine"}


def test_jsontext_refuses_and_repairs() -> None:
    from actors.upstream.stdio import _repaired, _serialized
    from hub import jsontext
    from hub.errors import InvalidText, MalformedJson

    assert jsontext.loads(b'{"a": [1, 2.5, "\\ud83d\\ude00"]}') == {"a": [1, 2.5, "\U0001f600"]}
    for bad in (b"NaN", b"[-Infinity]", b"1e999", b"9" * 5000, DEEP, b"[" * 129 + b"]" * 129):
        with pytest.raises(MalformedJson):
            jsontext.loads(bad)
    assert jsontext.loads(b"[" * 128 + b"]" * 128)  # 128 levels are taken
    with pytest.raises(InvalidText, match=r"body\.a\[1\]"):
        jsontext.loads(b'{"a": [0, "\\udc00"]}')
    assert jsontext.dumps({"x": "\ud800", "y": float("inf")}) == '{"x": "\ufffd", "y": null}'
    import mcp.types as types

    request = types.JSONRPCRequest(jsonrpc="2.0", id=1, method="ping", params={"a": "\ud800"})
    assert strict(_serialized(request))["params"] == {"a": "\ufffd"}
    repaired = _repaired(b'{"jsonrpc": "2.0", "id": 1, "result": {"text": "\\ud800"}}')
    assert repaired is not None and repaired.result == {"text": "\ufffd"}
    assert _repaired(b"not json") is None
