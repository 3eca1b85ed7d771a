"""`tools/call` over the Streamable HTTP facade (`web.mcp_calls`): the wire in both eras, what a
call streams before its answer, the server's own requests, cancellation, and the session a call
belongs to (its key, its idle timer, its end). Real hub processes, real HTTP clients."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import mcp.types as types
import pytest
from conftest import host_pid, initialize_request, server
from helpers.facade import MODES, everything_server, http_facade, write_config
from helpers.processes import gone

pytestmark = pytest.mark.anyio

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
}
INITIALIZE = initialize_request(0)
KEY_1 = "acme-key-one-1234567890"
KEY_2 = "acme-key-two-1234567890"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def call(
    request_id: Any, name: str, arguments: dict[str, Any], meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


async def open_session(http: httpx.AsyncClient, url: str, key: str | None = None) -> dict[str, str]:
    """Initialize a 2025-11-25 session by hand; the headers its later requests carry."""
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    answer = await http.post(url, json=INITIALIZE, headers={**ACCEPT, **auth})
    assert answer.status_code == 200, answer.text
    headers = {
        **ACCEPT,
        **auth,
        "Mcp-Session-Id": answer.headers["mcp-session-id"],
        "MCP-Protocol-Version": "2025-11-25",
    }
    initialized = await http.post(
        url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers
    )
    assert initialized.status_code == 202
    return headers


def modern(name: str) -> dict[str, str]:
    return {**ACCEPT, "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": name}


def events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def server_log(tmp_path: Path, tenant: str, name: str) -> str:
    path = tmp_path / "data" / "logs" / tenant / f"{name}.log"
    return path.read_text() if path.exists() else ""


async def test_the_answer_is_json_unless_progress_comes_first_in_both_eras(served) -> None:
    hub = served({"default": {"servers": {"a": server()}}})
    url = hub.url + "/mcp"
    async with httpx.AsyncClient(timeout=30) as http:
        legacy = await open_session(http, url)
        for headers, meta in ((legacy, None), (modern("a__echo"), ENVELOPE)):
            answer = await http.post(url, json=call(1, "a__echo", {"text": "hi"}, meta), headers=headers)
            assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
            result = answer.json()["result"]
            assert result["content"] == [{"type": "text", "text": "hi"}] and result["structuredContent"] == {
                "text": "hi"
            }
            assert result["isError"] is False
            assert ("resultType" in result) == (meta is not None)  # 2026-07-28 results say they are complete
            if meta is None:
                assert answer.headers["mcp-session-id"] == legacy["Mcp-Session-Id"]

            headers = {**headers, "Mcp-Name": "a__sleep"} if meta else headers
            progress_meta = {**(meta or {}), "progressToken": "p-1"}
            answer = await http.post(
                url, json=call("s", "a__sleep", {"seconds": 0.15}, progress_meta), headers=headers
            )
            assert answer.headers["content-type"] == "text/event-stream"
            sent = events(answer.text)
            assert [m["method"] for m in sent[:-1]] == ["notifications/progress"] * 2
            assert [m["params"]["progress"] for m in sent[:-1]] == [0.1, 0.15]
            assert sent[-1]["id"] == "s" and sent[-1]["result"]["content"][0]["text"] == "slept"

        # Errors: an unknown tool is a JSON-RPC error (400 in 2026-07-28); a failing tool a result.
        unknown = await http.post(url, json=call(2, "nope", {}), headers=legacy)
        assert unknown.status_code == 200 and unknown.json()["error"]["message"] == "Unknown tool: nope"
        unknown = await http.post(url, json=call(2, "nope", {}, ENVELOPE), headers=modern("nope"))
        assert unknown.status_code == 400 and unknown.json()["error"]["code"] == types.INVALID_PARAMS
        failed = await http.post(url, json=call(3, "a__fail", {}), headers=legacy)
        assert failed.json()["result"]["isError"] is True
        # Arguments the schema refuses: the error names the tool as the client does, in both eras.
        for headers, meta in ((legacy, None), (modern("a__add"), ENVELOPE)):
            bad = await http.post(url, json=call(8, "a__add", {"a": "x", "b": 1}, meta), headers=headers)
            error = bad.json()["error"]
            assert error["code"] == types.INVALID_PARAMS, bad.text
            assert error["message"].startswith("invalid arguments for tool 'a__add': arguments.a"), bad.text
        # What the SDK refuses, it still refuses: a header that disagrees with the body, no envelope.
        lying = await http.post(
            url, json=call(4, "a__echo", {"text": "x"}, ENVELOPE), headers=modern("a__fail")
        )
        assert lying.status_code == 400 and "mcp-name" in lying.json()["error"]["message"].lower()
        bare = await http.post(url, json=call(5, "a__echo", {"text": "x"}), headers=modern("a__echo"))
        assert bare.status_code == 400 and "_meta" in bare.json()["error"]["message"]
        junk = await http.post(url, content=b"{not json", headers=legacy)
        assert junk.status_code == 400
        gone = await http.post(
            url, json=call(6, "a__echo", {"text": "x"}), headers={**legacy, "Mcp-Session-Id": "f" * 32}
        )
        assert gone.status_code == 404


async def test_sampling_and_elicitation_reach_an_http_client_mid_call(served) -> None:
    hub = served({"t": {"servers": {"every": everything_server()}}})
    asked: list[str] = []

    async def sampling(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked.append("sampling")
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(text="a sampled answer"), model="m"
        )

    async def elicitation(context: Any, params: Any) -> types.ElicitResult:
        asked.append("elicitation")
        properties = params.requested_schema.get("properties", {})
        return types.ElicitResult(
            action="accept",
            content={k: "x" for k, v in properties.items() if v.get("type") == "string"} or None,
        )

    url = hub.url + "/tenants/t/mcp"
    async with http_facade(
        url, "legacy", sampling_callback=sampling, elicitation_callback=elicitation
    ) as client:
        result = await client.call_tool("every__trigger-sampling-request", {"prompt": "What is MCP?"})
        assert not result.is_error and "a sampled answer" in str(result.content)
        result = await client.call_tool("every__trigger-elicitation-request", {})
        assert not result.is_error and "accept" in str(result.content).lower()
    assert asked == ["sampling", "elicitation"]
    # A 2026-07-28 client is asked the era's way: an InputRequiredResult, then its retry
    # (tests/test_mcp_input.py has the rest).
    async with http_facade(url, "2026-07-28", sampling_callback=sampling) as client:
        with anyio.fail_after(20):
            result = await client.call_tool("every__trigger-sampling-request", {"prompt": "?"})
        assert not result.is_error and "a sampled answer" in str(result.content)
    assert asked == ["sampling", "elicitation", "sampling"]


@pytest.mark.parametrize("mode", MODES)
async def test_log_messages_of_an_http_call_reach_its_client(served, mode: str) -> None:
    hub = served({"default": {"servers": {"a": server()}}})
    logs: list[tuple[str, Any]] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append((params.level, params.data))

    async with http_facade(hub.url + "/mcp", mode, logging_callback=on_log, log_level="debug") as client:
        assert (await client.call_tool("a__log", {"text": "hello from upstream"})).content[0].text == "logged"
    assert logs == [("warning", "hello from upstream")]
    if mode == "2026-07-28":  # the era's opt-in: without a log level in the request, nothing
        logs.clear()
        async with http_facade(hub.url + "/mcp", mode, logging_callback=on_log) as client:
            assert (await client.call_tool("a__log", {"text": "unasked"})).content[0].text == "logged"
        assert logs == []


@pytest.mark.parametrize("mode", MODES)
async def test_a_cancelled_http_call_cancels_the_upstream_work(served, tmp_path: Path, mode: str) -> None:
    """2025-11-25: the client's `notifications/cancelled`; 2026-07-28: the client closes the response."""
    hub = served({"default": {"servers": {"a": server()}}})
    async with http_facade(hub.url + "/mcp", mode) as client:
        with anyio.move_on_after(1.0):
            await client.call_tool("a__sleep", {"seconds": 30})
        with anyio.fail_after(10):
            while "sleep cancelled" not in server_log(tmp_path, "default", "a"):
                await anyio.sleep(0.05)
        assert (await client.call_tool("a__echo", {"text": "after"})).structured_content == {"text": "after"}


