"""What the hub asks of a server beyond calls (`Hub.upstream`, `hub.upstream`): completions, log
levels, resource subscriptions, and what comes back on its own (`ServerLogMessage`,
`ResourceUpdated`); the server's capabilities and instructions in its catalog (issue 20).

Against real subprocesses: tests/servers/testserver.py with `--extras`, in both protocol eras
(`--legacy-only` for the 2025-11-25 handshake era), and the npm server-everything.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import NODE_MODULES, binds, config_of, node_package, server

from actors.models import ResourceUpdated, ServerLogMessage, ServerState
from hub.errors import BadRequest
from hub.runtime import Hub

ERAS = {"2026-07-28": ("--extras",), "2025-11-25": ("--extras", "--legacy-only")}
COUNTER = "test://counter"


class Heard:
    """The events of one kind the hub's board hands its listeners (router thread), to wait on."""

    def __init__(self, hub: Hub, kind: type[Any]) -> None:
        self.kind = kind
        self.events: list[Any] = []
        self._cond = threading.Condition()
        hub.board.add_listener(self._on_event)

    def _on_event(self, event: Any) -> None:
        if isinstance(event, self.kind):
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()

    def wait(self, matches: Callable[[Any], bool], count: int = 1, timeout: float = 10) -> list[Any]:
        """Wait until `count` heard events match; those that do."""
        with self._cond:
            self._cond.wait_for(lambda: len([e for e in self.events if matches(e)]) >= count, timeout)
            return [e for e in self.events if matches(e)]


def run(coro: Any) -> Any:
    """Await `coro` on a loop of this test's thread (the API is async: the facade's loop awaits it)."""
    return asyncio.run(coro)


def text(hub: Hub, tool: str) -> str:
    return str(hub.call_tool("t", tool, {}).content[0]["text"])


@pytest.mark.parametrize("era", list(ERAS))
def test_completion_round_trip(make_hub, era: str) -> None:
    hub = make_hub({"t": {"servers": {"x": server(*ERAS[era], "--template"), "plain": server()}}})
    hub.start_tenant("t")
    prompt = run(
        hub.upstream.complete(
            "t", "x", {"type": "ref/prompt", "name": "greet"}, {"name": "name", "value": "Al"}, None
        )
    )
    assert prompt["completion"]["values"] == ["Alice", "Albert"]
    assert prompt["completion"]["hasMore"] is False
    template = {"type": "ref/resource", "uri": "test://echo/{text}"}
    words = run(hub.upstream.complete("t", "x", template, {"name": "text", "value": "he"}, {"other": "1"}))
    assert words["completion"]["values"] == ["hello", "help"]
    with pytest.raises(BadRequest, match="malformed completion request"):
        run(hub.upstream.complete("t", "x", {"type": "ref/nothing"}, {"name": "name", "value": ""}, None))
    with pytest.raises(BadRequest, match="does not support completions"):
        run(
            hub.upstream.complete(
                "t", "plain", {"type": "ref/prompt", "name": "greet"}, {"name": "name", "value": ""}, None
            )
        )


def test_log_level_reaches_the_server_and_is_sent_again_after_a_restart(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"x": server(*ERAS["2025-11-25"])}}})
    hub.start_tenant("t")
    assert text(hub, "x.level") == "none"
    run(hub.upstream.set_log_level("t", "x", "warning"))
    assert text(hub, "x.level") == "warning"
    hub.restart_server("t", "x")
    assert text(hub, "x.level") == "warning"
    with pytest.raises(BadRequest, match="unknown log level"):
        run(hub.upstream.set_log_level("t", "x", "loud"))


def test_log_level_of_a_stopped_on_demand_server_is_remembered_without_waking_it(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"lazy": server(*ERAS["2025-11-25"], lifecycle="on_demand")}}})
    run(hub.upstream.set_log_level("t", "lazy", "error"))
    assert hub.server("t", "lazy").state is ServerState.STOPPED  # not woken
    hub.start_server("t", "lazy")
    assert text(hub, "lazy.level") == "error"


