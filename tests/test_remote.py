"""Remote upstreams: Streamable HTTP and SSE servers the hub connects to (but does not own)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import MARK, TEST_SERVER, wait_until
from helpers.remote import free_port, listening

from actors.models import ServerState
from hub import loops
from hub.errors import UpstreamError


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


@pytest.mark.parametrize("serving", [True, False])
def test_a_tool_call_to_an_http_server_runs_on_a_serving_loop_itself(make_hub, remote_server, serving):
    """On a loop that serves clients (`hub.loops.serve_calls_here`: the web loop, the stdio
    facade's) a tool call to a Streamable HTTP server runs there, without the hop to the server's
    loop: the call's progress reaches its requester on the caller's own thread. On any other loop
    (a program's own, which may end before the hub does) it takes the server's loop, as before."""
    port = free_port()
    remote_server("http", port)
    hub = make_hub(
        {"t": {"servers": {"remote": {"transport": "http", "url": f"http://127.0.0.1:{port}/mcp"}}}}
    )
    assert hub.start_tenant("t") == {"remote": "running"}
    threads: list[str] = []

    class Requester:
        async def progress(self, value: float, total: float | None, message: str | None) -> None:
            threads.append(threading.current_thread().name)

        async def ask(self, request: Any, result_type: type[Any]) -> Any:
            raise AssertionError("the tool asks nothing")

        async def log(self, params: Any) -> None:
            pass

    async def call() -> Any:
        if serving:
            loops.serve_calls_here()
        try:
            return await hub.call_tool_async("t", "remote.sleep", {"seconds": 0.2}, Requester())
        finally:  # (a serving loop outlives the hub: its connections close on it)
            await asyncio.get_running_loop().run_in_executor(None, hub.stop)

    assert asyncio.run(call()).content[0]["text"] == "slept"
    assert threads, "no progress reached the requester"
    expected = threading.current_thread().name if serving else "server-t-remote"
    assert set(threads) == {expected}, threads