async def test_a_session_serves_only_the_key_that_opened_it(served) -> None:
    hub = served(
        {"acme": {"api_keys": [KEY_1, KEY_2], "servers": {"a": server()}}},
        auth={"admin_keys": ["admin-key-1234567890"]},
    )
    url = hub.url + "/mcp"
    async with httpx.AsyncClient(timeout=30) as http:
        mine = await open_session(http, url, KEY_1)
        answer = await http.post(url, json=call(1, "a__echo", {"text": "x"}), headers=mine)
        assert answer.status_code == 200 and answer.json()["result"]["structuredContent"] == {"text": "x"}
        stolen = {**mine, "Authorization": f"Bearer {KEY_2}"}
        answer = await http.post(url, json=call(2, "a__echo", {"text": "x"}), headers=stolen)
        assert answer.status_code == 404 and answer.json()["error"]["message"] == "Session not found"
        listing = {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}
        assert (await http.post(url, json=listing, headers=stolen)).status_code == 404
        assert (await http.delete(url, headers=stolen)).status_code == 404
        # The session is intact for its own key.
        answer = await http.post(url, json=call(4, "a__echo", {"text": "still"}), headers=mine)
        assert answer.json()["result"]["structuredContent"] == {"text": "still"}


async def test_ending_a_session_ends_its_calls_in_flight(served, tmp_path: Path) -> None:
    hub = served({"default": {"servers": {"a": server()}}})
    url = hub.url + "/mcp"
    async with httpx.AsyncClient(timeout=30) as http:
        headers = await open_session(http, url)
        ended: list[httpx.Response] = []

        async def long_call() -> None:
            ended.append(await http.post(url, json=call(1, "a__sleep", {"seconds": 30}), headers=headers))

        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                tg.start_soon(long_call)
                while not hub_has_a_call_in_flight(hub):
                    await anyio.sleep(0.05)
                assert (await http.delete(url, headers=headers)).status_code == 200
        assert ended[0].status_code == 200 and "result" not in ended[0].text  # ended without an answer
        while "sleep cancelled" not in server_log(tmp_path, "default", "a"):
            await anyio.sleep(0.05)
        gone = await http.post(url, json=call(2, "a__echo", {"text": "x"}), headers=headers)
        assert gone.status_code == 404


