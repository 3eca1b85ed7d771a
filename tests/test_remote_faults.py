"""Remote (Streamable HTTP) upstreams that fail behind a served hub (issue 24): a server that
answers garbage, closes the connection mid-stream or hangs gives the caller a clear error naming it
within the server's `call_timeout`, and the hub and the server's other tools keep working; the
server hears of a call its caller gave up on (or that timed out); a 2025-11-25 session the server
expired is renewed without the caller noticing, calls in flight included.

Real processes: tests/servers/badhttp.py (a misbehaving server with a proper handshake, in both
eras) and the SDK test server with `--expire-sessions`, over Streamable HTTP; `python -m hub serve`
in front of them; real `mcp.Client`s of the facade. One hub and one set of servers for the module."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
from conftest import wait_until
from helpers.facade import MODES, http_facade
from helpers.remote import (
    BAD_HTTP,
    Seen,
    all_running,
    failure,
    free_port,
    free_ports,
    http_upstream,
    hub_in_front,
    remote_servers,
    sdk_server_http,
)
from helpers.served import ServedHub, start_hub, stop_hub, write_config
from mcp import MCPError

pytestmark = pytest.mark.anyio

CALL_TIMEOUT = 3.0
SLACK = 1.5  # what the hub and the client may add to the server's call timeout
# The hub's servers: one badhttp process, as `bad` (2025-11-25: a handshake and a session) and as
# `bad26` (2026-07-28: every request carries the era's envelope); `sdk`, the SDK test server; `exp`,
# the SDK test server in the 2025-11-25 era only, which forgets its sessions when asked (`expire`).
BAD = ["bad", "bad26"]
FAULTS = [  # (and hang, its own test)
    "garbage",
    "empty",
    "not_jsonrpc",
    "wrong_id",
    "accepted",
    "garbage_sse",
    "sse_ends",
    "cut",
    "wrong_type",
    "status500",
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedHub]:
    folder = tmp_path_factory.mktemp("remote_faults")
    bad_port, sdk_port, exp_port = free_ports(3)
    commands = {
        "bad": ([sys.executable, BAD_HTTP, str(bad_port)], bad_port),
        "sdk": (sdk_server_http(sdk_port), sdk_port),
        "exp": (sdk_server_http(exp_port, "--expire-sessions", "--legacy-only"), exp_port),
    }
    with remote_servers(folder, commands) as urls:
        servers = {
            "bad": http_upstream(urls["bad"], "legacy", call_timeout=CALL_TIMEOUT),
            "bad26": http_upstream(urls["bad"], "2026-07-28", call_timeout=CALL_TIMEOUT),
            "sdk": http_upstream(urls["sdk"], call_timeout=CALL_TIMEOUT),
            "exp": http_upstream(urls["exp"], call_timeout=CALL_TIMEOUT),
        }
        with hub_in_front(folder, servers) as served:
            yield served


@pytest.fixture(autouse=True)
def settled(hub: ServedHub) -> None:
    """Each test starts with every server running (a fault an earlier test caused may have made the
    hub reconnect to a server: that is the earlier test's failure, not this one's)."""
    assert all_running(hub, "t"), hub.get("/api/servers?tenant=t").text


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("server", BAD)
@pytest.mark.parametrize("mode", MODES)
async def test_a_misbehaving_server_gives_a_clear_error_within_its_call_timeout(
    hub: ServedHub, mode: str, server: str, fault: str
) -> None:
    """Whichever era the caller and the server speak; what the server sent before it broke off
    (`cut`: a progress notification) still reaches the caller."""
    seen = Seen()
    async with http_facade(hub.url + "/tenants/t/mcp", mode) as client:
        with anyio.fail_after(CALL_TIMEOUT + 10):
            message, elapsed = await failure(client, f"{server}__{fault}", progress_callback=seen.on_progress)
        assert elapsed < CALL_TIMEOUT + SLACK, f"{fault}: the caller waited {elapsed:.2f} s"
        assert f"'{server}'" in message, message  # the error names the server
        assert seen.events == (["progress 1"] if fault == "cut" else [])
        await still_working(client, server)


@pytest.mark.parametrize("server", BAD)
@pytest.mark.parametrize("mode", MODES)
async def test_a_hanging_call_ends_at_the_call_timeout_and_the_server_hears_the_caller_gave_up(
    hub: ServedHub, mode: str, server: str
) -> None:
    async with http_facade(hub.url + "/tenants/t/mcp", mode) as client:
        before = await gave_up(client, server)
        with anyio.fail_after(CALL_TIMEOUT + 10):
            message, elapsed = await failure(client, f"{server}__hang")
        assert CALL_TIMEOUT - 0.5 < elapsed < CALL_TIMEOUT + SLACK, elapsed
        assert f"'{server}'" in message and "timed out" in message, message
        # The server learns the call is over: a notifications/cancelled, or its connection closed.
        with anyio.fail_after(10):
            while await gave_up(client, server) == before:
                continue
        await still_working(client, server)


@pytest.mark.parametrize("server", BAD)
@pytest.mark.parametrize("mode", MODES)
async def test_a_caller_that_gives_up_on_a_call_has_it_cancelled_upstream(
    hub: ServedHub, mode: str, server: str
) -> None:
    """The caller stops waiting after 0.5 s: the server hears of it well before the call timeout
    would have ended the call: the call's connection is closed (2026-07-28's cancellation), and a
    2025-11-25 server also gets `notifications/cancelled`."""
    told = ["closed", "cancelled"] if server == "bad" else ["closed"]
    async with http_facade(hub.url + "/tenants/t/mcp", mode) as client:
        before = await gave_up(client, server)
        with anyio.move_on_after(0.5):
            await client.call_tool(f"{server}__hang", {})
        now = before
        with anyio.move_on_after(CALL_TIMEOUT - 1.0):
            while any(now[k] == before[k] for k in told):
                now = await gave_up(client, server)
        assert all(now[k] > before[k] for k in told), (before, now)
        await still_working(client, server)


async def gave_up(client: Any, server: str) -> dict[str, int]:
    """badhttp's count of the calls it was told (or shown, by a closed connection) were given up."""
    answer = await client.call_tool(f"{server}__gave_up", {})
    return cast(dict[str, int], json.loads(answer.content[0].text))


