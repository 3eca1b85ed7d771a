"""The calling side of a cluster's internal channel (`hub.cluster_link`) against a scripted replica
in this process: what comes before an answer is relayed in order, a caller that gives up cancels
the request there, a channel that breaks fails its requests at once, errors keep their class."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import mcp.types as types
import pytest
import tornado.httpserver
import tornado.web
import tornado.websocket

from hub.cluster_link import Links, ReplicaLost
from hub.config_secrets import Secret
from hub.errors import NotRunning

pytestmark = pytest.mark.anyio
ECHO = {"tool": "s.echo", "is_error": False, "content": [{"type": "text", "text": "hi"}]}
ECHO["structured_content"] = None


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class ScriptedReplica(tornado.websocket.WebSocketHandler):
    """Answers each request as its tool's name says; keeps every message it got."""

    got: list[dict[str, Any]]
    opened: list[ScriptedReplica]

    def open(self, *args: str) -> None:
        self.opened.append(self)

    def on_message(self, raw: str | bytes) -> None:
        message = json.loads(raw)
        self.got.append(message)
        call_id, name = message["id"], message.get("name")
        if name == "chatty":
            self.write_message(json.dumps({"id": call_id, "progress": [1, 2, "half"]}))
            log = {"level": "info", "data": "midway"}
            self.write_message(json.dumps({"id": call_id, "log": log}))
            self.write_message(json.dumps({"id": call_id, "progress": [2, 2, None]}))
            self.write_message(json.dumps({"id": call_id, "result": ECHO}))
        elif name == "moved":
            error = {"code": "server_not_running", "message": "it moved"}
            self.write_message(json.dumps({"id": call_id, "error": error}))
        elif name == "echo":
            self.write_message(json.dumps({"id": call_id, "result": ECHO}))


class Seen:
    """A requester that notes what it is given."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    async def progress(self, value: float, total: float | None, message: str | None) -> None:
        await asyncio.sleep(0.01)  # (slower than the answer: it must still come first)
        self.seen.append(("progress", value))

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        self.seen.append(("log", params.data))

    async def ask(self, request: Any, result_type: type[Any]) -> Any:
        raise AssertionError("not asked here")


@pytest.fixture
async def replica() -> AsyncIterator[tuple[Links, ScriptedReplica]]:
    got: list[dict[str, Any]] = []
    opened: list[ScriptedReplica] = []
    handler = type("Handler", (ScriptedReplica,), {"got": got, "opened": opened})
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/cluster/link", handler)]))
    server.add_socket(listener)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    node = SimpleNamespace(replica_id="r1", view=lambda: SimpleNamespace(urls={"r2": url}))
    links = Links(node, Secret("s" * 32))  # type: ignore[arg-type]
    links.start()
    try:
        first = links.endpoint("r2", "t", "s").call_tool("echo", {})
        assert (await asyncio.wrap_future(first)).content[0]["text"] == "hi"
        yield links, opened[0]
    finally:
        links.stop()
        server.stop()


async def test_progress_and_logs_come_in_order_before_the_answer(replica: tuple[Links, Any]) -> None:
    links, owner = replica
    seen = Seen()
    result = await asyncio.wrap_future(links.endpoint("r2", "t", "s").call_tool("chatty", {}, seen))
    assert result.tool == "s.echo" and seen.seen == [("progress", 1), ("log", "midway"), ("progress", 2)]
    # A call no client waits on runs on the replica as a local one would (nothing relayed back).
    assert [m.get("relay") for m in owner.got] == [False, None], owner.got


async def test_a_caller_that_gives_up_cancels_the_request_on_the_replica(replica: tuple[Links, Any]) -> None:
    links, owner = replica
    future = asyncio.wrap_future(links.endpoint("r2", "t", "s").call_tool("slow", {}))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(future, 0.2)
    sent = next(m["id"] for m in owner.got if m.get("name") == "slow")
    async with asyncio.timeout(5):
        while {"id": sent, "cancel": True} not in owner.got:
            await asyncio.sleep(0.01)


async def test_errors_keep_their_class_and_a_broken_channel_fails_requests_at_once(
    replica: tuple[Links, Any],
) -> None:
    links, owner = replica
    endpoint = links.endpoint("r2", "t", "s")
    with pytest.raises(NotRunning, match="it moved"):
        await asyncio.wrap_future(endpoint.call_tool("moved", {}))
    future = asyncio.wrap_future(endpoint.call_tool("slow", {}))
    await asyncio.sleep(0.1)
    owner.close()
    async with asyncio.timeout(5):
        with pytest.raises(ReplicaLost, match="went away mid-request"):
            await future
