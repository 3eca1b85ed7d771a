"""Fuzzing the hub's surfaces (issue 18): REST, the WebSocket gateway and the MCP facade of a real
listening hub with two keyed tenants, an admin key and an audit log, driven by hypothesis.

Whatever arrives, the hub answers with a status line that is not 500 (a bad request is a 4xx, a
server's failure a 502), every WebSocket answer is strict JSON, and the hub's log ends with no
traceback and no key. Bounded: a fixed number of examples per surface (about a minute in all),
derandomized so that CI runs the same inputs each time.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket
from conftest import server
from helpers.apps import close, make_plugins
from helpers.served import ADMIN_KEY, SECRETS, ServedHub, keyed_tenants, start_hub, stop_hub, write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ACME_KEY, BETA_KEY = keyed_tenants()["acme"]["api_keys"][0], keyed_tenants()["beta"]["api_keys"][0]
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# --------------------------------------------------------------------------- what is sent

# Path parameters: mostly names that exist (so requests reach the servers), then odd ones.
REAL_NAMES = st.sampled_from(["acme", "beta", "a", "b2", "s", "a.echo", "a.greet", "s.echo", "hello"])
ODD_NAMES = st.sampled_from(["nope", "..", "%2e%2e", "a%00b", "%ff", "é", "x" * 300, "acme.a", ""])
NAMES = st.one_of(REAL_NAMES, REAL_NAMES, REAL_NAMES, ODD_NAMES)
KEYS = st.sampled_from(
    [ADMIN_KEY, ACME_KEY, ADMIN_KEY, None, BETA_KEY, "wrong", "bad\x01key", "x" * 5000, "é"]
)
TEXT = st.text(alphabet=st.characters(codec=None), max_size=40) | st.sampled_from(
    ["\ud800", "\udfff", "a\x00b", "\u202e", "\U0010ffff"]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=20,
)
# Payloads a JSON encoder does not make: deep nesting, huge numbers, bare NaN, broken UTF-8...
ODD_BODIES = st.sampled_from(
    [
        b"[" * 1200 + b"]" * 1200,
        b'{"a":' * 1200 + b"1" + b"}" * 1200,
        b'{"text": ' + b"9" * 5000 + b"}",
        b'{"text": NaN, "n": Infinity}',
        b'{"text": "\\ud800"}',
        b'{"text": "\xff\xfe"}',
        b"\x00" * 64,
        b"",
        b"{",
        b'{"jsonrpc": "2.0", "id": 1e400, "method": "tools/list"}',
    ]
)


def encode(value: Any) -> bytes:
    """JSON as Python writes it (NaN and lone surrogates included, as an attacker may)."""
    return json.dumps(value).encode("utf-8", "surrogatepass")


BODIES = JSON.map(encode) | ODD_BODIES | st.binary(max_size=200)


def raw_request(hub: ServedHub, method: str, path: str, body: bytes, headers: dict[str, str]) -> int:
    """Send one HTTP/1.1 request byte for byte; the status code of the answer (0: no answer)."""
    host, port = hub.url.removeprefix("http://").rsplit(":", 1)
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    head.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(head) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(data)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    status = answer.split(b" ", 2)[1] if answer.startswith(b"HTTP/1.1 ") else b"0"
    return int(status)


# --------------------------------------------------------------------------- the hub


@pytest.fixture
def fuzz_hub(tmp_path: Path) -> Iterator[ServedHub]:
    """A hub for one surface's fuzzing; after it, its log has no traceback and no key."""
    tenants = keyed_tenants()
    tenants["acme"]["servers"]["s"] = server()
    config = write_config(
        tmp_path,
        tenants,
        auth={"admin_keys": [ADMIN_KEY]},
        gateway={"plugins_dir": str(make_plugins(tmp_path))},
        audit={"file": str(tmp_path / "audit.log")},
    )
    hub = start_hub(config, tmp_path)
    for tenant in ("acme", "beta"):
        assert hub.post(f"/api/tenants/{tenant}/start", key=ADMIN_KEY).status == 200
    yield hub
    assert stop_hub(hub) == 0
    log = hub.log()
    assert "Traceback" not in log, log[-5000:]
    leaked = [secret for secret in (*SECRETS, "bad\x01key") if secret in log]
    assert not leaked, f"keys in the hub's log: {leaked}"