def test_log_level_on_a_2026_connection_is_only_remembered(make_hub) -> None:
    """`logging/setLevel` is deprecated at 2026-07-28: the hub keeps opting in at debug per request."""
    hub = make_hub({"t": {"servers": {"x": server(*ERAS["2026-07-28"])}}})
    hub.start_tenant("t")
    assert hub.server("t", "x").protocol_version == "2026-07-28"
    run(hub.upstream.set_log_level("t", "x", "warning"))
    assert text(hub, "x.level") == "none"


def test_a_log_message_after_the_call_is_a_server_log_message_event(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"x": server(*ERAS["2025-11-25"])}}})
    heard = Heard(hub, ServerLogMessage)
    hub.start_tenant("t")
    later = {"level": "warning", "message": "said later", "delay": 0.2}
    assert hub.call_tool("t", "x.log_later", later).content[0]["text"] == "later"
    (event,) = heard.wait(lambda e: e.params.get("data") == "said later")
    assert (event.tenant, event.server, event.session) == ("t", "x", None)
    assert event.params == {"level": "warning", "logger": "testserver", "data": "said later"}
    assert not any(isinstance(e, ServerLogMessage) for e in hub.board.events)  # listeners only


@pytest.mark.parametrize("era", list(ERAS))
def test_a_log_message_of_a_call_without_a_facade_session_is_an_event(make_hub, era: str) -> None:
    hub = make_hub({"t": {"servers": {"x": server(*ERAS[era])}}})
    heard = Heard(hub, ServerLogMessage)
    hub.start_tenant("t")
    hub.call_tool("t", "x.log", {"text": "during the call"})
    (event,) = heard.wait(lambda e: e.params.get("data") == "during the call")
    assert event.params["level"] == "warning"


@pytest.mark.parametrize("era", list(ERAS))
def test_subscribe_bump_unsubscribe_and_a_restart(make_hub, era: str) -> None:
    hub = make_hub({"t": {"servers": {"x": server(*ERAS[era])}}})
    heard = Heard(hub, ResourceUpdated)
    hub.start_tenant("t")

    def updates() -> Callable[[Any], bool]:
        return lambda e: (e.tenant, e.server, e.session, e.uri) == ("t", "x", None, COUNTER)

    run(hub.upstream.subscribe("t", "x", COUNTER))
    run(hub.upstream.subscribe("t", "x", COUNTER))  # idempotent: still one subscription
    text(hub, "x.bump")
    assert len(heard.wait(updates())) == 1
    if era == "2025-11-25":
        assert json.loads(text(hub, "x.subscribed")) == [COUNTER]
    run(hub.upstream.unsubscribe("t", "x", COUNTER))
    run(hub.upstream.unsubscribe("t", "x", COUNTER))  # idempotent
    if era == "2025-11-25":
        assert json.loads(text(hub, "x.subscribed")) == []
    text(hub, "x.bump")  # unheard: events of one server arrive in order, so the next one proves it
    run(hub.upstream.subscribe("t", "x", COUNTER))
    text(hub, "x.bump")
    assert len(heard.wait(updates(), 2)) == 2
    hub.restart_server("t", "x")
    text(hub, "x.bump")
    assert len(heard.wait(updates(), 3)) == 3  # subscribed again after the restart
    assert not any(isinstance(e, ResourceUpdated) for e in hub.board.events)  # listeners only
    assert len(heard.events) == 3


@pytest.mark.parametrize("era", list(ERAS))
def test_subscribe_to_a_server_without_subscriptions_is_a_bad_request(make_hub, era: str) -> None:
    flags = ("--legacy-only",) if era == "2025-11-25" else ()
    hub = make_hub({"t": {"servers": {"plain": server(*flags)}}})
    hub.start_tenant("t")
    with pytest.raises(BadRequest, match="does not support resource subscriptions"):
        run(hub.upstream.subscribe("t", "plain", "test://info"))


def test_subscribe_wakes_an_on_demand_server(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"lazy": server(*ERAS["2025-11-25"], lifecycle="on_demand")}}})
    heard = Heard(hub, ResourceUpdated)
    run(hub.upstream.subscribe("t", "lazy", COUNTER))
    assert hub.server("t", "lazy").state is ServerState.RUNNING
    text(hub, "lazy.bump")
    assert heard.wait(lambda e: e.uri == COUNTER)


