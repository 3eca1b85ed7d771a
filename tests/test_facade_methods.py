"""Every MCP method the servers support, through both facades (issue 20, item 2): completions
routed by their `ref`, resource subscriptions (one upstream subscription per server and URI,
fanned out, released with the sessions), and `logging/setLevel` per session, with a real
third-party server (`@modelcontextprotocol/server-everything`) behind the hub."""

from __future__ import annotations

from typing import Any

import anyio
import mcp.types as types
import pytest
from helpers.facade import everything_server, http_facade

pytestmark = [
    pytest.mark.anyio,
    # (the SDK warns that 2026-07-28 has no resources/subscribe or logging/setLevel: 2025-11-25 does)
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]

DOCUMENT = "demo://resource/static/document/architecture.md"  # one of server-everything's resources


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Heard:
    """What a client was sent outside its requests' answers, with a way to wait for it."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.logs: list[types.LoggingMessageNotificationParams] = []
        self.changed = anyio.Event()

    async def on_message(self, message: Any) -> None:
        self.messages.append(message)
        self._wake()

    async def on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        self.logs.append(params)
        self._wake()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    def updated(self) -> list[str]:
        return [str(m.params.uri) for m in self.messages if isinstance(m, types.ResourceUpdatedNotification)]

    async def until(self, condition: Any, seconds: float = 15) -> None:
        with anyio.fail_after(seconds):
            while not condition():
                await self.changed.wait()


@pytest.mark.parametrize(
    ("path", "prompt", "resource"),
    [
        ("/mcp", "everything__completable-prompt", f"mcp-hub://everything/{DOCUMENT}"),
        ("/tenants/default/servers/everything/mcp", "completable-prompt", DOCUMENT),
    ],
)
async def test_completions_and_subscriptions_of_server_everything(
    served, path: str, prompt: str, resource: str
):
    hub = served({"default": {"servers": {"everything": everything_server()}}})
    heard = Heard()
    async with http_facade(hub.url + path, "legacy", message_handler=heard.on_message) as client:
        ref = types.PromptReference(name=prompt)
        completion = await client.complete(ref, {"name": "department", "value": "En"})
        assert completion.completion.values == ["Engineering"]
        context = {"department": "Sales"}
        completion = await client.complete(ref, {"name": "name", "value": ""}, context_arguments=context)
        assert completion.completion.values == ["David", "Eve", "Frank"]
        await client.subscribe_resource(resource)
        await client.call_tool(
            "everything__toggle-subscriber-updates" if path == "/mcp" else "toggle-subscriber-updates", {}
        )
        await heard.until(lambda: resource in heard.updated())
        assert set(heard.updated()) == {resource}  # under the URI this client was shown


async def test_log_messages_of_no_call_reach_the_sessions_that_asked_for_them(served) -> None:
    """server-everything logs on its own every 5 s once toggled: a session at `debug` gets them,
    under its server's name; one that never set a level does not."""
    hub = served({"default": {"servers": {"everything": everything_server()}}})
    listening, silent = Heard(), Heard()
    async with (
        http_facade(hub.url + "/mcp", "legacy", logging_callback=listening.on_log) as client,
        http_facade(hub.url + "/mcp", "legacy", logging_callback=silent.on_log) as other,
    ):
        await client.set_logging_level("debug")
        await other.list_tools()
        await client.call_tool("everything__toggle-simulated-logging", {})
        during = len(listening.logs)
        await listening.until(lambda: len(listening.logs) > during)
        assert all(log.logger and log.logger.startswith("everything") for log in listening.logs[during:])
        assert silent.logs == []
