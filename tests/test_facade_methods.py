"""Every MCP method the servers support, through both facades (issue 20, item 2): completions
routed by their `ref`, resource subscriptions (one upstream subscription per server and URI,
fanned out, released with the sessions), and `logging/setLevel` per session, with a real
third-party server (`@modelcontextprotocol/server-everything`) behind the hub."""

from __future__ import annotations

from typing import Any

import anyio
import mcp.types as types
import pytest
from conftest import server
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


def extras(**settings: Any) -> dict[str, Any]:
    """The test server with what the hub relays beyond calls (`--extras`), over the handshake era,
    where a server may log on its own and subscriptions are `resources/subscribe`."""
    return server("--extras", protocol="legacy", **settings)


async def text_of(client: Any, tool: str, arguments: dict[str, Any] | None = None) -> str:
    result = await client.call_tool(tool, arguments or {})
    return result.content[0].text


async def until_tool_says(client: Any, tool: str, expected: str, seconds: float = 10) -> None:
    """Call `tool` until it answers `expected` (what the hub does after a session ends runs on its
    own: this waits for its effect on the server, call by call, with no sleep)."""
    with anyio.fail_after(seconds):
        while await text_of(client, tool) != expected:
            continue


async def test_two_sessions_with_different_log_levels_each_get_only_theirs(served) -> None:
    hub = served({"t": {"servers": {"s": extras()}}})
    url = hub.url + "/tenants/t/mcp"
    chatty, terse = Heard(), Heard()
    async with (
        http_facade(url, "legacy", logging_callback=chatty.on_log) as a,
        http_facade(url, "legacy", logging_callback=terse.on_log) as b,
    ):
        await a.set_logging_level("debug")
        await b.set_logging_level("error")
        assert await text_of(a, "s__level") == "debug"  # the lowest any session asked for
        # Each message is awaited before the next call: a stdio server's message that comes while a
        # call is in flight is taken as that call's (stdio does not say), and is not aggregated.
        await text_of(a, "s__log_later", {"level": "info", "message": "for debug only", "delay": 0.1})
        await chatty.until(lambda: len(chatty.logs) >= 1)
        await text_of(a, "s__log_later", {"level": "error", "message": "for both", "delay": 0.1})
        await chatty.until(lambda: len(chatty.logs) >= 2)
        await terse.until(lambda: len(terse.logs) >= 1)
        assert [(m.level, m.data) for m in chatty.logs] == [("info", "for debug only"), ("error", "for both")]
        assert [(m.level, m.data) for m in terse.logs] == [("error", "for both")]
        assert {m.logger for m in chatty.logs} == {"s/testserver"}  # aggregated: <server>/<logger>
    async with http_facade(url, "legacy") as c:  # both ended: nobody asks for a level any more
        await c.set_logging_level("warning")
        await until_tool_says(c, "s__level", "warning")


async def test_a_subscription_of_two_sessions_is_one_upstream_and_ends_with_both(served) -> None:
    hub = served({"t": {"servers": {"s": extras()}}})
    url, uri = hub.url + "/tenants/t/mcp", "mcp-hub://s/test://counter"
    first, second = Heard(), Heard()
    async with http_facade(url, "legacy") as observer:
        async with (
            http_facade(url, "legacy", message_handler=first.on_message) as a,
            http_facade(url, "legacy", message_handler=second.on_message) as b,
        ):
            await a.subscribe_resource(uri)
            await b.subscribe_resource(uri)
            assert await text_of(observer, "s__subscribed") == '["test://counter"]'
            await text_of(observer, "s__bump")
            await first.until(lambda: uri in first.updated())
            await second.until(lambda: uri in second.updated())
            assert first.updated() == [uri] and second.updated() == [uri]  # one upstream update each
            await a.unsubscribe_resource(uri)  # b still holds it: the server's subscription stays
            assert await text_of(observer, "s__subscribed") == '["test://counter"]'
        await until_tool_says(observer, "s__subscribed", "[]")  # both sessions ended: released
