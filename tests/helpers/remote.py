"""Remote MCP servers as real outside processes (Streamable HTTP on a port of their own), a hub
served in front of them, and what a client of the hub's facade notes of a call."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
from conftest import SERVERS_DIR, TEST_SERVER, node_package, wait_until
from mcp import MCPError

BAD_HTTP = str(SERVERS_DIR / "badhttp.py")
CONFORMANCE = str(SERVERS_DIR / "conformanceserver.py")


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports of 127.0.0.1 that nothing listens on (now): all bound at once, so
    the kernel cannot hand out one of them twice (as separate `free_port` calls may)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def sdk_server_http(port: int, *flags: str) -> list[str]:
    """The SDK test server (tests/servers/testserver.py) over Streamable HTTP on `port`."""
    return [sys.executable, TEST_SERVER, "--http", str(port), *flags]


def conformance_http(port: int) -> list[str]:
    """The conformance server (tests/servers/conformanceserver.py: 2026-07-28 input rounds) on `port`."""
    return [sys.executable, CONFORMANCE, "--http", str(port)]


def everything_http(port: int) -> list[str]:
    """server-everything in its Streamable HTTP mode (it takes its port from $PORT)."""
    entry = node_package("@modelcontextprotocol/server-everything", "dist", "index.js")
    return ["env", f"PORT={port}", "node", str(entry), "streamableHttp"]


@contextlib.contextmanager
def remote_servers(folder: Path, commands: dict[str, tuple[list[str], int]]) -> Iterator[dict[str, str]]:
    """Run each `name: (command, port)` as an outside process (no test mark: the hub does not own
    it), its output in `folder/<name>.log`; yields each one's URL once all listen; kills them after."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, (command, _) in commands.items():
            with (folder / f"{name}.log").open("wb") as out:
                env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
                procs.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT))
        for (name, (_, port)), proc in zip(commands.items(), procs, strict=True):
            assert wait_until(lambda: listening(port), 20), f"{name} did not listen on {port}"  # noqa: B023
            # (one that could not bind its port exits, while another process may listen there)
            assert proc.poll() is None, f"{name} exited: {(folder / f'{name}.log').read_text()[-2000:]}"
        yield {name: f"http://127.0.0.1:{port}/mcp" for name, (_, port) in commands.items()}
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def hub_in_front(folder: Path, servers: dict[str, Any]) -> Iterator[Any]:
    """`python -m hub serve` with a tenant `t` of `servers`, started, every server running; stopped
    cleanly (exit 0) after."""
    from helpers.served import start_hub, stop_hub, write_config

    served = start_hub(write_config(folder, {"t": {"servers": servers}}), folder)
    try:
        started = served.post("/api/tenants/t/start")
        assert started.status == 200, started.text
        assert started.body["servers"] == dict.fromkeys(servers, "running"), started.body
        yield served
    finally:
        assert stop_hub(served) == 0, served.log()[-3000:]


def http_upstream(url: str, protocol: str = "auto", **settings: Any) -> dict[str, Any]:
    """A hub server entry for a Streamable HTTP upstream at `url`."""
    return {"transport": "http", "url": url, "protocol": protocol, **settings}


class Seen:
    """What a client of the hub saw during calls, in the order it saw it: progress, log messages,
    the servers' sampling and elicitation requests (which it answers), then each call's outcome."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self._noted = anyio.Event()

    def note(self, event: str) -> None:
        self.events.append(event)
        self._noted.set()

    async def until(self, predicate: Callable[[list[str]], bool]) -> None:
        """Wait until `predicate` holds of the events (the caller sets a deadline)."""
        while not predicate(self.events):
            self._noted = anyio.Event()
            await self._noted.wait()

    async def on_progress(self, value: float, total: float | None, message: str | None) -> None:
        self.note(f"progress {value:g}")

    async def on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        self.note(f"log {params.data}")

    async def sampling(self, context: Any, params: types.CreateMessageRequestParams) -> Any:
        content = params.messages[-1].content
        text = content.text if isinstance(content, types.TextContent) else str(content)
        self.note(f"sampling {text}")
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(text=f"an answer to {text}"), model="m"
        )

    async def elicitation(self, context: Any, params: Any) -> types.ElicitResult:
        self.note(f"elicitation {params.message}")
        properties = params.requested_schema.get("properties", {})
        content: dict[str, Any] = {k: "Ada" for k, v in properties.items() if v.get("type") == "string"}
        return types.ElicitResult(action="accept", content=content)

    def callbacks(self) -> dict[str, Any]:
        """`mcp.Client` arguments: sampling, elicitation and log callbacks, at level debug."""
        return {
            "sampling_callback": self.sampling,
            "elicitation_callback": self.elicitation,
            "logging_callback": self.on_log,
            "log_level": "debug",
        }


async def failure(
    client: Any, tool: str, arguments: dict[str, Any] | None = None, **more: Any
) -> tuple[str, float]:
    """Call `tool` (`more`: further `call_tool` arguments), which must fail (a JSON-RPC error or an
    `is_error` result): its message and how long the caller waited for it."""
    start = time.monotonic()
    try:
        result = await client.call_tool(tool, arguments or {}, **more)
    except MCPError as exc:
        return exc.error.message, time.monotonic() - start
    elapsed = time.monotonic() - start
    assert result.is_error, f"{tool} succeeded: {result}"
    return " ".join(getattr(block, "text", "") for block in result.content), elapsed


def all_running(hub: Any, tenant: str, timeout: float = 20) -> bool:
    """Wait (with a deadline) until the served `hub` lists every server of `tenant` as running."""

    def running() -> bool:
        answer = hub.get(f"/api/servers?tenant={tenant}")
        return answer.status == 200 and all(s["state"] == "running" for s in answer.body["servers"])

    return wait_until(running, timeout)
