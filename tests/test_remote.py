"""Remote upstreams: Streamable HTTP and SSE servers the hub connects to (but does not own)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from conftest import MARK, TEST_SERVER, wait_until

from actors.models import ServerState
from hub.errors import UpstreamError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def remote_server() -> Iterator[Callable[[str, int], subprocess.Popen[bytes]]]:
    """Start the test server over HTTP or SSE on a port (an outside process the test owns)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(kind: str, port: int) -> subprocess.Popen[bytes]:
        env = {"PATH": "/usr/bin:/bin", "MCP_HUB_TEST_MARK": MARK}
        proc = subprocess.Popen(
            [sys.executable, TEST_SERVER, f"--{kind}", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        assert wait_until(lambda: listening(port), 15), f"{kind} server did not listen on {port}"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    ("kind", "path", "protocol"),
    [
        ("http", "/mcp", "auto"),
        ("http", "/mcp", "legacy"),
        ("sse", "/sse", "legacy"),
    ],
)
def test_remote_server_calls_and_reconnects_after_it_comes_back(
    make_hub, remote_server, kind, path, protocol
):
    port = free_port()
    server = remote_server(kind, port)
    hub = make_hub(
        {
            "t": {
                "servers": {
                    "remote": {
                        "transport": kind,
                        "url": f"http://127.0.0.1:{port}{path}",
                        "protocol": protocol,
                        "headers": {"X-Api-Key": "secret-header-value"},
                    }
                }
            }
        },
        orchestrator={"max_retries": 50, "backoff_initial": 0.2, "backoff_max": 0.5},
    )
    assert hub.start_tenant("t") == {"remote": "running"}
    status = hub.server("t", "remote")
    assert status.pid is None and status.transport == kind
    text = "over " + kind
    assert hub.call_tool("t", "remote.echo", {"text": text}).structured_content == {"text": text}
    # The remote server dies: calls fail with an upstream error and the hub keeps retrying.
    server.kill()
    server.wait()
    with pytest.raises(UpstreamError):
        hub.call_tool("t", "remote.echo", {"text": "x"})
    assert hub.board.wait_for(lambda: hub.board.status("t", "remote").state is not ServerState.RUNNING, 30)
    remote_server(kind, port)
    assert hub.board.wait_for(lambda: hub.board.status("t", "remote").state is ServerState.RUNNING, 30)
    assert hub.call_tool("t", "remote.echo", {"text": "back"}).structured_content == {"text": "back"}
    assert hub.server("t", "remote").restarts >= 1


def test_unreachable_remote_server_fails_with_a_clear_error(make_hub):
    port = free_port()
    hub = make_hub(
        {"t": {"servers": {"gone": {"transport": "http", "url": f"http://127.0.0.1:{port}/mcp"}}}},
        orchestrator={"max_retries": 1},
    )
    assert hub.start_tenant("t") == {"gone": "failed"}
    assert "failed to start" in hub.server("t", "gone").last_error
