"""The web edge against hostile clients (issue 18, items 2, 3, 5, 6), on a real listening hub:
DNS rebinding (`Host`, `Origin`), idle, slow and too many connections, abandoned MCP sessions,
and keys in the log."""

from __future__ import annotations

import json
import logging
import re
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import initialize_request, wait_until
from helpers.served import ServedHub, start_hub, stop_hub, write_config

ADMIN = "admin-key-edge-0123456789"
ACME = "acme-key-edge-abcdefghij"
BETA = "beta-key-edge-klmnopqrst"
EVIL = "rebind.attacker.example"


@pytest.fixture
def hubs(tmp_path: Path) -> Iterator[Any]:
    """Start hubs with `start(tenants, **sections)`; each must stop cleanly (exit 0)."""
    started: list[ServedHub] = []

    def start(tenants: dict[str, Any], *extra: str, **sections: Any) -> ServedHub:
        served = start_hub(write_config(tmp_path, tenants, **sections), tmp_path, *extra)
        started.append(served)
        return served

    yield start
    for served in started:
        assert stop_hub(served) == 0, served.log()[-3000:]


def address(hub: ServedHub) -> tuple[str, int]:
    host, port = hub.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def raw(hub: ServedHub, request: bytes, timeout: float = 30) -> bytes:
    """Send `request` on a new connection; everything the hub answers until it closes (or, for a
    response with a Content-Length, until the body is complete)."""
    with socket.create_connection(address(hub), timeout=timeout) as conn:
        conn.sendall(request)
        return read_response(conn)


def read_response(conn: socket.socket) -> bytes:
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        complete = length is not None and len(body) >= int(length.group(1))
        if sep and (complete or head.startswith(b"HTTP/1.1 101")):
            return data
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk


def status_of(answer: bytes) -> int:
    match = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    assert match, answer[:200]
    return int(match.group(1))