@pytest.mark.parametrize("era", list(ERAS))
def test_capabilities_and_instructions_in_catalogs_and_in_the_cache(tmp_path: Path, era: str) -> None:
    tenants = {"t": {"servers": {"lazy": server(*ERAS[era], lifecycle="on_demand")}}}
    with Hub(config_of(tenants), data_dir=tmp_path) as first:
        first.start_server("t", "lazy")
        (live,) = first.catalogs("t")
    assert not live.cached and live.instructions == "MCP Hub test server"
    caps = live.capabilities
    assert caps is not None and "logging" in caps and "completions" in caps and "tools" in caps
    assert caps["resources"]["subscribe"] is True
    with Hub(config_of(tenants), data_dir=tmp_path) as second:
        (cached,) = second.catalogs("t")
        assert cached.cached and second.server("t", "lazy").state is ServerState.STOPPED
    assert (cached.capabilities, cached.instructions) == (caps, "MCP Hub test server")


def test_server_everything_completions_and_subscriptions(make_hub) -> None:
    entry = str(node_package("@modelcontextprotocol/server-everything", "dist", "index.js"))
    every = {"command": "node", "args": [entry, "stdio"], "sandbox": binds(NODE_MODULES)}
    hub = make_hub({"t": {"servers": {"every": every}}})
    heard = Heard(hub, ResourceUpdated)
    assert hub.start_tenant("t") == {"every": "running"}
    (catalog,) = hub.catalogs("t")
    caps = catalog.capabilities or {}
    assert "completions" in caps and caps["resources"]["subscribe"] is True, caps
    prompt = next(p for p in catalog.prompts if p.raw.get("arguments"))
    argument = prompt.raw["arguments"][0]["name"]
    answer = run(
        hub.upstream.complete(
            "t", "every", {"type": "ref/prompt", "name": prompt.name}, {"name": argument, "value": ""}, None
        )
    )
    assert isinstance(answer["completion"]["values"], list)
    uri = catalog.resources[0].raw["uri"]
    logs = Heard(hub, ServerLogMessage)
    run(hub.upstream.set_log_level("t", "every", "debug"))
    run(hub.upstream.subscribe("t", "every", uri))
    # It acknowledges a subscription with a log message of its own: no call is in flight.
    assert logs.wait(lambda e: "Subscribe" in str(e.params.get("data")))
    hub.call_tool("t", "every.toggle-subscriber-updates", {})  # an update every 5 s from now on
    assert heard.wait(lambda e: e.uri == uri, timeout=20), "no update within 20 s"
    run(hub.upstream.unsubscribe("t", "every", uri))


def test_per_session_instances_get_the_level_and_their_own_subscriptions(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"ps": server(*ERAS["2025-11-25"], per_session=True)}}})
    logs, updates = Heard(hub, ServerLogMessage), Heard(hub, ResourceUpdated)
    hub.start_tenant("t")  # (its shared instance runs once, to discover the catalog)

    def level(session: str) -> str:
        return str(hub.call_tool("t", "ps.level", {}, session=session).content[0]["text"])

    assert level("a") == "none"  # session a's instance runs
    run(hub.upstream.set_log_level("t", "ps", "error"))
    assert level("a") == "error"  # sent to the instance that runs
    assert level("b") == "error"  # and given to one started later
    run(hub.upstream.subscribe("t", "ps", COUNTER, session="b"))
    hub.call_tool("t", "ps.bump", {}, session="a")  # a did not subscribe: unheard
    hub.call_tool("t", "ps.bump", {}, session="b")
    (update,) = updates.wait(lambda e: e.uri == COUNTER)
    assert update.session == "b"
    later = {"level": "critical", "message": "from b", "delay": 0}
    hub.call_tool("t", "ps.log_later", later, session="b")
    (log,) = logs.wait(lambda e: e.params.get("data") == "from b")
    assert (log.server, log.session) == ("ps", "b")
    hub.end_session("b")
    run(hub.upstream.unsubscribe("t", "ps", COUNTER, session="b"))  # its instance is gone: nothing to do
    assert len(updates.events) == 1