async def still_working(client: Any, server: str) -> None:
    """The server's other tools, and the hub's other servers, answer at once."""
    with anyio.fail_after(10):
        echoed = await client.call_tool(f"{server}__echo", {"text": "after"})
        other = await client.call_tool("sdk__echo", {"text": "fine"})
    assert echoed.structured_content == {"text": "after"}, echoed
    assert other.structured_content == {"text": "fine"}, other


async def test_a_session_the_server_expired_is_renewed_without_the_caller_noticing(hub: ServedHub) -> None:
    """`exp` forgets every session it handed out when its tool `expire` runs: the hub's next request
    on its old session gets 404; the caller's next call still succeeds, and again after a second
    expiry."""
    async with http_facade(hub.url + "/tenants/t/mcp", "legacy") as client:
        with anyio.fail_after(20):
            assert (await client.call_tool("exp__echo", {"text": "before"})).structured_content == {
                "text": "before"
            }
            for round in ("after", "after again"):
                assert (await client.call_tool("exp__expire", {})).content[0].text == "expired"
                after = await client.call_tool("exp__echo", {"text": round})
                assert not after.is_error and after.structured_content == {"text": round}, after
            # A call that streams (progress, then its answer) goes through the renewed session too.
            seen = Seen()
            slept = await client.call_tool("exp__sleep", {"seconds": 0.2}, progress_callback=seen.on_progress)
            assert (seen.events, slept.content[0].text) == (["progress 0.1", "progress 0.2"], "slept")


async def test_calls_in_flight_when_the_session_expired_all_succeed(hub: ServedHub) -> None:
    """Eight callers call at once right after the server forgot the hub's session: every call
    succeeds (the hub renews the session for all of them)."""
    answers: dict[int, str] = {}
    async with http_facade(hub.url + "/tenants/t/mcp", "legacy") as client:
        with anyio.fail_after(20):
            assert (await client.call_tool("exp__expire", {})).content[0].text == "expired"

            async def call(n: int) -> None:
                try:
                    answer = await client.call_tool("exp__echo", {"text": f"call {n}"})
                except MCPError as exc:  # (an unknown tool, say)
                    answers[n] = f"failed: {exc.error.message}"
                else:
                    answers[n] = ("failed: " if answer.is_error else "") + answer.content[0].text

            async with anyio.create_task_group() as group:
                for n in range(8):
                    group.start_soon(call, n)
    assert answers == {n: f"call {n}" for n in range(8)}