def http(
    method: str, path: str, host: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


def upgrade(path: str, host: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in {**UPGRADE, **(headers or {})}.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


MCP_HEADERS = {"Accept": "application/json, text/event-stream"}
INITIALIZE = json.dumps(initialize_request()).encode()


# --------------------------------------------------------------------------- item 2: DNS rebinding


def test_an_open_hub_answers_only_its_own_names_and_origins(hubs, tmp_path: Path) -> None:
    hub = hubs({"default": {}})
    _, port = address(hub)
    evil = f"{EVIL}:{port}"
    rebound = {"Origin": f"http://{evil}"}
    # Host = Origin = the attacker's name: refused on every route, before any handler runs.
    for request in (
        http("GET", "/api/servers", evil, rebound),
        http("POST", "/api/tools/x.y", evil, rebound, b"{}"),
        http("POST", "/api/tenants/default/start", evil, rebound),
        http("GET", "/health", evil),
        http("GET", "/admin", evil),
        http("GET", "/admin/admin.js", evil),
        http("GET", "/ui-host/host.js", evil),
        http("GET", "/nowhere", evil),
        http("POST", "/mcp", evil, {**rebound, **MCP_HEADERS}, INITIALIZE),
        upgrade("/ws/admin", evil, rebound),
        upgrade("/ws/app/any/default", evil, rebound),
    ):
        answer = raw(hub, request)
        assert status_of(answer) == 421, answer[:300]
        assert b'"host_not_allowed"' in answer
    # Exact names: not a prefix, not a suffix.
    near = (f"localhost:{port}.evil.example", f"localhost.evil.example:{port}", f"127.0.0.1.nip.io:{port}")
    for host in near:
        assert status_of(raw(hub, http("GET", "/api/servers", host))) == 421, host
    # Loopback names with the port, or none, and the bound address, are the hub's own.
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost", f"LOCALHOST:{port}"):
        assert status_of(raw(hub, http("GET", "/api/servers", host))) == 200, host
    # Origin: the hub's own (scheme and the Host it was sent to) or an allowed one, exactly.
    own = f"127.0.0.1:{port}"
    assert status_of(raw(hub, http("GET", "/api/servers", own, {"Origin": f"http://{own}"}))) == 200
    for origin in (f"http://localhost:{port}.evil.example", f"http://{evil}", "null", f"http://{own}.evil"):
        answer = raw(hub, http("POST", "/mcp", own, {"Origin": origin, **MCP_HEADERS}, INITIALIZE))
        assert status_of(answer) == 403 and b'"origin_not_allowed"' in answer, (origin, answer[:200])
        assert status_of(raw(hub, http("POST", "/api/tenants/default/start", own, {"Origin": origin}))) == 403
        assert status_of(raw(hub, upgrade("/ws/admin", own, {"Origin": origin}))) == 403
    # The hub's own origin opens the admin socket; no Origin (not a browser) too.
    assert status_of(raw(hub, upgrade("/ws/admin", own, {"Origin": f"http://{own}"}))) == 101
    assert status_of(raw(hub, upgrade("/ws/admin", f"localhost:{port}"))) == 101


def test_a_keyed_hub_behind_a_proxy_answers_the_names_it_is_given(hubs) -> None:
    hub = hubs(
        {"default": {"api_keys": [ACME]}},
        auth={"admin_keys": [ADMIN]},
        gateway={
            "allowed_hosts": ["hub.example.com", "alias.example.com:8443"],
            "allowed_origins": ["https://hub.example.com", "http://localhost:*"],
        },
    )
    key = {"Authorization": f"Bearer {ADMIN}"}
    public = {**key, "Origin": "https://hub.example.com"}
    assert status_of(raw(hub, http("GET", "/api/servers", "hub.example.com", public))) == 200
    assert status_of(raw(hub, http("GET", "/api/servers", "hub.example.com:443", key))) == 200
    assert status_of(raw(hub, http("GET", "/api/servers", "alias.example.com:8443", key))) == 200
    assert status_of(raw(hub, http("GET", "/api/servers", "alias.example.com:80", key))) == 421
    assert status_of(raw(hub, http("GET", "/api/servers", EVIL, key))) == 421
    other = {**key, "Origin": "https://other.example"}
    assert status_of(raw(hub, http("GET", "/api/servers", "hub.example.com", other))) == 403
    # `http://localhost:*`: any port of that host, and nothing that merely starts with it.
    dev = {**key, "Origin": "http://localhost:5173"}
    assert status_of(raw(hub, http("GET", "/api/servers", "hub.example.com", dev))) == 200
    near = {**key, "Origin": "http://localhost.evil.example:5173"}
    assert status_of(raw(hub, http("GET", "/api/servers", "hub.example.com", near))) == 403


# --------------------------------------------------------------------------- item 3: connections


def test_idle_and_slow_connections_are_closed(hubs) -> None:
    hub = hubs({"default": {}}, gateway={"idle_connection_timeout": 1, "body_timeout": 1})
    _, port = address(hub)
    started = time.monotonic()
    idle = socket.create_connection(address(hub), timeout=15)
    slow_headers = socket.create_connection(address(hub), timeout=15)
    slow_headers.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    slow_body = socket.create_connection(address(hub), timeout=15)
    head = f"POST /api/tools/x.y HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 100\r\n\r\n"
    slow_body.sendall(head.encode() + b'{"a": ')
    kept_alive = socket.create_connection(address(hub), timeout=15)
    kept_alive.sendall(http("GET", "/health", f"127.0.0.1:{port}").replace(b"Connection: close", b"X: y"))
    assert status_of(read_response(kept_alive)) == 200
    for conn in (idle, slow_headers, slow_body, kept_alive):
        with conn:
            assert conn.recv(65536) == b""  # the hub closed it (a timeout of 15 s would raise)
    assert time.monotonic() - started < 10


def test_connections_past_the_per_client_limit_close_idle_ones_or_get_503(hubs) -> None:
    hub = hubs({"default": {}}, gateway={"max_connections_per_client": 4})
    _, port = address(hub)
    idle = [socket.create_connection(address(hub), timeout=15) for _ in range(4)]
    # A fifth connection gets served: the oldest idle one makes room.
    assert status_of(raw(hub, http("GET", "/health", f"127.0.0.1:{port}"))) == 200
    assert idle[0].recv(1) == b""
    for conn in idle:
        conn.close()
    # Four busy connections (WebSockets): a fifth gets a 503 at once, without being read.
    sockets = []
    for _ in range(4):
        sockets.append(conn := socket.create_connection(address(hub), timeout=15))
        conn.sendall(upgrade("/ws/admin", f"127.0.0.1:{port}"))
        assert status_of(read_response(conn)) == 101
    refused = raw(hub, b"")
    assert status_of(refused) == 503 and b'"too_many_connections"' in refused
    for conn in sockets:
        conn.close()
    # Closed WebSockets make room again.
    assert wait_until(lambda: status_of(raw(hub, http("GET", "/health", f"127.0.0.1:{port}"))) == 200, 10)
    assert "connections refused at the limit: 1 in the last 60s" in hub.log()


def start_limited_hub(config: Path, tmp_path: Path, open_files: int) -> ServedHub:
    """A hub whose open-files limit (soft and hard) is `open_files`, as `ulimit -n` sets it."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    stderr_path = tmp_path / "hub.stderr"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "serve", "--config", str(config), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=tmp_path,
            preexec_fn=limit,
        )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    match = re.search(r"listening on (http://\S+)", line)
    assert match, f"no listening line: {line!r}; stderr: {stderr_path.read_text()}"
    return ServedHub(proc, match.group(1), stderr_path)


def test_more_idle_connections_than_file_descriptors_lock_nobody_out(tmp_path: Path) -> None:
    """`ulimit -n 256` and 400 idle connections: /health still answers, and the log says so in a
    line or two, not one traceback per accept."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1024:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    hub = start_limited_hub(write_config(tmp_path, {"default": {}}), tmp_path, 256)
    idle: list[socket.socket] = []
    try:
        for _ in range(400):
            conn = socket.socket()
            conn.settimeout(15)
            conn.connect(address(hub))
            idle.append(conn)
        started = time.monotonic()
        answer = raw(hub, http("GET", "/health", hub.url.removeprefix("http://")), timeout=15)
        assert status_of(answer) == 200 and time.monotonic() - started < 5
    finally:
        for conn in idle:
            conn.close()
        assert stop_hub(hub) == 0
    log = hub.log()
    assert "Traceback" not in log and log.count("Too many open files") <= 2, log[-3000:]


# --------------------------------------------------------------------------- item 5: MCP sessions


def initialize(hub: ServedHub, key: str | None = None) -> tuple[int, Any, str | None]:
    """POST an `initialize` to /mcp: status, JSON body, session id."""
    _, port = address(hub)
    headers = {**MCP_HEADERS, **({"Authorization": f"Bearer {key}"} if key else {})}
    answer = raw(hub, http("POST", "/mcp", f"127.0.0.1:{port}", headers, INITIALIZE))
    head, _, body = answer.partition(b"\r\n\r\n")
    session = re.search(rb"(?i)\r\nmcp-session-id: *(\S+)", head)
    text = body.decode()
    data = json.loads(text[text.index("{") :]) if "{" in text else None
    return status_of(answer), data, session.group(1).decode() if session else None


def mcp_request(hub: ServedHub, session: str, message: dict[str, Any], key: str | None = None) -> int:
    _, port = address(hub)
    headers = {**MCP_HEADERS, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    body = json.dumps(message).encode()
    return status_of(raw(hub, http("POST", "/mcp", f"127.0.0.1:{port}", headers, body)))


def test_mcp_sessions_are_capped_per_key_and_unused_ones_expire(hubs) -> None:
    hub = hubs({"default": {}}, gateway={"mcp_max_sessions_per_key": 3, "mcp_unused_session_timeout": 1})
    sessions = []
    for _ in range(3):
        status, _, session = initialize(hub)
        assert status == 200 and session
        sessions.append(session)
    # One is used: it lives on. The notice `initialized` alone does not make a session used.
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    for session in sessions:
        assert mcp_request(hub, session, initialized) == 202
    assert mcp_request(hub, sessions[0], {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}) == 200
    status, body, session = initialize(hub)
    assert status == 429 and session is None
    assert body["jsonrpc"] == "2.0" and body["id"] == 1
    assert "mcp_max_sessions_per_key" in body["error"]["message"]
    # The two unused ones expire within about a second: two new sessions fit, a third does not.
    assert wait_until(lambda: initialize(hub)[0] == 200, 10)
    assert initialize(hub)[0] == 200
    assert initialize(hub)[0] == 429
    assert mcp_request(hub, sessions[0], {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}) == 200
    assert mcp_request(hub, sessions[1], {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}) == 404


def test_mcp_sessions_are_capped_per_tenant(hubs) -> None:
    hub = hubs(
        {"default": {"api_keys": [ACME, BETA]}},
        gateway={"mcp_max_sessions_per_key": 2, "mcp_max_sessions_per_tenant": 3},
    )
    assert [initialize(hub, ACME)[0] for _ in range(3)] == [200, 200, 429]
    assert [initialize(hub, BETA)[0] for _ in range(2)] == [200, 429]
    status, body, _ = initialize(hub, BETA)
    assert status == 429 and "mcp_max_sessions_per_tenant" in body["error"]["message"]


# --------------------------------------------------------------------------- item 6: keys in the log


def test_no_key_reaches_the_log(hubs, tmp_path: Path) -> None:
    app = tmp_path / "plugins" / "hello"
    app.mkdir(parents=True)
    (app / "manifest.json").write_text(json.dumps({"id": "hello", "name": "Hello", "version": "1.0.0"}))
    (app / "index.html").write_text("<html><head></head><body>hi</body></html>")
    hub = hubs(
        {"default": {"api_keys": [ACME]}},
        "--log-level",
        "DEBUG",
        auth={"admin_keys": [ADMIN]},
        gateway={"plugins_dir": str(tmp_path / "plugins")},
    )
    _, port = address(hub)
    own = f"127.0.0.1:{port}"
    # Tornado's "Malformed HTTP message" line quotes a header with a control character.
    for value in (f"Bearer {ADMIN}\x01", f"{ACME}\x7f", f"Basic {ADMIN}\x00"):
        raw(hub, http("GET", "/api/servers", own, {"Authorization": value}))
    # A WebSocket opened with ?token=, then a frame that fails where nothing catches it.
    conn = socket.create_connection(address(hub), timeout=30)
    conn.sendall(upgrade(f"/ws/app/hello/default?token={ACME}", own))
    assert status_of(read_response(conn)) == 101
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    conn.sendall(bytes([0x81, 0xFF]) + len(deep).to_bytes(8, "big") + b"\0\0\0\0" + deep)
    conn.sendall(bytes([0x81, 0x80]) + b"\0\0\0\0")  # an empty frame: answered after the first
    conn.recv(65536)
    conn.close()
    # Keys in the query of ordinary requests, wrong keys too.
    raw(hub, http("GET", f"/admin?token={ADMIN}", own))
    raw(hub, http("GET", f"/apps/hello/?token={ACME}&tenant=nope", own))
    raw(hub, http("GET", "/api/servers?token=not-a-key-but-secret", own))
    assert stop_hub(hub) == 0
    log = hub.log()
    assert "GET /ws/app" in log  # the log did record those requests
    for secret in (ADMIN, ACME, "not-a-key-but-secret"):
        assert secret not in log, log[max(0, log.find(secret) - 500) : log.find(secret) + 200]


def test_the_log_filter_masks_keys_in_any_loggers_lines(capfd) -> None:
    from hub.log import hide_keys, setup_logging

    keys = (ADMIN, "k+y/with=odd&chars")
    hide_keys(lambda: keys)
    try:
        setup_logging("DEBUG")
        try:
            raise RuntimeError(f"failed with {ADMIN} inside")
        except RuntimeError:
            logging.getLogger("tornado.application").exception(
                "Uncaught exception GET /ws/app/a/b?token=%s (127.0.0.1)", "k%2By%2Fwith%3Dodd%26chars"
            )
        logging.getLogger("tornado.general").info(
            "Malformed HTTP message from %s: %s", "127.0.0.1", "Invalid header value 'Bearer xyz\\x01'"
        )
        logging.getLogger("mcp.server").warning("headers: %r", {"Authorization": "Token abc123"})
    finally:
        hide_keys(tuple)
        logging.getLogger().handlers.clear()
    err = capfd.readouterr().err
    assert "Uncaught exception GET /ws/app/a/b?token=******** (127.0.0.1)" in err
    assert "failed with ******** inside" in err and "Bearer ********" in err
    assert "'Authorization': '********'" in err
    for secret in (ADMIN, "k%2By", "xyz", "abc123"):
        assert secret not in err
