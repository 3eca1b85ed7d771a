"""Sampling and elicitation for 2026-07-28 clients through the facade (`web.mcp_input`): a server's
request mid-call parks the call and reaches the client as an `InputRequiredResult`; the client's
retry answers it. Real hubs (HTTP and stdio), real servers, real `mcp.Client`s."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import mcp.types as types
import pytest
from conftest import server
from helpers.facade import everything_server, facade, http_facade, write_config
from mcp import MCPError

pytestmark = pytest.mark.anyio

ASKING = server("--asks", "--legacy-only")  # a legacy server: it asks mid-call, the old way
TRANSPORTS = ["http", "stdio"]
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {"sampling": {}, "elicitation": {}},
    "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Answers:
    """A client's sampling and elicitation callbacks, which note what they were asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def sampling(self, context: Any, params: types.CreateMessageRequestParams) -> Any:
        text = params.messages[0].content.text  # type: ignore[union-attr]
        self.asked.append(f"sampling: {text}")
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(text=f"an answer to {text}"), model="m"
        )

    async def elicitation(self, context: Any, params: Any) -> types.ElicitResult:
        self.asked.append(f"elicitation: {params.message}")
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    def callbacks(self) -> dict[str, Any]:
        return {"sampling_callback": self.sampling, "elicitation_callback": self.elicitation}