@pytest.mark.parametrize("mode", MODES)
async def test_a_stream_the_server_ends_after_events_with_ids_is_resumed(hub: ServedHub, mode: str) -> None:
    """The 2025-11-25 server closes the call's stream early (a priming event and a progress
    notification, both with ids): the hub asks for the rest with `Last-Event-ID` and the caller gets
    the progress, then the answer, as if nothing happened."""
    seen = Seen()
    async with http_facade(hub.url + "/tenants/t/mcp", mode) as client:
        with anyio.fail_after(CALL_TIMEOUT + 10):
            result = await client.call_tool("bad__resumed", {}, progress_callback=seen.on_progress)
    assert not result.is_error, result
    text = result.content[0].text  # type: ignore[union-attr]
    assert text.startswith("resumed after ev-") and text.endswith("-1"), text
    assert seen.events == ["progress 1"]


@pytest.mark.parametrize("server", BAD)
@pytest.mark.parametrize("mode", MODES)
async def test_a_call_in_flight_when_its_server_stops_fails_at_once_with_the_stop(
    hub: ServedHub, mode: str, server: str
) -> None:
    """A call to a Streamable HTTP server runs on the hub's serving loop, not the server's
    (`ServerCalls.here`): a stop of the server still fails it at once, with the stop's reason,
    rather than at its call timeout; the server's tools answer again once it is started."""
    try:
        async with http_facade(hub.url + "/tenants/t/mcp", mode) as client:
            outcome: list[tuple[str, float]] = []

            async def hang() -> None:
                outcome.append(await failure(client, f"{server}__hang"))

            with anyio.fail_after(CALL_TIMEOUT + 10):
                async with anyio.create_task_group() as group:
                    group.start_soon(hang)
                    assert await anyio.to_thread.run_sync(wait_until, lambda: _in_flight(hub) == 1, 10)
                    stopped = await anyio.to_thread.run_sync(hub.post, f"/api/servers/t/{server}/stop")
                    assert stopped.status == 200, stopped.text
        [(message, elapsed)] = outcome
        assert elapsed < CALL_TIMEOUT - 1.0, f"the call ended only after {elapsed:.2f} s: {message}"
        assert f"'{server}'" in message and "stopping" in message, message
    finally:
        assert hub.post(f"/api/servers/t/{server}/start").status == 200
        assert all_running(hub, "t")
    async with http_facade(hub.url + "/tenants/t/mcp", mode) as client:
        await still_working(client, server)


def _in_flight(hub: ServedHub) -> float:
    """The served hub's tool calls in flight for tenant `t` (its metrics)."""
    for line in hub.get("/metrics").text.splitlines():
        if line.startswith('mcp_hub_tool_calls_in_flight{tenant="t"}'):
            return float(line.split()[-1])
    return 0.0


async def test_calls_keep_an_on_demand_remote_server_from_idling_and_it_stops_once_idle(
    tmp_path: Path,
) -> None:
    """The idle clock of an on_demand Streamable HTTP server counts the calls made on the hub's
    serving loop (`ServerCalls.here`): calls one after another for twice its idle_timeout keep it
    running (the same run: not stopped and woken again), and it stops once no call came for
    idle_timeout."""
    port = free_port()
    with remote_servers(tmp_path, {"sdk": (sdk_server_http(port), port)}) as urls:
        lazy = http_upstream(urls["sdk"], lifecycle="on_demand", idle_timeout=1.0)
        served = start_hub(write_config(tmp_path, {"t": {"servers": {"lazy": lazy}}}), tmp_path)

        def status() -> dict[str, Any]:
            return cast(dict[str, Any], served.get("/api/servers?tenant=t").body["servers"][0])

        try:
            assert served.post("/api/servers/t/lazy/start").body["state"] == "running"
            started = status()["started_at"]
            async with http_facade(served.url + "/tenants/t/mcp", "legacy") as client:
                with anyio.fail_after(20):
                    began = anyio.current_time()
                    while anyio.current_time() - began < 2.0:
                        answer = await client.call_tool("lazy__echo", {"text": "busy"})
                        assert answer.structured_content == {"text": "busy"}, answer
            now = status()
            assert (now["state"], now["started_at"]) == ("running", started), now
            assert wait_until(lambda: status()["state"] == "stopped", 10), status()
        finally:
            assert stop_hub(served) == 0, served.log()[-3000:]
