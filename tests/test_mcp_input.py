"""Sampling and elicitation for 2026-07-28 clients through the facade (`web.mcp_input`): a server's
request mid-call parks the call and reaches the client as an `InputRequiredResult`; the client's
retry answers it. Real hubs (HTTP and stdio), real servers, real `mcp.Client`s."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import mcp.types as types
import pytest
from conformance import CONFORMANCE_SERVER
from conftest import SERVERS_DIR, binds, server
from helpers.facade import everything_server, facade, http_facade, write_config
from mcp import MCPError

from web.facade_scope import Scope
from web.mcp_calls import CallRequest
from web.mcp_input import InputRequired, Parking
from web.mcp_requester import Asks, CallRequester

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
    logs: list[Any] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params.data)

    more = {**answers.callbacks(), "logging_callback": on_log, "log_level": "debug"}
    async with through(transport, {"a": ASKING}, "2026-07-28", **more) as client:
        with anyio.fail_after(30):
            sampled = await client.call_tool("a__sample", {"prompt": "What is MCP?"})
            assert not sampled.is_error and sampled.content[0].text == "sampled: an answer to What is MCP?"
            elicited = await client.call_tool("a__elicit", {"message": "Your name?"})
            assert not elicited.is_error and elicited.content[0].text == 'elicited: accept {"name": "Ada"}'
            # Asked twice in one call: two rounds, each answered by the client's callbacks; what the
            # server logs after each answer reaches the client on the retry's stream.
            both = await client.call_tool("a__ask_twice", {"prompt": "Twice?"})
            assert not both.is_error
            assert both.content[0].text == 'sampled: an answer to Twice?; elicited: accept {"name": "Ada"}'
            assert logs == ["sampled", "elicited"]
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
async def test_a_2026_client_answers_a_2026_servers_input_required_rounds(through, transport: str) -> None:
    """Both ends in 2026-07-28: the server's `InputRequiredResult` rounds (the hub's upstream
    rounds, `actors/calls.py`) are asked of the client through the facade's own rounds."""
    answers = Answers()
    fixture = {"command": "python", "args": [CONFORMANCE_SERVER], "sandbox": binds(SERVERS_DIR)}
    async with through(transport, {"c": fixture}, "2026-07-28", **answers.callbacks()) as client:
        with anyio.fail_after(30):
            sampled = await client.call_tool("c__test_sampling", {"prompt": "Modern?"})
            elicited = await client.call_tool("c__test_elicitation", {"message": "Who?"})
    assert sampled.content[0].text == "LLM response: an answer to Modern?", sampled
    assert elicited.content[0].text.startswith("User response: action=accept"), elicited
    assert answers.asked == ["sampling: Modern?", "elicitation: Who?"]


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


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_call_parked_past_its_timeout_ends_and_its_retry_says_so(
    through, tmp_path: Path, transport: str
) -> None:
    """The client never answers: the call's own `call_timeout` ends it (the upstream call is
    cancelled), and a late retry gets how it ended."""
    async with through(transport, {"a": {**ASKING, "call_timeout": 1}}, "2026-07-28") as client:
        with anyio.fail_after(30):
            first = await client.session.call_tool("a__sample", {"prompt": "p"}, allow_input_required=True)
            assert isinstance(first, types.InputRequiredResult)
            while not any("asking cancelled" in log.read_text() for log in tmp_path.rglob("a.log")):
                await anyio.sleep(0.05)  # (an outside fact: the server's log)
            late = await client.session.call_tool(
                "a__sample", {"prompt": "p"}, request_state=first.request_state, allow_input_required=True
            )
    assert isinstance(late, types.CallToolResult) and late.is_error
    assert "timed out after 1 s" in late.content[0].text, late.content


class _Stream:
    """A call's stream that keeps what it is given (no process: `Parking` alone)."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def emit(self, message: Any) -> None:
        self.sent.append(message)

    def answer(self, message: Any, code: int | None = None) -> None:
        self.sent.append(message)

    def cancelled(self) -> None:
        pass

    def close(self) -> None:
        pass


async def test_a_parked_call_whose_client_never_comes_back_is_cancelled_and_its_request_fails() -> None:
    parking = Parking(wait=0.2)
    loop = asyncio.get_running_loop()
    call = CallRequest(id=1, name="x", arguments={}, progress_token=None, modern=True, log_levels=frozenset())
    task: asyncio.Future[Any] = loop.create_future()  # the call itself, still running
    owner = (Scope("t"), "key", None)
    parked = parking.open(task, CallRequester(_Stream(), call, Asks(), loop), owner)
    first = parked.next_round()
    message = types.SamplingMessage(role="user", content=types.TextContent(text="?"))
    request = types.CreateMessageRequest(
        params=types.CreateMessageRequestParams(messages=[message], max_tokens=1)
    )
    asked = asyncio.ensure_future(parked.ask(request, types.CreateMessageResult))
    outcome = await first
    assert isinstance(outcome, InputRequired)
    state = outcome.result["requestState"]
    with pytest.raises(MCPError) as refused:  # another key
        parking.claim(state, (Scope("t"), "other", None), call)
    assert refused.value.error.code == types.INVALID_PARAMS
    with anyio.fail_after(5), pytest.raises(MCPError) as expired:
        await asked
    assert (
        expired.value.error.code == types.REQUEST_TIMEOUT and "did not answer" in expired.value.error.message
    )
    assert task.cancelled()
    with pytest.raises(MCPError) as gone:
        parking.claim(state, owner, call)
    assert "unknown or expired requestState" in gone.value.error.message