def hub_has_a_call_in_flight(hub: Any) -> bool:
    metrics = hub.get("/metrics").text
    return any(
        line.startswith("mcp_hub_tool_calls_in_flight") and not line.rstrip().endswith(" 0.0")
        for line in metrics.splitlines()
    )


async def test_a_call_in_flight_holds_its_session_and_idleness_ends_it(served) -> None:
    hub = served(
        {"default": {"servers": {"ps": server(per_session=True)}}}, gateway={"mcp_session_idle_timeout": 1.0}
    )
    url = hub.url + "/mcp"
    async with httpx.AsyncClient(timeout=30) as http:
        headers = await open_session(http, url)
        # A call longer than the idle timeout: the session lives through it and after it.
        answer = await http.post(url, json=call(1, "ps__sleep", {"seconds": 2.0}), headers=headers)
        assert answer.json()["result"]["content"][0]["text"] == "slept"
        answer = await http.post(url, json=call(2, "ps__pid", {}), headers=headers)
        pid = host_pid(answer.json()["result"]["structuredContent"])
    # Then nothing for longer than the timeout: the session ends, and its instance with it.
    assert gone(pid)
    assert hub.request("POST", "/mcp", call(3, "ps__pid", {}), headers=headers).status == 404


async def test_a_silent_call_turns_into_sse_with_keep_alive_comments(served) -> None:
    """A call that sends nothing for `gateway.mcp_keepalive_interval` becomes an SSE stream that
    carries a comment at each interval (proxies drop idle connections), then its answer."""
    hub = served({"default": {"servers": {"a": server()}}}, gateway={"mcp_keepalive_interval": 0.3})
    url = hub.url + "/mcp"
    async with httpx.AsyncClient(timeout=30) as http:
        legacy = await open_session(http, url)
        for headers, meta in ((legacy, None), (modern("a__sleep"), ENVELOPE)):
            answer = await http.post(url, json=call(1, "a__sleep", {"seconds": 1.0}, meta), headers=headers)
            assert answer.status_code == 200 and answer.headers["content-type"] == "text/event-stream"
            assert answer.text.count(": ping") >= 2
            assert events(answer.text)[-1]["result"]["content"][0]["text"] == "slept"
        quick = await http.post(url, json=call(2, "a__echo", {"text": "x"}), headers=legacy)
        assert quick.headers["content-type"] == "application/json"  # nothing to keep alive


# --------------------------------------------------------------------------- the stdio lane


