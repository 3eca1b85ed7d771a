"""The official MCP conformance suite through the hub (issue 20): the fixture server
(tests/servers/conformanceserver.py) runs behind the hub as a sandboxed stdio child, and the runner
(tests/conformance.py) is pointed at the hub's endpoints.

- `/tenants/{t}/servers/{s}/mcp` (one server, unchanged): every scenario the fixture passes
  directly (tests/test_conformance.py: all 30 active ones) passes through the hub too.
- `/mcp` (the aggregated facade): every scenario that names no tool, prompt or resource, since
  there every name carries its server.
"""

from __future__ import annotations

from pathlib import Path

from conformance import CONFORMANCE_SERVER, PENDING, listed_scenarios, run_conformance
from conftest import SERVERS_DIR, binds

# The scenarios that name no tool, prompt or resource: they hold through the aggregated facade.
NAME_FREE = [
    "server-initialize",
    "ping",
    "logging-set-level",
    "tools-list",
    "resources-list",
    "prompts-list",
    "dns-rebinding-protection",
    "server-sse-multiple-streams",
]


def fixture() -> dict[str, object]:
    """The conformance fixture as a server of the hub (stdio, sandboxed like any other)."""
    return {"command": "python", "args": [CONFORMANCE_SERVER], "sandbox": binds(SERVERS_DIR)}


def test_one_server_endpoint_passes_every_scenario_the_fixture_passes_directly(served) -> None:
    hub = served({"default": {"servers": {"conformance": fixture()}}})
    run = run_conformance(hub.url + "/tenants/default/servers/conformance/mcp", timeout=120)
    assert not run.problems(), run.report()
    assert set(run.started) == listed_scenarios() - set(PENDING), run.report()
    assert set(run.results) == set(run.started) and run.returncode == 0, run.report()


def test_aggregated_facade_passes_every_scenario_that_names_nothing(served) -> None:
    hub = served({"default": {"servers": {"conformance": fixture(), "other": fixture()}}})
    run = run_conformance(hub.url + "/mcp", NAME_FREE, timeout=120)
    assert not run.problems(), run.report()
    assert set(run.results) == set(NAME_FREE) and run.returncode == 0, run.report()


def test_the_name_free_list_is_the_runners(tmp_path: Path) -> None:
    """Every scenario named here exists in the installed runner (a rename upstream fails here)."""
    assert set(NAME_FREE) <= listed_scenarios()
