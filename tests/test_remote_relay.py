"""Remote (Streamable HTTP) upstreams behind a served hub (issue 24): what a server sends during a
call (progress, log messages, its own sampling and elicitation requests) reaches the client that
called through the hub's facade, in the order the server sent it, before the call's result.

Real processes: the SDK test server (2025-11-25 only, and both eras), the conformance server
(2026-07-28 `input_required` rounds) and server-everything, each over Streamable HTTP on a port of
its own; `python -m hub serve` in front of them; real `mcp.Client`s of the facade in both eras.
One hub and one set of servers for the module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from helpers.facade import MODES, http_facade
from helpers.remote import (
    Seen,
    conformance_http,
    everything_http,
    free_ports,
    http_upstream,
    hub_in_front,
    remote_servers,
    sdk_server_http,
)
from helpers.served import ServedHub

pytestmark = pytest.mark.anyio

# The hub's servers: `old` speaks only the 2025-11-25 handshake era (it asks the caller with
# server-to-client requests); `new` speaks 2026-07-28 (the hub pins it); `conf` asks in
# 2026-07-28 `input_required` rounds; `every` is server-everything (TypeScript SDK, 2025-11-25).
BOTH_ERAS = ["old", "new"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedHub]:
    folder = tmp_path_factory.mktemp("remote_relay")
    ports = dict(zip(("old", "new", "conf", "every"), free_ports(4), strict=True))
    commands = {
        "old": (sdk_server_http(ports["old"], "--asks", "--legacy-only"), ports["old"]),
        "new": (sdk_server_http(ports["new"]), ports["new"]),
        "conf": (conformance_http(ports["conf"]), ports["conf"]),
        "every": (everything_http(ports["every"]), ports["every"]),
    }
    with remote_servers(folder, commands) as urls:
        servers = {
            "old": http_upstream(urls["old"]),  # (auto: the server refuses server/discover)
            "new": http_upstream(urls["new"], "2026-07-28"),
            "conf": http_upstream(urls["conf"], "2026-07-28"),
            "every": http_upstream(urls["every"]),
        }
        with hub_in_front(folder, servers) as served:
            yield served


def client(hub: ServedHub, mode: str, seen: Seen) -> Any:
    return http_facade(hub.url + "/tenants/t/mcp", mode, **seen.callbacks())


@pytest.mark.parametrize("server", BOTH_ERAS)
@pytest.mark.parametrize("mode", MODES)
async def test_progress_and_log_messages_reach_the_caller_before_the_result(
    hub: ServedHub, mode: str, server: str
) -> None:
    seen = Seen()
    async with client(hub, mode, seen) as session:
        with anyio.fail_after(20):
            slept = await session.call_tool(
                f"{server}__sleep", {"seconds": 0.3}, progress_callback=seen.on_progress
            )
            seen.note(f"result {slept.content[0].text}")
            logged = await session.call_tool(f"{server}__log", {"text": f"hello from {server}"})
            seen.note(f"result {logged.content[0].text}")
    assert seen.events == [
        "progress 0.1",
        "progress 0.2",
        "progress 0.3",
        "result slept",
        f"log hello from {server}",
        "result logged",
    ]


@pytest.mark.parametrize("server", BOTH_ERAS)
async def test_concurrent_callers_each_get_their_own_progress_and_log_messages(
    hub: ServedHub, server: str
) -> None:
    """Three sessions (both eras) call the same server at once: each sees its own calls' progress
    and log messages, none of the others'."""
    seen = {name: Seen() for name in ("first", "second", "third")}
    modes = dict(zip(seen, [*MODES, MODES[0]], strict=True))

    async def caller(name: str) -> None:
        async with client(hub, modes[name], seen[name]) as session:
            slept = await session.call_tool(
                f"{server}__sleep", {"seconds": 0.3}, progress_callback=seen[name].on_progress
            )
            seen[name].note(f"result {slept.content[0].text}")
            logged = await session.call_tool(f"{server}__log", {"text": f"from {name}"})
            seen[name].note(f"result {logged.content[0].text}")

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for name in seen:
                group.start_soon(caller, name)
    for name, events in seen.items():
        assert events.events == [
            "progress 0.1",
            "progress 0.2",
            "progress 0.3",
            "result slept",
            f"log from {name}",
            "result logged",
        ], {name: events.events for name, events in seen.items()}