async def test_the_stdio_lane_takes_calls_and_leaves_the_rest_to_the_sdk(make_hub, tmp_path: Path) -> None:
    """`StdioLane.take` sees each line of a stdio client before the SDK: it serves `tools/call`
    (and cancellations of its calls), the SDK everything else, including a call it cannot vouch for."""
    from web.facade import Facade
    from web.facade_scope import Scope
    from web.mcp_lane_stdio import StdioLane

    hub = make_hub({"t": {"servers": {"a": server()}}})
    hub.start_tenant("t")
    written: list[dict[str, Any]] = []
    arrived = anyio.Event()

    def write(line: bytes) -> None:
        nonlocal arrived
        assert line.endswith(b"\n") and line.count(b"\n") == 1  # one whole line each
        written.append(json.loads(line))
        arrived.set()
        arrived = anyio.Event()

    async def answer_of(request_id: Any) -> dict[str, Any]:
        with anyio.fail_after(10):
            while not any(m.get("id") == request_id and "method" not in m for m in written):
                await arrived.wait()
        return next(m for m in written if m.get("id") == request_id and "method" not in m)

    def line(message: dict[str, Any]) -> bytes:
        return json.dumps(message).encode() + b"\n"

    lane = StdioLane(Facade(hub, lambda ctx: Scope("t")), Scope("t"), write)
    lane.serving = True
    echo = call(1, "a__echo", {"text": "hi"})
    assert not lane.take(line(echo))  # before `initialize`: the SDK's (which refuses it)
    assert not lane.take(line(INITIALIZE))
    assert lane.take(line(echo))
    assert (await answer_of(1))["result"]["structuredContent"] == {"text": "hi"}

    assert lane.take(line(call(2, "a__sleep", {"seconds": 0.15}, {"progressToken": "p"})))
    assert (await answer_of(2))["result"]["content"][0]["text"] == "slept"
    progress = [m["params"]["progress"] for m in written if m.get("method") == "notifications/progress"]
    assert progress == [0.1, 0.15]

    assert lane.take(line(call(3, "a__echo", {"text": "x"}, ENVELOPE)))  # 2026-07-28
    assert (await answer_of(3))["result"]["resultType"] == "complete"
    assert lane.take(line(call(4, "nope", {})))
    assert (await answer_of(4))["error"] == {"code": types.INVALID_PARAMS, "message": "Unknown tool: nope"}

    # Not the lane's: another method, a call whose shape the SDK must judge, a stranger's answer.
    assert not lane.take(line({"jsonrpc": "2.0", "id": 5, "method": "tools/list"}))
    assert not lane.take(line({"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": 1}}))
    assert not lane.take(line({"jsonrpc": "2.0", "id": "hub-r-99", "result": {}}))
    assert not lane.take(b"{not json\n")

    # A cancelled call gets no answer, and its upstream work is cancelled.
    assert lane.take(line(call(7, "a__sleep", {"seconds": 30}, {"progressToken": "p7"})))
    with anyio.fail_after(10):  # its first progress: the server is sleeping
        while not any(m.get("params", {}).get("progressToken") == "p7" for m in written):
            await arrived.wait()
    assert lane.take(
        line({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}})
    )
    server_log = tmp_path / "hub0" / "logs" / "t" / "a.log"
    with anyio.fail_after(10):
        while "sleep cancelled" not in server_log.read_text():
            await anyio.sleep(0.05)
    assert 7 not in lane.calls and not any(m.get("id") == 7 for m in written)


async def test_a_raw_stdio_client_is_served_by_the_lane_sampling_included(tmp_path: Path) -> None:
    """`python -m hub stdio` driven line by line: after `initialize`, a call is the lane's (its
    server requests carry the lane's `hub-r-N` ids) and a sampling round trip completes."""
    from conftest import ROOT

    config = write_config(tmp_path, {"t": {"servers": {"every": everything_server()}}})
    with open(tmp_path / "stderr", "w") as errlog:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hub",
            "stdio",
            "--config",
            str(config),
            "--tenant",
            "t",
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=errlog,
        )
    assert process.stdin and process.stdout

    async def send(message: dict[str, Any]) -> None:
        process.stdin.write(json.dumps(message).encode() + b"\n")  # type: ignore[union-attr]
        await process.stdin.drain()  # type: ignore[union-attr]

    async def receive() -> dict[str, Any]:
        with anyio.fail_after(30):
            return json.loads(await process.stdout.readline())  # type: ignore[union-attr]

    try:
        await send(
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {"sampling": {}},
                    "clientInfo": {"name": "raw", "version": "1"},
                },
            }
        )
        assert (await receive())["result"]["serverInfo"]["name"] == "mcp-hub"
        await send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        await send(call(1, "every__trigger-sampling-request", {"prompt": "Why?"}))
        asked = await receive()
        while asked.get("method") != "sampling/createMessage":  # (a log message may come first)
            asked = await receive()
        assert str(asked["id"]).startswith("hub-r-")
        await send(
            {
                "jsonrpc": "2.0",
                "id": asked["id"],
                "result": {"role": "assistant", "content": {"type": "text", "text": "because"}, "model": "m"},
            }
        )
        answer = await receive()
        while answer.get("id") != 1:
            answer = await receive()
        assert not answer["result"]["isError"] and "because" in json.dumps(answer["result"]["content"])
    finally:
        process.stdin.close()
        with anyio.fail_after(30):
            assert await process.wait() == 0