def routes(hub: ServedHub) -> list[tuple[str, str]]:
    """(method, path template) of every route the OpenAPI document lists."""
    document = hub.get("/openapi.json").body
    return [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "delete", "patch")
    ]


# --------------------------------------------------------------------------- REST


def test_rest_never_answers_500(fuzz_hub: ServedHub) -> None:
    table = routes(fuzz_hub)

    @FUZZ
    @given(
        route=st.sampled_from(table),
        names=st.lists(NAMES, min_size=4, max_size=4),
        body=BODIES,
        key=KEYS,
        kind=st.sampled_from(["application/json", "text/plain", "application/json; charset=latin-1"]),
        query=st.sampled_from(["", "?tenant=acme", "", "?tenant=beta", "?tenant=nope", "?tenant=%ff"]),
    )
    def one(
        route: tuple[str, str], names: list[str], body: bytes, key: str | None, kind: str, query: str
    ) -> None:
        method, template = route
        path = template
        for name in names:
            start = path.find("{")
            if start < 0:
                break
            path = path[:start] + name + path[path.index("}", start) + 1 :]
        path += query
        headers = {"Content-Type": kind}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        status = raw_request(fuzz_hub, method, path, body if method != "GET" else b"", headers)
        assert status and status != 500, (method, path, body[:200], key)

    one()


# --------------------------------------------------------------------------- the MCP facade


def test_mcp_facade_never_answers_500(fuzz_hub: ServedHub) -> None:
    @FUZZ
    @given(
        path=st.sampled_from(["/mcp", "/tenants/acme/mcp", "/tenants/beta/mcp", "/tenants/nope/mcp"]),
        method=st.sampled_from(["initialize", "tools/list", "tools/call", "resources/read", "ping", "x/y"])
        | TEXT,
        request_id=JSON,
        params=JSON,
        body=st.none() | BODIES,
        key=KEYS,
        version=st.sampled_from([None, "2025-11-25", "2026-07-28", "1999-01-01", "é"]),
        session=st.sampled_from([None, "nope", "0" * 64, "é"]),
    )
    def one(
        path: str,
        method: str,
        request_id: Any,
        params: Any,
        body: bytes | None,
        key: str | None,
        version: str | None,
        session: str | None,
    ) -> None:
        if body is None:
            body = encode({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        if version is not None:
            headers["MCP-Protocol-Version"] = version
        if session is not None:
            headers["Mcp-Session-Id"] = session
        status = raw_request(fuzz_hub, "POST", path, body, headers)
        assert status and status != 500, (path, body[:200], headers)

    one()


# --------------------------------------------------------------------------- the WebSocket gateway


def test_websocket_answers_are_strict_json(fuzz_hub: ServedHub) -> None:
    """Every frame the gateway sends back parses as strict JSON (no NaN, no Infinity), and a frame
    it cannot take is answered with an error frame, not a dropped connection."""
    url = fuzz_hub.url.replace("http://", "ws://") + f"/ws/app/hello/acme?token={ACME_KEY}"

    async def exchange(frames: list[bytes]) -> list[str]:
        request = tornado.httpclient.HTTPRequest(url)
        ws = await tornado.websocket.websocket_connect(request, max_message_size=64 * 1024 * 1024)
        answers = []
        try:
            for frame in frames:
                await ws.write_message(frame.decode("utf-8", "replace"))
                answer = await asyncio.wait_for(ws.read_message(), 30)
                assert answer is not None, f"the connection closed after {frame[:200]!r}"
                answers.append(answer)
        finally:
            await close(ws)  # and wait for the hub's close frame: no socket is left to the collector
        return answers

    def strict(text: str) -> Any:
        def refuse(constant: str) -> Any:
            raise ValueError(f"not JSON: {constant}")

        return json.loads(text, parse_constant=refuse)

    kinds = st.sampled_from(["ping", "tool_call", "app_ready", "nope", ""]) | TEXT
    frames = st.builds(
        lambda kind, frame_id, data: encode({"type": kind, "id": frame_id, "data": data}), kinds, JSON, JSON
    )

    @FUZZ
    @given(batch=st.lists(frames | ODD_BODIES.filter(bool), min_size=1, max_size=5))
    def one(batch: list[bytes]) -> None:
        for answer in asyncio.run(exchange(batch)):
            assert isinstance(strict(answer), dict), answer

    one()