@pytest.mark.parametrize("mode", MODES)
async def test_a_2025_servers_sampling_and_elicitation_reach_the_caller_in_order(
    hub: ServedHub, mode: str
) -> None:
    """`ask_twice` samples, logs "sampled", elicits, logs "elicited", then answers: the caller sees
    exactly that, whichever era it speaks (a 2026-07-28 caller in `input_required` rounds)."""
    seen = Seen()
    async with client(hub, mode, seen) as session:
        with anyio.fail_after(30):
            both = await session.call_tool("old__ask_twice", {"prompt": "Twice?"})
            seen.note(f"result {both.content[0].text}")
            echoed = await session.call_tool("old__echo", {"text": "still fine"})
    assert seen.events == [
        "sampling Twice?",
        "log sampled",
        "elicitation And your name?",
        "log elicited",
        'result sampled: an answer to Twice?; elicited: accept {"name": "Ada"}',
    ]
    assert not both.is_error and echoed.structured_content == {"text": "still fine"}


@pytest.mark.parametrize("mode", MODES)
async def test_a_2026_servers_input_required_rounds_reach_the_caller(hub: ServedHub, mode: str) -> None:
    seen = Seen()
    async with client(hub, mode, seen) as session:
        with anyio.fail_after(30):
            sampled = await session.call_tool("conf__test_sampling", {"prompt": "Modern?"})
            seen.note(f"result {sampled.content[0].text}")
            elicited = await session.call_tool("conf__test_elicitation", {"message": "Who?"})
            seen.note(f"result {elicited.content[0].text}")
    assert seen.events[:3] == [
        "sampling Modern?",
        "result LLM response: an answer to Modern?",
        "elicitation Who?",
    ]
    assert seen.events[3].startswith("result User response: action=accept"), seen.events


@pytest.mark.parametrize("mode", MODES)
async def test_server_everythings_progress_sampling_and_elicitation_reach_the_caller_in_order(
    hub: ServedHub, mode: str
) -> None:
    seen = Seen()
    async with client(hub, mode, seen) as session:
        with anyio.fail_after(30):
            done = await session.call_tool(
                "every__trigger-long-running-operation",
                {"duration": 0.4, "steps": 4},
                progress_callback=seen.on_progress,
            )
            seen.note(f"result {done.content[0].text}")
            sampled = await session.call_tool("every__trigger-sampling-request", {"prompt": "What is MCP?"})
            seen.note("result sampled" if "an answer to" in sampled.content[0].text else "result ?")
            elicited = await session.call_tool("every__trigger-elicitation-request", {})
            seen.note(f"result {'accepted' if 'Ada' in str(elicited.content) else elicited}")
    assert seen.events[:5] == [
        "progress 1",
        "progress 2",
        "progress 3",
        "progress 4",
        "result Long running operation completed. Duration: 0.4 seconds, Steps: 4.",
    ]
    assert seen.events[5].startswith("sampling ") and seen.events[5].endswith("What is MCP?"), seen.events
    assert seen.events[6:8] == [
        "result sampled",
        "elicitation Please provide inputs for the following fields:",
    ]
    assert seen.events[8:] == ["result accepted"]


@pytest.mark.slow  # (waits for the message server-everything sends 5 s after the first)
@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")  # (logging/setLevel)
async def test_server_everythings_own_log_messages_reach_a_caller_at_debug(hub: ServedHub) -> None:
    """server-everything logs on its own once toggled (one message at once, then one every 5 s),
    outside any call: the hub relays it to a session that asked for `debug` (`logging/setLevel`:
    the client's `log_level` only opts in on 2026-07-28 connections). The first message may come
    while the toggling call is still in flight (then it is that call's); the test waits for one
    that comes after the call's result, which only the out-of-call path delivers."""
    seen = Seen()
    async with client(hub, "legacy", seen) as session:
        await session.set_logging_level("debug")
        toggled = await session.call_tool("every__toggle-simulated-logging", {})
        seen.note("result toggled")
        try:
            assert toggled.content[0].text.startswith("Started simulated"), toggled
            with anyio.fail_after(15):
                await seen.until(lambda events: events[-1].startswith("log ") and "result toggled" in events)
        finally:
            await session.call_tool("every__toggle-simulated-logging", {})  # (stops it)
    after = seen.events[seen.events.index("result toggled") + 1 :]
    assert after and all("message - SessionId" in event for event in after), seen.events