@pytest.fixture
def through(served, tmp_path: Path) -> Callable[..., Any]:
    """`through(transport, servers, mode, **client)`: a client of a tenant `t` with `servers`, through
    the hub's facade over HTTP (`python -m hub serve`) or stdio (`python -m hub stdio`)."""

    @asynccontextmanager
    async def run(transport: str, servers: dict[str, Any], mode: str, **more: Any) -> AsyncIterator[Any]:
        if transport == "http":
            hub = served({"t": {"servers": servers}})
            async with http_facade(hub.url + "/tenants/t/mcp", mode, **more) as client:
                yield client
        else:
            async with facade(
                write_config(tmp_path, {"t": {"servers": servers}}), "t", mode, **more
            ) as client:
                yield client

    return run


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_2026_client_answers_a_servers_sampling_and_elicitation(through, transport: str) -> None:
    answers = Answers()
    async with through(transport, {"a": ASKING}, "2026-07-28", **answers.callbacks()) as client:
        with anyio.fail_after(30):
            sampled = await client.call_tool("a__sample", {"prompt": "What is MCP?"})
            assert not sampled.is_error and sampled.content[0].text == "sampled: an answer to What is MCP?"
            elicited = await client.call_tool("a__elicit", {"message": "Your name?"})
            assert not elicited.is_error and elicited.content[0].text == 'elicited: accept {"name": "Ada"}'
            # Asked twice in one call: two rounds, each answered by the client's callbacks.
            both = await client.call_tool("a__ask_twice", {"prompt": "Twice?"})
            assert not both.is_error
            assert both.content[0].text == 'sampled: an answer to Twice?; elicited: accept {"name": "Ada"}'
            assert (await client.call_tool("a__echo", {"text": "still fine"})).content[0].text == "still fine"
    assert answers.asked == [
        "sampling: What is MCP?",
        "elicitation: Your name?",
        "sampling: Twice?",
        "elicitation: And your name?",
    ]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_2026_client_answers_server_everythings_sampling(through, transport: str) -> None:
    answers = Answers()
    servers = {"every": everything_server()}
    async with through(transport, servers, "2026-07-28", **answers.callbacks()) as client:
        with anyio.fail_after(30):
            result = await client.call_tool("every__trigger-sampling-request", {"prompt": "What is MCP?"})
    assert not result.is_error and result.content[0].text.startswith("LLM sampling result: ")
    assert '"model": "m"' in result.content[0].text  # the client's answer, as the server got it
    [asked] = answers.asked
    assert asked.startswith("sampling: ") and asked.endswith("What is MCP?")
    assert f"an answer to {asked.removeprefix('sampling: ')}" in result.content[0].text


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_2025_client_is_still_asked_mid_call(through, transport: str) -> None:
    answers = Answers()
    async with through(transport, {"a": ASKING}, "legacy", **answers.callbacks()) as client:
        with anyio.fail_after(30):
            both = await client.call_tool("a__ask_twice", {"prompt": "Old?"})
    assert both.content[0].text == 'sampled: an answer to Old?; elicited: accept {"name": "Ada"}'
    assert answers.asked == ["sampling: Old?", "elicitation: And your name?"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_client_that_refuses_leaves_the_call_to_its_time_and_a_forged_state_is_refused(
    through, transport: str
) -> None:
    """The SDK client does not retry when its callback refuses: the parked call waits. A forged
    `requestState` (or one presented again) is an INVALID_PARAMS error, and the call still
    completes with the right one."""
    async with through(transport, {"a": ASKING}, "2026-07-28") as client:
        with anyio.fail_after(30):
            first = await client.session.call_tool("a__sample", {"prompt": "p"}, allow_input_required=True)
            assert isinstance(first, types.InputRequiredResult) and first.request_state
            [(key, request)] = first.input_requests.items()  # type: ignore[union-attr]
            assert request.method == "sampling/createMessage"
            assert request.params.messages[0].content.text == "p"  # type: ignore[union-attr]
            for forged in ("forged", first.request_state[:-2] + "xx"):
                with pytest.raises(MCPError) as refused:
                    await client.session.call_tool(
                        "a__sample", {"prompt": "p"}, request_state=forged, allow_input_required=True
                    )
                assert refused.value.error.code == types.INVALID_PARAMS
                assert "requestState" in refused.value.error.message
            with pytest.raises(MCPError) as other:  # the right state, another request
                await client.session.call_tool(
                    "a__sample", {"prompt": "q"}, request_state=first.request_state, allow_input_required=True
                )
            assert "another request" in other.value.error.message
            answer = types.CreateMessageResult(
                role="assistant", content=types.TextContent(text="ok"), model="m"
            )
            done = await client.session.call_tool(
                "a__sample",
                {"prompt": "p"},
                input_responses={key: answer},
                request_state=first.request_state,
                allow_input_required=True,
            )
            assert isinstance(done, types.CallToolResult) and done.content[0].text == "sampled: ok"
            with pytest.raises(MCPError) as used:  # a requestState serves once
                await client.session.call_tool(
                    "a__sample", {"prompt": "p"}, request_state=first.request_state, allow_input_required=True
                )
            assert used.value.error.code == types.INVALID_PARAMS


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_retry_without_the_response_is_an_error_for_the_server(through, transport: str) -> None:
    async with through(transport, {"a": ASKING}, "2026-07-28") as client:
        with anyio.fail_after(30):
            first = await client.session.call_tool("a__sample", {"prompt": "p"}, allow_input_required=True)
            assert isinstance(first, types.InputRequiredResult)
            done = await client.session.call_tool(
                "a__sample", {"prompt": "p"}, request_state=first.request_state, allow_input_required=True
            )
    assert isinstance(done, types.CallToolResult) and done.is_error
    assert (
        done.content[0].text
        == "asked, and got an error: the client sent no response to sampling/createMessage"
    )


async def test_the_wire_of_an_http_round_trip_and_a_foreign_caller(served) -> None:
    """By hand over HTTP: the `InputRequiredResult` as sent; a requestState presented by another
    key is refused (another caller's is as unknown as a forged one); a malformed response is an
    error for the server."""
    keys = ["acme-key-one-1234567890", "acme-key-two-1234567890"]
    hub = served(
        {"t": {"api_keys": keys, "servers": {"a": ASKING}}}, auth={"admin_keys": ["admin-key-1234567890"]}
    )
    url = hub.url + "/tenants/t/mcp"
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "a__sample",
    }
    one = {**headers, "Authorization": "Bearer acme-key-one-1234567890"}
    two = {**headers, "Authorization": "Bearer acme-key-two-1234567890"}

    def request(request_id: int, **more: Any) -> dict[str, Any]:
        params = {"name": "a__sample", "arguments": {"prompt": "p"}, "_meta": ENVELOPE, **more}
        return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}

    async with httpx.AsyncClient(timeout=30) as http:
        first = await http.post(url, json=request(1), headers=one)
        assert first.status_code == 200, first.text
        result = first.json()["result"]
        assert result["resultType"] == "input_required"
        [(key, asked)] = result["inputRequests"].items()
        assert asked["method"] == "sampling/createMessage" and asked["params"]["maxTokens"] == 100
        state = result["requestState"]
        assert len(state) >= 40  # 32 random bytes, URL-safe
        foreign = await http.post(url, json=request(2, requestState=state), headers=two)
        assert foreign.status_code == 400 and foreign.json()["error"]["code"] == types.INVALID_PARAMS
        answer = {"role": "assistant", "content": {"type": "text", "text": "by hand"}, "model": "m"}
        done = await http.post(
            url, json=request(3, requestState=state, inputResponses={key: answer}), headers=one
        )
        assert done.status_code == 200, done.text
        assert done.json()["result"]["resultType"] == "complete"
        assert done.json()["result"]["content"] == [{"type": "text", "text": "sampled: by hand"}]
        again = (await http.post(url, json=request(4), headers=one)).json()["result"]
        [key] = again["inputRequests"]
        # A response of no kind at all: the protocol's validator refuses the retry (the call stays parked).
        nothing = request(5, requestState=again["requestState"], inputResponses={key: {"role": "nobody"}})
        refused = await http.post(url, json=nothing, headers=one)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == types.INVALID_PARAMS
        # A response of another kind (an elicitation's, to a sampling request): an error for the server.
        retry = request(6, requestState=again["requestState"], inputResponses={key: {"action": "decline"}})
        malformed = (await http.post(url, json=retry, headers=one)).json()["result"]
        assert malformed["isError"] is True
        text = malformed["content"][0]["text"]
        assert text.startswith(
            "asked, and got an error: the client's response to sampling/createMessage is malformed"
        )
